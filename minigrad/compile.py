"""`compile(fn)`: trace a function once per input signature into a flat program of NumPy calls,
then replay that program instead of running the engine.

The first call with a signature (the arguments' shapes and dtypes, which Tensor arguments
require grad, the values of the other arguments, and this thread's grad and anomaly mode)
runs `fn` eagerly while `record` reports every op: the trace. It becomes

- a forward program: `slot[out] = forward(*slot[inputs], **options)` for each op, in tape
  order, where a slot holds an argument, a view of one, a tensor `fn` reads from outside
  (a parameter: its current `.data` on every call), a constant, or an op's output;
- a backward program: the same ops in reverse with their VJPs, each cotangent accumulated
  exactly as the tape's sweep does (same calls, same order, hence the same float64 bits).

Both become straight-line Python functions, one line per NumPy call (`minigrad.lowering`):
the forward one when the program is made, the backward one by the program's first backward,
which runs the sweep and writes down each rule it applies. Later calls run the forward
function (no Tensor, no Node, no heap, no loop over steps) and return a Tensor whose
`backward()` runs the backward function as a single node of the tape: the gradients land
in `.grad` as in eager mode, and compose with eager ops.

A replay calls the same NumPy forwards and VJPs as eager mode, in the same order, and
accumulates cotangents by the tape's rules: that is what keeps the bits equal, and it is
also why the gain is the engine's per-op Python work only, not any NumPy work.
Arrays are not reused between calls: each call's values stay the caller's (a loss may be
backpropagated after the next call), and each value is dropped after its last use unless a
VJP reads it, so a replay holds what eager mode's graph holds.

The second call of a signature traces `fn` again and checks that both traces agree: a
NumPy array or number that `fn` computes itself (from an argument, from a random generator,
from a parameter's value) is kept as a constant by a trace, and if it differs between the two
calls the compiled function refuses with `TraceError` rather than replay a stale value. Two
traces from equal inputs cannot tell a constant computed from an input from a fixed one, so
the program is then replayed only for calls with those inputs; the first call with other
inputs traces again and compares. Once two traces from different inputs agree, every call
of the signature replays.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import numpy as np

from . import anomaly, modes, primitive, tape, tensor
from .lowering import BackwardWriter, Source, forward_function, fused_replay, out_read
from .modes import ANOMALY, RECORDING, TRACING, current_mode
from .primitive import Op
from .tape import Node
from .tensor import Tensor, _make, tensor_array

__all__ = ["CompiledFunction", "TraceError", "compile"]

# A tensor's array a VJP reads is copied by a replay's load up to this size, shared above it.
_SNAPSHOT_BYTES = 1024

# Bound once: NumPy's module __getattr__ keeps CPython from caching `np.name` on a call's path.
_ndarray = np.ndarray


class TraceError(RuntimeError):
    """`fn` does something a trace cannot capture: reads a traced tensor's value in Python,
    or computes an array outside the engine that changes from call to call."""


# --- tracing: the tensors whose values Python may not read ------------------------------------


def _refuse(what: str) -> Callable[..., Any]:
    def refuse(self: Tensor, *args: Any) -> Any:
        raise TraceError(
            f"compile: {what} of a traced tensor (shape {self.shape}) inside the compiled "
            "function: a trace records ops, not Python decisions on their values; compute "
            "with minigrad ops, or read the value outside the compiled function")
    return refuse


def _data_refused(self: Tensor) -> np.ndarray:
    return _refuse(".data")(self)


_TRACED_METHODS: dict[str, Any] = {
    "__slots__": (),
    "data": property(_data_refused, _refuse(".data =")),
    "item": _refuse(".item()"),
    "numpy": _refuse(".numpy()"),
    "__bool__": _refuse("bool()"),
    "__float__": _refuse("float()"),
    "__array__": _refuse("np.asarray()"),
}


_TRACED_CLASSES: dict[type, type] = {}


def _traced_class(cls: type) -> type:
    """A subclass of `cls` whose value reads raise: what a traced tensor is while `fn` runs."""
    traced = _TRACED_CLASSES.get(cls)
    if traced is None:
        traced = _TRACED_CLASSES[cls] = type(f"Traced{cls.__name__}", (cls,),
                                             dict(_TRACED_METHODS))
    return traced


_ACTIVE: ContextVar[_Trace | None] = ContextVar("minigrad_trace", default=None)


_RECORDERS: dict[Op, Callable[..., Tensor]] = {}


def _trace_op(op: Op, operands: Sequence[Any], options: dict[str, Any]) -> Tensor:
    """`record` while tracing: record the op as usual (tracing off), then note the call."""
    trace = _ACTIVE.get()
    record = _RECORDERS.get(op)
    if record is None:
        record = _RECORDERS[op] = primitive.recorder(op)
    token = modes._mode.set(current_mode() & ~TRACING)
    try:
        out = record(*operands, **options)
    finally:
        modes._mode.reset(token)
    if trace is not None:
        trace.add(op, operands, options, out)
    return out


primitive.trace_hook = _trace_op

# `Tensor(data)` inside a traced function, as a step of the program: each call copies `data`
# from where it comes from on that call (an argument, a view of one, a traced tensor), as
# eager mode does; a trace that kept its own copy would replay the first call's values.
_NEW_TENSOR = Op("Tensor", tensor_array, (), primitive.Domain("untested"), False, False)


def _trace_tensor(t: Tensor, data: Any) -> None:
    trace = _ACTIVE.get()
    if trace is None:
        return
    if t.requires_grad:
        raise TraceError(
            f"compile: Tensor(..., requires_grad=True) inside the compiled function (shape "
            f"{t.shape}) would be a new leaf on every call, which a replay cannot give "
            "back; make it outside and pass it in, or read it as a parameter")
    source = data if isinstance(data, (Tensor, np.ndarray)) else np.asarray(data)  # a list
    trace.add(_NEW_TENSOR, (source,), {}, t)


tensor.trace_new_tensor = _trace_tensor


class _Slot:
    """A value of the program; the key of its cotangent in backward (shape and dtype as a
    tape vertex has them)."""

    __slots__ = ("index", "shape", "dtype")

    def __init__(self, index: int, like: Any):
        self.index = index
        self.shape = np.shape(like)
        self.dtype = np.result_type(like)


class _Step:
    """One op call of the program, and what its backward needs."""

    __slots__ = ("op", "forward", "inputs", "options", "out", "node", "vjps", "grad_inputs",
                 "saved", "saves_output", "residual", "watch")

    def __init__(self, op: Op, inputs: tuple[int, ...], options: dict[str, Any], out: _Slot,
                 node: Node | None):
        self.op = op
        self.forward = op.forward
        self.inputs = inputs
        self.options = options
        self.out = out
        self.node = node  # the trace's node: its VJPs (anomaly-checked if traced so)
        self.vjps: tuple = tuple(node.vjps) if node is not None else ()
        self.grad_inputs: list[_Slot | None] = []
        # The operands' slots the VJPs read (None where a node keeps none: `Op.kept`).
        self.saved: tuple = () if not op.saves_inputs else inputs if op.kept is None else tuple(
            i if k in op.kept else None for k, i in enumerate(inputs))
        self.saves_output = op.saves_output
        self.residual: int | None = None  # the slot of the forward's residual, if it has one
        self.watch = False  # anomaly mode: check the output as `record` does


def _permutation(a: np.ndarray, arg: np.ndarray) -> tuple[int, ...] | None:
    """The axes with `a` = `arg.transpose(axes)` (the model's time-major view of a
    batch-major argument), or None: rebuilt by `transpose`, not by `np.ndarray`'s buffer
    constructor, which costs four times as much."""
    if a.ndim != arg.ndim or a.dtype != arg.dtype:
        return None
    left = [(n, stride) for n, stride in zip(arg.shape, arg.strides)]
    axes = []
    for pair in zip(a.shape, a.strides):
        if pair not in left:
            return None
        j = left.index(pair)
        left[j] = None  # type: ignore[call-overload]
        axes.append(j)
    return tuple(axes)


def _gives_view(op: Op, arrays: list[Any], options: dict[str, Any]) -> bool:
    """Whether `op`'s forward on these arrays returns a view (which `record` copied): that
    depends on shapes and strides only, so on the signature."""
    out = op.forward(*arrays, **options)
    if op.residual:
        out = out[0]
    return isinstance(out, np.ndarray) and out.base is not None


def _copying_views(forward: Callable[..., Any], residual: bool) -> Callable[..., Any]:
    """`forward`, its output copied if it is a view: what `record` does when an operand is a
    NumPy array (`primitive._share_view`), so that the replay's array has eager mode's
    layout (a product of a transposed view rounds differently from one of a copy)."""

    def copy_of_view(out: Any) -> Any:
        return out.copy() if isinstance(out, np.ndarray) and out.base is not None else out

    def copying_views(*arrays: Any, **options: Any) -> Any:
        out = forward(*arrays, **options)
        if residual:
            return copy_of_view(out[0]), out[1]
        return copy_of_view(out)

    return copying_views


class _Trace:
    """What one eager run of `fn` did, as slots and steps."""

    def __init__(self, arrays: dict[int, np.ndarray], recording: bool):
        self.recording = recording
        self.slots: list[_Slot] = []
        self.values: list[Any] = []  # the trace's values (constants stay in the program)
        self.kinds: list[tuple] = []  # how each slot gets its value on a call
        self.steps: list[_Step] = []
        self.by_tensor: dict[int, _Slot] = {}  # id(tensor) -> slot
        self.by_vertex: dict[int, _Slot] = {}  # id(node or leaf) -> slot
        self.by_array: dict[int, _Slot] = {}   # id(op output array) -> slot (detach aliases)
        self.keep: list[Any] = []  # what the maps' ids point at stays alive
        self.views: dict[tuple, _Slot] = {}
        # argument position -> the array `fn` was given; ("astype", position, dtype) -> an
        # argument as `fn` converted it
        self.arrays: dict[Any, np.ndarray] = dict(arrays)
        self.outputs: list[Tensor] = []

    def new_slot(self, value: Any, kind: tuple) -> _Slot:
        slot = _Slot(len(self.slots), value)
        self.slots.append(slot)
        self.values.append(value)
        self.kinds.append(kind)
        return slot

    def tensor_slot(self, t: Tensor, kind: tuple) -> _Slot:
        slot = self.new_slot(t._data, kind)
        self.by_tensor[id(t)] = slot
        self.by_vertex[id(t._node or t)] = slot
        self.by_array.setdefault(id(t._data), slot)  # t.detach() reads t
        self.keep.extend((t, t._data))
        return slot

    def operand_slot(self, x: Any, op: Op) -> _Slot:
        if isinstance(x, Tensor):
            slot = self.by_tensor.get(id(x))
            if slot is not None:
                return slot
            alias = self.by_array.get(id(x._data))
            if alias is not None and not x.requires_grad:  # a detached intermediate
                return alias
            if x._node is not None:
                raise TraceError(
                    f"compile: '{op.name}' reads a tensor computed outside the compiled "
                    f"function (by '{x._node.name}', shape {x.shape}); pass it as an argument")
            return self.tensor_slot(x, ("captured", x))
        if isinstance(x, np.ndarray):
            return self.array_slot(x)
        return self.new_slot(x, ("constant",))

    def check_options(self, op: Op, options: Any) -> None:
        """Options are part of the program: one holding an input's array (an index array
        passed as an argument) would be replayed with its value at the trace."""
        if isinstance(options, dict):
            options = tuple(options.values())
        if isinstance(options, (tuple, list)):
            for value in options:
                self.check_options(op, value)
        elif isinstance(options, np.ndarray) and options.size:
            inputs = [*self.arrays.values(), *(self.values[slot.index] for slot in
                                               self.by_tensor.values())]
            if any(np.may_share_memory(options, a) for a in inputs if isinstance(a, np.ndarray)):
                raise TraceError(
                    f"compile: '{op.name}' takes an array from an argument or a tensor as an "
                    f"option (shape {options.shape}); a trace keeps options as constants: "
                    "index with a fixed array made inside the function, or don't compile it")

    def array_slot(self, a: np.ndarray) -> _Slot:
        """An argument array, a view of one (rebuilt from the argument on every call), an
        argument converted to another dtype (`np.asarray(X, np.float64)` of integer X), a
        view of that, or a constant that `fn` made itself."""
        start = a.__array_interface__["data"][0]
        for source, arg in self.arrays.items():
            base = arg.__array_interface__["data"][0]
            if a is arg or (start == base and a.shape == arg.shape and a.dtype == arg.dtype
                            and a.strides == arg.strides):
                return self.argument_slot(source, arg)
            if a.size and a.dtype == arg.dtype and np.may_share_memory(a, arg):
                return self.view_slot(a, source, arg, start - base)
        owner = a.base if isinstance(a.base, np.ndarray) else a
        for source, arg in list(self.arrays.items()):
            if type(source) is int and owner.shape == arg.shape and owner.dtype != arg.dtype \
                    and np.array_equal(owner, arg.astype(owner.dtype), equal_nan=True):
                # converted (what np.asarray(arg, dtype) gives): replayed as arg.astype
                self.arrays[("astype", source, owner.dtype.str)] = owner
                self.keep.append(owner)
                return self.array_slot(a)
        self.keep.append(a)
        return self.new_slot(a.copy(), ("constant",))

    def argument_slot(self, source: Any, arg: np.ndarray) -> _Slot:
        """The slot of argument `source` (its position), or of ("astype", position, dtype)."""
        key = (source,)
        if key not in self.views:
            if type(source) is int:
                kind: tuple = ("array", source)
            else:
                parent = self.argument_slot(source[1], self.arrays[source[1]])
                kind = ("astype", parent.index, arg.dtype)
            self.views[key] = self.new_slot(arg, kind)
        return self.views[key]

    def contiguous_slot(self, view: int) -> int:
        key = ("copy", view)
        if key not in self.views:
            self.views[key] = self.new_slot(self.values[view], ("copy", view))
        return self.views[key].index

    def view_slot(self, a: np.ndarray, source: Any, arg: np.ndarray, offset: int) -> _Slot:
        key = (source, offset, a.shape, a.strides)
        if key not in self.views:
            parent = self.argument_slot(source, arg)
            item = a.itemsize
            if a.ndim == 1 and offset % item == 0 and a.strides[0] % item == 0 \
                    and a.strides[0] > 0:  # a slice of the flat argument: cheap to rebuild
                step = a.strides[0] // item
                first = offset // item
                index: Any = slice(first, first + (a.shape[0] - 1) * step + 1, step)
                kind: tuple = ("flat", parent.index, index)
            else:
                axes = _permutation(a, arg) if offset == 0 else None
                kind = ("view", parent.index, a.shape, a.dtype, offset, a.strides) \
                    if axes is None else ("transpose", parent.index, axes)
            self.views[key] = self.new_slot(a, kind)
        return self.views[key]

    def add(self, op: Op, operands: Sequence[Any], options: dict[str, Any], out: Tensor) -> None:
        inputs = tuple(self.operand_slot(x, op).index for x in operands)
        if op.saves_inputs and self.recording:
            # `record` computes such an op on a copy of a NumPy operand (the node keeps it):
            # for a strided view of an argument the copy is contiguous, and matmul's rounding
            # depends on the layout.
            inputs = tuple(self.contiguous_slot(i) if self.kinds[i][0] in _STRIDED
                           else i for i in inputs)
        self.check_options(op, options)
        node = out._node
        slot = self.new_slot(out._data, ("output",))
        step = _Step(op, inputs, dict(options), slot, node)
        if op.residual:  # (its value is the node's, or none where the op needs no gradient)
            step.residual = self.new_slot(None, ("residual",)).index
        if any(isinstance(x, np.ndarray) for x in operands) and _gives_view(
                op, [self.values[i] for i in inputs], options):
            step.forward = _copying_views(op.forward, op.residual)
        if node is not None:
            step.grad_inputs = [None if v is None else self.by_vertex[id(v)]
                                for v in node.inputs]
            step.watch = getattr(node, "site", None) is not None
            self.by_vertex[id(node)] = slot
            self.keep.append(node)
        self.by_tensor[id(out)] = slot
        self.by_array[id(out._data)] = slot
        self.keep.append(out)
        self.steps.append(step)
        out.__class__ = _traced_class(type(out))
        self.outputs.append(out)


# --- the program ------------------------------------------------------------------------------


# How a slot is rebuilt from an argument's slot on every call: a view of it that may be
# strided, or a conversion or contiguous copy of one.
_STRIDED = ("flat", "view", "transpose")
_VIEWS = ("astype", "copy", *_STRIDED)


class _Program:
    """A trace as a replayable program for one signature."""

    def __init__(self, trace: _Trace, result: Tensor, mode: int, owner: CompiledFunction):
        slot = trace.by_tensor.get(id(result))
        if slot is None or trace.kinds[slot.index][0] != "output":
            # fn returned an argument, or a tensor it did not compute
            raise TraceError("compile: fn must return a tensor computed by minigrad ops "
                             "from its inputs, not one of them")
        self.trace = trace
        self.result = slot
        self.owner = owner
        self.template = [v if k[0] == "constant" else None
                         for v, k in zip(trace.values, trace.kinds)]
        self.tensors = [(i, k[1]) for i, k in enumerate(trace.kinds) if k[0] == "tensor"]
        arrays = [(i, k[1]) for i, k in enumerate(trace.kinds) if k[0] == "array"]
        self.views = [(i, k) for i, k in enumerate(trace.kinds)
                      if k[0] in _VIEWS]
        self.captured = [(i, k[1], trace.slots[i].shape, trace.slots[i].dtype)
                         for i, k in enumerate(trace.kinds) if k[0] == "captured"]
        self.anomaly = bool(mode & ANOMALY)
        self.requires_grad = result.requires_grad
        self.backward_steps = [s for s in reversed(trace.steps) if s.node is not None]
        self.leaves = self._reachable_leaves() if self.requires_grad else []
        # An array argument a VJP reads is copied on every call, as `record` copies a NumPy
        # operand a node keeps (the caller may change it before backward); one that only
        # views and copies of it read (a strided `X[:, k]` is copied contiguous) is not.
        read = self._read_by_vjps()
        self.arrays = [(i, position, self.requires_grad and i in read)
                       for i, position in arrays]
        self.frees = self._frees(read)
        self.load = self._load_function()
        # Where each leaf's vertex comes from on a call: a Tensor argument's position (its
        # vertex may be a node), or a tensor read from outside (a leaf: itself).
        self.leaf_sources: list[tuple[int, Tensor | None]] = [
            (trace.kinds[leaf.index][1], None) if trace.kinds[leaf.index][0] == "tensor"
            else (-1, trace.kinds[leaf.index][1]) for leaf in self.leaves]
        self.leaf_vjps = _leaf_vjps(len(self.leaves))
        # The leaves themselves where all are tensors read from outside (no argument's
        # vertex to look up on a call): `value_and_backward`'s usual case.
        outside = [t for _, t in self.leaf_sources if t is not None]
        self.outside_leaves = outside if len(outside) == len(self.leaf_sources) else None
        self.run_steps = forward_function([
            (s.forward, s.inputs, s.options, s.out.index, s.residual, frees, s.out.shape == ())
            for s, frees in zip(trace.steps, self.frees)])
        self.run_backward: Callable[[list, np.ndarray, bool], list] | None = None  # after a first
        self.fresh: list[bool] = []  # with run_backward: which leaf cotangents it allocates
        # With run_backward, where every leaf is a tensor read from outside: all of a
        # `value_and_backward` replay in one function (`lowering.fused_replay`).
        self.replay: Callable[[Sequence[Any]], float | None] | None = None
        # Whether the result can seed a backward by itself (`value_and_backward`).
        self.scalar_loss = self.requires_grad and bool(self.leaves) and math.prod(
            self.result.shape) == 1
        # `value_and_backward`'s seed, made once: read-only, as no VJP writes into its g (a
        # cotangent handed to a caller is copied unless the backward code allocated it).
        self.ones = np.ones(self.result.shape if self.scalar_loss else (), self.result.dtype)
        self.ones.flags.writeable = False
        self._forget(trace)

    def _read_by_vjps(self) -> set[int]:
        """The slots the VJPs read: operands, and an output or residual."""
        return {i for step in self.backward_steps for i in step.saved + out_read(step)
                if i is not None}

    def _frees(self, read: set[int]) -> list[tuple[int, ...]]:
        """For each step, the values no later step and no VJP reads (`read`: the operands
        they read): dropped after it, so that a replay holds what eager mode's graph holds
        (a pre-activation, say, is freed once its tanh is computed), not every value of the
        forward pass."""
        kinds = self.trace.kinds
        kept = read | {self.result.index}
        last: dict[int, int] = {}
        for k, step in enumerate(self.trace.steps):
            last[step.out.index] = k
            if step.residual is not None:  # no VJP reads it (not `kept`): dropped at once
                last[step.residual] = k
            for i in step.inputs:
                last[i] = k
        frees: list[list[int]] = [[] for _ in self.trace.steps]
        for i, k in last.items():
            if i not in kept and (kinds[i][0] in _VIEWS
                                  or kinds[i][0] in ("output", "array", "residual")):
                frees[k].append(i)
        return [tuple(f) for f in frees]

    def _forget(self, trace: _Trace) -> None:
        """Keep of the trace only what a program and the second call's comparison read: not
        the first call's arrays, nor (outside anomaly mode) its nodes."""
        trace.values = [v if k[0] in ("constant", "captured") else None
                        for v, k in zip(trace.values, trace.kinds)]
        trace.keep.clear()
        trace.by_tensor.clear()
        trace.by_vertex.clear()
        trace.by_array.clear()
        trace.arrays.clear()
        trace.outputs.clear()
        if not self.anomaly:
            for step in trace.steps:
                step.node = None

    def _reachable_leaves(self) -> list[_Slot]:
        """The slots of the grad-requiring tensors the result depends on, in slot order."""
        reached = {self.result.index}
        leaves: set[int] = set()
        for step in self.backward_steps:
            if step.out.index not in reached:
                continue
            for x in step.grad_inputs:
                if x is not None:
                    reached.add(x.index)
                    if self.trace.kinds[x.index][0] in ("tensor", "captured"):
                        leaves.add(x.index)
        return [self.trace.slots[i] for i in sorted(leaves)]

    def stale(self) -> bool:
        """Whether a tensor read from outside changed its shape or dtype since the trace."""
        return any(t._data.shape != shape or t._data.dtype != dtype
                   for _, t, shape, dtype in self.captured)

    def _load_function(self) -> Callable[[Sequence[Any]], list[Any] | None]:
        """`load(args)`: the values a call starts from, in straight-line code: the constants,
        the arguments (copied where a VJP reads them), their views and conversions, and the
        current array of each tensor read from outside; None if one of those changed its
        shape or dtype since the trace (the program is stale: trace again). A tensor's array
        must not change under the program (a VJP may read it, or a view of it), as in
        `record`: a small one is copied (cheaper than the copy an optimizer's next update
        would make of a shared one), a larger one marked shared (copy-on-write)."""
        source = Source()
        source.add(f"v = {source.name(self.template, 'template')}[:]")

        def tensor_value(i: int, data: str) -> None:  # x: the tensor, `data` its array
            slot = self.trace.slots[i]
            if slot.dtype.itemsize * math.prod(slot.shape) <= _SNAPSHOT_BYTES:
                source.add(f"v[{i}] = {data}.copy('K')")
            else:
                source.add("if not x._shared: x._share()")
                source.add(f"v[{i}] = x._data")

        for i, position in self.tensors:
            source.add(f"x = args[{position}]")
            tensor_value(i, "x._data")
        for i, position, copied in self.arrays:
            source.add(f"v[{i}] = args[{position}]{'.copy()' if copied else ''}")
        for i, kind in self.views:
            parent = f"v[{kind[1]}]"
            if kind[0] == "flat":
                source.add(f"v[{i}] = {parent}.reshape(-1)[{source.name(kind[2], 'index')}]")
            elif kind[0] == "copy":
                source.add(f"v[{i}] = {parent}.copy()")
            elif kind[0] == "astype":
                source.add(f"v[{i}] = {parent}.astype({source.name(kind[2], 'dtype')})")
            elif kind[0] == "transpose":
                source.add(f"v[{i}] = {parent}.transpose({source.name(kind[2], 'axes')})")
            else:
                _, _, shape, dtype, offset, strides = kind
                source.add(f"v[{i}] = ndarray({source.name(shape, 'shape')}, "
                           f"{source.name(dtype, 'dtype')}, buffer={parent}, offset={offset}, "
                           f"strides={source.name(strides, 'strides')})")
        for i, t, shape, dtype in self.captured:
            source.add(f"x = {source.name(t, 'tensor')}")
            source.add("a = x._data")
            source.add(f"if a.shape != {source.name(shape, 'shape')} or a.dtype is not "
                       f"{(d := source.name(dtype, 'dtype'))} and a.dtype != {d}: "
                       "return None")
            tensor_value(i, "a")
        source.add("return v")
        return source.function("load(args)", "load")

    def forward(self, args: Sequence[Any]) -> list[Any] | None:
        """The values of a call: its inputs (`load`) and every op's output; None if the
        program is stale."""
        values = self.load(args)
        if values is None:
            return None
        if self.anomaly:
            self._forward_checked(values)
        else:
            self.run_steps(values)
        return values

    def _forward_checked(self, values: list[Any]) -> None:
        for step, frees in zip(self.trace.steps, self.frees):
            arrays = [values[i] for i in step.inputs]
            r = step.forward(*arrays, **step.options) if step.options else step.forward(*arrays)
            if step.residual is not None:
                r, values[step.residual] = r
            r = r if type(r) is np.ndarray else np.asarray(r)
            if step.node is not None and step.watch and not np.isfinite(r).all():
                raise anomaly.AnomalyError(anomaly._message(step.node, "forward", "its output", r))
            values[step.out.index] = r
            for i in frees:
                values[i] = None

    def backward(self, values: list[Any], seed: np.ndarray,
                 free: bool = False) -> list[np.ndarray]:
        """The cotangent of every leaf, by the sweep's rules (`minigrad.tape.sweep`): the first
        time by running the sweep and writing it down, later by the code it wrote, which
        drops each of `values` after its last use if `free`."""
        if self.run_backward is not None:
            return self.run_backward(values, seed, free)
        started = time.perf_counter()
        writer = BackwardWriter(self.backward_steps, self.result, self.leaves)
        grads, run_backward = writer.run(values, seed)
        self.fresh = writer.fresh  # before run_backward: another thread may take that path
        if self.outside_leaves is not None and self.scalar_loss:
            self.replay = fused_replay(
                self.load, self.run_steps, run_backward,
                [(i, v) for i, (v, k) in enumerate(zip(self.template, self.trace.kinds))
                 if k[0] == "constant"],
                self.result.index, self.ones,
                [(t, self.trace.slots[leaf.index].dtype, fresh)
                 for t, leaf, fresh in zip(self.outside_leaves, self.leaves, self.fresh)])
        self.run_backward = run_backward
        self.owner.trace_seconds += time.perf_counter() - started  # writing is tracing
        return grads


