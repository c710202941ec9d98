"""Testing the gradient tests: every plausible mistake of `minigrad.testing.mutants`, in every
VJP of every op of the table, must make the op's own gradient test in test_ops.py fail. A
new op is in the parametrization the moment it is defined."""

import numpy as np
import pytest
import test_ops
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad import OPS, Domain, defop
from minigrad.testing import gradcheck
from minigrad.testing import mutants as mm
from minigrad.testing.strategies import arrays, op_cases, shapes

# The property each mutant must break: test_ops.py's gradient test of one op, as it is.
OWN_TEST = test_ops.test_gradient_matches_numerical.hypothesis.inner_test
MUTATION = {m.name: m for m in mm.MUTATIONS}

# Mistakes the op tests miss today, each with the reason (a strict xfail: it must keep
# surviving until its fix lands). None: gradcheck now draws the upstream gradient of scalar
# outputs too, which kills the losses' "upstream gradient replaced by ones".
KNOWN_SURVIVORS: dict[tuple, str] = {}


def _param(mutant):
    marks = [pytest.mark.xfail(strict=True, raises=mm.MutantSurvived,
                               reason=KNOWN_SURVIVORS[mutant.key])] \
        if mutant.key in KNOWN_SURVIVORS else []
    return pytest.param(mutant, marks=marks, id="-".join(map(str, mutant.key)))


ALL_MUTANTS = [_param(m) for name in sorted(OPS) for m in mm.mutants(name)]


@pytest.mark.parametrize("mutant", ALL_MUTANTS)
def test_the_gradient_test_kills_the_mutant(mutant):
    mm.check_mutant(mutant, OWN_TEST)


def test_every_op_and_every_vjp_has_mutants():
    for name, op in OPS.items():
        found = mm.mutants(name)
        # The operands with a gradient: a VJP of None (cross_entropy's labels) has none.
        with_gradient = {i for i, vjp in enumerate(op.vjps) if vjp is not None} \
            if type(op.vjps) is tuple else {0, -1}
        assert {m.slot for m in found if m.mutation.per_operand} == with_gradient, name
        if with_gradient:  # a comparison has no gradient, hence no mutants
            assert {"negated", "doubled", "upstream_ones"} <= {m.mutation.name for m in found}
    assert {m.slot for m in mm.mutants("cross_entropy")} == {0}
    assert mm.mutants("greater") == []


def test_known_survivors_and_equivalents_name_real_mutants():
    keys = {m.key for name in OPS for m in mm.mutants(name)}
    assert set(KNOWN_SURVIVORS) <= keys and set(mm.EQUIVALENT) <= keys
    assert not set(KNOWN_SURVIVORS) & set(mm.EQUIVALENT)


class Interrupted(Exception):
    pass


def test_installed_puts_the_op_back_however_the_block_ends():
    for name, op in OPS.items():
        if not mm.mutants(name):  # a comparison: no gradient, no mutants
            continue
        own = op.vjps
        with pytest.raises(Interrupted), mm.installed(mm.mutants(name)[0]):
            assert op.vjps is not own
            raise Interrupted
        assert op.vjps is own, name


# --- each mutation makes the mistake it names, on drawn shapes and values ---------------------


def _gradients(mutation_name, op_name, f, operands, g, slot=0):
    mutant = mm.Mutant(op_name, slot, MUTATION[mutation_name])
    tensors = [mg.Tensor(x, requires_grad=True) for x in operands]
    with mm.installed(mutant) as tally:
        out = f(*tensors)
        out.backward(g)
    return [t.grad for t in tensors], tally


@given(st.data())
def test_mul_mutants_make_their_mistakes(data):
    shape = data.draw(shapes(), label="shape")
    a, b, g = (data.draw(arrays(shape), label=label) for label in "abg")
    expected = {  # the gradient of b under each mistake in its VJP (the right one is g a)
        "negated": -g * a, "doubled": 2 * (g * a), "upstream_ones": np.ones_like(g) * a}
    for mistake, wrong in expected.items():
        (grad_a, grad_b), tally = _gradients(mistake, "mul", mg.mul, [a, b], g, slot=1)
        np.testing.assert_array_equal(grad_a, g * b)
        np.testing.assert_array_equal(grad_b, wrong)
        # changed: beyond rounding (as mutants._differs judges it)
        changed = not np.allclose(wrong, g * a, rtol=1e-9, atol=1e-12)
        assert tally.calls == 1 and tally.changed == int(changed)
    (grad_a, grad_b), _ = _gradients("swapped", "mul", mg.mul, [a, b], g)
    np.testing.assert_array_equal(grad_a, g * a)
    np.testing.assert_array_equal(grad_b, g * b)


