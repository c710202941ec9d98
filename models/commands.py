"""What the `minigrad` commands do, with typed options: run (`minigrad.models.runs`), print, write
the model and the figures. `minigrad.models.cli` turns the command line into these calls;
Python code can call them too.

Every command returns its exit status. A training run that did not learn (an adder below
100% of held-out sums, a counter that miscounts) still prints its results and exits 0, but
ends with one warning line on `err` saying so: the command did what it was asked, and the
warning says what came of it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from minigrad.serialization import file_kind

from . import checkpoints, plots, runs
from .adder import Adder
from .data import addition_data, bits_to_int, encode_sum, format_sample
from .presets import AdderConfig, CounterTraining, TrainConfig
from .progress import ProgressBar
from .training import Progress, percent

__all__ = [
    "AdderTraining",
    "Outputs",
    "add_numbers",
    "check_output_directory",
    "check_output_file",
    "compare",
    "evaluate_adder",
    "evaluate_counter",
    "print_graph",
    "train_adder",
    "train_counter",
]


@dataclass(frozen=True)
class Outputs:
    """Where a training command writes besides its printout: the figures into `plot_dir`,
    the trained model to `save_path` (None: not written); `quiet` prints only the results."""

    plot_dir: str | None = None
    save_path: str | None = None
    quiet: bool = False

    def check(self, figures: Sequence[str] = ()) -> None:
        """Refuse paths that cannot be written (ValueError naming the option), a figures'
        directory where the model's file goes, a model's file that is one of the `figures`
        (file names) to be drawn into `plot_dir`, a figure there that cannot be replaced
        (read-only, a directory), and a missing matplotlib for `plot_dir`, before any
        training is spent."""
        if self.save_path is not None:
            check_output_file(self.save_path, "--save")
        if self.plot_dir is None:
            return
        check_output_directory(self.plot_dir, "--plot")
        plots.require_matplotlib()
        model = None if self.save_path is None else os.path.realpath(self.save_path)
        directory = os.path.realpath(self.plot_dir)
        if model is not None and (directory == model or directory.startswith(model + os.sep)):
            raise ValueError(f"--plot {self.plot_dir}: the figures' directory would be "
                             f"where --save {self.save_path} writes the model's file; "
                             f"give them different paths")
        for name in figures:
            figure = os.path.join(self.plot_dir, name)
            if model is not None and _same_file(os.path.realpath(figure), model):
                raise ValueError(f"--save {self.save_path}: it is the figure {figure} that "
                                 f"--plot {self.plot_dir} draws, which would replace the "
                                 f"model; give the model another name")
            _check_replaceable(figure, f"--plot {self.plot_dir}")

    def save(self, write: Callable[[str], None]) -> None:
        """`write(save_path)`; its failure (ValueError or OSError) as one ValueError
        naming --save."""
        assert self.save_path is not None
        try:
            write(self.save_path)
        except (ValueError, OSError) as error:
            raise ValueError(f"--save {self.save_path}: {_reason(error)}") from None

    def draw(self, figures: Callable[[str], list[str]]) -> list[str]:
        """`figures(plot_dir)`, the paths written; its OSError as one ValueError naming
        --plot and saying whether the model was saved."""
        assert self.plot_dir is not None
        try:
            return figures(self.plot_dir)
        except OSError as error:
            saved = ("" if self.save_path is None
                     else f" (the model was saved to {self.save_path})")
            raise ValueError(f"--plot {self.plot_dir}: cannot draw the figures: "
                             f"{_reason(error)}{saved}") from None


def _check_replaceable(figure: str, option: str) -> None:
    """ValueError if a file at `figure` (through a symbolic link: the file it points to)
    is one that a figure cannot replace: not a regular file, or read-only (as `--save`
    refuses a read-only model), or a link into a directory that does not exist."""
    target = os.path.realpath(figure)
    if not os.path.exists(target):
        if not os.path.islink(figure) or os.path.isdir(os.path.dirname(target)):
            return  # (a new figure; its directory, if new, is made)
        problem = f"it is a symbolic link to {target}, in a directory that does not exist"
    elif not os.path.isfile(target):
        problem = f"it is {file_kind(os.stat(target).st_mode)}, not a regular file"
    elif _read_only(target):
        problem = "it is read-only"
    else:
        return
    raise ValueError(f"{option}: cannot replace the figure {figure}: {problem} (left as it "
                     f"is)")


def _read_only(path: str) -> bool:
    """Whether the existing file `path` is read-only: no one may write it (by its mode
    bits: root, whom os.access lets write any file, is refused it too), or we may not."""
    return not os.stat(path).st_mode & 0o222 or not os.access(path, os.W_OK)


def _same_file(a: str, b: str) -> bool:
    """Whether the paths (symbolic links resolved) name one file: the same path, or two
    hard links to it."""
    try:
        return a == b or os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def _reason(error: Exception) -> str:
    """An error in words: an OSError's text and the file it names, without "[Errno N]"."""
    if isinstance(error, OSError) and error.strerror:
        return (f"{error.strerror}: {error.filename}" if error.filename is not None
                else error.strerror)
    return str(error)


