"""Testing the gradient tests: plausible mistakes put into each VJP of the op table, and the
check that an op's own gradient property test catches every one of them.

A `Mutant` is one mistake (a `Mutation` of `MUTATIONS`) in one VJP of one op of `OPS`: the
sign flipped, a factor of 2, the upstream gradient replaced by ones, a broadcast operand's
gradient averaged instead of summed, a square gradient transposed, the operands' VJPs
swapped, the output read where the input belongs (or the reverse), the permutation applied
where its inverse belongs. `mutants(name)` lists an op's mutants, so a new op of the table
gets them the moment it is defined. An operand without a gradient (its VJP is None:
cross_entropy's labels) has no mutants, and an op without any (a comparison) none at all.

`hunt(name, prop)` runs a gradient property test `prop(name, data)` (`data` is Hypothesis's
`st.data()`, used through `data.draw` alone) on `MAX_EXAMPLES` draws seeded by the op's name,
so the same on every run (no example database, no shrinking). Each draw is tried as it is
(the test must pass: a failure would not be a mutant's doing), then replayed with each mutant
of the op not yet killed installed. A mutant is killed if the test fails on a draw after
the mutated VJP ran (a crash in it included); it survives if the test passes although the
mistake changed an operand's gradient, or, for a mistake that must arise, if no draw made it
change anything. A survivor is a mistake the test cannot see, unless `EQUIVALENT` lists it
with the reason it is no mistake.
`check_mutant` and `check_op` raise `MutantSurvived` naming the op, the VJP and the mistake;
`python -m minigrad.testing.mutants [OP ...]` prints every verdict.

`installed(mutant)` swaps the op's `vjps` for a `with` block (the table is global: not
thread-safe). It uses the contract of ops of any number of operands: `vjps` becomes a
function of one call's operand arrays and options that returns that call's VJPs, so a
mutation sees the operands' shapes even when the op saves nothing. For an op with a tuple of
VJPs that function is a tuple too, of the op's own VJPs (None where the op has None), so
what reads the op's VJPs as a tuple (the refusal of an operand without a gradient that
requires one: where's condition, cross_entropy's labels) reads what it always did.

A kill is the mutant's doing: the test failed on a draw while the mutated VJP ran (a crash in
it included). A test that fails with the mutant installed before the mutated VJP ran, or
that draws other values on the replay than on the recorded run, cannot judge the mutant:
`hunt` raises RuntimeError saying so, rather than count it as a kill.
"""

from __future__ import annotations

import copy
import functools
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..primitive import OPS, Op
from ..tape import Cotangent, sum_to_shape
from . import gradcheck, without_hypothesis

try:
    from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
    from hypothesis import strategies as st
    from hypothesis.errors import Flaky
except ModuleNotFoundError as missing:  # Hypothesis is in the test extra, not a dependency
    raise without_hypothesis("mutants", missing) from None
from .strategies import Case, op_cases

__all__ = [
    "EQUIVALENT", "MAX_EXAMPLES", "MUTATIONS", "Call", "Mutant", "MutantSurvived", "Mutation",
    "Tally", "Verdict", "check_mutant", "check_op", "gradient_property", "hunt", "installed",
    "judge", "main", "mutants", "outcome",
]

VJP = Callable[..., Any]
Property = Callable[[str, Any], Any]
# The tolerances of the op tests: central differences in float64 are good to ~1e-9 there.
ATOL, RTOL = 1e-6, 1e-5
# As many draws as the suite's profiles give each op test. Most mutants die at the first
# draw or two; every draw costs one run of the test, plus one per mutant still alive.
MAX_EXAMPLES = 40


class MutantSurvived(AssertionError):
    """A gradient test passed with a mistake in a VJP (or failed with a listed equivalent)."""


@dataclass(frozen=True)
class Call:
    """What a mutation sees of one recorded call of an op: the VJPs the call would get, its
    operands' arrays and its options."""

    op: Op
    vjps: list[VJP]
    arrays: Sequence[Any]
    options: dict[str, Any]

    def output(self) -> np.ndarray:
        """The op's output, recomputed: a VJP is handed it only if the op saves it."""
        out = self.op.forward(*self.arrays, **self.options)
        return np.asarray(out[0] if self.op.residual else out)

    def replaced(self, slot: int, vjp: VJP) -> list[VJP]:
        """The call's VJPs with the one of operand `slot` replaced by `vjp`."""
        vjps = list(self.vjps)
        vjps[slot] = vjp
        return vjps


