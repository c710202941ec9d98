"""`scan(f, init, xs)`: a loop whose backward the engine derives.

`f(carry, x) -> (carry, y)` is traced once per signature (`minigrad.trace`) into a program;
the loop runs that program's forward once per step, and backward runs its backward once
per step in reverse: the body's own ops' VJPs, nothing written for the loop. The carry's
cotangent passes from step to step; each step's contributions to a tensor the body reads
from outside (a loop invariant: a weight) are added up as an unrolled graph's would be, by
the tape's rule, and the xs' cotangents are stacked.

The whole loop is one op of the tape with one node; its outputs (the final carry's
tensors and the stacked ys) are parts of that node's output, an object array, so that one
backward of the loop receives every output's cotangent at once.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import anomaly, nn, tape
from .modes import ANOMALY, RECORDING, TRACING, current_mode
from .primitive import Domain, Op, defop, recorder
from .tape import Contributions, Cotangent, accumulate, sum_to_shape
from .tensor import Tensor
from .trace import Program, Trace, Tracer

__all__ = ["scan"]


class Parts(Cotangent):
    """The cotangent of one part of a multi-output node's object array."""

    __slots__ = ("index", "g")

    def __init__(self, index: int, g: np.ndarray):
        self.index, self.g = index, g

    def densify(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        parts = np.empty(shape, object)
        parts[self.index] = self.g
        return parts

    def add_into(self, dense: np.ndarray) -> None:
        current = dense[self.index]
        dense[self.index] = self.g if current is None else current + self.g


# One output of a multi-output node: `packed[index]`, its cotangent that part of the node's.
_part = defop("part", lambda packed, index: packed[index],
              (lambda g, out, index: Parts(index, g),), saves="nothing", register=False)


def _flatten(tree: Any, what: str) -> tuple[list[Any], int | None]:
    """The leaves of a Tensor, array or number, or a tuple of them; the tuple's length (None
    for a single leaf)."""
    if isinstance(tree, tuple):
        return list(tree), len(tree)
    if isinstance(tree, list):
        raise TypeError(f"scan: {what} must be a tensor, an array or a tuple of them, got a "
                        "list (a tuple keeps its structure fixed)")
    return [tree], None


def _unflatten(leaves: Sequence[Any], n: int | None) -> Any:
    return leaves[0] if n is None else tuple(leaves)


def _leaf(x: Any, what: str) -> Tensor | np.ndarray:
    if isinstance(x, Tensor):
        return x
    array = np.asarray(x)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"scan: {what} must hold numbers, got dtype {array.dtype}")
    return array if array.dtype.kind == "f" else array.astype(np.float64)


def _data(x: Tensor | np.ndarray) -> np.ndarray:
    return x._data if isinstance(x, Tensor) else x


class _Body:
    """`f` traced for one signature: the program, as a step function and its backward."""

    def __init__(self, program: Program, n_carry: int, n_x: int, ys_tree: int | None,
                 has_y: bool, generation: int):
        self.program = program
        self.n_carry, self.n_x, self.ys_tree, self.has_y = n_carry, n_x, ys_tree, has_y
        self.generation = generation
        self.captured = [t for _, t in program.captured]
        self.guards = [(t, t._data.shape, t._data.dtype, t.requires_grad)
                       for t in self.captured if type(t) is not Tracer]
        inputs = ", ".join(v.name for v in program.inputs)
        outputs = ", ".join(v.name for v in program.outputs)
        saved = ", ".join(program.saved)
        self.saves = bool(program.backward_steps)
        lines = program.forward_lines(lambda v: None)
        lines.append(f"return [{outputs}], [{saved}]" if self.saves else f"return [{outputs}]")
        self.forward = program.function(f"step({inputs})", lines, "scan body")
        if self.saves:
            seeds = [f"g{i}" for i in range(len(program.outputs))]
            body = [f"{saved}, = s" if saved else "pass", "if free: s.clear()"]
            body += program.backward_lines(seeds) + ["return grads"]
            self.backward = program.function(f"backward(s, free, {', '.join(seeds)})", body,
                                             "scan body")
            position = {v.index: i for i, v in enumerate(program.inputs)}
            self.grad_positions = [position[v.index] for v in program.grad_inputs]

    def stale(self) -> bool:
        return nn.generation != self.generation or any(
            t._data.shape != shape or t._data.dtype != dtype or t.requires_grad is not grad
            for t, shape, dtype, grad in self.guards)


