"""The ops people expect, beyond the table's generated tests (tests/test_ops.py,
test_mutants.py): values against NumPy, stability at extreme inputs, the comparisons'
semantics (masks without gradient, identity hashing, under `minigrad.compile`), and the
errors of bad calls."""

import re
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import Tensor
from minigrad.testing import gradcheck
from minigrad.testing import strategies as mst

# Central differences in float64 are good to ~1e-9 here (as in tests/test_ops.py).
ATOL, RTOL = 1e-6, 1e-5


def _log_softmax(x, axis=-1):
    """The reference: log(exp(x) / sum(exp(x))) in float64 after a shift, written apart."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@st.composite
def classification(draw, low=-5.0, high=5.0):
    lead = draw(mst.shapes(max_dims=2, max_side=4))
    classes = draw(st.integers(1, 5))
    logits = draw(mst.arrays(lead + (classes,), low=low, high=high))
    labels = draw(hnp.arrays(np.int64, lead, elements=st.integers(0, classes - 1)))
    return logits, labels


# --- softmax, log_softmax, cross_entropy ----------------------------------------------------


@given(x=mst.arrays(mst.shapes(min_dims=1)), data=st.data())
def test_softmax_and_log_softmax_against_numpy(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1), label="axis")
    p = mg.softmax(Tensor(x), axis=axis).data
    np.testing.assert_allclose(p, np.exp(_log_softmax(x, axis)), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(p.sum(axis=axis), 1.0, rtol=1e-12)
    np.testing.assert_allclose(mg.log_softmax(Tensor(x), axis).data, _log_softmax(x, axis),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(Tensor(x).softmax(axis).data, p)  # the method


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_is_finite_at_extreme_logits(dtype):
    z = Tensor(np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]], dtype), requires_grad=True)
    with np.errstate(all="raise", under="ignore"):
        np.testing.assert_allclose(mg.softmax(z).data, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]])
        assert np.isfinite(mg.log_softmax(z).data).all()
        loss = mg.cross_entropy(z, np.array([2, 0]))
        loss.backward()
    assert loss.dtype == dtype and z.grad.dtype == dtype
    assert loss.item() == pytest.approx((2e4 + np.log(3)) / 2, rel=1e-6, abs=0)
    assert np.isfinite(z.grad).all()


@given(case=classification(), seed=st.integers(0, 2**32 - 1))
def test_cross_entropy_is_the_mean_negative_log_likelihood(case, seed):
    logits, labels = case
    z = Tensor(logits, requires_grad=True)
    loss = mg.cross_entropy(z, labels)
    picked = np.take_along_axis(_log_softmax(logits), labels[..., None], -1)
    assert loss.item() == pytest.approx(-picked.mean(), rel=1e-12, abs=1e-12)
    loss.backward()
    onehot = np.eye(logits.shape[-1])[labels]
    np.testing.assert_allclose(z.grad, (np.exp(_log_softmax(logits)) - onehot) / labels.size,
                               rtol=1e-10, atol=1e-15)
    gradcheck(lambda t: mg.cross_entropy(t, labels), logits, atol=ATOL, rtol=RTOL, seed=seed)


def test_cross_entropy_takes_integer_valued_labels_of_any_kind():
    logits = np.random.default_rng(0).normal(size=(3, 4))
    expected = mg.cross_entropy(Tensor(logits), np.array([3, 0, 1])).item()
    for labels in (np.array([3, 0, 1], np.uint8), np.array([3.0, 0.0, 1.0]),
                   Tensor([3.0, 0.0, 1.0]), np.array([3, 0, 1], np.int32)):
        assert mg.cross_entropy(Tensor(logits), labels).item() == expected


@given(logits=mst.arrays(st.integers(1, 5).map(lambda n: (n,))), data=st.data())
def test_cross_entropy_takes_a_python_number_label_as_a_numpy_one(logits, data):
    label = data.draw(st.integers(0, logits.size - 1), label="label")
    grads = []
    for given_label in (label, float(label), np.int64(label)):
        z = Tensor(logits, requires_grad=True)
        loss = mg.cross_entropy(z, given_label)
        assert loss.item() == pytest.approx(-_log_softmax(logits)[label], rel=1e-12, abs=1e-12)
        loss.backward()
        grads.append(z.grad)
    np.testing.assert_array_equal(grads[0], grads[2])
    np.testing.assert_array_equal(grads[1], grads[2])


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 4, 1]), r"^cross_entropy: invalid inputs of shapes \(3, 4\), \(3,\): labels "
                          r"must lie in \[0, 4\) for 4 classes, got 4$"),
    (np.array([0, -1, 1]), r"labels must lie in \[0, 4\) for 4 classes, got -1$"),
    (np.array([0.0, 1.5, 1.0]), r"^cross_entropy: .*\(3, 4\), \(3,\): labels must be integers, "
                                r"got 1.5$"),
    (np.array([0.0, np.nan, 1.0]), r"labels must be integers, got nan$"),
    (np.array([[0, 1, 2]]), r"^cross_entropy: logits of shape \(3, 4\) .*need labels of shape "
                            r"\(3,\) .*got labels of shape \(1, 3\)$"),
])
def test_cross_entropy_refuses_bad_labels_naming_the_value(labels, message):
    with pytest.raises(ValueError, match=message):
        mg.cross_entropy(Tensor(np.zeros((3, 4)), requires_grad=True), labels)


def test_cross_entropy_refuses_labels_that_require_grad_and_empty_logits():
    with pytest.raises(TypeError, match=r"^cross_entropy: labels \(shape \(2,\)\) require grad"):
        mg.cross_entropy(Tensor(np.zeros((2, 3))), Tensor([0.0, 1.0], requires_grad=True))
    for shape in [(0, 3), (2, 0), ()]:
        with pytest.raises(ValueError, match=r"^cross_entropy: logits of shape"):
            mg.cross_entropy(Tensor(np.zeros(shape)), np.zeros(shape[:-1], int))


def test_compiled_cross_entropy_checks_the_labels_of_every_call():
    """The labels are checked by the forward, which a replay runs too."""
    w = Tensor(np.random.default_rng(1).normal(size=(3, 4)), requires_grad=True)
    step = mg.compile(lambda x, labels: mg.cross_entropy(x @ w, labels))
    x = np.ones((2, 3))
    for labels in ([0, 1], [2, 3], [1, 1]):  # a trace, then replays
        eager = mg.cross_entropy(Tensor(x) @ w, np.array(labels)).item()
        assert step(x, np.array(labels)).item() == eager
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\) for 4 classes, got 9"):
        step(x, np.array([0, 9]))


# --- comparisons ----------------------------------------------------------------------------

COMPARISONS = [
    ("less", lambda a, b: a < b, np.less), ("less_equal", lambda a, b: a <= b, np.less_equal),
    ("greater", lambda a, b: a > b, np.greater),
    ("greater_equal", lambda a, b: a >= b, np.greater_equal),
    ("equal", lambda a, b: a == b, np.equal), ("not_equal", lambda a, b: a != b, np.not_equal),
]


@pytest.mark.parametrize("name, operator, reference", COMPARISONS)
@given(shapes=mst.broadcastable_shapes(), data=st.data())
@settings(max_examples=25)
def test_comparisons_are_masks_without_gradient(name, operator, reference, shapes, data):
    # Small integers as floats: ties are common, where == and <= differ from < .
    values = lambda shape: mst.arrays(shape, low=-2, high=2).map(np.round)  # noqa: E731
    a, b = (data.draw(values(s), label=label) for s, label in zip(shapes, "ab"))
    expected = reference(a, b).astype(np.float64)
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    number = float(b.flat[0]) if b.size else 0.0
    for out, want in [(operator(ta, tb), expected), (operator(ta, b), expected),
                      (operator(a, tb), expected), (getattr(mg, name)(ta, tb), expected),
                      (operator(ta, number), reference(a, number).astype(np.float64))]:
        assert type(out) is Tensor and not out.requires_grad and out.is_leaf
        np.testing.assert_array_equal(out.data, want, strict=True)
    mask = operator(Tensor(a.astype(np.float32)), np.float32(number))
    assert mask.dtype == np.float32  # the operands' floating dtype


def test_a_comparison_in_a_graph_passes_no_gradient():
    x = Tensor([-2.0, -0.5, 0.5, 3.0], requires_grad=True)
    (mg.where(x > 0, x, 0.0) * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 2.0, 2.0])
    x.grad = None
    ((x > 0) * x * x).sum().backward()  # the mask is a constant of the product
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0, 6.0])


def test_comparisons_against_other_types_follow_pythons_rules():
    x = Tensor([1.0, 2.0])
    assert (x == None) is False and (x != None) is True  # noqa: E711 (the rule under test)
    assert (x == "a") is False
    for compare in (lambda: x < "a", lambda: x >= None, lambda: x < [1]):
        with pytest.raises(TypeError, match="not supported between instances"):
            compare()
    with pytest.raises(TypeError, match=r"^greater: expected a Tensor, a NumPy array or a real "
                                        r"number, got list"):
        mg.greater(x, [1.0, 2.0])


@given(values=st.lists(st.floats(-10.0, 10.0), min_size=0, max_size=4),
       container=st.sampled_from([list, tuple]))
def test_equality_with_a_list_or_tuple_is_refused_as_addition_is(values, container):
    """`x == [1, 1]` (also reflected, and !=) was Python's identity fallback, a silent
    False (True for !=) even for x's own values, where `x + [1, 1]` and `x < [1, 1]` raise."""
    x = Tensor(values)
    other = container(values)
    got = rf"expected a Tensor, a NumPy array or a real number, got {container.__name__}$"
    for name, compare in [("equal", lambda: x == other), ("not_equal", lambda: x != other),
                          ("equal", lambda: other == x), ("not_equal", lambda: other != x),
                          ("add", lambda: x + other)]:
        with pytest.raises(TypeError, match=rf"^{name}: {got}"):
            compare()
    assert (x == Tensor(values)).data.all() and not (x != np.array(values)).data.any()