@dataclass(frozen=True)
class Mutation:
    """One kind of mistake. `rewrite(call, slot)` returns the call's VJPs with the mistake made
    in the VJP of operand `slot`; `applies(op)` says whether the op has what it changes; a
    `per_operand` mutation makes a mutant of each VJP, any other one mutant per op (slot 0).
    If `must_arise`, a test that never draws a case where the mistake changes a gradient has
    a blind spot; otherwise the op may have nothing for it to change (no broadcasting, say)."""

    name: str
    mistake: str
    rewrite: Callable[[Call, int], list[VJP]]
    applies: Callable[[Op], bool] = lambda op: True
    per_operand: bool = True
    must_arise: bool = True


def _on_result(change: Callable[[np.ndarray, Call, int], np.ndarray | None]):
    """A mistake in what the VJP returns: `change(gradient, call, slot)`, None where it leaves
    the gradient as it is. A Cotangent (getitem's sparse slice) is changed in dense form."""

    def rewrite(call: Call, slot: int) -> list[VJP]:
        vjp = call.vjps[slot]

        def changed(gradient: np.ndarray) -> np.ndarray:
            new = change(gradient, call, slot)
            return gradient if new is None else new

        def mutated(*args: Any, **options: Any) -> Any:
            result = vjp(*args, **options)
            if isinstance(result, Cotangent):
                return _ChangedCotangent(result, changed)
            return changed(np.asarray(result))

        return call.replaced(slot, mutated)

    return rewrite


