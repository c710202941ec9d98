"""What the `minigrad` commands run: training the counter and the adders, and comparing the
engine models with the hand-coded references. Each function prints its results and is
callable from Python with the same options as the command line."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from argparse import Namespace
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

import minigrad as mg
import optim

from . import checkpoints, plots
from .adder import Adder
from .counter import Counter
from .data import addition_data, bits_to_int, counting_data, encode_sum, format_sample
from .presets import AdderConfig, TrainConfig, get_preset
from .progress import ProgressBar
from .reference import ReferenceAdder, ReferenceCounter
from .training import Accuracy, History, accuracy, engine_objective, train

# Seeds whose run of the preset, as published, reaches 100% on fresh sums (SPEC 2 warns that
# not every start converges). Checked by tests/test_training.py.
DEFAULT_SEEDS = {"small": 1, "large": 0, "keras": 0}

# The counter's data (SPEC 1): 20 sequences of 10 bits.
COUNTER_SEQUENCES, COUNTER_LENGTH = 20, 10


# --- the counter ----------------------------------------------------------------------------


def train_counter(args: Namespace, out: TextIO | None = None) -> int:
    """RProp, full batch, from (args.w_x, args.w_rec); prints the path and a test count.

    With `args.plot` (a directory) draws the loss surface with the RProp path and the
    gradient per timestep there; with `args.save` writes the trained counter."""
    out = _stream(out)
    plot_dir, save_path = getattr(args, "plot", None), getattr(args, "save", None)
    if plot_dir is not None:
        plots.require_matplotlib()  # before training, not after
    seed = 0 if args.seed is None else args.seed
    X, t = counting_data(np.random.default_rng(seed), COUNTER_SEQUENCES, COUNTER_LENGTH)
    model = Counter(args.w_x, args.w_rec)
    optimizer = optim.RProp(model.parameters(), eta_plus=args.eta_plus,
                            eta_minus=args.eta_minus, step_init=args.step_init)
    bar = ProgressBar(args.iterations, "counter", quiet=args.quiet, stream=out)
    bar.print(f"Training the counter: RProp, full batch of {len(X)} sequences of {X.shape[1]}, "
        f"{args.iterations} iterations from w_x = {args.w_x}, w_rec = {args.w_rec}")
    path = [(model.w_x.item(), model.w_rec.item())]

    def report(p) -> None:
        path.append((model.w_x.item(), model.w_rec.item()))
        if p.step % max(args.iterations // 10, 1) == 0 or p.step == p.total_steps:
            bar.print(f"  iteration {p.step:>5}/{p.total_steps}  loss {p.loss:.4g}  "
                f"w_x {model.w_x.item():+.4f}  w_rec {model.w_rec.item():+.4f}")

    with bar:
        train(engine_objective(model), optimizer, X, t, epochs=args.iterations,
              batch_size=len(X), rng=np.random.default_rng(seed), callback=bar.chain(report))
    sequence = np.array([[1, 0, 1, 1, 0, 0, 1, 0, 1, 0]], dtype=np.float64)
    prediction = model(sequence).item()
    print(f"w_x = {model.w_x.item():.4f}, w_rec = {model.w_rec.item():.4f}", file=out)
    print(f"count of {''.join(str(int(b)) for b in sequence[0])}: {prediction:.2f} "
          f"(true: {int(sequence.sum())})", file=out)
    if save_path is not None:
        checkpoints.save_counter(model, save_path)
        print(f"saved the counter to {save_path}", file=out)
    if plot_dir is not None:
        for written in counter_figures(X, t, path, plot_dir):
            print(f"wrote {written}", file=out)
    return 0


def counter_figures(X: np.ndarray, t: np.ndarray, path: Any, directory: str) -> list[str]:
    """The counter's two figures (SPEC 1) in `directory`: the loss surface with the
    optimizer's `path` of (w_x, w_rec), and the gradient per timestep at the four points."""
    return [
        plots.plot_counter_loss_surface(X, t, path,
                                        os.path.join(directory, "counter_loss_surface.png")),
        plots.plot_counter_gradients(X, t, os.path.join(directory, "counter_gradients.png")),
    ]


# --- the adder ------------------------------------------------------------------------------


