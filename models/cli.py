"""The `minigrad` command: train the write-ups' models, use the trained ones, and compare
the engine with hand-coded backpropagation.

commands:
  minigrad train counter            RProp from (w_x, w_rec) = (-1.5, 2) until it counts ones
  minigrad train adder              the RNN that adds binary numbers (--preset small|large|keras)
  minigrad compare counter|adder    engine vs hand-coded: loss, gradients (agree?), time
  minigrad add A B --model PATH     a saved adder adds two numbers
  minigrad eval adder|counter --model PATH
                                    a saved model's accuracy on fresh data
  minigrad graph counter|adder      the loss's computation graph as Graphviz DOT

`train ... --plot DIR` draws the figures (needs matplotlib), `--save PATH` keeps the model.
Every command runs NumPy's BLAS on one thread (`--threads N`, before or after the command,
to change it): the models' matrices are small, and more threads only wait on each other.
A seed trains the same model at the same thread count and BLAS kernel, not across them.
Exit status: 0 done (a training run that did not learn ends with a warning line on stderr;
output piped into a reader that stops early, like `head`, is dropped while the command runs
to the end, saving and drawing as asked; so is a warning or error that stderr cannot take,
the status staying the same), 2 a bad option or file, or standard output that could not be
written, full or closed (one line on stderr, after saving), 130 interrupted (Ctrl-C), 143
terminated (SIGTERM): a file half written is removed, the old one kept.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import errno
import inspect
import io
import os
import platform
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

import numpy as np
from threadpoolctl import threadpool_limits

import minigrad
from minigrad import optim

from . import commands
from .data import MAX_BITS
from .plots import MatplotlibMissing
from .presets import PRESET_DESCRIPTIONS, PRESETS, CounterTraining
from .runs import DEFAULT_SEEDS, EVALUATION_BATCH

__all__ = ["build_parser", "main", "nonnegative_int", "positive_int"]

_COUNTER = CounterTraining()  # the defaults of `train counter` and `eval counter`


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (exit code 2) instead of the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


# --- option types: each error names the value, argparse adds the option's name ------------


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1, else an error naming the value."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def nonnegative_int(text: str) -> int:
    """An argparse type: an integer >= 0, else an error naming the value."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def seed(text: str) -> int:
    """An argparse type: a seed, an integer in [0, 2**63 - 1] (what a checkpoint keeps)."""
    value = nonnegative_int(text)
    if value > _MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be at most 2**63 - 1, got {text}")
    return value


_MAX_SEED = 2**63 - 1


def _real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _rule(error: ValueError) -> str:
    # optim's checks say "<owner>: invalid <name>=<value>: must be <rule>"; the option's
    # name replaces the owner and the field's.
    _, _, rule = str(error).partition(": must be ")
    return f"must be {rule}" if rule else str(error)


def _hyperparameter(optimizer: type[optim.Optimizer], field: str) -> Callable[[str], float]:
    """The type of the option for `optimizer`'s `field`, checked by the optimizer's bound."""

    def parse(text: str) -> float:
        value = _real(text)
        try:
            optimizer.check(**{field: value})
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{_rule(error)}, got {text}") from None
        return value

    return parse


# RProp's smallest and largest step, which bound its first (no option changes them).
_RPROP_STEPS = tuple(inspect.signature(optim.RProp).parameters[name].default
                     for name in ("step_min", "step_max"))


def _step_init(text: str) -> float:
    value = _real(text)
    low, high = _RPROP_STEPS
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be in [{low:g}, {high:g}], RProp's smallest "
                                         f"and largest step, got {text}")
    return value


# --- the parser ------------------------------------------------------------------------------


def _preset_default(read: Callable[[Any], Any]) -> str:
    values = ", ".join(f"{name} {read(train)}" for name, (_, train) in PRESETS.items())
    return f"default: the preset's ({values})"