@dataclass(frozen=True)
class AdderTraining:
    """`train adder`'s settings: the preset's name, the architecture and training settings
    (the preset's, with any overrides), the first seed, how many fresh starts to try while
    a run ends below 100%, and how many held-out sums measure that."""

    preset: str
    config: AdderConfig
    settings: TrainConfig
    seed: int
    restarts: int = 0
    test_samples: int = 1000
    compiled: bool = False  # the loss through minigrad.compile


def check_output_file(path: str, option: str) -> None:
    """ValueError unless `path` can be written as a file: not empty, not ending in a
    separator, "." or "..", no name over the file system's limit, a regular file or no file
    yet (through a symbolic link: the file it points to), in an existing directory where a
    file can be created (tried), and not read-only. A FIFO, device or directory there is
    refused, untouched."""
    if not path:
        raise ValueError(f"{option}: the path is empty; give a file name, such as model.npz")
    last = os.path.basename(path)
    if last in ("", ".", ".."):  # realpath would drop it, and the save refuse it
        ending = "a separator" if not last else repr(last)
        raise ValueError(f"{option} {path}: it ends in {ending}, so it names a directory, "
                         f"not a file; give a file name at its end, such as "
                         f"{os.path.join(os.path.normpath(path), 'model.npz')}")
    _check_names(path, option)
    _check_reachable(path, option)
    target = os.path.realpath(path)  # what minigrad.save writes
    directory = os.path.dirname(target)
    if os.path.isdir(target):
        raise ValueError(f"{option} {path}: cannot write a file there: it is a directory; "
                         f"give a file name, such as "
                         f"{os.path.join(path, 'model.npz')}")
    if os.path.exists(target) and not os.path.isfile(target):
        raise ValueError(f"{option} {path}: cannot write a file there: it is "
                         f"{file_kind(os.stat(target).st_mode)}, not a regular file (left "
                         f"as it is)")
    if not os.path.exists(directory):
        raise ValueError(f"{option} {path}: cannot write a file there: the directory "
                         f"{directory} does not exist")
    if not os.path.isdir(directory):
        raise ValueError(f"{option} {path}: cannot write a file there: {directory} is not "
                         f"a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: cannot write a file there: the directory "
                         f"{directory} is not writable")
    if os.path.exists(target) and _read_only(target):
        raise ValueError(f"{option} {path}: cannot write the file: it is read-only")
    try:  # what the checks above cannot see: a read-only mount, a file system that refuses
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise ValueError(f"{option} {path}: cannot write a file in {directory}: "
                         f"{error.strerror or error}") from None


def check_output_directory(path: str, option: str) -> None:
    """ValueError unless `path` is a directory where files can be created, or can be
    created as one (tried in its nearest existing ancestor, and removed), with no name over
    the file system's limit."""
    if not path:
        raise ValueError(f"{option}: the path is empty; give a directory, such as figures")
    _check_names(path, option)
    _check_reachable(path, option)
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = ("it is" if existing == os.path.abspath(path)
                 else f"it is under {existing}, which is")
        raise ValueError(f"{option} {path}: cannot make the directory: {where} a file, not "
                         f"a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: cannot write there: {existing} is not writable")
    try:  # root passes os.access where a read-only or virtual file system (/sys) refuses
        if existing == os.path.abspath(path):
            with tempfile.TemporaryFile(dir=existing):
                pass
        else:
            os.rmdir(tempfile.mkdtemp(dir=existing))
    except OSError as error:
        action = "write there" if existing == os.path.abspath(path) else "make the directory"
        raise ValueError(f"{option} {path}: cannot {action}: {existing} refuses it "
                         f"({error.strerror or error})") from None