def test_the_truth_of_a_mask_of_several_elements_is_refused():
    x = Tensor([1.0, 2.0])
    with pytest.raises(ValueError, match=r"^the truth value of a tensor of shape \(2,\) is "
                                         r"ambiguous$"):
        bool(x == x)
    assert bool(Tensor(2.0) > 1.0) and not (Tensor(2.0) < 1.0)


def test_tensors_stay_keys_and_members_by_identity():
    a, b = Tensor([1.0, 2.0]), Tensor([1.0, 2.0])
    table = {a: "a", b: "b"}
    assert table[a] == "a" and table[b] == "b" and len({a, b, a}) == 2
    assert hash(a) == object.__hash__(a)
    p = mg.nn.Parameter([1.0])
    assert {p: 1}[p] == 1


def test_comparisons_compile_without_reaching_python():
    """A mask is a step of the compiled program: new values give new masks on replay."""
    w = Tensor([0.5, -1.0, 2.0], requires_grad=True)

    def loss(x):
        return (mg.where(x * w > 1.0, x * w, (x * w) * 0.1) + (x >= w) * w).sum()

    step = mg.compile(loss)
    rng = np.random.default_rng(2)
    for _ in range(5):
        x = rng.normal(size=(4, 3)) * 2
        w.grad = None
        expected = loss(x)
        expected.backward()
        eager = w.grad
        w.grad = None
        out = step(x)
        out.backward()
        assert out.item() == expected.item()
        np.testing.assert_array_equal(w.grad, eager)


