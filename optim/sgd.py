"""Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .optimizer import Optimizer, State, UpdateRule

__all__ = ["SGD", "SGDRule"]


@dataclass(frozen=True)
class SGDRule(UpdateRule):
    """SGD's hyperparameters and update (see :class:`SGD` for the equations)."""

    optimizer = "SGD"

    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        self.real("lr", low=0.0)
        self.real("momentum", low=0.0, high=1.0, high_open=True)
        self.boolean("nesterov")
        self.real("weight_decay", low=0.0)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("SGD: invalid nesterov=True: Nesterov needs momentum > 0, got "
                             "momentum=0.0")

    def init(self, p: np.ndarray) -> State:
        return {"momentum_buffer": np.zeros_like(p)} if self.momentum else {}

    def update(
        self, t: int, p: np.ndarray, g: np.ndarray, state: State
    ) -> tuple[np.ndarray, State]:
        d = g + self.weight_decay * p if self.weight_decay else g
        if not self.momentum:
            return self.lr * d, state
        # PyTorch starts the buffer at the first gradient (a copy: d may be the caller's .grad).
        b = d.copy() if t == 1 else self.momentum * state["momentum_buffer"] + d
        d = d + self.momentum * b if self.nesterov else b
        return self.lr * d, {"momentum_buffer": b}


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
        params: iterable of parameters (see :mod:`minigrad.optim.optimizer`).
        lr: learning rate, >= 0 (required).
        momentum: in [0, 1).
        nesterov: Nesterov momentum; needs ``momentum > 0``.
        weight_decay: L2 coefficient, >= 0 (added to the gradient, not decoupled).
        check_finite: raise :class:`~optim.optimizer.NonFiniteGradientError` before any
            update if a gradient holds NaN/inf (default). When False, a NaN/inf gradient
            element makes that parameter element NaN/inf (and, with momentum, poisons its
            buffer element for good).

    State per parameter: ``step`` (int) and, when ``momentum != 0``, ``momentum_buffer`` (b).
    """

    name = "sgd"
    Rule = SGDRule
