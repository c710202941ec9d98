"""Gradients beyond one op at a time: every operand form of the binary operators (arrays and
numbers on either side, reflected operators), broadcasting, tensordot against einsum, einsum
traces and diagonals, indexing that repeats or masks, tensors used several times, and random
compositions of ops from the table."""

import operator
import string

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad import OPS, Tensor
from minigrad.testing import gradcheck
from minigrad.testing import strategies as mst

# Central differences (eps = 1e-6, float64) on these bounded inputs are good to ~1e-9; the
# tolerances of tests/test_ops.py leave three orders of magnitude and still catch a wrong rule.
ATOL, RTOL = 1e-6, 1e-5

BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
          "div": operator.truediv, "pow": operator.pow}


def _domain_array(name, i, shape):
    low, high = OPS[name].domain.interval(i)
    return mst.arrays(shape, low=low, high=high)


def _domain_number(name, i):
    low, high = OPS[name].domain.interval(i)
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


# --- binary operators: every operand form ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data())
@settings(max_examples=15)
def test_operator_with_an_array_on_either_side(name, data):
    """`Tensor op array` and `array op Tensor` (NumPy defers to the reflected method), with
    broadcasting on both sides."""
    op = BINARY[name]
    shape_a, shape_b = data.draw(mst.broadcastable_shapes(), label="shapes")
    a = data.draw(_domain_array(name, 0, shape_a), label="a")
    b = data.draw(_domain_array(name, 1, shape_b), label="b")
    out = op(Tensor(a), b)
    assert type(out) is Tensor and out.shape == np.broadcast_shapes(shape_a, shape_b)
    assert type(op(a, Tensor(b))) is Tensor
    gradcheck(op, a, b, argnums=0, atol=ATOL, rtol=RTOL)  # a Tensor, b an array
    gradcheck(op, a, b, argnums=1, atol=ATOL, rtol=RTOL)  # a an array, b a Tensor


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data())
@settings(max_examples=15)
def test_operator_with_a_number_on_either_side(name, data):
    op = BINARY[name]
    x = data.draw(_domain_array(name, 0, mst.shapes()), label="x")
    c = data.draw(_domain_number(name, 1), label="c")
    gradcheck(lambda t: op(t, c), x, atol=ATOL, rtol=RTOL)
    y = data.draw(_domain_array(name, 1, mst.shapes()), label="y")
    k = data.draw(_domain_number(name, 0), label="k")
    gradcheck(lambda t: op(k, t), y, atol=ATOL, rtol=RTOL)


def test_reflected_operators_by_hand():
    x = Tensor([0.5, 1.0, 2.0], requires_grad=True)
    a = np.array([1.0, -2.0, 3.0])
    bases = np.array([1.5, 2.0, 3.0])
    cases = [
        (lambda: 2 - x, -np.ones(3)),
        (lambda: 2 + x, np.ones(3)),
        (lambda: 3 * x, np.full(3, 3.0)),
        (lambda: 1 / x, -1 / x.data**2),
        (lambda: x**2, 2 * x.data),
        (lambda: 2**x, 2**x.data * np.log(2)),
        (lambda: np.ones(3) * x, np.ones(3)),
        (lambda: a - x, -np.ones(3)),
        (lambda: a / x, -a / x.data**2),
        (lambda: bases**x, bases**x.data * np.log(bases)),
        (lambda: -x, -np.ones(3)),
    ]
    for make, expected in cases:
        x.grad = None
        out = make()
        assert type(out) is Tensor
        out.backward(np.ones(3))
        np.testing.assert_allclose(x.grad, expected, rtol=1e-14)


@pytest.mark.parametrize("shapes", [((3,), (3, 2)), ((2, 3), (3,)), ((4, 2, 3), (3, 2)),
                                    ((2, 3), (4, 3, 2)), ((3,), (3,))])
def test_matmul_with_an_array_on_either_side(shapes):
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal(s) for s in shapes)
    for argnums in (0, 1):
        gradcheck(lambda p, q: p @ q, a, b, argnums=argnums, atol=ATOL, rtol=RTOL)
    assert type(a @ Tensor(b)) is Tensor and type(Tensor(a) @ b) is Tensor


# --- contractions ---------------------------------------------------------------------------


