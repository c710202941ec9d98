"""Where the engine's step spends its time: its phases, and cProfile of its steps.

    python -m benchmarks.profiling A B [--steps N] [--top K] [--sort tottime|cumulative]
                                       [--reference | --handwritten] [--float32] [--phases]

Builds the step exactly as the benchmark does (`benchmarks.steps`, the full plan's sizes),
runs warm-up steps, then profiles N steps and prints the K functions with the most own
time (tottime) or cumulative time. cProfile adds a fixed cost to every Python call, so
it inflates Python-heavy code (the engine) more than NumPy-heavy code (the reference), and
it does not list NumPy ufunc calls (their time counts as their caller's own): read it for
where the time goes, and the benchmark for how much there is.

`--phases` instead times, without a profiler, the median of N calls of: the forward pass
(the loss), forward + backward, and the whole optimizer step, for the engine and for the
tutorial-style reference (whose forward is `loss`, and forward + backward
`loss_and_backward`), and forward + backward and the step of the hand-written step (which
has no separate forward); backward and the optimizer's share are the differences.
"""

from __future__ import annotations

from .threads import pin_one_thread

pin_one_thread()  # before anything imports NumPy

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .configs import FULL
from .steps import adder_setup, counter_setup


def profile_case(key: str, *, steps: int, top: int, sort: str, who: str,
                 dtype: type) -> str:
    """cProfile of `steps` steps of `who` ("minigrad", "tutorial-style" or "hand-written")."""
    case = next(c for c in FULL.steps if c.key.lower() == key.lower())
    setup: Any = (counter_setup(case.batch, case.timesteps) if case.is_counter else
                  adder_setup(case.batch, case.timesteps, case.states, dtype,
                              preset=case.preset))
    step = {"minigrad": setup.engine_step, "tutorial-style": setup.reference_step,
            "hand-written": setup.handwritten_step}[who]()
    for _ in range(max(2, case.warmup)):
        step()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        step()
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    title = f"{case.key} ({case.sizes}, {np.dtype(dtype).name}), {who}, {steps} steps"
    return f"### {title}\n\n{stream.getvalue()}"


def _median_time(function: Callable[[], object], repeats: int) -> float:
    for _ in range(2):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def phases(key: str, *, steps: int, dtype: type) -> str:
    """A markdown table: forward, backward, optimizer and whole step, engine and reference."""
    case = next(c for c in FULL.steps if c.key.lower() == key.lower())
    if case.is_counter:
        return f"### {case.key}: --phases covers the adder cases only\n"
    setup = adder_setup(case.batch, case.timesteps, case.states, dtype, preset=case.preset)
    engine, reference, X, T = setup.engine(), setup.reference(), setup.X, setup.T
    handwritten = setup.handwritten()

    def engine_forward() -> None:
        engine.zero_grad()
        engine.loss(X, T)

    def engine_forward_backward() -> None:
        engine.zero_grad()
        engine.loss(X, T).backward()

    def reference_forward_backward() -> None:
        reference.zero_grad()
        reference.loss_and_backward(X, T)

    def handwritten_forward_backward() -> None:
        handwritten.zero_grad()
        handwritten.loss_and_backward(X, T)

    rows = []
    for name, forward, forward_backward, step in (
            ("minigrad", engine_forward, engine_forward_backward, setup.engine_step()),
            ("tutorial-style", lambda: reference.loss(X, T), reference_forward_backward,
             setup.reference_step()),
            ("hand-written", None, handwritten_forward_backward, setup.handwritten_step())):
        fb, s = (_median_time(g, steps) for g in (forward_backward, step))
        if forward is None:
            split = f"| — | {fb * 1e6:.0f} (with forward) | "
        else:
            f = _median_time(forward, steps)
            split = f"| {f * 1e6:.0f} | {(fb - f) * 1e6:.0f} | "
        rows.append(f"| {name} {split}{(s - fb) * 1e6:.0f} | {s * 1e6:.0f} |")
    title = f"{case.key} ({case.sizes}, {np.dtype(dtype).name}), medians of {steps}, µs"
    return "\n".join([f"### {title}", "", "| | forward | backward | optimizer | step |",
                      "| --- | ---: | ---: | ---: | ---: |", *rows, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="+", help="A, B, C, D or counter")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", choices=("tottime", "cumulative"), default="tottime")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--reference", action="store_true",
                        help="profile the tutorial-style step instead of the engine's")
    chosen.add_argument("--handwritten", action="store_true",
                        help="profile the hand-written step instead of the engine's")
    parser.add_argument("--float32", action="store_true")
    parser.add_argument("--phases", action="store_true",
                        help="time forward, backward and optimizer instead of profiling")
    args = parser.parse_args(argv)
    known = {c.key.lower() for c in FULL.steps if c.model in ("adder", "counter")}
    for key in args.cases:
        if key.lower() not in known:
            parser.error(f"unknown case {key!r}; choose from {', '.join(sorted(known))}")
        dtype = np.float32 if args.float32 else np.float64
        if args.phases:
            print(phases(key, steps=args.steps, dtype=dtype))
        else:
            who = ("tutorial-style" if args.reference else
                   "hand-written" if args.handwritten else "minigrad")
            print(profile_case(key, steps=args.steps, top=args.top, sort=args.sort, who=who,
                               dtype=dtype))
    return 0


if __name__ == "__main__":
    sys.exit(main())
