"""Errors users meet: shapes that do not fit and wrong types raise when the op is called, with
the op and the shapes in the message; no op warns on the inputs its tests draw, and the
saturating ops stay finite at extreme inputs."""

import functools
import inspect
import re
import warnings
from contextlib import contextmanager
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import OPS, Tensor
from minigrad.primitive import _OTHER_NAMES
from minigrad.tensor import _OPERATORS
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
    with pytest.raises(ValueError, match=r"^einsum: subscripts 'ij,jk' must name the output "
                                         r"after '->'.*implicit mode is not supported"):
        mg.einsum("ij,jk", _x(), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"^einsum: subscripts '\.\.\.j->j' must not use an "
                                         r"ellipsis"):
        mg.einsum("...j->j", _x())
    with pytest.raises(TypeError, match=r"^einsum: subscripts must be a string .* got Tensor"):
        mg.einsum(_x(), "ij->j")
    assert "implicit mode" in mg.einsum.__doc__ and "ellipsis" in mg.einsum.__doc__


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
    with pytest.raises(ValueError, match=rf"^{name}: axis \(0, -2\) repeats axis 0 for shape"):
        OPS[name].function(_x(), axis=(0, -2))  # the same axis twice


NOT_INTEGERS = [1.7, 0.9, True, np.float64(1.0), "1"]
AXIS_CALLS = {  # op -> a call of it on x of shape (2, 3, 4) with `bad` as an axis or a cut
    "sum": lambda x, bad: x.sum(axis=bad), "mean": lambda x, bad: x.mean(axis=(0, bad)),
    "max": lambda x, bad: x.max(axis=bad), "var": lambda x, bad: mg.var(x, axis=bad),
    "softmax": lambda x, bad: mg.softmax(x, axis=bad),
    "log_softmax": lambda x, bad: mg.log_softmax(x, bad),
    "squeeze": lambda x, bad: mg.squeeze(x[:, :1], bad),
    "flatten": lambda x, bad: mg.flatten(x, bad), "tensordot": lambda x, bad: mg.tensordot(
        x, np.ones((4, 3)), axes=([bad, 2], [1, 0])),
    "split": lambda x, bad: mg.split(x, [bad], axis=1),
    "stack": lambda x, bad: mg.stack([x, x], axis=bad),
    "concatenate": lambda x, bad: mg.concatenate([x, x], axis=bad),
}


@pytest.mark.parametrize("bad", NOT_INTEGERS, ids=repr)
@pytest.mark.parametrize("name", sorted(AXIS_CALLS))
def test_an_axis_that_is_not_an_integer_is_refused_naming_the_op(name, bad):
    """NumPy's rule (operator.index): 1.7 is not axis 1, nor True axis 1."""
    for requires_grad in (True, False):
        x = Tensor(np.ones((2, 3, 4)), requires_grad=requires_grad)
        with pytest.raises(TypeError, match=rf"^{name}: .* must be an integer, got "
                                                rf"{re.escape(repr(bad))}$"):
            AXIS_CALLS[name](x, bad)
    assert AXIS_CALLS[name](x, 1) is not None  # the call itself is sound


@pytest.mark.parametrize("bad", [2.0, True], ids=repr)
def test_a_count_of_sections_or_axes_that_is_not_an_integer_is_refused(bad):
    x = _x((2, 2))
    with pytest.raises(TypeError, match=rf"^split: sections must be an integer, got {bad!r}$"):
        mg.split(x, bad)
    with pytest.raises(TypeError, match=rf"^tensordot: axes must be an integer, got {bad!r}$"):
        mg.tensordot(x, x, axes=bad)


@pytest.mark.parametrize("grad", [True, False])
def test_concatenate_refuses_axis_none_with_and_without_grad(grad):
    with mg.enable_grad() if grad else mg.no_grad():
        with pytest.raises(TypeError, match=r"^concatenate: axis must be an integer, got "
                                             r"None; .*flatten each tensor first"):
            mg.concatenate([_x(), _x()], axis=None)
        with pytest.raises(TypeError, match=r"^stack: axis must be an integer, got None$"):
            mg.stack([_x(), _x()], axis=None)


