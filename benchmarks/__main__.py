"""`python -m benchmarks [--quick] [--only A,B,...] [--repeats N] [--output PATH]
[--adaptive-malloc]`

Times one full training step of the adder (forward, backward, RMSProp-Nesterov update with
its closure, as `minigrad.models.training.train` runs it) on the minigrad engine (with
`optim`'s optimizer), on the hand-written NumPy step of `benchmarks.handwritten` (the
baseline of every ratio; its update in plain NumPy, `benchmarks.updates`) and on the
tutorial-style hand-coded step of `minigrad.models.reference`, same parameters, minibatch
and rule, alternating in one process, and prints a markdown report: step times and ratios
for cases A-D and the counter (plus PyTorch, JAX and autograd rows where importable), a
GRU and an LSTM stepped by `mg.scan` against hand-written BPTT (`benchmarks.cells`), the
adder as a user writes it (`benchmarks.user_models`), the peak memory of a step at C, how
the step time scales with the sequence length, the batch and the state size, and the
engine's overhead per op. BLAS runs on one thread (set here, before NumPy is imported),
and glibc malloc's thresholds are pinned (the command re-executes itself with them set;
see `benchmarks.allocator`).

Progress goes to stderr; the report to stdout and, with --output, to a file (written
atomically). The last full run, with PyTorch, JAX and autograd rows, took 23 minutes on a
heavily loaded 2-core machine; --quick runs tiny sizes with 3 repeats in seconds (the
smoke test's mode).

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, where the environment sets them (to work around
older OpenBLAS builds), force a slower kernel on a current NumPy; the published results
were made with both unset for that one command, and the report shows the kernel in use:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks --output benchmarks/RESULTS.md
"""

from __future__ import annotations

from .threads import pin_one_thread

pin_one_thread()  # before anything imports NumPy

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from minigrad.models.cli import positive_int

from . import allocator, configs, machine, optim_step, others, report, suite
from .ops import time_ops

_KEYS = {key.lower(): key for key in configs.SECTIONS}


def _sections(text: str) -> list[str]:
    chosen = []
    for part in text.split(","):
        key = _KEYS.get(part.strip().lower())
        if key is None:
            raise argparse.ArgumentTypeError(
                f"unknown section {part.strip()!r}; choose from {', '.join(configs.SECTIONS)}")
        chosen.append(key)
    return chosen


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[1],
        epilog=f"sections: {', '.join(configs.SECTIONS)}")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and 3 repeats: a smoke test, not a measurement")
    parser.add_argument("--only", type=_sections, metavar="A,B,...",
                        help="run only these sections (default: all)")
    parser.add_argument("--repeats", type=positive_int, metavar="N",
                        help="timed repeats of every measurement (default: per case, as the "
                             "report's repeats column shows)")
    parser.add_argument("--output", type=Path, metavar="PATH",
                        help="also write the markdown report to PATH (atomically)")
    parser.add_argument("--adaptive-malloc", action="store_true",
                        help="run under glibc malloc's adaptive thresholds instead of pinning "
                             "them (to see what the allocator does to the ratios)")
    return parser


