"""Errors users meet: shapes that do not fit and wrong types raise when the op is called, with
the op and the shapes in the message; no op warns on the inputs its tests draw, and the
saturating ops stay finite at extreme inputs."""

import warnings
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad import OPS, Tensor
from minigrad.testing.strategies import op_cases


def _x(shape=(2, 3)):
    return Tensor(np.ones(shape), requires_grad=True)


# --- shapes that do not fit -----------------------------------------------------------------

ELEMENTWISE = sorted(n for n, info in OPS.items() if info.domain.family in ("binary", "loss"))


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_binary_shape_mismatch_names_op_and_shapes(name):
    f = OPS[name].function
    for a, b, first, second in [(_x(), np.ones(4), r"\(2, 3\)", r"\(4,\)"),
                                (np.ones(4), _x(), r"\(4,\)", r"\(2, 3\)"),
                                (_x(), _x((3, 2)), r"\(2, 3\)", r"\(3, 2\)")]:
        with pytest.raises(ValueError, match=rf"^{name}: .*{first}.*{second}"):
            f(a, b)


@pytest.mark.parametrize("operator, name", [
    (lambda a, b: a + b, "add"), (lambda a, b: a - b, "sub"), (lambda a, b: a * b, "mul"),
    (lambda a, b: a / b, "div"), (lambda a, b: a ** b, "pow"),
])
def test_operator_shape_mismatch(operator, name):
    with pytest.raises(ValueError, match=rf"^{name}: .*\(2, 3\).*\(4,\)"):
        operator(_x(), np.ones(4))
    with pytest.raises(ValueError, match=rf"^{name}: .*\(4,\).*\(2, 3\)"):
        operator(np.ones(4), _x())


def test_matmul_shape_mismatch():
    with pytest.raises(ValueError, match=r"^matmul: .*\(2, 3\).*\(4, 5\)"):
        _x() @ np.ones((4, 5))
    with pytest.raises(ValueError, match=r"^matmul: .*\(4, 5\).*\(2, 3\)"):
        np.ones((4, 5)) @ _x()
    with pytest.raises(ValueError, match=r"^matmul: .*\(\).*\(2, 3\)"):
        mg.matmul(Tensor(2.0), _x())


def test_tensordot_shape_mismatch():
    with pytest.raises(ValueError, match=r"^tensordot: cannot contract \(4, 3\) with \(2, 5\) "
                                         r"over axes \(\[1\], \[0\]\)$"):
        mg.tensordot(_x((4, 3)), np.ones((2, 5)), axes=1)
    with pytest.raises(ValueError, match=r"^tensordot: cannot contract \(4, 3\) with \(2, 5\) "
                                         r"over axes \(\[0\], \[1\]\)$"):
        mg.tensordot(_x((4, 3)), np.ones((2, 5)), axes=([0], [1]))
    with pytest.raises(ValueError, match=r"^tensordot: axes=3 does not fit"):
        mg.tensordot(_x((4, 3)), np.ones((3, 5)), axes=3)
    with pytest.raises(ValueError, match=r"^tensordot: axes .* out of range"):
        mg.tensordot(_x((4, 3)), np.ones((3, 5)), axes=([2], [0]))


def test_einsum_errors():
    with pytest.raises(ValueError, match=r"^einsum: .*\(2, 3\).*\(4, 5\)"):
        mg.einsum("ij,jk->ik", _x(), np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"^einsum: operand subscripts 'ijk' do not fit an "
                                         r"operand of shape \(2, 3\)"):
        mg.einsum("ijk->i", _x())
    with pytest.raises(ValueError, match=r"^einsum: 'ij,jk->ik' names 2 operands, got 1"):
        mg.einsum("ij,jk->ik", _x())
    with pytest.raises(ValueError, match=r"^einsum: .*must be explicit"):
        mg.einsum("ij,jk", _x(), np.ones((3, 2)))


def test_stack_and_concatenate_shape_mismatch():
    with pytest.raises(ValueError, match=r"^stack: .*\(2, 3\).*\(3,\)"):
        mg.stack([_x(), np.ones(3)])
    with pytest.raises(ValueError, match=r"^concatenate: .*\(2, 3\).*\(2, 2, 2\)"):
        mg.concatenate([_x(), np.ones((2, 2, 2))], axis=1)
    with pytest.raises(ValueError, match=r"^concatenate: .*\(2, 3\).*\(3, 2\)"):
        mg.concatenate([_x(), np.ones((3, 2))], axis=1)
    with pytest.raises(ValueError, match=r"^stack: needs at least one tensor"):
        mg.stack([])


def test_reshape_mismatch():
    with pytest.raises(ValueError, match=r"^reshape: .*\(2, 3\).*\(4,\)"):
        _x().reshape(4)


@pytest.mark.parametrize("name", ["sum", "mean", "max"])
def test_reduction_axis_out_of_range(name):
    with pytest.raises(ValueError, match=rf"^{name}: axis 2 is out of range for shape \(2, 3\)"):
        OPS[name].function(_x(), axis=2)
    with pytest.raises(ValueError, match=rf"^{name}: axis \(0, -2\) is out of range"):
        OPS[name].function(_x(), axis=(0, -2))  # the same axis twice