@pytest.mark.parametrize("index", [
    lambda x: Tensor([0.0, 2.0]), lambda x: x > 2, lambda x: (slice(None), Tensor(1.0)),
], ids=["positions", "mask", "in a tuple"])
def test_a_tensor_index_is_refused_saying_what_to_index_with(index):
    x = Tensor(np.arange(5.0), requires_grad=True)
    with pytest.raises(IndexError, match=r"^getitem: cannot index with a tensor \(shape .*\): "
                                         r"tensors hold floats.*NumPy integer or boolean array"):
        x[index(x)]


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


@pytest.mark.parametrize("number", [Fraction(1, 3), Fraction(-7, 2)], ids=repr)
def test_a_real_number_numpy_holds_as_an_object_is_refused(number):
    """NumPy makes an object array of a Fraction times a float array, on which no later op
    computes: the op refuses it and says to pass a float."""
    x = _x()
    for call, name in [(lambda: x * number, "mul"), (lambda: number - x, "sub"),
                       (lambda: mg.maximum(x, number), "maximum")]:
        with pytest.raises(TypeError, match=rf"^{name}: cannot use a number of type Fraction "
                                            r"\(.*\): .*pass float\(x\)"):
            call()
    np.testing.assert_array_equal((x * float(number)).data, x.data * float(number))


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


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
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


@settings(max_examples=50)
@given(p=st.lists(st.floats(0.0, 1.0) | st.sampled_from([0.0, 1.0]), min_size=1, max_size=6),
       data=st.data())
def test_binary_cross_entropy_of_float16_clips_at_float16s_eps_in_float16(p, data):
    """"eps of their dtype", as its docstring says: float16 probabilities are clipped to
    [2**-10, 1 - 2**-10] and the loss is float16 (it was float32, clipped at float32's eps:
    the gradient at p = 0 or 1, about 1 / eps, overflowed float16 to inf with a warning)."""
    p = np.array(p, np.float16)
    t = np.array(data.draw(st.lists(st.floats(0.0, 1.0), min_size=p.size, max_size=p.size)),
                 np.float16)
    x = Tensor(p, requires_grad=True)
    with strict_numpy():
        loss = mg.binary_cross_entropy(x, t)
        loss.backward()
    assert loss.dtype == np.float16 and x.grad.dtype == np.float16
    assert np.all(np.isfinite(x.grad))
    eps = 2.0**-10
    pc = np.clip(p.astype(np.float64), eps, 1 - eps)
    tt = t.astype(np.float64)
    want = -np.mean(tt * np.log(pc) + (1 - tt) * np.log1p(-pc))
    assert loss.item() == pytest.approx(want, rel=1e-2, abs=1e-2)
    want_grad = (pc - tt) / (pc * (1 - pc)) / p.size
    np.testing.assert_allclose(x.grad, want_grad, rtol=1e-2, atol=1e-2)


# --- refusals that name what to use -----------------------------------------------------------


# The ops that are a NumPy ufunc, but for those of Python's binary operators, which
# `array <op> tensor` calls and which compute (tests/test_tensor.py).
UFUNC_OPS = sorted((name, op.forward) for name, op in OPS.items()
                   if isinstance(op.forward, np.ufunc)
                   and not (op.forward.nin == 2 and op.forward.__name__ in _OPERATORS))


@pytest.mark.parametrize(("name", "ufunc"), UFUNC_OPS, ids=[n for n, _ in UFUNC_OPS])
def test_a_numpy_ufunc_on_a_tensor_names_the_op_that_computes_it(name, ufunc):
    """np.abs(t) suggests mg.abs, np.negative(t) mg.neg (it named mg.absolute and
    mg.negative, which do not exist); the op named computes what the ufunc does."""
    x = Tensor(np.array([0.5, 2.0]), requires_grad=True)
    operands = [x] * ufunc.nin
    with pytest.raises(TypeError, match=rf"^NumPy's {ufunc.__name__} \(use minigrad's op: "
                                        rf"mg\.{name}\) on a tensor of shape \(2,\)"):
        ufunc(*operands)
    np.testing.assert_array_equal(getattr(mg, name)(*operands).data,
                                  ufunc(*[x.data] * ufunc.nin))


def test_a_numpy_ufunc_the_table_lacks_suggests_no_op():
    x = Tensor(np.ones(2), requires_grad=True)
    for ufunc in (np.sin, np.log1p, np.arctan2):
        assert not hasattr(mg, ufunc.__name__)
        with pytest.raises(TypeError, match=rf"^NumPy's {ufunc.__name__} on a tensor of shape "
                                            r"\(2,\): NumPy would compute outside the graph"):
            ufunc(*[x] * ufunc.nin)


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("function, name", [(np.sum, "sum"), (np.mean, "mean"), (np.max, "max"),
                                            (np.amax, "max"), (np.min, "min"), (np.var, "var")])