# --- where, maximum, minimum, clip, square ---------------------------------------------------


def test_where_takes_bool_arrays_and_masks_and_refuses_a_condition_with_gradient():
    a, b = Tensor([1.0, 2.0, 3.0], requires_grad=True), np.array([10.0, 20.0, 30.0])
    for condition in (np.array([True, False, True]), Tensor([1.0, 0.0, 1.0]),
                      np.array([2, 0, -1])):
        np.testing.assert_array_equal(mg.where(condition, a, b).data, [1.0, 20.0, 3.0])
    with pytest.raises(TypeError, match=r"^where: the condition \(shape \(3,\)\) requires grad"):
        mg.where(a, a, b)


def test_maximum_and_minimum_split_a_tie_evenly():
    a = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = Tensor([3.0, 2.0, 1.0], requires_grad=True)
    mg.maximum(a, b).backward(np.array([1.0, 2.0, 4.0]))
    np.testing.assert_array_equal(a.grad, [0.0, 1.0, 4.0])
    np.testing.assert_array_equal(b.grad, [1.0, 1.0, 0.0])
    a.grad = b.grad = None
    mg.minimum(a, b).backward(np.array([1.0, 2.0, 4.0]))
    np.testing.assert_array_equal(a.grad, [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(b.grad, [0.0, 1.0, 4.0])


def test_clip_passes_the_gradient_inside_its_bounds_included():
    x = Tensor([-2.0, -1.0, 0.0, 1.0, 2.0], requires_grad=True)
    out = x.clip(-1.0, 1.0)
    np.testing.assert_array_equal(out.data, [-1.0, -1.0, 0.0, 1.0, 1.0])
    out.backward(np.ones(5))
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(mg.clip(x, low=0.0).data, [0.0, 0.0, 0.0, 1.0, 2.0])
    np.testing.assert_array_equal(mg.clip(x, high=0.0).data, [-2.0, -1.0, 0.0, 0.0, 0.0])
    assert mg.clip(Tensor(np.ones(2, np.float32)), 0.0, 0.5).dtype == np.float32
    with pytest.raises(ValueError, match=r"^clip: low=1.0 is above high=-1.0$"):
        mg.clip(x, 1.0, -1.0)
    with pytest.raises(ValueError, match=r"^clip: give low, high or both$"):
        mg.clip(x)
    with pytest.raises(TypeError, match=r"^clip: high must be a number or None, got 'a'$"):
        mg.clip(x, 0.0, "a")


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@given(data=st.data())
def test_clip_at_a_bound_beyond_the_dtypes_range_is_the_cast_bounds_without_its_warning(
        dtype, data):
    """A float64 bound beyond float16's or float32's range (clip(x32, -1e40)) warned of an
    overflow in NumPy's cast, forward and backward, and raised under
    np.errstate(over="raise") (the minigrad command trains so), a low beyond the top (or a
    high beyond the bottom) too. The bound is now what the
    cast makes of it, without the cast: x clipped at the bound as x's dtype holds it, the
    gradient passing where low <= x <= high, compared exactly (in float64)."""
    info = np.finfo(dtype)
    x = data.draw(hnp.arrays(dtype, st.integers(1, 6), elements=st.floats(
        allow_nan=False, width=info.bits)))
    top = float(info.max)
    far = data.draw(st.one_of(st.floats(top, 1e300), st.sampled_from([top, 1e40, 1e300])))
    near = data.draw(st.floats(-1.0, 1.0) | st.none())
    low, high = data.draw(st.sampled_from([(-far, near), (near, far),  # beyond each end,
                                           (far, None), (None, -far)]))  # or the far one's
    with np.errstate(over="ignore"):  # the bounds as the dtype holds them: the oracle
        held_low, held_high = (float(dtype(b)) for b in (
            -np.inf if low is None else low, np.inf if high is None else high))
    wide = x.astype(np.float64)
    inside = (wide >= held_low) & (wide <= held_high)
    want = np.where(wide < held_low, held_low, np.where(wide > held_high, held_high, wide))
    t = Tensor(x, requires_grad=True)
    with np.errstate(all="raise"):
        out = mg.clip(t, low, high)
        out.backward(np.ones_like(x))
    assert out.dtype == dtype
    np.testing.assert_array_equal(out.data.astype(np.float64), want)
    np.testing.assert_array_equal(t.grad, inside.astype(dtype))
    compiled = mg.compile(lambda u: mg.clip(u, low, high))  # (the bounds taken while traced)
    for _ in range(2):
        with np.errstate(all="raise"):
            np.testing.assert_array_equal(compiled(t).data, out.data)


@given(x=mst.arrays())
def test_square_is_x_times_x(x):
    t = Tensor(x, requires_grad=True)
    out = t.square()
    np.testing.assert_array_equal(out.data, x * x)
    out.backward(np.ones_like(x))
    np.testing.assert_array_equal(t.grad, 2.0 * x)


# --- var ------------------------------------------------------------------------------------


@given(x=mst.arrays(mst.shapes(min_dims=1)), data=st.data())
@settings(max_examples=40)
def test_var_is_numpys_with_its_gradient(x, data):
    axis = data.draw(st.none() | st.integers(-x.ndim, x.ndim - 1), label="axis")
    n = x.size if axis is None else x.shape[axis]
    ddof = data.draw(st.integers(0, n - 1), label="ddof")
    keepdims = data.draw(st.booleans(), label="keepdims")
    out = mg.var(Tensor(x), axis=axis, keepdims=keepdims, ddof=ddof)
    np.testing.assert_allclose(out.data, np.var(x, axis=axis, keepdims=keepdims, ddof=ddof),
                               rtol=1e-12, atol=1e-12)
    assert Tensor(x).var(axis, keepdims, ddof).shape == out.shape  # the method
    gradcheck(lambda t: mg.var(t, axis=axis, keepdims=keepdims, ddof=ddof), x, atol=ATOL,
              rtol=RTOL, seed=data.draw(st.integers(0, 2**32 - 1), label="seed"))


def test_var_refuses_a_ddof_that_leaves_nothing():
    with pytest.raises(ValueError, match=r"^var: 3 elements per reduction \(shape \(2, 3\), axis "
                                         r"1\) leave no degrees of freedom with ddof=3$"):
        mg.var(Tensor(np.ones((2, 3))), axis=1, ddof=3)
    with pytest.raises(ValueError, match=r"^var: ddof must be a number >= 0, got -1$"):
        mg.var(Tensor(np.ones(3)), ddof=-1)
    with pytest.raises(ValueError, match=r"^var: axis 2 is out of range for shape \(2, 3\)$"):
        mg.var(Tensor(np.ones((2, 3))), axis=2)


# --- squeeze, flatten, split ----------------------------------------------------------------


@given(shape=st.lists(st.integers(1, 3), max_size=4).map(tuple), data=st.data())
def test_squeeze_and_flatten_against_numpy(shape, data):
    x = np.arange(float(np.prod(shape))).reshape(shape)
    assert mg.squeeze(Tensor(x)).shape == np.squeeze(x).shape
    ones = [i for i, n in enumerate(shape) if n == 1]
    if ones:
        axis = data.draw(st.sampled_from(ones), label="axis")
        np.testing.assert_array_equal(Tensor(x).squeeze(axis).data, np.squeeze(x, axis))
    ndim = max(len(shape), 1)
    start = data.draw(st.integers(0, ndim - 1), label="start")
    end = data.draw(st.integers(start, ndim - 1), label="end")
    flat = Tensor(x).flatten(start, end)
    full = shape or (1,)
    assert flat.shape == full[:start] + (int(np.prod(full[start:end + 1])),) + full[end + 1:]
    np.testing.assert_array_equal(flat.data.ravel(), x.ravel())
    assert mg.flatten(Tensor(x)).shape == (x.size,)


def test_squeeze_and_flatten_errors_name_the_op():
    x = Tensor(np.ones((2, 1, 3)))
    with pytest.raises(ValueError, match=r"^squeeze: axis 0 of shape \(2, 1, 3\) has length 2, "
                                         r"not 1$"):
        x.squeeze(0)
    with pytest.raises(ValueError, match=r"^squeeze: axis 3 is out of range for shape"):
        x.squeeze(3)
    with pytest.raises(ValueError, match=r"^flatten: start_dim=2 comes after end_dim=1"):
        x.flatten(2, 1)
    with pytest.raises(ValueError, match=r"^flatten: start_dim=5 or end_dim=-1 is out of range"):
        x.flatten(5)


@given(x=mst.arrays(mst.shapes(min_dims=1, max_side=6)), data=st.data())
@settings(max_examples=40)
def test_split_is_numpys_and_its_parts_get_their_gradients(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1), label="axis")
    length = x.shape[axis]
    divisors = [k for k in range(1, length + 1) if length % k == 0]
    sections = data.draw(st.sampled_from(divisors) | st.lists(st.integers(-length, length + 1),
                                                                max_size=3), label="sections")
    parts = mg.split(Tensor(x), sections, axis=axis)
    expected = np.split(x, sections, axis=axis)
    assert len(parts) == len(expected)
    for part, want in zip(parts, expected):
        np.testing.assert_array_equal(part.data, want)
    weights = [data.draw(mst.arrays(p.shape), label="weight") for p in parts]

    def f(t):
        return mg.stack([(p * w).sum() for p, w in zip(mg.split(t, sections, axis), weights)])

    gradcheck(f, x, atol=ATOL, rtol=RTOL)


def test_split_errors_name_the_op():
    x = Tensor(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"^split: 3 sections do not divide axis 0 of shape "
                                         r"\(4, 3\) equally$"):
        mg.split(x, 3)
    with pytest.raises(ValueError, match=r"^split: axis 2 is out of range for shape \(4, 3\)$"):
        mg.split(x, 2, axis=2)
    with pytest.raises(TypeError, match=r"^split: expected a Tensor"):
        mg.split("abc", 2)


# --- empty arrays, as NumPy has them -------------------------------------------------------

empty_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=3).filter(
    lambda shape: 0 in shape)


