"""Reverse mode: the record of each op, and the one backward sweep over it.

Every op that produces a tensor needing a gradient records a `Node`: its place on the tape
(a global counter, so the tape order is the order of computation), its inputs, the NumPy
arguments it was called with, its output and its vector-Jacobian products (VJPs), one per
input. The graph reachable from a tensor, in tape order, is that tensor's tape.

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
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

if TYPE_CHECKING:
    from .tensor import Tensor

_tape_position = itertools.count()
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
    """One op application on the tape. `inputs[i]` is None where input i needs no gradient.
    `site` (the caller's frame that created it) is set only in anomaly mode."""

    __slots__ = ("position", "name", "vjps", "inputs", "args", "kwargs", "out", "site")

    def __init__(self, name, vjps, inputs, args, kwargs, out):
        self.position = next(_tape_position)
        self.name = name
        self.vjps = vjps
        self.inputs = inputs
        self.args = args
        self.kwargs = kwargs
        self.out = out
        if _anomaly:
            self.site = _caller_site()
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


def sum_to_shape(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Undo broadcasting: sum `g` over the axes that broadcasting added or stretched.

    A VJP may also return a gradient smaller than its input (a loss's gradient for one
    operand that does not depend on the other's broadcast); it is broadcast up first.
    """
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if lead < 0 or any(n != 1 and m != n for m, n in zip(g.shape[lead:], shape)):
        g = np.broadcast_to(g, np.broadcast_shapes(g.shape, shape))
        lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


class _Cotangents:
    """Cotangents of one backward pass. A tensor in `owned` holds an array this pass
    allocated, which it may add into in place; any other may be shared with a VJP's input."""

    __slots__ = ("values", "owned")

    def __init__(self) -> None:
        self.values: dict[Tensor, np.ndarray] = {}
        self.owned: set[Tensor] = set()

    def add(self, tensor: Tensor, g: Any) -> None:
        """Add `g` (an array or a SliceGrad) to the cotangent of `tensor`."""
        current = self.values.get(tensor)
        if type(g) is SliceGrad:
            if tensor not in self.owned:
                dense = np.zeros(tensor.data.shape, np.result_type(tensor.data, g.values))
                if current is not None:
                    dense += current
                current = self._own(tensor, dense)
            g.add_into(current)
        elif current is None:
            self.values[tensor] = g
        elif tensor in self.owned:
            current += g
        else:
            self._own(tensor, current + g)

    def _own(self, tensor: Tensor, array: Any) -> np.ndarray:
        # 0-d arithmetic gives NumPy scalars, which `+=` would rebind instead of update.
        array = np.asarray(array)
        self.values[tensor] = array
        self.owned.add(tensor)
        return array

    def pop(self, tensor: Tensor) -> np.ndarray:
        self.owned.discard(tensor)
        return self.values.pop(tensor)


class _Capturing(_Cotangents):
    """Cotangents of a pass that keeps, instead of dropping, those of the tensors in `capture`."""

    __slots__ = ("capture", "captured")

    def __init__(self, capture: set[Tensor]) -> None:
        super().__init__()
        self.capture = capture
        self.captured: dict[Tensor, np.ndarray] = {}

    def pop(self, tensor: Tensor) -> np.ndarray:
        g = super().pop(tensor)
        if tensor in self.capture:
            self.captured[tensor] = g
        return g


def backward(root: Tensor, seed: np.ndarray, retain_graph: bool = False,
             capture: set[Tensor] | None = None) -> dict[Tensor, np.ndarray] | None:
    """Accumulate d(<seed, root>)/d(leaf) into `.grad` of every leaf that needs a gradient.

    With `capture`, no `.grad` is touched: the cotangent of each tensor in `capture` (leaf or
    intermediate) that the sweep reaches is returned, by tensor. The arrays may be shared
    with the graph; copy before handing them out.
    """
    cotangents = _Cotangents() if capture is None else _Capturing(capture)
    cotangents.values[root] = seed
    propagate = _propagate
    if _anomaly:
        propagate = _propagate_checked
        if not np.isfinite(seed).all():
            raise AnomalyError("backward: the seed gradient holds NaN or infinity")
    leaves: list[Tensor] = []
    heap: list[tuple[int, Tensor]] = []
    _schedule(root, heap, leaves)
    swept: list[Node] = []
    while heap:
        _, tensor = heapq.heappop(heap)
        node = tensor._node
        if node.vjps is None:
            raise RuntimeError(
                f"backward: the graph through '{node.name}' was already released by an earlier "
                "backward(); pass retain_graph=True to the first call to backpropagate twice"
            )
        g = cotangents.pop(tensor)
        propagate(node, g, cotangents, heap, leaves)
        swept.append(node)
    captured = None
    if capture is None:
        for leaf in leaves:
            _accumulate_leaf(leaf, cotangents.values[leaf])
    else:
        captured = cotangents.captured
        for leaf in leaves:
            if leaf in capture:
                captured[leaf] = cotangents.values[leaf]
    if not retain_graph:
        for node in swept:
            node.release()
    return captured


def _schedule(tensor: Tensor, heap: list, leaves: list) -> None:
    node = tensor._node
    if node is None:
        leaves.append(tensor)
    else:
        # Negated: heapq is a min-heap and the newest node must come out first. Positions are
        # unique, so the tensor itself is never compared.
        heapq.heappush(heap, (-node.position, tensor))


def _propagate(node: Node, g: np.ndarray, cotangents: _Cotangents, heap, leaves) -> None:
    args, out, kwargs = node.args, node.out, node.kwargs
    for tensor, vjp in zip(node.inputs, node.vjps):
        if tensor is None:
            continue
        gi = vjp(g, out, *args, **kwargs) if kwargs else vjp(g, out, *args)
        if type(gi) is not SliceGrad and gi.shape != tensor.data.shape:
            gi = sum_to_shape(gi, tensor.data.shape)
        first = tensor not in cotangents.values
        cotangents.add(tensor, gi)
        if first:
            _schedule(tensor, heap, leaves)


def _propagate_checked(node: Node, g: np.ndarray, cotangents: _Cotangents, heap,
                       leaves) -> None:
    """`_propagate` in anomaly mode: every gradient a VJP returns must be finite."""
    args, out, kwargs = node.args, node.out, node.kwargs
    for i, (tensor, vjp) in enumerate(zip(node.inputs, node.vjps)):
        if tensor is None:
            continue
        gi = vjp(g, out, *args, **kwargs) if kwargs else vjp(g, out, *args)
        values = gi.values if type(gi) is SliceGrad else gi
        if not np.isfinite(values).all():
            raise AnomalyError(_anomaly_message(node, "backward", f"the gradient of input {i}",
                                                values))
        if type(gi) is not SliceGrad and gi.shape != tensor.data.shape:
            gi = sum_to_shape(gi, tensor.data.shape)
        first = tensor not in cotangents.values
        cotangents.add(tensor, gi)
        if first:
            _schedule(tensor, heap, leaves)


def _caller_site() -> traceback.FrameSummary | None:
    """The innermost frame outside the minigrad package: where the user's code called the op."""
    frame = sys._getframe(2)
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
    shapes = ", ".join(str(np.shape(a)) for a in node.args)
    message = (f"detect_anomaly: '{node.name}' (inputs of shapes {shapes}) gave {what} "
               f"holding {' and '.join(found)} in {phase}")
    site = getattr(node, "site", None)
    if site is None:
        return message + "; created outside detect_anomaly(), so its creation site is unknown"
    code = f": {site.line}" if site.line else ""
    return message + f"; created at {site.filename}:{site.lineno} in {site.name}{code}"


def _accumulate_leaf(leaf: Tensor, g: np.ndarray) -> None:
    # Copy into a fresh array of the leaf's dtype: the cotangent may alias another tensor's
    # data or be a read-only broadcast view, and .grad belongs to the user.
    g = np.array(g, dtype=leaf.data.dtype, copy=True)
    leaf.grad = g if leaf.grad is None else leaf.grad + g

