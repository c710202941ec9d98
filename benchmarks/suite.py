"""The measurements of the report, one function per section; `report.py` formats them.

Every measurement has the same columns of implementations, in this order:

- `HANDWRITTEN`, the hand-written step of `benchmarks.handwritten` (`benchmarks.cells` for
  the GRU and the LSTM), and for the adder `LEAN`, the memory-lean one of `benchmarks.lean`:
  the baselines. Every ratio in the report is a time (or a peak) divided by the faster (the
  smaller) of the two, from the same run (`CaseResult.baseline`, `MemoryResult.baseline`).
- `TUTORIAL`, the tutorial-style hand-coded step of `minigrad.models.reference`, as a second
  yardstick (its own ratio column; the adder and the counter only).
- `CLOSED_FORM`, the counter's closed form (`benchmarks.handwritten.ClosedFormCounter`):
  algebra, not backpropagation, an extra row of the counter.
- one row per entry of `ENGINE_VARIANTS`: the ways the engine can run a step. A new engine
  mode (a compiled tape, say) is one more entry, name -> objective maker (model ->
  objective(X, T) -> loss, the gradients left in `.grad`), plus its targets in
  `configs`; it then gets its own row in every table, its own ratios and verdicts.

For the GRU, LSTM and "user" cases the engine rows run the models of
`benchmarks.user_models` (a cell stepped by `mg.scan`; the adder as a user writes it),
against `benchmarks.cells` and `benchmarks.handwritten` respectively.

- `time_step_case`: all of them, and the other libraries, on one case and dtype, each
  from the same parameters; every step is first run once and its loss checked against the
  hand-written one (so the rows provably compute the same thing), then all are timed in
  alternation (`timing.alternate`).
- `measure_memory`: tracemalloc peak of one step of each (`memory.step_peak`); the
  hand-written steps' preallocated buffers are dropped first, so their peaks include them.
- `run_sweep`: the same implementations in alternation at each size of a sweep (`LEAN`
  left out: the sweeps fit growth exponents; their ratios are to `HANDWRITTEN`).
"""

from __future__ import annotations

import gc
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minigrad import CompiledFunction
from minigrad.models.timing import Timing, alternate
from minigrad.models.training import engine_objective

from .configs import COMPILED, EAGER, StepCase, Sweep
from .memory import step_peak
from .others import other_steps
from .steps import CELLS, ObjectiveMaker, adder_setup, cell_setup, counter_setup

__all__ = ["CLOSED_FORM", "ENGINE_VARIANTS", "HANDWRITTEN", "LEAN", "TUTORIAL", "CaseResult",
           "MemoryResult", "SweepPoint", "measure_memory", "run_sweep", "time_step_case"]

HANDWRITTEN, TUTORIAL = "hand-written", "tutorial-style"
# The adder's second hand-written step (`benchmarks.lean`): it keeps only the states and
# block-sized work arrays, a third of `HANDWRITTEN`'s peak, and is faster at long sequences.
# Where both run, the faster (for memory: the smaller) is the baseline of the ratios.
LEAN = "hand-written, lean"
CLOSED_FORM = "closed form (algebra, not autodiff)"
# The compiled row's first steps trace (twice: the second checks the first); every case
# runs at least two steps before its timed rounds.
ENGINE_VARIANTS: dict[str, ObjectiveMaker] = {
    EAGER: engine_objective,
    COMPILED: lambda model: engine_objective(model, compiled=True),
}
ENGINE_GC_OFF = f"{EAGER}, gc off"
# Relative loss agreement demanded of every implementation's first step.
LOSS_RTOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-4}

Step = Callable[[], float]


def _ratio(timings: dict[str, Timing], name: str, baseline: str) -> float:
    return timings[name].median / timings[baseline].median


