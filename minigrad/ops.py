"""The catalogue of ops. Adding an op is adding one `defop` entry here, nothing else: its
NumPy forward, its VJPs, what they read, its test domain, and (if its arguments need
checking or normalising) a `prepare` function that is its public signature. The op is then
exported as `minigrad.<name>` and tested by the suite's table-driven tests.

A VJP is `vjp(g, out, *args, **options)`: `g` the gradient of the output, `out` the output
if saved, `args` the operands' arrays if saved (see `minigrad.primitive`). A VJP may return
a gradient in the output's broadcast shape; the tape sums it back to its input's shape.
"""

from __future__ import annotations

import builtins
import functools
import itertools
import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from .modes import TRACING, TraceError, current_mode
from .primitive import Domain, defop, identity_vjp
from .primitive import constant as _constant
from .tape import Cotangent as _Cotangent
from .tape import sum_to_shape as _sum_to_shape
from .tensor import Tensor as _Tensor

_POSITIVE = ((0.2, 3.0),)
# Targets stay inside (0, 1) too: a loss refuses a target outside [0, 1], and the numerical
# gradient steps to either side of it.
_PROBABILITY = ((0.05, 0.95), (0.01, 0.99))


def _data(x: Any, name: str) -> Any:
    """The array (or number) behind an operand of op `name`, whose type is checked here, before
    a `prepare` looks at its shape, so that a wrong type is a TypeError naming the op."""
    return x._data if isinstance(x, _Tensor) else _constant(x, name)


def _shape(x: Any, name: str) -> tuple[int, ...]:
    """`np.shape` of an operand of op `name`, its type checked as by `_data`: read from the
    array where there is one (np.shape's Python layer costs four times the read)."""
    x = _data(x, name)
    return x.shape if type(x) is _ndarray else np.shape(x)


# NumPy's module __getattr__ keeps CPython 3.11 from caching a `np.name` lookup (some 300
# instructions each): the NumPy functions of every layer and RNN step are bound here once.
_np_add, _np_matmul, _np_multiply, _np_subtract = np.add, np.matmul, np.multiply, np.subtract
# np.vdot's C function, without the __array_function__ dispatch (a fifth of its cost on a
# counter's vector): ops hand it NumPy arrays only.
_np_vdot = getattr(np.vdot, "_implementation", np.vdot)
_ndarray = np.ndarray

# --- arithmetic -----------------------------------------------------------------------------

add = defop("add", np.add, (identity_vjp, identity_vjp), Domain("binary"),
            saves="nothing", batch="elementwise")
sub = defop("sub", np.subtract, (identity_vjp, lambda g, out: -g), Domain("binary"),
            saves="nothing", batch="elementwise")


def _scaled_vjp(g, other, factor):
    """The gradient of `factor` in factor * other: g * other, but for a 0-d factor (a scalar
    weight, the counter's w_x) times an array of g's shape one dot product, not a product
    array that the sweep then sums down."""
    if factor.ndim == 0 and g.ndim and type(other) is _ndarray and other.shape == g.shape \
            and g.dtype is _FLOAT64:  # (BLAS's float32 dot adds in float32, in sequence;
        # and a dot of 0-d arrays adds their product to 0.0: -0.0 would come out +0.0)
        # A NumPy scalar, which the sweep makes its own array.
        return _np_vdot(g, other)
    return g * other


mul = defop("mul", np.multiply,
            (lambda g, out, a, b: _scaled_vjp(g, b, a),
             lambda g, out, a, b: _scaled_vjp(g, a, b)),
            Domain("binary"), saves="inputs", batch="elementwise")
def _divisor_vjp(g, out, a, b):
    """b's gradient, -g a / b^2 = -g out / b. In float16 and float32 it is computed in
    float64 and rounded once: there the product of two such numbers neither overflows nor
    underflows, where in their own dtype g out or g / b did with the gradient a normal
    number (float16 loss scaling: g = 1000 over b = 0.01; g = 1e-6 under a = 6e4). In
    float64, -g out / b: its product can leave the range where the gradient does not
    (g = 1e10 times out = 1e300), as every order of the two roundings can somewhere."""
    dtype = np.result_type(g, out, b)
    if dtype.type not in (np.float16, np.float32):
        return -g * out / b
    wide = np.float64
    return (-g.astype(wide) * out.astype(wide) / np.asarray(b).astype(wide)).astype(dtype)


div = defop("div", np.divide, (lambda g, out, a, b: g / b, _divisor_vjp),
            Domain("binary", values=((-3.0, 3.0), (0.5, 3.0))))
neg = defop("neg", np.negative, (lambda g, out: -g,), Domain("unary"), saves="nothing")
def _pow_base_vjp(g, out, a, b):
    """g b a^(b-1), and 0 where b = 0 (at a = 0 that is 0 * inf: NaN, where a^0 = 1 has
    derivative 0), as PyTorch."""
    b = _in(b, out.dtype)
    if _nowhere_zero(b):  # the usual case: no exponent is 0
        return g * b * np.power(a, b - 1)
    return g * b * np.power(a, np.where(b == 0, 1.0, b) - 1)


def _pow_exponent_vjp(g, out, a, b):
    """g a^b log(a), and 0 where a = 0 and b >= 0 (0 * -inf: NaN, where 0^b is constant in
    b), as PyTorch."""
    a = _in(a, out.dtype)
    if _nowhere_zero(a):  # the usual case: no base is 0
        return g * out * np.log(a)
    return g * out * np.log(np.where((a == 0) & (b >= 0), 1.0, a))


def _in(x, dtype):
    """An operand in the dtype the forward computed in (the output's): `b - 1` and `log(a)`
    in a float16 or integer operand's own dtype would round or wrap (int8 -128 - 1 = 127).
    A Python number stays a Python float (exact; NumPy takes it so, and log(2) is taken in
    float64 for an int base as for a float one)."""
    if type(x) is float or isinstance(x, (_ndarray, np.generic)) and x.dtype == dtype:
        return x
    return float(x) if isinstance(x, numbers.Real) and not isinstance(x, np.generic) else \
        np.asarray(x, dtype)


def _nowhere_zero(x):
    return x.all() if type(x) is _ndarray else x != 0


pow = defop("pow", np.power, (_pow_base_vjp, _pow_exponent_vjp),
            Domain("binary", values=((0.5, 2.0), (-2.0, 2.0))))


def _matmul_a_vjp(g, out, a, b):
    if b.ndim == 1:
        return np.multiply.outer(g, b)
    if a.ndim == 1:
        return np.matmul(b, g[..., None])[..., 0]
    if b.ndim == 2 and b.shape[1] == 1 and b.shape[0] >= 8:
        # g b^T sums one product per element: an outer product, which NumPy's matmul takes
        # in its own loop (no BLAS): twice a broadcast multiply's time at 32 columns and
        # above (timeit, 2600 rows), though quicker below 8, where multiply's inner loop
        # is too short. The same numbers (one rounding each; a zero may lose its sign).
        return np.multiply(g, b.T)
    # .T is the same view as np.swapaxes(b, -1, -2) for a matrix, without its Python layer.
    return _np_matmul(g, b.T if b.ndim == 2 else np.swapaxes(b, -1, -2))


def _matmul_b_vjp(g, out, a, b):
    if a.ndim == 1:
        return np.multiply.outer(a, g) if b.ndim == 1 else a[:, None] * g[..., None, :]
    if b.ndim == 1:
        return np.matmul(g[..., None, :], a)[..., 0, :]
    if b.ndim == 2 and a.ndim > 2:  # a stack of rows times one matrix: a single product
        return _np_matmul(a.reshape(-1, a.shape[-1]).T, g.reshape(-1, g.shape[-1]))
    return _np_matmul(a.T if a.ndim == 2 else np.swapaxes(a, -1, -2), g)


matmul = defop("matmul", np.matmul, (_matmul_a_vjp, _matmul_b_vjp), Domain("matmul"),
               saves="inputs", batch="matmul")
def _product_vjp(matmul_vjp):
    """A VJP of a @ b inside c + a @ b: c may broadcast the sum beyond a @ b's shape (an
    RNN's first step, s_0 of shape (n,) against z_1 of shape (batch, n)), so `g` is summed
    back to the product's shape first."""

    def vjp(g, out, c, a, b):
        # A vector or a stack of rows times one matrix (every layer and RNN step) without
        # NumPy's broadcasting rules, which cost more than the check they make.
        shape = a.shape[:-1] + b.shape[1:] if b.ndim == 2 else _matmul_shape(a, b)
        return matmul_vjp(g if g.shape == shape else _sum_to_shape(g, shape), None, a, b)

    return vjp


