"""Where the engine's step spends its time: cProfile of training steps of one case.

    python -m benchmarks.profiling A B [--steps N] [--top K] [--sort tottime|cumulative]
                                       [--reference] [--float32]

Builds the step exactly as the benchmark does (`benchmarks.steps`, the full plan's sizes),
runs warm-up steps, then profiles N steps and prints the K functions with the most own
time (tottime) or cumulative time. cProfile adds a fixed cost to every Python call, so
it inflates Python-heavy code (the engine) more than NumPy-heavy code (the reference):
read it for where the time goes, and the benchmark for how much there is.
"""

from __future__ import annotations

from .threads import pin_one_thread

pin_one_thread()  # before anything imports NumPy

import argparse
import cProfile
import io
import pstats
import sys

import numpy as np

from .configs import FULL
from .steps import adder_setup, counter_steps


def profile_case(key: str, *, steps: int, top: int, sort: str, reference: bool,
                 dtype: type) -> str:
    case = next(c for c in FULL.steps if c.key.lower() == key.lower())
    if case.is_counter:
        engine, hand_coded = counter_steps(case.batch, case.timesteps)
    else:
        setup = adder_setup(case.batch, case.timesteps, case.states, dtype, preset=case.preset)
        engine, hand_coded = setup.engine_step(), setup.reference_step()
    step = hand_coded if reference else engine
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
    who = "hand-coded" if reference else "minigrad"
    title = f"{case.key} ({case.sizes}, {np.dtype(dtype).name}), {who}, {steps} steps"
    return f"### {title}\n\n{stream.getvalue()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="+", help="A, B, C, D or counter")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", choices=("tottime", "cumulative"), default="tottime")
    parser.add_argument("--reference", action="store_true",
                        help="profile the hand-coded step instead of the engine's")
    parser.add_argument("--float32", action="store_true")
    args = parser.parse_args(argv)
    known = {c.key.lower() for c in FULL.steps}
    for key in args.cases:
        if key.lower() not in known:
            parser.error(f"unknown case {key!r}; choose from {', '.join(sorted(known))}")
        print(profile_case(key, steps=args.steps, top=args.top, sort=args.sort,
                           reference=args.reference,
                           dtype=np.float32 if args.float32 else np.float64))
    return 0


if __name__ == "__main__":
    sys.exit(main())