def _preset_help() -> str:
    return "; ".join(f"{name}: {text}" for name, text in PRESET_DESCRIPTIONS.items())


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="minigrad", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version",
                        version=f"minigrad {minigrad.__version__}")
    parser.add_argument("--threads", type=nonnegative_int, default=1, help=_THREADS_HELP)
    commands_ = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _train_parsers(commands_)
    _compare_parser(commands_)
    _add_parser(commands_)
    _eval_parser(commands_)
    _graph_parser(commands_)
    return parser


def _train_parsers(commands_: Any) -> None:
    train = commands_.add_parser("train", help="train a model and show what it learned",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 description="Train a model and show what it learned. A "
                                 "run that did not learn ends with a\nwarning line on stderr "
                                 "(the exit status stays 0). Each model's options follow.")
    models = train.add_subparsers(dest="model", metavar="MODEL", required=True,
                                  parser_class=_Parser)
    counter = models.add_parser(
        "counter", help="the linear RNN that counts the ones in a 0/1 sequence",
        description="The counter of part 1 of \"How to implement an RNN\": s_k = s_(k-1) "
        "w_rec + x_k w_x, trained by RProp on 20 sequences of 10 from a point of exploding "
        "gradient; it learns w_x = w_rec = 1.")
    counter.add_argument("--iterations", type=positive_int, default=_COUNTER.iterations,
                         help="RProp steps, full batch (default: %(default)s)")
    counter.add_argument("--w-x", type=_real, default=_COUNTER.w_x,
                         help="start of w_x (default: %(default)s)")
    counter.add_argument("--w-rec", type=_real, default=_COUNTER.w_rec,
                         help="start of w_rec (default: %(default)s)")
    counter.add_argument("--eta-plus", type=_hyperparameter(optim.RProp, "eta_plus"),
                         default=_COUNTER.eta_plus,
                         help="RProp's step growth while the gradient keeps its sign "
                              "(default: %(default)s)")
    counter.add_argument("--eta-minus", type=_hyperparameter(optim.RProp, "eta_minus"),
                         default=_COUNTER.eta_minus,
                         help="RProp's step shrink when the sign flips (default: %(default)s)")
    low, high = _RPROP_STEPS
    counter.add_argument("--step-init", type=_step_init, default=_COUNTER.step_init,
                         help=f"RProp's first step size, in [{low:g}, {high:g}]: RProp's "
                              f"smallest and largest step (default: %(default)s)")
    counter.add_argument("--seed", type=seed, default=_COUNTER.seed,
                         help="seed of the training sequences (default: %(default)s)")
    _outputs(counter, "counter")
    counter.set_defaults(run=_train_counter, diverged="try another start (--w-x, --w-rec)")

    adder = models.add_parser(
        "adder", help="the RNN that adds binary numbers",
        description="A tanh (or sigmoid) RNN that reads two numbers bit by bit, least "
        "significant first, and writes their sum. Presets: " + _preset_help() + ".")
    adder.add_argument("--preset", choices=sorted(PRESETS), default="small",
                       help="the write-up to follow (default: %(default)s)")
    adder.add_argument("--epochs", type=positive_int,
                       help="passes over the data (" +
                            _preset_default(lambda t: t.epochs) + ")")
    adder.add_argument("--batch-size", type=positive_int,
                       help="samples per minibatch (" +
                            _preset_default(lambda t: t.batch_size) + ")")
    adder.add_argument("--samples", type=positive_int,
                       help="training sums (" +
                            _preset_default(lambda t: t.n_samples) + ")")
    adder.add_argument("--lr", type=_hyperparameter(optim.RMSPropNesterov, "lr"),
                       help="learning rate (" + _preset_default(lambda t: t.lr) + ")")
    adder.add_argument("--decay", type=_hyperparameter(optim.RMSPropNesterov, "decay"),
                       help="RMSProp's decay of the mean square, in [0, 1) (default: 0.5; "
                            "the keras preset's SGD has none)")
    adder.add_argument("--momentum", type=_hyperparameter(optim.RMSPropNesterov, "momentum"),
                       help="momentum, in [0, 1): Nesterov's for small and large "
                            "(default: 0.8), SGD's for keras (default: 0)")
    adder.add_argument("--eps", type=_hyperparameter(optim.RMSPropNesterov, "eps"),
                       help="RMSProp's epsilon (default: 1e-06; the keras preset's SGD has "
                            "none)")
    adder.add_argument("--restarts", type=nonnegative_int, default=0,
                       help="start again from a fresh initialisation (the next seed), up to "
                            "this many times, while a run ends below 100%% of held-out sums "
                            "(default: %(default)s)")
    adder.add_argument("--test-samples", type=positive_int, default=1000,
                       help="held-out sums for the accuracy, from a stream apart from the "
                            "training data's (the same sums may recur: the small and keras "
                            "presets have 4096 and 16384 operand pairs); `eval adder --seed "
                            "N` draws the same ones (default: %(default)s)")
    seeds = ", ".join(f"{name} {seed}" for name, seed in DEFAULT_SEEDS.items())
    adder.add_argument("--seed", type=seed, default=None,
                       help=f"seed of the initialisation and the data (default: the preset's, "
                            f"one that converges: {seeds})")
    _outputs(adder, "adder")
    adder.set_defaults(run=_train_adder,
                       diverged="try a smaller --lr, another --seed, or --restarts N")
    train.epilog = "\n\n".join(model.format_help() for model in (counter, adder))