def _matmul_shape(a: np.ndarray, b: np.ndarray) -> tuple:
    if b.ndim == 1:
        return a.shape[:-1]
    if a.ndim == 1:  # a vector times a (stack of) matrices: an RNN's s_0 W
        return b.shape[:-2] + b.shape[-1:]
    return np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])


def _addmm(c, a, b):
    """c + a @ b in one op (a layer's x W + b, an RNN step's z_k + s W): the same NumPy calls
    as add(c, matmul(a, b)), forward and backward, so the same numbers, one node fewer."""
    return _np_add(c, _np_matmul(a, b))


addmm = defop("addmm", _addmm,
              (identity_vjp, _product_vjp(_matmul_a_vjp), _product_vjp(_matmul_b_vjp)),
              Domain("addmm"), saves=(1, 2), batch="matmul")  # a and b: c's VJP reads nothing

# --- contractions ---------------------------------------------------------------------------


def _free_axes(ndim: int, contracted: Sequence[int]) -> list[int]:
    return [i for i in range(ndim) if i not in contracted]


def _tensordot_a_vjp(g, out, a, b, axes):
    axes_a, axes_b = axes
    a, b = np.asarray(a), np.asarray(b)  # (a Python number's: 0-d)
    free_b = _free_axes(b.ndim, axes_b)
    n_free_a = a.ndim - len(axes_a)
    ga = np.tensordot(g, b, axes=(list(range(n_free_a, g.ndim)), free_b))
    # ga's axes: a's free axes, then a's contracted axes in the order b holds their partners.
    order = _free_axes(a.ndim, axes_a) + [axes_a[axes_b.index(j)] for j in sorted(axes_b)]
    return np.transpose(ga, np.argsort(order))


def _tensordot_b_vjp(g, out, a, b, axes):
    axes_a, axes_b = axes
    a, b = np.asarray(a), np.asarray(b)  # (a Python number's: 0-d)
    free_a = _free_axes(a.ndim, axes_a)
    gb = np.tensordot(a, g, axes=(free_a, list(range(len(free_a)))))
    order = [axes_b[axes_a.index(i)] for i in sorted(axes_a)] + _free_axes(b.ndim, axes_b)
    return np.transpose(gb, np.argsort(order))


def _tensordot_call(a: Any, b: Any, axes: int | Sequence[Any] = 2) -> tuple[tuple, dict]:
    """Sum products over the given axes, with NumPy's meaning of `axes`: an int n contracts
    the last n axes of `a` with the first n of `b`; a pair of sequences names them."""
    shape_a, shape_b = _shape(a, "tensordot"), _shape(b, "tensordot")
    axes_a, axes_b = _tensordot_axes(axes, len(shape_a), len(shape_b))
    if len(axes_a) != len(axes_b) or any(shape_a[i] != shape_b[j] for i, j in zip(axes_a, axes_b)):
        raise ValueError(f"tensordot: cannot contract {shape_a} with {shape_b} over axes "
                         f"({list(axes_a)}, {list(axes_b)})")
    return (a, b), {"axes": (axes_a, axes_b)}


def _tensordot_axes(axes: Any, ndim_a: int, ndim_b: int) -> tuple[list, list]:
    # a count, else a pair (an int first: the ABC check costs a microsecond)
    if type(axes) is int or not isinstance(axes, Sequence) and np.ndim(axes) == 0:
        axes = _integer(axes, "tensordot", "axes")
        if not 0 <= axes <= builtins.min(ndim_a, ndim_b):
            raise ValueError(f"tensordot: axes={axes} does not fit operands of {ndim_a} and "
                             f"{ndim_b} dimensions")
        return list(range(ndim_a - axes, ndim_a)), list(range(axes))
    try:
        axes_a, axes_b = axes
    except (TypeError, ValueError):
        raise ValueError(
            f"tensordot: axes must be an int or a pair of sequences, got {axes!r}") from None
    axes_a = [axes_a] if isinstance(axes_a, (int, np.integer)) else list(axes_a)
    axes_b = [axes_b] if isinstance(axes_b, (int, np.integer)) else list(axes_b)
    try:
        return (_normalize_axes(axes_a, ndim_a, "tensordot"),
                _normalize_axes(axes_b, ndim_b, "tensordot"))
    except ValueError as error:
        raise ValueError(f"tensordot: axes {axes!r} {error} for operands of {ndim_a} "
                         f"and {ndim_b} dimensions") from None


def _integer(value: Any, name: str, what: str = "axis") -> int:
    """`value` (an axis, a count, a cut point) as an int by NumPy's rule, `operator.index`:
    an integer of any kind passes; a float (1.7 is not axis 1), a bool or a string is
    refused with a TypeError naming op `name`."""
    if type(value) is int:  # the usual case, without a call
        return value
    if not isinstance(value, (bool, np.bool_)):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise TypeError(f"{name}: {what} must be an integer, got {value!r}")


def _normalize_axes(axes: Sequence[Any], ndim: int, name: str) -> list[int]:
    """`axes` in [0, ndim), each once: a TypeError (naming op `name`) for a non-integer one,
    a ValueError for one out of range or repeated, saying which ("is out of range",
    "repeats axis 0"), for the caller to put in its words."""
    normalized = [i + ndim if i < 0 else i for i in (_integer(a, name) for a in axes)]
    if any(not 0 <= i < ndim for i in normalized):
        raise ValueError("is out of range")
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"repeats axis {next(i for i in normalized if normalized.count(i) > 1)}")
    return normalized


tensordot = defop("tensordot", lambda a, b, axes: np.tensordot(a, b, axes),
                  (_tensordot_a_vjp, _tensordot_b_vjp), Domain("tensordot"),
                  prepare=_tensordot_call)


@functools.lru_cache(maxsize=256)
def _einsum_vjps_of(subscripts: str) -> list:
    """The VJPs of each operand: they depend on the subscripts only, so a model that calls
    the same einsum at every step parses them once."""
    inputs, output = subscripts.split("->")
    specs = inputs.split(",")
    return [_einsum_operand_vjp(i, specs, output) for i in range(len(specs))]


def _einsum_operand_vjp(i: int, specs: list[str], output: str):
    spec = specs[i]
    letters = "".join(dict.fromkeys(spec))  # unique, in order
    others = [s for j, s in enumerate(specs) if j != i]
    reachable = set(output).union(*others)
    present = "".join(c for c in letters if c in reachable)
    contraction = ",".join([output, *others]) + "->" + present

    def vjp(g, out, *args, subscripts):
        x = args[i]
        grad = _einsum(contraction, g, *(a for j, a in enumerate(args) if j != i))
        shape = x.shape if letters == spec else tuple(dict(zip(spec, x.shape))[c]
                                                      for c in letters)
        if present != letters:  # letters summed away in x alone: length 1 here, for now
            grad = np.expand_dims(grad, [k for k, c in enumerate(letters) if c not in present])
        if grad.shape != shape:
            grad = _fit_broadcast(grad, shape)
        if letters == spec:
            return grad
        dense = np.zeros(x.shape, np.result_type(g, x))  # repeated letters: a diagonal
        np.einsum(f"{spec}->{letters}", dense)[...] = grad
        return dense

    return vjp