class _Bodies:
    """The traced bodies of a function, by signature (the few most recent)."""

    def __init__(self) -> None:
        self.by_function: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.lock = threading.Lock()

    def get(self, f: Callable, key: tuple) -> _Body | None:
        owner, key = self._owner(f, key)
        cache = self.by_function.get(owner)
        return None if cache is None else cache.get(key)

    def put(self, f: Callable, key: tuple, body: _Body) -> None:
        owner, key = self._owner(f, key)
        with self.lock:
            cache = self.by_function.setdefault(owner, OrderedDict())
            cache[key] = body
            while len(cache) > 8:
                cache.popitem(last=False)

    @staticmethod
    def _owner(f: Callable, key: tuple) -> tuple[Any, tuple]:
        """A bound method is a new object per attribute read: keyed by its function, with
        the instance's identity in the signature."""
        self_ = getattr(f, "__self__", None)
        if self_ is not None and hasattr(f, "__func__"):
            return f.__func__, (id(self_), *key)
        return f, key


_BODIES = _Bodies()


def _trace_body(f: Callable, carry: list, carry_tree: int | None, xs: list,
                xs_tree: int | None, grads: list[bool], mode: int) -> _Body:
    """Trace `f` on tracers of one carry and one slice of each x, with the carry's
    requires-grad `grads` (a fixed point: see `scan`)."""
    generation = nn.generation
    trace = Trace(recording=bool(mode & RECORDING), anomaly=bool(mode & ANOMALY))
    carry_in = [trace.input(_data(c), g, raw=False) for c, g in zip(carry, grads)]
    x_in = [trace.input(_data(x)[0], isinstance(x, Tensor) and x.requires_grad, raw=False)
            for x in xs]
    with trace.active():
        out = f(_unflatten(carry_in, carry_tree), None if xs_tree == -1 else
                _unflatten(x_in, xs_tree))
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError(f"scan: f must return (carry, y), got {type(out).__name__}")
        new_carry, y = out
        leaves, tree = _flatten(new_carry, "the carry f returns")
        if tree != carry_tree or len(leaves) != len(carry):
            raise ValueError(f"scan: f returned a carry of structure {_structure(tree, leaves)}"
                             f" for one of {_structure(carry_tree, carry)}")
        outs = []
        for i, (new, old) in enumerate(zip(leaves, carry_in)):
            new = _owned(new, trace)
            if new.shape != old.shape or new.dtype != old.dtype:
                raise ValueError(f"scan: carry {i} changed from shape {old.shape} {old.dtype} "
                                 f"to {new.shape} {new.dtype} in one step; f must keep it")
            outs.append(new)
        y_leaves, y_tree = ([], None) if y is None else _flatten(y, "y")
        outs += [_owned(v, trace) for v in y_leaves]
    program = trace.finish(outs, "scan: f")
    return _Body(program, len(carry), len(xs), y_tree, y is not None, generation)


def _owned(x: Any, trace: Trace) -> Tensor:
    """`x` as an op output of this trace: an input, a constant or a number passed on as is
    becomes a copy (`astype`), which a program can return."""
    from .ops import astype

    value = trace.of.get(id(x)) if isinstance(x, Tensor) else None
    if value is None or value in trace.inputs or value.is_constant:
        x = astype(x if isinstance(x, Tensor) else _leaf(x, "y"))
    return x


def _structure(tree: int | None, leaves: Sequence[Any]) -> str:
    return "a single tensor" if tree is None else f"a tuple of {len(leaves)}"


class _Run:
    """One call of the loop: what its backward needs, and that backward's last result."""

    __slots__ = ("saved", "shapes", "dtypes", "seed", "grads")

    def __init__(self, saved: list, arrays: Sequence[np.ndarray]):
        self.saved = saved  # each step's values the body's VJPs read
        self.shapes = [a.shape for a in arrays]
        self.dtypes = [a.dtype for a in arrays]
        self.seed: Any = None
        self.grads: list = []