@given(st.data())
def test_averaged_divides_a_broadcast_gradient_by_the_broadcast_count(data):
    m, n = data.draw(st.integers(2, 4)), data.draw(st.integers(1, 4))
    a, b, g = data.draw(arrays((m, n))), data.draw(arrays((n,))), data.draw(arrays((m, n)))
    (grad_a, grad_b), tally = _gradients("averaged", "add", mg.add, [a, b], g, slot=1)
    np.testing.assert_array_equal(grad_a, g)
    np.testing.assert_allclose(grad_b, g.sum(axis=0) / m, rtol=1e-15, atol=1e-15)
    total = g.sum(axis=0)  # changed beyond rounding (as mutants._differs judges it)
    assert tally.changed == int(not np.allclose(total / m, total, rtol=1e-9, atol=1e-12))


@given(st.data())
def test_transposed_swaps_a_square_gradient_and_leaves_others_alone(data):
    shape = data.draw(shapes(min_dims=1), label="shape")
    x, g = data.draw(arrays(shape), label="x"), data.draw(arrays(shape), label="g")
    (grad,), _ = _gradients("transposed", "neg", mg.neg, [x], g)
    square = x.ndim >= 2 and shape[-1] == shape[-2]
    np.testing.assert_array_equal(grad, -np.swapaxes(g, -1, -2) if square else -g)


@given(st.data())
def test_output_and_input_read_for_each_other(data):
    x, g = data.draw(arrays((3, 2), low=1.5, high=3.0)), data.draw(arrays((3, 2)))
    (grad,), _ = _gradients("output_for_input", "log", mg.log, [x], g)
    np.testing.assert_allclose(grad, g / np.log(x), rtol=1e-15)
    (grad,), _ = _gradients("input_for_output", "tanh", mg.tanh, [x], g)
    np.testing.assert_allclose(grad, g * (1 - x * x), rtol=1e-15, atol=1e-15)


@given(st.data())
def test_permutation_for_inverse_applies_the_permutation_itself(data):
    n = data.draw(st.integers(2, 3))
    x, g = data.draw(arrays((n, n, n))), data.draw(arrays((n, n, n)))
    axes = data.draw(st.permutations(range(3)).map(tuple))
    (grad,), tally = _gradients("permutation_for_inverse", "transpose",
                                lambda t: mg.transpose(t, axes), [x], g)
    np.testing.assert_array_equal(grad, np.transpose(g, axes))
    assert tally.changed == int(not np.allclose(np.transpose(g, axes),
                                                np.transpose(g, np.argsort(axes)),
                                                rtol=1e-9, atol=1e-12))


@given(st.data())
def test_a_cotangent_is_mutated_in_its_dense_form(data):
    x = data.draw(arrays((4, 3)))
    g = data.draw(arrays((2, 3)))
    (grad,), _ = _gradients("negated", "getitem", lambda t: t[1:3], [x], g)
    expected = np.zeros_like(x)
    expected[1:3] = -g
    np.testing.assert_array_equal(grad, expected)


# --- what a test that misses mistakes is told ---------------------------------------------


def _loose_test(name, data):
    """A gradient test with a tolerance no mistake can exceed."""
    case = data.draw(op_cases(name), label="case")
    gradcheck(case.call, *case.operands, atol=1e9)


def _forward_only_test(name, data):
    """A 'gradient test' that records a graph but never runs backward."""
    case = data.draw(op_cases(name), label="case")
    case.call(*(mg.Tensor(x, requires_grad=True) for x in case.operands))


def test_a_survivor_is_named_by_op_vjp_and_mistake():
    mutant = mm.Mutant("mul", 1, MUTATION["negated"])
    with pytest.raises(mm.MutantSurvived, match=r"^mul, VJP 1: the gradient's sign flipped "
                       r"\(negated\): survived: the gradient test passed 5 draws although the "
                       r"mistake changed [1-9][0-9]* of [0-9]+ gradients$"):
        mm.check_mutant(mutant, _loose_test, max_examples=5)


def test_a_mistake_the_test_never_runs_survives():
    """A test that never runs the mutated VJP (forward only, or a program compiled before
    the hunt) survives it, saying the VJP never ran (it said no case was drawn)."""
    mutant = mm.Mutant("exp", 0, MUTATION["negated"])
    with pytest.raises(mm.MutantSurvived, match=r"not judged: its VJP never ran in 5 draws"):
        mm.check_mutant(mutant, _forward_only_test, max_examples=5)


def test_check_op_lists_every_mutant_the_test_missed():
    with pytest.raises(mm.MutantSurvived) as caught:
        mm.check_op("sub", _loose_test, max_examples=5)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{len(lines) - 1} of {len(mm.mutants('sub'))} mutants of 'sub' not caught:"
    assert any(line.startswith("sub, VJP 1: the gradient's sign flipped") for line in lines)
    assert any(line.startswith("sub, VJPs: the first and last operands' VJPs swapped")
               for line in lines)


