"""Training, restarting and evaluating the write-ups' models; no printing, no files.

Every function takes the typed settings of `minigrad.models.presets` and returns what happened, so
that the command line (`minigrad.models.commands`), the tests and Python code use the same runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import minigrad as mg

from .adder import Adder
from .comparison import (
    GradientDifference,
    gradient_differences,
    reference_adder,
    reference_counter,
)
from .counter import Counter
from .data import addition_data, counting_data
from .presets import AdderConfig, CounterTraining, TrainConfig, get_preset
from .timing import alternate
from .training import (
    Accuracy,
    History,
    Progress,
    accuracy,
    engine_objective,
    percent,
    train,
)

__all__ = [
    "COUNTER_TEST_SEQUENCE",
    "DEFAULT_SEEDS",
    "EVALUATION_BATCH",
    "AdderRun",
    "Comparison",
    "CountAccuracy",
    "CounterRun",
    "compare",
    "computation_graph",
    "count_accuracy",
    "evaluate_adder",
    "evaluate_counter",
    "held_out_seed",
    "train_adder_once",
    "train_counter",
    "train_until_learned",
]

# Seeds whose run of the preset, as published, reaches 100% on fresh sums: part 2 of "How to
# implement an RNN" warns that not every start converges. Checked by tests/test_training.py.
DEFAULT_SEEDS = {"small": 1, "large": 0, "keras": 0}

# The sequence `train counter` counts at the end: five ones in ten.
COUNTER_TEST_SEQUENCE = np.array([[1, 0, 1, 1, 0, 0, 1, 0, 1, 0]], dtype=np.float64)

# Evaluation draws and runs this many samples at a time, so that memory stays bounded
# whatever the number of samples asked for (a sample of 13 bits costs some 5 kB in the
# forward pass: 10,000 of them about 50 MB).
EVALUATION_BATCH = 10_000

Callback = Callable[[Progress], Any]


def held_out_seed(seed: int) -> list[int]:
    """The seed of the fresh data that measure a run of `seed`: `train adder --seed N`
    reports its accuracy on the sums of `default_rng(held_out_seed(N))`, and `eval --seed
    N` draws from the same stream. It is not the stream the model and the training data
    come from (`default_rng(seed)`), though a sum or sequence may recur by chance (a small
    adder has 64 x 64 operand pairs)."""
    return [seed, 1]


# --- the counter ----------------------------------------------------------------------------


@dataclasses.dataclass
class CounterRun:
    model: Counter
    X: np.ndarray  # the training sequences
    t: np.ndarray  # their counts
    path: list[tuple[float, float]]  # (w_x, w_rec) from the start, one point per step
    history: History

    def learned(self) -> bool:
        """Whether every training sequence, and `COUNTER_TEST_SEQUENCE`, is counted right
        (the output rounds to the number of ones)."""
        X = np.concatenate([self.X, COUNTER_TEST_SEQUENCE])
        t = np.concatenate([self.t, COUNTER_TEST_SEQUENCE.sum(axis=1)])
        return count_accuracy(self.model, X, t).right == 1.0


def train_counter(settings: CounterTraining,
                  callback: Callable[[Progress, tuple[float, float]], Any] | None = None, *,
                  compiled: bool = False) -> CounterRun:
    """RProp, full batch, from (settings.w_x, settings.w_rec) on the sequences of
    settings.seed; `callback` sees every step's `Progress` and the (w_x, w_rec) reached.
    `compiled` computes the loss with `minigrad.compile` (the same numbers, faster)."""
    rng = np.random.default_rng(settings.seed)
    X, t = counting_data(rng, settings.sequences, settings.length)
    model = Counter(settings.w_x, settings.w_rec)
    path = [(model.w_x.item(), model.w_rec.item())]

    def record(progress: Progress) -> None:
        path.append((model.w_x.item(), model.w_rec.item()))
        if callback is not None:
            callback(progress, path[-1])

    history = train(engine_objective(model, compiled),
                    settings.create_optimizer(model.parameters()), X, t,
                    epochs=settings.iterations, batch_size=len(X), rng=rng, callback=record)
    return CounterRun(model, X, t, path, history)


@dataclasses.dataclass(frozen=True)
class CountAccuracy:
    right: float       # fraction of sequences whose output rounds to their count
    mean_error: float  # mean |output - count|

    def __str__(self) -> str:
        return (f"{percent(self.right)} of counts right, mean error "
                f"{self.mean_error:.3g}")


def count_accuracy(model: Counter, X: np.ndarray, t: np.ndarray) -> CountAccuracy:
    """How well `model` counts the ones of the sequences X (n, length) with counts t."""
    with mg.no_grad():
        output = model(X).data
    return CountAccuracy(float(np.mean(np.round(output) == t)),
                         float(np.mean(np.abs(output - t))))


def evaluate_counter(model: Counter, n_sequences: int, length: int, seed: int | list[int], *,
                     batch_size: int = EVALUATION_BATCH) -> CountAccuracy:
    """`count_accuracy` on `n_sequences` fresh sequences of `length` drawn from `seed`, in
    batches of at most `batch_size` sequences (memory does not grow with n_sequences)."""
    rng = np.random.default_rng(seed)
    right = error = 0.0
    for size in _batch_sizes(n_sequences, batch_size):
        X, t = counting_data(rng, size, length)
        result = count_accuracy(model, X, t)
        right += result.right * size
        error += result.mean_error * size
    return CountAccuracy(right / n_sequences, error / n_sequences)


# --- the adder ------------------------------------------------------------------------------


@dataclasses.dataclass
class AdderRun:
    model: Adder
    history: History
    accuracy: Accuracy  # on held-out sums
    seed: int
    # (step, held-out accuracy) during training, when asked for with `accuracy_every`
    accuracy_curve: list[tuple[int, Accuracy]] = dataclasses.field(default_factory=list)

    def learned(self) -> bool:
        """Whether every held-out sum came out right."""
        return self.accuracy.sums == 1.0


def train_adder_once(config: AdderConfig, settings: TrainConfig, seed: int, *,
                     test_samples: int = 1000, callback: Callback | None = None,
                     accuracy_every: int | None = None, compiled: bool = False) -> AdderRun:
    """One run from the initialisation and data of `seed`; accuracy on fresh sums.

    One generator, `default_rng(seed)`, draws the model, then the training sums, then the
    minibatches; the held-out sums come from `default_rng(held_out_seed(seed))`. With
    `accuracy_every`, the held-out accuracy is also measured every that many steps (and at
    the last), into `AdderRun.accuracy_curve`; training is not affected. `compiled` computes
    the loss with `minigrad.compile` (the same numbers, faster).
    """
    rng = np.random.default_rng(seed)
    model = Adder(config, rng=rng)
    X, T = addition_data(rng, settings.n_samples, config.n_bits, config.max_operand)

    def held_out() -> Accuracy:
        # The same fresh sums every time, drawn batch by batch: bounded memory.
        return evaluate_adder(model, test_samples, held_out_seed(seed))

    curve: list[tuple[int, Accuracy]] = []
    on_step = callback
    if accuracy_every is not None:
        curve.append((0, held_out()))
        every = accuracy_every

        def on_step(p: Progress) -> None:
            if p.step % every == 0 or p.step == p.total_steps:
                curve.append((p.step, held_out()))
            if callback is not None:
                callback(p)

    history = train(engine_objective(model, compiled),
                    settings.create_optimizer(model.parameters()), X, T,
                    epochs=settings.epochs, batch_size=settings.batch_size, rng=rng,
                    callback=on_step)
    return AdderRun(model, history, held_out(), seed, curve)


def train_until_learned(train_once: Callable[[int], AdderRun], seed: int, restarts: int,
                        on_result: Callable[[AdderRun, bool], Any] | None = None) -> AdderRun:
    """`train_once(seed)`, then `train_once(seed + 1)`, ... while a run has not learned,
    at most `restarts` times more; returns the last run. `on_result(run, will_restart)`
    sees every run."""
    for attempt in range(restarts + 1):
        run = train_once(seed + attempt)
        will_restart = not run.learned() and attempt < restarts
        if on_result is not None:
            on_result(run, will_restart)
        if not will_restart:
            break
    return run


def evaluate_adder(model: Adder, n_samples: int, seed: int | list[int], *,
                   batch_size: int = EVALUATION_BATCH) -> Accuracy:
    """Per-bit and whole-sum accuracy on `n_samples` fresh sums drawn from
    `numpy.random.default_rng(seed)` (operands below the model's `operand_limit`), in
    batches of at most `batch_size` sums: memory is bounded by the batch, not by
    `n_samples`."""
    config = model.config
    rng = np.random.default_rng(seed)
    bits_right = sums_right = 0.0
    for size in _batch_sizes(n_samples, batch_size):
        X, T = addition_data(rng, size, config.n_bits, config.max_operand)
        result = accuracy(model.predict_bits(X), T)
        bits_right += result.bits * size
        sums_right += result.sums * size
    return Accuracy(bits_right / n_samples, sums_right / n_samples)


def _batch_sizes(total: int, batch_size: int) -> Iterator[int]:
    if total < 1 or batch_size < 1:
        raise ValueError(f"need at least one sample and a batch of at least one, got {total} "
                         f"samples in batches of {batch_size}")
    for start in range(0, total, batch_size):
        yield min(batch_size, total - start)


# --- engine vs hand-coded -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Comparison:
    title: str
    engine_loss: float
    reference_loss: float
    gradients: list[GradientDifference]
    engine_seconds: float     # median time of one forward + backward
    reference_seconds: float
    repeats: int


def compare(model: str, *, preset: str = "small", batch_size: int = 100, repeats: int = 200,
            seed: int = 0) -> Comparison:
    """The engine model and the hand-coded reference (`model` "counter" or "adder") on the
    same parameters and data: both losses, every parameter's gradient difference, and the
    median time of a forward and backward pass (`minigrad.models.timing.alternate`)."""
    rng = np.random.default_rng(seed)
    engine: Counter | Adder
    if model == "counter":
        engine = Counter(*rng.uniform(-1.5, 1.5, size=2))
        reference: Any = reference_counter(engine)
        counter = CounterTraining()
        X, T = counting_data(rng, counter.sequences, counter.length)
        title = f"counter, {len(X)} sequences of {X.shape[1]}"
    elif model == "adder":
        config, _ = get_preset(preset)
        engine = Adder(config, rng=rng)
        reference = reference_adder(engine)
        X, T = addition_data(rng, batch_size, config.n_bits, config.max_operand)
        title = f"{preset} adder, batch of {len(X)}"
    else:
        raise ValueError(f"compare: model must be counter or adder, got {model!r}")
    objective = engine_objective(engine)

    def engine_step() -> float:
        engine.zero_grad()
        return objective(X, T)

    def reference_step() -> float:
        reference.zero_grad()
        return float(reference.loss_and_backward(X, T))

    engine_loss, reference_loss = engine_step(), reference_step()
    differences = gradient_differences(engine, reference)
    times = alternate({"engine": engine_step, "reference": reference_step}, repeats=repeats,
                      warmup=min(10, repeats))
    return Comparison(title, engine_loss, reference_loss, differences,
                      times["engine"].median, times["reference"].median, repeats)


# --- the computation graph -------------------------------------------------------------------


def computation_graph(model: str, *, steps: int = 3, batch_size: int = 2,
                      preset: str = "small") -> str:
    """The graph of the loss of `model` ("counter" or "adder") on `batch_size` random
    sequences of `steps` timesteps, as Graphviz DOT text. The adder has the preset's
    architecture on sums of `steps` bits (its weights do not depend on the length). The
    recurrence is drawn unrolled, step by step."""
    rng = np.random.default_rng(0)
    network: Counter | Adder
    if model == "counter":
        network = Counter()
        X, T = counting_data(rng, batch_size, steps)
    elif model == "adder":
        config, _ = get_preset(preset)
        config = dataclasses.replace(config, n_bits=steps, max_operand=None)
        network = Adder(config, rng=rng)
        X, T = addition_data(rng, batch_size, config.n_bits)
    else:
        raise ValueError(f"computation_graph: model must be counter or adder, got {model!r}")
    # The unrolled graph, an op per step, rather than the one scan node training runs: the
    # same loss, drawn as the write-ups draw the network.
    loss, _ = network.loss_and_states(X, T)
    return mg.to_dot(loss, network, title=f"{model} loss, {steps} steps")