@pytest.mark.parametrize("name", ["max", "min"])
@given(shape=empty_shapes, data=st.data())
def test_max_of_an_empty_tensor_is_numpys_unless_a_reduced_axis_is_empty(name, shape, data):
    """NumPy's max of shape (0, 3) over axis 1 is of shape (0,): only a maximum of no
    elements (an empty reduced axis) has no value. min names itself (it said max)."""
    axis = data.draw(st.none() | st.integers(0, len(shape) - 1), label="axis")
    keepdims = data.draw(st.booleans(), label="keepdims")
    x = Tensor(np.zeros(shape), requires_grad=True)
    if 0 in (shape if axis is None else (shape[axis],)):
        with pytest.raises(ValueError, match=rf"^{name}: cannot reduce over an axis of length 0 "
                                             rf"\(shape {re.escape(str(shape))}, axis {axis}\)"):
            getattr(x, name)(axis=axis, keepdims=keepdims)
        return
    out = getattr(x, name)(axis=axis, keepdims=keepdims)
    assert out.shape == np.max(x.data, axis=axis, keepdims=keepdims).shape
    out.sum().backward()
    assert x.grad.shape == shape


@given(shape=empty_shapes)
def test_mse_loss_of_empty_inputs_is_nan_with_an_empty_gradient(shape):
    """NumPy's mean of no elements is NaN (with its warning); the gradient of no elements
    is an empty array, for either operand."""
    y = Tensor(np.zeros(shape), requires_grad=True)
    t = Tensor(np.zeros(shape), requires_grad=True)
    with pytest.warns(RuntimeWarning):
        loss = mg.mse_loss(y, t)
    assert np.isnan(loss.item())
    loss.backward()
    assert y.grad.shape == t.grad.shape == shape


