"""The testing helpers: numerical_grad on known derivatives, gradcheck passing right gradients
and naming what is wrong in a broken one, and the Hypothesis strategies keeping their word."""

import ast
import pathlib
import re
import subprocess
import sys
import tomllib
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import minigrad as mg
from minigrad import Tensor, defop
from minigrad.models.counter import Counter
from minigrad.testing import (
    DISTRIBUTION,
    BackwardMismatch,
    GradcheckError,
    check_backward_at,
    gradcheck,
    numerical_grad,
)
from minigrad.testing import strategies as mst

# --- numerical_grad -------------------------------------------------------------------------

# Central differences: error ~ eps^2 |f'''| / 6 + 1e-16 |f| / eps; with eps = 1e-6 and these
# small inputs that is below 1e-9.
NUMERIC = {"rtol": 1e-8, "atol": 1e-9}


def test_numerical_grad_of_known_functions():
    x = np.array([-1.5, 0.0, 0.5, 2.0])
    (g,) = numerical_grad(lambda t: (t * t).sum(), x)
    np.testing.assert_allclose(g, 2 * x, **NUMERIC)
    (g,) = numerical_grad(lambda t: mg.exp(t).sum(), x)
    np.testing.assert_allclose(g, np.exp(x), **NUMERIC)
    (g,) = numerical_grad(lambda t: float(np.sum(t**3)), x)  # f may return a plain number
    np.testing.assert_allclose(g, 3 * x**2, **NUMERIC)
    (g,) = numerical_grad(lambda t: mg.tanh(t).sum(), x)
    np.testing.assert_allclose(g, 1 - np.tanh(x) ** 2, **NUMERIC)


def test_numerical_grad_of_several_arguments():
    x, y = np.array([1.0, 2.0]), np.array([[3.0], [-1.0]])
    gx, gy = numerical_grad(lambda a, b: (a * b).sum(), x, y)
    np.testing.assert_allclose(gx, y.sum(0) * np.ones(2), **NUMERIC)
    np.testing.assert_allclose(gy, np.full((2, 1), x.sum()), **NUMERIC)
    only = numerical_grad(lambda a, b: (a * b).sum(), x, y, argnums=1)
    assert len(only) == 1
    np.testing.assert_allclose(only[0], gy, **NUMERIC)


def test_numerical_grad_leaves_inputs_alone_and_takes_ints():
    x = np.array([1.0, 2.0])
    numerical_grad(lambda t: (t * t).sum(), x)
    np.testing.assert_array_equal(x, [1.0, 2.0])
    # ints are data unless named in argnums (as for gradcheck); then they become float64
    (g,) = numerical_grad(lambda t: (t * t).sum(), [1, 2], argnums=0)
    np.testing.assert_allclose(g, [2.0, 4.0], **NUMERIC)
    with pytest.raises(ValueError, match="nothing to differentiate: every argument is integer"):
        numerical_grad(lambda t: (t * t).sum(), [1, 2])


def test_numerical_grad_needs_a_scalar():
    with pytest.raises(ValueError, match=r"f must return a scalar, got shape \(2,\)"):
        numerical_grad(lambda t: t * 2.0, np.ones(2))


# --- gradcheck ------------------------------------------------------------------------------


def test_gradcheck_passes_a_right_gradient():
    x = np.array([0.3, -1.2, 2.0])
    assert gradcheck(lambda t: (mg.tanh(t) * t).sum(), x) is True
    assert gradcheck(lambda a, b: (a @ b).sum(), np.ones((2, 3)), np.ones((3, 2))) is True


# d/dx x^2 is 2x; this op claims 3x.
broken_square = defop("broken_square", np.square, (lambda g, out, x: g * 3 * x,), register=False)
# Right for argument 0, wrong (sign) for argument 1.
broken_mul = defop("broken_mul", np.multiply,
                       (lambda g, out, a, b: g * b, lambda g, out, a, b: -g * a), register=False)


def _parse(message):
    """(engine, numerical, upstream gradient or None) from a GradcheckError's message."""
    numbers = re.search(r"engine (\S+), numerical (\S+) \(", message)
    upstream = re.search(r"upstream gradient (-?[\d.]+),", message)
    return (float(numbers.group(1)), float(numbers.group(2)),
            float(upstream.group(1)) if upstream else None)


def test_gradcheck_reports_a_wrong_vjp():
    x = np.array([[1.0, -0.5], [2.0, 0.25]])
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda t: broken_square(t).sum(), x)
    assert isinstance(info.value, AssertionError)  # test runners report a failure
    message = str(info.value)
    # the worst element is the largest |x|: x[1, 0] = 2, engine 6 g, numerical 4 g, with g
    # the scalar output's drawn upstream gradient
    assert message.startswith("gradcheck: gradient of argument 0 (shape (2, 2)) is wrong at "
                              "index (1, 0)")
    engine, numerical, g = _parse(message)
    assert 1.5 <= abs(g) <= 2.5
    assert engine == pytest.approx(6.0 * g, rel=1e-3, abs=0)  # g is printed to 4 digits
    assert engine / numerical == pytest.approx(1.5, rel=1e-8, abs=0)