def _fit_broadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`grad`, of `shape`'s rank, brought to `shape` where an operand's length-1 axis met a
    longer one (NumPy's broadcasting in einsum): summed where the operand's axis has length
    1, broadcast where the gradient's has (a letter summed away, or met only length 1)."""
    summed = tuple(k for k, n in enumerate(shape) if n == 1 and grad.shape[k] != 1)
    if summed:
        grad = _sum_of(grad, summed, True)
    return np.broadcast_to(grad, shape)


def _einsum_call(subscripts: str, *operands: Any) -> tuple[tuple, dict]:
    """Einstein summation with explicit output subscripts, e.g. `einsum("bi,ij->bj", x, w)`.

    Unlike NumPy's, the subscripts must name the output after `->` (implicit mode,
    `"ij,jk"`, is refused) and every axis of every operand (an ellipsis, `"...ij->...j"`, is
    refused): ValueError naming the subscripts.
    """
    if not isinstance(subscripts, str):
        raise TypeError(f"einsum: subscripts must be a string such as 'ij,jk->ik', got "
                        f"{type(subscripts).__name__}")
    subscripts = subscripts.replace(" ", "")
    if "->" not in subscripts:
        raise ValueError(f"einsum: subscripts '{subscripts}' must name the output after '->', "
                         "as in 'ij,jk->ik' (implicit mode is not supported)")
    if "." in subscripts:
        raise ValueError(f"einsum: subscripts '{subscripts}' must not use an ellipsis ('...'): "
                         "name every axis with a letter")
    specs = subscripts.split("->")[0].split(",")
    if len(specs) != len(operands):
        raise ValueError(f"einsum: '{subscripts}' names {len(specs)} operands, got {len(operands)}")
    for spec, x in zip(specs, operands):
        shape = _shape(x, "einsum")
        if len(spec) != len(shape):
            raise ValueError(
                f"einsum: operand subscripts '{spec}' do not fit an operand of shape {shape}")
    return operands, {"subscripts": subscripts}


def _einsum(subscripts: str, *args: Any) -> np.ndarray:
    """np.einsum, of float16 operands in float32 and rounded once (as `_sum_of`: NumPy's
    einsum sums float16 in float16)."""
    # (the dtypes as np.einsum takes the operands: a Python float is a float64 one, a bool
    # or a NumPy float16 scalar leaves the result float16)
    if any(getattr(getattr(a, "dtype", None), "type", None) is np.float16 for a in args) \
            and np.result_type(*[np.asarray(a) for a in args]).type is np.float16:
        return np.einsum(subscripts, *args, dtype=np.float32).astype(_FLOAT16)
    return np.einsum(subscripts, *args)


einsum = defop("einsum", lambda *args, subscripts: _einsum(subscripts, *args),
               lambda arrays, options, inputs: _einsum_vjps_of(options["subscripts"]),
               Domain("einsum"), prepare=_einsum_call)

# --- elementwise ----------------------------------------------------------------------------


def _sigmoid(x):
    """The logistic function 1 / (1 + exp(-x)), without overflow for any x."""
    return _sigmoid_of(x, np.exp(-np.abs(x)))


def _sigmoid_of(x, e):
    """sigmoid(x) from e = exp(-|x|) <= 1: 1 / (1 + e) where x >= 0, e / (1 + e) elsewhere."""
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


exp = defop("exp", np.exp, (lambda g, out: g * out,), Domain("unary"), saves="output")
log = defop("log", np.log, (lambda g, out, x: g / x,), Domain("unary", _POSITIVE),
            saves="inputs")
def _tanh_vjp(g, out, into=None):
    """g (1 - out^2), computed into one new array, or into `into` (the same operations in
    the same order)."""
    # (`out` passed by position: NumPy parses no keyword, a tenth of a small call's time)
    if into is not None and into.dtype != out.dtype:  # out * out in out's dtype, as without
        return _result(_tanh_vjp(g, out), into)
    d = out * out if into is None else _np_multiply(out, out, into)
    if type(d) is not _ndarray or type(g) is not _ndarray or d.shape != g.shape \
            or d.dtype != g.dtype:
        return _result(g * (1.0 - d), into)
    _np_subtract(_ONES.get(d.dtype, 1.0), d, d)
    return _np_multiply(g, d, d)


def _sigmoid_vjp(g, out, into=None):
    """g out (1 - out), computed into one new array, or into `into` (the same operations in
    the same order)."""
    if into is not None and not into.dtype == g.dtype == out.dtype:  # as without `into`
        return _result(_sigmoid_vjp(g, out), into)
    d = g * out if into is None else _np_multiply(g, out, into)
    if type(d) is not _ndarray or type(out) is not _ndarray or d.shape != out.shape:
        return _result(d * (1.0 - out), into)
    return _np_multiply(d, _np_subtract(_ONES.get(out.dtype, 1.0), out), d)


# 1 as a read-only 0-d array of each float dtype: what `1 - x` subtracts from in a VJP run per
# RNN step. NumPy converts a Python float anew on every call (three quarters of the time of
# subtracting from a small array) and takes this as it is; in x's own dtype it selects the
# loop the float does (NEP 50), and 1 is exact in each: the same numbers.
_ONES = {np.dtype(t): np.ones((), t) for t in (np.float16, np.float32, np.float64)}
for _one in _ONES.values():
    _one.flags.writeable = False


def _result(value, into):
    """`value`, or `into` holding it: a VJP given `into` returns it, whatever its path."""
    if into is None:
        return value
    into[...] = value
    return into


# They take `into` (primitive.writes_into).
_tanh_vjp.into = _sigmoid_vjp.into = True  # type: ignore[attr-defined]


tanh = defop("tanh", np.tanh, (_tanh_vjp,), Domain("unary"), saves="output")
sigmoid = defop("sigmoid", _sigmoid, (_sigmoid_vjp,), Domain("unary", ((-8.0, 8.0),)),
                saves="output")
# A select, not g * (x > 0): an infinite g (sqrt's at 0) times 0 is NaN where the gradient
# is 0; and g where x is NaN (the NaN passes on), as PyTorch's threshold_backward has it.
def _relu(x):
    """max(x, 0) elementwise; its gradient is g where x > 0, else 0 (at x = 0 too, as
    PyTorch's)."""
    return np.maximum(x, 0.0)


relu = defop("relu", _relu,
             (lambda g, out, x: np.where(x <= 0, 0.0, g),),
             Domain("unary", avoid=(0.0,)), saves="inputs")
abs = defop("abs", np.abs, (lambda g, out, x: g * np.sign(x),), Domain("unary", avoid=(0.0,)),
            saves="inputs")
sqrt = defop("sqrt", np.sqrt, (lambda g, out: g * 0.5 / out,), Domain("unary", _POSITIVE),
             saves="output")

# --- reductions -----------------------------------------------------------------------------


def _expand_reduced(g, x, axis, keepdims):
    """`g`, the gradient of a reduction of `x`, with the reduced axes back as length 1."""
    if keepdims or axis is None:
        return g if keepdims else np.reshape(g, (1,) * np.ndim(x))
    return np.expand_dims(g, axis)


def _sum_vjp(g, out, x, axis, keepdims):
    return np.broadcast_to(_expand_reduced(g, x, axis, keepdims), np.shape(x))


def _mean_vjp(g, out, x, axis, keepdims):
    count = np.size(x) // builtins.max(np.size(out), 1)
    scale = _rounded(_per(_expand_reduced(g, x, axis, keepdims), count), g)
    return np.broadcast_to(scale, np.shape(x))


def _max_vjp(g, out, x, axis, keepdims):
    """Split evenly among the maxima: the gradient of the mean of the tied elements."""
    is_max = x == _expand_reduced(out, x, axis, keepdims)
    ties = is_max.sum(axis=axis, keepdims=True)
    if not ties.all():  # a NaN maximum equals nothing: the NaNs take it, as in PyTorch
        is_max |= np.isnan(x) & (ties == 0)
        ties = is_max.sum(axis=axis, keepdims=True)
    # A select, not a product with the mask: an infinite g times 0 is NaN off the maxima.
    return np.where(is_max, _expand_reduced(g, x, axis, keepdims) / ties, 0.0)


def _reduction(name: str, gradient: str = ""):
    """The public signature of a reduction: `f(x, axis=None, keepdims=False)`, its
    docstring saying where the `gradient` goes, if it needs saying."""

    def call(x: Any, axis: int | Sequence[int] | None = None,
             keepdims: bool = False) -> tuple[tuple, dict]:
        return (x,), {"axis": _reduction_axis(name, x, axis),
                      "keepdims": _keepdims(name, keepdims)}

    call.__doc__ = (f"The {name} over `axis` (an integer, a tuple of them, or None for all; "
                    "not a float: 1.7 is refused, as in NumPy)." + gradient)
    return call


def _keepdims(name: str, keepdims: Any) -> bool:
    """`keepdims` as a bool: True or False (NumPy's bool too, or 0 and 1), else TypeError
    naming the reduction (NumPy's own message said an integer was expected)."""
    if isinstance(keepdims, (bool, np.bool_)) or type(keepdims) is int and keepdims in (0, 1):
        return bool(keepdims)
    raise TypeError(f"{name}: keepdims must be True or False, got {type(keepdims).__name__} "
                    f"{keepdims!r}")


def _reduction_axis(name: str, x: Any, axis: Any) -> tuple[int, ...] | None:
    shape = _shape(x, name)
    axes: tuple[int, ...] | None
    if axis is None:
        axes = None
    elif type(axis) is int and -len(shape) <= axis < len(shape):  # the common case, quickly
        axes = (axis % len(shape),)
    else:
        try:
            axes = tuple(_normalize_axes([axis] if np.ndim(axis) == 0 else list(axis),
                                         len(shape), name))
        except ValueError as error:
            raise ValueError(f"{name}: axis {axis!r} {error} for shape {shape}") from None
    # A maximum of no elements has no value (NumPy's error too); an empty tensor reduced
    # over axes of nonzero length has an empty result, as in NumPy.
    if name in ("max", "min") and 0 in shape and 0 in (shape if axes is None else
                                                       [shape[i] for i in axes]):
        raise ValueError(f"{name}: cannot reduce over an axis of length 0 (shape {shape}, axis "
                         f"{axis!r}): a {name}imum of no elements has no value; reduce over "
                         "axes of nonzero length")
    return axes


def _sum_of(x, axis, keepdims):
    """np.sum, float16's in float32 and rounded once, as PyTorch sums half precision (NumPy
    adds float16 rows one by one in float16: past 2048 rows of ones it adds nothing more)."""
    if x.dtype.type is np.float16:  # (a byte-swapped one too)
        return np.sum(x, axis=axis, keepdims=keepdims, dtype=np.float32).astype(x.dtype)
    return np.sum(x, axis=axis, keepdims=keepdims)


sum = defop("sum", _sum_of, (_sum_vjp,), Domain("reduction"), saves="inputs",
            prepare=_reduction("sum"))
mean = defop("mean", lambda x, axis, keepdims: np.mean(x, axis=axis, keepdims=keepdims),
             (_mean_vjp,), Domain("reduction"), prepare=_reduction("mean"))
max = defop("max", lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims),
            (_max_vjp,), Domain("reduction", distinct=True), prepare=_reduction(
                "max", " The gradient goes to the maxima, split evenly between ties (the "
                       "gradient of their mean: [1, 3, 3] gives [0, 0.5, 0.5]); to the NaNs "
                       "where the maximum is NaN, as in PyTorch."))