def _outputs(parser: argparse.ArgumentParser, model: str) -> None:
    parser.add_argument("--plot", metavar="DIR",
                        help="also draw the figures into DIR, created if missing, overwriting "
                             "figures of the same names there (PNG; needs matplotlib; "
                             "default: no figures)")
    parser.add_argument("--save", metavar="PATH",
                        help=f"also write the trained {model} to PATH (.npz), overwriting a "
                             f"file there, for `minigrad "
                             f"{'add or eval adder' if model == 'adder' else 'eval counter'}` "
                             f"(default: not saved)")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the results (default: also the progress)")
    _threads(parser)
    parser.add_argument("--compile", action="store_true",
                        help="compute the loss with minigrad.compile: traced once per batch "
                             "shape, then replayed as plain NumPy calls (the same numbers; a "
                             "training step takes about a third less time for the tutorial's "
                             "adder and half for the counter in benchmarks/RESULTS.md; "
                             "default: eager)")


_THREADS_HELP = ("threads of NumPy's BLAS, before or after the command; 0 leaves the "
                 "library's own setting (often one per core), slower for these small "
                 "matrices. Not only speed: BLAS sums in an order that depends on the "
                 "count (and on its kernel, OPENBLAS_CORETYPE), so a seed trains the same "
                 "model only at the same count and kernel; the default seeds are checked "
                 "at 1 (default: 1)")


def _threads(parser: argparse.ArgumentParser) -> None:
    # Without a default here: a value given before the command (`minigrad --threads 2
    # train ...`) stays unless the command's own --threads replaces it.
    parser.add_argument("--threads", type=nonnegative_int, default=argparse.SUPPRESS,
                        help=_THREADS_HELP)


def _compare_parser(commands_: Any) -> None:
    compare = commands_.add_parser(
        "compare", help="engine vs hand-coded backprop",
        description="The engine's model and the hand-written NumPy backpropagation on the "
        "same parameters and data: both losses, the largest gradient difference per "
        "parameter (engine name = the write-up's name), a verdict (they agree if every "
        "difference is within 1e-9 of the parameter's largest |grad|, and the losses within "
        "1e-9 of max(1, |loss|); else DIFFER, and exit status 1), and the median time of a "
        "forward and backward pass of each, timed in alternation.")
    compare.add_argument("model", choices=["counter", "adder"], metavar="MODEL",
                         help="counter or adder")
    compare.add_argument("--preset", choices=sorted(PRESETS),
                         help="adder only: the architecture (default: small)")
    compare.add_argument("--batch-size", type=positive_int,
                         help="adder only: sums in the batch (default: 100; the counter's "
                              "batch is its 20 training sequences)")
    compare.add_argument("--repeats", type=positive_int, default=200,
                         help="timed steps of each (default: %(default)s)")
    compare.add_argument("--seed", type=seed, default=0,
                         help="seed of the parameters and the data (default: %(default)s)")
    _threads(compare)
    compare.set_defaults(run=_compare, diverged="try another --seed")