@dataclasses.dataclass
class AdderRun:
    model: Adder
    history: History
    accuracy: Accuracy  # on held-out sums
    seed: int
    # (step, held-out accuracy) during training, when asked for with `accuracy_every`
    accuracy_curve: list[tuple[int, Accuracy]] = dataclasses.field(default_factory=list)


def adder_settings(args: Namespace) -> tuple[AdderConfig, TrainConfig, int]:
    """The preset with the command line's overrides, and the seed to start from."""
    config, settings = get_preset(args.preset)
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size,
                 "n_samples": args.samples, "lr": args.lr, "decay": args.decay,
                 "momentum": args.momentum, "eps": args.eps}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "n_samples" in overrides and "batch_size" not in overrides:
        overrides["batch_size"] = min(settings.batch_size, overrides["n_samples"])
    settings = dataclasses.replace(settings, **overrides)
    seed = DEFAULT_SEEDS[args.preset] if args.seed is None else args.seed
    return config, settings, seed


def train_adder_once(config: AdderConfig, settings: TrainConfig, seed: int, *,
                     test_samples: int = 1000, callback: Callable | None = None,
                     accuracy_every: int | None = None) -> AdderRun:
    """One run from the initialisation and data of `seed`; accuracy on fresh sums.

    With `accuracy_every`, the held-out accuracy is also measured every that many steps
    (and at the last), into `AdderRun.accuracy_curve`; training is not affected.
    """
    rng = np.random.default_rng(seed)
    model = Adder(config, rng=rng)
    X, T = addition_data(rng, settings.n_samples, config.n_bits, config.max_operand)
    X_test, T_test = addition_data(np.random.default_rng([seed, 1]), test_samples,
                                   config.n_bits, config.max_operand)
    optimizer = make_optimizer(settings, model.parameters())
    curve: list[tuple[int, Accuracy]] = []
    if accuracy_every is not None:
        curve.append((0, accuracy(model.predict_bits(X_test), T_test)))
        inner = callback

        def callback(p) -> None:
            if p.step % accuracy_every == 0 or p.step == p.total_steps:
                curve.append((p.step, accuracy(model.predict_bits(X_test), T_test)))
            if inner is not None:
                inner(p)

    history = train(engine_objective(model), optimizer, X, T, epochs=settings.epochs,
                    batch_size=settings.batch_size, rng=rng, callback=callback)
    return AdderRun(model, history, accuracy(model.predict_bits(X_test), T_test), seed, curve)


def make_optimizer(settings: TrainConfig, params: Any) -> optim.Optimizer:
    if settings.optimizer == "sgd":
        return optim.SGD(params, lr=settings.lr)
    return optim.RMSPropNesterov(params, lr=settings.lr, decay=settings.decay,
                                 momentum=settings.momentum, eps=settings.eps)