# Functions written with Tensor methods: gradcheck calls f with Tensors on both sides.
TENSOR_METHODS = {
    "exp": lambda t: t.exp().sum(),
    "relu": lambda t: t.relu(),
    "tanh": lambda t: t.tanh(),
    "abs": lambda t: t.abs(),
    "max": lambda t: t.max(0, True),
}


@pytest.mark.parametrize("name", sorted(TENSOR_METHODS))
@given(x=mst.arrays(mst.shapes(min_dims=1), avoid=(0.0,), distinct=True))
@settings(max_examples=10)
def test_gradcheck_of_functions_using_tensor_methods(name, x):
    """Before, the numerical side called f with plain arrays: AttributeError on t.exp()."""
    f = TENSOR_METHODS[name]
    assert gradcheck(f, x)
    assert gradcheck(f, Tensor(x, requires_grad=True))
    with pytest.raises(GradcheckError, match="^gradcheck: gradient of argument 0 "):
        gradcheck(lambda t: f(broken_square(t) * 0.25), x)  # a wrong VJP still shows


def test_gradcheck_names_the_wrong_argument():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([0.5, -4.0, 1.0])
    assert gradcheck(lambda p, q: broken_mul(p, q).sum(), a, b, argnums=0)
    with pytest.raises(GradcheckError, match=r"gradient of argument 1 \(shape \(3,\)\) is wrong "
                                             r"at index \(2,\)") as info:
        gradcheck(lambda p, q: broken_mul(p, q).sum(), a, b)
    engine, numerical, _ = _parse(str(info.value))
    assert engine == pytest.approx(-numerical, rel=1e-8, abs=0) and abs(numerical) > 4.5  # 3 |g|


# VJPs that compute as if the upstream gradient were 1, as a loss's VJP may when it is only
# ever tested at the root of a graph: right there, wrong inside any larger graph.
ignores_upstream = defop("ignores_upstream", np.square, (lambda g, out, x: 2 * x,),
                         register=False)
mean_square_ignoring_upstream = defop(
    "mean_square_ignoring_upstream", lambda x: np.mean(x * x),
    (lambda g, out, x: 2 * x / x.size,), register=False)


@given(x=mst.arrays(mst.shapes(), low=0.5, high=2.0), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=20)
def test_gradcheck_draws_the_upstream_gradient_of_a_scalar_output(x, seed):
    assert gradcheck(lambda t: (t * t).mean(), x, seed=seed)  # the right rule passes
    for wrong in (lambda t: mean_square_ignoring_upstream(t),
                  lambda t: ignores_upstream(t).sum()):
        with pytest.raises(GradcheckError) as info:
            gradcheck(wrong, x, seed=seed)
        engine, numerical, g = _parse(str(info.value))
        assert 1.5 <= abs(g) <= 2.5
        assert numerical == pytest.approx(g * engine, rel=1e-3, abs=0)  # g is printed to 4 digits
    # also through a one-element output that is not 0-d
    with pytest.raises(GradcheckError, match="upstream gradient"):
        gradcheck(lambda t: ignores_upstream(t.sum().reshape(1, 1)), x, seed=seed)


def test_gradcheck_upstream_signs_vary_with_the_seed():
    signs = set()
    for seed in range(20):
        with pytest.raises(GradcheckError) as info:
            gradcheck(lambda t: ignores_upstream(t).sum(), np.array([1.0]), seed=seed)
        signs.add(np.sign(_parse(str(info.value))[2]))
    assert signs == {-1.0, 1.0}


# A VJP that is right for the all-ones cotangent of sum() but wrong for any other: a check
# seeded with sum() alone would pass it.
sum_only = defop("sum_only", lambda x: 2.0 * x,
                     (lambda g, out, x: np.full(x.shape, 2.0 * g.mean()),), register=False)


def test_gradcheck_projects_non_scalar_outputs_on_a_random_direction():
    x = np.array([0.5, -1.0, 2.0])
    gradcheck(lambda t: sum_only(t).sum(), x)  # the blind spot of a sum() seed
    with pytest.raises(GradcheckError, match="argument 0"):
        gradcheck(lambda t: sum_only(t), x)
    for seed in range(3):
        assert gradcheck(lambda t: mg.tanh(t) * t, x, seed=seed)
        assert gradcheck(lambda t: mg.stack([t, t * t]), x, seed=seed)


def test_gradcheck_tolerances_are_used():
    # engine 3x against numerical 2x at x = 0.01: a difference of 0.01 |v| <= 0.025 (the
    # upstream |v| in [1.5, 2.5]) inside atol = 0.03, below the gradients' 0.045 and more
    x = np.array([0.01])
    assert gradcheck(lambda t: broken_square(t).sum(), x, atol=0.03)
    with pytest.raises(GradcheckError):
        gradcheck(lambda t: broken_square(t).sum(), x)