def _add_parser(commands_: Any) -> None:
    add = commands_.add_parser(
        "add", help="a saved adder adds two numbers",
        description="A saved adder adds A and B. The sum is printed as the adder reads it: "
        "each number's bits in a row, least significant bit first (leftmost), so 6 reads "
        "011; rows x1 and x2 are A and B, t: the true sum, y: the adder's answer; the "
        "decimal value ends each row.")
    add.add_argument("a", type=nonnegative_int, metavar="A", help="an integer >= 0")
    add.add_argument("b", type=nonnegative_int, metavar="B", help="an integer >= 0")
    add.add_argument("--model", required=True, metavar="PATH",
                     help="an adder saved by `minigrad train adder --save PATH` (required)")
    add.add_argument("--preset", choices=sorted(PRESETS),
                     help="refuse a model saved with another preset (default: any preset)")
    _threads(add)
    add.set_defaults(run=_add, diverged="")


def _eval_parser(commands_: Any) -> None:
    evaluate = commands_.add_parser(
        "eval", help="a saved model's accuracy on fresh data",
        description="A saved adder's per-bit and whole-sum accuracy on held-out sums, or a "
        "saved counter's share of fresh sequences counted right (its output rounded) and "
        f"mean error. Samples are drawn and evaluated {EVALUATION_BATCH:,} at a time, so "
        "memory stays bounded for any --samples.")
    evaluate.add_argument("model_kind", choices=["adder", "counter"], metavar="MODEL",
                          help="adder or counter")
    evaluate.add_argument("--model", required=True, metavar="PATH",
                          help="a model saved by `minigrad train MODEL --save PATH` "
                               "(required)")
    evaluate.add_argument("--preset", choices=sorted(PRESETS),
                          help="adder only: refuse a model saved with another preset "
                               "(default: any preset)")
    evaluate.add_argument("--samples", type=positive_int, default=1000,
                          help="held-out sums or sequences (default: %(default)s)")
    evaluate.add_argument("--length", type=positive_int, default=None,
                          help=f"counter only: length of the sequences (default: "
                               f"{_COUNTER.length}, as in training)")
    evaluate.add_argument("--seed", type=seed, default=None,
                          help="seed of the fresh data: the held-out sums `train adder "
                               "--seed N` reports its accuracy on (--samples equal to "
                               "its --test-samples gives the same numbers); for a "
                               "counter, sequences apart from the training ones of `train "
                               "counter --seed N` (default: the seed of the run that saved "
                               "the model, else 0)")
    _threads(evaluate)
    evaluate.set_defaults(run=_evaluate, diverged="try shorter sequences (--length)",
                          diverged_adder="the saved weights overflow on these sums")


def _graph_parser(commands_: Any) -> None:
    graph = commands_.add_parser(
        "graph", help="the loss's computation graph as Graphviz DOT",
        description="The computation graph of the model's loss on a short random batch, as "
                    "Graphviz DOT text (render it with `dot -Tsvg`).")
    graph.add_argument("model", choices=["counter", "adder"], metavar="MODEL",
                       help="counter or adder")
    graph.add_argument("--steps", type=positive_int, default=3,
                       help=f"timesteps of the sequence; at most {MAX_BITS} for the adder "
                            f"(its sums' bits); for the counter about 500, as its state "
                            f"doubles every step from w_rec = 2 and the squared error "
                            f"overflows (the exact count depends on the batch's bits) "
                            f"(default: %(default)s)")
    graph.add_argument("--batch-size", type=positive_int, default=2,
                       help="sequences in the batch (default: %(default)s)")
    graph.add_argument("--preset", choices=sorted(PRESETS),
                       help="adder only: the architecture (default: small)")
    _threads(graph)
    graph.set_defaults(run=_graph, diverged="try fewer --steps")


# --- from the command line to the typed calls ------------------------------------------------


class _UsageError(Exception):
    """A bad combination of options: `main` prints it as argparse prints a bad value."""


