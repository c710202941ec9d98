"""Reverse mode: the record of each op, and the one backward sweep over it.

Every op that produces a tensor needing a gradient records a `Node`: its place on the tape
(a global counter, so the tape order is the order of computation), its inputs, its
vector-Jacobian products (VJPs), one per input, and of the NumPy arguments it was called
with and its output, those its VJPs read. The graph reachable from a tensor, in tape order,
is that tensor's tape.

`backward` walks that tape in reverse without recursion: a max-heap keyed by tape position
pops every node after all of its consumers, so each cotangent is complete when it is used,
and it is dropped as soon as it has been passed on. This module knows nothing of any op.

Anomaly mode (`detect_anomaly()`) is one flag read when a node is recorded and once per
backward: off, it costs a global lookup per recorded op; on, every recorded op's output and
every gradient a VJP returns is checked for NaN and infinity.
"""

from __future__ import annotations

import heapq
import itertools
import os
import sys
import traceback
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .tensor import Tensor

_tape_position = itertools.count()
# What a node keeps for its VJPs (`saves`, a bit mask): the op's inputs, its output.
SAVE_INPUTS, SAVE_OUTPUT = 1, 2
_reduce = np.add.reduce
_recording = True
_anomaly = False
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def is_recording() -> bool:
    """True unless inside `no_grad()`."""
    return _recording


@contextmanager
def no_grad() -> Iterator[None]:
    """Record nothing inside this block: ops on tensors needing grad give plain tensors."""
    global _recording
    previous, _recording = _recording, False
    try:
        yield
    finally:
        _recording = previous


class AnomalyError(FloatingPointError):
    """An op's output or gradient holds NaN or infinity, found in `detect_anomaly()` mode."""


@contextmanager
def detect_anomaly(enabled: bool = True) -> Iterator[None]:
    """Stop at the first recorded op whose output, or whose gradient in backward, holds NaN or
    infinity, with an `AnomalyError` naming the op, its input shapes and the line of the
    caller's code that created it.

    Only recorded ops are checked: those with an input that requires grad, outside
    `no_grad()`. Inside the block NumPy's divide, overflow and invalid warnings are silenced
    (the check reports them instead). Restores the previous mode on exit; blocks nest.
    """
    global _anomaly
    previous, _anomaly = _anomaly, bool(enabled)
    try:
        if enabled:
            with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                yield
        else:
            yield
    finally:
        _anomaly = previous


def is_anomaly_enabled() -> bool:
    """True inside `detect_anomaly()`."""
    return _anomaly


class Node:
    """One op application on the tape, and the vertex of its output in the graph.

    `inputs[i]` is the vertex of input i (the Node that made it, or a leaf Tensor), or None
    where input i needs no gradient.
    `site` (the caller's frame that created it, and the input shapes) is set only in anomaly
    mode."""

    __slots__ = ("position", "name", "vjps", "inputs", "args", "kwargs", "out", "shape",
                 "dtype", "site")

    def __init__(self, name, vjps, inputs, args, kwargs, out, saves=SAVE_INPUTS | SAVE_OUTPUT):
        self.position = next(_tape_position)
        self.name = name
        self.vjps = vjps
        self.inputs = inputs
        self.kwargs = kwargs
        self.shape = out.shape
        self.dtype = out.dtype
        # Holding only what the VJPs read lets the rest be freed during forward: an RNN
        # step's pre-activation, say, once its tanh is computed.
        self.args = args if saves & SAVE_INPUTS else ()
        self.out = out if saves & SAVE_OUTPUT else None
        if _anomaly:  # where the user's code made it, and its input shapes, for the report
            self.site = (_caller_site(), tuple(np.shape(a) for a in args))
            if not np.isfinite(out).all():
                raise AnomalyError(_anomaly_message(self, "forward", "its output", out))

    def release(self) -> None:
        """Drop the arrays this node holds; backward through it is then refused."""
        self.vjps = self.inputs = self.args = self.kwargs = self.out = None