def _einsum_for_tensordot(ndim_a, ndim_b, axes):
    """The einsum subscripts that compute `np.tensordot(a, b, axes)`."""
    if isinstance(axes, int):
        axes_a, axes_b = list(range(ndim_a - axes, ndim_a)), list(range(axes))
    else:
        axes_a, axes_b = axes
    letters = iter(string.ascii_letters)
    spec_a = [next(letters) for _ in range(ndim_a)]
    spec_b = [None] * ndim_b
    for i, j in zip(axes_a, axes_b):
        spec_b[j] = spec_a[i]
    spec_b = [c if c is not None else next(letters) for c in spec_b]
    out = [c for i, c in enumerate(spec_a) if i not in axes_a]
    out += [c for j, c in enumerate(spec_b) if j not in axes_b]
    return f"{''.join(spec_a)},{''.join(spec_b)}->{''.join(out)}"


@given(operands=mst.tensordot_operands(), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=30)
def test_tensordot_gradient_equals_the_equivalent_einsum(operands, seed):
    a, b, axes = operands
    subscripts = _einsum_for_tensordot(a.ndim, b.ndim, axes)
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    ea, eb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    out = mg.tensordot(ta, tb, axes=axes)
    reference = mg.einsum(subscripts, ea, eb)
    np.testing.assert_allclose(out.data, reference.data, rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(g)
    reference.backward(g)
    # Same sums of products in a different order: equal to rounding.
    np.testing.assert_allclose(ta.grad, ea.grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tb.grad, eb.grad, rtol=1e-12, atol=1e-12)


def test_einsum_diagonal_and_trace():
    x = Tensor(np.arange(9.0).reshape(3, 3), requires_grad=True)
    mg.einsum("ii->i", x).backward(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(x.grad, np.diag([1.0, 2.0, 3.0]))
    x.grad = None
    mg.einsum("ii->", x).backward(np.array(5.0))
    np.testing.assert_array_equal(x.grad, 5.0 * np.eye(3))
    y = Tensor(np.arange(12.0).reshape(2, 2, 3), requires_grad=True)
    mg.einsum("iij->j", y).backward(np.array([1.0, 2.0, 3.0]))
    expected = np.zeros((2, 2, 3))
    expected[[0, 1], [0, 1]] = [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(y.grad, expected)


def test_einsum_letters_summed_away_in_one_operand():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    g = rng.standard_normal(4)
    mg.einsum("ij,jk->k", ta, tb).backward(g)  # i appears in a alone
    np.testing.assert_allclose(ta.grad, np.broadcast_to(b @ g, (2, 3)), rtol=1e-14)
    np.testing.assert_allclose(tb.grad, np.outer(a.sum(0), g), rtol=1e-14)
    ta.grad = None
    mg.einsum("ij,k->k", ta, tb[0]).backward(g)  # a summed away entirely
    np.testing.assert_allclose(ta.grad, np.full((2, 3), g @ b[0]), rtol=1e-14)
    for subscripts, shapes in [("ij,jk->k", [(2, 3), (3, 4)]), ("ii,ij->j", [(3, 3), (3, 2)]),
                               ("ijk,k->ij", [(2, 2, 3), (3,)]), ("i,i->", [(3,), (3,)])]:
        arrays = [rng.standard_normal(s) for s in shapes]
        gradcheck(lambda *xs, s=subscripts: mg.einsum(s, *xs), *arrays, atol=ATOL, rtol=RTOL)


def test_einsum_with_one_tensor_twice():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    mg.einsum("i,i->", x, x).backward()
    np.testing.assert_array_equal(x.grad, 2 * x.data)


# --- indexing -------------------------------------------------------------------------------


def _index_grad(x, index, g):
    t = Tensor(x, requires_grad=True)
    t[index].backward(g)
    return t.grad


def test_repeated_integer_indices_accumulate():
    x = np.arange(3.0)
    np.testing.assert_array_equal(_index_grad(x, [0, 0, 2], np.ones(3)), [2.0, 0.0, 1.0])
    np.testing.assert_array_equal(_index_grad(x, [0, 0, 2], np.array([1.0, 10.0, 100.0])),
                                  [11.0, 0.0, 100.0])
    np.testing.assert_array_equal(_index_grad(x, np.array([[2, 2], [2, 0]]), np.ones((2, 2))),
                                  [1.0, 0.0, 3.0])
    y = np.zeros((2, 3))
    grad = _index_grad(y, ([0, 0, 1], [1, 1, 2]), np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(grad, [[0.0, 3.0, 0.0], [0.0, 0.0, 3.0]])
    grad = _index_grad(y, (slice(None), [2, 2]), np.ones((2, 2)))  # slice with an array
    np.testing.assert_array_equal(grad, [[0.0, 0.0, 2.0], [0.0, 0.0, 2.0]])


def test_negative_indices():
    x = np.zeros(4)
    np.testing.assert_array_equal(_index_grad(x, -1, np.array(5.0)), [0.0, 0.0, 0.0, 5.0])
    np.testing.assert_array_equal(_index_grad(x, [-1, -1, 0], np.ones(3)), [1.0, 0.0, 0.0, 2.0])
    np.testing.assert_array_equal(_index_grad(x, slice(-3, -1), np.array([1.0, 2.0])),
                                  [0.0, 1.0, 2.0, 0.0])


def test_boolean_masks():
    x = np.arange(6.0).reshape(2, 3)
    mask = x > 2.5
    grad = _index_grad(x, mask, np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(grad, [[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    grad = _index_grad(x, [True, False], np.ones((1, 3)))  # a list of bools is a mask too
    np.testing.assert_array_equal(grad, [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    grad = _index_grad(x, (slice(None), np.array([False, True, True])), np.ones((2, 2)))
    np.testing.assert_array_equal(grad, [[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])


@given(x=mst.arrays(mst.shapes(min_dims=1)), data=st.data())
@settings(max_examples=25)
def test_boolean_mask_gradcheck(x, data):
    mask = data.draw(st.lists(st.booleans(), min_size=x.size, max_size=x.size), label="mask")
    mask = np.array(mask).reshape(x.shape)
    gradcheck(lambda t: t[mask], x, atol=ATOL, rtol=RTOL)


def test_none_and_ellipsis():
    x = np.arange(24.0).reshape(2, 3, 4)
    g = np.arange(3.0).reshape(1, 3, 1)
    grad = _index_grad(x, (None, 1, Ellipsis, slice(1, 2)), g)
    expected = np.zeros((2, 3, 4))
    expected[1, :, 1] = [0.0, 1.0, 2.0]
    np.testing.assert_array_equal(grad, expected)
    grad = _index_grad(x, (Ellipsis, None, 0), np.ones((2, 3, 1)))
    np.testing.assert_array_equal(grad[..., 0], np.ones((2, 3)))
    np.testing.assert_array_equal(grad[..., 1:], 0.0)


def test_slices_and_whole_tensor_into_one_gradient():
    """A sparse slice gradient and dense gradients reach one tensor, in both orders."""
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x[0] * 10.0 + (x * x).sum() + x[1:].sum()).backward()
    np.testing.assert_array_equal(x.grad, [12.0, 5.0, 7.0])
    x.grad = None
    ((x * x).sum() + x[0] * 10.0 + x[[1, 1]].sum()).backward()
    np.testing.assert_array_equal(x.grad, [12.0, 6.0, 6.0])


# --- reuse ----------------------------------------------------------------------------------


def test_a_tensor_used_twice_gets_the_sum():
    x = Tensor([1.0, -2.0, 3.0], requires_grad=True)
    (x * x).backward(np.ones(3))
    np.testing.assert_array_equal(x.grad, 2 * x.data)
    x.grad = None
    (x + x).backward(np.ones(3))
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, 2.0])
    x.grad = None
    y = mg.tanh(x)
    (y * 3.0 + mg.exp(y)).sum().backward()  # y in two branches
    dy = 3.0 + np.exp(np.tanh(x.data))
    np.testing.assert_allclose(x.grad, dy * (1 - np.tanh(x.data) ** 2), rtol=1e-14)


def test_a_scalar_used_many_times():
    # 0-d cotangents: each contribution must be added, including the third and later ones.
    x = Tensor(2.0, requires_grad=True)
    y = x * 1.0 + x * 2.0 + x * 3.0 + x * 4.0
    y.backward()
    assert x.grad == 10.0

    def f(w):
        h = w
        for _ in range(4):
            h = h * w + w  # w reaches the output through every step
        return h

    gradcheck(f, np.array(1.5), atol=ATOL, rtol=RTOL)


@given(x=mst.arrays(), data=st.data())
@settings(max_examples=25)
def test_diamonds_and_reuse(x, data):
    uses = data.draw(st.integers(2, 5), label="uses")

    def f(t):
        h = mg.tanh(t)
        branches = [h * float(k + 1) for k in range(uses)] + [h * h, t]
        out = branches[0]
        for b in branches[1:]:
            out = out + b
        return out

    gradcheck(f, x, atol=ATOL, rtol=RTOL)


# --- random compositions --------------------------------------------------------------------

UNARY_OPS = sorted(n for n, info in OPS.items() if info.domain.family == "unary")
BINARY_OPS = sorted(n for n, info in OPS.items() if info.domain.family == "binary")
KINK_DISTANCE = 1e-3  # far beyond eps = 1e-6: central differences never straddle a kink


@st.composite
def programs(draw):
    """A small graph: leaves of broadcastable shapes, then steps that apply a unary or binary
    op of the table to earlier values. Each step is (op name, operand indices)."""
    shapes = draw(mst.broadcastable_shapes(num_shapes=draw(st.integers(1, 3)), max_dims=2,
                                           max_side=3))
    leaves = [draw(mst.arrays(s, low=-2.0, high=2.0), label="leaf") for s in shapes]
    steps = []
    for _ in range(draw(st.integers(2, 6))):
        n = len(leaves) + len(steps)
        if draw(st.booleans()):
            steps.append((draw(st.sampled_from(UNARY_OPS)), (draw(st.integers(0, n - 1)),)))
        else:
            steps.append((draw(st.sampled_from(BINARY_OPS)),
                          (draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1)))))
    return leaves, steps


def _build(leaves, steps):
    """Plan which operands must first be squashed into their op's domain (decided once, on the
    drawn values, so that the function gradcheck differentiates is one smooth function), and
    return that function. Squashing is low + (high - low) * sigmoid(v)."""
    plan = []
    values = [np.asarray(v) for v in leaves]
    for name, operands in steps:
        domain = OPS[name].domain
        squash = []
        inputs = []
        for i, k in enumerate(operands):
            low, high = domain.interval(i)
            v = values[k]
            needs = bool(v.size) and (v.min() <= low or v.max() >= high)
            if needs:
                v = low + (high - low) * (1 / (1 + np.exp(-v)))
            squash.append(needs)
            inputs.append(v)
        for point in domain.avoid:
            for v in inputs:
                assume(np.all(np.abs(v - point) > KINK_DISTANCE))
        plan.append((name, operands, tuple(squash)))
        values.append(np.asarray(OPS[name].function(*inputs).data))

    def f(*xs):
        vals = list(xs)
        for name, operands, squash in plan:
            domain = OPS[name].domain
            inputs = []
            for i, (k, s) in enumerate(zip(operands, squash)):
                v = vals[k]
                if s:
                    low, high = domain.interval(i)
                    v = mg.sigmoid(v) * (high - low) + low
                inputs.append(v)
            vals.append(OPS[name].function(*inputs))
        out = vals[len(xs)]
        for v in vals[len(xs) + 1:]:
            out = out + v  # every step reaches the output
        return out

    return f


@given(program=programs(), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=60)
def test_random_compositions(program, seed):
    leaves, steps = program
    f = _build(leaves, steps)
    gradcheck(f, *leaves, atol=ATOL, rtol=RTOL, seed=seed)


# --- shape ops with negative axes -----------------------------------------------------------


@pytest.mark.parametrize("axes", [(0, -1, 1), (-1, -2, -3), (-3, 2, -2)])
def test_transpose_with_negative_axes(axes):
    x = np.arange(24.0).reshape(2, 3, 4)
    out = mg.transpose(Tensor(x), axes)
    np.testing.assert_array_equal(out.data, np.transpose(x, axes))
    gradcheck(lambda t: mg.transpose(t, axes), x, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("axis", [-1, -2, (-1, 0)])
def test_reductions_and_stacking_with_negative_axes(axis):
    x = np.random.default_rng(3).standard_normal((2, 3))
    for name in ("sum", "mean", "max"):
        gradcheck(lambda t, f=OPS[name].function: f(t, axis=axis), x, atol=ATOL, rtol=RTOL)
    if isinstance(axis, int):
        gradcheck(lambda a, b: mg.stack([a, b], axis=axis), x, x + 1, atol=ATOL, rtol=RTOL)
        gradcheck(lambda a, b: mg.concatenate([a, b], axis=axis), x, x + 1, atol=ATOL, rtol=RTOL)


def test_max_splits_the_gradient_between_ties():
    # The documented choice: the gradient of the mean of the tied maxima.
    x = Tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], requires_grad=True)
    mg.max(x, axis=1).backward(np.array([1.0, 6.0]))
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [2.0, 2.0, 2.0]])
    x.grad = None
    mg.max(x).backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize("reduce, extreme", [
    (mg.max, 3.0), (Tensor.max, 3.0), (mg.min, 1.0), (Tensor.min, 1.0)])
def test_max_and_min_say_they_split_ties_and_do_along_an_axis(reduce, extreme):
    """Their docstrings say where the gradient goes (the choice was in a comment only)."""
    assert "split evenly between ties" in " ".join(reduce.__doc__.split())
    x = Tensor([[1.0, 3.0, 3.0], [3.0, 1.0, 1.0]], requires_grad=True)
    reduce(x, axis=1).backward(np.array([1.0, 4.0]))
    tied = x.data == extreme
    np.testing.assert_array_equal(x.grad, np.where(tied, [[1.0], [4.0]] / tied.sum(
        axis=1, keepdims=True), 0.0))