@dataclass
class CaseResult:
    case: StepCase
    dtype: np.dtype
    timings: dict[str, Timing]          # implementation -> time per step; baselines first
    first_loss: dict[str, float]
    faults: dict[str, float | None]     # implementation -> page faults per step
    tracing: dict[str, tuple[int, float]]  # compiled variant -> (traces, seconds tracing)
    notes: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> str:
        """The faster hand-written step: the strongest baseline a user could write."""
        return min((b for b in (HANDWRITTEN, LEAN) if b in self.timings),
                   key=lambda b: self.timings[b].median)

    def ratio(self, name: str) -> float:
        """`name`'s time over the baseline's (`baseline`)."""
        return _ratio(self.timings, name, self.baseline)

    def tutorial_ratio(self, name: str) -> float | None:
        """`name`'s time over the tutorial-style step's; None where the case has none."""
        return _ratio(self.timings, name, TUTORIAL) if TUTORIAL in self.timings else None

    def target(self, name: str) -> float | None:
        """The target of implementation `name`; targets apply to float64 only."""
        return self.case.targets.get(name) if self.dtype == np.float64 else None


def _steps(case: StepCase, dtype: Any,
           with_others: bool) -> tuple[dict[str, Step], dict[str, Any]]:
    """The steps of every implementation, and the objective each engine variant made."""
    setup: Any
    if case.is_counter:
        setup = counter_setup(case.batch, case.timesteps)
        steps = {HANDWRITTEN: setup.handwritten_step(), CLOSED_FORM: setup.closed_form_step(),
                 TUTORIAL: setup.reference_step()}
    elif case.model in CELLS:
        setup = cell_setup(case.model, case.batch, case.timesteps, case.states, dtype)
        steps = {HANDWRITTEN: setup.handwritten_step()}
    else:
        setup = adder_setup(case.batch, case.timesteps, case.states, dtype,
                            preset=case.preset)
        steps = {HANDWRITTEN: setup.handwritten_step(), LEAN: setup.lean_step(),
                 TUTORIAL: setup.reference_step()}
    engine_step = setup.user_step if case.model == "user" else setup.engine_step
    objectives: dict[str, Any] = {}
    for name, objective_of in ENGINE_VARIANTS.items():
        def made(model: Any, objective_of: ObjectiveMaker = objective_of,
                 name: str = name) -> Any:
            objectives[name] = objective_of(model)
            return objectives[name]
        steps[name] = engine_step(made)
    if with_others and case.others and case.model == "adder":
        steps.update(other_steps(setup))
    return steps, objectives


def _tracing(objectives: dict[str, Any]) -> dict[str, tuple[int, float]]:
    """(traces, seconds of tracing) of each engine variant whose loss is compiled."""
    return {name: (objective.loss_of.traces, objective.loss_of.trace_seconds)
            for name, objective in objectives.items()
            if isinstance(getattr(objective, "loss_of", None), CompiledFunction)}


def time_step_case(case: StepCase, dtype: Any, *, repeats: int | None = None,
                   with_others: bool = True) -> CaseResult:
    """Median time per training step of every implementation of `case` in `dtype`."""
    dtype = np.dtype(dtype)
    steps, objectives = _steps(case, dtype, with_others)
    notes = []
    first_loss = {name: step() for name, step in steps.items()}
    baseline_loss = first_loss[HANDWRITTEN]
    for name, loss in first_loss.items():
        if not math.isclose(loss, baseline_loss, rel_tol=LOSS_RTOL[dtype]):
            notes.append(f"{case.key} {dtype}: {name}'s first loss {loss:.10g} differs from "
                         f"the hand-written {baseline_loss:.10g}")
    timings = alternate(steps, repeats=repeats or case.repeats, warmup=case.warmup)
    faults = {name: page_faults_per_step(step) for name, step in steps.items()}
    return CaseResult(case, dtype, timings, first_loss, faults, _tracing(objectives), notes)


def page_faults_per_step(step: Step, steps: int = 3) -> float | None:
    """Minor page faults per call of `step` (memory the allocator had given back to the
    kernel and had to fault in again), counted after the timed rounds; None where the
    platform does not count them."""
    try:
        import resource
    except ImportError:  # not a Unix
        return None

    def faults() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    before = faults()
    for _ in range(steps):
        step()
    return (faults() - before) / steps


