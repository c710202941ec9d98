"""One training step, built the same way for every implementation of a case.

A step is what `minigrad.models.training.train` does per minibatch: `optimizer.step(closure)`, the
closure zeroing the gradients and running the objective (forward, loss, backward). For the
adder the optimizer is RMSProp-Nesterov with the preset's hyperparameters, so the closure
runs at the look-ahead point and the update follows; for the counter it is RProp.

The implementations of the objective:

- the hand-written step (`benchmarks.handwritten`): the fastest plain NumPy we know, the
  baseline every ratio is taken against; for the counter the tutorial's loop BPTT, with
  its closed form (`ClosedFormCounter`, algebra rather than backpropagation) an extra row;
- the tutorial-style step (`minigrad.models.reference`): the write-up's hand-coded backward pass,
  used as it is;
- the engine (`minigrad.models.Adder` / `minigrad.models.Counter`), through an objective maker
  (`engine_objective` for eager mode; another engine mode passes its own);
- for the adder, also the engine on `benchmarks.user_models.UnrolledAdder` (the adder as a
  user writes it); for the GRU and the LSTM (`CellSetup`), the engine on
  `benchmarks.user_models.ScanGRU` / `ScanLSTM` against `benchmarks.cells`.

The engine's steps use `optim`'s optimizers, as users do; the hand-written and
tutorial-style steps update in plain NumPy as a hand-writer who cares about speed does
(`benchmarks.updates`: one pass of in-place calls over flat buffers, the same rules to the
bit), so a ratio includes what `optim`'s shell costs over a hand-written update. The
hand-written step is also free of the `.data`/`.grad` protocol (`flat_step`): its gradients
go straight into the buffer its update reads, as in a hand-writer's own training loop.

Each starts from the same parameters (the engine's initialisation) and sees the same
minibatch, already in the step's dtype (so no one pays for a conversion another skips).
Every `*_step()` call builds a fresh model and optimizer, so steps never share state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from minigrad import optim
from minigrad.models.adder import Adder
from minigrad.models.comparison import reference_adder
from minigrad.models.counter import Counter
from minigrad.models.data import addition_data, counting_data
from minigrad.models.presets import AdderConfig, get_preset
from minigrad.models.reference import ReferenceAdder, ReferenceCounter
from minigrad.models.training import Objective, engine_objective

from .cells import HandwrittenGRU, HandwrittenLSTM
from .handwritten import ClosedFormCounter, HandwrittenAdder, HandwrittenCounter, HandwrittenModel
from .lean import LeanAdder
from .updates import FlatBuffers, Update, plain_rmsprop_nesterov, plain_rprop, plain_sgd
from .user_models import ScanGRU, ScanLSTM, UnrolledAdder

__all__ = ["AdderSetup", "CellSetup", "CounterSetup", "ObjectiveMaker", "adder_setup",
           "cell_setup", "counter_setup", "flat_step", "plain_step", "sum_bits", "training_step"]

Step = Callable[[], float]
# How an engine mode turns a model into an objective(X, T) -> loss (gradients in .grad).
ObjectiveMaker = Callable[[Any], Objective]

# The counter's starting point in tutorial part 1: w_x = -1.5, w_rec = 2 (exploding gradients).
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


def plain_step(update: Update, objective: Callable[[np.ndarray, np.ndarray], float],
               X: np.ndarray, T: np.ndarray, model: Any) -> Step:
    """`update(closure)` on (X, T) for a hand-written `model` (gradients zeroed, then
    `objective`), with a plain NumPy update from `benchmarks.updates`."""

    def closure() -> float:
        model.zero_grad()
        return objective(X, T)

    def step() -> float:
        return float(update(closure))

    return step


def flat_step(make_update: Callable[[FlatBuffers], Update], model: HandwrittenModel,
              X: np.ndarray, T: np.ndarray) -> Step:
    """The hand-written `model`'s step as a hand-writer's own loop runs it: the update of
    `make_update` on the model's two flat buffers, its closure `model.compute_gradients`
    (no `.data`, `.grad` or `zero_grad` protocol around it)."""
    update = make_update(FlatBuffers(model.flat_parameters, model.flat_gradients))
    compute = model.compute_gradients

    def closure() -> float:
        return compute(X, T)

    def step() -> float:
        return float(update(closure))

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
    """The adder of a case: its architecture, starting parameters, one minibatch and the
    optimizer settings of the case's preset."""

    config: AdderConfig
    start: dict[str, np.ndarray]   # name -> starting value; never stepped
    X: np.ndarray
    T: np.ndarray
    optimizer_settings: dict[str, float]
    dtype: np.dtype

    def initial_parameters(self) -> dict[str, np.ndarray]:
        """The starting parameters, name -> array (a copy), for other implementations."""
        return {name: value.copy() for name, value in self.start.items()}

    def optimizer(self, params: Any) -> optim.RMSPropNesterov:
        h = self.optimizer_settings
        return optim.RMSPropNesterov(params, lr=h["lr"], decay=h["decay"],
                                     momentum=h["momentum"], eps=h["eps"])

    def engine(self) -> Adder:
        """A fresh engine adder at the starting parameters."""
        model = Adder(self.config, rng=np.random.default_rng(0), dtype=self.dtype)
        model.load_state_dict(self.initial_parameters())
        return model

    def reference(self) -> ReferenceAdder:
        """A fresh tutorial-style reference adder at the starting parameters."""
        return reference_adder(self.engine(), self.dtype)

    def handwritten(self) -> HandwrittenAdder:
        """A fresh hand-written adder at the starting parameters."""
        return HandwrittenAdder(self.config, self.start, dtype=self.dtype)

    def plain_update(self, params: Any) -> Update:
        """The optimizer's rule in plain NumPy, for the hand-written steps."""
        return plain_rmsprop_nesterov(params, **self.optimizer_settings)

    def engine_step(self, objective_of: ObjectiveMaker = engine_objective) -> Step:
        model = self.engine()
        return training_step(self.optimizer(list(model.parameters())), objective_of(model),
                             self.X, self.T)

    def user_step(self, objective_of: ObjectiveMaker = engine_objective) -> Step:
        """The engine on the adder as a user writes it (`UnrolledAdder`), same start."""
        model = UnrolledAdder(self.config, rng=np.random.default_rng(0), dtype=self.dtype)
        model.load_state_dict(self.initial_parameters())
        return training_step(self.optimizer(list(model.parameters())), objective_of(model),
                             self.X, self.T)

    def reference_step(self, model: ReferenceAdder | None = None) -> Step:
        model = model or self.reference()
        return plain_step(self.plain_update(model.parameters()), model.loss_and_backward,
                          self.X, self.T, model)

    def handwritten_step(self, model: HandwrittenAdder | None = None) -> Step:
        """A baseline: `flat_step` on the hand-written adder."""
        return flat_step(self.plain_update, model or self.handwritten(), self.X, self.T)

    def lean(self) -> LeanAdder:
        """A fresh memory-lean hand-written adder at the starting parameters."""
        return LeanAdder(self.config, self.start, dtype=self.dtype)

    def lean_step(self, model: LeanAdder | None = None) -> Step:
        """The other baseline: `flat_step` on the memory-lean adder (faster at long T)."""
        return flat_step(self.plain_update, model or self.lean(), self.X, self.T)


