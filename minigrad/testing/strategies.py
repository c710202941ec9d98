"""Hypothesis strategies for gradient tests: arrays that numerical differentiation handles
well, shapes that broadcast, operands that contract, and whole cases for every op family in
the op table (`minigrad.OPS`), from each op's `Domain`.

    from hypothesis import given
    from minigrad.testing import gradcheck
    from minigrad.testing import strategies as mst

    @given(mst.arrays(low=-2, high=2))
    def test_my_op(x):
        gradcheck(my_op, x)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import without_hypothesis

try:
    from hypothesis import strategies as st
    from hypothesis.errors import InvalidArgument
    from hypothesis.extra import numpy as hnp
except ModuleNotFoundError as missing:  # Hypothesis is in the test extra, not a dependency
    raise without_hypothesis("strategies", missing) from None

import minigrad

__all__ = [
    "Case", "arrays", "broadcastable_shapes", "einsum_operands", "matmul_shapes", "op_cases",
    "permutations", "shapes", "tensordot_operands",
]

# Far enough from a kink that central differences with eps = 1e-6 never straddle it.
AVOID_MARGIN = 0.05


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4):
    """Array shapes, small enough for element-by-element numerical gradients; of two or more
    axes, the last two are often equal: a VJP that transposes a gradient where it should
    not is wrong only for a square one, which is otherwise a rare draw."""
    any_shape = hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                                 max_side=max_side)
    if max_dims < 2:
        return any_shape
    square = hnp.array_shapes(min_dims=max(min_dims, 2), max_dims=max_dims,
                              min_side=min_side, max_side=max_side)
    return st.one_of(any_shape, square.map(lambda s: (*s[:-1], s[-2])))


@st.composite
def arrays(draw, shape: Any = None, *, low: float = -3.0, high: float = 3.0,
           avoid: Sequence[float] = (), distinct: bool = False, dtype: Any = np.float64):
    """Finite arrays with values in [low, high], none of them nonzero and below SMALLEST
    (1e-3) in magnitude where [low, high] has values of that sign beyond it: an element
    whose gradient is below gradcheck's atol is checked against nothing.

    `shape` is a tuple (or a list), a strategy of tuples, or None for `shapes()`. `avoid`
    lists points (non-differentiable ones such as relu's 0) that values keep AVOID_MARGIN
    away from;
    `distinct` draws values without ties (for max), spread over what remains of [low,
    high], each somewhere in the middle half of its own slot: at least half of (its total
    length) / size apart (the rule on values below SMALLEST does not hold for these: one
    may fall near 0).
    An array of two or more axes is laid out in C or in Fortran order (a Tensor keeps the
    layout): a VJP that assumes a C array (writes through `reshape(-1)` of a new array
    like its operand, say) is drawn the operand it fails on.
    `dtype`: the values are drawn as float64 and cast to it; to an integer dtype they are
    truncated, so `avoid` and the rule on small values do not hold there (integer operands
    are data: labels, indices, which need neither).
    """
    if shape is None:
        shape = shapes()
    if isinstance(shape, list):  # a shape written as a list: as the tuple
        shape = tuple(shape)
    if not isinstance(shape, tuple):
        shape = draw(shape)
    layout = np.asfortranarray if len(shape) >= 2 and draw(st.booleans()) else np.asarray
    size = int(np.prod(shape))
    pieces = _allowed_intervals(low, high, avoid)
    if distinct:
        order = np.array(draw(st.permutations(range(size))), dtype=np.float64)
        # each value anywhere in the middle half of its slot: slots half a slot apart at
        # least, and values other than the same evenly spaced ones on every draw
        shift = draw(hnp.arrays(np.float64, (size,), elements=st.floats(-0.25, 0.25)))
        lengths = np.array([b - a for a, b in pieces])
        # positions along the allowed pieces laid end to end, then back onto the real line
        along = lengths.sum() * (order + 0.5 + shift) / max(size, 1)
        ends = np.cumsum(lengths)
        k = np.minimum(np.searchsorted(ends, along), len(pieces) - 1)
        starts = np.array([a for a, _ in pieces])
        values = starts[k] + along - (ends[k] - lengths[k])
        return layout(np.clip(values, low, high).reshape(shape).astype(dtype))
    elements = st.one_of([st.floats(a, b, allow_nan=False, allow_infinity=False,
                                    allow_subnormal=False, width=64).map(_not_tiny(a, b))
                          for a, b in pieces])
    values = draw(hnp.arrays(np.float64, shape, elements=elements))
    return layout(values.astype(dtype))


# Below this magnitude a value's gradients are below gradcheck's atol (1e-6) in the ops'
# domains, so an element drawn there would be checked against nothing: such draws (which
# Hypothesis favours) move out to it. Zero stays zero.
SMALLEST = 1e-3


def _not_tiny(low: float, high: float) -> Callable[[float], float]:
    def move(v: float) -> float:
        if v == 0.0 or abs(v) >= SMALLEST:
            return v
        out = float(np.copysign(SMALLEST, v))
        # (an interval holding no value that far out on v's side keeps v: clipped to its
        # end, every draw of [0, 5e-4] would be 0 or 5e-4)
        return out if low <= out <= high else v
    return move


def _allowed_intervals(low: float, high: float,
                       avoid: Sequence[float]) -> list[tuple[float, float]]:
    """[low, high] less the open AVOID_MARGIN neighbourhood of each point in `avoid`, as
    disjoint intervals."""
    pieces = [(low, high)]
    for point in avoid:
        hole = (point - AVOID_MARGIN, point + AVOID_MARGIN)
        pieces = [piece for a, b in pieces
                  for piece in ((a, min(b, hole[0])), (max(a, hole[1]), b))
                  if piece[0] < piece[1] or (a, b) == piece]
    if not pieces:
        raise InvalidArgument(f"arrays: no value in [{low}, {high}] is AVOID_MARGIN = "
                              f"{AVOID_MARGIN} away from every point of avoid={tuple(avoid)}")
    return pieces


def broadcastable_shapes(num_shapes: int = 2, max_dims: int = 3, max_side: int = 4):
    """Tuples of `num_shapes` shapes that broadcast together (either side may be smaller).
    As with `shapes`, the shape they broadcast to is often square in its last two axes
    (where max_dims and max_side allow): a transposed gradient is wrong only there."""
    any_shapes = hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=0, max_dims=max_dims, max_side=max_side
    ).map(lambda b: b.input_shapes)
    if max_dims < 2 or max_side < 2:
        return any_shapes
    return st.one_of(any_shapes, _to_square(num_shapes, max_dims, max_side))


@st.composite
def _to_square(draw, num_shapes: int, max_dims: int, max_side: int):
    """Shapes broadcasting to (..., n, n), n >= 2: one of them that shape, each other one a
    suffix of it with some sides 1."""
    lead = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims - 2, max_side=max_side))
    n = draw(st.integers(2, max_side))
    out = (*lead, n, n)
    full = draw(st.integers(0, num_shapes - 1))
    drawn = []
    for i in range(num_shapes):
        if i == full:
            drawn.append(out)
            continue
        k = draw(st.integers(0, len(out)))
        drawn.append(tuple(side if draw(st.booleans()) else 1 for side in out[len(out) - k:]))
    return tuple(drawn)


@st.composite
def matmul_shapes(draw):
    """Shape pairs that `@` accepts: 1-D on either side, and broadcast batch dimensions."""
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    batch_a, batch_b = draw(hnp.mutually_broadcastable_shapes(
        num_shapes=2, min_dims=0, max_dims=2, max_side=3).map(lambda b: b.input_shapes))
    a = (k,) if draw(st.booleans()) and not batch_a else batch_a + (n, k)
    b = (k,) if draw(st.booleans()) and not batch_b else batch_b + (k, m)
    return a, b


@st.composite
def tensordot_operands(draw, low: float = -3.0, high: float = 3.0):
    """(a, b, axes) for `tensordot`: axes drawn as an int or as a pair of axis lists."""
    n_contract = draw(st.integers(0, 2))
    shared = draw(hnp.array_shapes(min_dims=n_contract, max_dims=n_contract, max_side=3))
    free_a = draw(shapes(max_dims=2, max_side=3))
    free_b = draw(shapes(max_dims=2, max_side=3))
    if draw(st.booleans()):
        a_shape, b_shape, axes = free_a + shared, shared + free_b, n_contract
    else:
        a_axes = draw(st.permutations(range(len(free_a) + n_contract)))[:n_contract]
        b_axes = draw(st.permutations(range(len(free_b) + n_contract)))[:n_contract]
        a_shape = _place(free_a, a_axes, shared)
        b_shape = _place(free_b, b_axes, shared)
        axes = (list(a_axes), list(b_axes))
    a = draw(arrays(a_shape, low=low, high=high))
    b = draw(arrays(b_shape, low=low, high=high))
    return a, b, axes


def _place(free: tuple, axes: Sequence[int], shared: tuple) -> tuple:
    """A shape with `shared[i]` at position `axes[i]` and the free sides elsewhere, in order."""
    shape: list = [None] * (len(free) + len(shared))
    for axis, side in zip(axes, shared):
        shape[axis] = side
    sides = iter(free)
    return tuple(side if side is not None else next(sides) for side in shape)


@st.composite
def einsum_operands(draw, low: float = -3.0, high: float = 3.0):
    """(subscripts, operands) with explicit output: contractions, outer products, traces,
    diagonals and letters summed away in one operand alone; in half the draws every letter
    has one size (2 or 3), so operands are square (a transposed gradient is seen there)."""
    letters = "ijkl"
    sizes = {c: draw(st.integers(1, 3)) for c in letters}
    if draw(st.booleans()):  # one size for all: an operand of two letters or more is square
        sizes = dict.fromkeys(letters, draw(st.integers(2, 3)))
    n_operands = draw(st.integers(1, 3))
    specs = [
        "".join(draw(st.lists(st.sampled_from(letters), min_size=1, max_size=3)))
        for _ in range(n_operands)
    ]
    used = sorted(set("".join(specs)))
    output = "".join(draw(st.permutations(used))[: draw(st.integers(0, len(used)))])
    # (away from 0 with two operands or more: a product of several values near SMALLEST has a
    # gradient below gradcheck's atol, checked against nothing)
    avoid = (0.0,) if n_operands > 1 else ()
    operands = [draw(arrays(tuple(sizes[c] for c in spec), low=low, high=high, avoid=avoid))
                for spec in specs]
    return ",".join(specs) + "->" + output, operands


@dataclass(frozen=True)
class Case:
    """One drawn use of an op: `call(*operands)` gives the output to differentiate."""

    operands: tuple[np.ndarray, ...]
    call: Callable[..., Any]
    description: str


def op_cases(op: Any, dtype: Any = np.float64):
    """Drawn `Case`s for an op of the table (its name, or its entry in `minigrad.OPS`), from
    its Domain (family, values, kinks). Another name is a ValueError listing the table's;
    anything else (the op's function itself, say) a TypeError."""
    if not isinstance(op, (str, minigrad.primitive.Op)):
        raise TypeError(f"op_cases: op must be an op's name or its entry in minigrad.OPS, got "
                        f"{type(op).__name__} {op!r}")
    name = op if isinstance(op, str) else op.name
    if name not in minigrad.OPS:
        raise ValueError(f"op_cases: no op {name!r} in minigrad.OPS; its ops are "
                         f"{', '.join(sorted(minigrad.OPS))}")
    domain = minigrad.OPS[name].domain
    # the op as users call it (an op defined after import is in the table too)
    return _FAMILIES[domain.family](minigrad.OPS[name].function, domain, dtype)


def _values(domain: Any, i: int, shape: Any, dtype: Any):
    low, high = domain.interval(i)
    return arrays(shape, low=low, high=high, avoid=domain.avoid, distinct=domain.distinct,
                  dtype=dtype)


def _case(fn: Callable, operands: Sequence[np.ndarray], description: str = "", **kwargs: Any):
    return Case(tuple(operands), lambda *xs: fn(*xs, **kwargs), description or str(kwargs))


@st.composite
def _unary(draw, fn, domain, dtype):
    return _case(fn, [draw(_values(domain, 0, shapes(), dtype))])


def _pair(shape_pairs: Any, joiner: str) -> Callable:
    """A family of two operands whose shapes come from `shape_pairs`."""

    @st.composite
    def family(draw, fn, domain, dtype):
        shape_a, shape_b = draw(shape_pairs)
        a = draw(_values(domain, 0, shape_a, dtype))
        b = draw(_values(domain, 1, shape_b, dtype))
        return _case(fn, [a, b], f"{shape_a} {joiner} {shape_b}")

    return family


@st.composite
def _addmm(draw, fn, domain, dtype):
    shape_a, shape_b = draw(matmul_shapes())
    shape_out = np.matmul(np.zeros(shape_a), np.zeros(shape_b)).shape
    shape_c = draw(hnp.broadcastable_shapes(shape_out, min_dims=0, max_dims=3))
    c, a, b = (draw(_values(domain, i, shape, dtype))
               for i, shape in enumerate((shape_c, shape_a, shape_b)))
    return _case(fn, [c, a, b], f"{shape_c} + {shape_a} @ {shape_b}")


@st.composite
def _tensordot(draw, fn, domain, dtype):
    a, b, axes = draw(tensordot_operands(*domain.interval(0)))
    return _case(fn, [a.astype(dtype), b.astype(dtype)], axes=axes)


@st.composite
def _einsum(draw, fn, domain, dtype):
    subscripts, operands = draw(einsum_operands(*domain.interval(0)))
    return Case(tuple(o.astype(dtype) for o in operands),
                lambda *xs: fn(subscripts, *xs), subscripts)


@st.composite
def _reduction(draw, fn, domain, dtype):
    x = draw(_values(domain, 0, shapes(), dtype))
    axes = st.none() | (st.integers(-x.ndim, x.ndim - 1) if x.ndim else st.nothing()) | \
        st.lists(st.integers(0, max(x.ndim - 1, 0)), unique=True, max_size=x.ndim).map(tuple)
    return _case(fn, [x], axis=draw(axes), keepdims=draw(st.booleans()))


@st.composite
def _reshape(draw, fn, domain, dtype):
    x = draw(_values(domain, 0, shapes(), dtype))
    sides = [d for d in range(1, x.size + 1) if x.size % d == 0]
    first = draw(st.sampled_from(sides))
    shape = draw(st.sampled_from([(x.size,), (first, -1), (-1, 1, first), (1, x.size)]))
    return Case((x,), lambda t: fn(t, shape), f"shape={shape}")


def permutations(ndim: int, *, involution: bool | None = None):
    """Axis permutations of `ndim` axes, as tuples. `involution=False` draws only those that
    are not their own inverse (p[p[i]] != i for some i; a 3-cycle of three axes is the
    smallest), which a transpose's gradient must invert, not repeat; `True` only those that
    are; None either."""
    drawn = st.permutations(range(ndim)).map(tuple)
    if involution is None:
        return drawn
    if not involution and ndim < 3:
        raise InvalidArgument(f"permutations: every permutation of {ndim} axes is its own "
                              "inverse; involution=False needs ndim >= 3")
    return drawn.filter(lambda p: _is_involution(p) == involution)


def _is_involution(p: tuple[int, ...]) -> bool:
    return all(p[p[i]] == i for i in range(len(p)))


@st.composite
def _transpose(draw, fn, domain, dtype):
    # Half the cases have three or four axes of one length and a permutation that is not its
    # own inverse: a VJP that applies the permutation instead of its inverse passes on every
    # other one, and on axes of several lengths it fails loudly (a wrong shape), where on
    # these it is silently wrong, which the gradient test must see.
    if draw(st.booleans()):
        side, ndim = draw(st.integers(2, 3)), draw(st.integers(3, 4))
        x = draw(_values(domain, 0, st.just((side,) * ndim), dtype))
        axes = draw(permutations(x.ndim, involution=False))
    else:
        x = draw(_values(domain, 0, shapes(), dtype))
        axes = draw(st.none() | permutations(x.ndim))
    return Case((x,), lambda t: fn(t) if axes is None else fn(t, axes), f"axes={axes}")


@st.composite
def _getitem(draw, fn, domain, dtype):
    x = draw(_values(domain, 0, shapes(min_dims=1), dtype))
    index = draw(st.one_of(
        hnp.basic_indices(x.shape, allow_newaxis=True, allow_ellipsis=True),
        hnp.integer_array_indices(x.shape, result_shape=hnp.array_shapes(max_dims=2, max_side=5)),
    ))
    return _case(fn, [x], f"index={index!r}", index=index)


@st.composite
def _stack(draw, fn, domain, dtype, extend_axis: bool = False):
    shape = draw(shapes(min_dims=1 if extend_axis else 0))
    n = draw(st.integers(1, 3))
    ndim_out = len(shape) + (0 if extend_axis else 1)
    axis = draw(st.integers(-ndim_out, ndim_out - 1))
    operands = []
    for _ in range(n):
        side = list(shape)
        if extend_axis:
            side[axis] = draw(st.integers(1, 3))
        operands.append(draw(_values(domain, 0, tuple(side), dtype)))
    return Case(tuple(operands), lambda *xs: fn(list(xs), axis=axis), f"axis={axis}")


@st.composite
def _apart(draw, domain, dtype):
    """Two operands of broadcastable shapes whose values never come within AVOID_MARGIN of
    each other (where maximum's gradient, or a comparison, jumps)."""
    shape_a, shape_b = draw(broadcastable_shapes(2, max_dims=2, max_side=3))
    low, high = domain.interval(1)
    b = draw(arrays(shape_b, low=low, high=high, avoid=domain.avoid, dtype=dtype))
    low, high = domain.interval(0)
    a = draw(arrays(shape_a, low=low, high=high, dtype=dtype,
                    avoid=(*domain.avoid, *np.asarray(b, np.float64).ravel().tolist())))
    return a, b


@st.composite
def _distinct_pair(draw, fn, domain, dtype):
    a, b = draw(_apart(domain, dtype))
    return _case(fn, [a, b], f"{a.shape} with {b.shape}, never tied")


@st.composite
def _comparison(draw, fn, domain, dtype):
    """A comparison's mask times a + b: the mask selects where the gradient flows, and
    passes none itself."""
    a, b = draw(_apart(domain, dtype))
    return Case((a, b), lambda x, y: fn(x, y) * (x + y), f"mask of {a.shape} against "
                f"{b.shape}, times their sum")


@st.composite
def _where(draw, fn, domain, dtype):
    """A condition (bool, or a 0.0/1.0 mask) selecting, in most draws whose output has two
    elements or more, some elements of a and some of b."""
    shape_c, shape_a, shape_b = draw(broadcastable_shapes(3, max_dims=3, max_side=3))
    out = np.broadcast_shapes(shape_c, shape_a, shape_b)
    # (the rare case on a middle draw: see _classification)
    if int(np.prod(shape_c)) < 2 <= int(np.prod(out)) and draw(st.integers(0, 7)) != 5:
        shape_c = out  # a condition that can select some elements of each of a and b
    condition = draw(hnp.arrays(np.bool_, shape_c))
    if condition.size >= 2 and draw(st.integers(0, 7)) != 5:  # mostly some of a's and some of b's
        i, j = draw(st.permutations(range(condition.size)))[:2]
        condition.flat[i], condition.flat[j] = True, False
    if draw(st.booleans()):  # a mask as comparisons make it: 0.0 and 1.0
        condition = condition.astype(dtype)
    a = draw(_values(domain, 0, shape_a, dtype))
    b = draw(_values(domain, 1, shape_b, dtype))
    return Case((a, b), lambda x, y: fn(condition, x, y),
                f"condition {condition.tolist()!r}, {shape_a}, {shape_b}")


@st.composite
def _clip(draw, fn, domain, dtype):
    low, high = domain.interval(0)
    lower = draw(st.none() | st.floats(low, high - 1.0))
    upper = draw(st.floats(low + 1.0 if lower is None else lower + 0.2, high)
                 if lower is None or draw(st.booleans()) else st.none())
    bounds = tuple(v for v in (lower, upper) if v is not None)
    x = draw(arrays(shapes(), low=low, high=high, avoid=(*domain.avoid, *bounds), dtype=dtype))
    return _case(fn, [x], low=lower, high=upper)


@st.composite
def _softmax(draw, fn, domain, dtype):
    """Mostly along an axis of length 2 or more (along one of length 1 the gradient is 0)."""
    # mostly along an axis of length 2 or more: along one of length 1 the gradient is 0
    shape = draw(shapes(min_dims=1))
    if max(shape) == 1 and draw(st.integers(0, 7)) != 5:  # (see _classification)
        shape = (*shape[:-1], draw(st.integers(2, 4)))
    x = draw(_values(domain, 0, shape, dtype))
    longer = [i for i, n in enumerate(x.shape) if n > 1]
    longer += [i - x.ndim for i in longer]
    axis = draw(st.sampled_from(longer) if longer and draw(st.integers(0, 7)) != 5 else
                st.integers(-x.ndim, x.ndim - 1))
    return _case(fn, [x], axis=axis)


@st.composite
def _classification(draw, fn, domain, dtype):
    """Logits of shape (examples..., classes) and integer labels (a constant of the call);
    one class (a loss of 0, whatever the logits) is a rare draw."""
    lead = draw(shapes(min_dims=0, max_dims=2, max_side=3))
    # mostly 2 classes or more: of one, the loss is 0 whatever the logits
    # (the rare case on a middle draw: Hypothesis favours a range's ends, 0 most)
    classes = 1 if draw(st.integers(0, 15)) == 9 else draw(st.integers(2, 4))
    logits = draw(_values(domain, 0, lead + (classes,), dtype))
    labels = draw(hnp.arrays(np.int64, lead, elements=st.integers(0, classes - 1)))
    return Case((logits,), lambda z: fn(z, labels), f"labels {labels.tolist()!r}")


@st.composite
def _squeeze(draw, fn, domain, dtype):
    """Shapes with at least one axis of length one, in half the draws square in the last
    two; `axis` None, one of them, or several."""
    sides = draw(st.lists(st.integers(1, 3), min_size=1, max_size=4).filter(lambda s: 1 in s))
    if draw(st.booleans()):  # square in the last two axes, as `shapes` often is
        n = draw(st.integers(2, 3))
        sides = [*sides[:1], 1, n, n]
    x = draw(_values(domain, 0, tuple(sides), dtype))
    ones = [i for i, n in enumerate(sides) if n == 1]
    axis = draw(st.none() | st.sampled_from(ones) |
                st.lists(st.sampled_from(ones), min_size=1, unique=True).map(tuple))
    return _case(fn, [x], axis=axis)


@st.composite
def _flatten(draw, fn, domain, dtype):
    x = draw(_values(domain, 0, shapes(), dtype))
    ndim = max(x.ndim, 1)
    start = draw(st.integers(-ndim, ndim - 1))
    end = draw(st.integers(start % ndim, ndim - 1))
    return _case(fn, [x], start_dim=start, end_dim=end)


_FAMILIES: dict[str, Callable] = {
    "unary": _unary,
    "binary": _pair(broadcastable_shapes(), "with"),
    "matmul": _pair(matmul_shapes(), "@"),
    "addmm": _addmm,
    "tensordot": _tensordot,
    "einsum": _einsum,
    "reduction": _reduction,
    "reshape": _reshape,
    "transpose": _transpose,
    "getitem": _getitem,
    "stack": _stack,
    "concatenate": lambda fn, domain, dtype: _stack(fn, domain, dtype, extend_axis=True),
    "loss": _pair(shapes().map(lambda shape: (shape, shape)), "against"),
    "distinct_pair": _distinct_pair,
    "comparison": _comparison,
    "where": _where,
    "clip": _clip,
    "softmax": _softmax,
    "classification": _classification,
    "squeeze": _squeeze,
    "flatten": _flatten,
}
FAMILIES = tuple(_FAMILIES)