@dataclass
class MemoryResult:
    case: StepCase
    dtype: np.dtype
    peaks: dict[str, int]   # implementation -> bytes; baselines first

    @property
    def baseline(self) -> str:
        """The hand-written step of the smaller peak: for memory the strongest baseline is
        the leaner of the two a user could write, whichever that is."""
        return min((HANDWRITTEN, LEAN), key=self.peaks.__getitem__)

    def ratio(self, name: str) -> float:
        """`name`'s peak over the baseline's (`baseline`)."""
        return self.peaks[name] / self.peaks[self.baseline]

    def target(self, name: str, targets: dict[str, float]) -> float | None:
        return targets.get(name) if self.dtype == np.float64 else None


# Steps before a memory measurement: a compiled step traces on its first two calls and
# writes its backward code on the third, once, as it compiles; the steps of training after
# those are what is measured (the optimizer's state exists by then too).
MEMORY_WARMUP = 3


def measure_memory(case: StepCase, dtype: Any, *, repeats: int) -> MemoryResult:
    """Traced peak of one step of every implementation on `case`, after `MEMORY_WARMUP`
    steps: both hand-written adders (each as `flat_step` runs it, its kept buffers dropped
    before each measured step), the tutorial-style one and every engine variant."""
    setup = adder_setup(case.batch, case.timesteps, case.states, dtype, preset=case.preset)
    handwritten, lean = setup.handwritten(), setup.lean()
    warmup = MEMORY_WARMUP
    peaks = {HANDWRITTEN: step_peak(setup.handwritten_step(handwritten), repeats=repeats,
                                    warmup=warmup, before_each=handwritten.release_buffers),
             LEAN: step_peak(setup.lean_step(lean), repeats=repeats, warmup=warmup,
                             before_each=lean.release_buffers),
             TUTORIAL: step_peak(setup.reference_step(), repeats=repeats, warmup=warmup)}
    for name, objective_of in ENGINE_VARIANTS.items():
        peaks[name] = step_peak(setup.engine_step(objective_of), repeats=repeats,
                                warmup=warmup)
    return MemoryResult(case, np.dtype(dtype), peaks)


@dataclass
class SweepPoint:
    value: int
    sizes: tuple[int, int, int]   # batch, timesteps, states
    timings: dict[str, Timing]    # implementation -> time per step; baselines first

    def ratio(self, name: str) -> float:
        return _ratio(self.timings, name, HANDWRITTEN)


def without_gc(step: Step) -> Step:
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
    """The float64 adder step at each size of `sweep`, every implementation alternating;
    with `sweep.gc_off`, also the eager engine stepped with the garbage collector paused
    (the collector's share of the engine's time)."""
    points = []
    for value, default_repeats in zip(sweep.values, sweep.repeats):
        sizes = sweep.sizes(value)
        setup = adder_setup(*sizes)
        steps = {HANDWRITTEN: setup.handwritten_step(), TUTORIAL: setup.reference_step()}
        for name, objective_of in ENGINE_VARIANTS.items():
            steps[name] = setup.engine_step(objective_of)
        if sweep.gc_off:
            steps[ENGINE_GC_OFF] = without_gc(setup.engine_step())
        timings = alternate(steps, repeats=repeats or default_repeats, warmup=sweep.warmup)
        points.append(SweepPoint(value, sizes, timings))
    return points


def growth_exponents(points: list[SweepPoint], name: str) -> list[float | None]:
    """d log(time) / d log(size) of implementation `name` between each point and the
    previous one (None first): 1 is linear growth, above 1 faster than linear."""
    exponents: list[float | None] = [None]
    for before, after in itertools.pairwise(points):
        t0, t1 = before.timings[name].median, after.timings[name].median
        exponents.append(math.log(t1 / t0) / math.log(after.value / before.value))
    return exponents