# --- shape ----------------------------------------------------------------------------------


def _shape_args(args: tuple) -> Any:
    """`f(x, 2, 3)` and `f(x, (2, 3))` mean the same, as in NumPy's methods."""
    return args[0] if len(args) == 1 and not isinstance(args[0], (int, np.integer)) else args


def _reshape_call(x: Any, *shape: Any) -> tuple[tuple, dict]:
    """The same elements in a new shape (one dimension may be -1)."""
    return (x,), {"shape": tuple(_shape_args(shape))}


def _transpose_call(x: Any, *axes: Any) -> tuple[tuple, dict]:
    """Permute the axes (reverse them when none are given)."""
    order = _shape_args(axes) if axes else None
    return (x,), {"axes": None if order is None else tuple(order)}


@functools.lru_cache(maxsize=256)
def _inverse(axes: tuple[int, ...]) -> tuple[int, ...]:
    """The permutation that undoes `axes`; negative axes count from the end, as in NumPy.
    Cached: a model transposes the same way on every call (argsort costs more than the
    transpose)."""
    return tuple(np.argsort(np.mod(axes, len(axes))).tolist())


reshape = defop("reshape", lambda x, shape: np.reshape(x, shape),
                (lambda g, out, x, shape: np.reshape(g, np.shape(x)),), Domain("reshape"),
                saves="inputs", prepare=_reshape_call)
transpose = defop(
    "transpose", lambda x, axes: np.transpose(x, axes),
    (lambda g, out, axes: np.transpose(g, None if axes is None else _inverse(axes)),),
    Domain("transpose"), saves="nothing", prepare=_transpose_call)


# The same values without a gradient: a view, so that neither tensor's changes reach the
# other (copy-on-write). An op, so that a traced function's `detach` is a step of its program.
_detach = defop("detach", lambda x: x.view(), (None,), register=False)


def _astype_call(x: Any, dtype: Any = None) -> tuple[tuple, dict]:
    """A copy of the values converted to `dtype`, a floating dtype (x's own if None), as
    `np.ndarray.astype`; the gradient is converted back. The way to convert an argument of
    a compiled function (NumPy cannot read a traced value)."""
    source = np.result_type(_data(x, "astype"))
    try:
        target = source if dtype is None else np.dtype(dtype)
    except (TypeError, ValueError):  # (NumPy's "data type 'foo' not understood")
        raise TypeError(f"astype: dtype {dtype!r} is not a data type NumPy understands; pass "
                        "a floating one (np.float32, 'float64', ...)") from None
    if target.kind != "f":
        raise TypeError(f"astype: converts to a floating dtype (tensors hold floats), got "
                        f"{target}; pass dtype=")
    return (x,), {"dtype": target, "source": source}


astype = defop("astype", lambda x, dtype, source: x.astype(dtype),
               (lambda g, out, dtype, source: g.astype(source),), Domain("unary"),
               saves="nothing", prepare=_astype_call)