def test_gradcheck_of_a_function_returning_a_non_tensor():
    with pytest.raises(TypeError, match="^gradcheck: f must return a Tensor when given "
                                        "Tensors, got float"):
        gradcheck(lambda t: 1.0, np.ones(2))


# --- strategies -----------------------------------------------------------------------------

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("module", ["strategies", "mutants"])
def test_strategies_without_hypothesis_name_the_extra_to_install(module):
    # A fresh interpreter where `import hypothesis` fails, as where it is not installed:
    # minigrad.testing imports, its strategies and mutants say in one line what to install.
    code = ("import sys; sys.modules['hypothesis'] = None\n"
            "from minigrad.testing import gradcheck\n"
            f"import minigrad.testing.{module}")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 1
    assert "During handling" not in result.stderr  # not chained to a bare one
    assert result.stderr.strip().splitlines()[-1] == (
        f"ModuleNotFoundError: minigrad.testing.{module} needs Hypothesis: install the test "
        f"extra (pip install '{DISTRIBUTION}[test]')")


def test_the_test_extra_named_exists():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION
    assert any(r.startswith("hypothesis") for r in project["optional-dependencies"]["test"])


@st.composite
def array_requests(draw):
    """Feasible arguments for mst.arrays: an interval at least 0.5 wide and at most two points
    to avoid (each removing at most 2 * AVOID_MARGIN = 0.1), anywhere in or near it."""
    low = draw(st.floats(-10, 10))
    high = low + draw(st.floats(0.5, 10))
    avoid = draw(st.lists(st.floats(low - 0.1, high + 0.1) | st.sampled_from([low, high]),
                          max_size=2))
    return low, high, tuple(avoid)


@given(request=array_requests(), distinct=st.booleans(), data=st.data())
@settings(max_examples=100)
def test_arrays_respect_bounds_avoid_and_distinct(request, distinct, data):
    low, high, avoid = request
    shape = data.draw(mst.shapes(), label="shape")
    x = data.draw(mst.arrays(shape, low=low, high=high, avoid=avoid, distinct=distinct),
                  label="x")
    assert x.shape == shape and x.dtype == np.float64
    assert np.all(np.isfinite(x))
    assert np.all((x >= low) & (x <= high)), (x.min(), x.max())
    for point in avoid:
        # point +- AVOID_MARGIN itself is allowed; 1e-12 covers the rounding of that sum
        assert np.all(np.abs(x - point) >= mst.AVOID_MARGIN - 1e-12), (point, x)
    if distinct and x.size > 1:
        gaps = np.diff(np.sort(x.ravel()))
        allowed = high - low - 2 * mst.AVOID_MARGIN * len(avoid)  # at least this much is left
        assert gaps.min() >= allowed / x.size / 2 * (1 - 1e-9)  # (half a slot: jittered)


@given(data=st.data())
@settings(max_examples=30)
def test_arrays_float32(data):
    x = data.draw(mst.arrays(mst.shapes(), low=-1.0, high=2.0, dtype=np.float32))
    assert x.dtype == np.float32
    # float32 rounding may step past a bound by half a unit in the last place
    assert np.all((x >= -1.0 - 1e-7) & (x <= 2.0 + 1e-7))


def test_arrays_refuse_an_empty_domain():
    @given(mst.arrays((2,), low=-0.01, high=0.01, avoid=(0.0,)))
    def draw(x):
        raise AssertionError("drew from an empty domain")

    with pytest.raises(InvalidArgument, match=r"no value in \[-0.01, 0.01\] is AVOID_MARGIN"):
        draw()


@given(shapes=mst.broadcastable_shapes(num_shapes=3))
def test_broadcastable_shapes_broadcast(shapes):
    assert len(shapes) == 3
    result = np.broadcast_shapes(*shapes)
    assert np.broadcast(*(np.zeros(s) for s in shapes)).shape == result


@given(shapes=mst.matmul_shapes())
def test_matmul_shapes_multiply(shapes):
    a, b = shapes
    np.matmul(np.zeros(a), np.zeros(b))


@given(operands=mst.tensordot_operands())
def test_tensordot_operands_contract(operands):
    a, b, axes = operands
    if isinstance(axes, int):
        assert a.shape[a.ndim - axes:] == b.shape[:axes]
    else:
        axes_a, axes_b = axes
        assert len(axes_a) == len(axes_b) == len(set(axes_a)) == len(set(axes_b))
        assert [a.shape[i] for i in axes_a] == [b.shape[j] for j in axes_b]
    out = np.tensordot(a, b, axes=axes)
    assert out.ndim == a.ndim + b.ndim - 2 * (axes if isinstance(axes, int) else len(axes[0]))
    assert mg.tensordot(Tensor(a), b, axes=axes).shape == out.shape


@given(operands=mst.einsum_operands())
def test_einsum_operands_are_valid(operands):
    subscripts, arrays = operands
    inputs, output = subscripts.split("->")
    assert len(inputs.split(",")) == len(arrays)
    assert set(output) <= set(inputs) and len(set(output)) == len(output)
    np.testing.assert_allclose(mg.einsum(subscripts, *arrays).data,
                               np.einsum(subscripts, *arrays), rtol=1e-12, atol=1e-12)