class Progress:
    """One line per measurement on stderr, with the elapsed time."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, what: str) -> None:
        print(f"[{time.perf_counter() - self.start:7.1f} s] {what}", file=sys.stderr,
              flush=True)


def run(args: argparse.Namespace) -> str:
    """Run the chosen sections; the report as markdown."""
    plan = configs.QUICK if args.quick else configs.FULL
    chosen = set(args.only or configs.SECTIONS)
    progress = Progress()
    header = machine.describe()
    command = "python -m benchmarks" + "".join(f" {a}" for a in sys.argv[1:])
    title = ["# minigrad benchmarks", ""]
    if args.quick:
        title += [("**--quick: tiny sizes and 3 repeats, a smoke test. These numbers mean "
                  "nothing.**"), ""]
    title += [(f"Produced by `{command}`; the machine, the method and how to read the "
              f"tables are at the end."), ""]
    out: list[str] = []
    verdicts: list[report.Verdict] = []
    notes: list[str] = []

    step_results = []
    for case in plan.steps:
        if case.key not in chosen:
            continue
        for dtype_name in case.dtypes:
            dtype = np.dtype(dtype_name)
            progress(f"step {case.key} ({case.sizes}) {dtype_name}")
            result = suite.time_step_case(case, dtype, repeats=args.repeats)
            step_results.append(result)
            notes += [n for n in result.notes if n not in notes]
    if step_results:
        text, found = report.step_table(step_results)
        verdicts += found
        out += ["## One training step: minigrad vs hand-written NumPy", "",
                "Forward, backward and the optimizer's update (RMSProp-Nesterov with its "
                "closure for the adder, RProp for the counter, SGD for the GRU and the "
                "LSTM), on the same parameters and minibatch; median of the alternating "
                "repeats. The engine rows update with `optim`'s optimizers, as users do; the "
                "hand-written, closed-form and tutorial-style rows with the same rule in "
                "plain NumPy, one pass of in-place calls over flat buffers "
                "(`benchmarks/updates.py`), the hand-written steps without any `.grad` "
                "protocol (their gradients go straight into the buffer the update reads). "
                "The adder has two hand-written steps, \"hand-written\" "
                "(`benchmarks/handwritten.py`, built for speed) and \"hand-written, lean\" "
                "(`benchmarks/lean.py`, keeping only the states: faster at long sequences); "
                "the faster of the two in the same run is the baseline. The models' "
                "rows (A-D, counter) run `minigrad.models`; the gru and lstm rows "
                "`nn.GRUCell` / `nn.LSTMCell` stepped by `mg.scan` with a linear readout "
                "and BCE on the logits, against hand-written BPTT (`benchmarks/cells.py`); "
                "the user rows the adder written as a user would (batch-major slices "
                "`X[:, k]`, a Python loop, `sigmoid` then `binary_cross_entropy`; "
                "`benchmarks/user_models.py`) against the hand-written adder. "
                "Ratio to the faster hand-written = time / the faster hand-written "
                "step's time from the same run (below 1: faster than the best NumPy we "
                "wrote); ratio to tutorial-style = time / the tutorial-style step's. "
                "Tracing: for a compiled row, the time its first call spent tracing (the run "
                "of the loss on tracers and writing the replay's code), not in the median, "
                "and the number of traces. Cases: "
                + "; ".join(dict.fromkeys(f"{c.key}, {c.title}" for c in plan.steps
                                          if c.key in chosen))
                + ".", "", text, ""]

    if "memory" in chosen:
        case = next(c for c in plan.steps if c.key == plan.memory_case)
        memory = []
        for dtype in (np.float64, np.float32):
            progress(f"peak memory at {case.key} {np.dtype(dtype).name}")
            memory.append(suite.measure_memory(case, dtype, repeats=plan.memory_repeats))
        text, found = report.memory_table(memory, plan.memory_targets)
        verdicts += found
        out += ["## Peak memory of one step", "",
                (f"tracemalloc's peak during one step, above what was allocated before it "
                f"(after {suite.MEMORY_WARMUP} warm-up steps: a compiled step traces on its first "
                f"two and writes its backward code on the third, once, as it compiles; median "
                f"of {plan.memory_repeats}). NumPy's buffers "
                f"are traced, so this counts the arrays and the Python objects. Two "
                f"hand-written steps: \"{suite.HANDWRITTEN}\", built for speed, "
                f"and \"{suite.LEAN}\" (`benchmarks/lean.py`: the same "
                f"BPTT keeping only the states and block-sized work arrays); every ratio "
                f"is to the smaller of their two peaks, the baseline named in the header. "
                f"Both keep their buffers between steps; they are dropped before each "
                f"measured step, so their peaks include them."), "",
                text, ""]

    titles = {"length": "Scaling with the sequence length T",
              "batch": "Scaling with the batch", "states": "Scaling with the state size"}
    for sweep in plan.sweeps:
        if sweep.key not in chosen:
            continue
        progress(f"sweep over {sweep.vary}: {', '.join(map(str, sweep.values))}")
        points = suite.run_sweep(sweep, repeats=args.repeats)
        out += [f"## {titles[sweep.key]}", "",
                ("float64 adder step. The exponent is d log(time) / d log(size) from the row "
                "above: 1 is linear growth, below 1 a fixed cost still dominates, above 1 "
                "faster than linear. Ratios are to the hand-written step."), "",
                report.sweep_table(sweep, points), ""]
        if sweep.vary == "timesteps":
            for verdict in report.linearity_verdicts(points, plan.linear_tolerance):
                verdicts.append(verdict)
                out += [(f"Target: {verdict.target}: {verdict.measured}, "
                        f"{report._mark(verdict.passed)}."), ""]

    if "ops" in chosen:
        progress("per-op overhead")
        timings = time_ops(repeats=args.repeats or plan.op_repeats, number=plan.op_number)
        out += ["## Overhead per op", "",
                (f"Each op of `minigrad.OPS` on tiny float64 arrays, next to the bare NumPy "
                f"call its forward wraps; medians of {args.repeats or plan.op_repeats} "
                f"alternating samples of {plan.op_number} calls. Forward records a tape "
                f"node (leaves require grad); backward is forward + backward − forward."),
                "", report.ops_table(timings), ""]

    if "optim" in chosen:
        out += _optimizer_section(plan, args.repeats, progress)

    if verdicts:
        met = sum(v.passed for v in verdicts)
        title += ["## Targets", "",
                  (f"{met} of {len(verdicts)} met. Every target is a ratio to the hand-written "
                   f"step of the same run (`benchmarks/handwritten.py`, `benchmarks/cells.py`; "
                   f"for the adder the faster of it and the lean one, `benchmarks/lean.py`, "
                   f"and for peak memory the smaller, named in the target where it is the "
                   f"lean one), not to the tutorial-style one."), "",
                  report.targets_table(verdicts), ""]
    out = title + out

    library_lines = []
    for library in others.LIBRARIES:
        version, why = others.available(library)
        library_lines.append(f"{library.label} {version}" if version else
                             f"{library.label}: {why}")
    out += ["## Machine and method", "", report.table(["", ""], header), "",
            (f"- Other libraries: {'; '.join(library_lines)}. They are optional and are not "
            f"dependencies of minigrad; their rows (cases with others) use the same "
            f"optimizer code, parameters and minibatch as the engine "
            f"(see `benchmarks/others.py`)."),
            ("- Baselines: the hand-written step (`benchmarks/handwritten.py`) is the fastest "
             "plain NumPy we know to write, checked against an independent one: for the "
             "adder, preallocated time-major blocks of (features, batch), the input and "
             "recurrent weights and both biases stacked in one matrix, so that a timestep is "
             "one product and the activation each way (the backward with [W_rec | W_out]), "
             "every weight gradient from one batched product; for the counter, the "
             "tutorial's backpropagation through time vectorised over the batch, time stored "
             "in reverse so that the backward recursion is one np.multiply.accumulate (its "
             "closed form, one matrix product, is an extra row: algebra, not autodiff); for "
             "the GRU and the LSTM, BPTT by hand laid out feature-major, each gate a "
             "contiguous row block, one product per step each way and every factor not "
             "depending on the incoming gradient computed for all steps before the backward "
             "loop (`benchmarks/cells.py`); for the adder also a lean one keeping only the "
             "states (`benchmarks/lean.py`), the faster (and the smaller in memory) of the "
             "two counting. All run as a hand-writer's loop does, their gradients written "
             "straight into the flat buffer the update reads. The tutorial-style step "
             "(`minigrad.models.reference`) is the write-up's hand-coded backward pass. Tests "
             "check that they give the engine's loss and gradients to float64 rounding "
             "(`tests/test_benchmarks.py`, `test_benchmark_cells.py`, "
             "`test_benchmark_lean.py`). The hand-written rows update in the fastest "
             "plain NumPy we know to write (`benchmarks/updates.py`, checked to follow "
             "`optim`'s trajectory bit for bit): parameters and gradients each in one flat "
             "buffer, the rule one pass of in-place NumPy calls over them, faster than "
             "`optim`'s step (see the optimizer's own cost). The engine rows update through "
             "`optim`, so the ratios include what `optim`'s shell costs over a hand-written "
             "update."),
            (f"- glibc malloc: {allocator.describe()}. Fixed thresholds keep page faults "
             "out of the steps of implementations that allocate per step (see "
             "`benchmarks/allocator.py`; `--adaptive-malloc` runs under glibc's adaptive "
             "defaults instead). The page-fault column counts the minor faults of 3 steps "
             "after the timed rounds, per step. Under the adaptive defaults they depend on "
             "what the process allocated before: at B, in one run without PyTorch and "
             "JAX, the tutorial-style and engine steps faulted about 630 and 480 pages per "
             "step (none in a process that had imported them); the hand-written step never "
             "does."),
            ("- Timing: every implementation of a case is timed in the same loop, one step "
            "each per round, the order rotated every round, after warm-up steps; the "
            "median of the rounds is reported (`minigrad.models.timing`). The garbage "
            "collector stays on (it is part of the engine's cost); the objects alive before "
            "the timed rounds (imported libraries, models, data) are frozen with "
            "`gc.freeze()`, so that collections scan what the steps create, not every "
            "module the process imported. Each implementation's "
            "first step is checked to give the hand-written step's loss. IQR/2 is half the "
            "interquartile range of the repeats, relative to the median."),
            ("- JAX hands each call between threads, so load from other processes slows its "
            "rows far more than the others' (seen in an earlier run: 17× at A under a load "
            "average of 3.5, 1.2× idle)."),
            ("- The machine is shared with other work: absolute times vary from run to run; "
            "the ratios, measured in alternation, are what matters."),
            (f"- Load average at the end (1, 5, 15 min): {machine.load_average()}; "
            f"total time {time.perf_counter() - progress.start:.0f} s.")]
    out += [f"- {note}" for note in notes]
    return "\n".join(out) + "\n"


def _optimizer_section(plan: configs.Plan, repeats: int | None,
                       progress: Progress) -> list[str]:
    """The optimizer's step against the plain NumPy update, at cases A and B."""
    rows, ratios = [], []
    for case in plan.steps[:2]:
        progress(f"optimizer step at {case.key} ({case.sizes})")
        cost = optim_step.time_optimizer_step(case, repeats)
        ratios.append(cost.ratio)
        plain, ours = cost.timings["plain NumPy"], cost.timings["optim.RMSPropNesterov"]
        rows.append([case.key, str(cost.parameters), f"{plain.median * 1e6:.1f} µs",
                     f"{ours.median * 1e6:.1f} µs", f"{cost.ratio:.2f}",
                     f"{ours.spread / 2:.0%}"])
    return ["## The optimizer's own cost", "",
            (f"`optim.RMSPropNesterov.step` against the same update in plain NumPy "
             f"(`benchmarks/optim_step.py`), on the adder's parameters laid out as the "
             f"hand-written adder lays them, the closure copying precomputed gradients into "
             f"the gradient arrays; medians of alternating repeats. Our own goal at A (not "
             f"one of the targets above): ratio <= {configs.OPTIMIZER_TARGET}, "
             f"{'met' if ratios and ratios[0] <= configs.OPTIMIZER_TARGET else 'missed'} "
             f"in this run."), "",
            report.table(["case", "scalars", "plain NumPy", "optimizer", "ratio",
                          "optimizer IQR/2"], rows), ""]


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None:  # run as a program: malloc reads its thresholds at process start
        allocator.reexec_with(pinned=not args.adaptive_malloc)
    text = run(args)
    sys.stdout.write(text)
    sys.stdout.flush()
    if args.output is not None:
        write_atomically(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