def test_a_numpy_reduction_on_a_tensor_names_the_op_that_computes_it(function, name, grad,
                                                                     compiled):
    """NumPy's reductions call the tensor's method with out= (and dtype=): that leaked
    "Tensor.sum() got an unexpected keyword argument 'out'"."""
    x = Tensor(np.array([0.5, 2.0]), requires_grad=grad)
    run = mg.compile(lambda t: function(t)) if compiled else function
    with pytest.raises(TypeError, match=rf"^NumPy's {name} \(use minigrad's op: mg\.{name}\(t\), "
                                        rf"or t\.{name}\(\)\) on a tensor of shape \(2,\): NumPy "
                                        "would compute outside the graph; t.data gives the values"):
        run(x)
    np.testing.assert_array_equal(getattr(mg, name)(x).data, function(x.data))
    # Not NumPy's call (a keyword PyTorch has, say): Python's own message, with the hint.
    with pytest.raises(TypeError, match=rf"^Tensor\.{name}\(\) got an unexpected keyword "
                                        rf"argument 'keepdim'; minigrad's Tensor\.{name} "
                                        "names it keepdims=$"):
        getattr(x, name)(keepdim=True)


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "maximum"])
def test_an_int_too_large_for_numpy_names_the_op_and_shapes(name, grad, compiled):
    """x * 10**400 raised NumPy's bare OverflowError ("int too large to convert to float");
    an OverflowError still, naming the op and the shapes, eager and traced alike."""
    op = getattr(mg, name)
    f = mg.compile(lambda x: op(x, 10**400)) if compiled else (lambda x: op(x, 10**400))
    with pytest.raises(OverflowError, match=rf"^{name}: invalid inputs of shapes \(2, 3\), "
                                            r"\(\): int too large to convert to float$"):
        f(Tensor(np.ones((2, 3)), requires_grad=grad))


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("compiled", [False, True])
def test_an_op_given_one_operand_too_many_refuses_it_and_writes_nothing(name, compiled):
    """`mg.add(a, b, c)`, `mg.tanh(x, y)`: a ufunc takes the extra array as its `out` and
    wrote the result into it (c became a + b), silently. Every op of the table refuses an
    operand beyond its own, eager and compiled, and leaves the arrays as they were."""
    op = OPS[name]
    if type(op.vjps) is not tuple or op.prepared:  # (ops of any number of operands: stack,
        return  # einsum; or whose options come by position too: getitem's index, astype's)
    operands = [np.full((2, 2), 0.5) for _ in range(len(op.vjps) + 1)]
    before = [a.copy() for a in operands]
    call = mg.compile(lambda *xs: op.function(*xs)) if compiled else op.function
    with pytest.raises(TypeError):
        call(*operands)
    for a, b in zip(operands, before, strict=True):
        np.testing.assert_array_equal(a, b)


def _positional_only(op):
    """Whether an op's public function takes its operands only (no prepare: exp, add)."""
    return all(p.kind is inspect.Parameter.POSITIONAL_ONLY
               for p in inspect.signature(op.function).parameters.values())


OPERANDS_ONLY = sorted(n for n, op in OPS.items() if _positional_only(op))