def _forward(*arrays: Any, body: _Body, length: int, reverse: bool) -> tuple:
    """The loop: the body's forward per step; the final carry and the stacked ys as an
    object array, and the call's `_Run`. A y that a step's VJPs also read is read from
    the ys' buffer afterwards, not kept twice."""
    nc, nx = body.n_carry, body.n_x
    carry, xs, invariants = list(arrays[:nc]), arrays[nc:nc + nx], arrays[nc + nx:]
    ys: list[np.ndarray] = []
    saved: list[Any] = [None] * length
    step = body.forward
    for k in (range(length - 1, -1, -1) if reverse else range(length)):
        try:
            result = step(*carry, *[x[k] for x in xs], *invariants)
        except anomaly.AnomalyError as error:
            raise anomaly.AnomalyError(f"{error} (scan step {k})") from None
        outs = result[0] if body.saves else result
        if not ys and len(outs) > nc:
            ys = [np.empty((length, *y.shape), y.dtype) for y in outs[nc:]]
        stored = {}
        for buffer, y in zip(ys, outs[nc:]):
            buffer[k] = y
            stored[id(y)] = buffer[k]
        carry = [stored.get(id(c), c) for c in outs[:nc]]
        if body.saves:
            saved[k] = [stored.get(id(a), a) for a in result[1]]
    packed = np.empty(nc + len(ys), object)
    for i, value in enumerate([*carry, *ys]):
        packed[i] = value
    return packed, _Run(saved, arrays)


def _vjps(arrays: Sequence[Any], options: dict[str, Any], inputs: Sequence[Any]) -> list:
    """One VJP per operand, all served by one run of the backward loop per sweep."""
    return [None if x is None else _SHARES[i] if i < len(_SHARES) else _Share(i)
            for i, x in enumerate(inputs)]


class _Share:
    """Operand i's VJP: its part of the backward loop's results, run once per sweep (a
    sweep densifies a new cotangent array for the loop's node: `seed`)."""

    __slots__ = ("i",)

    def __init__(self, i: int):
        self.i = i

    def __call__(self, g: np.ndarray, run: _Run, *arrays: Any, body: _Body, length: int,
                 reverse: bool) -> Any:
        if run.seed is not g:
            run.grads = _backward(g, run, body, length, reverse)
            run.seed = g
        return run.grads[self.i]


_SHARES = [_Share(i) for i in range(16)]


def _backward(parts: np.ndarray, run: _Run, body: _Body, length: int, reverse: bool) -> list:
    """The backward loop: the body's backward per step, from the last; the cotangent of
    each operand (None for an invariant none reached)."""
    nc, nx = body.n_carry, body.n_x
    shapes, dtypes, outputs = run.shapes, run.dtypes, body.program.outputs
    free = not tape.retaining.get()
    g_carry = [_given(parts[i], outputs[i]) for i in range(nc)]
    g_ys = [parts[i] for i in range(nc, len(outputs))]
    x_grads = [np.zeros(shapes[nc + j], dtypes[nc + j]) for j in range(nx)]
    invariants: dict[int, tuple[Any, bool]] = {}
    for k in (range(length) if reverse else range(length - 1, -1, -1)):
        seeds = g_carry + [_given(None if g is None else g[k], o)
                           for g, o in zip(g_ys, outputs[nc:])]
        saved = run.saved[k] if free else list(run.saved[k])
        grads = body.backward(saved, free, *seeds)
        g_carry = [np.zeros(shapes[i], dtypes[i]) for i in range(nc)]
        for position, g in zip(body.grad_positions, grads):
            if position < nc:
                g_carry[position] = _taken(_fold(None, False, g, shapes[position]),
                                           shapes[position])
            elif position < nc + nx:
                shape = shapes[position][1:]
                x_grads[position - nc][k] = _taken(_fold(None, False, g, shape), shape)
            else:
                current, owned = invariants.get(position, (None, False))
                invariants[position] = _fold(current, owned, g, shapes[position])
    if free:
        run.saved = []
    result: list[Any] = [*g_carry, *x_grads]
    for position in range(nc + nx, len(shapes)):
        found = invariants.get(position)
        result.append(None if found is None else _taken(found, shapes[position]))
    return result


def _given(g: np.ndarray | None, value: Any) -> np.ndarray:
    """An output's cotangent, zeros where it has none (no consumer needs it)."""
    return np.zeros(value.shape, value.dtype) if g is None else g


def _fold(current: Any, owned: bool, g: Any, shape: tuple) -> tuple[Any, bool]:
    """Add a step's contributions `g` (an array, or `Contributions`) by the tape's rule."""
    for part in (g if type(g) is Contributions else (g,)):
        current, owned = accumulate(current, part, owned, shape, None)  # type: ignore[arg-type]
    return current, owned


