"""Reverse mode: the record of one op application, and the one sweep back over the record.

Every recorded op leaves a `Node`: its place on the tape (a global counter, so tape order is
the order of computation), the vertices of its inputs, one vector-Jacobian product (VJP)
per input, and of the op's arrays and output only those its VJPs read. The graph above a
tensor, in tape order, is that tensor's tape.

`sweep` walks that tape in reverse without recursion: a max-heap keyed by tape position pops
every node after all of its consumers, so each cotangent is complete when it is used, and it
is dropped once passed on. This module knows no op: a VJP returns an array, or an object
following the `Cotangent` protocol (getitem's sparse slice gradient) that the sweep
densifies or adds in place. A node's `vjps` may also be one function returning every
input's cotangent at once (a compiled program's), each an array or `Contributions`.
"""

from __future__ import annotations

import abc
import heapq
import itertools
import math
import types
import weakref
from collections.abc import Collection
from contextvars import ContextVar
from typing import Any

import numpy as np

_tape_position = itertools.count()
# Whether the sweep running in this thread keeps the graph: a VJP holding a whole program's
# values (`minigrad.compile`'s) frees them while it runs only if the sweep does not.
retaining: ContextVar[bool] = ContextVar("minigrad_retain_graph", default=False)
_reduce = np.add.reduce
_FLOAT16 = np.dtype(np.float16)
# NumPy's module __getattr__ keeps CPython 3.11 from caching a `np.name` lookup (some 300
# instructions each time): the sweep uses module-level names.
_ndarray, _asarray, _generic = np.ndarray, np.asarray, np.generic
_function = types.FunctionType  # a node's VJPs as one function (else a sequence of them)
# id(a leaf whose `.data` was set to another shape) -> (a weak reference to it, the tape
# position then, the shape before): a graph recorded before holds gradients of the old
# shape, which summed or broadcast into the new one would be wrong. Empty unless that
# happens: one test a sweep. (By id: a tensor's == is elementwise, no key's.)
_reshaped: dict[int, tuple[weakref.ref, int, tuple[int, ...]]] = {}


def reshaped(leaf: Any, shape: tuple[int, ...]) -> None:
    """Note that `leaf`'s array, of `shape`, is being replaced by one of another shape."""
    key = id(leaf)
    _reshaped[key] = (weakref.ref(leaf, lambda _: _reshaped.pop(key, None)),
                      next(_tape_position), shape)


class Node:
    """One op application on the tape, and the vertex of its output in the graph.

    `inputs[i]` is the vertex of input i (the Node that made it, or a leaf Tensor), or None
    where input i needs no gradient. `args` and `out` are what the VJPs read (`()` and None
    when they read nothing), so an RNN step's pre-activation, say, is freed once its tanh is
    computed. `vjps[i](g, out, *args, **options)` is the gradient for input i.
    """

    __slots__ = ("position", "name", "vjps", "inputs", "args", "options", "out", "shape",
                 "dtype", "site")
    vjps: Any  # None once released, as are the four below
    inputs: Any
    args: Any
    options: Any
    out: np.ndarray | None
    site: Any  # set in anomaly mode: (creation site, input shapes)

    def __init__(self, name: str, vjps: Any, inputs: list, args: tuple, options: dict,
                 out: np.ndarray | None, like: np.ndarray):
        self.position = next(_tape_position)
        self.name = name
        self.vjps = vjps
        self.inputs = inputs
        self.args = args
        self.options = options
        self.out = out
        self.shape = like.shape
        self.dtype = like.dtype