def test_a_killed_mutant_listed_as_equivalent_is_an_error(monkeypatch):
    mutant = mm.Mutant("exp", 0, MUTATION["doubled"])
    monkeypatch.setitem(mm.EQUIVALENT, mutant.key, "a wrong reason")
    with pytest.raises(mm.MutantSurvived, match=r"listed as equivalent \(a wrong reason\), but "
                       r"its gradient test failed: GradcheckError"):
        mm.check_mutant(mutant, OWN_TEST, max_examples=5)


def test_a_hunt_draws_the_same_cases_every_time():
    mutant = mm.Mutant("matmul", 0, MUTATION["negated"])
    first, second = (mm.hunt("matmul", OWN_TEST, candidates=[mutant], max_examples=5)[0]
                     for _ in range(2))
    assert first.killed and first.evidence == second.evidence
    assert "GradcheckError" in first.evidence and "draw 1 (case): operands of shapes" in \
        first.evidence


# --- a new op is checked, and a test that fails on its own judges nothing ------------------


@pytest.fixture
def new_op():
    """Define ops in the table for one test, and take them out again."""
    names = []

    def define(name, forward, vjp):
        defop(name, forward, (vjp,), Domain("unary"), saves="inputs")
        names.append(name)
        return name

    yield define
    for name in names:
        del OPS[name]


def softplus(x):
    return np.logaddexp(0.0, x)


def test_a_new_op_gets_its_mutants_and_they_are_checked(new_op):
    name = new_op("softplus_for_mutants", softplus, lambda g, out, x: g / (1.0 + np.exp(-x)))
    verdicts = mm.check_op(name, max_examples=10)
    assert {v.mutant.mutation.name for v in verdicts} == {
        "negated", "doubled", "upstream_ones", "transposed", "output_for_input"}
    assert all(v.killed for v in verdicts if v.mutant.mutation.must_arise)


def test_a_test_that_fails_without_mutants_cannot_judge_them(new_op):
    name = new_op("softplus_wrong_for_mutants", softplus, lambda g, out, x: g)
    with pytest.raises(RuntimeError, match="the gradient test of 'softplus_wrong_for_mutants' "
                       "fails without any mutant"):
        mm.hunt(name, max_examples=5)


# --- the command line -----------------------------------------------------------------------


