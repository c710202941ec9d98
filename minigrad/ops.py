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
from collections.abc import Sequence
from typing import Any

import numpy as np

from .primitive import Domain, defop
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


# NumPy's module __getattr__ keeps CPython 3.11 from caching a `np.name` lookup (some 300
# instructions each): the NumPy functions of every layer and RNN step are bound here once.
_np_add, _np_matmul, _np_multiply, _np_power = np.add, np.matmul, np.multiply, np.power
_np_subtract = np.subtract
_np_dot, _np_isfinite, _np_count_nonzero = np.dot, np.isfinite, np.count_nonzero
# np.vdot's C function, without the __array_function__ dispatch (a fifth of its cost on a
# counter's vector): ops hand it NumPy arrays only.
_np_vdot = getattr(np.vdot, "_implementation", np.vdot)
_ndarray, _np_asarray = np.ndarray, np.asarray

# --- arithmetic -----------------------------------------------------------------------------

add = defop("add", np.add, (lambda g, out: g, lambda g, out: g), Domain("binary"),
            saves="nothing")
sub = defop("sub", np.subtract, (lambda g, out: g, lambda g, out: -g), Domain("binary"),
            saves="nothing")


def _scaled_vjp(g, other, factor):
    """The gradient of `factor` in factor * other: g * other, but for a 0-d factor (a scalar
    weight, the counter's w_x) times an array of g's shape one dot product, not a product
    array that the sweep then sums down."""
    if factor.ndim == 0 and type(other) is _ndarray and other.shape == g.shape:
        # A NumPy scalar, which the sweep makes its own array.
        return _np_vdot(g, other)
    return g * other


mul = defop("mul", np.multiply,
            (lambda g, out, a, b: _scaled_vjp(g, b, a),
             lambda g, out, a, b: _scaled_vjp(g, a, b)),
            Domain("binary"), saves="inputs")
div = defop("div", np.divide, (lambda g, out, a, b: g / b, lambda g, out, a, b: -g * out / b),
            Domain("binary", values=((-3.0, 3.0), (0.5, 3.0))))
neg = defop("neg", np.negative, (lambda g, out: -g,), Domain("unary"), saves="nothing")
pow = defop("pow", np.power,
            (lambda g, out, a, b: g * b * np.power(a, b - 1),
             lambda g, out, a, b: g * out * np.log(a)),
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
               saves="inputs")
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


# c + a @ b in one node: a layer's x W + b, an RNN step's z_k + s W. The same NumPy calls
# as add(c, matmul(a, b)), forward and backward, so the same numbers, one node fewer.
addmm = defop("addmm", lambda c, a, b: _np_add(c, _np_matmul(a, b)),
              (lambda g, out, c, a, b: g, _product_vjp(_matmul_a_vjp), _product_vjp(_matmul_b_vjp)),
              Domain("addmm"), saves=(1, 2))  # a and b: c's VJP reads nothing

# --- contractions ---------------------------------------------------------------------------


def _free_axes(ndim: int, contracted: Sequence[int]) -> list[int]:
    return [i for i in range(ndim) if i not in contracted]


def _tensordot_a_vjp(g, out, a, b, axes):
    axes_a, axes_b = axes
    free_b = _free_axes(b.ndim, axes_b)
    n_free_a = a.ndim - len(axes_a)
    ga = np.tensordot(g, b, axes=(list(range(n_free_a, g.ndim)), free_b))
    # ga's axes: a's free axes, then a's contracted axes in the order b holds their partners.
    order = _free_axes(a.ndim, axes_a) + [axes_a[axes_b.index(j)] for j in sorted(axes_b)]
    return np.transpose(ga, np.argsort(order))


def _tensordot_b_vjp(g, out, a, b, axes):
    axes_a, axes_b = axes
    free_a = _free_axes(a.ndim, axes_a)
    gb = np.tensordot(a, g, axes=(free_a, list(range(len(free_a)))))
    order = [axes_b[axes_a.index(i)] for i in sorted(axes_a)] + _free_axes(b.ndim, axes_b)
    return np.transpose(gb, np.argsort(order))


def _tensordot_call(a: Any, b: Any, axes: int | Sequence[Any] = 2) -> tuple[tuple, dict]:
    """Sum products over the given axes, with NumPy's meaning of `axes`: an int n contracts
    the last n axes of `a` with the first n of `b`; a pair of sequences names them."""
    shape_a, shape_b = np.shape(_data(a, "tensordot")), np.shape(_data(b, "tensordot"))
    axes_a, axes_b = _tensordot_axes(axes, len(shape_a), len(shape_b))
    if len(axes_a) != len(axes_b) or any(shape_a[i] != shape_b[j] for i, j in zip(axes_a, axes_b)):
        raise ValueError(f"tensordot: cannot contract {shape_a} with {shape_b} over axes "
                         f"({list(axes_a)}, {list(axes_b)})")
    return (a, b), {"axes": (axes_a, axes_b)}


def _tensordot_axes(axes: Any, ndim_a: int, ndim_b: int) -> tuple[list, list]:
    if isinstance(axes, (int, np.integer)):
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
        return _normalize_axes(axes_a, ndim_a), _normalize_axes(axes_b, ndim_b)
    except ValueError:
        raise ValueError(f"tensordot: axes {axes!r} out of range for operands of {ndim_a} "
                         f"and {ndim_b} dimensions") from None


def _normalize_axes(axes: Sequence[int], ndim: int) -> list[int]:
    normalized = [int(i) + ndim if i < 0 else int(i) for i in axes]
    if any(not 0 <= i < ndim for i in normalized) or len(set(normalized)) != len(normalized):
        raise ValueError(f"axes {list(axes)} invalid for {ndim} dimensions")
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
        grad = np.einsum(contraction, g, *(a for j, a in enumerate(args) if j != i))
        if present != letters:  # letters summed away in x alone: broadcast them back
            size = dict(zip(spec, x.shape))
            grad = np.expand_dims(grad, [k for k, c in enumerate(letters) if c not in present])
            grad = np.broadcast_to(grad, [size[c] for c in letters])
        if letters == spec:
            return grad
        dense = np.zeros(x.shape, np.result_type(g, x))  # repeated letters: a diagonal
        np.einsum(f"{spec}->{letters}", dense)[...] = grad
        return dense

    return vjp


