"""One training step, built the same way for the engine and for the hand-coded reference.

A step is what `minigrad.models.training.train` does per minibatch: `optimizer.step(closure)`, the
closure zeroing the gradients and running the objective (forward, loss, backward). For the
adder the optimizer is RMSProp-Nesterov with the preset's hyperparameters, so the closure
runs at the look-ahead point and the update follows; for the counter it is RProp.

Both models start from the same parameters (the engine's initialisation, loaded into the
reference with `load_parameters`) and see the same minibatch, already in the step's dtype
(so neither pays for a conversion the other skips). The reference is used as it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from minigrad import optim
from minigrad.models.adder import Adder
from minigrad.models.counter import Counter
from minigrad.models.data import addition_data, counting_data
from minigrad.models.presets import AdderConfig, get_preset
from minigrad.models.reference import ReferenceAdder, ReferenceCounter
from minigrad.models.training import engine_objective

__all__ = ["AdderSetup", "adder_setup", "counter_steps", "sum_bits", "training_step"]

Step = Callable[[], float]

# The counter's data and starting point (SPEC 1): 20 sequences of 10 bits, from (-1.5, 2).
COUNTER_START = (-1.5, 2.0)


def training_step(optimizer: Any, objective: Callable[[np.ndarray, np.ndarray], float],
                  X: np.ndarray, T: np.ndarray) -> Step:
    """`optimizer.step(closure)` on (X, T), the closure as `minigrad.models.training.train`
    makes it."""

    def closure() -> float:
        optimizer.zero_grad()
        return objective(X, T)

    def step() -> float:
        return float(optimizer.step(closure))

    return step


def sum_bits(rng: np.random.Generator, batch: int, n_bits: int,
             dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Random binary sums of any width: X (batch, n_bits, 2), T (batch, n_bits, 1).

    `minigrad.models.data.addition_data` stops at 62 bits (int64); this draws the operand bits
    directly, least significant first, with the top bit 0 so that the sum fits, and adds them
    with a ripple carry. Up to 62 bits it is `addition_data` itself.
    """
    if n_bits <= 62:
        X, T = addition_data(rng, batch, n_bits)
        return X.astype(dtype), T.astype(dtype)
    bits = rng.integers(0, 2, size=(batch, n_bits, 2))
    bits[:, -1] = 0
    T = np.empty((batch, n_bits, 1), dtype=np.int64)
    carry = np.zeros(batch, dtype=np.int64)
    for k in range(n_bits):
        total = bits[:, k, 0] + bits[:, k, 1] + carry
        T[:, k, 0] = total & 1
        carry = total >> 1
    return bits.astype(dtype), T.astype(dtype)


@dataclasses.dataclass
class AdderSetup:
    """An engine adder and a reference adder with equal parameters, one minibatch, and the
    optimizer settings of the case's preset."""

    config: AdderConfig
    engine: Adder
    reference: ReferenceAdder
    X: np.ndarray
    T: np.ndarray
    optimizer_settings: dict[str, float]
    dtype: Any

    def initial_parameters(self) -> dict[str, np.ndarray]:
        """The starting parameters, name -> array (a copy), for other implementations."""
        return {name: value.copy() for name, value in self.reference.state_dict().items()}

    def optimizer(self, params: Any) -> optim.RMSPropNesterov:
        h = self.optimizer_settings
        return optim.RMSPropNesterov(params, lr=h["lr"], decay=h["decay"],
                                     momentum=h["momentum"], eps=h["eps"])

    def engine_step(self) -> Step:
        return training_step(self.optimizer(list(self.engine.parameters())),
                             engine_objective(self.engine), self.X, self.T)

    def reference_step(self) -> Step:
        return training_step(self.optimizer(self.reference.parameters()),
                             self.reference.loss_and_backward, self.X, self.T)


def adder_setup(batch: int, timesteps: int, states: int, dtype: Any = np.float64, *,
                preset: str = "large", seed: int = 0) -> AdderSetup:
    """Engine and reference adders of `preset`'s architecture at the given sizes."""
    base, settings = get_preset(preset)
    config = dataclasses.replace(base, n_bits=timesteps, n_states=states)
    rng = np.random.default_rng(seed)
    engine = Adder(config, rng=rng, dtype=dtype)
    reference = ReferenceAdder(config, dtype=dtype)
    reference.load_parameters(engine.state_dict())
    X, T = sum_bits(rng, batch, timesteps, dtype)
    hyper = {"lr": settings.lr, "decay": settings.decay, "momentum": settings.momentum,
             "eps": settings.eps}
    return AdderSetup(config, engine, reference, X, T, hyper, np.dtype(dtype))


def counter_steps(n_sequences: int, length: int, seed: int = 0) -> tuple[Step, Step]:
    """(engine step, reference step) of the counter: RProp (defaults) on one full batch."""
    X, t = counting_data(np.random.default_rng(seed), n_sequences, length)
    engine = Counter(*COUNTER_START)
    reference = ReferenceCounter(*COUNTER_START)
    engine_step = training_step(optim.RProp(list(engine.parameters())),
                                engine_objective(engine), X, t)
    reference_step = training_step(optim.RProp(reference.parameters()),
                                   reference.loss_and_backward, X, t)
    return engine_step, reference_step