def _taken(found: tuple[Any, bool], shape: tuple) -> np.ndarray:
    g = found[0]
    return g if g.shape == shape else sum_to_shape(g, shape)


_SCAN = Op("scan", _forward, _vjps, Domain("untested"), True, False, None, True)
_record_scan = recorder(_SCAN)


def scan(f: Callable[[Any, Any], tuple[Any, Any]], init: Any, xs: Any = None,
         length: int | None = None, reverse: bool = False) -> tuple[Any, Any]:
    """Loop `carry, y = f(carry, x)` over the slices `x = xs[k]` (k = 0 .. L-1, or from the
    last when `reverse`), starting from `init`; return the final carry and the ys stacked
    on a new axis 0, as `jax.lax.scan`.

    The carry is a Tensor, an array or a number, or a tuple of them, and keeps its
    structure, shapes and dtypes (else a ValueError names both); `xs` likewise (each sliced
    along axis 0), or None with `length` given. `y` may be None (ys is then None). `f` is
    traced once per signature, its Python never run per step, so Python that decides on a
    traced value raises `TraceError`; it may read tensors from outside (a module's
    weights), whose gradients add up over the steps. Backward runs the body's own VJPs in
    reverse per step: nothing recurrence-specific is written anywhere.
    """
    carry, carry_tree = _flatten(init, "init")
    carry = [_leaf(c, "init") for c in carry]
    if xs is None:
        if length is None or isinstance(length, bool) or not isinstance(length, int) \
                or length < 0:
            raise ValueError(f"scan: without xs, length must be an integer >= 0, got {length!r}")
        x_leaves: list[Any] = []
        xs_tree: int | None = -1
    else:
        x_leaves, xs_tree = _flatten(xs, "xs")
        x_leaves = [_leaf(x, "xs") for x in x_leaves]
        lengths = {np.shape(_data(x))[:1] for x in x_leaves}
        if any(np.ndim(_data(x)) == 0 for x in x_leaves) or len(lengths) != 1:
            raise ValueError("scan: every xs must have the same leading axis length, got "
                             f"shapes {[np.shape(_data(x)) for x in x_leaves]}")
        found = lengths.pop()[0]
        if length is not None and length != found:
            raise ValueError(f"scan: length {length} but xs of length {found}")
        length = found
    if length == 0:
        raise ValueError("scan: a loop of length 0 has no carry to return the shape of ys "
                         "from; give at least one step")
    mode = current_mode()
    grads = [isinstance(c, Tensor) and c.requires_grad for c in carry]
    body = _body(f, carry, carry_tree, x_leaves, xs_tree, grads, mode)
    operands = [*carry, *x_leaves, *body.captured]
    packed = _record_scan(*operands, body=body, length=length, reverse=reverse)
    outs = [_part(packed, index=i) for i in range(len(body.program.outputs))]
    if packed.requires_grad:  # a step's VJPs may read a y: the graph keeps the ys' arrays
        for out in outs:
            out._shared = True
    nc = len(carry)
    ys = _unflatten(outs[nc:], body.ys_tree) if body.has_y else None
    return _unflatten(outs[:nc], carry_tree), ys


def _body(f: Callable, carry: list, carry_tree: int | None, xs: list, xs_tree: int | None,
          grads: list[bool], mode: int) -> _Body:
    """The traced body for this signature: cached unless stale; traced again while a carry
    that needs no gradient at the start comes to need one after a step (a fixed point)."""
    key = (carry_tree, xs_tree, mode & (RECORDING | ANOMALY),
           tuple((np.shape(_data(c)), np.result_type(_data(c))) for c in carry),
           tuple((np.shape(_data(x))[1:], np.result_type(_data(x)),
                  isinstance(x, Tensor) and x.requires_grad) for x in xs))
    while True:
        full_key = (*key, tuple(grads))
        body = None if mode >= TRACING else _BODIES.get(f, full_key)
        if body is None or body.stale():
            body = _trace_body(f, carry, carry_tree, xs, xs_tree, grads, mode)
            if mode < TRACING:
                _BODIES.put(f, full_key, body)
        out_grads = [v.requires_grad for v in body.program.outputs[:len(carry)]]
        if all(g or not o for g, o in zip(grads, out_grads)):
            return body
        grads = [g or o for g, o in zip(grads, out_grads)]