def test_the_command_prints_a_verdict_per_mutant(capsys):
    assert mm.main(["neg", "--examples", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "0 survived"
    assert len(lines) == len(mm.mutants("neg")) + 1
    assert lines[0].startswith("killed      neg, VJP 0: the gradient's sign flipped (negated)  "
                               "[GradcheckError: gradcheck: gradient of argument 0")


def test_the_command_fails_when_a_mutant_survives(new_op, capsys):
    # A gradient that is zero everywhere: no sign or factor changes it, so nothing is caught.
    name = new_op("flat_for_mutants", np.zeros_like, lambda g, out, x: np.zeros_like(g))
    assert mm.main([name, "--examples", "5"]) == 1
    out = capsys.readouterr().out
    assert f"SURVIVED    {name}, VJP 0: the gradient's sign flipped (negated)  [changed 0 of " \
        in out
    must_arise = [m for m in mm.mutants(name) if m.mutation.must_arise]  # the others: no case
    assert out.splitlines()[-1] == f"{len(must_arise)} survived"


@pytest.mark.parametrize("args, message", [
    (["nope"], "no op named 'nope' in the table; the ops are abs, add,"),
    (["--examples", "0"], "--examples must be at least 1, got 0"),
])
def test_the_command_refuses_bad_arguments_in_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exited:
        mm.main(args)
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error


@pytest.mark.parametrize("name", ["relu", "abs", "clip", "var"])
def test_a_transpose_missing_from_an_elementwise_vjp_is_drawn_and_caught(name):
    """The generated tests drew square operands so rarely that a VJP swapping a square
    gradient's last two axes was a 'no case' for relu, abs, clip, mean, var and others:
    `strategies.shapes` often makes the last two axes equal now."""
    transposed = [m for m in mm.mutants(name) if m.key[-1] == "transposed"]
    verdicts = mm.hunt(name, candidates=transposed)
    assert verdicts and all(v.killed for v in verdicts), [v.evidence for v in verdicts]


# --- a kill is the mutant's doing, never the harness's ---------------------------------------


@pytest.mark.parametrize("name", ["where", "cross_entropy"])
def test_an_op_with_an_operand_without_vjp_has_its_mutants_really_judged(name):
    """Installing a mutant made `record` iterate a function where the op's tuple of VJPs was
    (to refuse its condition's or labels' gradient): every mutant of where and cross_entropy
    was 'killed' by a TypeError on the first draw, without a gradient checked."""
    for verdict in mm.hunt(name, OWN_TEST):
        assert verdict.tally.calls > 0, verdict.mutant
        if verdict.killed:
            assert verdict.evidence.startswith("GradcheckError: gradcheck: gradient of "), \
                verdict.evidence
        else:  # only a mistake that need not arise (a transpose, where no draw is square)
            assert mm.outcome(verdict) == "no case", verdict.mutant
            assert verdict.mutant.key[-1] == "transposed" and name == "where"


@pytest.mark.parametrize("name", ["where", "cross_entropy", "exp"])
def test_a_test_that_never_runs_backward_kills_nothing(name):
    verdicts = mm.hunt(name, _forward_only_test, max_examples=5)
    assert verdicts and not any(v.killed for v in verdicts)
    with pytest.raises(mm.MutantSurvived, match=f"mutants of '{name}' not caught"):
        mm.check_op(name, _forward_only_test, max_examples=5)


def _mutant_installed(name):
    return type(OPS[name].vjps) is not tuple  # (installed: a maker of each call's VJPs)


def test_a_test_drawing_more_on_the_replay_judges_nothing():
    def drawing_more(name, data):
        _forward_only_test(name, data)
        if _mutant_installed(name):
            data.draw(st.integers(0, 3), label="extra")

    with pytest.raises(RuntimeError, match=r"^mutants: exp, VJP 0: .*: the gradient test drew "
                       "more values with the mutant installed than without"):
        mm.hunt("exp", drawing_more, max_examples=3)


def test_a_failure_before_the_mutated_vjp_ran_judges_nothing():
    def failing_early(name, data):
        if _mutant_installed(name):
            raise ValueError("not the mutant's doing")
        OWN_TEST(name, data)

    with pytest.raises(RuntimeError, match=r"the gradient test failed before the mutated VJP "
                       r"ran \(ValueError: not the mutant's doing\)"):
        mm.hunt("where", failing_early, max_examples=3)


@pytest.mark.parametrize("compiled", [False, True])
def test_an_operand_without_a_vjp_is_refused_with_a_mutant_installed(compiled):
    """With a mutant of a user's op installed, its operand without a VJP requiring grad is
    refused as without one, compiled too: the tracer tested `type(vjps) is tuple`, which
    the installed maker (a tuple of the op's VJPs, callable) is not, and gave that operand
    a silent None gradient (found by this stop's third review)."""
    defop("scaled_by", lambda x, k: x * k, (lambda g, out, x, k: g * k, None),
          Domain("binary"))
    try:
        x = mg.Tensor(np.array([1.0, 2.0]), requires_grad=True)
        k = mg.Tensor(np.array([3.0, 4.0]), requires_grad=True)

        def f(x, k):
            return OPS["scaled_by"](x, k).sum()

        run = mg.compile(f) if compiled else f
        for mutant in mm.mutants("scaled_by"):
            with mm.installed(mutant):
                assert _mutant_installed("scaled_by")
                with pytest.raises(TypeError, match=r"^scaled_by: operand 1 .* requires grad, "
                                                     r"but the op has no VJP for it"):
                    run(x, k)
    finally:
        del OPS["scaled_by"]


@given(st.integers(1, 6), st.floats(-0.9, 0.9))
def test_a_loop_written_while_a_mutant_was_installed_is_not_used_after_it(length, scale):
    """scan caches the loops it writes by what their programs depend on, the ops' VJPs
    included (by identity): once the mutant is gone, the next scan of the same body runs
    tanh's own VJP again (it kept the mutant's: the loop's gradient negated)."""
    w = mg.Tensor(np.array([0.5, -0.3]) * (1 + scale), requires_grad=True)
    xs = np.linspace(-1.0, 1.0, 2 * length).reshape(length, 2)

    def gradient():
        w.grad = None
        _, ys = mg.scan(lambda c, x: (mg.tanh(c * w + x),) * 2, np.zeros(2), xs)
        ys.sum().backward()
        return w.grad.copy()

    def unrolled():
        w.grad = None
        c, out = np.zeros(2), []
        for k in range(length):
            c = mg.tanh(c * w + xs[k])
            out.append(c)
        mg.stack(out).sum().backward()
        return w.grad.copy()

    negated = next(m for m in mm.mutants("tanh") if m.mutation.name == "negated")
    with mm.installed(negated):
        gradient()
    np.testing.assert_allclose(gradient(), unrolled(), rtol=1e-12, atol=1e-15)