def _einsum_call(subscripts: str, *operands: Any) -> tuple[tuple, dict]:
    """Einstein summation with explicit output subscripts, e.g. `einsum("bi,ij->bj", x, w)`."""
    subscripts = subscripts.replace(" ", "")
    if "->" not in subscripts or "." in subscripts:
        raise ValueError(
            f"einsum: subscripts '{subscripts}' must be explicit ('...->...') and without ellipsis")
    specs = subscripts.split("->")[0].split(",")
    if len(specs) != len(operands):
        raise ValueError(f"einsum: '{subscripts}' names {len(specs)} operands, got {len(operands)}")
    for spec, x in zip(specs, operands):
        shape = np.shape(_data(x, "einsum"))
        if len(spec) != len(shape):
            raise ValueError(
                f"einsum: operand subscripts '{spec}' do not fit an operand of shape {shape}")
    return operands, {"subscripts": subscripts}


einsum = defop("einsum", lambda *args, subscripts: np.einsum(subscripts, *args),
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
tanh = defop("tanh", np.tanh, (lambda g, out: g * (1.0 - out * out),), Domain("unary"),
             saves="output")
sigmoid = defop("sigmoid", _sigmoid, (lambda g, out: g * out * (1.0 - out),),
                Domain("unary", ((-8.0, 8.0),)), saves="output")
relu = defop("relu", lambda x: np.maximum(x, 0.0), (lambda g, out, x: g * (x > 0),),
             Domain("unary", avoid=(0.0,)), saves="inputs")
abs = defop("abs", np.abs, (lambda g, out, x: g * np.sign(x),), Domain("unary", avoid=(0.0,)),
            saves="inputs")
sqrt = defop("sqrt", np.sqrt, (lambda g, out: g * 0.5 / out,), Domain("unary", _POSITIVE),
             saves="output")

# --- recurrence -----------------------------------------------------------------------------

_ACTIVATIONS = ("tanh", "sigmoid", "identity")


def _sigmoid_into(x, out):
    out[...] = _sigmoid(x)


# Each activation applied in place to a step's states (None: the identity), as its op
# computes it, so that rnn's states are the loop's to the bit.
_IN_PLACE = {"tanh": np.tanh, "sigmoid": _sigmoid_into, "identity": None}


def _rnn(z, w, s0=None, *, activation):
    """S_k = act(z_k + S_{k-1} w) for k = 1 .. L, from S_0 = s0 (or z_1 alone if None)."""
    if activation == "identity" and s0 is None and _closed_form_pays(z, w):
        states = _powers_product(w, z, transpose=False)
        if states is not None:
            return states
    states = np.empty(z.shape, np.result_type(z, w) if s0 is None else np.result_type(z, w, s0))
    act = _IN_PLACE[activation]
    times, w = _times(w)
    zs, ss = _steps(z), _steps(states)
    if s0 is None:  # no initial state: S_1 = act(z_1), one product fewer
        ss[0][...] = zs[0]
    else:
        _np_add(zs[0], times(s0, w), ss[0])  # s0 may broadcast over the batch
    if act is not None:
        act(ss[0], ss[0])
    carry = np.empty(ss[0].shape, states.dtype)
    for k in range(1, len(ss)):
        times(ss[k - 1], w, carry)
        _np_add(zs[k], carry, ss[k])
        if act is not None:
            act(ss[k], ss[k])
    return states


def _steps(a):
    """The per-step views of a time-major array, made at once (indexing in the loop would
    make them anew), each an array even where a step is one number."""
    return list(a if a.ndim > 1 else a[:, None])


def _times(w):
    """How a step multiplies by w, and by what: matmul by w (n, n), or multiply by w's one
    element for a scalar recurrence (w of shape (), or (1, 1): the same single product at a
    third of matmul's cost)."""
    if w.ndim == 2 and w.shape != (1, 1):
        return _np_matmul, w
    return _np_multiply, w.reshape(())


# A linear scalar recurrence, S_k = z_k + w S_{k-1} from S_1 = z_1, is S = P z with the
# lower-triangular P[k, j] = w^(k-j): one matrix product instead of 2 L small calls, and its
# backward D = P^T g another. It costs L^2 m multiplications against the loop's 2 L m, so it
# pays only while L m (a step's m numbers times L) stays small, as in the counter (10 x 20).
_CLOSED_FORM_SIZE = 2048


def _closed_form_pays(z, w):
    return w.size == 1 and (w.ndim == 0 or z.ndim > 1 and z.shape[-1] == 1) \
        and len(z) > 1 and z.size * len(z) <= _CLOSED_FORM_SIZE


@functools.lru_cache(maxsize=64)
def _exponent_tables(length, dtype):
    """The exponents 0 .. L-1 in `dtype` (L = length); the index I[k, j] = k - j on and below
    the diagonal, L above it (P = p[I] for p the powers followed by a zero); the exponents
    L-1 .. 0, and L-1 .. 1 (rnn_last's powers of w and the factors of their derivatives)."""
    k = np.arange(length)
    exponents = np.arange(length, dtype=dtype)
    descending = exponents[::-1].copy()
    return exponents, np.where(k[:, None] >= k, k[:, None] - k, length), descending, \
        descending[:-1]


@functools.lru_cache(maxsize=8)
def _power_vector(w, length, dtype):
    """[w^0, w^1, .., w^(length-1), 0] (read-only: the cache hands it to every caller), or
    None where a power of |w| is not a normal number (`_normal_powers`). Cached by w's
    value: backward finds the powers, or the refusal, that forward made."""
    scale = builtins.abs(w)
    if scale != 1.0 and scale != 0.0 and not _normal_powers(scale, length - 1, dtype):
        return None
    p = np.zeros(length + 1, dtype)
    np.power(w, _exponent_tables(length, dtype)[0], p[:-1])  # w a Python float: computed in `dtype`
    p.flags.writeable = False
    return p


@functools.lru_cache(maxsize=8)
def _powers(w, length, dtype):
    """P[k, j] = w^(k-j) for j <= k, else 0 (read-only), or None as `_power_vector`. The L
    powers are computed once each and placed by an index (not L^2 powers and a mask: a
    third of the cost, paid on every step where an optimizer changes w)."""
    p = _power_vector(w, length, dtype)
    if p is None:
        return None
    P = p[_exponent_tables(length, dtype)[1]]
    P.flags.writeable = False
    return P


def _normal_powers(scale, top, dtype):
    """Whether scale^top (scale > 0, not 1) is a normal number of `dtype`: neither overflows
    nor underflows (which a caller's np.errstate may make an error, where the loop's states
    z_k + w S_{k-1} need no such power), the largest and smallest of P's powers being 1 and
    scale^top. NaN is not normal; the loop then gives NaN as it does."""
    low, high = _log_range(dtype)
    return low < top * math.log(scale) < high if scale == scale else False


def _log_range(dtype):
    """The logarithms of the smallest and the largest normal number of `dtype` (a dict is a
    third of an lru_cache's cost: this runs whenever an optimizer changes w)."""
    logs = _LOG_RANGES.get(dtype)
    if logs is None:
        info = np.finfo(dtype)
        logs = _LOG_RANGES[dtype] = math.log(info.tiny), math.log(info.max)
    return logs


_LOG_RANGES: dict = {}


def _dtype_of(x, w):
    """The dtype of a product of x and w: x's where w has it (the usual case, by identity)."""
    return x.dtype if x.dtype is w.dtype else np.result_type(x, w)


def _powers_product(w, x, transpose):
    """P x (or P^T x) over x's first axis, P[k, j] = w^(k-j) for j <= k, else 0. None where
    the product would not be the loop's number up to rounding, and the loop decides: a power
    that overflows or underflows, or an inf or NaN in x or w (P's zeros times inf give NaN
    where the loop adds no such term). All checked before the product, so that it warns of
    nothing the loop would not."""
    P = _powers(w.item(), len(x), _dtype_of(x, w))
    # Counting is half the cost of isfinite(x).all() here; np.dot a quarter less than matmul.
    if P is None or _np_count_nonzero(_np_isfinite(x)) != x.size:
        return None
    if x.ndim == 2:
        return _np_dot(P.T if transpose else P, x)
    return _np_dot(P.T if transpose else P, x.reshape(len(x), -1)).reshape(x.shape)


def _rnn_deltas(g, states, w, activation):
    """D_k = dloss/d(z_k + S_{k-1} w) for every k, from g = dloss/dS (all k): backpropagation
    through time, D_k = (g_k + D_{k+1} w^T) act'(S_k), three NumPy calls per step (tanh).

    act'(S) is written into D's buffer for all steps first (two passes), and each D_k over
    it, so backward holds one array the size of the states, not two. The products are
    those of tanh's and sigmoid's VJPs, in their order: g (1 - S^2), (g S)(1 - S)."""
    if activation == "identity" and _closed_form_pays(states, w):
        deltas = _powers_product(w, g, transpose=True)
        if deltas is not None:
            return deltas
    deltas = np.empty(states.shape, np.result_type(g, states, w))
    if activation == "tanh":
        np.multiply(states, states, deltas)
        np.subtract(1.0, deltas, deltas)
    elif activation == "sigmoid":
        np.subtract(1.0, states, deltas)
    times, w_t = _times(w.T)
    d, s, gs, last = _steps(deltas), _steps(states), _steps(g), len(states) - 1
    carry = np.empty(d[0].shape, deltas.dtype)
    for k in range(last, -1, -1):
        into = d[k] if activation == "identity" else carry  # D_k, or g_k + D_{k+1} w^T
        if k == last:
            into[...] = gs[k]
        else:
            times(d[k + 1], w_t, carry)
            _np_add(gs[k], carry, into)
        if activation == "sigmoid":
            _np_multiply(carry, s[k], carry)
        if activation != "identity":
            _np_multiply(carry, d[k], d[k])
    return deltas


_s0_vjp, _w0_vjp = _product_vjp(_matmul_a_vjp), _product_vjp(_matmul_b_vjp)


def _rnn_vjps(arrays, options, inputs):
    """The VJPs of one rnn call (`_recurrence_vjps`)."""
    return _recurrence_vjps(options["activation"], _last_input(inputs), len(arrays))


def _last_input(inputs):
    """The position of the last input that needs a gradient: the sweep's last VJP call."""
    return builtins.max(i for i, x in enumerate(inputs) if x is not None)


def _recurrence_vjps(activation, last, count):
    """The VJPs of an rnn call with `count` operands. All three read the deltas D; the first
    to run computes them, and input `last`'s, the last one the sweep calls, lets them go."""
    # (g, out, w, D): the deltas of the cotangent being swept. Read and replaced whole, in
    # one step each: a compiled program's replays in two threads share these VJPs, and one
    # must never take the other's deltas (it recomputes its own instead).
    memo: list = [None]

    def deltas(g, out, w, i):
        entry = memo[0]
        if entry is not None and entry[0] is g and entry[1] is out and entry[2] is w:
            d = entry[3]
        else:
            d = _rnn_deltas(g, out, w, activation)
            memo[0] = (g, out, w, d)
        if i == last:
            memo[0] = None
        return d

    # s0 is None without an initial state: rnn then has two operands.
    def z_vjp(g, out, z, w, s0=None, *, activation):
        return deltas(g, out, w, 0)

    def w_vjp(g, out, z, w, s0=None, *, activation):
        # Every position's S_{k-1}^T D_k, summed as one product over all positions and
        # samples (not L products and L sums as the unrolled loop's): the same terms,
        # rounded in another order.
        d = deltas(g, out, w, 1)
        if w.ndim == 0:  # a scalar recurrence: sum S_{k-1} D_k over every element
            grad = np.asarray(np.vdot(out[:-1], d[1:]))
            if s0 is not None:
                grad += _np_multiply(_sum_to_shape(d[0], np.shape(s0)), s0).sum()
            return grad
        n = w.shape[0]
        grad = _np_matmul(out[:-1].reshape(-1, n).T, d[1:].reshape(-1, n))
        if s0 is None:
            return grad
        if s0.ndim == 1:  # one S_0 for every sample: addmm's VJP, its calls written out
            grad += np.multiply.outer(s0, _sum_to_shape(d[0], s0.shape))
        else:
            grad += _w0_vjp(d[0], None, None, s0, w)
        return grad

    def s0_vjp(g, out, z, w, s0, *, activation):
        d = deltas(g, out, w, 2)
        if w.ndim == 0:  # as mul's VJP: D_1 summed to s0 w's shape first, then times w
            return _np_multiply(_sum_to_shape(d[0], np.shape(s0)), w)
        if s0.ndim == 1:  # addmm's VJP for a vector s0 (`_matmul_a_vjp`), written out
            return _np_matmul(w, _sum_to_shape(d[0], s0.shape)[:, None])[:, 0]
        return _s0_vjp(d[0], None, None, s0, w)

    return (z_vjp, w_vjp, s0_vjp)[:count]


def _rnn_call(z: Any, w: Any, s0: Any = None, activation: str = "tanh") -> tuple[tuple, dict]:
    """The states of an Elman recurrence, S_k = act(z_k + S_{k-1} w) for k = 1 .. L, as one
    op: `z` (L, ..., n) holds each position's input term (time-major: z[k] is step k+1),
    `w` (n, n) is the recurrent weight (or w of shape () and z (L, ...): a scalar
    recurrence, S_k = act(z_k + w S_{k-1}) elementwise), `s0` the initial state (broadcast
    against z[0]; None for none: S_1 = act(z_1)), `activation` "tanh", "sigmoid" or
    "identity". Returns S_1 .. S_L stacked like z.

    The same numbers as the loop of `addmm` and the activation, except the gradient of `w`:
    backward sums its L per-position products as one matrix product over all positions,
    which rounds differently (the loop's terms, in another order), and costs one NumPy call
    instead of 2 L. A short linear scalar recurrence ("identity", w of shape (), L times a
    step's size at most 2048, as the counter's) is computed in closed form, S = P z and
    backward P^T g with P[k, j] = w^(k-j): the loop's terms summed in another order, in one
    product each way instead of 2 L calls. Backward reads the states, not the
    pre-activations."""
    return _recurrence_operands("rnn", z, w, s0, activation)


_OPERANDS = (_Tensor, np.ndarray)


def _recurrence_operands(name: str, z: Any, w: Any, s0: Any,
                         activation: str) -> tuple[tuple, dict]:
    """The operands and options of a call of rnn or rnn_last, checked (`name` for errors); a
    number for w or s0 becomes a 0-d array of z's floating dtype (the recurrence reads its
    shape, and a Python float must not promote a float32 recurrence)."""
    if not isinstance(w, _OPERANDS) or s0 is not None and not isinstance(s0, _OPERANDS):
        like = np.asarray(_data(z, name))
        dtype = like.dtype if like.dtype.kind == "f" else np.float64
        w, s0 = (np.asarray(_data(x, name), dtype) if x is not None
                 and not isinstance(x, _OPERANDS) else x for x in (w, s0))
    shapes = [np.shape(_data(x, name)) for x in (z, w) + ((s0,) if s0 is not None else ())]
    shape_z, shape_w = shapes[0], shapes[1]
    if activation not in _ACTIVATIONS:
        raise ValueError(f"{name}: activation must be one of {', '.join(_ACTIVATIONS)}, got "
                         f"{activation!r}")
    scalar = shape_w == () and len(shape_z) >= 1
    if not scalar and (len(shape_z) < 2 or shape_w != (shape_z[-1], shape_z[-1])) \
            or shape_z[:1] == (0,):
        raise ValueError(f"{name}: expected z of shape (L >= 1, ..., n) and w of shape (n, n), "
                         f"or w of shape () and z (L >= 1, ...), got z {shape_z} and w {shape_w}")
    if s0 is None:
        return (z, w), {"activation": activation}
    # (A vector recurrence's s0 has the state's axis: S_0 w is a product.)
    if not _broadcasts_to(shapes[2], shape_z[1:]) or not scalar and shapes[2][-1:] != shape_z[-1:]:
        raise ValueError(f"{name}: initial state of shape {shapes[2]} does not broadcast to a "
                         f"step's shape {shape_z[1:]} (z {shape_z})")
    return (z, w, s0), {"activation": activation}


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    return len(shape) <= len(target) and all(
        m in (1, n) for m, n in zip(shape[::-1], target[::-1]))


rnn = defop("rnn", _rnn, _rnn_vjps, Domain("rnn", ((-1.5, 1.5), (-0.8, 0.8), (-1.0, 1.0))),
            saves=("output", 1, 2), prepare=_rnn_call)  # not z: backward reads the states


# rnn_last: S_L alone (a many-to-one recurrence: the counter, a sequence classifier). A linear
# scalar recurrence without s0 is S_L = sum_j w^(L-1-j) z_j, one product with the powers of w
# each way (L m multiplications, always cheaper than the loop); any other recurrence runs
# rnn's loop, and its backward runs it again from z and seeds rnn's deltas at step L alone.


def _last_closed_form(z, w, s0, activation):
    """Whether S_L is the closed form's: identity, no s0, a scalar w, L > 1."""
    return activation == "identity" and s0 is None and w.size == 1 and len(z) > 1 and (
        w.ndim == 0 or z.ndim > 1 and z.shape[-1] == 1)


# What the weights of the last length and dtype are made from, read and replaced whole
# (threads never see half of one), at a third of an lru_cache's cost: (length, dtype, the
# open interval of log|w| whose powers up to L-1 are normal numbers, the exponents L-1 .. 0,
# the factors L-1 .. 1).
_LAST_TABLES: list = [None]


def _last_tables(length, dtype):
    low, high = _log_range(dtype)
    _, _, exponents, factors = _exponent_tables(length, dtype)
    return length, dtype, low / (length - 1), high / (length - 1), exponents, factors


def _last_weights(w, z):
    """p = [w^(L-1), .., w, 1] = dS_L/dz_j and q = [(L-1) w^(L-2), .., 1] = dp_j/dw for
    j < L-1 (L = len(z) > 1, in z and w's dtype); None where a power is not normal (the loop
    decides: `_normal_powers`). New arrays: the call's residual, which nothing else holds."""
    dtype = z.dtype if z.dtype is w.dtype else np.result_type(z, w)  # `_dtype_of`
    length = len(z)
    tables = _LAST_TABLES[0]
    if tables is None or tables[0] != length or tables[1] is not dtype:
        tables = _LAST_TABLES[0] = _last_tables(length, dtype)
    value = w.item()
    scale = builtins.abs(value)
    # Not for w = 0: its zero powers times an inf in z would be an invalid operation (an
    # error under a caller's np.errstate) where the loop, after a NaN, makes none. (NaN and
    # inf fail the comparison.)
    if scale != 1.0 and not (scale != 0.0 and tables[2] < math.log(scale) < tables[3]):
        return None
    # w itself where it is 0-d (a Python float costs a conversion), computed in `dtype`.
    p = _np_power(w if w.ndim == 0 else value, tables[4])
    return p, _np_multiply(tables[5], p[1:])


def _rnn_last(z, w, s0=None, *, activation):
    """S_L, and the residual its VJPs read: the closed form's weights (p, q), or None where
    the loop computed S_L (its VJPs run the loop again)."""
    # The closed form wherever every power is normal and w is not 0. Unlike rnn's matrix P,
    # whose zeros above the diagonal meet z_j of later steps, p holds the very weights the loop
    # gives each z_j in S_L, none of them 0: an inf or NaN in z makes S_L inf or NaN as in the
    # loop, with no check of z.
    if _last_closed_form(z, w, s0, activation):
        weights = _last_weights(w, z)
        if weights is not None:
            if z.ndim == 2:  # (the method: np.dot's dispatch costs a third more)
                return weights[0].dot(z), weights
            last = _np_dot(weights[0], z.reshape(len(z), -1))
            return _np_asarray(last).reshape(z.shape[1:]), weights
    # A copy: not a view holding every state.
    return _rnn(z, w, s0, activation=activation)[-1].copy(), None


def _rnn_last_vjps(arrays, options, inputs):
    """The VJPs of one rnn_last call: in closed form, D_j = w^(L-1-j) g for z (the loop's
    repeated products, whatever g holds) and sum_j (L-1-j) w^(L-2-j) z_j . g for w (where
    that sum is finite, so z and g are); else rnn's VJPs, on the states recomputed
    from z and the cotangent g at step L (zero before), computed by the first VJP to run
    and let go by the last one the sweep calls (read and replaced whole, as rnn's deltas)."""
    memo: list = [None]  # (g, z, w, states, cotangent of every state, rnn's VJPs)
    last, count = _last_input(inputs), len(arrays)

    def unrolled(i, g, z, w, s0, activation):
        entry = memo[0]
        if entry is None or entry[0] is not g or entry[1] is not z or entry[2] is not w:
            states = _rnn(z, w, s0, activation=activation)
            g_all = np.zeros(states.shape, np.result_type(g, states))
            g_all[-1] = g
            # rnn's VJPs made here, not per call: the closed form never needs them.
            entry = memo[0] = (g, z, w, states, g_all, _recurrence_vjps(activation, last, count))
        if i == last:
            memo[0] = None
        operands = (z, w) if s0 is None else (z, w, s0)
        return entry[5][i](entry[4], entry[3], *operands, activation=activation)

    # `weights`, what the VJPs get as `out`: the forward's residual, (p, q) or None.
    def z_vjp(g, weights, z, w, s0=None, *, activation):
        if weights is not None:
            if g.ndim == 0:
                return _np_multiply(weights[0], g)
            # One product each, p_j g_i: np.dot of a column and a row costs a third less
            # than broadcasting (the same bits: no sums).
            return _np_dot(weights[0][:, None], g.reshape(1, -1)).reshape(z.shape)
        return unrolled(0, g, z, w, s0, activation)

    def w_vjp(g, weights, z, w, s0=None, *, activation):
        if weights is not None:
            # (np.vdot, not dot: it warns of no underflow, as the loop's VJPs do not.)
            grad = _np_vdot(weights[1].dot(z[:-1] if z.ndim == 2 else
                                           z[:-1].reshape(len(z) - 1, -1)), g)
            # A sum of products with an inf or NaN in z or g is not finite (inf times
            # q's zeros is NaN): checked on the one number, not on every element.
            if math.isfinite(grad):
                # A NumPy scalar for w of shape (): the sweep makes it its own array.
                return grad if w.ndim == 0 else _np_asarray(grad).reshape(w.shape)
        return unrolled(1, g, z, w, s0, activation)

    def s0_vjp(g, weights, z, w, s0, *, activation):
        return unrolled(2, g, z, w, s0, activation)

    return (z_vjp, w_vjp, s0_vjp)[:count]


def _rnn_last_call(z: Any, w: Any, s0: Any = None,
                   activation: str = "tanh") -> tuple[tuple, dict]:
    """The last state S_L of the recurrence `rnn` computes (its operands and options, the
    same numbers as rnn(...)[-1] up to rounding): what a many-to-one model reads, without
    the other states or, in backward, a cotangent for each of them (PyTorch's h_n, Keras'
    return_sequences=False). A linear scalar recurrence without s0 ("identity", w of shape
    (), as the counter's) is computed in closed form: S_L = sum_j w^(L-1-j) z_j, one product
    each way with the L powers of w (the loop's terms summed in another order). Any other
    runs rnn's loop, keeping z rather than the states: backward runs the loop again."""
    return _recurrence_operands("rnn_last", z, w, s0, activation)


rnn_last = defop("rnn_last", _rnn_last, _rnn_last_vjps,
                 Domain("rnn", ((-1.5, 1.5), (-0.8, 0.8), (-1.0, 1.0))), saves=(0, 1, 2),
                 residual=True, prepare=_rnn_last_call)

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
    return np.broadcast_to(_expand_reduced(g, x, axis, keepdims) / count, np.shape(x))


def _max_vjp(g, out, x, axis, keepdims):
    """Split evenly among the maxima: the gradient of the mean of the tied elements."""
    is_max = x == _expand_reduced(out, x, axis, keepdims)
    ties = is_max.sum(axis=axis, keepdims=True)
    return _expand_reduced(g, x, axis, keepdims) * is_max / ties


def _reduction(name: str):
    """The public signature of a reduction: `f(x, axis=None, keepdims=False)`."""

    def call(x: Any, axis: int | Sequence[int] | None = None,
             keepdims: bool = False) -> tuple[tuple, dict]:
        return (x,), {"axis": _reduction_axis(name, x, axis), "keepdims": keepdims}

    call.__doc__ = f"The {name} over `axis` (an int, a tuple, or None for all)."
    return call


def _reduction_axis(name: str, x: Any, axis: Any) -> tuple[int, ...] | None:
    shape = np.shape(_data(x, name))
    if name == "max" and math.prod(shape) == 0:
        raise ValueError(f"max: cannot reduce an empty tensor of shape {shape}")
    if axis is None:
        return None
    if type(axis) is int and -len(shape) <= axis < len(shape):  # the common case, quickly
        return (axis % len(shape),)
    try:
        return tuple(_normalize_axes([axis] if np.ndim(axis) == 0 else list(axis), len(shape)))
    except (ValueError, TypeError):
        raise ValueError(f"{name}: axis {axis!r} is out of range for shape {shape}") from None


sum = defop("sum", lambda x, axis, keepdims: np.sum(x, axis=axis, keepdims=keepdims),
            (_sum_vjp,), Domain("reduction"), saves="inputs", prepare=_reduction("sum"))
mean = defop("mean", lambda x, axis, keepdims: np.mean(x, axis=axis, keepdims=keepdims),
             (_mean_vjp,), Domain("reduction"), prepare=_reduction("mean"))
# The gradient goes to the maxima, split evenly between ties.
max = defop("max", lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims),
            (_max_vjp,), Domain("reduction", distinct=True), prepare=_reduction("max"))

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
_detach = defop("detach", lambda x: x.view(), None, register=False)