class SliceGradient(_Cotangent):
    """The cotangent of `x[index]`: `values` at `index` of an otherwise zero array.

    Kept sparse so that T slices of one (batch, T, n) tensor cost O(T) in backward: the first
    one allocates the dense gradient, the rest are added into it in place.
    """

    __slots__ = ("index", "values", "basic")

    def __init__(self, index: Any, values: np.ndarray, basic: bool):
        self.index = index
        self.values = values
        self.basic = basic  # basic indexing hits each element once; arrays may repeat

    def add_into(self, dense: np.ndarray) -> None:
        if self.basic:
            dense[self.index] += self.values
        elif dense.dtype.type is np.float16:  # repeats summed in float32, rounded once
            dense += self.densify(dense.shape, np.dtype(np.float32))
        else:
            np.add.at(dense, self.index, self.values)

    def densify(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.result_type(dtype, self.values)
        if not self.basic and dtype.type is np.float16:  # as `_sum_of`: np.add.at adds a
            # repeated index's values one by one in float16, where past 2048 like terms
            # a term rounds away
            return self.densify(shape, np.dtype(np.float32)).astype(dtype)
        dense = np.zeros(shape, dtype)
        if self.basic:  # each element once: set, not added to zero (a third of the cost)
            dense[self.index] = self.values
        else:
            np.add.at(dense, self.index, self.values)
        return dense


_BASIC_INDEX = (int, np.integer, slice, type(None), type(Ellipsis))
_BASIC_TYPES = frozenset({int, slice, type(None), type(Ellipsis)})  # the usual ones, exactly


def _getitem_call(x: Any, index: Any) -> tuple[tuple, dict]:
    """`x[index]` with NumPy's rules: ints, slices, None, Ellipsis and integer or boolean
    arrays or lists (an empty list: no element); repeated integer indices accumulate their
    gradients. A tensor is no index: it holds floats, so `x[x > 2]` is refused; index with
    `np.asarray(mask.data, bool)`, or take `mg.where(mask, x, 0)`."""
    # (a tuple's subclass too, a namedtuple: NumPy takes it as a tuple of indices)
    parts = index if type(index) is tuple else tuple(index) if isinstance(index, tuple) \
        else (index,)
    basic = ints = True
    for p in parts:  # a loop, not all(...): x[:, t] at every step of an RNN comes through here
        # A set lookup first: a failed isinstance (an int against slice, ...) costs more.
        if type(p) not in _BASIC_TYPES and not isinstance(p, _BASIC_INDEX):
            basic = False
            break
        if type(p) is slice and not (p.start is None and p.stop is None and p.step is None):
            ints = ints and all(type(b) in _INT_OR_NONE for b in (p.start, p.stop, p.step))
    if not basic:  # an index's values become options, copied: a later edit of the array
        # (or list, array.array, nested tuple...) changes neither the recorded gradient nor
        # a scan's loop
        parts = tuple(p if isinstance(p, _IMMUTABLE_INDEX) else _index_part(p) for p in parts)
    if not (basic and ints):  # (a slice's bounds too: as Python ints)
        parts = tuple(_of_ints(p) if type(p) is slice else p for p in parts)
    if not isinstance(x, _Tensor):  # a wrong operand type is a TypeError, not an IndexError
        _data(x, "getitem")
    return (x,), {"index": parts, "basic": basic}


_INT_OR_NONE = frozenset({int, type(None)})


def _of_ints(part: slice) -> slice:
    """A slice with NumPy integers or 0-d arrays for bounds (`x[lo:hi]`, lo = np.array(0)) as
    one of Python ints: the node keeps the values, not arrays the caller may change before
    the backward (they were read again there: the gradient went where they pointed then)."""
    return slice(*(_bound(b) for b in (part.start, part.stop, part.step)))


def _bound(b: Any) -> Any:
    if not isinstance(b, (np.ndarray, np.integer)):  # (a Python int, None, or what NumPy's
        return b                                    # indexing refuses, naming getitem)
    try:
        return operator.index(b)
    except TypeError:
        return b


# Index parts kept as they are: NumPy's basic ones, and what it refuses itself (a str, a float)
_IMMUTABLE_INDEX = (*_BASIC_INDEX, str, bytes, float, complex)


def _index_part(part: Any) -> Any:
    """A part of an index as a node keeps it: an object with `__index__` as its int (as
    NumPy reads it), any other a copied array (`_index_array`)."""
    if not isinstance(part, (np.ndarray, _Tensor)) and hasattr(type(part), "__index__"):
        return operator.index(part)
    return _index_array(part)


def _index_array(part: Any) -> np.ndarray:
    """A copy of an array or list index (or of any other sequence, as NumPy reads it). An
    empty list is an empty integer index, as in NumPy (`np.array([])` is float). A tensor is
    refused: it holds floats (a mask `x > 2` too), and whether 1.0 and 0.0 mean positions or
    true and false cannot be told."""
    if isinstance(part, _Tensor) and current_mode() >= TRACING:
        raise TraceError(
            f"getitem: the index (shape {part.shape}) is a traced value (an array argument "
            "of a compiled function, a scan's carry or xs, or computed from one): a program "
            "keeps its index, which cannot change per call or step. Index outside, give a "
            "compiled function the positions as a tuple of ints and index with list(them) "
            "(one trace per tuple), or multiply by a one-hot matrix")
    if isinstance(part, _Tensor):
        raise IndexError(
            f"getitem: cannot index with a tensor (shape {part.shape}): tensors hold floats, "
            "so its values could be positions or a mask; index with a NumPy integer or boolean "
            "array instead (np.asarray(mask.data, bool) for a mask), or use mg.where(mask, x, "
            "0) for the masked values")
    index = np.array(part)
    if index.size == 0 and not isinstance(part, np.ndarray):  # ([], (), range(0))
        return index.astype(np.intp)
    return index


getitem = defop("getitem", lambda x, index, basic: x[index],
                (lambda g, out, index, basic: SliceGradient(index, g, basic),),
                Domain("getitem"), saves="nothing", prepare=_getitem_call)


@functools.lru_cache(maxsize=256)
def _slices_vjps(axis: int, pieces: tuple) -> list:
    """VJPs that take `pieces[i]` of the gradient along `axis`: an index, or a (start, stop)
    pair for a slice. Cached, as an RNN stacks the same number of states at every step."""
    lead = (slice(None),) * axis
    indices = [lead + ((slice(*p) if isinstance(p, tuple) else p),) for p in pieces]
    return [lambda g, out, index=index, **options: g[index] for index in indices]


def _stack_vjps(arrays, options, inputs):
    axis = options["axis"]
    return _slices_vjps(axis + np.ndim(arrays[0]) + 1 if axis < 0 else axis,
                        tuple(range(len(arrays))))


def _concatenate_vjps(arrays, options, inputs):
    axis = options["axis"]
    axis = axis + arrays[0].ndim if axis < 0 else axis
    ends = list(itertools.accumulate(a.shape[axis] for a in arrays))
    return _slices_vjps(axis, tuple(zip([0] + ends[:-1], ends)))


def _joining(name: str, doc: str):
    """The public signature of stack and concatenate: `f(tensors, axis=0)`."""

    def call(tensors: Sequence[Any], axis: int = 0) -> tuple[tuple, dict]:
        if isinstance(tensors, (_Tensor, np.ndarray)) or not isinstance(tensors, Sequence):
            raise TypeError(
                f"{name}: expected a sequence of tensors, got {type(tensors).__name__}")
        if not tensors:
            raise ValueError(f"{name}: needs at least one tensor")
        if type(axis) is not int:
            if axis is None and name == "concatenate":  # NumPy's flattens: not supported
                raise TypeError(f"{name}: axis must be an integer, got None; to join the "
                                f"elements as one vector, flatten each tensor first "
                                f"({name}([x.reshape(-1) for x in tensors]))")
            axis = _integer(axis, name)
        return tuple(tensors), {"axis": axis}

    call.__doc__ = doc
    return call


stack = defop("stack", lambda *xs, axis: np.stack(xs, axis=axis), _stack_vjps, Domain("stack"),
              saves="nothing",
              prepare=_joining("stack", "Join tensors of one shape along a new axis (an integer)."))
concatenate = defop("concatenate", lambda *xs, axis: np.concatenate(xs, axis=axis),
                    _concatenate_vjps, Domain("concatenate"), saves="nothing",
                    prepare=_joining("concatenate", "Join tensors along an existing axis, an "
                                                   "integer (not None: flatten them first)."))

# --- losses (mean over every element; prediction and target of one shape) -------------------


def _loss(name: str, prediction: str, note: str = ""):
    """The public signature of a loss: `f(prediction, target)`, of one shape."""

    def call(a: Any, b: Any) -> tuple[tuple, dict]:
        shapes = _shape(a, name), _shape(b, name)
        if shapes[0] != shapes[1]:
            raise ValueError(f"{name}: {prediction} of shape {shapes[0]} and target "
                             f"of shape {shapes[1]} differ")
        return (a, b), {}

    call.__doc__ = (f"{name}({prediction}, target), mean-reduced. Of empty inputs: NaN, as "
                    "NumPy's mean of no elements, with an empty gradient." + note)
    return call


def _bounded(forward, prediction: str, bounds: dict[int, tuple[float, float]]):
    """`forward`, refusing operands outside their closed interval (`bounds`: position ->
    (low, high)). In the forward, not in `prepare`, so that a compiled replay checks every
    call's values too."""

    def checked(*arrays):
        for i, (low, high) in bounds.items():
            values = arrays[i]
            # The reductions themselves: ndarray.min and .max add a Python layer each.
            size = values.size if type(values) is _ndarray else np.size(values)
            if size and not (_min(values, None) >= low and _max(values, None) <= high):
                what = prediction if i == 0 else "target"
                raise ValueError(f"{what} must lie in [{low:g}, {high:g}], got values "
                                 f"from {np.min(values):g} to {np.max(values):g}")
        return forward(*arrays)

    checked.__doc__ = forward.__doc__
    return checked


_min, _max, _sum = np.minimum.reduce, np.maximum.reduce, np.add.reduce
_FLOAT64 = np.dtype(np.float64)  # NumPy's own: `is` tests it without converting a type
_FLOAT16 = np.dtype(np.float16)
# (`is` is a fast path only: an unpickled or byte-swapped array's dtype is an equal object
# of its own, so what must hold for every float16 tests `dtype.type is np.float16`)


def _times(d, scale: float):
    """d times a Python float scale, in float32 for a float16 d (rounded to float16 once,
    after): there the scale of a mean over many elements is a subnormal of few bits."""
    if d.dtype.type is not np.float16:
        return _np_multiply(d, scale)
    return (d.astype(np.float32) * scale).astype(_FLOAT16)


def _rounded(result, g, dtype=None):
    """A VJP's `result` computed with `_per`'s float32 scale for a float16 `g`, rounded once
    to `dtype` (g's by default: what the VJP gave before); any other result as it is."""
    return result if g.dtype.type is not np.float16 else result.astype(dtype or g.dtype)


def _per(g, n):
    """g / n, a mean's scale: for a float16 g in float32, where n of 65,504 and more would
    be inf (NumPy converts the count to g's dtype) and the scale a subnormal of few bits.
    The VJP computes in float32 then, and rounds its result to float16 once, at its end.
    No elements (an empty mean, of NaN): the gradient is empty, `or 1` only keeps the scale
    from dividing by zero (a warning, or an error under np.errstate(divide="raise"))."""
    n = n or 1
    return g / n if g.dtype.type is not np.float16 else g.astype(np.float32) / n


def _mean(x):
    """np.mean of every element of `x`, float64 without np.mean's Python layers (some 20k
    instructions per loss call): the same sum and division, so the same bits."""
    if x.dtype is not _FLOAT64:  # float16 is summed in float32 by np.mean: leave it the rules
        return np.mean(x)
    return _sum(x, None) / x.size


def _clip_probability(p):
    """`p` clipped to [eps, 1 - eps], eps of its own dtype (float64 for integers), and kept
    in it: float16's 1 - eps rounds to 1 in no format, and the gradient there, about
    1 / eps, stays finite (float32's eps made float16's gradient 2e6, beyond its 65504)."""
    dtype = np.result_type(p)  # (p may be a Python number)
    dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
    eps = np.finfo(dtype).eps
    return np.clip(p, dtype.type(eps), dtype.type(1.0 - eps))


def _bce(p, t):
    """Binary cross-entropy of probabilities `p` against targets `t`, mean-reduced. `p` is
    clipped to [eps, 1 - eps] (eps of its dtype) so that p of exactly 0 or 1 stays finite."""
    pc = _clip_probability(p)
    return -_mean(t * np.log(pc) + (1.0 - t) * np.log1p(-pc))


def _bce_p_vjp(g, out, p, t):
    # Taken at the clipped p, so a saturated output still gets a direction. (PyTorch instead
    # floors the logs at -100 and p (1 - p) at 1e-12: its loss is exact further out.)
    pc = _clip_probability(p)
    return _rounded((pc - t) / (pc * (1.0 - pc)) * _per(g, np.size(p)), g,
                    np.result_type(pc, t))


def _bce_t_vjp(g, out, p, t):
    pc = _clip_probability(p)
    return _rounded((np.log1p(-pc) - np.log(pc)) * _per(g, np.size(p)), g,
                    np.result_type(pc, t))


def _bce_logits(z, t):
    """Binary cross-entropy of logits `z` (probability sigmoid(z)) against targets `t`,
    mean-reduced: max(z, 0) - z t + log(1 + exp(-|z|)), its first part taken as z (1 - t)
    where z > 0 and -z t elsewhere, z (step(z) - t), so that the loss is a sum of two terms
    >= 0, each a few roundings off (max(z, 0) - z t cancelled: 0.8% off in float32 at
    z = 10, t = 1 - 2^-24). Finite for every finite z; an infinite z gives inf, or NaN
    where its target is its limit (inf * 0: z = inf, t = 1), with NumPy's warning."""
    e = np.exp(-np.abs(z))
    slope = np.heaviside(z, 0.0) - t  # (in max(z, 0.0)'s dtype, whatever z's and t's)
    out = np.asarray(_mean(z * slope + np.log1p(e)))
    _BCE_LOGITS_EXP[0] = (out, e)
    return out


# The last forward's exp(-|z|), for the VJP of that very call (which backward finds by its
# output, the same array): sigmoid(z) without a second exp. Read and replaced whole, so that
# calls in two threads never take each other's; a VJP that finds another call's entry (or
# none) computes exp(-|z|) again, to the same bits. It holds one array the size of the
# logits at most, until its VJP or the next call.
_BCE_LOGITS_EXP: list = [None]


def _bce_logits_z_vjp(g, out, z, t):
    entry = _BCE_LOGITS_EXP[0]
    if entry is not None and entry[0] is out:
        _BCE_LOGITS_EXP[0] = None
        e = entry[1]
    else:
        e = np.exp(-np.abs(z))
    # The scale g / count is a scalar: one pass over the array, not two.
    # (z: a tensor's array)
    return _rounded((_sigmoid_of(z, e) - t) * _per(g, z.size), g, np.result_type(z, t))


def _mse(y, t):
    """Mean squared error: mean((y - t)^2), and the residual its VJPs read: y - t."""
    d = _np_subtract(y, t)
    return _mean(np.square(d)), d


binary_cross_entropy = defop(
    "binary_cross_entropy", _bounded(_bce, "probabilities", {0: (0.0, 1.0), 1: (0.0, 1.0)}),
    (_bce_p_vjp, _bce_t_vjp), Domain("loss", _PROBABILITY), saves="inputs",
    prepare=_loss("binary_cross_entropy", "probabilities",
                  " The probabilities are clipped to [eps, 1 - eps] (eps of their dtype: 1.2e-7 "
                  "in float32, 9.8e-4 in float16), loss and gradient alike, so 0 and 1 stay "
                  "finite; a loss through sigmoid is exact from the logits: "
                  "binary_cross_entropy_with_logits."))
binary_cross_entropy_with_logits = defop(
    "binary_cross_entropy_with_logits", _bounded(_bce_logits, "logits", {1: (0.0, 1.0)}),
    (_bce_logits_z_vjp,
     lambda g, out, z, t: _rounded(z * -_per(g, np.size(z)), g, np.result_type(z, t))),
    Domain("loss", ((-6.0, 6.0), (0.01, 0.99))), saves=("output", 0, 1),
    prepare=_loss("binary_cross_entropy_with_logits", "logits"))
mse_loss = defop(
    "mse_loss", _mse,
    # d = y - t from the forward (y and t are not kept). The scales as Python floats: a third
    # of the cost of 0-d array arithmetic (in float32 rounded once, not twice). Empty inputs
    # (a NaN loss, as NumPy's mean) get an empty gradient: `or 1` only keeps the scale finite.
    (lambda g, d: _times(d, 2.0 * float(g) / (d.size or 1)),  # d: array or NumPy scalar
     lambda g, d: _times(d, -2.0 * float(g) / (d.size or 1))),
    Domain("loss"), saves="nothing", residual=True, prepare=_loss("mse_loss", "prediction"))

# --- elementwise, continued: pairs and bounds -----------------------------------------------


def _winner_vjp(wins):
    """The VJP of one operand of maximum (`wins` = np.greater) or minimum (np.less): zero
    where the other wins, half of g where the two tie (the gradient of their mean), g
    elsewhere: where it wins, and where either is NaN (the NaN passes on, as in PyTorch)."""

    def first(g, out, a, b):
        return np.where(a == b, 0.5 * g, np.where(wins(b, a), 0, g))

    def second(g, out, a, b):
        return np.where(a == b, 0.5 * g, np.where(wins(a, b), 0, g))

    return first, second


# Elementwise maximum and minimum; a tie splits the gradient evenly between both operands.
maximum = defop("maximum", np.maximum, _winner_vjp(np.greater), Domain("distinct_pair"),
                saves="inputs")
minimum = defop("minimum", np.minimum, _winner_vjp(np.less), Domain("distinct_pair"),
                saves="inputs")
square = defop("square", np.square, (lambda g, out, x: g * (2.0 * x),), Domain("unary"),
               saves="inputs")


def _clip_call(x: Any, low: float | None = None, high: float | None = None) -> tuple[tuple, dict]:
    """`x` clipped to [low, high] (either bound may be None: no bound on that side). The
    gradient passes where low <= x <= high (bounds included, as PyTorch's clamp) and is
    zero where the bound holds x. The bounds are taken as Python floats, so the result keeps
    x's dtype, as PyTorch's clamp (np.clip of a float32 array with a NumPy float64 bound
    would give float64); a bound beyond a float16 or float32 x's range is its infinity,
    as x's dtype holds it."""
    data = _data(x, "clip")
    if low is None and high is None:
        raise ValueError("clip: give low, high or both")
    bounds: list[float] = []
    for name, bound in (("low", -math.inf if low is None else low),
                        ("high", math.inf if high is None else high)):
        if not isinstance(bound, numbers.Real):
            raise TypeError(f"clip: {name} must be a number or None, got {bound!r}")
        value = _as_float(bound)
        if math.isnan(value):  # (a number, but no bound: each comparison with it is false)
            raise ValueError(f"clip: {name} is NaN, which bounds nothing; give a number, or "
                             "None for no bound on that side")
        bounds.append(value)
    if bounds[0] > bounds[1]:
        raise ValueError(f"clip: low={low} is above high={high}")
    # (a bound beyond float16's or float32's range: the infinity that NumPy's cast to x's
    # dtype makes of it, without the cast's overflow warning, an error under
    # np.errstate(over="raise"); once here, as x's dtype is the program's too)
    overflow = _OVERFLOW.get(getattr(data, "dtype", _FLOAT64).type)
    if overflow is not None:
        bounds = [b if -overflow < b < overflow else math.copysign(math.inf, b)
                  for b in bounds]
    return (x,), {"low": bounds[0], "high": bounds[1]}


def _as_float(bound: Any) -> float:
    """A bound as a float: an int beyond float's range bounds nothing on its side (inf)."""
    try:
        return float(bound)
    except OverflowError:
        return math.inf if bound > 0 else -math.inf


# Where a float64 number overflows in the cast to each narrower float: past its largest
# value by half a step (that half rounds to even: to infinity).
_OVERFLOW: dict[type, float] = {
    t: math.ldexp(1.0 - 2.0 ** -(np.finfo(t).nmant + 2), np.finfo(t).maxexp)
    for t in (np.float16, np.float32)}
_FLOAT64 = np.dtype(np.float64)


clip = defop("clip", lambda x, low, high: np.clip(x, low, high),
             (lambda g, out, x, low, high: np.where((x >= low) & (x <= high), g, 0),),
             Domain("clip"), saves="inputs", prepare=_clip_call)


def _where_call(condition: Any, a: Any, b: Any) -> tuple[tuple, dict]:
    """`a` where `condition` is true (nonzero), `b` elsewhere; the three broadcast together.
    `condition` is a mask (`x > 0`: a tensor that does not require grad) or a NumPy array
    (bool or numeric); it gets no gradient."""
    for operand in (condition, a, b):
        _data(operand, "where")
    if isinstance(condition, _Tensor) and condition.requires_grad:
        raise TypeError(f"where: the condition (shape {condition.shape}) requires grad, but "
                        "gets none; pass a mask such as x > 0, or condition.detach()")
    return (condition, a, b), {}


where = defop("where", np.where,
              (None, lambda g, out, c, a, b: np.where(c, g, 0),
               lambda g, out, c, a, b: np.where(c, 0, g)),
              Domain("where"), saves=(0,), prepare=_where_call)

# --- comparisons (no gradient) --------------------------------------------------------------


def _mask(compare):
    """The forward of a comparison: 1.0 where `compare(a, b)` holds, 0.0 elsewhere, in the
    operands' floating dtype (float64 if neither is floating)."""

    def forward(a, b):
        dtype = np.result_type(a, b)
        return compare(a, b).astype(dtype if dtype.kind == "f" else np.float64)

    forward.__name__ = compare.__name__
    return forward


def _comparison(name: str, compare, symbol: str):
    """A comparison of the table: a mask tensor that never requires grad (a step function
    has no useful gradient), as `torch.Tensor.gt` returns a tensor that needs none. Its
    VJPs are None: it records no node, so under `minigrad.compile` it is one more step of
    the program and never hands a value to Python."""

    def call(a: Any, b: Any) -> tuple[tuple, dict]:
        _data(a, name)
        _data(b, name)
        return (a, b), {}

    call.__doc__ = (f"`a {symbol} b` elementwise, broadcast: 1.0 where it holds, 0.0 elsewhere, "
                    "in the operands' floating dtype; the result does not require grad.")
    return defop(name, _mask(compare), (None, None), Domain("comparison"), saves="nothing",
                 prepare=call)


less = _comparison("less", np.less, "<")
less_equal = _comparison("less_equal", np.less_equal, "<=")
greater = _comparison("greater", np.greater, ">")
greater_equal = _comparison("greater_equal", np.greater_equal, ">=")
equal = _comparison("equal", np.equal, "==")
not_equal = _comparison("not_equal", np.not_equal, "!=")

# --- normalisation and statistics -----------------------------------------------------------


def _axis_call(name: str, doc: str):
    """The public signature of an op along one axis: `f(x, axis=-1)`."""

    def call(x: Any, axis: int = -1) -> tuple[tuple, dict]:
        shape = _shape(x, name)
        if type(axis) is not int:  # (the usual -1 is one)
            axis = _integer(axis, name)
        if not -len(shape) <= axis < len(shape):
            raise ValueError(f"{name}: axis {axis!r} is out of range for shape {shape}")
        return (x,), {"axis": axis % len(shape)}

    call.__doc__ = doc
    return call


def _total(e, axis):
    """The sum of `e` (exps, each at most 1) along `axis`, kept: float16's in float32, as
    PyTorch sums half precision (more than 65,504 classes would overflow float16)."""
    return np.sum(e, axis=axis, keepdims=True,
                  dtype=np.float32 if e.dtype.type is np.float16 else None)


def _half(y, x):
    """`y`, computed in float32 from a float16 `x` (`_total`), back in float16."""
    return y.astype(_FLOAT16) if x.dtype.type is np.float16 else y


def _logits(x):
    """Logits as floats: integers (and bools) as float64, as a mean takes them (x - max(x)
    would wrap around for unsigned ones, and exp of int8 is float16)."""
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def _softmax(x, axis):
    x = _logits(x)
    if not x.shape[axis]:  # nothing to normalise: empty, as PyTorch's (np.max refuses)
        return np.empty(x.shape, x.dtype)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))  # at most 1: no overflow
    return _half(e / _total(e, axis), x)