@given(data=st.data(), ndim=st.integers(0, 5))
def test_permutations_keep_their_word(data, ndim):
    p = data.draw(mst.permutations(ndim), label="p")
    assert sorted(p) == list(range(ndim))
    if ndim >= 3:
        q = data.draw(mst.permutations(ndim, involution=False), label="q")
        assert sorted(q) == list(range(ndim))
        assert tuple(q[i] for i in q) != tuple(range(ndim))  # q applied twice is not identity
    r = data.draw(mst.permutations(ndim, involution=True), label="r")
    assert tuple(r[i] for i in r) == tuple(range(ndim))


def test_permutations_refuse_what_cannot_be():
    with pytest.raises(InvalidArgument, match=r"^permutations: every permutation of 2 axes is "
                                              r"its own inverse; involution=False needs ndim"):
        mst.permutations(2, involution=False)


def test_transpose_cases_include_permutations_that_are_not_their_own_inverse():
    # A case is such a permutation exactly when transposing twice does not give x back.
    def undone_by_repeating(case):
        x = np.arange(case.operands[0].size, dtype=float).reshape(case.operands[0].shape)
        twice = case.call(case.call(x).data).data
        return twice.shape == x.shape and np.array_equal(twice, x)

    found = find(mst.op_cases("transpose"), lambda case: not undone_by_repeating(case),
                 settings=settings(database=None))
    assert found.operands[0].ndim >= 3


@settings(max_examples=200)
@given(data=st.data())
def test_drawn_arrays_have_no_tiny_nonzero_values(data):
    """Hypothesis favours values like 1e-300: with gradcheck's atol of 1e-6, an op whose
    VJP was wrong only by a factor (x**3 with g * x * x) passed on such elements. The
    strategy moves them out to 1e-3 (zero stays), inside the interval asked for."""
    low, high = data.draw(st.sampled_from([(-3.0, 3.0), (0.0, 1.0), (-2.0, 0.0),
                                           (0.2, 3.0)]))
    values = data.draw(mst.arrays(low=low, high=high))
    nonzero = np.abs(values[values != 0])
    assert np.all(nonzero >= mst.SMALLEST)
    assert np.all((low <= values) & (values <= high))


def _sin_doubling_its_cotangent_in_place():
    def vjp(g, out, x):
        g *= 2.0  # the bug: writes into the cotangent it was handed
        return g * np.cos(x)

    return mg.defop("sin_in_place", np.sin, (vjp,), saves="inputs", register=False)


@pytest.mark.parametrize("take", [lambda x: x, lambda x: x[:1]], ids=["vector", "one element"])
def test_gradcheck_refuses_a_vjp_that_writes_into_its_cotangent(take):
    """Such a VJP scaled gradcheck's own upstream array, which the numerical side then
    projected on: both sides twice the truth, and gradcheck passed. Then the seed became
    read-only, and the write raised NumPy's bare "output array is read-only"; gradcheck
    names the op and what it did, also where g is the sweep's own (a writable array that
    the node's other VJPs get next)."""
    x = take(np.array([0.3, -1.2, 0.7]))
    sin = _sin_doubling_its_cotangent_in_place()
    message = "the VJP of 'sin_in_place' for operand 0 wrote into its upstream gradient g"
    with pytest.raises(GradcheckError, match=message):
        gradcheck(sin, x)
    with pytest.raises(GradcheckError, match=message):  # g the sum of two contributions
        gradcheck(lambda t: sin(t * t + t), x)


def test_backward_leaves_the_callers_upstream_gradient_alone():
    x = mg.Tensor(np.array([0.3, -1.2]), requires_grad=True)
    upstream = np.array([1.0, -0.5])
    mg.tanh(x).backward(upstream)
    np.testing.assert_array_equal(x.grad, upstream * (1 - np.tanh([0.3, -1.2]) ** 2))
    assert upstream.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        _sin_doubling_its_cotangent_in_place()(x).backward(upstream)
    np.testing.assert_array_equal(upstream, [1.0, -0.5])


def test_gradcheck_checks_a_one_element_output_with_both_signs_of_its_upstream():
    """A VJP right only for a positive upstream gradient (a log-space one: NaN for g < 0)
    passed with the default seed, which always drew +1 as the sign."""
    def forward(x):
        return np.log(np.sum(np.exp(x)))

    def vjp(g, out, x):
        return np.exp(np.log(g) + x - out)  # the bug: log(g) of a negative g

    logsumexp = mg.defop("logsumexp_positive_g", forward, (vjp,), register=False)
    x = np.array([0.3, -1.2, 0.7, 2.0])
    with np.errstate(invalid="ignore"):
        for seed in range(6):
            with pytest.raises(GradcheckError, match=r"engine nan.*upstream gradient -"):
                gradcheck(logsumexp, x, seed=seed)
    right = mg.defop("logsumexp", forward, (lambda g, out, x: g * np.exp(x - out),),
                     register=False)
    assert gradcheck(right, x)


