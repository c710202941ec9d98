"""RMSProp with Nesterov momentum, the binary adder's optimizer in "How to implement an RNN"
(part 2)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .optimizer import (
    FRACTION,
    LEARNING_RATE,
    POSITIVE,
    Optimizer,
    ParamGroup,
    State,
    guard_in,
    refuse_overflow,
)

__all__ = ["RMSPropNesterov"]


class RMSPropNesterov(Optimizer):
    r"""RMSProp with Nesterov momentum, exactly as the adder of "How to implement an RNN"
    (part 2) trains it.

    Per parameter P, with velocity V and moving average MA (both start at 0), one step is::

        1. V_tmp = momentum * V;  P = P + V_tmp          (move to the look-ahead point)
        2. g = the gradient at that point                (closure() computes it)
        3. MA = decay * MA + ((1 - decay) * g) * g       (the tutorial's (1 - decay) g^2)
        4. step = lr * g / (sqrt(MA) + eps)              (eps outside the square root)
        5. V = V_tmp - step;  P = P - step

    The defaults are the tutorial's: decay (its lambda) 0.5, lr 0.05, momentum 0.8,
    eps 1e-6, with which it trains the 3-state adder on minibatches of 100 for 5 passes.

    Where the parameters sit: between steps, at the *real* point P (what you evaluate,
    save or test). During ``step`` they sit at the look-ahead point P + momentum * V while
    ``closure`` runs, so the closure's loss, and the ``.grad`` left on the parameters after
    ``step``, belong to the look-ahead point. After ``step`` P = P_old + V_new.

    Because the gradient has to be taken at a point that only exists inside ``step``,
    ``step`` *requires* a closure (zero the grads, compute the loss, call backward, return
    the loss); calling it without one raises TypeError.

    Failure handling: if the closure raises, or a gradient is non-finite (with
    ``check_finite``), all parameters are moved back bit for bit and the state is unchanged
    before the error propagates. A parameter whose grad is None after the closure is
    skipped as in PyTorch: moved back to where it was, V and MA unchanged.

    Args:
        params: parameters, or group dicts (see :class:`~optim.optimizer.Optimizer`).
        lr: learning rate, >= 0.
        decay: lambda, the moving average's decay, in [0, 1).
        momentum: in [0, 1).
        eps: > 0 (with 0, a zero gradient element on a zero MA would give 0/0 = NaN).
        check_finite: raise :class:`~optim.optimizer.NonFiniteGradientError` (after
            moving the parameters back) if a gradient holds NaN/inf (default). When False, a
            NaN gradient element makes the parameter element, V and MA NaN for good; an
            infinite one makes MA infinite and the step inf/inf = NaN, likewise. Finite
            gradients whose MA overflows a float16 or float32 parameter's dtype (past 256
            in float16) raise OverflowError, the parameters moved back: MA would be inf
            for good and the element stopped.

    State per parameter: ``step``, ``velocity`` (V) and ``mean_square`` (MA).
    """

    name = "rmsprop_nesterov"
    keeps_inputs = False
    bounds = {"lr": LEARNING_RATE, "decay": FRACTION, "momentum": FRACTION, "eps": POSITIVE}

    def __init__(self, params: Iterable[Any], lr: float = 0.05, decay: float = 0.5,
                 momentum: float = 0.8, eps: float = 1e-6, *,
                 check_finite: bool = True) -> None:
        super().__init__(params, {"lr": lr, "decay": decay, "momentum": momentum, "eps": eps},
                         check_finite=check_finite)

    def init(self, h: ParamGroup, p: np.ndarray) -> State:
        return {"velocity": np.zeros_like(p), "mean_square": np.zeros_like(p)}

    def look_ahead(self, h: ParamGroup, state: State) -> np.ndarray:
        return h.momentum * state["velocity"]  # 1. V_tmp; the shell moves P += V_tmp

    def update(self, h: ParamGroup, t: int, p: np.ndarray, g: np.ndarray,
               state: State) -> tuple[np.ndarray, State]:
        # p is the look-ahead point P + V_tmp, g the gradient there (2.); P -= step follows.
        # 3., as ((1 - decay) g) g: g^2 alone overflows for a large finite g (past 256 in
        # float16) where MA does not, and MA would stay inf, the element frozen.
        mean_square = h.decay * state["mean_square"] + (1 - h.decay) * g * g
        refuse_overflow("RMSPropNesterov", "mean_square", mean_square, state["mean_square"], g)
        guard_in("RMSPropNesterov", h.eps, p.dtype)
        step = h.lr * g / (np.sqrt(mean_square) + h.eps)  # 4.
        velocity = h.momentum * state["velocity"] - step  # 5.
        return step, {"velocity": velocity, "mean_square": mean_square}

    def state_problem(self, h: ParamGroup, state: State) -> str | None:
        if (state["mean_square"] < 0).any():
            return "mean_square has negative values; it is a mean of squares"
        return None
