"""Optimizer updates in plain NumPy, as a hand-writer writes them: the hand-written steps'
updates (`optim`'s rules without its shell: no gradient checks, no bucketing, no rollback).

Each maker takes the parameters (objects with `.data` and `.grad`, such as
`minigrad.models.reference.Param`) and the rule's hyperparameters, and returns
`step(closure) -> loss`: the closure computes the loss and leaves the gradients in `.grad`,
the step updates `.data` in place. Each computes what the `optim` rule of the same name
computes, in the same order, so the trajectories agree bit for bit
(`tests/test_benchmarks.py`, `tests/test_optim_benchmark.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["Update", "plain_rmsprop_nesterov", "plain_rprop", "plain_sgd"]

Closure = Callable[[], float]
Update = Callable[[Closure], float]


def plain_rmsprop_nesterov(params: Sequence[Any], lr: float, decay: float, momentum: float,
                           eps: float) -> Update:
    """The tutorial's RMSProp-Nesterov, per parameter: move to P + momentum V, take the
    gradient g there, MA = decay MA + (1 - decay) g^2, change = lr g / (sqrt(MA) + eps),
    V = momentum V - change, P -= change."""
    velocity = [np.zeros_like(p.data) for p in params]
    mean_square = [np.zeros_like(p.data) for p in params]

    def step(closure: Closure) -> float:
        moves = [momentum * v for v in velocity]
        for p, move in zip(params, moves, strict=True):
            p.data += move
        loss = closure()
        for i, p in enumerate(params):
            g = p.grad
            mean_square[i] = decay * mean_square[i] + (1 - decay) * g**2
            change = lr * g / (np.sqrt(mean_square[i]) + eps)
            velocity[i] = moves[i] - change
            p.data -= change
        return loss

    return step


def plain_rprop(params: Sequence[Any], eta_plus: float = 1.2, eta_minus: float = 0.5,
                step_init: float = 0.001, step_min: float = 1e-6,
                step_max: float = 50.0) -> Update:
    """Rprop- per element (`optim.RProp`'s rule and defaults): with s = sign(g), Delta grows
    by eta_plus where s agrees with the previous sign, shrinks by eta_minus where it
    flipped, stays elsewhere, and is clipped to [step_min, step_max]; P -= s Delta."""
    step_size = [np.full_like(p.data, step_init) for p in params]
    prev_sign = [np.zeros_like(p.data) for p in params]

    def step(closure: Closure) -> float:
        loss = closure()
        for i, p in enumerate(params):
            s = np.sign(p.grad)
            agreement = s * prev_sign[i]
            delta = step_size[i]
            delta = np.where(agreement > 0, delta * eta_plus,
                             np.where(agreement < 0, delta * eta_minus, delta))
            step_size[i] = np.minimum(np.maximum(delta, step_min), step_max)
            p.data -= s * step_size[i]
            prev_sign[i] = s
        return loss

    return step


def plain_sgd(params: Sequence[Any], lr: float) -> Update:
    """Gradient descent: P -= lr g."""

    def step(closure: Closure) -> float:
        loss = closure()
        for p in params:
            p.data -= lr * p.grad
        return loss

    return step