def test_numerical_grad_refuses_a_function_that_computes_in_a_lower_precision():
    """A float32 model casts numerical_grad's float64 arguments back: its central differences
    were rounding noise (up to 35% off), returned without a word, where gradcheck refuses."""
    model = Counter(dtype=np.float32)
    X = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    with pytest.raises(TypeError, match="numerical_grad: f returned float32"):
        numerical_grad(lambda X: model.loss(X, np.array([2.0, 2.0])), X)
    model64 = Counter()
    (g,) = numerical_grad(lambda X: model64.loss(X, np.array([2.0, 2.0])), X)
    assert np.isfinite(g).all()


# --- ops that write into the arrays they are given ------------------------------------------


def _cube_writing_into_its_operand():
    def vjp(g, out, x):
        np.multiply(x, x, out=x)  # the bug: 3 x^2 computed in place, into the saved x
        x *= 3.0
        return g * x

    return mg.defop("cube_in_place", lambda x: x**3, (vjp,), saves="inputs", register=False)


def _sigmoid_writing_into_its_output():
    def vjp(g, out):
        out *= 1.0 - out  # the bug: the derivative computed in place, into the saved output
        return g * out

    return mg.defop("sigmoid_in_place", lambda x: 1.0 / (1.0 + np.exp(-x)), (vjp,),
                    saves="output", register=False)


def _softmax_shifting_its_operand():
    def forward(x):
        x -= x.max(axis=-1, keepdims=True)  # the bug: the operand shifted in place
        e = np.exp(x)
        return e / e.sum(axis=-1, keepdims=True)

    def vjp(g, out, x):
        return out * (g - (g * out).sum(axis=-1, keepdims=True))

    return mg.defop("softmax_in_place", forward, (vjp,), saves="both", register=False)


@given(x=mst.arrays(mst.shapes(min_dims=1, min_side=2), low=0.5, high=2.0),  # 3 x^2 != x
       seed=st.integers(0, 2**32 - 1))
@settings(max_examples=20)
def test_gradcheck_refuses_a_vjp_that_writes_into_its_saved_operand(x, seed):
    """The first backward gives the right gradient, so an output of several elements (one
    backward pass) passed, while the write changed the caller's tensor: the arguments are
    compared with their values before the call now."""
    with pytest.raises(GradcheckError, match="a backward pass changed the values of argument 0"):
        gradcheck(_cube_writing_into_its_operand(), x, seed=seed)


@given(x=mst.arrays(mst.shapes(min_dims=1, min_side=2), low=-2.0, high=2.0),
       seed=st.integers(0, 2**32 - 1))
@settings(max_examples=20)
def test_gradcheck_refuses_a_vjp_that_writes_into_its_saved_output(x, seed):
    """Right the first time, wrong the next (the saved output is now the derivative): a
    second backward pass on the same graph must give the same gradients, bit for bit."""
    with pytest.raises(GradcheckError, match="two backward passes .* gradients of argument 0"):
        gradcheck(_sigmoid_writing_into_its_output(), x, seed=seed)


@given(x=mst.arrays(mst.shapes(min_dims=1), low=0.5, high=2.0))  # a maximum that is not 0
@settings(max_examples=20)
def test_gradcheck_refuses_a_forward_that_writes_into_its_operand(x):
    """Its output and gradient are right, and it shifted the caller's tensor: gradcheck
    handed f copies only, so nothing it compared could show the write."""
    with pytest.raises(GradcheckError, match="the forward pass changed the values of argument 0"):
        gradcheck(_softmax_shifting_its_operand(), x)


@given(x=mst.arrays(mst.shapes(min_dims=1, max_side=4), low=-3.0, high=12.0),
       seed=st.integers(0, 2**32 - 1))
@settings(max_examples=30)
def test_gradcheck_passes_right_gradients_of_large_outputs(x, seed):
    """exp up to e^12 ~ 1.6e5: the central difference of the whole projection <v, exp(x)>
    carried its rounding, |<v, exp(x)>| 2^-52 / 2 eps, into every element's derivative
    (68 in 100 random draws failed at the default tolerances). The outputs' differences are
    projected instead, so only the rounding of the outputs an element moves counts."""
    assert gradcheck(mg.exp, x, seed=seed)
    assert gradcheck(lambda t: t**3, x, seed=seed)


def test_numerical_grad_passes_data_arguments_as_they_are():
    """An index array was made float64 (and raised IndexError inside f), an int 1.0: only the
    arguments differentiated are converted, as gradcheck does."""
    x = np.array([0.5, -1.0, 2.0])
    index = np.array([0, 2])
    (g,) = numerical_grad(lambda t, i, k: (t[i] * k).sum(), x, index, 3, argnums=0)
    np.testing.assert_allclose(g, [3.0, 0.0, 3.0], **NUMERIC)