def _train_counter(args: argparse.Namespace) -> int:
    settings = CounterTraining(iterations=args.iterations, w_x=args.w_x, w_rec=args.w_rec,
                               eta_plus=args.eta_plus, eta_minus=args.eta_minus,
                               step_init=args.step_init, seed=args.seed)
    return commands.train_counter(settings, commands.Outputs(args.plot, args.save, args.quiet),
                                  compiled=args.compile)


def _train_adder(args: argparse.Namespace) -> int:
    config, settings = PRESETS[args.preset]
    samples = settings.n_samples if args.samples is None else args.samples
    batch_size = args.batch_size
    if batch_size is None:
        batch_size = min(settings.batch_size, samples)
    elif batch_size > samples:
        raise _UsageError(f"argument --batch-size: {batch_size} is more than the {samples} "
                          f"training sums (--samples {samples})")
    overrides: dict[str, Any] = {"n_samples": samples, "batch_size": batch_size}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    for field in ("lr", "decay", "momentum", "eps"):
        value = getattr(args, field)
        if value is None:
            continue
        if not settings.takes(field):
            raise _UsageError(f"argument --{field}: the {args.preset} preset trains with "
                              f"{settings.optimizer}, which has no {field}")
        overrides[field] = value
    seed = DEFAULT_SEEDS[args.preset] if args.seed is None else args.seed
    if seed + args.restarts > _MAX_SEED:  # (a restart takes the next seed: keep it one a
        # checkpoint holds, and `eval --seed` takes)
        raise _UsageError(f"argument --restarts: {args.restarts} restarts from seed {seed} "
                          "would reach a seed past 2**63 - 1; give a smaller --seed")
    training = commands.AdderTraining(
        preset=args.preset, config=config, settings=dataclasses.replace(settings, **overrides),
        seed=seed, restarts=args.restarts, test_samples=args.test_samples,
        compiled=args.compile)
    return commands.train_adder(training, commands.Outputs(args.plot, args.save, args.quiet))


def _adder_only(args: argparse.Namespace, options: dict[str, str], command: str) -> None:
    """Refuse, for the counter, an option given that only the adder has."""
    if args.model != "counter":
        return
    for option, field in options.items():
        if getattr(args, field) is not None:
            raise _UsageError(f"argument {option}: applies to the adder only ({command} "
                              f"adder), not to the counter")


def _compare(args: argparse.Namespace) -> int:
    _adder_only(args, {"--preset": "preset", "--batch-size": "batch_size"}, "compare")
    return commands.compare(args.model, preset=args.preset or "small",
                            batch_size=args.batch_size or 100, repeats=args.repeats,
                            seed=args.seed)


def _add(args: argparse.Namespace) -> int:
    return commands.add_numbers(args.a, args.b, args.model, args.preset)


def _evaluate(args: argparse.Namespace) -> int:
    if args.model_kind == "counter":
        if args.preset is not None:
            raise _UsageError("argument --preset: only an adder has a preset (eval adder)")
        length = _COUNTER.length if args.length is None else args.length
        return commands.evaluate_counter(args.model, args.samples, length, args.seed)
    if args.length is not None:
        raise _UsageError("argument --length: only a counter reads sequences of a chosen "
                          "length (eval counter); an adder's length is its number of bits")
    return commands.evaluate_adder(args.model, args.samples, args.seed, args.preset)


def _graph(args: argparse.Namespace) -> int:
    if args.model == "adder" and args.steps > MAX_BITS:
        raise _UsageError(f"argument --steps: the adder's sums have at most {MAX_BITS} bits, "
                          f"got {args.steps}")
    _adder_only(args, {"--preset": "preset"}, "graph")
    return commands.print_graph(args.model, steps=args.steps, batch_size=args.batch_size,
                                preset=args.preset or "small")


