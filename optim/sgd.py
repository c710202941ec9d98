"""Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .optimizer import FRACTION, LEARNING_RATE, NONNEGATIVE, Boolean, Optimizer, ParamGroup, State

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Stochastic gradient descent, exactly as ``torch.optim.SGD`` with ``dampening=0``.

    Per parameter ``p`` with gradient ``g``, at its t-th update (t = 1, 2, ...)::

        d = g + weight_decay * p                         (L2 penalty folded into g)
        if momentum != 0:
            b = d                        if t == 1       (buffer starts at the gradient,
            b = momentum * b + d         otherwise        not at zero)
            d = d + momentum * b         if nesterov
            d = b                        otherwise
        p = p - lr * d

    With ``momentum=0`` this is plain gradient descent ``p -= lr * (g + weight_decay * p)``,
    the rule of the Keras adder in "Understand recurrent networks with the binary addition"
    (lr 0.1, one example per step). Nesterov here is PyTorch's (Sutskever et al.)
    reformulation, evaluated at the current point: no closure is needed.

    Args:
        params: parameters, or group dicts (see :class:`~optim.optimizer.Optimizer`).
        lr: learning rate, >= 0 (required).
        momentum: in [0, 1).
        nesterov: Nesterov momentum; needs ``momentum > 0``.
        weight_decay: L2 coefficient, >= 0 (added to the gradient, not decoupled).
        check_finite: raise :class:`~optim.optimizer.NonFiniteGradientError` before any
            update if a gradient holds NaN/inf (default). When False, a NaN/inf gradient
            element makes that parameter element NaN/inf (and, with momentum, poisons its
            buffer element for good).

    State per parameter: ``step`` and ``momentum_buffer`` (b; zeros while momentum is 0).
    """

    name = "sgd"
    keeps_inputs = False
    bounds = {"lr": LEARNING_RATE, "momentum": FRACTION, "nesterov": Boolean(),
              "weight_decay": NONNEGATIVE}

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0, *,
                 check_finite: bool = True) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov,
                                  "weight_decay": weight_decay}, check_finite=check_finite)

    @classmethod
    def check_together(cls, values: dict[str, Any]) -> None:
        if values["nesterov"] and not values["momentum"]:
            raise ValueError("SGD: invalid nesterov=True: Nesterov needs momentum > 0, got "
                             f"momentum={values['momentum']!r}")

    def init(self, h: ParamGroup, p: np.ndarray) -> State:
        return {"momentum_buffer": np.zeros_like(p)}

    def update(self, h: ParamGroup, t: int, p: np.ndarray, g: np.ndarray,
               state: State) -> tuple[np.ndarray, State]:
        d = g + h.weight_decay * p if h.weight_decay else g
        if not h.momentum:
            return h.lr * d, state
        # PyTorch starts the buffer at the first gradient (a copy: g is the shell's buffer).
        b = d.copy() if t == 1 else h.momentum * state["momentum_buffer"] + d
        d = d + h.momentum * b if h.nesterov else b
        return h.lr * d, {"momentum_buffer": b}