def test_arrays_are_drawn_in_both_layouts_so_a_vjp_assuming_c_order_is_caught():
    """`mst.arrays` drew C arrays only, and a Tensor keeps its data's layout: a VJP writing
    through `reshape(-1)` of an array like its operand (a copy for a Fortran one, so the
    write is lost) passed every generated gradient test."""
    def vjp(g, out, x):
        gx = np.empty_like(x)  # x's layout
        gx.reshape(-1)[:] = (g * np.cos(x)).ravel()  # the bug: a copy unless C order
        return gx

    my_sin = mg.defop("sin_c_only", np.sin, (vjp,), saves="inputs", register=False)

    def fails(x):
        try:
            gradcheck(my_sin, x)
        except GradcheckError:
            return True
        return False

    found = find(mst.arrays(mst.shapes(min_dims=2, min_side=2)), fails,
                 settings=settings(max_examples=50, database=None))
    assert found.flags.f_contiguous and not found.flags.c_contiguous


@given(x=mst.arrays(mst.shapes(min_dims=2, min_side=2), low=0.5, high=2.0),
       seed=st.integers(0, 2**32 - 1))
def test_a_vjp_assuming_a_c_ordered_upstream_fails_gradcheck(x, seed):
    """gradcheck checks an output of two or more axes with its upstream in Fortran order,
    but the layer watching each VJP handed it `g.copy()`, a C array: a VJP writing through
    `reshape(-1)` of an array like g passed, and gave zeros below a transpose."""
    def vjp(g, out, x):
        gx = np.zeros_like(g)  # g's layout
        gx.reshape(-1)[:] = (2.0 * g * x).ravel()  # the bug: a copy (write lost) unless C
        return gx

    square = mg.defop("square_c_only", np.square, (vjp,), saves="inputs", register=False)
    x = np.ascontiguousarray(x)  # (the operand's layout is not what fails)
    with pytest.raises(GradcheckError, match="upstream gradient standard normal in Fortran"):
        gradcheck(square, x, seed=seed)
    assert gradcheck(mg.square, x, seed=seed)


def test_an_eps_below_the_spacing_of_the_values_is_refused():
    """At 1e300, x + 1e-6 == x - 1e-6: the step taken was 0 and the numerical gradient NaN;
    numerical_grad and gradcheck say what is wrong instead."""
    with pytest.raises(ValueError, match="eps 1e-06 is below the spacing of the values near"):
        numerical_grad(lambda t: (t * 2.0).sum(), np.array([1e300]))


@given(c=mst.arrays((1, 2), low=-2.0, high=2.0), seed=st.integers(0, 2**32 - 1))
def test_gradcheck_checks_every_output_with_both_signs_of_its_upstream(c, seed):
    """A VJP dropping g's sign (|g| out for exp) passed as the second output of an (h, c)
    pair: a standard normal upstream of two elements had one sign (seed 0: both positive),
    and only one-element outputs were mirrored. Every output is checked with -v too."""
    exp_abs = mg.defop("exp_abs_g", np.exp, (lambda g, out, x: np.abs(g) * out,),
                       register=False)
    with pytest.raises(GradcheckError, match="argument 1 .* through output 1 of 2"):
        gradcheck(lambda x, c: (mg.tanh(x), exp_abs(c)), np.array([0.5]), c, seed=seed)
    assert gradcheck(lambda x, c: (mg.tanh(x), mg.exp(c)), np.array([0.5]), c, seed=seed)


@given(x=mst.arrays(low=-2.0, high=2.0))
def test_gradcheck_refuses_a_vjp_reading_what_the_latest_forward_left(x):
    """A VJP reading state the op's last forward call left (a cache of its own), not what
    its node saved, was right in gradcheck, whose second backward came straight after the
    first; in use, `square(a); square(b)` gave a the gradient of b. The second backward
    comes after the numerical side's forward calls now."""
    last = {}

    def forward(x):
        last["x"] = x.copy()
        return x * x

    square = mg.defop("square_from_last_call", forward,
                      (lambda g, out: 2 * g * last["x"],), saves="nothing", register=False)
    with pytest.raises(GradcheckError, match="reads what a later forward call changed"):
        gradcheck(square, x)


@pytest.mark.parametrize("high", [1e-4, 5e-4, 9e-4])
def test_arrays_in_an_interval_of_tiny_values_spread_over_it(high):
    """In [0, 5e-4] (no value of 1e-3 or more), every value moved to the interval's end: 300
    draws held only 0 and 5e-4, and an op right at those two points only passed."""
    inside = find(mst.arrays((4,), low=0.0, high=high),
                  lambda v: bool(np.any((v > 0.1 * high) & (v < 0.9 * high))))
    assert np.all((inside >= 0.0) & (inside <= high))


# --- each case a strategy's docs promise is drawn often enough ----------------------------------


def _share(strategy, holds, n=100):
    """The share of `n` derandomized draws of `strategy` for which `holds` (the same every
    run: no flakiness)."""
    seen = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None,
              phases=(Phase.generate,), suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(value):
        seen.append(bool(holds(value)))

    run()
    return sum(seen) / len(seen)


