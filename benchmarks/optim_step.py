"""The optimizer's own cost: `optim.RMSPropNesterov.step` against the same update written in
plain NumPy, on the adder's parameters at a case's sizes, in one process.

Both are driven by the same closure, which copies a gradient computed once (by the
hand-written adder at the case's starting point) into the gradient arrays, as the
hand-written adder writes its gradients, so the two timed functions differ only in the
update: the look-ahead move, the gradient check and the RMSProp-Nesterov arithmetic. Each
contender steps its own copy of the parameters, from the same start, laid out as the
hand-written adder lays them (parameters and gradients each end to end in one flat buffer).
The plain update is the hand-written steps' (`benchmarks.updates`: in-place NumPy calls
over those flat buffers, no check of the gradients); the optimizer checks every gradient's
shape and finiteness and copies the parameters and gradients into its own flat buffers
and back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from minigrad import optim
from minigrad.models.reference import Param
from minigrad.models.timing import Timing, alternate

from .configs import StepCase
from .handwritten import laid_end_to_end
from .steps import adder_setup
from .updates import plain_rmsprop_nesterov

__all__ = ["OptimizerCost", "plain_rmsprop_nesterov", "time_optimizer_step"]


@dataclass(frozen=True)
class OptimizerCost:
    case: str
    sizes: str
    parameters: int
    timings: dict[str, Timing]

    @property
    def ratio(self) -> float:
        """The optimizer's step time over the plain update's."""
        return self.timings["optim.RMSPropNesterov"].median / self.timings["plain NumPy"].median


def time_optimizer_step(case: StepCase, repeats: int | None = None) -> OptimizerCost:
    setup = adder_setup(case.batch, case.timesteps, case.states, preset=case.preset)
    model = setup.handwritten()
    model.loss_and_backward(setup.X, setup.T)
    grads = [p.grad.copy() for p in model.parameters()]
    h = setup.optimizer_settings

    def contender(make: Callable[[list[Param]], Any]) -> Callable[[], object]:
        laid, views = laid_end_to_end(
            {name: p.data for name, p in model.named_parameters()}, setup.dtype)
        params, gradient_arrays = list(laid.values()), list(views.values())
        step = make(params)

        def closure() -> float:
            for p, view, g in zip(params, gradient_arrays, grads, strict=True):
                np.copyto(view, g)
                p.grad = view
            return 0.0

        return lambda: step(closure)

    functions = {
        "plain NumPy": contender(lambda ps: plain_rmsprop_nesterov(ps, **h)),
        "optim.RMSPropNesterov": contender(lambda ps: optim.RMSPropNesterov(ps, **h).step),
    }
    timings = alternate(functions, repeats=repeats or 20 * case.repeats, warmup=case.warmup)
    return OptimizerCost(case.key, case.sizes, sum(g.size for g in grads), timings)