class _ChangedCotangent(Cotangent):
    """A Cotangent with `change` applied to its dense form."""

    __slots__ = ("inner", "change")

    def __init__(self, inner: Cotangent, change: Callable[[np.ndarray], np.ndarray]):
        self.inner = inner
        self.change = change

    def densify(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return self.change(self.inner.densify(shape, dtype))

    def add_into(self, dense: np.ndarray) -> None:
        dense += self.change(self.inner.densify(dense.shape, dense.dtype))


def _transposed(gradient: np.ndarray, call: Call, slot: int) -> np.ndarray | None:
    """Square gradients only: any other shape is a shape error, which the sweep reports
    whatever the test; this asks whether the test sees wrong values."""
    square = gradient.ndim >= 2 and gradient.shape[-1] == gradient.shape[-2] > 1
    return np.swapaxes(gradient, -1, -2) if square else None


def _averaged(gradient: np.ndarray, call: Call, slot: int) -> np.ndarray | None:
    """The gradient of a broadcast operand reduced by the mean over the broadcast axes: each
    element gets 1/k of the sum over the k output elements it was broadcast to, not the sum."""
    shape = np.shape(call.arrays[slot])
    size = int(np.prod(shape))
    if gradient.shape == shape or gradient.size <= size:
        return None
    return sum_to_shape(gradient, shape) * (size / gradient.size)


def _upstream_ones(call: Call, slot: int) -> list[VJP]:
    vjp = call.vjps[slot]
    return call.replaced(slot, lambda g, *args, **options: vjp(np.ones_like(g), *args, **options))


def _swapped(call: Call, slot: int) -> list[VJP]:
    """The first and last differentiable operands' VJPs exchanged (where's a and b, not its
    condition, which has none); a call with one is left alone."""
    vjps = list(call.vjps)
    slots = [i for i, vjp in enumerate(vjps) if vjp is not None]
    if slots:
        first, last = slots[0], slots[-1]
        vjps[first], vjps[last] = vjps[last], vjps[first]
    return vjps


def _output_for_input(call: Call, slot: int) -> list[VJP]:
    vjp = call.vjps[slot]
    return call.replaced(slot, lambda g, out, x, **options: vjp(g, out, call.output(), **options))


def _input_for_output(call: Call, slot: int) -> list[VJP]:
    vjp = call.vjps[slot]
    x = np.asarray(call.arrays[slot])
    return call.replaced(slot, lambda g, out, *args, **options: vjp(g, x, *args, **options))


def _permutation_for_inverse(call: Call, slot: int) -> list[VJP]:
    """The VJP handed the inverse of `axes`: where it inverts the permutation, it gets the
    permutation itself (the same for a permutation that is its own inverse)."""
    vjp = call.vjps[slot]
    axes = call.options.get("axes")
    if axes is None:  # reversing all axes is its own inverse
        return call.vjps
    inverse = tuple(int(i) for i in np.argsort(np.mod(axes, len(axes))))
    return call.replaced(slot, lambda *args, **options: vjp(*args, **{**options, "axes": inverse}))


def _operands(op: Op) -> int | None:
    """How many operands the op takes; None if any number (stack, einsum)."""
    return len(op.vjps) if type(op.vjps) is tuple else None


def _differentiable(op: Op) -> list[int]:
    """The positions of the operands with a gradient: those whose VJP is not None (not
    cross_entropy's labels, nor where's condition); [0, -1] for an op of any number."""
    if type(op.vjps) is not tuple:
        return [0, -1]
    return [i for i, vjp in enumerate(op.vjps) if vjp is not None]


MUTATIONS: tuple[Mutation, ...] = (
    Mutation("negated", "the gradient's sign flipped", _on_result(lambda a, c, i: -a)),
    Mutation("doubled", "the gradient scaled by 2", _on_result(lambda a, c, i: 2.0 * a)),
    Mutation("upstream_ones", "the upstream gradient g replaced by ones (right only at the "
             "root of a graph)", _upstream_ones),
    # One operand has nothing to broadcast against; of several, only some ops broadcast.
    Mutation("averaged", "a broadcast operand's gradient averaged, not summed, over the axes "
             "it was broadcast along", _on_result(_averaged),
             applies=lambda op: len(_differentiable(op)) > 1, must_arise=False),
    Mutation("transposed", "a square gradient's last two axes swapped (a transpose missing or "
             "too many)", _on_result(_transposed), must_arise=False),
    Mutation("swapped", "the first and last operands' VJPs swapped", _swapped,
             applies=lambda op: len(_differentiable(op)) > 1, per_operand=False),
    Mutation("output_for_input", "the output read where the input belongs", _output_for_input,
             applies=lambda op: _operands(op) == 1 and op.saves_inputs),
    Mutation("input_for_output", "the input read where the output belongs", _input_for_output,
             applies=lambda op: _operands(op) == 1 and op.saves_output),
    Mutation("permutation_for_inverse", "the permutation applied where its inverse belongs",
             _permutation_for_inverse, applies=lambda op: op.domain.family == "transpose"),
)

# Mutants that compute the op's own gradient, by construction: (op, slot, mutation) -> why.
# A listed mutant must survive: one that is killed is listed wrongly.
EQUIVALENT: dict[tuple[str, int, str], str] = {
    ("add", 0, "swapped"): "both VJPs of add pass g through unchanged",
    ("relu", 0, "output_for_input"): "relu(x) > 0 exactly where x > 0, the mask its VJP reads",
}


@dataclass(frozen=True)
class Mutant:
    """Mutation `mutation` of the VJP of operand `slot` of op `op` (-1: the last operand of
    an op of any number of them)."""

    op: str
    slot: int
    mutation: Mutation

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.op, self.slot, self.mutation.name)

    def __str__(self) -> str:
        if not self.mutation.per_operand:
            where = "VJPs"
        elif self.slot >= 0:
            where = f"VJP {self.slot}"
        else:
            where = "VJP of the last operand"
        return f"{self.op}, {where}: {self.mutation.mistake} ({self.mutation.name})"


def mutants(name: str) -> list[Mutant]:
    """Every mutant of op `name`: each mutation that applies, in each of its VJPs (for an op
    of any number of operands, those of the first and of the last)."""
    op = OPS[name]
    slots = _differentiable(op)
    if not slots:  # a comparison: no gradient, hence no mistake in one
        return []
    return [Mutant(name, slot, mutation) for mutation in MUTATIONS if mutation.applies(op)
            for slot in (slots if mutation.per_operand else [0])]


@dataclass
class Tally:
    """How many VJP calls a mutant made, and in how many the gradient it gave its operand
    (summed to the operand's shape, as the sweep does) differed from the op's own."""

    calls: int = 0
    changed: int = 0


