"""The tape's bookkeeping as properties of the public API, on drawn shapes and values:
gradients accumulate across backward() calls, contributions of different broadcast shapes
to one vertex (a leaf or an intermediate result) are each summed back to its shape and
added, and a tensor reused in many places gets the sum of every use. Each is checked
against a closed form computed here with NumPy, and the reuse against central differences.
"""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad.testing import gradcheck
from minigrad.testing import strategies as mst

# The closed forms compute the same sums as the engine in another order: rounding only.
CLOSE = {"rtol": 1e-12, "atol": 1e-12}

# Elementwise uses of a tensor, with their derivatives: f(v) and f'(v).
USES = {
    "identity": (lambda v: v, lambda v: np.ones_like(v)),
    "square": (lambda v: v * v, lambda v: 2 * v),
    "tanh": (mg.tanh, lambda v: 1 - np.tanh(v) ** 2),
    "exp": (mg.exp, np.exp),
}


def sum_to_shape(g, shape):
    """The closed form of undoing broadcasting: sum over the axes broadcasting added (the
    leading ones) and over those it stretched from 1."""
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    stretched = tuple(i for i, side in enumerate(shape) if side == 1 and g.shape[i] != 1)
    return g.sum(axis=stretched, keepdims=True)


@st.composite
def uses_of_one_tensor(draw, max_uses=6, shape=None):
    """A tensor's value (of `shape`, or a drawn one) and, per use, an elementwise function
    and a coefficient whose shape broadcasts with the tensor's in its own way (so each use's
    output has its own shape), and an upstream gradient for the sum of the uses."""
    if shape is None:
        shape = draw(mst.shapes(max_side=3))
    n = draw(st.integers(1, max_uses))
    coefficient_shapes = draw(hnp.mutually_broadcastable_shapes(
        num_shapes=n, base_shape=shape, max_dims=3, max_side=3)).input_shapes
    value = draw(mst.arrays(shape, low=-1.5, high=1.5))
    uses = [(draw(st.sampled_from(sorted(USES))), draw(mst.arrays(s, low=-2, high=2)))
            for s in coefficient_shapes]
    out_shape = np.broadcast_shapes(shape, *coefficient_shapes)
    upstream = draw(mst.arrays(out_shape, low=-2, high=2))
    return value, uses, upstream


def summed_uses(v, uses):
    """sum_j f_j(v) c_j, broadcast to the shape of all of them."""
    return sum((USES[name][0](v) * c for name, c in uses), start=mg.Tensor(0.0))


def closed_form(value, uses, upstream):
    """d <upstream, sum_j f_j(v) c_j> / dv = sum_j sum_to(sum_to(upstream, shape of use j)
    c_j, shape of v) f_j'(v)."""
    total = np.zeros_like(value)
    for name, c in uses:
        use_shape = np.broadcast_shapes(value.shape, c.shape)
        total += sum_to_shape(sum_to_shape(upstream, use_shape) * c, value.shape) * \
            USES[name][1](value)
    return total


@given(drawn=uses_of_one_tensor())
@settings(max_examples=60)
def test_a_leaf_used_in_many_places_gets_every_contribution(drawn):
    value, uses, upstream = drawn
    x = mg.Tensor(value, requires_grad=True)
    summed_uses(x, uses).backward(upstream)
    np.testing.assert_allclose(x.grad, closed_form(value, uses, upstream), **CLOSE)


@given(drawn=uses_of_one_tensor(), scale=st.floats(0.5, 2.0))
@settings(max_examples=60)
def test_an_intermediate_vertex_used_in_many_places_gets_every_contribution(drawn, scale):
    """v = scale * x is swept once, after all its contributions arrived, each summed back to
    v's shape; x then gets scale times that."""
    value, uses, upstream = drawn
    x = mg.Tensor(value / scale, requires_grad=True)
    v = x * scale
    out = summed_uses(v, uses)
    grad_v, grad_x = mg.gradients(out, [v, x], upstream, retain_graph=True)
    expected = closed_form(v.data, uses, upstream)
    np.testing.assert_allclose(grad_v, expected, **CLOSE)
    np.testing.assert_allclose(grad_x, scale * expected, **CLOSE)
    out.backward(upstream)
    np.testing.assert_allclose(x.grad, scale * expected, **CLOSE)


@given(drawn=uses_of_one_tensor(max_uses=4), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=30)
def test_reuse_against_central_differences(drawn, seed):
    value, uses, _ = drawn
    assert gradcheck(lambda t: summed_uses(mg.tanh(t) * 1.5, uses), value, seed=seed)