def adder_setup(batch: int, timesteps: int, states: int, dtype: Any = np.float64, *,
                preset: str = "large", seed: int = 0) -> AdderSetup:
    """The adder of `preset`'s architecture at the given sizes, initialised as the engine
    initialises it, and a minibatch of random sums."""
    base, settings = get_preset(preset)
    config = dataclasses.replace(base, n_bits=timesteps, n_states=states)
    rng = np.random.default_rng(seed)
    start = Adder(config, rng=rng, dtype=dtype).state_dict()
    X, T = sum_bits(rng, batch, timesteps, dtype)
    hyper = {"lr": settings.lr, "decay": settings.decay, "momentum": settings.momentum,
             "eps": settings.eps}
    return AdderSetup(config, start, X, T, hyper, np.dtype(dtype))


@dataclasses.dataclass
class CounterSetup:
    """The counter's data (n sequences of `length` bits, targets their counts) and its
    starting point; every step is RProp (defaults) on the full batch."""

    X: np.ndarray
    t: np.ndarray
    start: tuple[float, float] = COUNTER_START

    def engine_step(self, objective_of: ObjectiveMaker = engine_objective) -> Step:
        model = Counter(*self.start)
        return training_step(optim.RProp(list(model.parameters())), objective_of(model),
                             self.X, self.t)

    def reference_step(self) -> Step:
        model = ReferenceCounter(*self.start)
        return plain_step(plain_rprop(model.parameters()), model.loss_and_backward, self.X,
                          self.t, model)

    def handwritten_step(self) -> Step:
        """The tutorial's loop BPTT, vectorised over the batch: the baseline."""
        return flat_step(plain_rprop, HandwrittenCounter(*self.start), self.X, self.t)

    def closed_form_step(self) -> Step:
        """The closed form of the linear recurrence: algebra, an extra row."""
        return flat_step(plain_rprop, ClosedFormCounter(*self.start), self.X, self.t)