class _Backward:
    """A replayed call's backward: the first of its node's VJPs to run runs the backward
    program for the seed it is given; each returns its leaf's cotangent."""

    __slots__ = ("program", "values", "seed", "grads")

    def __init__(self, program: _Program, values: list[Any]):
        self.program = program
        self.values = values
        self.seed: Any = None
        self.grads: list[np.ndarray] = []

    def grad(self, i: int, g: np.ndarray) -> np.ndarray:
        if g is not self.seed:  # a new backward (retain_graph=True runs it again)
            # Unless the graph is kept, the program frees each value after its last use.
            self.grads = self.program.backward(self.values, g, not tape.retaining.get())
            self.seed = g
        return self.grads[i]


@functools.lru_cache(maxsize=64)
def _leaf_vjps(n: int) -> tuple[Callable[..., np.ndarray], ...]:
    """The VJPs of a replayed call's node with n leaves; the node's one saved argument is
    the call's `_Backward`, so these are made once, not per call."""
    return tuple((lambda g, out, backward, i=i: backward.grad(i, g)) for i in range(n))


# --- the compiled function ------------------------------------------------------------------


class _Inputs:
    """The values a trace read: the array arguments (copies, and the bytes of the small
    ones) and the tensors it read from outside (their arrays, which copy-on-write keeps
    unchanged)."""

    __slots__ = ("arrays", "captured")

    def __init__(self, arrays: list[np.ndarray], program: _Program):
        self.arrays = [(a, a.tobytes() if a.nbytes <= _BYTES_COMPARED else None)
                       for a in arrays]
        self.captured = []
        for _, t, _, _ in program.captured:
            if not t._shared:  # kept here: an in-place change must give t a new array
                t._share()
            self.captured.append(t._data)

    @staticmethod
    def copies(args: tuple) -> list[np.ndarray]:
        return [a.copy() for a in args if type(a) is np.ndarray]

    def same(self, args: tuple, program: _Program) -> bool:
        """Whether a call with `args` reads exactly these values (NaN where these have NaN)."""
        kept = iter(self.arrays)
        for a in args:
            if type(a) is np.ndarray and not _equal(a, *next(kept)):
                return False
        for (_, t, _, _), d in zip(program.captured, self.captured):
            if t._data is not d and not _equal(t._data, d, None):
                return False
        return True


