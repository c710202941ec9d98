"""The alternating median timer: every contender measured in the same loop, turn by turn.
`minigrad compare` times the engine against the hand-coded reference with it, and the
benchmarks import it from here (`from minigrad.models.timing import Timing, alternate`).

`alternate({"hand-coded": f, "minigrad": g}, repeats=200, warmup=10)` first calls each
function `warmup` times (caches, lazily allocated optimizer state, BLAS buffers, JIT
compilation), then runs `repeats` rounds. In each round every function is timed once with
`time.perf_counter` (over `number` back-to-back calls, for calls too short to time alone),
and the order of the functions is rotated from round to round, so that no contender always
runs first or always follows a given one. A burst of load from another process on the
(shared) machine therefore hits all contenders alike, and the median of each one's samples
ignores the bursts. Ratios of medians are what the benchmarks report.

The garbage collector stays on: collecting the objects a step creates (the engine's graph)
is part of what a training step costs. A full collection is run before the timed rounds so
that garbage left by an earlier measurement is not collected inside this one, and the
objects alive then (imported modules, PyTorch's and JAX's among them, the models, the data)
are frozen (`gc.freeze()`, as long-running Python services do after start-up) for the
rounds: a full collection then scans what the steps create, not every object the process
happened to import, which would make the engine's cost depend on which other libraries the
benchmark loaded.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["Timing", "alternate"]


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one contender: median and quartiles of its `repeats` samples."""

    median: float
    q1: float
    q3: float
    repeats: int
    number: int = 1

    @property
    def spread(self) -> float:
        """The interquartile range relative to the median (0.05 = 5%)."""
        return (self.q3 - self.q1) / self.median if self.median > 0 else 0.0


def alternate(functions: Mapping[str, Callable[[], object]], *, repeats: int, warmup: int = 1,
              number: int = 1) -> dict[str, Timing]:
    """Time each function of `functions` in alternation; name -> `Timing` (seconds per call).

    Each sample is the mean over `number` consecutive calls; `repeats` samples are taken of
    each function, one per round, in an order rotated every round.
    """
    if repeats < 1 or number < 1 or warmup < 0:
        raise ValueError(f"alternate: need repeats >= 1, number >= 1, warmup >= 0; got "
                         f"{repeats}, {number}, {warmup}")
    names = list(functions)
    calls = [functions[name] for name in names]
    for _ in range(warmup):
        for call in calls:
            call()
    samples: list[list[float]] = [[] for _ in names]
    gc.collect()
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    clock = time.perf_counter
    try:
        for round_ in range(repeats):
            shift = round_ % len(names)
            for i in list(range(shift, len(names))) + list(range(shift)):
                call = calls[i]
                start = clock()
                for _ in range(number):
                    call()
                samples[i].append((clock() - start) / number)
    finally:
        if not frozen_before:  # (unfreeze would also release what the caller froze)
            gc.unfreeze()
    result = {}
    for name, values in zip(names, samples):
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        result[name] = Timing(float(median), float(q1), float(q3), repeats, number)
    return result