@contextmanager
def installed(mutant: Mutant) -> Iterator[Tally]:
    """Put `mutant` in the op table for the duration of the block and yield its `Tally`.
    The op's own VJPs are back afterwards, however the block ends, also in the loops scan
    writes (keyed by the op's VJPs); a function compiled and traced inside the block keeps
    the mutant's in its program: compile it anew after the block."""
    op = OPS[mutant.op]
    own = op.vjps
    tally = Tally()

    def vjps_of_call(arrays: Sequence[Any], options: dict[str, Any],
                     inputs: Sequence[Any]) -> list[VJP]:
        vjps = list(own if type(own) is tuple else own(arrays, options, inputs))  # type: ignore[operator,misc]
        mutated = mutant.mutation.rewrite(Call(op, vjps, arrays, options),
                                          mutant.slot % len(vjps))
        return [new if new is old else _observed(new, old, np.asarray(x), tally)
                for new, old, x in zip(mutated, vjps, arrays)]

    op.vjps = _Maker(own, vjps_of_call) if type(own) is tuple else vjps_of_call  # type: ignore[assignment]
    try:
        yield tally
    finally:
        op.vjps = own


class _Maker(tuple):
    """An op's own tuple of VJPs (None where it has None) that is also a maker of each call's
    VJPs, `make(arrays, options, inputs)`: `record` calls any `vjps` that is not exactly a
    tuple, and what reads the tuple (the refusal of an operand with None) reads the op's."""

    make: Callable[..., list[VJP]]

    def __new__(cls, vjps: tuple, make: Callable[..., list[VJP]]) -> _Maker:
        maker = super().__new__(cls, vjps)
        maker.make = make
        return maker

    def __call__(self, arrays: Sequence[Any], options: dict[str, Any],
                 inputs: Sequence[Any]) -> list[VJP]:
        return self.make(arrays, options, inputs)


def _observed(mutated: VJP, original: VJP, x: np.ndarray, tally: Tally) -> VJP:
    """`mutated`, counting in `tally` the calls (a crash in it included) and those whose
    gradient for `x` differs from `original`'s."""

    def vjp(*args: Any, **options: Any) -> Any:
        tally.calls += 1
        result = mutated(*args, **options)
        if _differs(result, original(*args, **options), x):
            tally.changed += 1
        return result

    return vjp


def _differs(a: Any, b: Any, x: np.ndarray) -> bool:
    dense = [g.densify(x.shape, x.dtype) if isinstance(g, Cotangent) else np.asarray(g)
             for g in (a, b)]
    try:
        mutated, own = (sum_to_shape(g, x.shape) for g in dense)
    except ValueError:  # a gradient that does not even fit the operand
        return True
    # Beyond rounding: a mistake that only reorders a sum (a transposed gradient of an operand
    # broadcast from one element, say) changes the last bits, not the gradient.
    return not np.allclose(mutated, own, rtol=1e-9, atol=1e-12)


def gradient_property(name: str, data: Any, *, atol: float = ATOL, rtol: float = RTOL) -> None:
    """The op's gradient test: `gradcheck` (engine against central differences, elementwise
    |engine - numerical| <= atol + rtol |numerical|) on a float64 case drawn by `op_cases`,
    with the projection of a non-scalar output drawn too."""
    case = data.draw(op_cases(name), label="case")
    gradcheck(case.call, *case.operands, atol=atol, rtol=rtol,
              seed=data.draw(st.integers(0, 2**32 - 1), label="seed"))


@dataclass(frozen=True)
class Verdict:
    """What a hunt found: `killed` (the test failed; `evidence` says how, on which draws)
    and the mutant's `Tally`."""

    mutant: Mutant
    killed: bool
    tally: Tally
    evidence: str = ""


class _Recorder:
    """Hypothesis's `data`, keeping a copy of every value drawn, with its label."""

    def __init__(self, data: Any):
        self.data = data
        self.draws: list[tuple[str | None, Any]] = []

    def draw(self, strategy: Any, label: str | None = None) -> Any:
        value = self.data.draw(strategy, label=label)
        self.draws.append((label, copy.deepcopy(value)))
        return value


class _NotJudged(RuntimeError):
    """The test failed with a mutant installed, but not by the mutant's doing: the harness's
    error, not a kill."""


class _Replay:
    """Hands a test, draw by draw, fresh copies of the values a recorded run of it drew."""

    def __init__(self, draws: list[tuple[str | None, Any]]):
        self.draws = iter(draws)

    def draw(self, strategy: Any, label: str | None = None) -> Any:
        try:
            return copy.deepcopy(next(self.draws)[1])
        except StopIteration:
            raise _NotJudged("the gradient test drew more values with the mutant installed "
                             "than without: it must draw the same values on every run") from None