@given(shape=mst.shapes(max_side=3), calls=st.integers(1, 4), data=st.data())
@settings(max_examples=40)
def test_gradients_accumulate_across_backward_calls(shape, calls, data):
    """k backward() calls through k graphs of different output shapes leave the sum of
    their gradients in .grad, each call adding its own; setting .grad = None starts over."""
    value = data.draw(mst.arrays(shape, low=-1.5, high=1.5), label="value")
    x = mg.Tensor(value, requires_grad=True)
    expected = np.zeros_like(value)
    for _ in range(calls):
        _, uses, upstream = data.draw(uses_of_one_tensor(max_uses=2, shape=shape), label="call")
        summed_uses(x, uses).backward(upstream)
        expected += closed_form(value, uses, upstream)
        np.testing.assert_allclose(x.grad, expected, **CLOSE)
    x.grad = None
    summed_uses(x, uses).backward(upstream)
    np.testing.assert_allclose(x.grad, closed_form(value, uses, upstream), **CLOSE)


@given(drawn=uses_of_one_tensor(max_uses=3), repeats=st.integers(2, 4))
@settings(max_examples=30)
def test_backward_through_a_retained_graph_adds_each_time(drawn, repeats):
    value, uses, upstream = drawn
    x = mg.Tensor(value, requires_grad=True)
    out = summed_uses(x, uses)
    once = closed_form(value, uses, upstream)
    for k in range(1, repeats + 1):
        out.backward(upstream, retain_graph=True)
        np.testing.assert_allclose(x.grad, k * once, **CLOSE)
    # gradients() reads the same graph without touching .grad
    (again,) = mg.gradients(out, [x], upstream)
    np.testing.assert_allclose(again, once, **CLOSE)
    np.testing.assert_allclose(x.grad, repeats * once, **CLOSE)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([np.float64, np.float32]), st.integers(1, 3), st.integers(1, 40),
       st.data())
def test_a_bias_gradient_is_the_sum_of_its_rows_to_the_float_types_precision(
        dtype, lead, n, data):
    """Broadcasting that only added leading axes (a bias) is undone by a product with ones,
    or einsum's loop, rather than NumPy's row-by-row reduction: the same terms in another
    order, so within a few units of the dtype's precision of the sum of their sizes, also
    for non-contiguous gradients (which take NumPy's reduction)."""
    from minigrad.tape import sum_to_shape as engine_sum

    shape = tuple(data.draw(st.lists(st.integers(1, 30), min_size=lead, max_size=lead)))
    g = data.draw(hnp.arrays(dtype, (*shape, n), elements=st.floats(
        -1e3, 1e3, width=32 if dtype is np.float32 else 64)))
    if data.draw(st.booleans()):
        g = np.asfortranarray(g)
    got = engine_sum(g, (n,))
    assert got.shape == (n,) and got.dtype == g.dtype
    rows = g.reshape(-1, n).astype(np.float64)
    exact = np.array([math.fsum(rows[:, j]) for j in range(n)])
    size = np.abs(rows).sum(axis=0)
    bound = 4 * rows.shape[0] * np.finfo(dtype).eps * size + np.finfo(dtype).tiny
    assert np.all(np.abs(got - exact) <= bound), (got, exact)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(2, 30), st.data())
def test_a_bias_with_leading_ones_is_summed_as_one_without_them(ones, n, data):
    """A bias of shape (1, n) (or (1, 1, n)) broadcast up gets the gradient of an (n,) one,
    reshaped: the same sum, to the bit."""
    from minigrad.tape import sum_to_shape as engine_sum

    rows = tuple(data.draw(st.lists(st.integers(2, 20), min_size=ones, max_size=ones)))
    g = data.draw(hnp.arrays(np.float64, (*rows, n), elements=st.floats(-1e3, 1e3)))
    got = engine_sum(g, (1,) * ones + (n,))
    assert got.shape == (1,) * ones + (n,)
    np.testing.assert_array_equal(got.reshape(n), engine_sum(g, (n,)))


def test_a_bias_gradient_of_large_wide_rows_is_the_sum_of_its_rows():
    """Past 16 MiB of rows wider than 32 the rows are summed by einsum's loop: within the
    same bound, against math.fsum."""
    from minigrad.tape import sum_to_shape as engine_sum

    g = np.random.default_rng(3).normal(size=(33_000, 64)) * 1e3  # 16.9 MB
    got = engine_sum(g, (64,))
    exact = np.array([math.fsum(g[:, j]) for j in range(64)])
    bound = 4 * g.shape[0] * np.finfo(np.float64).eps * np.abs(g).sum(axis=0)
    assert np.all(np.abs(got - exact) <= bound)