@pytest.mark.parametrize("loss", ["mean", "mean over an empty axis", "binary_cross_entropy",
                                  "binary_cross_entropy_with_logits"])
@pytest.mark.parametrize("dtype", [np.float16, np.float64])
@given(shape=empty_shapes)
def test_an_empty_means_backward_divides_by_no_zero(loss, dtype, shape):
    """The backward of an empty mean and of the two binary cross-entropies computed g / 0
    for its scale: a divide-by-zero warning, an error under np.errstate(divide="raise")
    (the minigrad command trains so). The loss is NaN, as NumPy's mean of no elements;
    the gradient an empty array of the input's shape, as mse_loss's already was."""
    x = Tensor(np.zeros(shape, dtype), requires_grad=True)
    axis = shape.index(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the NaN of the forward, NumPy's
        if loss == "mean":
            out = mg.mean(x)
        elif loss == "mean over an empty axis":  # (out not empty: count 0 per element)
            out = mg.mean(x, axis=axis).sum()
        elif loss == "binary_cross_entropy":
            out = mg.binary_cross_entropy(x, np.zeros(shape))
        else:
            out = mg.binary_cross_entropy_with_logits(x, np.zeros(shape))
    with np.errstate(divide="raise"):
        out.backward()
    assert x.grad.shape == shape and x.grad.dtype == dtype


@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=3),
       empty=st.sampled_from([[], [[]], ([], []), (slice(None), [])]))