def _log_softmax(x, axis):
    x = _logits(x)
    if not x.shape[axis]:  # (as `_softmax`)
        return np.empty(x.shape, x.dtype)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return _half(shifted - np.log(_total(np.exp(shifted), axis)), x)


softmax = defop(
    "softmax", _softmax,
    (lambda g, out, axis: _half(out * (g - _total(g * out, axis)), g),),
    Domain("softmax"), saves="output",
    prepare=_axis_call("softmax", "exp(x) / sum(exp(x)) along `axis` (the last by default), "
                                  "computed from x - max(x) so that no exp overflows."))
log_softmax = defop(
    "log_softmax", _log_softmax,
    (lambda g, out, axis: _half(g - np.exp(out) * _total(g, axis), g),),
    Domain("softmax"), saves="output",
    prepare=_axis_call("log_softmax", "x - log(sum(exp(x))) along `axis` (the last by "
                                      "default), computed from x - max(x): finite for "
                                      "every finite x whose spread, max(x) - min(x), is "
                                      "within the float range."))


def _var_call(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False,
              ddof: float = 0) -> tuple[tuple, dict]:
    """The variance over `axis` (an int, a tuple, or None for all), NumPy's:
    sum((x - mean)^2) / (n - ddof) for n elements per reduction (ddof=0: the population
    variance; ddof=1: the unbiased sample variance, PyTorch's default)."""
    axes = _reduction_axis("var", x, axis)
    keepdims = _keepdims("var", keepdims)
    shape = _shape(x, "var")
    n = math.prod(shape) if axes is None else math.prod(shape[i] for i in axes)
    if not isinstance(ddof, numbers.Real) or ddof < 0:
        raise ValueError(f"var: ddof must be a number >= 0, got {ddof!r}")
    if n - ddof <= 0:
        raise ValueError(f"var: {n} elements per reduction (shape {shape}, axis {axis!r}) leave "
                         f"no degrees of freedom with ddof={ddof}")
    return (x,), {"axis": axes, "keepdims": keepdims, "ddof": ddof}