def _square(shapes):
    out = np.broadcast_shapes(*shapes)
    return len(out) >= 2 and out[-1] == out[-2] > 1


def _where_condition(case):
    """The condition of a where case, read back from its description."""
    text = case.description[len("condition "):]
    return np.asarray(ast.literal_eval(text[:text.rindex("], ") + 1] if "], " in text
                                       else text.split(",")[0]), dtype=bool)


@pytest.mark.parametrize("name", ["add", "maximum", "where", "greater"])
def test_broadcasting_families_draw_square_outputs_often(name):
    """binary, distinct_pair, where and comparison cases broadcast to a square output in 6-7%
    of draws (shapes() in 45%): a transposed gradient went unseen."""
    def square(case):
        condition = [_where_condition(case).shape] if name == "where" else []
        return _square(condition + [x.shape for x in case.operands])

    assert _share(mst.op_cases(name), square) >= 0.3


def test_softmax_and_cross_entropy_draw_an_axis_of_two_or_more_mostly():
    """Along an axis of length 1 (one class) the gradient is identically 0: drawn in 27-28%."""
    def along_longer(case):
        axis = int(re.search(r"'axis': (-?\d+)", case.description).group(1))
        return case.operands[0].shape[axis] >= 2

    for name in ("softmax", "log_softmax"):
        assert _share(mst.op_cases(name), along_longer) >= 0.88
    assert _share(mst.op_cases("cross_entropy"), lambda c: c.operands[0].shape[-1] >= 2) >= 0.88


def test_where_draws_a_mixed_condition_mostly():
    """where's condition was all False in 55% of draws, mixed in 10%: one operand's gradient
    was always 0."""
    def mixed(case):
        condition = _where_condition(case)
        out = np.broadcast_shapes(condition.shape, *(x.shape for x in case.operands))
        return None if np.prod(out) < 2 else condition.any() and not condition.all()

    seen = []
    _share(mst.op_cases("where"), lambda c: seen.append(mixed(c)))
    possible = [m for m in seen if m is not None]
    assert sum(possible) / len(possible) >= 0.7


# --- argnums and frozen parameters: clear errors, or what was meant -------------------------------


@pytest.mark.parametrize("check", ["gradcheck", "numerical_grad", "check_backward"])
def test_argnums_is_checked_with_the_functions_name(check):
    x, y = np.array([0.5, -1.5]), np.array([2.0, 0.25])
    run = {
        "gradcheck": lambda a: gradcheck(lambda p, q: mg.sum(p * q), x, y, argnums=a),
        "numerical_grad": lambda a: numerical_grad(lambda p, q: mg.sum(p * q), x, y,
                                                   argnums=a),
        "check_backward": lambda a: check_backward_at(
            lambda p, q: mg.sum(p * q), lambda p, q: (q, p)[a] if isinstance(a, int) else
            tuple((q, p)[i] for i in a), x, y, argnums=a),
    }[check]
    for wrong in (1.0, True, "0", (0, 1.0), (np.True_,)):
        with pytest.raises(TypeError, match=f"^{check}: argnums must be an int or a sequence "
                           "of ints"):
            run(wrong)
    for wrong, message in (((0, 0), "names an argument twice"), ((1, -1), "twice"),
                           (2, "out of range for 2 arguments"), (-3, "out of range")):
        with pytest.raises(ValueError, match=f"^{check}: argnums .*{message}"):
            run(wrong)
    run(-1)  # the last argument, as in Python
    run((-2, 1))


def test_negative_argnums_name_the_arguments_from_the_end():
    x, y = np.array([0.5, -1.5]), np.array([2.0, 0.25])
    (last,) = numerical_grad(lambda p, q: mg.sum(p * q * q), x, y, argnums=-1)
    np.testing.assert_allclose(last, 2 * x * y, rtol=1e-8)


def test_check_backward_leaves_a_frozen_parameter_out_as_gradcheck_does():
    """A model with a frozen parameter (fine-tuning) failed inside the engine with
    'gradients: inputs[1] (shape (1,)) does not require grad', naming neither."""
    rng = np.random.default_rng(0)
    layer = mg.nn.Linear(3, 1, rng=rng)
    layer.bias.requires_grad = False
    x = rng.normal(size=(4, 3))
    check_backward_at(lambda a: (mg.sum(layer(mg.Tensor(a))), layer),
                      lambda a: {"weight": a.sum(axis=0)[:, None]}, x)
    with pytest.raises(BackwardMismatch, match="'weight'"):
        check_backward_at(lambda a: (mg.sum(layer(mg.Tensor(a))), layer),
                          lambda a: {"weight": 2 * a.sum(axis=0)[:, None]}, x)
    # a gradient handed for the frozen one: the message says why it is not wanted
    with pytest.raises(TypeError, match=r"got \['bias', 'weight'\] \(a frozen parameter, "):
        check_backward_at(lambda a: (mg.sum(layer(mg.Tensor(a))), layer),
                          lambda a: {"weight": a.sum(axis=0)[:, None],
                                     "bias": np.full(1, 4.0)}, x)
    # every parameter frozen: nothing to compare, refused (it passed, comparing nothing)
    layer.weight.requires_grad = False
    with pytest.raises(ValueError, match=r"^check_backward: every parameter of the model is "
                                         r"frozen \(requires_grad False\): there is no "):
        check_backward_at(lambda a: (mg.sum(layer(mg.Tensor(a))), layer), lambda a: {}, x)