def test_an_empty_list_index_is_an_empty_integer_index(shape, empty):
    """`np.array([])` is float, but NumPy indexes with an empty list as with integers."""
    if isinstance(empty, tuple) and len(shape) < 2:
        return
    x = Tensor(np.ones(shape), requires_grad=True)
    part = x[empty]
    assert part.shape == np.ones(shape)[empty].shape
    (part.sum() + x.sum()).backward()
    np.testing.assert_array_equal(x.grad, np.ones(shape))


# --- einsum with NumPy's broadcasting of length-1 axes ---------------------------------------

EINSUM_BROADCASTS = ["ij,kj->", "ij,kj->ik", "ij,kj->ij", "ij,j->i", "ij,ij->i", "ij,jk->ik",
                     "ijk,ik->j", "ij,ij->ij"]


@given(subscripts=st.sampled_from(EINSUM_BROADCASTS), data=st.data())
@settings(max_examples=60)
def test_einsum_broadcasts_length_one_axes_with_the_numerical_gradient(subscripts, data):
    """An operand's axis of length 1 may meet a longer one (NumPy's einsum broadcasts it):
    its gradient is summed back to length 1, and a longer axis gets a gradient where the
    other operands have length 1."""
    specs = subscripts.split("->")[0].split(",")
    sizes = {c: data.draw(st.integers(2, 3), label=c) for c in "ijk"}
    shapes = [tuple(data.draw(st.sampled_from([1, sizes[c]]), label=f"{spec}[{c}]")
                    for c in spec) for spec in specs]
    operands = [data.draw(mst.arrays(shape), label="operand") for shape in shapes]
    out = mg.einsum(subscripts, *(Tensor(x) for x in operands))
    np.testing.assert_allclose(out.data, np.einsum(subscripts, *operands), rtol=1e-12, atol=1e-12)
    gradcheck(lambda *xs: mg.einsum(subscripts, *xs), *operands, atol=ATOL, rtol=RTOL)


# --- methods --------------------------------------------------------------------------------


@pytest.mark.parametrize("method, name", [
    (lambda x: x.square(), "square"), (lambda x: x.clip(0.0, 1.0), "clip"),
    (lambda x: x.softmax(), "softmax"), (lambda x: x.log_softmax(0), "log_softmax"),
    (lambda x: x.var(1), "var"), (lambda x: x[None].squeeze(0), "squeeze"),
    (lambda x: x.flatten(), "flatten"), (lambda x: x.split(2, axis=1)[1], "getitem"),
])
def test_tensor_methods_record_the_ops_of_the_table(method, name):
    assert method(Tensor(np.full((2, 2), 0.5), requires_grad=True))._node.name == name