@pytest.mark.parametrize("keyword", ["out", "where", "dtype", "nonsense"])
@pytest.mark.parametrize("where_called", ["eager", "no_grad", "compiled", "scan"])
@pytest.mark.parametrize("name", OPERANDS_ONLY)
def test_an_op_of_operands_only_refuses_keywords_naming_the_op(name, where_called, keyword):
    """`mg.exp(x, where=mask)`, `mg.tanh(x, out=buf)`, `mg.add(a, b, dtype=np.float32)`: the
    keywords went on to NumPy's ufunc (out= wrote into the caller's array, where= left
    uninitialised memory in the output), then backward failed naming a lambda; an op whose
    forward is not a ufunc (sigmoid, relu, addmm) refused them with the forward's own
    TypeError, naming a lambda. The call is refused, eager, compiled and in a scan's body,
    naming the op and the keyword."""
    op = OPS[name]
    n = len(op.vjps)
    buf = np.full((2, 2), 7.0)
    value = {"out": buf, "where": np.array([True, False]), "dtype": np.float32,
             "nonsense": 1}[keyword]
    message = rf"^{name}\(\) got an unexpected keyword argument '{keyword}': {name} takes"

    def call(*xs):
        return op.function(*xs, **{keyword: value})

    xs = [Tensor(np.full((2, 2), 0.5), requires_grad=True) for _ in range(n)]
    with pytest.raises(TypeError, match=message):
        if where_called == "eager":
            call(*xs)
        elif where_called == "no_grad":
            with mg.no_grad():
                call(*xs)
        elif where_called == "compiled":
            mg.compile(call)(*xs)
        else:  # every operand a slice of xs, in the loop's body
            mg.scan(lambda carry, x: (carry, call(*[x] * n)), xs[0], np.full((3, 2, 2), 0.5))
    np.testing.assert_array_equal(buf, 7.0)


def test_a_users_op_computed_by_a_ufunc_refuses_keywords_and_one_of_its_own_takes_them():
    """The rule is the forward's: a user's op whose forward is a NumPy ufunc, or a function
    of its operands alone, takes no keyword options (they would be NumPy's, or the forward's
    TypeError would name a lambda), one whose forward takes options does."""
    cube = mg.defop("my_cube", np.power, (lambda g, out, x, p: g * p * x ** (p - 1), None),
                    saves="inputs", register=False)
    x = Tensor(np.array([0.5, 2.0]), requires_grad=True)
    with pytest.raises(TypeError, match=r"^my_cube\(\) got an unexpected keyword argument 'out'"):
        cube(x, 3.0, out=np.empty(2))
    doubled = mg.defop("my_doubled", lambda x: 2.0 * x, (lambda g, out: 2.0 * g,),
                       saves="nothing", register=False)
    with pytest.raises(TypeError, match=r"^my_doubled\(\) got an unexpected keyword argument "
                                        r"'scale': my_doubled takes its operands only"):
        doubled(x, scale=3.0)
    scaled = mg.defop("my_scaled", lambda x, scale: x * scale,
                      (lambda g, out, scale: g * scale,), saves="nothing", register=False)
    scaled(x, scale=3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])

    def with_scale(inner):  # a decorator adding an option (its signature is the wrapper's,
        @functools.wraps(inner)  # not the one __wrapped__ names: refused so by this stop's
        def forward(x, scale=1.0):  # first keyword commit, found by its review)
            return inner(x) * scale
        return forward

    wrapped = mg.defop("my_wrapped", with_scale(lambda x: 2.0 * x),
                       (lambda g, out, x, scale=1.0: 2.0 * scale * g,), register=False)
    x.grad = None
    wrapped(x, scale=3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0, 6.0])


PREPARED = sorted(n for n, op in OPS.items() if not _positional_only(op))


@pytest.mark.parametrize("name", PREPARED)
def test_a_keyword_an_op_does_not_take_is_refused_naming_the_op(name):
    """`mg.mse_loss(y, t, reduction="sum")`, `mg.reshape(x, s, order="F")`: the TypeError
    named the op's internal prepare function (`_loss.<locals>.call()`), not the op."""
    f = OPS[name].function
    required = [p for p in inspect.signature(f).parameters.values()
                if p.default is p.empty and p.kind is not p.VAR_POSITIONAL]
    operands = [None] * len(required)  # (the call does not bind: no value is looked at)
    with pytest.raises(TypeError,
                       match=rf"^{name}\(\) got an unexpected keyword argument 'nonsense'$"):
        f(*operands, nonsense=1)
    with pytest.raises(TypeError, match=rf"^{name}\(\) missing a required argument"):
        f()