def test_gradcheck_refuses_params_with_nothing_to_check():
    """params= naming a Module whose every parameter is frozen checked the arguments
    instead, silently: the parameters asked for were never compared."""
    rng = np.random.default_rng(0)
    layer = mg.nn.Linear(3, 1, rng=rng)
    x = rng.normal(size=(4, 3))
    assert gradcheck(lambda a: mg.sum(layer(a)), x, params=layer)
    for p in layer.parameters():
        p.requires_grad = False
    with pytest.raises(ValueError, match=r"^gradcheck: params= \(Linear\) has no parameter "
                                         r"that requires grad"):
        gradcheck(lambda a: mg.sum(layer(a)), x, params=layer)
    assert gradcheck(layer, x)  # f a Module, no params=: its arguments, as documented


@given(x=mst.arrays([2, 3]))
def test_arrays_takes_a_shape_written_as_a_list(x):
    assert x.shape == (2, 3)


@pytest.mark.parametrize("argnums", [np.array([0, 1]), {0, 1}, frozenset({1, 0})],
                         ids=["array", "set", "frozenset"])
def test_argnums_may_be_an_array_or_a_set(argnums):
    """A 1-D integer array or a set of positions names them, as JAX takes them (refused by
    this stop's shared argnums check; found by its third review)."""
    assert gradcheck(lambda a, b: (a * b).sum(), np.ones(2) * 2.0, np.ones(2) * 3.0,
                     argnums=argnums)
    assert len(numerical_grad(lambda a, b: (a * b).sum(), np.ones(2), np.ones(2),
                              argnums=argnums)) == 2



@pytest.mark.parametrize("check", ["gradcheck", "numerical_grad"])
def test_a_function_that_is_not_callable_is_refused_by_name(check):
    """gradcheck(3, x) said "'int' object is not callable"."""
    with pytest.raises(TypeError, match=rf"^{check}: expected a function, got int$"):
        {"gradcheck": gradcheck, "numerical_grad": numerical_grad}[check](3, np.ones(2))


@pytest.mark.parametrize("name, value, error, message", [
    ("eps", float("nan"), ValueError, r"eps must be a finite number > 0, got nan"),
    ("eps", 0.0, ValueError, r"eps must be a finite number > 0, got 0.0"),
    ("eps", -1e-6, ValueError, r"eps must be a finite number > 0"),
    ("eps", "1e-6", TypeError, r"eps must be a real number, got str '1e-6'"),
    ("atol", -1, ValueError, r"atol must be a finite number >= 0, got -1"),
    ("atol", float("inf"), ValueError, r"atol must be a finite number >= 0, got inf"),
    ("rtol", -1e-5, ValueError, r"rtol must be a finite number >= 0"),
    ("rtol", float("nan"), ValueError, r"rtol must be a finite number >= 0, got nan"),
    ("rtol", None, TypeError, r"rtol must be a real number, got NoneType None"),
])
def test_gradcheck_refuses_tolerances_and_steps_that_would_fail_any_gradient(
        name, value, error, message):
    """eps=nan, atol=-1 failed with a GradcheckError blaming the engine's (right) gradient."""
    x = np.array([0.5, -1.5])
    with pytest.raises(error, match=f"^gradcheck: {message}"):
        gradcheck(lambda p: mg.sum(p * p), x, **{name: value})
    if name == "eps":
        with pytest.raises(error, match=f"^numerical_grad: {message}"):
            numerical_grad(lambda p: mg.sum(p * p), x, eps=value)
    elif value is not None:  # (None: check_backward's default tolerances)
        with pytest.raises(error, match=f"^check_backward: {message}"):
            check_backward_at(lambda p: mg.sum(p * p), lambda p: 2 * p, x, **{name: value})
    assert gradcheck(lambda p: mg.sum(p * p), x, **{name: 0.0 if name != "eps" else 1e-5})


def test_tolerances_may_be_any_real_number():
    """A Fraction passed the checks, then failed inside NumPy ("ufunc 'isnan' not
    supported"): taken as the float it is."""
    x = np.array([0.5, -1.5])
    assert gradcheck(lambda p: mg.sum(p * p), x, atol=Fraction(1, 10**6), eps=np.float32(1e-3),
                     rtol=Fraction(1, 10**5))
    check_backward_at(lambda p: mg.sum(p * p), lambda p: 2 * p, x, argnums=0,
                      atol=Fraction(1, 10**9), rtol=np.float16(0.001))