class _StandardOutput(io.TextIOBase):
    """sys.stdout (or sys.stderr) for the length of a command, outliving its reader: once a
    write fails (a pipe closed early, as by `| head`; a full disk; a stream closed, or none
    at all when the command starts with it closed: `>&-`), the rest of the output is dropped
    and the command goes on, so that a training run still saves its model and draws its
    figures. Text the stream's encoding cannot hold (a path's "ü" under
    PYTHONIOENCODING=ascii) is written with backslash escapes. `failure` is the first error
    (None while all is written)."""

    def __init__(self, stream: TextIO | None):
        super().__init__()
        self.stream = stream
        self.failure: OSError | ValueError | None = None
        if stream is None:  # (Python sets sys.stdout to None when its descriptor is closed)
            self.failure = OSError(errno.EBADF, "it is closed")

    def write(self, text: str) -> int:
        if self.failure is None:
            assert self.stream is not None
            try:
                try:
                    self.stream.write(text)
                except UnicodeEncodeError:
                    self.stream.write(_escaped(text, self.encoding))
            except (OSError, ValueError) as error:  # (ValueError: a stream closed under it)
                self._drop(error)
        return len(text)

    def flush(self) -> None:
        # (not a stream closed under it: io's finaliser flushes this one when it goes)
        if self.failure is None and not getattr(self.stream, "closed", False):
            assert self.stream is not None
            try:
                self.stream.flush()
            except (OSError, ValueError) as error:
                self._drop(error)

    def isatty(self) -> bool:
        return self.failure is None and self.stream is not None and self.stream.isatty()

    def fileno(self) -> int:
        if self.stream is None:
            raise io.UnsupportedOperation("the stream is closed")
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]  # read-only, as sys.stdout.encoding
        return getattr(self.stream, "encoding", None) or "utf-8"

    def _drop(self, error: OSError | ValueError) -> None:
        self.failure = error
        # What the stream still holds would fail again when Python flushes it at exit:
        # point its file descriptor at os.devnull instead.
        try:
            descriptor = self.fileno()
        except (OSError, ValueError):  # not a file (a test's capture), or closed
            return
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, descriptor)
        os.close(null)


def _escaped(text: str, encoding: str) -> str:
    """`text` with what `encoding` cannot hold as backslash escapes (ü as \\xfc)."""
    return text.encode(encoding, "backslashreplace").decode(encoding)


def _lost_output(failure: OSError | ValueError, args: argparse.Namespace) -> str:
    """The error line for standard output that could not be written, saying what the
    command still did."""
    done = []
    if getattr(args, "save", None) is not None:
        done.append(f"the model was saved to {args.save}")
    if getattr(args, "plot", None) is not None:
        done.append(f"the figures were drawn into {args.plot}")
    if getattr(args, "command", None) == "train" and not done:
        done.append("without --save the model was not kept")
    finished = f"; the command ran to the end: {' and '.join(done)}" if done else ""
    reason = getattr(failure, "strerror", None) or failure
    return (f"cannot write to standard output ({reason}): the rest of "
            f"the output was dropped{finished}")


# glibc malloc's thresholds, as the benchmarks run (`benchmarks/allocator.py`): blocks below
# 32 MiB from the heap, which is trimmed only beyond 512 MiB, so that the arrays a training
# step allocates reuse memory already faulted in (under glibc's adaptive defaults a step at
# the benchmark's case B paid some 500 page faults). mallopt's parameter numbers: malloc.h.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MALLOC = {_M_MMAP_THRESHOLD: 32 * 2**20, _M_TRIM_THRESHOLD: 512 * 2**20}