def train_adder(args: Namespace, out: TextIO | None = None) -> int:
    """Train the preset (restarting while below 100% if asked), then show fresh sums.

    With `args.plot` (a directory) draws the loss per minibatch and the held-out accuracy
    of the last run; with `args.save` writes the trained adder, with its preset."""
    out = _stream(out)
    plot_dir, save_path = getattr(args, "plot", None), getattr(args, "save", None)
    if plot_dir is not None:
        plots.require_matplotlib()
    config, settings, seed = adder_settings(args)
    say = _printer(out, args.quiet)
    say(f"Training the {args.preset} adder: {config.n_bits} bits, {config.n_states} "
        f"{config.activation} states, {settings.n_samples} samples, minibatches of "
        f"{settings.batch_size}, {settings.epochs} epoch(s), {settings.optimizer} lr {settings.lr}")
    # 50 points of held-out accuracy over the run: 50 forward passes, no backward.
    every = max(settings.total_steps // 50, 1) if plot_dir is not None else None
    for attempt in range(args.restarts + 1):
        run_seed = seed + attempt
        with ProgressBar(settings.total_steps, f"seed {run_seed}", quiet=args.quiet,
                         stream=out) as bar:
            run = train_adder_once(config, settings, run_seed, test_samples=args.test_samples,
                                   callback=bar.chain(_epoch_reporter(bar.print, settings)),
                                   accuracy_every=every)
        say(f"seed {run_seed}: {run.accuracy} on {args.test_samples} held-out sums")
        if run.accuracy.sums == 1.0:
            break
        if attempt < args.restarts:
            say("below 100%: restarting from a fresh initialisation")
    show_sums(run.model, config, np.random.default_rng([run.seed, 2]), out)
    print(f"held-out accuracy: {run.accuracy} ({args.test_samples} sums, seed {run.seed})",
          file=out)
    if save_path is not None:
        checkpoints.save_adder(run.model, save_path, preset=args.preset)
        print(f"saved the {args.preset} adder to {save_path}", file=out)
    if plot_dir is not None:
        written = adder_figure(run, settings, args.preset, args.test_samples, plot_dir)
        print(f"wrote {written}", file=out)
    return 0


def adder_figure(run: AdderRun, settings: TrainConfig, preset: str, test_samples: int,
                 directory: str) -> str:
    """The run's loss per minibatch and held-out accuracy, as `adder_<preset>_training.png`."""
    title = (f"{preset} adder, seed {run.seed}: loss per minibatch of {settings.batch_size}, "
             f"{settings.optimizer} lr {settings.lr:g}")
    return plots.plot_adder_training(
        run.history.losses, run.accuracy_curve,
        os.path.join(directory, f"adder_{preset}_training.png"),
        steps_per_epoch=settings.steps_per_epoch, title=title,
        accuracy_title=f"accuracy on {test_samples} held-out sums, during training")


def _epoch_reporter(say: Callable[[str], None], settings: TrainConfig) -> Callable:
    window: list[float] = []
    every = settings.steps_per_epoch if settings.steps_per_epoch <= 1000 else 10_000

    def report(p) -> None:
        window.append(p.loss)
        if p.step % every == 0 or p.step == p.total_steps:
            unit = f"epoch {p.epoch}/{p.epochs}" if every == settings.steps_per_epoch \
                else f"step {p.step}/{p.total_steps}"
            say(f"  {unit}  mean loss {np.mean(window):.4g}")
            window.clear()

    return report


def show_sums(model: Adder, config: AdderConfig, rng: np.random.Generator, out: TextIO,
              count: int = 5) -> None:
    """Fresh sums in the write-ups' layout: operands, target and the model's answer."""
    X, T = addition_data(rng, count, config.n_bits, config.max_operand)
    Y = model.predict_bits(X)
    for x, t, y in zip(X, T, Y):
        print(format_sample(x, t, y), file=out)
        print(file=out)


# --- a saved adder at work -----------------------------------------------------------------


def add_numbers(args: Namespace, out: TextIO | None = None) -> int:
    """`minigrad add A B --model PATH`: the saved adder adds A and B; prints the sum in the
    write-ups' layout (bits least significant first) and the integer answer."""
    out = _stream(out)
    model, preset = checkpoints.load_adder(args.model, getattr(args, "preset", None))
    config = model.config
    a, b = args.a, args.b
    if a + b >= 2**config.n_bits:
        raise ValueError(f"{a} + {b} = {a + b} does not fit in the {preset} adder's "
                         f"{config.n_bits} bits (the sum must be below {2**config.n_bits})")
    X, T = encode_sum(np.int64(a), np.int64(b), config.n_bits)
    Y = model.predict_bits(X)
    print(format_sample(X[0], T[0], Y[0]), file=out)
    answer = int(bits_to_int(Y[0, :, 0]))
    verdict = "right" if answer == a + b else f"wrong, the sum is {a + b}"
    print(f"{a} + {b} = {answer} ({verdict})", file=out)
    outside = [v for v in (a, b) if v >= config.operand_limit]
    if outside:
        print(f"note: {', '.join(map(str, outside))} is outside the training range "
              f"[0, {config.operand_limit})", file=out)
    return 0


def evaluate_adder(args: Namespace, out: TextIO | None = None) -> int:
    """`minigrad eval adder --model PATH`: per-bit and whole-sum accuracy on fresh sums."""
    out = _stream(out)
    model, preset = checkpoints.load_adder(args.model, getattr(args, "preset", None))
    config = model.config
    X, T = addition_data(np.random.default_rng(args.seed), args.samples, config.n_bits,
                         config.max_operand)
    result = accuracy(model.predict_bits(X), T)
    print(f"{preset} adder from {args.model}: {result} on {args.samples} fresh sums "
          f"(operands below {config.operand_limit}, seed {args.seed})", file=out)
    return 0


# --- the computation graph -------------------------------------------------------------------


def print_graph(args: Namespace, out: TextIO | None = None) -> int:
    """`minigrad graph counter|adder`: the graph of the loss on a short sequence, as DOT."""
    out = _stream(out)
    rng = np.random.default_rng(0)
    if args.model == "counter":
        model: Any = Counter()
        X, T = counting_data(rng, args.batch_size, args.steps)
    else:
        config, _ = get_preset(args.preset)
        # The same network on shorter sums: the weights do not depend on the length.
        config = dataclasses.replace(config, n_bits=args.steps, max_operand=None)
        model = Adder(config, rng=rng)
        X, T = addition_data(rng, args.batch_size, config.n_bits)
    loss = model.loss(X, T)
    out.write(mg.to_dot(loss, model, title=f"{args.model} loss, {args.steps} steps"))
    return 0


# --- engine vs hand-coded -------------------------------------------------------------------


def compare(args: Namespace, out: TextIO | None = None) -> int:
    """Same parameters and data through the engine model and the hand-coded reference:
    the loss, the largest gradient difference per parameter, and the time per step."""
    out = _stream(out)
    rng = np.random.default_rng(args.seed)
    engine: Counter | Adder
    reference: Any  # ReferenceCounter or ReferenceAdder: the same interface
    if args.model == "counter":
        engine = Counter(*rng.uniform(-1.5, 1.5, size=2))
        reference = ReferenceCounter(engine.w_x.item(), engine.w_rec.item())
        X, T = counting_data(rng, COUNTER_SEQUENCES, COUNTER_LENGTH)
        title = f"counter, {len(X)} sequences of {X.shape[1]}"
    else:
        config, _ = get_preset(args.preset)
        engine = Adder(config, rng=rng)
        reference = ReferenceAdder(config)
        reference.load_parameters(engine.state_dict())
        X, T = addition_data(rng, args.batch_size, config.n_bits, config.max_operand)
        title = f"{args.preset} adder, batch of {len(X)}"
    engine_step = _timed_step(engine.zero_grad, engine_objective(engine), X, T)
    reference_step = _timed_step(reference.zero_grad, reference.loss_and_backward, X, T)
    engine_loss, reference_loss = engine_step(), reference_step()
    print(f"{title}: forward + backward on the same parameters and data", file=out)
    print(f"  loss       engine {engine_loss:.12g}   hand-coded {reference_loss:.12g}", file=out)
    references = dict(reference.named_parameters())
    for name, p in engine.named_parameters():
        engine_grad, reference_grad = np.asarray(p.grad), np.asarray(references[name].grad)
        difference = np.max(np.abs(engine_grad - reference_grad))
        scale = np.max(np.abs(reference_grad))
        print(f"  {name:<18} max |grad difference| {difference:.2e}  (largest |grad| "
              f"{scale:.2e})", file=out)
    engine_time, reference_time = _median_times(engine_step, reference_step, args.repeats)
    print(f"  time/step  engine {engine_time * 1e6:.1f} us   hand-coded "
          f"{reference_time * 1e6:.1f} us   ratio {engine_time / reference_time:.2f} "
          f"(median of {args.repeats}, alternating)", file=out)
    return 0


def _timed_step(zero_grad: Callable, objective: Callable, X, T) -> Callable[[], float]:
    def step() -> float:
        zero_grad()
        return objective(X, T)

    return step


def _median_times(a: Callable, b: Callable, repeats: int) -> tuple[float, float]:
    """Median time of each, interleaved so that both see the same machine load."""
    for _ in range(min(10, repeats)):
        a(), b()
    times_a, times_b = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        a()
        middle = time.perf_counter()
        b()
        times_a.append(middle - start)
        times_b.append(time.perf_counter() - middle)
    return float(np.median(times_a)), float(np.median(times_b))


def _stream(out: TextIO | None) -> TextIO:
    # sys.stdout when called, not when this module was imported (it may have been replaced
    # since, by a test's capture or a redirect).
    return sys.stdout if out is None else out


def _printer(out: TextIO, quiet: bool) -> Callable[[str], None]:
    def say(line: str) -> None:
        if not quiet:
            print(line, file=out, flush=True)

    return say