def _described(draws: list[tuple[str | None, Any]]) -> str:
    parts = []
    for i, (label, value) in enumerate(draws, 1):
        if isinstance(value, Case):
            shapes = ", ".join(str(np.shape(x)) for x in value.operands)
            value = f"operands of shapes {shapes}{' ' if value.description else ''}" \
                    f"{value.description}"
        parts.append(f"draw {i} ({label}): {value if isinstance(value, str) else repr(value)}")
    return "; ".join(parts)


def hunt(name: str, prop: Property = gradient_property, *,
         candidates: Sequence[Mutant] | None = None,
         max_examples: int = MAX_EXAMPLES) -> list[Verdict]:
    """Run the test `prop(name, data)` (which uses `data.draw` alone) on `max_examples`
    Hypothesis draws, the same on every run; on each draw, first as it is (it must pass: a
    failure would not be a mutant's doing), then with each mutant of op `name` not yet killed
    installed, replaying the draw. Returns one `Verdict` per mutant (all of the op's by
    default)."""
    candidates = mutants(name) if candidates is None else list(candidates)
    if any(m.op != name for m in candidates):
        raise ValueError(f"hunt: mutants of other ops than '{name}' given")
    tallies = [Tally() for _ in candidates]
    evidence: dict[int, str] = {}

    unjudged: list[_NotJudged] = []  # the harness's own failure, which ends the hunt

    @_hunt_settings(max_examples)
    @seed(zlib.crc32(name.encode()))  # draws of their own for each op, the same every run
    @given(data=st.data())
    def run(data: Any) -> None:
        recorder = _Recorder(data)
        prop(name, recorder)
        if unjudged:  # (Hypothesis runs the failing draw again, to report it)
            raise unjudged[0]
        for i, mutant in enumerate(candidates):
            if i not in evidence:
                try:
                    failure = _failure(mutant, prop, recorder.draws, tallies[i])
                except _NotJudged as error:
                    error.args = (f"mutants: {mutant}: {error} (on {_described(recorder.draws)})"
                                  ", so the test cannot judge the op's mutants",)
                    unjudged.append(error)
                    raise
                if failure is not None:
                    evidence[i] = f"{failure} on {_described(recorder.draws)}"

    try:
        run()
    except Exception as error:
        if unjudged:
            raise RuntimeError(str(unjudged[0])) from unjudged[0]
        how = "draws different values on the same draw" if isinstance(error, Flaky) else "fails"
        raise RuntimeError(f"mutants: the gradient test of '{name}' {how} without any mutant, "
                           f"so it cannot judge them: {type(error).__name__}: "
                           f"{_first_line(error)}") from error
    return [Verdict(m, i in evidence, tallies[i], evidence.get(i, ""))
            for i, m in enumerate(candidates)]


def _failure(mutant: Mutant, prop: Property, draws: list, tally: Tally) -> str | None:
    """How the test fails on the recorded draws with `mutant` installed, or None if it passes.
    Any exception raised once the mutated VJP ran is a failure of the test (a crash kills
    too); one raised before, or the replay's own, is not the mutant's doing: `_NotJudged`."""
    with installed(mutant) as counted:
        try:
            prop(mutant.op, _Replay(draws))
        except _NotJudged:
            raise
        except Exception as error:
            failure = f"{type(error).__name__}: {_first_line(error)}"
            if not counted.calls:  # the test passed on these draws without the mutant
                raise _NotJudged(f"the gradient test failed before the mutated VJP ran "
                                 f"({failure})") from error
            return failure
        finally:
            tally.calls += counted.calls
            tally.changed += counted.changed
    return None


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [""])[0]


def _hunt_settings(max_examples: int) -> settings:
    # The same draws on every run: seeded, and no database to replay an earlier run's failure
    # from. No shrinking: a test that fails without mutants is reported as it is.
    return settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                    phases=(Phase.explicit, Phase.generate), report_multiple_bugs=False,
                    verbosity=Verbosity.quiet, suppress_health_check=list(HealthCheck))


@functools.cache
def _hunted(name: str, prop: Property, max_examples: int) -> dict[tuple, Verdict]:
    return {v.mutant.key: v for v in hunt(name, prop, max_examples=max_examples)}