def pin_malloc() -> None:
    """Fix glibc malloc's thresholds for this process (nothing on another C library, or
    where the caller set them: MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_)."""
    if platform.libc_ver()[0] != "glibc" or any(
            name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return
    for parameter, value in _MALLOC.items():
        mallopt(parameter, value)


def _hold_closed_descriptors() -> None:
    """Open os.devnull as standard output and error where they are closed (`>&-`): else the
    next file opened, a model being saved, takes the number, and what C code writes to
    stdout or stderr (a BLAS library's warning) would land in it."""
    for descriptor in (1, 2):
        try:
            os.fstat(descriptor)
        except OSError:
            null = os.open(os.devnull, os.O_WRONLY)
            if null != descriptor:
                os.dup2(null, descriptor)
                os.close(null)


def main(argv: Sequence[str] | None = None) -> int:
    pin_malloc()
    _hold_closed_descriptors()
    output = _StandardOutput(sys.stdout)
    sys.stdout = output  # type: ignore[assignment]  # a TextIO in all but name
    # Warnings and errors too: one that cannot be written (`2>&1 | head -1`, `2>&-`) is
    # dropped, and the command's exit status stays what it did.
    errors = _StandardOutput(sys.stderr)
    sys.stderr = errors  # type: ignore[assignment]
    args = argparse.Namespace()  # (none parsed: help printed)
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit:  # argparse's: after --help or --version (0), or an error
            output.flush()
            if exit.code != 0 or _lost(output) is None:
                raise
            code = 0  # (help that did not reach the reader: said below)
        else:
            if args.command is None:  # bare `minigrad`: what it can do
                parser.print_help()
                code = 0
            else:
                code = _run(args)
        output.flush()
        failure = _lost(output)
        if failure is not None and code == 0:  # (a failed command said why)
            print(f"minigrad: error: {_lost_output(failure, args)}", file=sys.stderr)
            code = 2
    finally:
        errors.flush()
        sys.stdout, sys.stderr = output.stream, errors.stream  # type: ignore[assignment]
    return code


def _lost(output: _StandardOutput) -> OSError | ValueError | None:
    """The error that standard output failed with, if not a pipe closed early: output piped
    into `head` and the like is not an error."""
    return None if isinstance(output.failure, BrokenPipeError) else output.failure


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is as Ctrl-C raises KeyboardInterrupt: a file half
    written is removed the same way, and the command ends with one line, exit status 143."""


def _terminate(signum: int, frame: Any) -> None:
    raise _Terminated


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises `_Terminated` for the length of the block, unless a handler other than
    the default is set (or this is not the main thread, which alone may set one)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return
    signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _file_state(path: str | None) -> tuple[int, ...] | None:
    """What tells one file at `path` from the next: a save renames a new file over it."""
    try:
        status = os.stat(path) if path is not None else None
    except OSError:
        return None
    return None if status is None else (status.st_dev, status.st_ino, status.st_size,
                                        status.st_mtime_ns)


def _run(args: argparse.Namespace) -> int:
    run: Callable[[argparse.Namespace], int] = args.run
    save = getattr(args, "save", None)
    before = _file_state(save)
    try:
        # Overflow and invalid values stop the run with one line instead of warnings and
        # a garbage result (underflow, e.g. exp(-1000) in sigmoid, is harmless).
        with (np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"),
              threadpool_limits(args.threads or None, user_api="blas"),
              _sigterm_as_interrupt()):
            return run(args)
    except _UsageError as error:
        print(f"minigrad: error: {error}", file=sys.stderr)
        return 2
    except MatplotlibMissing as error:
        print(f"minigrad: error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:
        diverged = args.diverged  # (eval's --length is the counter's only)
        if getattr(args, "model_kind", None) == "adder":
            diverged = args.diverged_adder
        advice = f"; {diverged}" if diverged else ""
        print(f"minigrad: error: the computation diverged ({error}){advice}",
              file=sys.stderr)
        return 2
    except ValueError as error:  # a bad value or file: one line, as argparse does
        print(f"minigrad: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # (Ctrl-C, or SIGTERM: `_Terminated`)
        # Stopped after the save's rename, the new model is there: say so.
        saved = (f" (the model was saved to {save})"
                 if save is not None and _file_state(save) != before else "")
        if isinstance(interrupt, _Terminated):
            print(f"minigrad: terminated{saved}", file=sys.stderr)
            return 143
        print(f"minigrad: interrupted{saved}", file=sys.stderr)
        return 130
    except OSError as error:  # a file that cannot be read or written after all
        print(f"minigrad: error: {error}", file=sys.stderr)
        return 2
    except MemoryError:  # sizes the options allow but this machine cannot hold
        print("minigrad: error: out of memory for these sizes (--samples, --length, "
              "--batch-size): try smaller ones", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