def test_transpose_bad_axes():
    with pytest.raises(ValueError, match=r"^transpose: .*\(2, 3\)"):
        _x().transpose(0, 2)


def test_getitem_out_of_range():
    with pytest.raises(IndexError):
        _x()[5]


# --- wrong types ----------------------------------------------------------------------------

BAD = {
    "a string": "abc",
    "a list": [[1.0, 2.0], [3.0, 4.0]],  # of the right shape, so only its type is wrong
    "a dict": {"a": 1.0},
    "an object array": np.array([[1.0, None], [2.0, 3.0]], dtype=object),
    "None": None,
}


def _calls_with(name, bad):
    """Every way to pass `bad` where op `name` expects a tensor."""
    f = OPS[name].function
    x = _x((2, 2))
    family = OPS[name].domain.family
    if family in ("unary", "reduction", "transpose"):
        return [lambda: f(bad)]
    if family in ("binary", "matmul", "loss", "tensordot"):
        return [lambda: f(bad, x), lambda: f(x, bad)]
    if family == "einsum":
        return [lambda: f("ij,jk->ik", bad, x), lambda: f("ij,jk->ik", x, bad)]
    if family == "reshape":
        return [lambda: f(bad, 4)]
    if family == "getitem":
        return [lambda: f(bad, 0)]
    if family in ("stack", "concatenate"):
        return [lambda: f([x, bad]), lambda: f([bad, x])]
    # Any other op takes its operands positionally: `bad` in each place in turn.
    n = len(OPS[name].vjps)
    return [lambda i=i: f(*[bad if j == i else x for j in range(n)]) for i in range(n)]


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("name", sorted(OPS))
def test_wrong_types_raise_type_error_naming_the_op(name, kind):
    for call in _calls_with(name, BAD[kind]):
        with pytest.raises(TypeError, match=rf"^{name}: "):
            call()


def test_wrong_types_through_operators():
    for bad in ("abc", [1.0, 2.0], {"a": 1.0}, np.array([1.0, None], dtype=object)):
        with pytest.raises(TypeError, match="^add: "):
            _x((2,)) + bad
        with pytest.raises(TypeError, match="^mul: "):
            bad * _x((2,))


@pytest.mark.parametrize("bad", ["abc", {"a": 1}, None, [1, "a"], np.array([1, None]), 1 + 2j])
def test_tensor_refuses_non_numeric_data(bad):
    with pytest.raises(TypeError, match="^Tensor: cannot hold data of dtype"):
        Tensor(bad)


def test_stack_needs_a_sequence():
    with pytest.raises(TypeError, match="^stack: expected a sequence of tensors, got Tensor"):
        mg.stack(_x())


# --- no warnings ----------------------------------------------------------------------------


@contextmanager
def strict_numpy():
    """Any warning is an error, and so is any NumPy floating-point event except underflow:
    a result rounding to zero (exp(-1000) == 0) is the correct answer, and NumPy ignores it
    by default."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            yield


@pytest.mark.parametrize("name", sorted(OPS))
@given(data=st.data())
@settings(max_examples=15)
def test_no_warnings_on_drawn_inputs(name, data):
    case = data.draw(op_cases(name), label="case")
    with strict_numpy():
        tensors = [Tensor(x, requires_grad=True) for x in case.operands]
        out = case.call(*tensors)
        out.backward(np.random.default_rng(0).standard_normal(out.shape))
    for t in tensors:
        assert np.all(np.isfinite(t.grad))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturating_ops_are_finite_at_extremes(dtype):
    with strict_numpy():
        z = Tensor(np.array([-1000.0, 1000.0], dtype), requires_grad=True)
        s = mg.sigmoid(z)
        np.testing.assert_array_equal(s.data, [0.0, 1.0])
        s.backward(np.ones(2, dtype))
        np.testing.assert_array_equal(z.grad, [0.0, 0.0])

        for targets in ([0.0, 1.0], [1.0, 0.0]):
            z.grad = None
            loss = mg.binary_cross_entropy_with_logits(z, np.array(targets, dtype))
            loss.backward()
            assert np.isfinite(loss.item()) and np.all(np.isfinite(z.grad))
        # a confident right answer costs nothing, a confident wrong one costs |z| each
        assert mg.binary_cross_entropy_with_logits(z, np.array([0.0, 1.0], dtype)).item() == 0.0
        wrong = mg.binary_cross_entropy_with_logits(z, np.array([1.0, 0.0], dtype)).item()
        assert wrong == pytest.approx(1000.0)

        p = Tensor(np.array([0.0, 1.0], dtype), requires_grad=True)
        for targets in ([0.0, 1.0], [1.0, 0.0], [0.5, 0.5]):
            p.grad = None
            loss = mg.binary_cross_entropy(p, np.array(targets, dtype))
            loss.backward()
            assert np.isfinite(loss.item()) and np.all(np.isfinite(p.grad))
            assert loss.dtype == dtype and p.grad.dtype == dtype
