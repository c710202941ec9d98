"""A small, reusable training loop, and the adder's accuracy.

`train` runs epochs of shuffled, non-overlapping minibatches through an optimizer's
`step(closure)`. What is trained is given as an `objective(X, T) -> float` that computes
the loss and leaves the gradients in the parameters' `.grad`: `engine_objective(model)`
wraps any minigrad Module with a `loss(X, T)` method; a hand-coded reference's
`loss_and_backward` is one already. So the same loop, optimizer and minibatches can train
both and their trajectories can be compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import minigrad as mg
from minigrad.optim import Optimizer

Objective = Callable[[np.ndarray, np.ndarray], float]


@dataclass
class Progress:
    """What a callback sees after each step."""

    step: int          # 1-based, over the whole run
    total_steps: int
    epoch: int         # 1-based
    epochs: int
    loss: float


@dataclass
class History:
    """The loss of every step (at the point where the optimizer evaluated it)."""

    losses: list[float] = field(default_factory=list)

    def epoch_means(self, steps_per_epoch: int) -> list[float]:
        return [float(np.mean(self.losses[i:i + steps_per_epoch]))
                for i in range(0, len(self.losses), steps_per_epoch)]


def minibatches(n_samples: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A shuffled partition of range(n_samples) into batches of `batch_size` (the last may be
    smaller): every sample once per epoch, no overlap."""
    if batch_size < 1:
        raise ValueError(f"minibatches: batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(n_samples)
    return [order[i:i + batch_size] for i in range(0, n_samples, batch_size)]


def train(objective: Objective, optimizer: Optimizer, X: np.ndarray, T: np.ndarray, *,
          epochs: int, batch_size: int, rng: np.random.Generator,
          callback: Callable[[Progress], Any] | None = None) -> History:
    """Train for `epochs` passes over (X, T) in minibatches drawn from `rng`.

    Each step hands the optimizer a closure that zeroes the gradients, evaluates the loss on
    the minibatch and backpropagates; the optimizer may call it at a look-ahead point.
    """
    if len(X) != len(T):
        raise ValueError(f"train: {len(X)} inputs but {len(T)} targets")
    steps_per_epoch = -(-len(X) // batch_size)
    total = epochs * steps_per_epoch
    history = History()
    for epoch in range(1, epochs + 1):
        for batch in minibatches(len(X), batch_size, rng):
            def closure(Xb: np.ndarray = X[batch], Tb: np.ndarray = T[batch]) -> float:
                optimizer.zero_grad()
                return objective(Xb, Tb)

            loss = float(optimizer.step(closure))
            history.losses.append(loss)
            if callback is not None:
                callback(Progress(len(history.losses), total, epoch, epochs, loss))
    return history


class EngineObjective:
    """objective(X, T) -> loss for a minigrad Module with a `loss(X, T)` method: forward,
    backward (the gradients in `.grad`), the loss as a float. `loss_of` is the model's
    `loss`, or `minigrad.compile(model.loss)` (its `traces` and `trace_seconds` say what
    tracing cost)."""

    def __init__(self, model: Any, compiled: bool = False):
        self.loss_of: Callable[[np.ndarray, np.ndarray], mg.Tensor] = (
            mg.compile(model.loss) if compiled else model.loss)

    def __call__(self, X: np.ndarray, T: np.ndarray) -> float:
        if isinstance(self.loss_of, mg.CompiledFunction):  # its replays need no graph
            return self.loss_of.value_and_backward(X, T)
        loss = self.loss_of(X, T)
        loss.backward()
        return loss.item()


def engine_objective(model: Any, compiled: bool = False) -> EngineObjective:
    """The objective of a minigrad Module with a `loss(X, T)` method; with `compiled`, the loss
    is `minigrad.compile(model.loss)`: traced once per batch shape, then replayed (the same
    losses and gradients)."""
    return EngineObjective(model, compiled)


def percent(fraction: float) -> str:
    """`fraction` as a percentage to two decimals, "100.00%" and "0.00%" only when exact:
    99,999 sums right of 100,000 is "99.99%", never rounded up to look like all of them."""
    text = f"{100 * fraction:.2f}%"
    if text == "100.00%" and fraction < 1:
        return "99.99%"
    if text == "0.00%" and fraction > 0:
        return "0.01%"
    return text


@dataclass(frozen=True)
class Accuracy:
    bits: float   # fraction of output bits right
    sums: float   # fraction of samples whose every bit is right

    def __str__(self) -> str:
        return f"{percent(self.bits)} of bits, {percent(self.sums)} of whole sums"


def accuracy(predicted_bits: np.ndarray, T: np.ndarray) -> Accuracy:
    """Per-bit and whole-sum accuracy of predicted bits (samples, L, 1) against targets."""
    right = np.asarray(predicted_bits) == np.asarray(T)
    return Accuracy(float(right.mean()), float(right.reshape(len(right), -1).all(axis=1).mean()))