class Cotangent(abc.ABC):
    """What a VJP may return instead of a dense array: a gradient that is cheaper to add
    than to build (getitem's slice of a larger zero array). The sweep calls only these."""

    __slots__ = ()

    @abc.abstractmethod
    def densify(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A new dense array of `shape` holding this gradient."""

    @abc.abstractmethod
    def add_into(self, dense: np.ndarray) -> None:
        """Add this gradient into `dense` (an array this sweep allocated) in place."""


def fits(got: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether a gradient of shape `got` may stand for one of `shape`: `shape` itself, a shape
    that `shape` broadcasts to (a broadcast operand's gradient, summed back to it), or one
    with 1 where `shape` has more, on the same axes (a keepdims sum's g: each entry stands
    for what it summed), or 0-d (a full sum's g): filled in. Not a gradient of fewer axes,
    which broadcasting would line up by the last axis (g for a row sum of a square input
    would fill columns), nor one to fill on some axes and sum on others."""
    lead = len(got) - len(shape)
    return lead >= 0 and all(n == 1 or m == n for m, n in zip(got[lead:], shape)) or _fills(
        got, shape)


def _fills(got: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether a gradient of shape `got` is filled in to `shape`: 0-d, or of its axes with 1
    on some and shape's size on the others (not mixed with axes to sum: ambiguous)."""
    return not got or len(got) == len(shape) and all(m == n or m == 1
                                                     for m, n in zip(got, shape))


def unfit(what: str, got: tuple[int, ...], shape: tuple[int, ...]) -> ValueError:
    """The error of a gradient of shape `got`, given by `what`, for a value of `shape`."""
    return ValueError(
        f"{what} of shape {got} for an operand of shape {shape}: a VJP must return a gradient "
        "of its operand's shape, of a shape that shape broadcasts to (summed back to it), or "
        "of its axes with 1 on some (or 0-d: filled in); not of fewer axes")


def sum_to_shape(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Undo broadcasting: sum `g` over the axes that broadcasting added or stretched.

    This is the one place broadcasting is undone; `g` must `fit` `shape` (a 0-d one, or one
    with 1 where shape has more, is filled in first). A gradient that does not (a VJP's
    mistake: g for a row sum's input, not g[:, None]) is refused rather than broadcast up
    into wrong numbers: a ValueError.
    """
    if g.shape == shape:
        return g
    if g.dtype.type is np.float16:  # summed in float32, as PyTorch sums half precision: NumPy adds
        # float16 row by row in float16, and past 2048 rows of like terms adds nothing more
        return sum_to_shape(g.astype(np.float32), shape).astype(_FLOAT16)
    # np.add.reduce rather than g.sum(): two Python layers less, on every bias's gradient.
    if not shape:
        return _asarray(_reduce(g, None))
    lead = g.ndim - len(shape)
    if lead > 0 and g.shape[lead:] == shape:  # broadcasting only added leading axes (a bias)
        return _sum_leading(g, lead, shape)
    if lead < 0 or any(n != 1 and m != n for m, n in zip(g.shape[lead:], shape)):
        if _fills(g.shape, shape):
            return np.broadcast_to(g, shape)
        raise unfit("a gradient", g.shape, shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    if not axes:
        return g.reshape(shape)
    if axes == tuple(range(len(axes))):  # leading axes only: a bias of shape (1, n)
        return _sum_leading(g, len(axes), g.shape[len(axes):]).reshape(shape)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def _sum_leading(g: np.ndarray, lead: int, shape: tuple[int, ...]) -> np.ndarray:
    """`g` summed over its first `lead` axes, to `shape`. NumPy's add.reduce there adds row
    by row, its inner loop over the few elements of a row (3 to 32 for a bias): 5 to 10
    times slower than a product with a vector of ones, which BLAS computes at its speed,
    or (past 16 MiB of rows of more than 32, where BLAS's matrix-vector product is slower)
    einsum's summing loop. The same terms, added in another order: the rounding of a
    reordered sum, within the float type's precision of the sum of their sizes (and, as
    any BLAS product's, for very long rows of two or three its bits may depend on BLAS's
    thread count, which splits them)."""
    n = math.prod(shape)
    if n <= 1 or not g.size or g.dtype not in _BLAS_FLOATS or not g.flags.c_contiguous:
        return _reduce(g, tuple(range(lead)))  # (one element a row: a contiguous sum)
    table = g.reshape(rows := g.size // n, n)
    if n <= 32 or g.nbytes <= 1 << 24:
        ones = _ones(rows, g.dtype) if rows <= 1 << 16 else np.ones(rows, g.dtype)
        return _np_dot(ones, table).reshape(shape)
    return np.einsum("ij->j", table).reshape(shape)


_BLAS_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))
_np_dot = np.dot
_ONES: dict[tuple[int, np.dtype], np.ndarray] = {}


def _ones(n: int, dtype: np.dtype) -> np.ndarray:
    """A read-only vector of `n` ones, kept for the next call of that length (a few, of up
    to 65,536 ones: a longer one is made for its call)."""
    ones = _ONES.get((n, dtype))
    if ones is None:
        if len(_ONES) >= 16:
            _ONES.clear()
        ones = np.ones(n, dtype)
        ones.flags.writeable = False
        _ONES[n, dtype] = ones
    return ones


class Contributions(list):
    """Several contributions to one vertex's cotangent, in the order a sweep adds them had
    they come from separate nodes: what a compiled program's node returns for an input it
    reads more than once, so that they add up with other nodes' contributions exactly as
    in eager mode (the same terms in the same order)."""

    __slots__ = ()


def accumulate(current: np.ndarray | None, g: Any, owned: bool, shape: tuple[int, ...],
               dtype: np.dtype) -> tuple[np.ndarray, bool]:
    """The one rule by which a contribution `g` joins a vertex's cotangent `current` (None if
    it has none yet): the new cotangent, and whether the sweep allocated it (`owned`: only
    then may it be added into in place; any other array may be a VJP's input or output).

    A parameter used at every step of an RNN gets its contributions in the broadcast shape;
    while they keep that shape they are added as they are, and summed down to the vertex's
    `shape` once, when taken. A `Cotangent` is added into an owned dense array, or
    densified; a NumPy scalar (0-d arithmetic) becomes an array of the sweep's own. (The
    common first case, an array kept as it is, is written out where this runs per op: in
    `sweep` and in the code `minigrad.trace` writes.)
    """
    if type(g) is not _ndarray:
        if type(g) is Contributions:  # its parts, in order, as if from several nodes
            for part in g:
                if owned and type(part) is _ndarray and part.shape == current.shape:  # type: ignore[union-attr]
                    current += part  # (this function's common case, written out)
                else:
                    current, owned = accumulate(current, part, owned, shape, dtype)
            return current, owned  # type: ignore[return-value]
        # The MRO rather than isinstance: ABCMeta's check is a Python call, and this one
        # runs for every slice of an RNN's inputs (a Cotangent is a subclass, not registered).
        if Cotangent in type(g).__mro__:
            if current is not None and owned and current.shape == shape:
                g.add_into(current)
                return current, True
            dense = g.densify(shape, dtype)
            if current is not None:
                dense += sum_to_shape(current, shape)
            return dense, True
        scalar = isinstance(g, _generic)
        g = _asarray(g)
        if current is None:
            return g, scalar
    if current is None:
        return g, False
    if g.shape != current.shape:
        g = sum_to_shape(g, shape)
        if current.shape != shape:
            current, owned = sum_to_shape(current, shape), False
    if owned:
        current += g
        return current, True
    return _asarray(current + g), True


def total(g: Any, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, bool]:
    """A vertex's complete cotangent from its contributions `g` (an array, a `Cotangent` or
    `Contributions`), by `accumulate`, in `shape`; and whether it was allocated here (else a
    caller that hands it out copies it), as `_Cotangents.take` tells."""
    current, owned = accumulate(None, g, False, shape, dtype)
    if current.shape != shape:  # summed down: a new array, or a view of g (not ours)
        current = sum_to_shape(current, shape)
        owned = current.base is None
    return current, owned


class _Cotangents:
    """The cotangent of each vertex reached and not yet swept, joined by `accumulate`;
    `owned` holds the vertices whose array this sweep allocated."""

    __slots__ = ("values", "owned")

    def __init__(self) -> None:
        self.values: dict[Any, np.ndarray] = {}
        self.owned: set[Any] = set()

    def add(self, x: Any, g: Any) -> bool:
        """Add `g` to the cotangent of vertex `x`; True if `x` had none yet."""
        current = self.values.get(x)
        self.values[x], owned = accumulate(current, g, x in self.owned, x.shape, x.dtype)
        if owned:
            self.owned.add(x)
        elif current is not None:
            self.owned.discard(x)
        return current is None

    def take(self, x: Any) -> tuple[np.ndarray, bool]:
        """The complete cotangent of `x`, in its shape, and whether this sweep allocated it."""
        g = self.values.pop(x)
        owned = x in self.owned
        if owned:
            self.owned.discard(x)
        if g.shape != x.shape:  # summed down: a new array, or a view of g (not the sweep's)
            g = sum_to_shape(g, x.shape)
            return g, g.base is None
        return g, owned


def released(caller: str, name: str) -> RuntimeError:
    """The error of a backward through a node an earlier backward released (freed what its
    VJPs read), also one that raised part-way."""
    return RuntimeError(
        f"{caller}: the graph through '{name}' was already released by an earlier backward() "
        "or gradients() (one that raised part-way too); pass retain_graph=True to the first "
        "call to backpropagate twice")


def sweep(root: Any, seed: np.ndarray, *, retain_graph: bool = False,
          capture: Collection[Any] = (), caller: str = "backward") -> dict[Any, np.ndarray]:
    """Backpropagate `seed`, the cotangent of vertex `root`, through the graph above it.

    Returns the cotangent of every leaf reached and of every vertex in `capture` (a node's
    or a leaf's) that the sweep reached, each an array of the vertex's shape that the
    caller may keep. Unless `retain_graph`, each node is released as soon as it is swept, as
    PyTorch frees saved tensors: what its VJPs read is freed while the sweep goes on (an
    RNN's states one by one, from the last), so backward needs little more memory than the
    forward pass left. A sweep that fails part-way has released the nodes it swept.
    """
    token = retaining.set(retain_graph)
    try:
        return _sweep(root, seed, retain_graph, capture, caller)
    finally:
        retaining.reset(token)


def _sweep(root: Any, seed: np.ndarray, retain_graph: bool, capture: Collection[Any],
           caller: str) -> dict[Any, np.ndarray]:
    cotangents = _Cotangents()
    values, owned = cotangents.values, cotangents.owned
    cotangents.add(root, seed)
    heap: list[tuple[int, Node]] = []
    leaves: list[Any] = []
    results: dict[Any, np.ndarray] = {}
    if type(root) is Node:
        heap.append((-root.position, root))
    else:
        leaves.append(root)
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        node = pop(heap)[1]
        vjps = node.vjps
        if vjps is None:
            raise released(caller, node.name)
        # Complete: every consumer of the node has been swept, so nothing adds to it again
        # (and its entry in `owned`, if any, is never read: left there rather than removed).
        g = values.pop(node)
        if g.shape != node.shape:
            g = sum_to_shape(g, node.shape)
        if node in capture:
            results[node] = g.copy()
        out, args, options = node.out, node.args, node.options
        # One function for all inputs (a compiled program's node), or one VJP per input.
        joint = vjps(g, out, *args, **options) if type(vjps) is _function else None
        i = -1  # input i's VJP is vjps[i] (a counter: zip costs more than it saves here)
        for x in node.inputs:
            i += 1
            if x is None:
                continue
            if joint is not None:
                gx = joint[i]
                if gx is None:
                    continue
            else:  # without * or ** where there is nothing to spread: each costs a tuple
                gx = (vjps[i](g, out, *args, **options) if options else vjps[i](g, out, *args)
                      if args else vjps[i](g, out))
            current = values.get(x)
            if type(gx) is not _ndarray or current is not None and (
                    x not in owned or gx.shape != current.shape):
                if gx is None or not cotangents.add(x, gx):  # (None: no gradient reached x)
                    continue
            elif current is not None:  # `add`'s common case, written out: into our own array
                current += gx
                continue
            else:  # the first contribution, as it is: the common case, kept quick
                values[x] = gx
            if type(x) is Node:
                # Negated: heapq is a min-heap and the newest node must come out first.
                # Positions are unique, so nodes are never compared.
                push(heap, (-x.position, x))
            else:
                leaves.append(x)
        if not retain_graph:  # release the node: its arrays go, backward through it is refused
            node.vjps = node.inputs = node.args = node.options = node.out = None
    if _reshaped and type(root) is Node:
        _refuse_reshaped(leaves, root, caller)
    for leaf in leaves:
        g = values.pop(leaf)
        if g.shape == leaf._data.shape:  # the common case of `take`, written out
            results[leaf] = g if leaf in owned else g.copy()
            continue
        values[leaf] = g
        try:
            g, mine = cotangents.take(leaf)
        except ValueError as error:  # (a leaf's array reshaped in place: `t.data.shape = s`)
            if getattr(g, "size", None) != leaf._data.size:
                raise
            raise ValueError(f"{caller}: a gradient of shape {g.shape} for a tensor of shape "
                             f"{leaf._data.shape} with as many elements: was its array "
                             "reshaped in place after the graph was recorded (t.data.shape "
                             "= ...)? Reshape before the forward pass. (Else a VJP gave a "
                             f"gradient of the wrong shape: {error})") from None
        results[leaf] = g if mine else g.copy()
    return results


def _refuse_reshaped(leaves: list[Any], root: Node, caller: str) -> None:
    """RuntimeError if a leaf's `.data` changed shape after the graph above `root` was
    recorded (its last op is `root`): the gradients reaching it have the shape it had."""
    for leaf in leaves:
        when, now = _reshaped.get(id(leaf)), leaf._data.shape
        if when is not None and when[0]() is leaf and when[1] > root.position:
            raise RuntimeError(
                f"{caller}: a tensor's .data was set to shape {now} (from "
                f"{when[2]}) after the graph was recorded: its gradient has the shape the "
                "graph recorded. Set .data before the forward pass, or to an array of the "
                "same shape; no .grad was changed")
