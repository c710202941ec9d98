"""The measurements of the report, one function per section; `report.py` formats them.

- `time_step_case`: the engine, the hand-coded reference and the other libraries on one
  case and dtype, built fresh from equal parameters; every step is first run once from those
  parameters and its loss checked against the reference's (so the rows provably compute the
  same thing), then all are timed in alternation (`timing.alternate`).
- `measure_memory`: tracemalloc peak of one step of each (`memory.step_peak`).
- `run_sweep`: engine and reference in alternation at each size of a sweep.
"""

from __future__ import annotations

import gc
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .configs import StepCase, Sweep
from .memory import step_peak
from .others import other_steps
from .steps import adder_setup, counter_steps
from .timing import Timing, alternate

__all__ = ["CaseResult", "MemoryResult", "SweepPoint", "measure_memory", "run_sweep",
           "time_step_case"]

REFERENCE, ENGINE = "hand-coded", "minigrad"
# Relative loss agreement demanded of every implementation's first step.
LOSS_RTOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-4}


@dataclass
class CaseResult:
    case: StepCase
    dtype: np.dtype
    timings: dict[str, Timing]          # implementation -> time per step; reference first
    first_loss: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def ratio(self, name: str) -> float:
        return self.timings[name].median / self.timings[REFERENCE].median

    @property
    def target(self) -> float | None:
        """The target applies to the float64 engine row only."""
        return self.case.target if self.dtype == np.float64 else None


def _steps(case: StepCase, dtype: Any, with_others: bool) -> dict[str, Callable[[], float]]:
    if case.is_counter:
        engine, reference = counter_steps(case.batch, case.timesteps)
        return {REFERENCE: reference, ENGINE: engine}
    setup = adder_setup(case.batch, case.timesteps, case.states, dtype, preset=case.preset)
    steps = {REFERENCE: setup.reference_step(), ENGINE: setup.engine_step()}
    if with_others and case.others:
        steps.update(other_steps(setup))
    return steps


def time_step_case(case: StepCase, dtype: Any, *, repeats: int | None = None,
                   with_others: bool = True) -> CaseResult:
    """Median time per training step of every implementation of `case` in `dtype`."""
    dtype = np.dtype(dtype)
    steps = _steps(case, dtype, with_others)
    notes = []
    first_loss = {name: step() for name, step in steps.items()}
    reference_loss = first_loss[REFERENCE]
    for name, loss in first_loss.items():
        if not math.isclose(loss, reference_loss, rel_tol=LOSS_RTOL[dtype]):
            notes.append(f"{case.key} {dtype}: {name}'s first loss {loss:.10g} differs from "
                         f"the hand-coded {reference_loss:.10g}")
    timings = alternate(steps, repeats=repeats or case.repeats, warmup=case.warmup)
    return CaseResult(case, dtype, timings, first_loss, notes)


@dataclass
class MemoryResult:
    case: StepCase
    dtype: np.dtype
    reference: int   # bytes
    engine: int

    @property
    def ratio(self) -> float:
        return self.engine / self.reference


def measure_memory(case: StepCase, dtype: Any, *, repeats: int) -> MemoryResult:
    """Traced peak of one step of the reference and of the engine on `case`."""
    setup = adder_setup(case.batch, case.timesteps, case.states, dtype, preset=case.preset)
    reference = step_peak(setup.reference_step(), repeats=repeats)
    engine = step_peak(setup.engine_step(), repeats=repeats)
    return MemoryResult(case, np.dtype(dtype), reference, engine)


@dataclass
class SweepPoint:
    value: int
    sizes: tuple[int, int, int]   # batch, timesteps, states
    reference: Timing
    engine: Timing
    engine_gc_off: Timing | None = None

    @property
    def ratio(self) -> float:
        return self.engine.median / self.reference.median


ENGINE_GC_OFF = "minigrad, gc off"


def without_gc(step: Callable[[], float]) -> Callable[[], float]:
    """`step` with Python's cyclic garbage collector paused while it runs."""

    def paused() -> float:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return step()
        finally:
            if was_enabled:
                gc.enable()

    return paused


def run_sweep(sweep: Sweep, *, repeats: int | None = None) -> list[SweepPoint]:
    """The float64 adder step at each size of `sweep`, engine and reference alternating;
    with `sweep.gc_off`, also a second, identical engine model stepped with the garbage
    collector paused (the collector's share of the engine's time)."""
    points = []
    for value, default_repeats in zip(sweep.values, sweep.repeats):
        sizes = sweep.sizes(value)
        setup = adder_setup(*sizes)
        steps = {REFERENCE: setup.reference_step(), ENGINE: setup.engine_step()}
        if sweep.gc_off:
            steps[ENGINE_GC_OFF] = without_gc(adder_setup(*sizes).engine_step())
        timings = alternate(steps, repeats=repeats or default_repeats, warmup=sweep.warmup)
        points.append(SweepPoint(value, sizes, timings[REFERENCE], timings[ENGINE],
                                 timings.get(ENGINE_GC_OFF)))
    return points


def growth_exponents(points: list[SweepPoint], which: str) -> list[float | None]:
    """d log(time) / d log(size) between each point and the previous one (None first):
    1 is linear growth, above 1 faster than linear. `which` is "engine", "reference" or
    "engine_gc_off"."""
    exponents: list[float | None] = [None]
    for before, after in itertools.pairwise(points):
        if getattr(before, which) is None or getattr(after, which) is None:
            exponents.append(None)
            continue
        t0, t1 = getattr(before, which).median, getattr(after, which).median
        exponents.append(math.log(t1 / t0) / math.log(after.value / before.value))
    return exponents
