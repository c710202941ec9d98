"""The markdown report: the measurements of `suite` and `ops` as tables, with the targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .configs import Sweep
from .ops import OpTiming
from .suite import (
    ENGINE,
    ENGINE_GC_OFF,
    REFERENCE,
    CaseResult,
    MemoryResult,
    SweepPoint,
    growth_exponents,
)

__all__ = ["Verdict", "format_bytes", "format_time", "memory_table", "ops_table",
           "step_table", "sweep_table", "table", "targets_table"]

PASS, MISS = "✓ pass", "✗ miss"


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    passed: bool


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A markdown table; `align` has one letter per column, l or r (default l)."""
    align = align.ljust(len(header), "l")
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)


def format_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def format_bytes(n: float) -> str:
    return f"{n / 1e6:.3g} MB" if n >= 1e5 else f"{n / 1e3:.3g} kB"


def _mark(passed: bool) -> str:
    return PASS if passed else MISS


def step_table(results: Sequence[CaseResult]) -> tuple[str, list[Verdict]]:
    """One row per implementation of each case and dtype; the target on the float64
    engine row."""
    rows, verdicts = [], []
    for r in results:
        for name, timing in r.timings.items():
            ratio = r.ratio(name)
            target = ""
            if name == ENGINE:
                if r.target is None:
                    target = "(float64 only)"
                else:
                    passed = ratio <= r.target
                    target = f"≤ {r.target:g} {_mark(passed)}"
                    verdicts.append(Verdict(f"{r.case.key} ({r.case.sizes}): step ratio ≤ "
                                            f"{r.target:g}", f"{ratio:.2f}", passed))
            shown_ratio = f"**{ratio:.2f}**" if name == ENGINE else f"{ratio:.2f}"
            rows.append([r.case.key, r.case.sizes, r.dtype.name, name, str(timing.repeats),
                         format_time(timing.median), f"±{50 * timing.spread:.0f}%",
                         shown_ratio, target])
    header = ["case", "batch × T × states", "dtype", "implementation", "repeats",
              "median per step", "IQR/2", "ratio to hand-coded", "target"]
    return table(header, rows, "lllllrrrl"), verdicts


def memory_table(results: Sequence[MemoryResult], target: float) -> tuple[str, list[Verdict]]:
    rows, verdicts = [], []
    for r in results:
        mark = ""
        if r.dtype == np.float64:
            passed = r.ratio <= target
            mark = f"≤ {target:g} {_mark(passed)}"
            verdicts.append(Verdict(f"peak memory of a step at {r.case.key}: ratio ≤ "
                                    f"{target:g}", f"{r.ratio:.2f}", passed))
        else:
            mark = "(float64 only)"
        rows.append([r.case.key, r.case.sizes, r.dtype.name, format_bytes(r.reference),
                     format_bytes(r.engine), f"**{r.ratio:.2f}**", mark])
    header = ["case", "batch × T × states", "dtype", f"{REFERENCE} peak", f"{ENGINE} peak",
              "ratio", "target"]
    return table(header, rows, "lllrrrl"), verdicts


_UNIT = {"timesteps": "timestep", "batch": "sample", "states": "state"}
_SYMBOL = {"timesteps": "T", "batch": "batch", "states": "states"}


def sweep_table(sweep: Sweep, points: Sequence[SweepPoint]) -> str:
    """Time per step, the ratio, time per unit of the varied size, and the local growth
    exponent d log(time) / d log(size) of each implementation (and of the engine with the
    garbage collector paused, where the sweep measured it)."""
    unit = _UNIT[sweep.vary]
    points = list(points)
    gc_off = all(p.engine_gc_off is not None for p in points)
    columns = [(REFERENCE, "reference"), (ENGINE, "engine")]
    if gc_off:
        columns.append((ENGINE_GC_OFF, "engine_gc_off"))
    exponents = {which: growth_exponents(points, which) for _, which in columns}
    rows = []
    for i, p in enumerate(points):
        batch, timesteps, states = p.sizes
        times = [getattr(p, which).median for _, which in columns]
        rows.append([f"{p.value:,}", f"{batch} × {timesteps} × {states}",
                     str(p.engine.repeats), *(format_time(t) for t in times),
                     f"**{p.ratio:.2f}**", *(format_time(t / p.value) for t in times),
                     *("" if exponents[which][i] is None else f"{exponents[which][i]:.2f}"
                       for _, which in columns)])
    header = [_SYMBOL[sweep.vary], "batch × T × states", "repeats",
              *(f"{name} per step" for name, _ in columns), "ratio",
              *(f"{name} per {unit}" for name, _ in columns),
              *(f"{name} exponent" for name, _ in columns)]
    return table(header, rows, "llr" + "r" * (len(header) - 3))


def linearity_verdict(points: Sequence[SweepPoint], tolerance: float) -> Verdict:
    """The engine's step grows at most linearly in T: each local exponent is at most
    `tolerance`, or at most the hand-coded step's exponent over the same interval + 0.1
    where that one is already above `tolerance` (the memory hierarchy slowing a long
    sequence is not the engine's doing)."""
    points = list(points)
    engine = [e for e in growth_exponents(points, "engine") if e is not None]
    reference = [r for r in growth_exponents(points, "reference") if r is not None]
    limits = [max(tolerance, r + 0.1) for r in reference]
    over = [f"; {e:.2f} > limit {limit:.2f}" for e, limit in zip(engine, limits) if e > limit]
    worst = max(engine, default=float("nan"))
    span = f"T = {points[0].value:,} … {points[-1].value:,}" if points else "no points"
    return Verdict(f"engine step at most linear in T ({span}): every exponent ≤ "
                   f"{tolerance:g} (or ≤ hand-coded's + 0.1)",
                   f"largest {worst:.2f}" + "".join(over), not over)


def ops_table(timings: Sequence[OpTiming]) -> str:
    rows = []
    us = lambda s: "—" if s is None else f"{s * 1e6:.2f}"
    for t in timings:
        if t.case is None or t.numpy is None or t.forward is None or t.forward_backward is None:
            rows.append([t.name, "", "", "—", "—", "—", "—", "—", t.note])
            continue
        rows.append([t.name, t.case.family, t.case.description, us(t.numpy), us(t.forward),
                     us(t.forward - t.numpy), us(t.forward_backward),
                     us(t.forward_backward - t.forward), t.note])
    header = ["op", "family", "inputs", "NumPy forward (µs)", "minigrad forward (µs)",
              "forward overhead (µs)", "minigrad forward + backward (µs)", "backward (µs)",
              "note"]
    return table(header, rows, "lllrrrrrl")


def targets_table(verdicts: Sequence[Verdict]) -> str:
    rows = [[v.target, v.measured, _mark(v.passed)] for v in verdicts]
    return table(["target (float64, one BLAS thread)", "measured", "verdict"], rows, "lrl")