def _check_names(path: str, option: str) -> None:
    """ValueError if a name in `path` is longer than its file system allows (255 bytes on
    most): creating it would fail after training."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or no answer
        limit = 255
    for name in os.path.normpath(path).split(os.sep):
        if len(os.fsencode(name)) > limit:
            raise ValueError(f"{option} {path}: a name in it is {len(os.fsencode(name))} "
                             f"bytes long, over the file system's limit of {limit} "
                             f"({name[:20]}...)")


def _check_reachable(path: str, option: str) -> None:
    """ValueError if looking `path` up fails other than by its absence (a loop of symbolic
    links, a path too long, a directory that cannot be searched)."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return  # the callers say which part is missing or not a directory
    except OSError as error:
        raise ValueError(f"{option} {path}: cannot use the path: "
                         f"{error.strerror or error}") from None


def _stream(stream: TextIO | None, default: str) -> TextIO:
    # sys.stdout / sys.stderr when called, not when this module was imported (a test's
    # capture or a redirect may have replaced them since).
    return getattr(sys, default) if stream is None else stream


def _warn(err: TextIO, message: str) -> None:
    print(f"minigrad: warning: {message}", file=err, flush=True)


# --- the counter ----------------------------------------------------------------------------


def train_counter(settings: CounterTraining, outputs: Outputs = Outputs(), *,
                  out: TextIO | None = None, err: TextIO | None = None,
                  compiled: bool = False) -> int:
    """`minigrad train counter`: RProp from (w_x, w_rec); prints the path every tenth of the
    run, the parameters and the count of `runs.COUNTER_TEST_SEQUENCE`. `compiled` computes
    the loss with `minigrad.compile`."""
    out, err = _stream(out, "stdout"), _stream(err, "stderr")
    outputs.check(plots.COUNTER_FIGURES)
    n = settings.iterations
    bar = ProgressBar(n, "counter", quiet=outputs.quiet, stream=out)
    bar.print(f"Training the counter: RProp, full batch of {settings.sequences} sequences of "
              f"{settings.length}, {n} iterations from w_x = {settings.w_x}, "
              f"w_rec = {settings.w_rec}")
    every = max(n // 10, 1)

    def report(p: Progress, point: tuple[float, float]) -> None:
        bar.update(p.step, p.loss)
        if p.step % every == 0 or p.step == p.total_steps:
            # (the loss at the step's start, the weights the step moved to)
            bar.print(f"  iteration {p.step:>5}/{p.total_steps}  loss {p.loss:.4g}  ->  "
                      f"w_x {point[0]:+.4f}  w_rec {point[1]:+.4f}")

    with bar:
        run = runs.train_counter(settings, callback=report, compiled=compiled)
    model = run.model
    sequence = runs.COUNTER_TEST_SEQUENCE
    count = model(sequence).item()
    print(f"w_x = {model.w_x.item():.4f}, w_rec = {model.w_rec.item():.4f}", file=out)
    print(f"count of {''.join(str(int(b)) for b in sequence[0])}: {count:.2f} "
          f"(true: {int(sequence.sum())})", file=out)
    if outputs.save_path is not None:
        outputs.save(lambda path: checkpoints.save_counter(model, path, settings.seed))
        print(f"saved the counter to {outputs.save_path}", file=out)
    if outputs.plot_dir is not None:
        for written in outputs.draw(lambda directory: plots.counter_figures(run, directory)):
            print(f"wrote {written}", file=out)
    if not run.learned():
        _warn(err, f"the counter did not learn to count (w_x = {model.w_x.item():.4g}, "
                   f"w_rec = {model.w_rec.item():.4g}; counting needs both near 1): try more "
                   f"--iterations or another start (--w-x, --w-rec)")
    return 0


# --- the adder ------------------------------------------------------------------------------


def train_adder(training: AdderTraining, outputs: Outputs = Outputs(), *,
                out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`minigrad train adder`: train (restarting while below 100% if asked), then show five
    fresh sums and the held-out accuracy; save and draw as `outputs` says."""
    out, err = _stream(out, "stdout"), _stream(err, "stderr")
    outputs.check([plots.adder_figure_name(training.preset)])
    config, settings = training.config, training.settings
    if not outputs.quiet:
        print(f"Training the {training.preset} adder: {config.n_bits} bits, "
              f"{config.n_states} {config.activation} states, {settings.n_samples} samples, "
              f"minibatches of {settings.batch_size}, {settings.epochs} epoch(s), "
              f"{settings.optimizer} lr {settings.lr}", file=out, flush=True)
    # 50 points of held-out accuracy over the run for the figure: 50 forward passes.
    every = max(settings.total_steps // 50, 1) if outputs.plot_dir is not None else None

    def train_once(seed: int) -> runs.AdderRun:
        with ProgressBar(settings.total_steps, f"seed {seed}", quiet=outputs.quiet,
                         stream=out) as bar:
            return runs.train_adder_once(
                config, settings, seed, test_samples=training.test_samples,
                callback=bar.chain(_epoch_reporter(bar.print, settings)),
                accuracy_every=every, compiled=training.compiled)

    def on_result(run: runs.AdderRun, will_restart: bool) -> None:
        if outputs.quiet:
            return
        print(f"seed {run.seed}: {run.accuracy} on {training.test_samples} held-out sums",
              file=out, flush=True)
        if will_restart:
            print("below 100%: restarting from a fresh initialisation", file=out, flush=True)

    run = runs.train_until_learned(train_once, training.seed, training.restarts, on_result)
    show_sums(run.model, np.random.default_rng([run.seed, 2]), out)
    print(f"held-out accuracy: {run.accuracy} ({training.test_samples} sums, seed {run.seed})",
          file=out)
    if outputs.save_path is not None:
        outputs.save(lambda path: checkpoints.save_adder(run.model, path,
                                                         preset=training.preset, seed=run.seed))
        print(f"saved the {training.preset} adder to {outputs.save_path}", file=out)
    if outputs.plot_dir is not None:
        for written in outputs.draw(lambda directory: [plots.adder_figure(
                run, settings, training.preset, training.test_samples, directory)]):
            print(f"wrote {written}", file=out)
    if not run.learned():
        tried = (f"after {training.restarts + 1} starts " if training.restarts else "")
        _warn(err, f"the adder did not learn to add {tried}({percent(run.accuracy.sums)} of "
                   f"held-out sums right): try --restarts N, another --seed, more --epochs or "
                   f"another --lr")
    return 0


def _epoch_reporter(say: Callable[[str], None], settings: TrainConfig) -> Callable:
    window: list[float] = []
    every = settings.steps_per_epoch if settings.steps_per_epoch <= 1000 else 10_000

    def report(p: Progress) -> None:
        window.append(p.loss)
        if p.step % every == 0 or p.step == p.total_steps:
            unit = (f"epoch {p.epoch}/{p.epochs}" if every == settings.steps_per_epoch
                    else f"step {p.step}/{p.total_steps}")
            say(f"  {unit}  mean loss {np.mean(window):.4g}")
            window.clear()

    return report


def show_sums(model: Adder, rng: np.random.Generator, out: TextIO, count: int = 5) -> None:
    """Fresh sums in the write-ups' layout: operands, target and the model's answer."""
    config = model.config
    X, T = addition_data(rng, count, config.n_bits, config.max_operand)
    for x, t, y in zip(X, T, model.predict_bits(X)):
        print(format_sample(x, t, y), file=out)
        print(file=out)


# --- saved models at work -------------------------------------------------------------------


def add_numbers(a: int, b: int, model_path: str, preset: str | None = None, *,
                out: TextIO | None = None) -> int:
    """`minigrad add A B --model PATH`: the saved adder adds A and B; prints the sum in the
    write-ups' layout (bits least significant first) and the integer answer."""
    out = _stream(out, "stdout")
    model, saved_preset = checkpoints.load_adder(model_path, preset)
    config = model.config
    if a + b >= 2**config.n_bits:
        raise ValueError(f"{a} + {b} = {a + b} does not fit in the {saved_preset} adder's "
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


def evaluate_adder(model_path: str, samples: int, seed: int | None = None,
                   preset: str | None = None, *, out: TextIO | None = None) -> int:
    """`minigrad eval adder --model PATH`: per-bit and whole-sum accuracy on fresh sums,
    evaluated `runs.EVALUATION_BATCH` sums at a time: the held-out sums that `train adder
    --seed <seed>` reports its accuracy on (`runs.held_out_seed`)."""
    out = _stream(out, "stdout")
    model, saved_preset = checkpoints.load_adder(model_path, preset)
    seed = _seed_of(model_path, "adder", seed)
    result = runs.evaluate_adder(model, samples, runs.held_out_seed(seed))
    print(f"{saved_preset} adder from {model_path}: {result} on {samples} held-out sums "
          f"(operands below {model.config.operand_limit}, seed {seed})", file=out)
    return 0


def _seed_of(model_path: str, kind: str, seed: int | None) -> int:
    """`seed`, or by default the seed of the run that saved the model (0 if it saved none):
    `eval` then measures on the held-out data that run reported on."""
    if seed is not None:
        return seed
    saved = checkpoints.saved_seed(model_path, kind)
    return 0 if saved is None else saved


def evaluate_counter(model_path: str, samples: int, length: int, seed: int | None = None, *,
                     out: TextIO | None = None) -> int:
    """`minigrad eval counter --model PATH`: how often a saved counter counts the ones of
    fresh 0/1 sequences right, and its mean error; the sequences come from
    `runs.held_out_seed(seed)`, not the stream of `train counter --seed <seed>`'s training
    sequences."""
    out = _stream(out, "stdout")
    model = checkpoints.load_counter(model_path)
    seed = _seed_of(model_path, "counter", seed)
    result = runs.evaluate_counter(model, samples, length, runs.held_out_seed(seed))
    print(f"counter from {model_path} (w_x = {model.w_x.item():.4f}, w_rec = "
          f"{model.w_rec.item():.4f}): {result} on {samples} fresh sequences of {length} "
          f"(seed {seed})", file=out)
    return 0


# --- engine vs hand-coded, and the graph ---------------------------------------------------


def compare(model: str, *, preset: str = "small", batch_size: int = 100, repeats: int = 200,
            seed: int = 0, out: TextIO | None = None) -> int:
    """`minigrad compare counter|adder`: the loss and every parameter's largest gradient
    difference, engine vs hand-coded, on the same parameters and data; a verdict (exit
    status 1 where a difference is beyond 1e-9 of the largest |grad|); the time per step."""
    out = _stream(out, "stdout")
    result = runs.compare(model, preset=preset, batch_size=batch_size, repeats=repeats,
                          seed=seed)
    print(f"{result.title}: forward + backward on the same parameters and data", file=out)
    print(f"  loss       engine {result.engine_loss:.12g}   hand-coded "
          f"{result.reference_loss:.12g}", file=out)
    for d in result.gradients:
        name = (d.engine_name if d.engine_name == d.reference_name
                else f"{d.engine_name} = {d.reference_name}")
        print(f"  {name:<25} max |grad difference| {d.difference:.2e}  (largest |grad| "
              f"{d.scale:.2e})", file=out)
    differ = [f"{d.engine_name} {d.difference:.2e} > {_AGREE:g} x {d.scale:.2e}"
              for d in result.gradients if not d.difference <= _AGREE * d.scale]
    loss_gap = abs(result.engine_loss - result.reference_loss)
    if not loss_gap <= _AGREE * max(1.0, abs(result.reference_loss)):
        differ.insert(0, f"loss {loss_gap:.2e}")
    verdict = (f"DIFFER     {'; '.join(differ)}" if differ else
               f"agree      every difference within {_AGREE:g} of its largest |grad| (of "
               f"max(1, |loss|), for the losses)")
    print(f"  {verdict}", file=out)
    ratio = result.engine_seconds / result.reference_seconds
    print(f"  time/step  engine {result.engine_seconds * 1e6:.1f} us   hand-coded "
          f"{result.reference_seconds * 1e6:.1f} us   ratio {ratio:.2f} "
          f"(median of {result.repeats}, alternating)", file=out)
    return 1 if differ else 0


# How close compare's gradients must be, relative to each parameter's largest: the same
# float64 sums in another order agree to a few units of 1e-16 (seen: 2e-15).
_AGREE = 1e-9


def print_graph(model: str, *, steps: int = 3, batch_size: int = 2, preset: str = "small",
                out: TextIO | None = None) -> int:
    """`minigrad graph counter|adder`: the loss's computation graph as Graphviz DOT."""
    out = _stream(out, "stdout")
    out.write(runs.computation_graph(model, steps=steps, batch_size=batch_size, preset=preset))
    return 0