class SliceGrad:
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

    def densify(self, shape: tuple[int, ...], dtype: np.dtype,
                base: np.ndarray | None = None) -> np.ndarray:
        """A new dense array of `shape`: `base` (or zeros) plus this gradient."""
        dense = np.zeros(shape, np.result_type(dtype, self.values))
        if base is not None:
            dense += base
        self.add_into(dense)
        return dense


def sum_to_shape(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Undo broadcasting: sum `g` over the axes that broadcasting added or stretched.

    A VJP may also return a gradient smaller than its input (a loss's gradient for one
    operand that does not depend on the other's broadcast); it is broadcast up first.
    """
    if g.shape == shape:
        return g
    # np.add.reduce rather than g.sum(): two Python layers less, on every bias's gradient.
    if not shape:
        return _reduce(g, None)
    lead = g.ndim - len(shape)
    if lead > 0 and g.shape[lead:] == shape:  # broadcasting only added leading axes (a bias)
        return _reduce(g, tuple(range(lead)))
    if lead < 0 or any(n != 1 and m != n for m, n in zip(g.shape[lead:], shape)):
        g = np.broadcast_to(g, np.broadcast_shapes(g.shape, shape))
        lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def backward(root: Tensor, seed: np.ndarray, retain_graph: bool = False,
             capture: set[Tensor] | None = None) -> dict[Tensor, np.ndarray] | None:
    """Accumulate d(<seed, root>)/d(leaf) into `.grad` of every leaf that needs a gradient.

    With `capture`, no `.grad` is touched: the cotangent of each tensor in `capture` (leaf or
    intermediate) that the sweep reaches is returned, by tensor. The arrays may be shared
    with the graph; copy before handing them out.

    The graph's vertices are Nodes (op outputs) and leaf Tensors: a node names its inputs
    by their vertices, so an intermediate Tensor, and its data, can be freed as soon as the
    user's code drops it. This loop is the engine's hot path, so it is written out in one
    piece. `values` holds the cotangent of each vertex reached and not yet swept; `owned`
    the vertices whose cotangent is an array this pass allocated, which may be added into in
    place (any other may be shared with a VJP's input or output).
    """
    checked = _anomaly
    if checked and not np.isfinite(seed).all():
        raise AnomalyError("backward: the seed gradient holds NaN or infinity")
    start = _vertex(root)
    values: dict[Any, Any] = {start: seed}
    owned: set[Any] = set()
    leaves: list[Tensor] = []
    heap: list[tuple[int, Node]] = []
    wanted = None if capture is None else {_vertex(t): t for t in capture}
    captured: dict[Tensor, np.ndarray] = {}
    swept: list[Node] = []
    if type(start) is Node:
        heap.append((-start.position, start))
    else:
        leaves.append(start)
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        node = pop(heap)[1]
        vjps = node.vjps
        if vjps is None:
            raise RuntimeError(
                f"backward: the graph through '{node.name}' was already released by an earlier "
                "backward(); pass retain_graph=True to the first call to backpropagate twice"
            )
        g = values.pop(node)
        owned.discard(node)
        if g.shape != node.shape:
            g = sum_to_shape(g, node.shape)
        if wanted is not None and node in wanted:
            captured[wanted[node]] = g
        args, out, kwargs = node.args, node.out, node.kwargs
        for i, x in enumerate(node.inputs):
            if x is None:
                continue
            gi = vjps[i](g, out, *args, **kwargs) if kwargs else vjps[i](g, out, *args)
            if checked:
                _check_gradient(node, i, gi)
            current = values.get(x)
            if current is not None:
                _accumulate(values, owned, x, current, gi)
                continue
            if type(gi) is SliceGrad:
                gi = gi.densify(x.shape, x.dtype)
                owned.add(x)
            values[x] = gi  # maybe in a broadcast shape: summed down when it is used
            if type(x) is Node:
                # Negated: heapq is a min-heap and the newest node must come out first.
                # Positions are unique, so nodes are never compared.
                push(heap, (-x.position, x))
            else:
                leaves.append(x)
        swept.append(node)
    # Released only now: a sweep that fails part-way (a released node further down, an
    # anomaly) leaves the graph whole and every .grad untouched.
    if not retain_graph:
        for node in swept:
            node.release()
    if wanted is not None:
        captured.update((leaf, _reduced(values, leaf)) for leaf in leaves if leaf in wanted)
        return captured
    for leaf in leaves:
        _accumulate_leaf(leaf, _reduced(values, leaf), leaf in owned)
    return None


def _vertex(tensor: Tensor) -> Any:
    """A tensor's place in the graph: the node that made it, or the leaf tensor itself."""
    return tensor if tensor._node is None else tensor._node


def _accumulate(values: dict, owned: set, x: Tensor, current: Any, g: Any) -> None:
    """Add a further gradient `g` (an array or a SliceGrad) to the cotangent of `x`.

    Gradients of a broadcast operand (a parameter used at every step of an RNN) arrive in the
    broadcast shape; while they keep that shape they are added as they are, and summed down
    to `x`'s shape once, when the cotangent is used, instead of once per contribution.
    """
    shape = x.shape
    if type(g) is SliceGrad:
        if x not in owned or current.shape != shape:
            values[x] = g.densify(shape, x.dtype, sum_to_shape(current, shape))
            owned.add(x)
        else:
            g.add_into(current)
        return
    if g.shape != current.shape:
        g = sum_to_shape(g, shape)
        if current.shape != shape:
            current = sum_to_shape(current, shape)
            owned.discard(x)
    if x in owned:
        current += g
    else:
        # np.asarray: 0-d arithmetic gives a NumPy scalar, which `+=` would rebind.
        values[x] = np.asarray(current + g)
        owned.add(x)


def _reduced(values: dict, x: Tensor) -> Any:
    g = values[x]
    return g if g.shape == x.shape else sum_to_shape(g, x.shape)


def _check_gradient(node: Node, i: int, g: Any) -> None:
    """Anomaly mode: every gradient a VJP returns must be finite."""
    values = g.values if type(g) is SliceGrad else g
    if not np.isfinite(values).all():
        raise AnomalyError(_anomaly_message(node, "backward", f"the gradient of input {i}",
                                            values))


def _caller_site() -> traceback.FrameSummary | None:
    """The innermost frame outside the minigrad package: where the user's code called the op."""
    frame: types.FrameType | None = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return None
    # The source line is read only if the message is ever built.
    return traceback.FrameSummary(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name,
                                  lookup_line=False)


def _anomaly_message(node: Node, phase: str, what: str, values: Any) -> str:
    values = np.asarray(values)
    found = [kind for kind, mask in (("NaN", np.isnan(values)), ("+inf", values == np.inf),
                                     ("-inf", values == -np.inf)) if mask.any()]
    site, shapes = getattr(node, "site", (None, None))
    if shapes is None and node.args:
        shapes = tuple(np.shape(a) for a in node.args)
    # Inputs a node made outside anomaly mode did not keep are unknown.
    shapes = ", ".join(map(str, shapes)) if shapes else "?"
    message = (f"detect_anomaly: '{node.name}' (inputs of shapes {shapes}) gave {what} "
               f"holding {' and '.join(found)} in {phase}")
    if site is None:
        return message + "; created outside detect_anomaly(), so its creation site is unknown"
    code = f": {site.line}" if site.line else ""
    return message + f"; created at {site.filename}:{site.lineno} in {site.name}{code}"


def _accumulate_leaf(leaf: Tensor, g: np.ndarray, owned: bool) -> None:
    # .grad belongs to the user, so it must be a fresh array of the leaf's dtype: a cotangent
    # this pass did not allocate may alias another tensor's data or be a read-only view.
    if not (owned and type(g) is np.ndarray and g.dtype == leaf.data.dtype):
        g = np.array(g, dtype=leaf.data.dtype, copy=True)
    leaf.grad = g if leaf.grad is None else leaf.grad + g