def _astype_call(x: Any, dtype: Any = None) -> tuple[tuple, dict]:
    """A copy of the values converted to `dtype`, a floating dtype (x's own if None), as
    `np.ndarray.astype`; the gradient is converted back. The way to convert an argument of
    a compiled function (NumPy cannot read a traced value)."""
    source = np.result_type(_data(x, "astype"))
    target = source if dtype is None else np.dtype(dtype)
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
        else:
            np.add.at(dense, self.index, self.values)

    def densify(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dense = np.zeros(shape, np.result_type(dtype, self.values))
        if self.basic:  # each element once: set, not added to zero (a third of the cost)
            dense[self.index] = self.values
        else:
            np.add.at(dense, self.index, self.values)
        return dense


_BASIC_INDEX = (int, np.integer, slice, type(None), type(Ellipsis))
_BASIC_TYPES = frozenset({int, slice, type(None), type(Ellipsis)})  # the usual ones, exactly


def _getitem_call(x: Any, index: Any) -> tuple[tuple, dict]:
    """`x[index]` with NumPy's rules: ints, slices, None, Ellipsis and integer or boolean
    arrays; repeated integer indices accumulate their gradients."""
    parts = index if type(index) is tuple else (index,)
    basic = True
    for p in parts:  # a loop, not all(...): x[:, t] at every step of an RNN comes through here
        # A set lookup first: a failed isinstance (an int against slice, ...) costs more.
        if type(p) not in _BASIC_TYPES and not isinstance(p, _BASIC_INDEX):
            basic = False
            break
    if not basic:  # an index tensor's values become options: read them as Python would
        parts = tuple(p.data if isinstance(p, _Tensor) else np.asarray(p)
                      if isinstance(p, list) else p for p in parts)
    if not isinstance(x, _Tensor):  # a wrong operand type is a TypeError, not an IndexError
        _data(x, "getitem")
    return (x,), {"index": parts, "basic": basic}


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
    return _slices_vjps(axis + arrays[0].ndim + 1 if axis < 0 else axis,
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
        return tuple(tensors), {"axis": axis}

    call.__doc__ = doc
    return call


stack = defop("stack", lambda *xs, axis: np.stack(xs, axis=axis), _stack_vjps, Domain("stack"),
              saves="nothing",
              prepare=_joining("stack", "Join tensors of one shape along a new axis."))
concatenate = defop("concatenate", lambda *xs, axis: np.concatenate(xs, axis=axis),
                    _concatenate_vjps, Domain("concatenate"), saves="nothing",
                    prepare=_joining("concatenate", "Join tensors along an existing axis."))

# --- losses (mean over every element; prediction and target of one shape) -------------------


def _loss(name: str, prediction: str):
    """The public signature of a loss: `f(prediction, target)`, of one shape."""

    def call(a: Any, b: Any) -> tuple[tuple, dict]:
        shapes = np.shape(_data(a, name)), np.shape(_data(b, name))
        if shapes[0] != shapes[1]:
            raise ValueError(f"{name}: {prediction} of shape {shapes[0]} and target "
                             f"of shape {shapes[1]} differ")
        return (a, b), {}

    call.__doc__ = f"{name}({prediction}, target), mean-reduced."
    return call


def _bounded(forward, prediction: str, bounds: dict[int, tuple[float, float]]):
    """`forward`, refusing operands outside their closed interval (`bounds`: position ->
    (low, high)). In the forward, not in `prepare`, so that a compiled replay checks every
    call's values too."""

    def checked(*arrays):
        for i, (low, high) in bounds.items():
            values = arrays[i]
            # The reductions themselves: ndarray.min and .max add a Python layer each.
            if np.size(values) and not (_min(values, None) >= low and _max(values, None) <= high):
                what = prediction if i == 0 else "target"
                raise ValueError(f"{what} must lie in [{low:g}, {high:g}], got values "
                                 f"from {np.min(values):g} to {np.max(values):g}")
        return forward(*arrays)

    checked.__doc__ = forward.__doc__
    return checked


_min, _max, _sum = np.minimum.reduce, np.maximum.reduce, np.add.reduce
_FLOAT64 = np.dtype(np.float64)  # a singleton: `is` tests it without converting a type


def _mean(x):
    """np.mean of every element of `x`, float64 without np.mean's Python layers (some 20k
    instructions per loss call): the same sum and division, so the same bits."""
    if x.dtype is not _FLOAT64:  # float16 is summed in float32 by np.mean: leave it the rules
        return np.mean(x)
    return _sum(x, None) / x.size


def _clip_probability(p):
    eps = np.finfo(np.result_type(p, np.float32)).eps
    return np.clip(p, eps, 1.0 - eps)


def _bce(p, t):
    """Binary cross-entropy of probabilities `p` against targets `t`, mean-reduced. `p` is
    clipped to [eps, 1 - eps] (eps of its dtype) so that p of exactly 0 or 1 stays finite."""
    pc = _clip_probability(p)
    return -_mean(t * np.log(pc) + (1.0 - t) * np.log1p(-pc))


def _bce_p_vjp(g, out, p, t):
    # Taken at the clipped p, as PyTorch does, so a saturated output still gets a direction.
    pc = _clip_probability(p)
    return (pc - t) / (pc * (1.0 - pc)) * (g / np.size(p))


def _bce_t_vjp(g, out, p, t):
    pc = _clip_probability(p)
    return (np.log1p(-pc) - np.log(pc)) * (g / np.size(p))


def _bce_logits(z, t):
    """Binary cross-entropy of logits `z` (probability sigmoid(z)) against targets `t`,
    mean-reduced; max(z, 0) - z t + log(1 + exp(-|z|)) is finite for every z."""
    e = np.exp(-np.abs(z))
    out = np.asarray(_mean(np.maximum(z, 0.0) - z * t + np.log1p(e)))
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
    return (_sigmoid_of(z, e) - t) * (g / z.size)  # z: a tensor's array


def _mse(y, t):
    """Mean squared error: mean((y - t)^2), and the residual its VJPs read: y - t."""
    d = _np_subtract(y, t)
    return _mean(np.square(d)), d


binary_cross_entropy = defop(
    "binary_cross_entropy", _bounded(_bce, "probabilities", {0: (0.0, 1.0), 1: (0.0, 1.0)}),
    (_bce_p_vjp, _bce_t_vjp), Domain("loss", _PROBABILITY), saves="inputs",
    prepare=_loss("binary_cross_entropy", "probabilities"))
binary_cross_entropy_with_logits = defop(
    "binary_cross_entropy_with_logits", _bounded(_bce_logits, "logits", {1: (0.0, 1.0)}),
    (_bce_logits_z_vjp, lambda g, out, z, t: z * (-g / np.size(z))),
    Domain("loss", ((-6.0, 6.0), (0.01, 0.99))), saves=("output", 0, 1),
    prepare=_loss("binary_cross_entropy_with_logits", "logits"))
mse_loss = defop(
    "mse_loss", _mse,
    # d = y - t from the forward (y and t are not kept). The scales as Python floats: a third
    # of the cost of 0-d array arithmetic (in float32 rounded once, not twice).
    (lambda g, d: _np_multiply(d, 2.0 * float(g) / d.size),  # d: an array or a NumPy scalar
     lambda g, d: _np_multiply(d, -2.0 * float(g) / d.size)),
    Domain("loss"), saves="nothing", residual=True, prepare=_loss("mse_loss", "prediction"))

# --- elementwise, continued: pairs and bounds -----------------------------------------------


def _winner_vjp(wins):
    """The VJP of one operand of maximum (`wins` = np.greater) or minimum (np.less): g where
    it wins, half of g where the two tie (the gradient of their mean), zero elsewhere."""

    def first(g, out, a, b):
        return np.where(a == b, 0.5 * g, np.where(wins(a, b), g, 0))

    def second(g, out, a, b):
        return np.where(a == b, 0.5 * g, np.where(wins(b, a), g, 0))

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
    zero where the bound holds x."""
    _data(x, "clip")
    if low is None and high is None:
        raise ValueError("clip: give low, high or both")
    bounds = [-math.inf if low is None else low, math.inf if high is None else high]
    for i, bound in enumerate(bounds):
        if not isinstance(bound, numbers.Real) or math.isnan(bound):
            raise TypeError(f"clip: {('low', 'high')[i]} must be a number or None, got {bound!r}")
    if bounds[0] > bounds[1]:
        raise ValueError(f"clip: low={low} is above high={high}")
    return (x,), {"low": float(bounds[0]), "high": float(bounds[1])}


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
        shape = np.shape(_data(x, name))
        if not isinstance(axis, (int, np.integer)) or not -len(shape) <= axis < len(shape):
            raise ValueError(f"{name}: axis {axis!r} is out of range for shape {shape}")
        return (x,), {"axis": int(axis) % len(shape)}

    call.__doc__ = doc
    return call


def _softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))  # at most 1: no overflow
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


softmax = defop(
    "softmax", _softmax,
    (lambda g, out, axis: out * (g - np.sum(g * out, axis=axis, keepdims=True)),),
    Domain("softmax"), saves="output",
    prepare=_axis_call("softmax", "exp(x) / sum(exp(x)) along `axis` (the last by default), "
                                  "computed from x - max(x) so that no exp overflows."))
log_softmax = defop(
    "log_softmax", _log_softmax,
    (lambda g, out, axis: g - np.exp(out) * np.sum(g, axis=axis, keepdims=True),),
    Domain("softmax"), saves="output",
    prepare=_axis_call("log_softmax", "x - log(sum(exp(x))) along `axis` (the last by "
                                      "default), computed from x - max(x): finite for "
                                      "every finite x."))


def _var_call(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False,
              ddof: float = 0) -> tuple[tuple, dict]:
    """The variance over `axis` (an int, a tuple, or None for all), NumPy's:
    sum((x - mean)^2) / (n - ddof) for n elements per reduction (ddof=0: the population
    variance; ddof=1: the unbiased sample variance, PyTorch's default)."""
    axes = _reduction_axis("var", x, axis)
    shape = np.shape(_data(x, "var"))
    n = math.prod(shape) if axes is None else math.prod(shape[i] for i in axes)
    if not isinstance(ddof, numbers.Real) or ddof < 0:
        raise ValueError(f"var: ddof must be a number >= 0, got {ddof!r}")
    if n - ddof <= 0:
        raise ValueError(f"var: {n} elements per reduction (shape {shape}, axis {axis!r}) leave "
                         f"no degrees of freedom with ddof={ddof}")
    return (x,), {"axis": axes, "keepdims": keepdims, "ddof": ddof}


def _var_vjp(g, out, x, axis, keepdims, ddof):
    n = x.size if axis is None else math.prod(x.shape[i] for i in axis)
    centred = x - np.mean(x, axis=axis, keepdims=True)
    return _expand_reduced(g, x, axis, keepdims) * centred * (2.0 / (n - ddof))


var = defop("var", lambda x, axis, keepdims, ddof: np.var(x, axis=axis, keepdims=keepdims,
                                                          ddof=ddof),
            (_var_vjp,), Domain("reduction"), saves="inputs", prepare=_var_call)

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
    finite z), and the residual its VJP reads: the probabilities softmax(z)."""
    index = _labels(z, labels)
    shifted = z - np.max(z, axis=-1, keepdims=True)
    e = np.exp(shifted)
    total = np.sum(e, axis=-1, keepdims=True)
    picked = np.take_along_axis(shifted, index, axis=-1) - np.log(total)
    return -_mean(picked), e / total


def _cross_entropy_vjp(g, p, z, labels):
    """(softmax(z) - onehot(labels)) g / n, for n examples."""
    scale = g / labels.size
    grad = p * scale
    index = _labels(p, labels)
    np.put_along_axis(grad, index, np.take_along_axis(grad, index, axis=-1) - scale, axis=-1)
    return grad


def _cross_entropy_call(logits: Any, labels: Any) -> tuple[tuple, dict]:
    """The cross-entropy of `logits` of shape (..., classes) against integer class `labels`
    of shape (...), mean-reduced over the examples: mean(logsumexp(z) - z[label]), PyTorch's
    `F.cross_entropy` with the classes on the last axis. `labels` is a NumPy array of
    integers (or of integer values; a Tensor of them too) in [0, classes); it gets no
    gradient."""
    shape = np.shape(_data(logits, "cross_entropy"))
    if isinstance(labels, _Tensor) and labels.requires_grad:
        raise TypeError(f"cross_entropy: labels (shape {labels.shape}) require grad, but class "
                        "labels get none; pass an integer array or labels.detach()")
    label_shape = np.shape(_data(labels, "cross_entropy"))
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
    shape = np.shape(_data(x, "squeeze"))
    if axis is None:
        axes = [i for i, n in enumerate(shape) if n == 1]
    else:
        try:
            axes = _normalize_axes([axis] if isinstance(axis, (int, np.integer))
                                   else list(axis), len(shape))
        except (ValueError, TypeError):
            raise ValueError(f"squeeze: axis {axis!r} is out of range for shape {shape}") from None
        longer = [i for i in axes if shape[i] != 1]
        if longer:
            raise ValueError(f"squeeze: axis {longer[0]} of shape {shape} has length "
                             f"{shape[longer[0]]}, not 1")
    return (x,), {"shape": tuple(n for i, n in enumerate(shape) if i not in axes)}


def _flatten_call(x: Any, start_dim: int = 0, end_dim: int = -1) -> tuple[tuple, dict]:
    """The axes from `start_dim` to `end_dim` (both included) merged into one, PyTorch's
    `flatten`: `flatten(x)` is 1-D, `flatten(x, 1)` keeps the batch axis. A 0-d `x`
    becomes of shape (1,). A reshape: the graph records the shape it leaves."""
    shape = np.shape(_data(x, "flatten")) or (1,)
    try:
        start, end = _normalize_axes([start_dim], len(shape))[0], _normalize_axes(
            [end_dim], len(shape))[0]
    except (ValueError, TypeError):
        raise ValueError(f"flatten: start_dim={start_dim!r} or end_dim={end_dim!r} is out of "
                         f"range for shape {np.shape(_data(x, 'flatten'))}") from None
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

COMPOSITIONS = ("split",)


def split(x: Any, sections: int | Sequence[int], axis: int = 0) -> list[_Tensor]:
    """`x` cut along `axis` into a list of tensors, NumPy's `split`: an int `sections` cuts
    it into that many equal parts (it must divide the axis), a sequence of indices cuts it
    before each one. Each part is a slice of `x` (a `getitem`), so the gradient of each
    lands in its place."""
    shape = np.shape(_data(x, "split"))
    if not isinstance(axis, (int, np.integer)) or not -len(shape) <= axis < len(shape):
        raise ValueError(f"split: axis {axis!r} is out of range for shape {shape}")
    axis = int(axis) % len(shape)
    length = shape[axis]
    if isinstance(sections, (int, np.integer)):
        if sections < 1 or length % sections:
            raise ValueError(f"split: {sections} sections do not divide axis {axis} of shape "
                             f"{shape} equally")
        step = length // sections
        cuts = list(range(step, length, step)) if step else [0] * (sections - 1)
    else:
        cuts = [builtins.min(builtins.max(int(i) + length if i < 0 else int(i), 0), length)
                for i in sections]
    lead = (slice(None),) * axis
    bounds = zip([0, *cuts], [*cuts, length])
    return [getitem(x, lead + (slice(start, builtins.max(start, stop)),))
            for start, stop in bounds]