# The same bytes are the same values: for a minibatch one memcmp, cheaper than np.equal's
# temporaries and reduction.
_BYTES_COMPARED = 1 << 16


def _equal(a: np.ndarray, b: np.ndarray, b_bytes: bytes | None) -> bool:
    """Whether `a` holds `b`'s values (`b_bytes`: b's bytes, if kept)."""
    if a.shape != b.shape or a.dtype is not b.dtype and a.dtype != b.dtype:  # `is`: quick
        return False
    if b_bytes is not None and a.tobytes() == b_bytes:
        return True
    return bool(np.equal(a, b).all()) or a.dtype.kind == "f" and bool(
        np.array_equal(a, b, equal_nan=True))


class _Entry:
    """A signature's program. The second call traces again and compares (a random draw in
    `fn` differs between two traces). The program is replayed once two traces from
    different inputs agree (`checked`); until then only for a call with the inputs of its
    trace (`inputs`), whose constants, even one `fn` computed from an input with NumPy,
    are that call's own."""

    __slots__ = ("program", "compared", "checked", "inputs")

    def __init__(self, program: _Program, inputs: _Inputs):
        self.program = program
        self.compared = False  # traced a second time, and the traces agreed
        self.checked = False
        self.inputs: _Inputs | None = inputs

    def replays(self, args: tuple) -> bool:
        """Whether a call with `args` may replay the program (if it is not stale)."""
        return self.checked or self.compared and self.inputs.same(  # type: ignore[union-attr]
            args, self.program)