@pytest.mark.parametrize("call, message", [
    (lambda x: mg.softmax(x, dim=-1), r"softmax\(\) .* 'dim'; minigrad's softmax names it axis="),
    (lambda x: mg.sum(x, dim=0), r"sum\(\) .* 'dim'; minigrad's sum names it axis="),
    (lambda x: mg.max(x, keepdim=True), r"max\(\) .* 'keepdim'; minigrad's max names it keepdims="),
    (lambda x: mg.stack([x, x], dim=0), r"stack\(\) .* 'dim'; minigrad's stack names it axis="),
    (lambda x: mg.clip(x, min=0.0, max=1.0), r"clip\(\) .* 'min'; minigrad's clip names it low="),
    (lambda x: mg.var(x, correction=1), r"var\(\) .* 'correction'; minigrad's var names it ddof="),
    (lambda x: mg.softmax(x, axis=0, dim=0), r"softmax\(\) .* 'dim'; minigrad's softmax names"),
    (lambda x: mg.softmax(x, 0, axis=0), r"^softmax\(\) multiple values for argument 'axis'$"),
])
def test_pytorchs_name_of_a_parameter_is_refused_with_minigrads(call, message):
    with pytest.raises(TypeError, match=message):
        call(_x())


# Every method of a parameter that PyTorch or NumPy names otherwise, with those names
TENSOR_METHODS_RENAMED = sorted(
    (name, keyword) for name, method in vars(Tensor).items()
    if callable(method) and not name.startswith("_")
    for keyword, ours in _OTHER_NAMES.items() if ours in inspect.signature(method).parameters)


@pytest.mark.parametrize("name, keyword", TENSOR_METHODS_RENAMED)
def test_pytorchs_name_of_a_methods_parameter_is_refused_with_minigrads(name, keyword):
    """`x.sum(dim=0)`, `x.softmax(dim=-1)`, `x.max(keepdim=True)`: Python's own message had no
    hint, where `mg.sum(x, dim=0)` named `axis=`."""
    ours, method = _OTHER_NAMES[keyword], getattr(_x(), name)
    required = [1 for p in inspect.signature(method).parameters.values()
                if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]  # split's
    with pytest.raises(TypeError, match=rf"^Tensor\.{name}\(\) got an unexpected keyword "
                                        rf"argument '{keyword}'; minigrad's Tensor\.{name} "
                                        rf"names it {ours}=$"):
        method(*required, **{keyword: 0})
    with pytest.raises(TypeError, match=rf"^Tensor\.{name}\(\) got an unexpected keyword "
                                        "argument 'nonsense'$"):
        method(*required, nonsense=0)


def test_an_error_of_an_ops_own_checks_is_its_own():
    """Only a call that does not fit the signature is reworded: a TypeError raised inside an
    op's prepare (an axis that is no integer; a user's) reaches the caller as it was."""
    with pytest.raises(TypeError, match=r"^softmax: axis must be an integer, got 1.5$"):
        mg.softmax(_x(), axis=1.5)

    def prepare(x, scale=1.0):
        if not isinstance(scale, float):
            raise TypeError("my_scale: scale must be a float")
        return (x,), {"scale": scale}

    my_scale = mg.defop("my_scale", lambda x, scale: x * scale,
                        (lambda g, out, scale: g * scale,), saves="nothing", prepare=prepare,
                        register=False)
    with pytest.raises(TypeError, match=r"^my_scale: scale must be a float$"):
        my_scale(_x(), scale="2")
    with pytest.raises(TypeError, match=r"^my_scale\(\) got an unexpected keyword argument 'dim'$"):
        my_scale(_x(), dim=2)


@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3), data=st.data())
def test_a_repeated_axis_is_said_to_be_repeated(shape, data):
    """`mg.sum(a, axis=(0, 0))` said "axis (0, 0) is out of range", where every axis is in
    range and one is given twice: the reductions, squeeze and tensordot say which one
    repeats now (and "out of range" stays for one that is)."""
    ndim = len(shape)
    k = data.draw(st.integers(0, ndim - 1), "k")
    twice = (k, k - ndim)  # the same axis, counted from each end
    x = mg.Tensor(np.ones(shape))
    for name in ("sum", "mean", "max", "min", "var"):
        with pytest.raises(ValueError, match=rf"^{name}: axis {re.escape(str(twice))} repeats "
                                             rf"axis {k} for shape {re.escape(str(shape))}$"):
            getattr(mg, name)(x, axis=twice)
    with pytest.raises(ValueError, match=rf"^squeeze: axis {re.escape(str(twice))} repeats "
                                         rf"axis {k} for shape"):
        mg.squeeze(x, twice)
    with pytest.raises(ValueError, match=rf"^tensordot: axes .* repeats axis {k} for operands"):
        mg.tensordot(x, x, ([k, k], [k, k]))
    with pytest.raises(ValueError, match=rf"^sum: axis \({k}, {ndim}\) is out of range"):
        mg.sum(x, axis=(k, ndim))