@settings(max_examples=30)
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
def test_min_is_numpys_and_its_gradient_goes_to_the_minima(data, shape):
    """`mg.min` / `x.min()` (-max(-x)): NumPy's numbers, to the bit, and the numerical
    gradient where the minimum is unique; ties split evenly, as max's."""
    # distinct by 0.1 at least: central differences (eps 1e-6) never cross a tie
    values = data.draw(hnp.arrays(np.float64, shape, unique=True,
                                  elements=st.integers(-50, 50).map(lambda v: v / 10)))
    axis = data.draw(st.sampled_from([None, *range(len(shape)), -1]))
    keepdims = data.draw(st.booleans())
    x = Tensor(values, requires_grad=True)
    np.testing.assert_array_equal(x.min(axis, keepdims).data,
                                  np.min(values, axis=axis, keepdims=keepdims), strict=True)
    assert gradcheck(lambda t: (mg.min(t, axis, keepdims) * 1.7).sum(), x)
    tied = Tensor(np.array([2.0, 1.0, 1.0]), requires_grad=True)
    tied.min().backward()
    np.testing.assert_array_equal(tied.grad, [0.0, 0.5, 0.5])


_MIN_DTYPES = [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64,
               np.bool_, np.float16, np.float32, np.float64]


@settings(max_examples=60)
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
       dtype=st.sampled_from(_MIN_DTYPES))
def test_min_of_an_array_of_any_dtype_is_numpys(data, shape, dtype):
    """Of every dtype, extremes included (uint8's 255, int8's -128, where -max(-x) wraps),
    eager and compiled: NumPy's min, its dtype too."""
    values = data.draw(hnp.arrays(dtype, shape), label="values")
    axis = data.draw(st.sampled_from([None, *range(len(shape)), -1]), label="axis")
    keepdims = data.draw(st.booleans(), label="keepdims")
    expected = np.min(values, axis=axis, keepdims=keepdims)
    np.testing.assert_array_equal(mg.min(values, axis, keepdims).data, expected, strict=True)
    compiled = mg.compile(lambda v: mg.min(v, axis, keepdims))
    np.testing.assert_array_equal(compiled(values).data, expected, strict=True)