def judge(verdict: Verdict, max_examples: int = MAX_EXAMPLES) -> Verdict:
    """Raise `MutantSurvived` if the test missed the verdict's mutant (and `EQUIVALENT` does
    not list it), or if the mutant is listed but was killed; else return the verdict."""
    mutant, tally = verdict.mutant, verdict.tally
    reason = EQUIVALENT.get(mutant.key)
    if reason is not None:
        if verdict.killed:
            raise MutantSurvived(f"{mutant}: listed as equivalent ({reason}), but its gradient "
                                 f"test failed: {verdict.evidence}")
        return verdict
    if not verdict.killed and not tally.calls:
        raise MutantSurvived(f"{mutant}: not judged: its VJP never ran in {max_examples} draws "
                             f"(the test does not reach the op's VJPs as installed: a function "
                             f"compiled before the hunt, a scan in it too, runs the op's own)")
    if not verdict.killed and tally.changed:
        raise MutantSurvived(f"{mutant}: survived: the gradient test passed {max_examples} "
                             f"draws although the mistake changed {tally.changed} of "
                             f"{tally.calls} gradients")
    if not verdict.killed and mutant.mutation.must_arise:
        raise MutantSurvived(f"{mutant}: survived: in {max_examples} draws the gradient test "
                             f"never drew a case where the mistake changes a gradient "
                             f"({tally.calls} calls)")
    return verdict


def check_mutant(mutant: Mutant, prop: Property = gradient_property, *,
                 max_examples: int = MAX_EXAMPLES) -> Verdict:
    """`judge` the mutant's verdict. The hunt covers all the op's mutants at once and is
    kept per (op, test, max_examples), so checking each mutant of an op hunts once."""
    verdict = _hunted(mutant.op, prop, max_examples).get(mutant.key)
    if verdict is None:  # not one of the table's mutants of the op
        verdict = hunt(mutant.op, prop, candidates=[mutant], max_examples=max_examples)[0]
    return judge(verdict, max_examples)


def check_op(name: str, prop: Property = gradient_property, *,
             max_examples: int = MAX_EXAMPLES) -> list[Verdict]:
    """Check that the test `prop` kills every mutant of op `name`: the verdicts, or one
    `MutantSurvived` listing every mutant it missed."""
    verdicts, failures = [], []
    for verdict in _hunted(name, prop, max_examples).values():
        try:
            verdicts.append(judge(verdict, max_examples))
        except MutantSurvived as error:
            failures.append(str(error))
    if failures:
        raise MutantSurvived(f"{len(failures)} of {len(verdicts) + len(failures)} mutants of "
                             f"'{name}' not caught:\n" + "\n".join(failures))
    return verdicts


def outcome(verdict: Verdict, max_examples: int = MAX_EXAMPLES) -> str:
    """The verdict in a word: "killed", "equivalent" (listed in `EQUIVALENT`), "no case" (a
    mutation the op's draws never made change a gradient, and that need not arise), or
    "SURVIVED"."""
    try:
        judge(verdict, max_examples)
    except MutantSurvived:
        return "SURVIVED"
    if verdict.mutant.key in EQUIVALENT:
        return "equivalent"
    return "killed" if verdict.killed else "no case"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m minigrad.testing.mutants [OP ...] [--examples N]`: hunt the mutants of the
    ops named (all of the table's by default) with `gradient_property` and print one line per
    mutant; the exit status is 1 if any survived."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m minigrad.testing.mutants",
        description="Check that each op's gradient test catches plausible mistakes in its VJPs.")
    parser.add_argument("ops", nargs="*", metavar="OP", help="ops of the table (default: all)")
    parser.add_argument("--examples", type=int, default=MAX_EXAMPLES,
                        help=f"Hypothesis draws per op (default {MAX_EXAMPLES})")
    args = parser.parse_args(argv)
    unknown = [name for name in args.ops if name not in OPS]
    if unknown:
        parser.error(f"no op named {', '.join(map(repr, unknown))} in the table; the ops are "
                     f"{', '.join(sorted(OPS))}")
    if args.examples < 1:
        parser.error(f"--examples must be at least 1, got {args.examples}")
    survived = 0
    for name in args.ops or sorted(OPS):
        for verdict in hunt(name, max_examples=args.examples):
            word = outcome(verdict, args.examples)
            survived += word == "SURVIVED"
            detail = verdict.evidence if verdict.killed else EQUIVALENT.get(
                verdict.mutant.key, f"changed {verdict.tally.changed} of "
                                    f"{verdict.tally.calls} gradients")
            print(f"{word:10s}  {verdict.mutant}  [{detail}]")
    print(f"{survived} survived")
    return int(survived > 0)


if __name__ == "__main__":
    raise SystemExit(main())
