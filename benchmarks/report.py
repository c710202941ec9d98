"""The markdown report: the measurements of `suite` and `ops` as tables, with the targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .configs import Sweep
from .ops import OpTiming
from .suite import (
    ENGINE_VARIANTS,
    HANDWRITTEN,
    LEAN,
    TUTORIAL,
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


def _target_cell(name: str, what: str, ratio: float, target: float | None,
                 verdicts: list[Verdict]) -> str:
    """The target column of an engine row, recording its verdict; "" for other rows."""
    if name not in ENGINE_VARIANTS:
        return ""
    if target is None:
        return "(float64 only)"
    passed = ratio <= target
    verdicts.append(Verdict(f"{name}, {what}: ratio ≤ {target:g}", f"{ratio:.2f}", passed))
    return f"≤ {target:g} {_mark(passed)}"


def _shown(name: str, ratio: float) -> str:
    return f"**{ratio:.2f}**" if name in ENGINE_VARIANTS else f"{ratio:.2f}"


def step_table(results: Sequence[CaseResult]) -> tuple[str, list[Verdict]]:
    """One row per implementation of each case and dtype, with its ratios to both
    baselines; the targets on the float64 engine rows."""
    rows: list[list[str]] = []
    verdicts: list[Verdict] = []
    for r in results:
        for name, timing in r.timings.items():
            ratio = r.ratio(name)
            against = "" if r.baseline == HANDWRITTEN else f" (against {r.baseline})"
            target = (_target_cell(name, f"{r.case.key} ({r.case.sizes}) step{against}",
                                   ratio, r.target(name), verdicts) if r.case.targets else "")
            tutorial = r.tutorial_ratio(name)
            faults = r.faults.get(name)
            traces, seconds = r.tracing.get(name, (0, 0.0))
            rows.append([r.case.key, r.case.sizes, r.dtype.name, name, str(timing.repeats),
                         format_time(timing.median), f"±{50 * timing.spread:.0f}%",
                         "—" if faults is None else f"{faults:.0f}",
                         _shown(name, ratio),
                         "—" if tutorial is None else f"{tutorial:.2f}", target,
                         f"{format_time(seconds)} ({traces})" if traces else ""])
    header = ["case", "batch × T × states", "dtype", "implementation", "repeats",
              "median per step", "IQR/2", "page faults per step",
              "ratio to the faster hand-written",
              f"ratio to {TUTORIAL}", "target", "tracing (traces)"]
    return table(header, rows, "lllllrrrrrlr"), verdicts


def memory_table(results: Sequence[MemoryResult],
                 targets: dict[str, float]) -> tuple[str, list[Verdict]]:
    """One row per implementation of each dtype: its peak, its ratio to the baseline of
    memory (the smaller of the two hand-written peaks, named in the header) and to the
    tutorial-style step's; the targets on the float64 engine rows."""
    rows: list[list[str]] = []
    verdicts: list[Verdict] = []
    for r in results:
        for name, peak in r.peaks.items():
            ratio = r.ratio(name)
            target = _target_cell(name, f"peak memory of a step at {r.case.key} "
                                  f"(against {r.baseline})", ratio,
                                  r.target(name, targets), verdicts)
            rows.append([r.case.key, r.case.sizes, r.dtype.name, name, format_bytes(peak),
                         _shown(name, ratio), f"{peak / r.peaks[TUTORIAL]:.2f}", target])
    baselines = {r.baseline for r in results}
    against = (baselines.pop() if len(baselines) == 1
               else f"the smaller of {HANDWRITTEN} and {LEAN}")
    header = ["case", "batch × T × states", "dtype", "implementation", "peak",
              f"ratio to {against}", f"ratio to {TUTORIAL}", "target"]
    return table(header, rows, "llllrrrl"), verdicts


_SYMBOL = {"timesteps": "T", "batch": "batch", "states": "states"}


def sweep_table(sweep: Sweep, points: Sequence[SweepPoint]) -> str:
    """Time per step of each implementation, each one's ratio to the hand-written step, and
    the local growth exponent d log(time) / d log(size) of each."""
    points = list(points)
    names = list(points[0].timings) if points else []
    others = [name for name in names if name != HANDWRITTEN]
    exponents = {name: growth_exponents(points, name) for name in names}
    rows = []
    for i, p in enumerate(points):
        batch, timesteps, states = p.sizes
        rows.append([f"{p.value:,}", f"{batch} × {timesteps} × {states}",
                     str(p.timings[HANDWRITTEN].repeats),
                     *(format_time(p.timings[name].median) for name in names),
                     *(_shown(name, p.ratio(name)) for name in others),
                     *("" if exponents[name][i] is None else f"{exponents[name][i]:.2f}"
                       for name in names)])
    header = [_SYMBOL[sweep.vary], "batch × T × states", "repeats",
              *(f"{name} per step" for name in names),
              *(f"{name} / {HANDWRITTEN}" for name in others),
              *(f"{name} exponent" for name in names)]
    return table(header, rows, "llr" + "r" * (len(header) - 3))


def linearity_verdicts(points: Sequence[SweepPoint], tolerance: float) -> list[Verdict]:
    """Each engine mode's step grows at most linearly in T: each local exponent is at most
    `tolerance`, or at most the hand-written step's exponent over the same interval + 0.1
    where that one is already above `tolerance` (the memory hierarchy slowing a long
    sequence is not the engine's doing)."""
    points = list(points)
    baseline = [e for e in growth_exponents(points, HANDWRITTEN) if e is not None]
    limits = [max(tolerance, e + 0.1) for e in baseline]
    span = f"T = {points[0].value:,} … {points[-1].value:,}" if points else "no points"
    verdicts = []
    for name in ENGINE_VARIANTS:
        engine = [e for e in growth_exponents(points, name) if e is not None]
        over = [f"; {e:.2f} > limit {limit:.2f}" for e, limit in zip(engine, limits)
                if e > limit]
        worst = max(engine, default=float("nan"))
        verdicts.append(Verdict(f"{name} step at most linear in T ({span}): every exponent ≤ "
                                f"{tolerance:g} (or ≤ {HANDWRITTEN}'s + 0.1)",
                                f"largest {worst:.2f}" + "".join(over), not over))
    return verdicts


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