def test_float16_softmaxes_over_more_classes_than_float16_counts():
    """softmax, log_softmax and cross_entropy of float16 logits over 70,000 classes: the
    sum of the exps (and log_softmax's VJP's sum of g) was taken in float16 and overflowed
    to inf, giving probabilities 0, log-probabilities -inf and a loss of inf where every
    true value is a finite float16. Summed in float32 now (as PyTorch sums half precision),
    each is the float64 value rounded to float16, within two float16 roundings."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, 70_000)).astype(np.float16)
    labels = np.array([3, 69_999])
    z64 = z.astype(np.float64)
    shifted = z64 - z64.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))

    def close(got, want):
        assert got.dtype == np.float16 and np.all(np.isfinite(got))
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=2e-3, atol=1e-7)

    close(mg.softmax(z).data, np.exp(log_p))
    close(mg.log_softmax(z).data, log_p)
    t = mg.Tensor(z, requires_grad=True)
    loss = mg.cross_entropy(t, labels)
    loss.backward()
    close(loss.data, -log_p[[0, 1], labels].mean())
    onehot = np.zeros_like(z64)
    onehot[[0, 1], labels] = 1.0
    close(t.grad, (np.exp(log_p) - onehot) / 2)
    t.grad = None
    mg.log_softmax(t).sum().backward()  # g = ones: its sum, 70,000, is inf in float16
    # 1 - 70,000 exp(out): out is a float16 log-probability near -11 (a rounding of up to
    # 2^-8), so each exp carries 0.4% of itself, about 0.05 once multiplied back to ~1
    assert t.grad.dtype == np.float16 and np.all(np.isfinite(t.grad))
    np.testing.assert_allclose(t.grad.astype(np.float64), 1.0 - np.exp(log_p) * 70_000,
                               atol=0.1)


@settings(max_examples=10, deadline=None)
@given(rows=st.integers(2049, 6000), columns=st.integers(1, 4), axis=st.sampled_from([0, 1]),
       seed=st.integers(0, 2**31 - 1))
def test_a_float16_softmaxs_gradient_over_a_long_axis_sums_in_float32(rows, columns, axis,
                                                                       seed):
    """softmax's VJP out (g - sum(g out)) summed g out in float16: over an axis that is not
    the last (a strided one) NumPy adds row by row, and past 2048 like terms a term rounds
    away (4096 rows: the gradient of softmax(x, 0).sum(), 0 everywhere, came out 1.2e-4).
    Summed in float32 now, as the softmaxes' forwards and log_softmax's VJP sum: each
    element within float16 roundings of the float64 formula on the same out and g, the
    bound scaled by out (|g| + sum |g out|) as g - sum(g out) may cancel."""
    rng = np.random.default_rng(seed)
    shape = (rows, columns) if axis == 0 else (columns, rows)
    x = rng.uniform(-1.0, 1.0, size=shape).astype(np.float16)
    g = rng.uniform(0.5, 1.5, size=shape).astype(np.float16)  # like terms: the stall
    t = Tensor(x, requires_grad=True)
    out = mg.softmax(t, axis=axis)
    out.backward(g)
    p, g64 = out.data.astype(np.float64), g.astype(np.float64)
    want = p * (g64 - (g64 * p).sum(axis, keepdims=True))
    bound = 2e-3 * p * (np.abs(g64) + np.abs(g64 * p).sum(axis, keepdims=True))
    assert t.grad.dtype == np.float16
    assert np.all(np.abs(t.grad.astype(np.float64) - want)
                  <= bound + np.finfo(np.float16).smallest_subnormal)


def test_a_nan_operand_passes_its_gradient_on_as_pytorch_does():
    """maximum/minimum at a NaN operand gave both operands 0 and relu at NaN gave 0, so a NaN
    of the forward pass left clean gradients behind it (while mg.max gives the NaN element
    its gradient). As PyTorch's formulas: g to both operands of maximum and minimum where
    either is NaN, and relu's g passes (x <= 0 is false for NaN)."""
    a = mg.Tensor(np.array([np.nan, 1.0, 3.0, 2.0]), requires_grad=True)
    b = mg.Tensor(np.array([1.0, np.nan, 2.0, 2.0]), requires_grad=True)
    g = np.array([2.0, 3.0, 5.0, 7.0])
    for op, first, second in ((mg.maximum, [2.0, 3.0, 5.0, 3.5], [2.0, 3.0, 0.0, 3.5]),
                              (mg.minimum, [2.0, 3.0, 0.0, 3.5], [2.0, 3.0, 5.0, 3.5])):
        a.grad = b.grad = None
        op(a, b).backward(g)
        np.testing.assert_array_equal(a.grad, first)
        np.testing.assert_array_equal(b.grad, second)
    x = mg.Tensor(np.array([np.nan, -1.0, 0.0, 2.0]), requires_grad=True)
    mg.relu(x).backward(g)
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, 0.0, 7.0])


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint8, np.float32, np.float64])
def test_softmaxes_of_any_dtype_are_numpys_float_results(dtype):
    """Integer logits give NumPy's float results (exp promotes them): a cast back to the
    logits' dtype meant for float16 truncated them to [0 0 0] and a loss of -0.0 (found by
    this stop's review). Eager and compiled alike; float32 stays float32."""
    z = np.array([[1, 2, 3], [3, 0, 1]], dtype=dtype)
    z64 = z.astype(np.float64)
    log_p = z64 - z64.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    want = np.float32 if dtype == np.float32 else np.float64
    tol = 1e-6 if dtype == np.float32 else 1e-12
    for f in (lambda z: mg.softmax(z), mg.compile(lambda z: mg.softmax(mg.Tensor(z)))):
        got = f(z)
        assert got.dtype == want
        np.testing.assert_allclose(got.data, np.exp(log_p), rtol=tol)
    np.testing.assert_allclose(mg.log_softmax(z).data, log_p, rtol=tol)
    loss = mg.cross_entropy(z, np.array([2, 0]))
    np.testing.assert_allclose(loss.item(), -log_p[[0, 1], [2, 0]].mean(), rtol=tol)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=3),
       data=st.data(), dtype=st.sampled_from([np.float64, np.float32, np.float16, np.int64]))
def test_a_softmax_over_an_axis_of_length_0_is_empty(name, shape, data, dtype):
    """softmax and log_softmax over an axis of length 0 give an empty result of x's shape
    (and an empty gradient), as PyTorch's do, also under np.errstate(all="raise"): they
    raised NumPy's "zero-size array to reduction operation maximum" (found by this stop's
    PyTorch hunter)."""
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    assume(shape[axis] == 0)
    x = mg.Tensor(np.zeros(shape, dtype), requires_grad=dtype != np.int64)
    with np.errstate(all="raise"):
        y = getattr(mg, name)(x, axis)
        assert y.shape == shape and y.dtype == (np.float64 if dtype == np.int64 else dtype)
        if x.requires_grad:
            y.sum().backward()
            assert x.grad.shape == shape and x.grad.dtype == dtype