def counter_setup(n_sequences: int, length: int, seed: int = 0) -> CounterSetup:
    """The counter's data as the write-up draws it: `n_sequences` of `length` bits."""
    X, t = counting_data(np.random.default_rng(seed), n_sequences, length)
    return CounterSetup(X, t)


#: The cells of the GRU and LSTM rows: engine model, hand-written model.
CELLS = {"gru": (ScanGRU, HandwrittenGRU), "lstm": (ScanLSTM, HandwrittenLSTM)}


@dataclasses.dataclass
class CellSetup:
    """A GRU or LSTM (`kind`) with a readout on the adder's data (binary sums, a logit per
    bit), its starting parameters and a plain SGD step of rate `lr` (`optim.SGD` for the
    engine, `plain_sgd` for the hand-written BPTT)."""

    kind: str
    hidden: int
    start: dict[str, np.ndarray]
    X: np.ndarray
    T: np.ndarray
    lr: float
    dtype: np.dtype

    def engine(self) -> Any:
        engine_class, _ = CELLS[self.kind]
        model = engine_class(self.X.shape[2], self.hidden, rng=np.random.default_rng(0),
                             dtype=self.dtype)
        model.load_state_dict(self.start)
        return model

    def handwritten(self) -> HandwrittenGRU | HandwrittenLSTM:
        _, handwritten_class = CELLS[self.kind]
        return handwritten_class(self.X.shape[2], self.hidden, self.start, dtype=self.dtype)

    def engine_step(self, objective_of: ObjectiveMaker = engine_objective) -> Step:
        model = self.engine()
        return training_step(optim.SGD(list(model.parameters()), lr=self.lr),
                             objective_of(model), self.X, self.T)

    def handwritten_step(self) -> Step:
        """The baseline: `flat_step` on the hand-written cell."""
        return flat_step(lambda params: plain_sgd(params, lr=self.lr), self.handwritten(),
                         self.X, self.T)


def cell_setup(kind: str, batch: int, timesteps: int, hidden: int, dtype: Any = np.float64,
               *, lr: float = 0.1, seed: int = 0) -> CellSetup:
    """A `kind` ("gru" or "lstm") cell of `hidden` units initialised as the engine does, and
    a minibatch of random sums of `timesteps` bits."""
    engine_class, _ = CELLS[kind]
    rng = np.random.default_rng(seed)
    start = engine_class(2, hidden, rng=rng, dtype=dtype).state_dict()
    X, T = sum_bits(rng, batch, timesteps, dtype)
    return CellSetup(kind, hidden, start, X, T, lr, np.dtype(dtype))