def _var_of(x, axis, keepdims, ddof):
    """np.var, float16's in float32 and rounded once (as `_sum_of`: NumPy sums float16's
    squares in float16)."""
    if x.dtype.type is np.float16:
        return np.var(x.astype(np.float32), axis=axis, keepdims=keepdims,
                      ddof=ddof).astype(x.dtype)
    return np.var(x, axis=axis, keepdims=keepdims, ddof=ddof)


def _var_vjp(g, out, x, axis, keepdims, ddof):
    n = x.size if axis is None else math.prod(x.shape[i] for i in axis)
    if g.dtype.type is np.float16:  # in float32 (2 / n: a subnormal of few bits in float16)
        return _var_vjp(g.astype(np.float32), None, x.astype(np.float32), axis, keepdims,
                        ddof).astype(_FLOAT16)
    centred = x - np.mean(x, axis=axis, keepdims=True)
    return _expand_reduced(g, x, axis, keepdims) * centred * (2.0 / (n - ddof))


var = defop("var", _var_of, (_var_vjp,), Domain("reduction"), saves="inputs",
            prepare=_var_call)

# --- losses, continued: classification ------------------------------------------------------


def _labels(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`labels` as indices into the last axis of `logits`, checked: integers (of any dtype)
    in [0, classes)."""
    classes = logits.shape[-1]
    if labels.dtype.kind == "f":
        fractional = labels != np.floor(labels)  # NaN too
        if fractional.any():
            raise ValueError(
                f"labels must be integers, got {labels[fractional].flat[0].item()!r}")
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        raise ValueError(f"labels must lie in [0, {classes}) for {classes} classes, got "
                         f"{labels[bad].flat[0].item()!r}")
    return labels.astype(np.intp)[..., None]


def _cross_entropy(z, labels):
    """The mean over examples of -log softmax(z)[label], from z - max(z) (finite for every
    finite z whose spread is within the float range), and the residual its VJP reads: the
    probabilities softmax(z)."""
    index = _labels(z, labels)
    z = _logits(z)
    shifted = z - np.max(z, axis=-1, keepdims=True)
    e = np.exp(shifted)
    total = _total(e, -1)
    picked = _half(np.take_along_axis(shifted, index, axis=-1) - np.log(total), z)
    return -_mean(picked), _half(e / total, z)


def _cross_entropy_vjp(g, p, z, labels):
    """(softmax(z) - onehot(labels)) g / n, for n examples."""
    scale = _per(g, labels.size)
    grad = p * scale
    index = _labels(p, labels)
    np.put_along_axis(grad, index, np.take_along_axis(grad, index, axis=-1) - scale, axis=-1)
    return _rounded(grad, g, p.dtype)


def _cross_entropy_call(logits: Any, labels: Any) -> tuple[tuple, dict]:
    """The cross-entropy of `logits` of shape (..., classes) against integer class `labels`
    of shape (...), mean-reduced over the examples: mean(logsumexp(z) - z[label]), PyTorch's
    `F.cross_entropy` with the classes on the last axis. `labels` is a NumPy array of
    integers (or of integer values; a Tensor of them too) in [0, classes); it gets no
    gradient. A single example's label may be a Python int."""
    shape = _shape(logits, "cross_entropy")
    if isinstance(labels, _Tensor) and labels.requires_grad:
        raise TypeError(f"cross_entropy: labels (shape {labels.shape}) require grad, but class "
                        "labels get none; pass an integer array or labels.detach()")
    label_shape = _shape(labels, "cross_entropy")
    if isinstance(labels, (int, float)):  # a Python number: as a NumPy one (its forward
        labels = np.asarray(labels)     # reads the dtype)
    if len(shape) == 0 or shape[-1] == 0 or label_shape != shape[:-1] or 0 in shape:
        raise ValueError(f"cross_entropy: logits of shape {shape} (examples..., classes) need "
                         f"labels of shape {shape[:-1]} and at least one example and class, got "
                         f"labels of shape {label_shape}")
    return (logits, labels), {}


cross_entropy = defop("cross_entropy", _cross_entropy, (_cross_entropy_vjp, None),
                      Domain("classification", ((-6.0, 6.0),)), saves=(1,), residual=True,
                      prepare=_cross_entropy_call)

# --- shape, continued: squeeze, flatten, split ----------------------------------------------


def _squeeze_call(x: Any, axis: int | Sequence[int] | None = None) -> tuple[tuple, dict]:
    """`x` without the axes of length one in `axis` (an int or a tuple; None: all of them).
    A reshape: the graph records the shape it leaves."""
    shape = _shape(x, "squeeze")
    if axis is None:
        axes = [i for i, n in enumerate(shape) if n == 1]
    else:
        try:
            axes = _normalize_axes([axis] if isinstance(axis, int) or np.ndim(axis) == 0
                                   else list(axis), len(shape), "squeeze")
        except ValueError as error:
            raise ValueError(f"squeeze: axis {axis!r} {error} for shape {shape}") from None
        longer = [i for i in axes if shape[i] != 1]
        if longer:
            raise ValueError(f"squeeze: axis {longer[0]} of shape {shape} has length "
                             f"{shape[longer[0]]}, not 1")
    return (x,), {"shape": tuple(n for i, n in enumerate(shape) if i not in axes)}


def _flatten_call(x: Any, start_dim: int = 0, end_dim: int = -1) -> tuple[tuple, dict]:
    """The axes from `start_dim` to `end_dim` (both included) merged into one, PyTorch's
    `flatten`: `flatten(x)` is 1-D, `flatten(x, 1)` keeps the batch axis. A 0-d `x`
    becomes of shape (1,). A reshape: the graph records the shape it leaves."""
    shape = _shape(x, "flatten") or (1,)
    dims = [_integer(start_dim, "flatten", "start_dim"), _integer(end_dim, "flatten", "end_dim")]
    try:
        start, end = (_normalize_axes([d], len(shape), "flatten")[0] for d in dims)
    except ValueError:
        raise ValueError(f"flatten: start_dim={start_dim!r} or end_dim={end_dim!r} is out of "
                         f"range for shape {_shape(x, 'flatten')}") from None
    if start > end:
        raise ValueError(f"flatten: start_dim={start_dim} comes after end_dim={end_dim} for "
                         f"shape {shape}")
    merged = math.prod(shape[start:end + 1])
    return (x,), {"shape": shape[:start] + (merged,) + shape[end + 1:]}


_reshape_vjp = (lambda g, out, x, shape: np.reshape(g, np.shape(x)),)
squeeze = defop("squeeze", lambda x, shape: np.reshape(x, shape), _reshape_vjp,
                Domain("squeeze"), saves="inputs", prepare=_squeeze_call)
flatten = defop("flatten", lambda x, shape: np.reshape(x, shape), _reshape_vjp,
                Domain("flatten"), saves="inputs", prepare=_flatten_call)

# --- compositions: functions of table ops, exported as minigrad.<name> too ------------------

COMPOSITIONS = ("split", "min")


def min(x: Any, axis: Any = None, keepdims: bool = False) -> _Tensor:
    """The minimum over `axis` (all of them by default), NumPy's `min`: -max(-x), whose
    numbers are exactly NumPy's (negation is exact), so its gradient goes to the minima,
    split evenly between ties, as `max`'s does. Of integers or booleans (which have no
    gradient), NumPy's min itself: negation wraps there (-(-128) is -128 in int8, and
    unsigned integers have no negatives) or is refused (bool)."""
    values = _data(x, "min")
    keepdims = _keepdims("min", keepdims)  # (max would name itself in the error)
    if (values.dtype if type(values) is _ndarray else np.result_type(values)).kind == "f":
        if 0 in np.shape(values):  # (max would name itself in the error)
            _reduction_axis("min", x, axis)
        try:
            return neg(max(neg(x), axis, keepdims))
        except (TypeError, ValueError):  # (max's error names max: the axis checked as min's)
            _reduction_axis("min", x, axis)
            raise
    return _exact_min(x, axis, keepdims)


# NumPy's min, for `min` of integers and booleans: no gradient, so outside the table.
_exact_min = defop("min", lambda x, axis, keepdims: np.min(x, axis=axis, keepdims=keepdims),
                   (None,), saves="nothing", prepare=_reduction("min"), register=False)


def split(x: Any, sections: int | Sequence[int], axis: int = 0) -> list[_Tensor]:
    """`x` cut along `axis` into a list of tensors, NumPy's `split`: an int `sections` cuts
    it into that many equal parts (it must divide the axis), a sequence of indices cuts it
    before each one. Each part is a slice of `x` (a `getitem`), so the gradient of each
    lands in its place."""
    shape = _shape(x, "split")
    axis = _integer(axis, "split")
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"split: axis {axis!r} is out of range for shape {shape}")
    axis %= len(shape)
    length = shape[axis]
    if isinstance(sections, (Sequence, np.ndarray)):  # the indices to cut before
        indices = [_integer(i, "split", "a cut index") for i in sections]
        cuts = [builtins.min(builtins.max(i + length if i < 0 else i, 0), length)
                for i in indices]
    else:  # a count
        sections = _integer(sections, "split", "sections")
        if sections < 1 or length % sections:
            raise ValueError(f"split: {sections} sections do not divide axis {axis} of shape "
                             f"{shape} equally")
        step = length // sections
        cuts = list(range(step, length, step)) if step else [0] * (sections - 1)
    lead = (slice(None),) * axis
    bounds = zip([0, *cuts], [*cuts, length])
    return [getitem(x, lead + (slice(start, builtins.max(start, stop)),))
            for start, stop in bounds]