@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3),
       extra=st.integers(0, 3))
def test_min_names_itself_for_an_axis_out_of_range(shape, extra):
    """`mg.min(x, axis=2)` said "max: axis 2 is out of range": min is -max(-x), and max
    named itself."""
    axis = len(shape) + extra
    x = mg.Tensor(np.ones(shape), requires_grad=True)
    with pytest.raises(ValueError, match=rf"^min: axis {axis} is out of range for shape "
                                         rf"{re.escape(str(shape))}$"):
        mg.min(x, axis=axis)
    with pytest.raises(ValueError, match=rf"^min: axis {axis} is out of range"):
        x.min(axis=axis)
    with pytest.raises(TypeError, match=r"^min: axis must be an integer, got 1.5$"):
        mg.min(x, axis=1.5)


@pytest.mark.parametrize("nan", [float("nan"), np.float32("nan"), np.float64("nan")])
@pytest.mark.parametrize("side", ["low", "high"])
def test_a_nan_bound_of_clip_is_a_value_error(nan, side):
    """`mg.clip(a, nan, 1)` was a TypeError "low must be a number or None, got nan": NaN is a
    number (of the right type), but no bound: a ValueError now."""
    bounds = {"low": -1.0, "high": 1.0, side: nan}
    with pytest.raises(ValueError, match=rf"^clip: {side} is NaN, which bounds nothing"):
        mg.clip(mg.Tensor(np.ones(3)), bounds["low"], bounds["high"])


@pytest.mark.parametrize("dtype", ["foo", 3.5, "float128x", object()])
def test_astype_names_itself_for_a_dtype_numpy_does_not_know(dtype):
    """`a.astype('foo')` was NumPy's bare "data type 'foo' not understood"."""
    x = mg.Tensor(np.ones(3))
    for convert in (x.astype, lambda d: mg.astype(x, d)):
        with pytest.raises(TypeError, match=rf"^astype: dtype {re.escape(repr(dtype))} is not a "
                                            r"data type NumPy understands"):
            convert(dtype)


@pytest.mark.parametrize("data", [[[1, 2], [3]], [1, [2, 3]], [[[1.0]], [2.0]]])
def test_a_tensor_of_ragged_data_names_itself(data):
    """`mg.Tensor([[1, 2], [3]])` raised NumPy's inhomogeneous-shape message with no
    "Tensor:" to say where it came from."""
    with pytest.raises(ValueError, match=r"^Tensor: cannot make an array of the data \(list\): "
                                         r".*inhomogeneous"):
        mg.Tensor(data)


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "var"])
@pytest.mark.parametrize("keepdims", ["a", 2, 0.5, None])
def test_a_reductions_keepdims_that_is_not_a_bool_names_the_reduction(name, keepdims):
    """NumPy's own error said an integer was expected, under the op's generic "invalid
    inputs" (and min's named max, which it is made of); True, False, 0, 1 and NumPy's bools
    are taken."""
    x = mg.Tensor(np.ones((2, 3)), requires_grad=True)
    reduce = getattr(mg, name)
    with pytest.raises(TypeError, match=rf"^{name}: keepdims must be True or False, got "):
        reduce(x, keepdims=keepdims)
    for good in (True, 1, np.True_):
        assert reduce(x, axis=1, keepdims=good).shape == (2, 1)
    assert reduce(x, axis=1, keepdims=0).shape == (2,)


@given(shape=st.sampled_from([((2, 3), (3, 2)), ((4,), (2, 2)), ((1, 6), (6, 1))]))
def test_a_leaf_reshaped_in_place_after_the_forward_is_named(shape):
    """`t.data.shape = ...` (no setter runs) after the forward: the gradient has the old
    shape; the error named a VJP for the user's reshape. (Shapes one fits the other by
    broadcasting, (1, 3) -> (3,), map each element to itself and stay right.)"""
    before, after = shape
    p = mg.Tensor(np.ones(before), requires_grad=True)
    y = (p * p).sum()
    p.data.shape = after
    with pytest.raises(ValueError, match=rf"^backward: a gradient of shape "
                                         rf"{re.escape(str(before))} for a tensor of shape "
                                         rf"{re.escape(str(after))} with as many elements: was "
                                         r"its array reshaped in place"):
        y.backward()
    assert p.grad is None