class CompiledFunction:
    """`fn` traced once per signature and replayed; made by `minigrad.compile`."""

    def __init__(self, fn: Callable[..., Tensor], cache_size: int):
        if not callable(fn):
            raise TypeError(f"compile: expected a function, got {type(fn).__name__}")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1:
            raise ValueError(f"compile: cache_size must be an integer >= 1, got {cache_size!r}")
        self.fn = fn
        self.cache_size = cache_size
        self.traces = 0  # how many times fn was traced
        self.trace_seconds = 0.0  # tracing: eager runs of fn, their checks, writing the code
        self._cache: OrderedDict[tuple, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._node_name = f"compiled {getattr(fn, '__name__', 'fn')}"
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<compiled {getattr(self.fn, '__qualname__', self.fn)!s}>"

    @property
    def signatures(self) -> int:
        """How many signatures the cache holds (at most `cache_size`)."""
        return len(self._cache)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        if kwargs:
            raise TypeError(f"compile: pass the arguments positionally, got keyword "
                            f"arguments {sorted(kwargs)}")
        mode = current_mode()
        if mode & TRACING:  # inside another compiled function's trace: be traced by it
            return self.fn(*args)
        key, args, entry = self._lookup(args, mode)
        if entry is not None and entry.replays(args):
            result = self._replay(entry.program, args)
            if result is not None:
                return result
        return self._trace_call(key, args, entry, mode)

    def value_and_backward(self, *args: Any) -> float:
        """`loss = self(*args); loss.backward(); return loss.item()` in one call, for a
        function returning a one-element tensor: the gradients accumulate into the leaves'
        `.grad` as `backward()` accumulates them (the same bits), and the loss comes back as
        a Python float. A replay runs the forward and backward programs directly, without a
        tensor, a node or a sweep for the result (a training step's objective needs none); a call
        that traces, a leaf argument computed by an op, or anomaly mode takes the general
        path."""
        mode = current_mode()
        if mode & RECORDING and not mode & (TRACING | ANOMALY):
            key, call_args, entry = self._lookup(args, mode)
            if entry is not None and entry.program.scalar_loss and entry.replays(call_args):
                loss = self._replay_backward(entry.program, call_args)
                if loss is not None:
                    return loss
        loss_tensor = self(*args)
        loss_tensor.backward()
        return loss_tensor.item()

    def _replay_backward(self, program: _Program, args: tuple) -> float | None:
        """`value_and_backward` by the programs alone; None (having done nothing) if a leaf
        argument has a node (gradients flow on into its graph) or the program is stale."""
        if program.replay is not None:
            return program.replay(args)
        leaves = program.outside_leaves
        if leaves is None:
            leaves = [t if t is not None else args[position]
                      for position, t in program.leaf_sources]
            for leaf in leaves:
                if leaf._node is not None:
                    return None
        # The programs themselves (anomaly mode takes the general path).
        values = program.load(args)
        if values is None:
            return None
        program.run_steps(values)
        out = values[program.result.index]  # before backward, which may free it
        run_backward = program.run_backward
        grads = (run_backward(values, program.ones, True) if run_backward is not None
                 else program.backward(values, program.ones, True))
        for leaf, g, fresh in zip(leaves, grads, program.fresh):
            dtype = leaf._data.dtype
            if g.dtype is not dtype and g.dtype != dtype:  # `is`: the usual case, quick
                g = g.astype(dtype)
            elif not fresh:  # a VJP's own array (the seed, a view of it): the caller's copy
                g = g.copy()
            leaf.grad = g if leaf.grad is None else leaf.grad + g
        return out.item()

    def _lookup(self, args: tuple, mode: int) -> tuple[tuple, tuple, _Entry | None]:
        """The signature of a call, its arguments (strided arrays made contiguous), and the
        cache's entry for it, if any."""
        key, args = _signature(args, mode)
        # Without the lock: each of these is one step of the dict's C code under the GIL (the
        # lock orders the trace path's insertions and evictions).
        entry = self._cache.get(key)
        if entry is not None:
            try:  # noqa: SIM105 (contextlib.suppress would cost a context manager per call)
                self._cache.move_to_end(key)
            except KeyError:  # evicted by another thread in between: still this call's
                pass
        return key, args, entry

    def _trace_call(self, key: tuple, args: tuple, entry: _Entry | None, mode: int) -> Tensor:
        """A call that traces `fn`: the first of its signature, the second (checked against
        the first), or one its program cannot replay."""
        arrays = _Inputs.copies(args)
        result, program = self._trace(args, mode)
        inputs = _Inputs(arrays, program)
        if entry is not None and not entry.program.stale():
            _compare(entry.program.trace, program.trace)
            entry.compared = True
            if not entry.inputs.same(args, entry.program):  # type: ignore[union-attr]
                entry.checked, entry.inputs = True, None
        else:
            with self._lock:
                self._cache[key] = _Entry(program, inputs)
                self._cache.move_to_end(key)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return result

    def _trace(self, args: tuple, mode: int) -> tuple[Tensor, _Program]:
        started = time.perf_counter()
        arrays = {i: a for i, a in enumerate(args) if type(a) is np.ndarray}
        trace = _Trace(arrays, bool(mode & RECORDING))
        swapped = []
        for i, a in enumerate(args):
            if isinstance(a, Tensor):  # its vertex may be a node: gradients flow on into it
                trace.tensor_slot(a, ("tensor", i))
                swapped.append((a, type(a)))
        try:
            for a, cls in swapped:
                a.__class__ = _traced_class(cls)
            with _tracing(trace):
                result = self.fn(*args)
        finally:
            for a, cls in swapped:
                a.__class__ = cls
            for out in trace.outputs:
                out.__class__ = out.__class__.__mro__[1]
        if not isinstance(result, Tensor):
            raise TraceError(f"compile: fn must return a Tensor, got {type(result).__name__}")
        program = _Program(trace, result, mode, self)
        self.traces += 1
        self.trace_seconds += time.perf_counter() - started
        return result, program

    def _replay(self, program: _Program, args: tuple) -> Tensor | None:
        """The program's result for `args`, its backward one node of the tape; None if the
        program is stale."""
        values = program.forward(args)
        if values is None:
            return None
        out = values[program.result.index]
        if out.base is not None:  # a view of something the program reads: the caller's own
            out = out.copy()
        if not (program.requires_grad and program.leaves):
            return _make(out, False, None)
        inputs = [t if t is not None else args[position]._node or args[position]
                  for position, t in program.leaf_sources]
        node = Node(self._node_name, program.leaf_vjps, inputs, (_Backward(program, values),),
                    {}, None, out)
        return _make(out, True, node)


def compile(fn: Callable[..., Tensor], *, cache_size: int = 8) -> CompiledFunction:
    """`compile(fn)(*args)` returns what `fn(*args)` returns, a Tensor, computed by a program
    traced from `fn` once per signature and replayed on later calls; `backward()` on it
    fills `.grad` as eager mode does, with the same float64 bits.

    The signature is: each Tensor argument's shape, dtype and whether it requires grad; each
    NumPy array argument's shape and dtype; the value of any other argument (a number, a
    string: it is baked into the trace, as `jax.jit`'s static arguments); and this thread's
    grad and anomaly mode. A new signature traces again; the `cache_size` most recently used
    signatures are kept.

    The rules, as `jax.jit`'s: `fn` is a function of its arguments and of the tensors it
    reads from outside (parameters, whose current `.data` every call reads). Its Python runs
    only when tracing, so Python that depends on a traced tensor's value (`bool(t)`,
    `float(t)`, `t.item()`, `t.data`) raises `TraceError`; a NumPy array or number that `fn`
    computes itself is a constant of the trace, and if a later trace finds it changed (drawn
    at random inside `fn`, computed from an argument or a parameter's value outside the
    engine) the call raises `TraceError`: pass such arrays in as arguments. Calls trace until
    two traces from different inputs agree (a call with the inputs of the last trace
    replays it meanwhile). Keyword arguments are refused.
    """
    return CompiledFunction(fn, cache_size)


@contextlib.contextmanager
def _tracing(trace: _Trace) -> Iterator[None]:
    token = _ACTIVE.set(trace)
    mode_token = modes._mode.set(current_mode() | TRACING)
    try:
        yield
    finally:
        modes._mode.reset(mode_token)
        _ACTIVE.reset(token)


def _signature(args: tuple, mode: int) -> tuple[tuple, tuple]:
    """The signature of a call with `args`, and `args` with any strided array made
    contiguous (a program's NumPy calls round as they did on the trace's layout)."""
    parts: list[Any] = [mode & (RECORDING | ANOMALY)]
    strided = False
    i = -1
    for a in args:
        i += 1
        if type(a) is _ndarray:
            parts += a.shape, a.dtype  # flat: a quicker hash than a tuple per argument
            strided = strided or not a.flags.c_contiguous
        elif isinstance(a, Tensor):
            data = a._data
            parts.append((type(a), data.shape, data.dtype, a.requires_grad, a._node is None))
        else:
            try:
                hash(a)
            except TypeError:
                raise TypeError(f"compile: argument {i} is a {type(a).__name__}, which cannot "
                                "be part of a signature; pass Tensors, NumPy arrays or "
                                "hashable values (numbers, strings, tuples)") from None
            parts.append((type(a), a))
    if strided:
        args = tuple(np.ascontiguousarray(a) if type(a) is np.ndarray else a for a in args)
    return tuple(parts), args


def _compare(first: _Trace, second: _Trace) -> None:
    """Refuse if two traces of one signature differ: the first would replay stale values."""
    if len(first.steps) != len(second.steps) or any(
            a.op is not b.op or a.inputs != b.inputs for a, b in zip(first.steps, second.steps)):
        raise TraceError(
            "compile: fn ran different ops on two calls with the same signature: its Python "
            "control flow depends on something other than the argument shapes and values "
            "(a global, a random draw); make it a function of its arguments")
    for step_a, step_b in zip(first.steps, second.steps):
        if not _same(step_a.options, step_b.options):
            raise TraceError(f"compile: the options of '{step_a.op.name}' changed between "
                             "two calls with the same signature; pass what they depend on as "
                             "an argument")
    for slot, (a, b, kind_a, kind_b) in enumerate(
            zip(first.values, second.values, first.kinds, second.kinds)):
        if kind_a[0] != kind_b[0] or kind_a[0] not in ("constant", "captured", "output") \
                and not _same(kind_a[1:], kind_b[1:]):
            raise TraceError("compile: fn read its inputs differently on two calls with the "
                             "same signature; make it a function of its arguments")
        if kind_a[0] == "constant" and not _same(a, b) or (
                kind_a[0] == "captured" and kind_a[1] is not kind_b[1]
                and not _same(a, b)):
            op = next((s.op.name for s in second.steps if slot in s.inputs), "?")
            raise TraceError(
                f"compile: an operand of '{op}' (shape {np.shape(b)}) is not an argument and "
                "changed between two calls with the same signature: a trace keeps it as a "
                "constant. It was computed outside the engine from an argument, a random "
                "generator or a parameter's value: pass it to the compiled function as an "
                "argument, or compute it with minigrad ops")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (np.shape(a) == np.shape(b) and np.result_type(a) == np.result_type(b)
                and bool(np.array_equal(a, b, equal_nan=np.result_type(a).kind == "f")))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if type(a) is not type(b):
        return False
    return bool(a == b)
