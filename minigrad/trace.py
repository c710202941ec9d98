"""Tracing: a Python function of tensors, run once, becomes a program of op calls.

The idea, once: while a function is traced, every value it computes from its inputs is a
`Tracer`, a tensor whose shape and dtype Python may read and whose values it may not. So
Python cannot decide anything on a value (`bool`, `float`, `.item()`, `.data`, NumPy on
it raise `TraceError`), and what the trace records (the ops, their options, the shapes)
is all that the function's result depends on: the program is right for every input of
the same shapes, or the trace refused it. `minigrad.compile` replays a traced step;
`minigrad.scan` runs a traced loop body once per step.

A program's values are its inputs (the caller's arrays and the tensors the function read
from outside, its parameters), its constants (arrays and numbers the function made
without a traced value) and its steps' outputs. It runs as Python code written for it, one
line per NumPy call, doing exactly what `record` does in eager mode (the same forward on
the same arrays, copies and views alike), so its numbers are eager mode's. Its backward
calls the ops' own VJPs in reverse and joins cotangents by `tape.accumulate`, the rule of
the eager sweep; what reaches an input is handed back as the contributions themselves, in
order (`tape.Contributions`), for the caller's sweep to add as eager mode adds them.
"""

from __future__ import annotations

import builtins
import dataclasses
import decimal
import inspect
import numbers
import operator
import struct
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from . import anomaly, modes, primitive, tape, tensor
from .modes import ANOMALY, RECORDING, TRACING, TraceError, current_mode, refuse_traced
from .primitive import Op, defop, traced_shape
from .tensor import Tensor, tensor_array

__all__ = ["Program", "Trace", "TraceError", "Tracer", "frozen", "settle"]


class Tracer(Tensor):
    """A traced value: its shape and dtype are known, its values are not Python's to read.

    One standing for a NumPy array (an array argument, or what NumPy's operators and view
    methods make of one) keeps NumPy's semantics under them, as in eager mode: `X.T` is a
    view, not an op's copy, so the ops it reaches see eager mode's layout.
    """

    __slots__ = ()
    _traced = True

    def __repr__(self) -> str:
        if self._data is None:
            return "Tracer(escaped from its trace)"
        return f"Tracer(shape={self.shape}, dtype={self.dtype})"

    def __getattr__(self, name: str) -> Any:  # (only for what a Tensor does not have)
        raise AttributeError(
            f"a traced value (shape {traced_shape(self)}) has no attribute {name!r}: while a "
            "function is traced (minigrad.compile, minigrad.scan) its arguments are tensors, "
            "with the tensor's methods and minigrad's ops (mg.astype, mg.clip, x.max(), ...), "
            "not NumPy's array methods; convert an array before the call if you need those")


def _array_ufunc(self: Tracer, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
    """A NumPy ufunc on array arguments alone (`np.exp(x)`, `np.int64(3) // x`, `mask &
    np.True_`): NumPy's own, as in eager mode; on a tensor, as a tensor takes it."""
    trace = _ACTIVE.get()
    if trace is None or not all(trace.is_raw(x) for x in inputs if isinstance(x, Tensor)):
        return Tensor.__array_ufunc__(self, ufunc, method, *inputs, **kwargs)
    if method != "__call__" or ufunc.nout != 1:
        what = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
        raise TraceError(
            f"NumPy's {what} of an array argument inside a traced function (minigrad.compile, "
            "minigrad.scan): the trace records NumPy's ufuncs called on arrays (np.exp(x)), "
            "not their methods (reduce, outer, ...) nor those of two outputs (np.divmod); "
            "compute it before the call, or with x.sum() and the like")
    _refuse_out(ufunc.__name__, kwargs.pop("out", None))
    traced = [k for k, v in kwargs.items() if isinstance(v, Tensor)]
    if traced:  # (a program keeps its keywords as they are: `where=x > 0` would be frozen)
        raise TraceError(f"NumPy's {ufunc.__name__}(..., {traced[0]}=...) with a traced value "
                         "for the keyword, inside a traced function (minigrad.compile, "
                         "minigrad.scan): compute it with operators (a mask times x), or "
                         "before the call")
    op = _UFUNCS.get(ufunc) or _UFUNCS.setdefault(ufunc, _numpy_op(ufunc.__name__, ufunc,
                                                                  ufunc.nin))
    trace.numpy = True
    try:
        return trace.call(op, inputs, kwargs)
    finally:
        trace.numpy = False


_UFUNCS: dict[np.ufunc, Op] = {}  # (one op per ufunc: a program's key compares ops)
setattr(Tracer, "__array_ufunc__", _array_ufunc)  # noqa: B010


def _refused(what: str) -> Callable[..., Any]:
    def refuse(self: Tracer, *args: Any, **kwargs: Any) -> Any:
        raise refuse_traced(what, traced_shape(self))

    return refuse


# Python reads no traced value, from any thread or context (the trace's own refuses any
# tensor's: `modes.refuse_traced`), nor after the trace.
for _name, _what in (("item", ".item()"), ("numpy", ".numpy()"), ("__float__", "float()"),
                     ("__bool__", "bool()"), ("__int__", "int()"), ("__index__", "an index"),
                     ("__round__", "round()")):
    setattr(Tracer, _name, _refused(_what))


def _tracer_array(self: Tracer, *args: Any, **kwargs: Any) -> Any:
    """NumPy asking for a traced value's array: a NumPy function the trace does not record
    (np.std(x), np.cumsum(x), np.dot(x, y)), or np.asarray(x)."""
    trace = _ACTIVE.get()
    if trace is not None and trace.is_raw(self):
        raise TraceError(
            "a NumPy function (np.std, np.cumsum, np.dot, np.asarray, ...) of an array "
            f"argument (shape {traced_shape(self)}) inside a traced function (minigrad."
            "compile, minigrad.scan): the trace records NumPy's operators, its ufuncs "
            "(np.exp(x)) and x.T, x.reshape, x.sum, x.astype and the like on arrays, not "
            "NumPy's other functions; compute it before the call and pass the result in")
    raise refuse_traced("NumPy (np.asarray, a ufunc, ...)", traced_shape(self))


setattr(Tracer, "__array__", _tracer_array)  # noqa: B010


def _read_requires_grad(self: Tracer) -> bool:
    """A traced value's `.requires_grad`, noted by each trace it is a value of (a scan's
    body read whether its carry needs a gradient, which may change after the first step)."""
    trace = _ACTIVE.get()
    while trace is not None:
        value = trace.of.get(id(self))
        if value is not None:
            trace.grad_reads.append((value, self._requires_grad))
        trace = trace.enclosing
    return self._requires_grad


setattr(Tracer, "requires_grad",  # noqa: B010
        property(_read_requires_grad, Tensor.requires_grad.fset))  # type: ignore[attr-defined]
setattr(Tracer, "data", property(_refused(".data")))  # noqa: B010 (mypy: a read-only property)
# Nor its place in the caller's graph, which a program does not replay: a traced value has
# no graph of its own (so is_leaf would say True of every one) and no gradient yet.
setattr(Tracer, "is_leaf", property(_refused(".is_leaf")))  # noqa: B010
setattr(Tracer, "grad", property(_refused(".grad"), _refused("setting .grad")))  # noqa: B010


def _numpy_like(method: Callable[..., Any], numpy: Callable[..., Any] | None = None
                ) -> Callable[..., Any]:
    """A tracer's `method` (an operator or method), computed as NumPy computes it (by `numpy`
    where NumPy's differs) where the tracer and every tensor among the arguments stand for
    NumPy arrays."""

    def numpy_like(self: Tracer, *args: Any, **kwargs: Any) -> Any:
        trace = _ACTIVE.get()
        if trace is None or not trace.is_raw(self) or not all(
                trace.is_raw(y) for y in args if isinstance(y, Tensor)):
            return method(self, *args, **kwargs)
        trace.numpy = True
        if operator_ and args and type(args[0]) in (list, tuple):  # (NumPy's array of it)
            args = (np.asarray(args[0]),)
        if kwargs:  # (NumPy's np.sum(x) calls x.sum(axis=..., dtype=None, out=None))
            kwargs = {k: v for k, v in kwargs.items() if not _default(method.__name__, k, v)}
        try:
            return (numpy or method)(self, *args, **kwargs)
        except TypeError:
            taken = inspect.signature(numpy or method).parameters
            unknown = [k for k in kwargs if k not in taken or taken[k].kind == _MORE]
            if unknown:  # (a keyword of NumPy's that minigrad's method does not take)
                raise TraceError(
                    f"{method.__name__}(..., {'=..., '.join(unknown)}=...) of an array inside "
                    "a traced function (minigrad.compile, minigrad.scan): there it takes "
                    f"the arguments of minigrad's {method.__name__}; compute it before the "
                    "call and pass the result in") from None
            raise
        finally:
            trace.numpy = False

    # A binary operator (x + [1, 2]), whose operand NumPy takes as an array of it; not
    # indexing, whose tuple is the index
    operator_ = method.__name__.startswith("__") and method.__name__ != "__getitem__"
    numpy_like.__name__ = method.__name__
    return numpy_like


# What NumPy's functions pass a method when left at their defaults (`np.sum(x)`,
# `np.mean(x)`, `np.reshape(x, shape)` on an array argument): the same as not passing them.
_DEFAULTS = frozenset({"dtype", "out"})  # (None for either: as not given)
_MORE = inspect.Parameter.VAR_KEYWORD


def _default(method: str, keyword: str, value: Any) -> bool:
    if method == "astype":  # (no NumPy function passes it defaults: dtype=None is float64)
        return False
    if keyword == "order":  # (reshape's default; astype's is "K")
        return method == "reshape" and type(value) is str and value == "C"
    return keyword in _DEFAULTS and value is None


def _numpy_op(name: str, function: Callable[..., Any], operands: int) -> Op:
    return Op(name, function, (None,) * operands, primitive.Domain("untested"), False, False)


def _refuse_out(name: str, out: Any) -> None:
    if out is not None:  # (eager mode writes into it, which a program's calls would not)
        raise TraceError(f"{name}(..., out=...) of an array inside a traced function (minigrad."
                         "compile, minigrad.scan): the program would not write into out on its "
                         "later calls; use the result")


# NumPy's clip with each pattern of bounds given (a None bound is no operand: NumPy's own
# rules decide, a copy for neither, an integer bound beyond x's dtype dropped)
_CLIPS = {(True, True): _numpy_op("clip", np.clip, 3),
          (True, False): _numpy_op("clip", lambda x, low, **k: np.clip(x, low, None, **k), 2),
          (False, True): _numpy_op("clip", lambda x, high, **k: np.clip(x, None, high, **k), 2),
          (False, False): _numpy_op("clip", lambda x, **k: np.clip(x, None, None, **k), 1)}


def _numpy_clip(self: Tracer, min: Any = None, max: Any = None, out: Any = None,
                **kwargs: Any) -> Any:
    """NumPy's `clip` of an array argument, where the engine's takes its bounds as Python
    floats (as PyTorch's clamp)."""
    _refuse_out("clip", out)
    bounds = tuple(bound for bound in (min, max) if bound is not None)
    op = _CLIPS[min is not None, max is not None]
    return _ACTIVE.get().call(op, (self, *bounds), kwargs)  # type: ignore[union-attr]


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
              "__truediv__", "__rtruediv__", "__matmul__", "__rmatmul__", "__neg__", "__abs__",
              "__getitem__", "transpose", "reshape", "mean", "max", "squeeze"):
    setattr(Tracer, _name, _numpy_like(getattr(Tensor, _name)))


def _numpy_operator(name: str, function: Callable[..., Any], operands: int = 2
                    ) -> Callable[..., Any]:
    """NumPy's own operator `function` on arrays, as eager mode computes it: `x ** 2` is
    np.square (not np.power's loop, bit for bit), `x < y` a bool array (not the table's float
    mask), `x // 2`, `~mask`, `a & b` (which no op of the table computes)."""
    op = _numpy_op(name, function, operands)
    # (with another object, as NumPy takes it: `x == None` is an array of False)
    with_object = _numpy_op(name, lambda a, other: function(a, other), 1)

    def numpy_operator(self: Tracer, *other: Any) -> Any:
        trace = _ACTIVE.get()
        if other and not isinstance(other[0], (Tensor, np.ndarray, np.generic, numbers.Number)):
            if isinstance(other[0], (list, tuple)):  # (its array, as NumPy makes it)
                return trace.call(op, (self, np.asarray(other[0])), {})  # type: ignore[union-attr]
            return trace.call(with_object, (self,), {"other": other[0]})  # type: ignore[union-attr]
        return trace.call(op, (self, *other), {})  # type: ignore[union-attr]

    return numpy_operator


def _no_operator(name: str, symbol: str, reflected: bool = False) -> Callable[..., Any]:
    """An operator a tensor lacks, in eager mode too (`t // 2`): the other operand's
    reflected method, as Python tries it, else Python's TypeError, naming the class
    'Tensor' as eager mode's does (not this one's)."""

    def no_operator(self: Tracer, other: Any) -> Any:
        if not reflected and not isinstance(other, Tensor):
            method = getattr(type(other), f"__r{name}__", None)
            result = NotImplemented if method is None else method(other, self)
            if result is not NotImplemented:
                return result
        names = ["Tensor", "Tensor" if isinstance(other, Tracer) else type(other).__name__]
        raise TypeError(f"unsupported operand type(s) for {symbol}: '{names[reflected]}' and "
                        f"'{names[not reflected]}'")

    no_operator.__name__ = f"__{'r' if reflected else ''}{name}__"
    return no_operator


def _no_unary(symbol: str) -> Callable[..., Any]:
    def no_unary(self: Tracer) -> Any:  # (NotImplemented is no error from a unary operator)
        raise TypeError(f"bad operand type for unary {symbol}: 'Tensor'")

    return no_unary


_OPERATORS = {"pow": operator.pow, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
              "ge": operator.ge, "eq": operator.eq, "ne": operator.ne,
              "floordiv": operator.floordiv, "mod": operator.mod, "and": operator.and_,
              "or": operator.or_, "xor": operator.xor, "lshift": operator.lshift,
              "rshift": operator.rshift}
_REFLECTED = {"pow": "**", "floordiv": "//", "mod": "%", "and": "&", "or": "|", "xor": "^",
              "lshift": "<<", "rshift": ">>"}  # (and their symbols)
for _name, _function in _OPERATORS.items():
    _missing = _no_operator(_name, _REFLECTED.get(_name, _name))
    setattr(Tracer, f"__{_name}__", _numpy_like(getattr(Tensor, f"__{_name}__", _missing),
                                                _numpy_operator(_name, _function)))
    if _name in _REFLECTED:
        setattr(Tracer, f"__r{_name}__", _numpy_like(
            getattr(Tensor, f"__r{_name}__", _no_operator(_name, _REFLECTED[_name], True)),
            _numpy_operator(_name, lambda a, b, f=_function: f(b, a))))
for _name, _unary, _symbol in (("invert", operator.invert, "~"), ("pos", operator.pos, "+")):
    setattr(Tracer, f"__{_name}__", _numpy_like(getattr(Tensor, f"__{_name}__", _no_unary(_symbol)),
                                                _numpy_operator(_name, _unary, 1)))
setattr(Tracer, "clip", _numpy_like(Tensor.clip, _numpy_clip))  # noqa: B010
_ASTYPE = _numpy_op("astype", lambda x, dtype, **k: x.astype(dtype, **k), 1)
setattr(Tracer, "astype", _numpy_like(  # noqa: B010 (a tensor's is mg.astype)
    Tensor.astype, lambda self, dtype, **kwargs: _ACTIVE.get().call(  # type: ignore[union-attr]
        _ASTYPE, (self,), {"dtype": dtype, **kwargs})))
_MIN = _numpy_op("min", lambda x, **k: np.min(x, **k), 1)


def _numpy_min(self: Tracer, axis: Any = None, keepdims: bool = False, out: Any = None,
               **kwargs: Any) -> Any:
    """NumPy's min of an array (the engine's is -max(-x), a tensor after its first step)."""
    _refuse_out("min", out)
    return _ACTIVE.get().call(  # type: ignore[union-attr]
        _MIN, (self,), {"axis": axis, "keepdims": keepdims, **kwargs})


setattr(Tracer, "min", _numpy_like(Tensor.min, _numpy_min))  # noqa: B010
_SUM = _numpy_op("sum", lambda x, **k: np.sum(x, **k), 1)


def _numpy_sum(self: Tracer, axis: Any = None, dtype: Any = None, out: Any = None,
               keepdims: bool = False, **kwargs: Any) -> Any:
    """NumPy's sum of an array (the engine's sums float16 in float32, as PyTorch does)."""
    _refuse_out("sum", out)
    return _ACTIVE.get().call(  # type: ignore[union-attr]
        _SUM, (self,), {"axis": axis, "dtype": dtype, "keepdims": keepdims, **kwargs})


setattr(Tracer, "sum", _numpy_like(Tensor.sum, _numpy_sum))  # noqa: B010
_VAR = _numpy_op("var", lambda x, **k: x.var(**k), 1)


def _numpy_var(self: Tracer, axis: Any = None, dtype: Any = None, out: Any = None,
               ddof: float = 0, keepdims: bool = False, **kwargs: Any) -> Any:
    """NumPy's var of an array, in its arguments' order (the engine's refuses a reduction
    that leaves no degrees of freedom, where NumPy's gives NaN and a warning)."""
    _refuse_out("var", out)
    return _ACTIVE.get().call(  # type: ignore[union-attr]
        _VAR, (self,), {"axis": axis, "dtype": dtype, "ddof": ddof, "keepdims": keepdims,
                        **kwargs})


setattr(Tracer, "var", _numpy_like(Tensor.var, _numpy_var))  # noqa: B010
_FLATTEN = _numpy_op("flatten", lambda x, order: x.flatten(order), 1)
setattr(Tracer, "flatten", _numpy_like(  # noqa: B010 (NumPy's flatten(order), not the engine's)
    Tensor.flatten, lambda self, order="C": _ACTIVE.get().call(  # type: ignore[union-attr]
        _FLATTEN, (self,), {"order": order})))
setattr(Tracer, "T", property(_numpy_like(Tensor.T.fget)))  # type: ignore[attr-defined]  # noqa: B010

def _in_place(name: str, symbol: str) -> Callable[..., Any]:
    """`x += y` and the like. On a tensor, as eager mode's (`Tensor.__iadd__`: in the graph,
    `x = x + y`; else in place, which a program cannot follow: refused); on what is a NumPy
    scalar in eager mode (a reduction's result), `x = x + y` (Python's fallback, as in eager
    mode). On an array argument, or a view of one, eager mode would change the caller's
    array, which a program's later calls would not do: refused. On an array computed
    inside, NumPy's own in-place operator, a step of the program (x's layout and dtype
    kept, NumPy's casting rules: eager mode's bits), with every other name for x's memory
    retired: eager mode changes them all, which a program cannot follow, so a later read of
    any of them raises."""
    tensors = getattr(Tensor, f"__i{name}__", None)
    missing = _no_operator(name, f"{symbol}=")  # (as Python says it for a tensor)
    operate = getattr(operator, f"i{name}")

    def numpys_operator(x: np.ndarray, other: Any) -> np.ndarray:
        try:
            return operate(x, other)
        except TypeError as error:  # (NumPy's casting refusal, a UFuncTypeError: a
            raise TypeError(str(error)) from None  # TypeError as the op's error names it)

    numpys = _numpy_operator(f"i{name}", numpys_operator)

    def in_place(self: Tracer, other: Any) -> Any:
        trace = _ACTIVE.get()
        if trace is None or not trace.is_raw(self):
            if tensors is None:
                return missing(self, other)
            if trace is not None and current_mode() & RECORDING and self._requires_grad \
                    and trace.of.get(id(self)) in trace.inputs:
                raise TraceError(
                    f"`x {symbol}= ...` on a tensor argument or a scan's carry that requires "
                    f"grad (shape {traced_shape(self)}), while grad mode is on: eager mode "
                    "refuses it on a leaf and computes a new tensor otherwise, which a "
                    f"program cannot tell apart; write x = x {symbol} ...")
            return tensors(self, other)
        if trace.is_scalar(self):
            return NotImplemented
        what = f"`x {symbol}= ...`"
        if isinstance(other, Tensor) and not trace.is_raw(other):
            raise TypeError(
                f"{what} of an array (shape {traced_shape(self)}) by a tensor: NumPy's in-place "
                "operator would compute outside the graph, which eager mode refuses too; "
                f"write `x = x {symbol} t`")
        trace.refuse_writing(self, what, f"`x = x {symbol} ...`")
        trace.numpy = True
        try:  # (the program's own array, fresh on each call: written in place, as eagerly)
            result = numpys(self, other)
        finally:
            trace.numpy = False
        trace.retire(self, what, but=result)
        return result

    return in_place


for _name, _symbol in (("add", "+"), ("sub", "-"), ("mul", "*"), ("truediv", "/"),
                      ("pow", "**"), ("matmul", "@"), ("floordiv", "//"), ("mod", "%"),
                      ("and", "&"), ("or", "|"), ("xor", "^"), ("lshift", "<<"),
                      ("rshift", ">>")):
    setattr(Tracer, f"__i{_name}__", _in_place(_name, _symbol))


def _setitem(self: Tracer, index: Any, value: Any) -> None:
    trace = _ACTIVE.get()
    if trace is not None and trace.is_raw(self):
        trace.refuse_writing(self, "`x[...] = ...`", "a mask and mg.where")
        raise TraceError(f"`x[...] = ...` on an array (shape {traced_shape(self)}) computed "
                         "inside a traced function (minigrad.compile, minigrad.scan) is not "
                         "recorded: write it with ops (a mask and mg.where, mg.stack)")
    Tensor.__setitem__(self, index, value)  # (refused, as in eager mode)


setattr(Tracer, "__setitem__", _setitem)  # noqa: B010


class Value:
    """A value of a program: an input, a constant, or a step's output (or residual)."""

    __slots__ = ("index", "shape", "dtype", "requires_grad", "raw", "scalar", "constant",
                 "c_order")

    def __init__(self, index: int, array: Any, requires_grad: bool, raw: bool,
                 constant: Any = None):
        self.index, self.requires_grad = index, requires_grad
        self.raw = raw  # eager mode would see a NumPy array here, not a tensor
        self.scalar = False  # ... a NumPy scalar (held as a 0-d array): NumPy computes on it
        self.constant = constant  # the array or number, for a constant
        if type(array) is np.ndarray:
            # c_order: laid out as a new C array of its shape (a loop may give it the row of
            # a stack instead: a reduction of it then adds in the same order)
            self.shape, self.dtype = array.shape, array.dtype
            self.c_order = array.flags.c_contiguous
        else:
            self.shape, self.dtype, self.c_order = np.shape(array), np.result_type(array), True

    @property
    def name(self) -> str:
        return f"k{self.index}" if self.is_constant else f"v{self.index}"

    @property
    def is_constant(self) -> bool:
        return self.constant is not None


@dataclass(slots=True, eq=False)
class Step:
    """One op call of a program."""

    op: Op
    inputs: list[Value]
    options: dict[str, Any]
    out: Value
    residual: Value | None
    vjps: Any
    scalar: bool  # the forward gave a NumPy scalar, made an array
    site: Any  # where it was called, in anomaly mode
    numpy: bool  # NumPy's own operator or method on arrays: no `record` around it
    arrays: tuple  # the operands' arrays, for VJPs made per call, until the trace ends
    recording: bool  # grad mode was on for it (it may need a gradient)


class Parts(tape.Cotangent):
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


def _root(array: np.ndarray) -> np.ndarray:
    """The array at the end of `array`'s chain of bases (itself if it owns its data)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether `a` holds exactly `b`'s bytes (-0.0 is not 0.0; a NaN equals its own bits),
    element by element, in any layout (of one dtype and shape)."""
    return (a.shape == b.shape and a.dtype == b.dtype and np.array_equal(
        np.ascontiguousarray(a).reshape(-1).view(np.uint8),
        np.ascontiguousarray(b).reshape(-1).view(np.uint8)))


def _reached(steps: Sequence[Step], reached: set[int]) -> list[Step]:
    """Of `steps` (in reverse order), those a gradient of the values `reached` passes
    through; `reached` gains the values it reaches."""
    swept = []
    for step in steps:
        if step.out.index in reached:
            swept.append(step)
            reached.update(x.index for x, vjp in zip(step.inputs, step.vjps)
                           if x.requires_grad and vjp is not None)
    return swept


def _grad_flows(vjps: Any, inputs: Sequence[Value]) -> bool:
    """Whether an op's output needs a gradient: an operand that needs one has a VJP."""
    made = callable(vjps)  # (made per call, for those operands that need one)
    for i, x in enumerate(inputs):  # noqa: SIM110 (a loop: no generator per op traced)
        if x.requires_grad and (made or vjps[i] is not None):
            return True
    return False


_ACTIVE: ContextVar[Trace | None] = ContextVar("minigrad_trace", default=None)
# `Tensor(data)` inside a traced function: a copy of a traced value, a step of the program.
_COPY = Op("Tensor", tensor_array, (None,), primitive.Domain("untested"), False, False)
_RESIDUAL = np.empty(0)  # a residual's value: only the VJPs read it, never its shape


# NumPy's error state is a context variable's object, which `np.errstate` replaces and
# restores: the same object, the same state (a private name: without it, always compared).
_ERROR_STATE = getattr(getattr(np, "_core", None), "_ufunc_config", None)
_error_object = getattr(getattr(_ERROR_STATE, "_extobj_contextvar", None), "get", object)


class Trace:
    """What one run of a function did, as inputs, constants and steps. The function runs
    inside `with trace:`, where ops record here and values are not Python's."""

    def __init__(self, recording: bool, anomaly: bool, reads_graph: bool = False):
        self.recording, self.anomaly = recording, anomaly
        # The mode the function is traced in, with TRACING (what `current_mode` then reads)
        self.mode = TRACING | (RECORDING if recording else 0) | (ANOMALY if anomaly else 0)
        # The function may read tensors computed outside it (a scan's body: the loop's
        # operands, passed on each call as parameters are); else TraceError.
        self.reads_graph = reads_graph
        self.values: list[Value] = []
        self.steps: list[Step] = []
        self.inputs: list[Value] = []  # what a run is given, in order
        self.captured: list[tuple[Value, Tensor]] = []  # tensors read from outside
        # id(a tracer, or a tensor the function read from outside) -> its value. What the
        # ids name stays alive: in `tracers`, `captured` or `aliased`.
        self.of: dict[int, Value] = {}
        self.tracers: list[Tracer] = []  # this trace's own, spent when it ends
        self.numpy = False  # the next op is NumPy's operator or method on arrays
        # id(a Tensor argument the function may also read from outside) -> it, its input;
        # `aliased`: those it did read, which a program must find passed there again
        self.aliases: dict[int, tuple[Tensor, Value]] = {}
        self.aliased: list[tuple[Tensor, Value]] = []
        self.arguments: list[np.ndarray] = []  # the caller's arrays, given as themselves
        # id(an array read from outside) -> it, and its last constant (used again while it
        # holds the same bytes: one copy per array, not per use)
        self.snapshots: dict[int, tuple[Any, Value]] = {}
        self.retired: dict[int, str] = {}  # id(a tracer changed in place) -> how
        self.raw: dict[int, list[Tracer]] = {}  # id(an array) -> the raw tracers viewing it
        self.enclosing: Trace | None = None  # the trace this one runs in (set on entering)
        # (a value, the answer) for each `.requires_grad` Python read of a traced value: a
        # scan traces its body again where an answer it read would change (`require_grad`)
        self.grad_reads: list[tuple[Value, bool]] = []
        # (the op, the exception) the first op that raised on this run's values: if the
        # function caught it and returned, the program would replay that branch (`results`)
        self.raised: tuple[str, str] | None = None
        self.error_state: Any = {}  # NumPy's, as the trace began (`call`)
        self.error_object: Any = None  # (its object: while it is the same, so is the state)

    def __enter__(self) -> Trace:
        self.enclosing = _ACTIVE.get()  # (a scan's body inside a compiled function's trace)
        self.error_state, self.error_object = np.geterr(), _error_object()
        self._tokens = _ACTIVE.set(self), modes._mode.set(current_mode() | TRACING)
        return self

    def __exit__(self, *exception: Any) -> None:
        modes._mode.reset(self._tokens[1])
        _ACTIVE.reset(self._tokens[0])

    def is_raw(self, x: Tensor) -> bool:
        """Whether eager mode sees a NumPy array for `x` (here, or, for a value of the trace
        this one runs in, there)."""
        value = self.of.get(id(x))
        if value is not None:
            return value.raw
        return self.enclosing is not None and self.enclosing.is_raw(x)

    def is_scalar(self, x: Tensor) -> bool:
        """Whether eager mode sees a NumPy scalar for `x` (immutable: `x += 1` rebinds)."""
        value = self.of.get(id(x))
        if value is not None:
            return value.scalar
        return self.enclosing is not None and self.enclosing.is_scalar(x)

    def refuse_writing(self, x: Tracer, what: str, instead: str) -> None:
        """TraceError if `x` is an array argument or a view of one: eager mode would write
        into the caller's array, which the program's later calls would not do."""
        if id(x) not in self.of or any(np.may_share_memory(x._data, a)
                                       for a in self.arguments):
            raise TraceError(  # (not of this trace: an array of the one it runs in, too)
                f"{what} on an array argument or a view of one (shape {traced_shape(x)}), or an "
                "array of the function a scan's body runs in, inside a traced function "
                "(minigrad.compile, minigrad.scan): eager mode would change the caller's "
                f"array, which the program's later calls would not do; write {instead}, or "
                "change the array before the call")

    def retire(self, x: Tracer, what: str, but: Tracer) -> None:
        """`x` was changed in place (giving `but`), and with it (in eager mode) every array of
        this trace sharing its memory (views of it, the array it views): a later read of any
        but `but` raises."""
        for t in self.raw.get(id(_root(x._data)), ()):  # (not NumPy scalars: immutable)
            value = self.of.get(id(t))
            if t is not but and value is not None and not value.scalar \
                    and np.may_share_memory(x._data, t._data):
                del self.of[id(t)]
                self.retired[id(t)] = what

    def _new(self, array: Any, requires_grad: bool, raw: bool, constant: Any = None) -> Value:
        value = Value(len(self.values), array, requires_grad, raw, constant)
        self.values.append(value)
        return value

    def _tracer(self, value: Value, array: np.ndarray) -> Tracer:
        t = object.__new__(Tracer)
        t._data, t._requires_grad, t._node = array, value.requires_grad, None
        t._shared = t._exposed = False
        self.of[id(t)] = value
        self.tracers.append(t)
        if value.raw:  # (grouped by the array they view: `retire` looks among its group)
            self.raw.setdefault(id(_root(array)), []).append(t)
        return t

    def input(self, array: np.ndarray, requires_grad: bool, raw: bool = False) -> Tracer:
        """A traced stand-in for `array`, given on every run (an argument, a loop's carry);
        `raw`: eager mode sees the array itself, not a tensor."""
        value = self._new(array, requires_grad and self.recording, raw)
        self.inputs.append(value)
        if raw:
            self.arguments.append(array)
        return self._tracer(value, array)

    def operand(self, x: Any, op: str) -> Value:
        """The value of an operand that is no tracer of this trace: an argument read from
        outside too, a tensor read from outside (an input of every run), or a constant."""
        if id(x) in self.retired:
            raise TraceError(
                f"{op}: reads an array (shape {traced_shape(x)}) that {self.retired[id(x)]} "
                "changed in place, through another name for it: eager mode would read the "
                "changed values there, which a program cannot follow; write `y = x + ...` "
                "and use y")
        if id(x) in self.aliases:
            x, value = self.aliases.pop(id(x))
            self.aliased.append((x, value))
        elif isinstance(x, Tensor):
            if type(x) is not Tracer and x._node is not None and not self.reads_graph:
                raise TraceError(
                    f"{op}: reads a tensor computed outside the traced function (by "
                    f"'{x._node.name}', shape {x.shape}); pass it in as an argument")
            if x._data is None:
                raise TraceError(f"{op}: a Tracer used after its trace ended (it escaped "
                                 "the traced function, stored somewhere outside it)")
            # A parameter (or a value of an enclosing trace): an input of every run. An
            # array there (NumPy's, in eager mode) is an array here too, and the caller's.
            raw = self.enclosing is not None and self.enclosing.is_raw(x)
            value = self._new(x._data, x._requires_grad and self.recording and not raw, raw)
            self.inputs.append(value)
            self.captured.append((value, x))
            if raw:
                self.arguments.append(x._data)
                value.scalar = self.enclosing.is_scalar(x)  # type: ignore[union-attr]
        else:
            return self._constant(x, op)
        self.of[id(x)] = value
        return value

    def _constant(self, x: Any, op: str) -> Value:
        """A constant: an array as it holds now, as eager mode's op reads it (a copy, since it
        may change before its next use: then the next use is a constant of its own), laid
        out as the array (`kept_copy`: a reduction or a product on it computes as on the
        array; only a strided slice's gaps are closed up)."""
        array = primitive.constant(x, op)  # (a memmap's plain view: kept as a plain array)
        if type(array) is not np.ndarray:
            return self._new(array, False, False, array)
        seen = self.snapshots.get(id(x))
        if seen is not None and _same_bytes(array, seen[1].constant):
            return seen[1]
        copy = primitive.kept_copy(array)
        value = self._new(copy, False, True, copy)
        self.snapshots[id(x)] = (x, value)  # (x kept: its id names it)
        return value

    def call(self, op: Op, operands: Sequence[Any], options: dict[str, Any]) -> Tracer:
        """Record `op` on `operands` and return its traced output."""
        numpy, self.numpy = self.numpy, False
        of = self.of
        inputs = [of.get(id(x)) or self.operand(x, op.name) for x in operands]
        # (an array or a number as `record` computes on it: `primitive.constant`)
        arrays = tuple([x._data if isinstance(x, Tensor) else v.constant
                        for x, v in zip(operands, inputs)])
        if numpy and any(v.scalar for v in inputs):  # NumPy's operators on its scalars, as
            arrays = tuple([a[()] if v.scalar else a  # eager mode has them (s ** 1.7: C's
                            for a, v in zip(arrays, inputs)])  # pow, not the array loop's)
        # (the mode first: detect_anomaly entered inside sets an error state too)
        recording = self.recording if current_mode() == self.mode else self._recording()
        if _error_object() is not self.error_object and (state := np.geterr()) != \
                self.error_state:  # (np.geterr() builds a dict: 0.6 us an op, every trace)
            self._raised(op.name, "TraceError")
            changed = ", ".join(f"{k}={v!r} (at the call: {self.error_state[k]!r})"
                                for k, v in state.items() if v != self.error_state[k])
            raise TraceError(
                f"{op.name}: called under another NumPy error state than the traced function "
                f"(minigrad.compile, minigrad.scan) was called under, np.errstate({changed}): "
                "a program replays its ops under its caller's; set np.errstate around the "
                "call, not inside the function")
        try:
            out = op.forward(*arrays, **options) if options else op.forward(*arrays)
        except BaseException as error:
            shown = (primitive._op_error(op.name, error, arrays)
                     if isinstance(error, primitive.OP_ERRORS) else error)
            self._raised(op.name, type(shown).__name__)
            if shown is error:
                raise
            raise shown from None
        if op.residual:
            try:  # (its own message, as eager mode's: not an op's invalid inputs)
                out, residual = out
                primitive._own_residual(op.name, residual, out, arrays)
            except BaseException as error:
                self._raised(op.name, type(error).__name__)
                raise
        scalar = type(out) is not np.ndarray
        if scalar:
            out = np.asarray(out)
        if options:  # (the program keeps them, and the key reads their values now)
            options = primitive.kept_options(options)
        if numpy:  # NumPy on arrays, as in eager mode: no copies, the array a view is
            value = self._new(out, False, True)
            step = Step(op, inputs, options, value, None, (), scalar, None, True, (), False)
            value.scalar = scalar  # (eager mode's: NumPy's result on arrays or scalars, s.T)
        else:
            vjps: Any = op.vjps
            if recording and isinstance(vjps, tuple) and None in vjps and op.differentiable:
                primitive.refuse_no_vjp(op, operands)  # (as `record` refuses it)
            site = None
            grad = recording and _grad_flows(vjps, inputs)
            if grad and self.anomaly:
                site = (anomaly._caller_site(),
                        () if callable(vjps) else tuple(np.shape(a) for a in arrays))
            if grad and callable(vjps):  # VJPs made per call (stack's, scan's): from shapes
                vjps = vjps(arrays, options, [v if v.requires_grad else None for v in inputs])
            value = self._new(out, grad, False)
            residual = self._new(_RESIDUAL, False, False) if op.residual else None
            step = Step(op, inputs, options, value, residual, vjps, scalar, site, False,
                        arrays if callable(op.vjps) else (), recording)
        self.steps.append(step)
        return self._tracer(value, out)

    def _raised(self, op: str, exception: str) -> None:
        """Note that `op` raised `exception` here (its first), and in the traces this one
        runs in: the exception passes through their functions too."""
        trace: Trace | None = self
        while trace is not None:
            trace.raised = trace.raised or (op, exception)
            trace = trace.enclosing

    def _recording(self) -> bool:
        """Whether grad mode is on for the op being recorded, in a mode other than the
        trace's: `no_grad` inside the function holds for the ops in it, as in eager mode; a
        mode the program cannot follow raises."""
        mode = current_mode()
        if bool(mode & ANOMALY) != self.anomaly:
            raise TraceError("detect_anomaly entered or left inside a traced function "
                             "(minigrad.compile, minigrad.scan): the program is checked as a "
                             "whole; enter it around the call")
        if mode & RECORDING and not self.recording:
            raise TraceError("enable_grad inside a function traced under no_grad (minigrad."
                             "compile, minigrad.scan): the program records no gradient; "
                             "leave no_grad around the call")
        return bool(mode & RECORDING)

    def require_grad(self, values: Sequence[Value]) -> None:
        """Mark inputs `values` as requiring grad after the function ran (a loop's carry that
        comes to need a gradient after a step), and what the steps compute from them."""
        for value in values:
            value.requires_grad = self.recording
        for step in self.steps:
            vjps = step.op.vjps
            if step.recording and not step.numpy and isinstance(vjps, tuple) and None in vjps \
                    and step.op.differentiable:  # (as `record` refuses it)
                for i, (x, vjp) in enumerate(zip(step.inputs, vjps)):
                    if vjp is None and x.requires_grad:
                        raise primitive.no_vjp_error(step.op.name, i, x.shape)
            if step.out.requires_grad and not callable(vjps):  # (nothing to remake)
                continue
            if step.numpy or not step.recording or not _grad_flows(vjps, step.inputs):
                continue
            step.out.requires_grad = True
            if callable(vjps):  # made for the operands that needed a gradient: made anew
                step.vjps = vjps(step.arrays, step.options,
                                 [x if x.requires_grad else None for x in step.inputs])

    def made(self, t: Tensor, data: Any) -> None:
        """`t = Tensor(data)` inside the function: a copy of a traced value, or a constant."""
        if t.requires_grad:
            raise TraceError(
                f"Tensor(..., requires_grad=True) inside a traced function (shape {t.shape}) "
                "would be a new leaf on every run, which a program cannot give back; make "
                "it outside and pass it in, or read it as a parameter")
        if isinstance(data, Tensor):
            value = self.of[id(self.call(_COPY, (data,), {}))]
        else:
            value = self._new(t._data, False, False, t._data)
        t.__class__ = Tracer  # our own new object: Python may not read it either
        self.of[id(t)] = value
        self.tracers.append(t)  # type: ignore[arg-type]

    def results(self, outputs: Sequence[Any], what: str) -> list[Value]:
        """The values of `outputs`, which must be computed by ops; every tracer is spent, and
        the steps' arrays dropped (a program keeps no array of the trace's run)."""
        if self.raised is not None:
            self.spend()
            op, exception = self.raised
            raise TraceError(
                f"{what}: op {op} raised {exception} on this call's values and the function "
                "caught it: a replay cannot take that decision (on other values the op may "
                "not raise); decide before the call, or let it raise (a decision on shapes "
                "alone: test x.shape, which a traced value gives, rather than catch the op's "
                "error)")
        values = []
        for out in outputs:
            value = self.of.get(id(out)) if isinstance(out, Tracer) else None
            if value is None or value in self.inputs or value.is_constant or value.raw:
                got = type(out).__name__ if value is None else (
                    "an array (NumPy's result on an array argument, as in eager mode; "
                    "mg.Tensor(x) makes the argument a tensor)" if value.raw
                    else "an input or a constant")
                raise TraceError(f"{what} must return tensors computed by minigrad ops from "
                                 f"its inputs, got {got}")
            values.append(value)
        self.spend()
        return values

    def spend(self) -> None:
        """Spend every tracer and drop the steps' arrays: the trace's run is over."""
        for t in self.tracers:  # (not an enclosing trace's tracers: those live on)
            t._data = None  # type: ignore[assignment]
        for step in self.steps:
            step.arrays = ()

    def key(self, outputs: Sequence[Value]) -> Any:
        """What a program written from this trace depends on, hashable: traces with equal
        keys give the same program, if it reads its constants at run time (`Program.
        constants`) as it reads the tensors read from outside. The ops, their options and
        operands, every value's shape, dtype and flags, and each constant's type."""
        values = tuple([(v.shape, v.dtype, v.requires_grad, v.raw, v.scalar, type(v.constant),
                         v.c_order) for v in self.values])
        steps = tuple([(s.op, frozen(s.options) if s.options else None,
                        tuple([x.index for x in s.inputs]), s.out.index,
                        s.residual and s.residual.index, s.scalar, s.numpy, s.recording,
                        s.site and _where(s.site),
                        _ByIdentity(s.op.vjps),  # (a mutant's, installed for a while)
                        None if callable(s.vjps) else tuple([vjp is None for vjp in s.vjps]))
                       for s in self.steps])
        return (self.recording, self.anomaly, values, steps,
                tuple([v.index for v in self.inputs]), tuple([v.index for v in outputs]))


class _ByIdentity:
    """A key part that is one object, compared by identity and held (so that its id is not
    another's later): an op's VJPs, which `mutants.installed` swaps for a while, a tuple
    equal to the op's own by value."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __eq__(self, other: object) -> bool:
        return type(other) is _ByIdentity and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)


def _where(site: tuple[Any, Any]) -> Any:
    """An anomaly-mode step's creation site as a key: the caller's file, line and function
    (a FrameSummary is not hashable: as a key equal to no other, a scan would write its
    loop again on every call), and the operands' shapes."""
    frame, shapes = site
    return None if frame is None else (frame.filename, frame.lineno, frame.name), shapes


def frozen(x: Any) -> Any:
    """`x` (an option, a constant) as a hashable key of its value: a float by its bits (a
    complex number by its parts', a Decimal by its digits: -0.0 is not 0.0), an array by its
    bytes, a frozenset by its elements' keys in its order of iteration (which two equal sets
    need not share); something unknown and unhashable as a key equal to no other."""
    if isinstance(x, float):  # (np.float64 too, which NumPy promotes as an array, not as 0.5)
        return type(x), struct.pack("<d", x)
    if isinstance(x, complex):
        return type(x), struct.pack("<dd", x.real, x.imag)
    if isinstance(x, decimal.Decimal):  # (its sign, digits and exponent: str tells them)
        return type(x), str(x)
    if isinstance(x, frozenset):
        return type(x), tuple(frozen(y) for y in x)
    if isinstance(x, (np.ndarray, np.generic)):
        return type(x), x.shape, x.dtype.str, x.tobytes()
    if isinstance(x, (tuple, list)):
        return type(x), tuple(frozen(y) for y in x)
    if isinstance(x, dict):
        return dict, tuple((k, frozen(y)) for k, y in x.items())
    if isinstance(x, (slice, range)):  # (range(5, 5) == range(9, 9): its ends, not that)
        return type(x), frozen((x.start, x.stop, x.step))
    if dataclasses.is_dataclass(x) and not isinstance(x, type) \
            and x.__dataclass_params__.frozen:  # type: ignore[attr-defined]  # by its fields
        return type(x), tuple(frozen(getattr(x, f.name)) for f in dataclasses.fields(x))
    try:
        hash(x)
    except TypeError:
        return object()
    return type(x), x


def _record(op: Op, operands: Sequence[Any], options: dict[str, Any]) -> Tensor:
    return _ACTIVE.get().call(op, operands, options)  # type: ignore[union-attr]


def _made(t: Tensor, data: Any) -> None:
    _ACTIVE.get().made(t, data)  # type: ignore[union-attr]


primitive.trace_hook = _record
primitive.traced_class = Tracer
tensor.trace_new_tensor = _made


def settle(g: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A value's whole cotangent as the sweep takes it (contributions added by the tape's
    rule, dense, in the value's shape): `g` itself where it is that already."""
    if type(g) is np.ndarray and g.shape == shape:
        return g
    return tape.total(g, shape, dtype)[0]


class Program:
    """A trace as code: `forward` and `backward` lines over values named `v<i>` (constants
    `k<i>`), to be wrapped in a function by the caller (`function`)."""

    def __init__(self, trace: Trace, outputs: list[Value]):
        self.inputs, self.captured, self.aliased = trace.inputs, trace.captured, trace.aliased
        self.steps, self.outputs, self.anomaly = trace.steps, outputs, trace.anomaly
        self.input_indices = {v.index for v in self.inputs}
        self.constants = [v for v in trace.values if v.is_constant]
        self.names: dict[str, Any] = {
            "asarray": np.asarray, "acc": tape.accumulate, "ndarray": np.ndarray,
            "sum_to_shape": tape.sum_to_shape, "settle": settle,
            "check_output": anomaly.check_output, "Contributions": tape.Contributions,
            "views": primitive._views, "kept_copy": primitive.kept_copy,
            **{v.name: v.constant for v in self.constants}}
        # The steps a gradient of the outputs passes through, in reverse order, and the
        # inputs it reaches, in input order.
        reached = {v.index for v in outputs if v.requires_grad}
        self.backward_steps = _reached(self.steps[::-1], reached)
        self.grad_inputs = [v for v in self.inputs if v.index in reached]
        # The values the backward's VJPs read, by name, in first-read order.
        self.saved = list(dict.fromkeys(name for step in self.backward_steps
                                        for name in self._vjp_reads(step) if name[0] == "v"))

    def _vjp_reads(self, step: Step) -> list[str]:
        """What a step's VJPs get besides `g`, by name: `out` (its output or residual, or
        None), then the operands it keeps (`record`'s copies of arrays; None if not kept)."""
        op = step.op
        out = (step.residual or step.out).name if step.residual or op.saves_output else "None"
        if not op.saves_inputs or op.kept == ():
            return [out]
        copies = self.copies(step)
        return [out, *(f"v{step.out.index}_{i}" if i in copies else x.name
                       if op.kept is None or i in op.kept else "None"
                       for i, x in enumerate(step.inputs))]

    def _name(self, value: Any, prefix: str) -> str:
        name = f"{prefix}{len(self.names)}"
        self.names[name] = value
        return name

    # --- forward ----------------------------------------------------------------------------

    @staticmethod
    def _keeps(step: Step) -> bool:
        """Whether `record` treats the step's operands as kept by a node (it copies arrays
        and marks tensors shared): it records, the op has a gradient, and its node keeps
        the operands or a user's residual may view them (`record`'s `guards`)."""
        return ((step.op.saves_inputs or step.op.residual and step.op.user) and step.recording
                and not step.numpy and step.op.differentiable)

    def copies(self, step: Step) -> list[int]:
        """The operands `record` copies: NumPy arrays that a node keeps (where it makes one;
        for a residual's op, wherever it may, since its forward computes on the copies)."""
        if not self._keeps(step) or not (step.out.requires_grad or step.op.residual):
            return []
        return [i for i, x in enumerate(step.inputs) if x.raw]

    def shared_inputs(self) -> set[int]:
        """The non-raw inputs `record` marks shared at once: operands of ops that keep them."""
        return {x.index for step in self.steps if self._keeps(step) for x in step.inputs
                if x.index in self.input_indices and not x.raw}

    def viewed_outputs(self) -> set[int]:
        """The outputs whose memory another output, or a value the backward reads, may share:
        one may view the other through steps that may return a view of an operand (no
        ufunc's: the `_forward_step` test). Writing into one must copy it first, as eager
        mode's `_share_view` marks both the tensor viewed and its view. (Conservative: a
        write copies only while something else still holds the array.)"""
        joined: dict[int, int] = {}  # a value's index -> one of its group's, up to the root

        def root(i: int) -> int:
            while (j := joined.get(i, i)) != i:
                i = j
            return i

        for step in self.steps:
            if isinstance(step.op.forward, np.ufunc) or step.numpy:
                continue  # (a new array; NumPy on arrays: raw values, copied when taken)
            for x in (*step.inputs, step.residual):
                if x is not None and not x.raw and root(x.index) != root(step.out.index):
                    joined[root(x.index)] = root(step.out.index)
        held = {v.index for v in self.outputs} | {
            int(name[1:]) for name in self.saved if "_" not in name}  # (not `record`'s copies)
        groups = [root(i) for i in held]
        return {v.index for v in self.outputs if groups.count(root(v.index)) > 1}

    def forward_lines(self, tensor_of: Callable[[Value], str | None],
                      kept: Sequence[Value] = (), into: dict[int, str] | None = None
                      ) -> list[str]:
        """One line per op: `record`'s forward, with `record`'s copies, and its marking
        shared of a tensor whose array an output views (`tensor_of(input)`: the expression
        of the tensor behind an input, or None). Values are dropped after their last use
        unless the backward reads them, they are outputs, or `kept` (a loop's invariants).
        A value in `into` (those `writes_into` allows) is computed into the array that
        expression names (a loop's stacked ys): the same numbers, no copy."""
        keep = {int(name[1:]) for name in self.saved if "_" not in name}
        keep |= {v.index for v in [*kept, *self.outputs]}
        last = {x.index: k for k, step in enumerate(self.steps) for x in step.inputs}
        lines: list[str] = []
        for k, step in enumerate(self.steps):
            lines += self._forward_step(step, tensor_of, (into or {}).get(step.out.index))
            if self.anomaly and step.out.requires_grad:
                operands = "".join(f"{x.name}, " for x in step.inputs)
                lines.append(f"check_output({self._name(_node(step), 'n')}, ({operands}), "
                             f"{step.out.name})")
            dead = [x.name for x in step.inputs if last.get(x.index) == k
                    and x.index not in keep and not x.is_constant]
            if step.residual and step.residual.index not in keep:
                dead.append(step.residual.name)
            if dead:
                lines.append(" = ".join(sorted(set(dead))) + " = None")
        return lines

    def writes_into(self, value: Value) -> bool:
        """Whether the step computing `value` can write it into a given array: a ufunc's
        one output (`out=`), not 0-d, laid out as the C array it is written into."""
        step = next((s for s in self.steps if s.out is value), None)
        return (step is not None and isinstance(step.op.forward, np.ufunc) and not step.numpy
                and step.op.forward.nout == 1 and not step.residual and not step.scalar
                and value.shape != () and value.c_order)

    def _forward_step(self, step: Step, tensor_of: Callable[[Value], str | None],
                      into: str | None = None) -> list[str]:
        lines = []
        # (NumPy's operators on its scalars as eager mode computes them: `Trace.call`)
        operands = [f"{x.name}[()]" if step.numpy and x.scalar else x.name for x in step.inputs]
        for i in self.copies(step):  # what the VJPs read; the forward reads the array itself
            copy = f"v{step.out.index}_{i}"  # (but a residual's op's: `record`)
            lines.append(f"{copy} = kept_copy({operands[i]})")
            if step.op.residual:
                operands[i] = copy
        if step.options:
            operands.append("**" + self._name(step.options, "o"))
        if into is not None:
            operands.append(f"out={into}")
        out = step.out.name
        targets = f"{out}, {step.residual.name}" if step.residual else out
        lines.append(f"{targets} = {self._name(step.op.forward, 'f')}({', '.join(operands)})")
        if step.scalar:
            lines.append(f"{out} = asarray({out})")
        if not isinstance(step.op.forward, np.ufunc) and not step.numpy:  # may view an operand
            viewed = " or ".join([f"{out}.base is not None"]  # (or be one: `record`'s `_one_of`)
                                 + [f"{out} is {o}" for o in operands if o[0] in "vk"])
            if any(x.raw for x in step.inputs):
                lines.append(f"if {viewed}: {out} = {out}.copy()")
            else:
                shared = [(x.name, e) for x in step.inputs if (e := tensor_of(x)) is not None]
                if shared and not self._keeps(step):  # (one that keeps views `record`'s own)
                    # `_share_view`: a view of the tensor's array, held besides by the
                    # program's name (and the view, if its base); or held elsewhere
                    # already, where the program read a copy (`Tensor._share`)
                    copied = " or ".join(
                        f"views({out}, {v}) and ({v} is not {e}._data or not {e}._shared and "
                        f"{e}._share(2 if {out} is {v} or {out}.base is {v} else 1) is not "
                        f"{e}._data)" for v, e in shared)
                    lines.append(f"if ({viewed}) and ({copied}): {out} = {out}.copy()")
            # A forward returning a constant (a user op's `np.asarray(x)`): not handed out,
            # where eager mode hands out each call's own.
            constants = [f"{out} is {x.name}" for x in step.inputs if x.is_constant]
            if constants:
                lines.append(f"if {' or '.join(constants)}: {out} = {out}.copy(order='K')")
        return lines

    # --- backward ---------------------------------------------------------------------------

    def backward_lines(self, seeds: Sequence[str],
                       deferred: dict[tuple[int, int], int] | None = None,
                       order: Sequence[int] | None = None, loop: bool = False,
                       into: dict[tuple[int, int], str] | None = None) -> list[str]:
        """The reverse sweep from `seeds` (the outputs' cotangents' expressions, each an
        array or `Contributions`, added in `order` of the outputs' positions), ending in
        `grads`, a list of each grad input's contributions; a value the VJPs read is dropped
        after its last read when `free`. In a `loop`'s body the values are dropped by the
        next step, and the caller reads the `l<i>` itself. The VJP of operand i of step s is
        not called where `deferred` maps (s, i) to j: the step's cotangent is left in `e<j>`
        (a loop calls it once for all steps: `minigrad.scan`); it writes its result into row
        k of the stack `into[s, i]` names (one that `writes_into` allows: a loop's stacked
        cotangents) where g and the stack have the op's dtype, else the result goes there
        after, the stack widened to hold it (`widen`, a name of the loop's)."""
        deferred, into = deferred or {}, into or {}
        position = {id(step): k for k, step in enumerate(self.steps)}
        lines: list[str] = []
        started: set[int] = set()
        seeded = [i for i in (order if order is not None else range(len(seeds)))
                  if self.outputs[i].requires_grad]
        swept = self._swept(seeded)
        count = self._contributions(deferred, swept)
        if not loop:
            lines += [f"l{v.index} = None" for v in self.grad_inputs if v.index not in count]
        for i in seeded:
            count[self.outputs[i].index] = count.get(self.outputs[i].index, 0) + 1
        for i in seeded:
            self._add(lines, self.outputs[i], seeds[i], started, count)
        last_read: dict[str, int] = {}  # a saved value's name -> the line after its last read
        for step in swept:
            out, k = step.out, position[id(step)]
            shape, dtype = self._name(out.shape, "s"), self._name(out.dtype, "d")
            lines.append(f"g = {self._var(out)}; {self._var(out)} = None")
            lines.append(f"if type(g) is not ndarray or g.shape != {shape}: "
                         f"g = settle(g, {shape}, {dtype})")
            reads = self._vjp_reads(step)
            options = ["**" + self._name(step.options, "o")] if step.options else []
            for i, (x, vjp) in enumerate(zip(step.inputs, step.vjps)):
                if not x.requires_grad or vjp is None:
                    continue
                if (k, i) in deferred:
                    lines.append(f"e{deferred[k, i]} = g")
                    continue
                if (k, i) in into:  # (a row of that stack, where g and the stack have the
                    # op's dtype: a VJP computing into a row computes in the row's dtype)
                    d = self._name(out.dtype, "d")
                    lines.append(f"r = {into[k, i]}[k] if g.dtype is {d} and "
                                 f"{into[k, i]}.dtype is {d} else None")
                extra = ["into=r"] if (k, i) in into else []
                if self.anomaly:  # its result checked as an eager node's (`anomaly.watch`)
                    vjp = anomaly._checked(_node(step), i, vjp, x.shape)  # type: ignore[arg-type]
                call = "g" if vjp is primitive.identity_vjp else (
                    f"{self._name(vjp, 'vjp')}({', '.join(['g', *reads, *options, *extra])})")
                lines.append(f"t = {call}")
                if (k, i) in into:  # (or a VJP that says it takes `into` returned another:
                    stack = into[k, i]  # summed back to the row first, as any contribution)
                    xshape, xdtype = self._name(x.shape, "s"), self._name(x.dtype, "d")
                    lines += ["if t is not r:",
                              f"    t = settle(t, {xshape}, {xdtype})",
                              f"    if t.dtype is not {stack}.dtype: {stack} = widen({stack}, t)",
                              f"    {stack}[k] = t"]
                self._add(lines, x, "t", started, count)
            for name in reads:
                if name[0] == "v":
                    last_read[name] = len(lines)
        if loop:
            return lines
        outputs = {v.name for v in self.outputs}
        for name, line in sorted(last_read.items(), key=lambda item: -item[1]):
            if name not in outputs:
                lines.insert(line, f"if free: {name} = None")
        lines.append(f"grads = [{', '.join(self._var(v) for v in self.grad_inputs)}]")
        return lines

    def _swept(self, seeded: Sequence[int]) -> list[Step]:
        """The backward steps a gradient of the outputs at `seeded` passes through (all of
        them where every output that needs one is seeded: the usual case)."""
        if len(seeded) == sum(v.requires_grad for v in self.outputs):
            return self.backward_steps
        return _reached(self.backward_steps, {self.outputs[i].index for i in seeded})

    def _contributions(self, deferred: dict[tuple[int, int], int],
                       swept: Sequence[Step] | None = None) -> dict[int, int]:
        """How many contributions `backward_lines(..., deferred)` adds to each value it adds
        any to (an input's as `l<i>`), sweeping the steps `swept` (all by default)."""
        position = {id(step): k for k, step in enumerate(self.steps)}
        count: dict[int, int] = {}
        for step in self.backward_steps if swept is None else swept:
            for i, (x, vjp) in enumerate(zip(step.inputs, step.vjps)):
                if x.requires_grad and vjp is not None and (position[id(step)], i) not in deferred:
                    count[x.index] = count.get(x.index, 0) + 1
        return count

    def _var(self, x: Value) -> str:
        """The name of `x`'s cotangent: `l<i>` for an input, `c<i>` inside."""
        return f"l{x.index}" if x.index in self.input_indices else f"c{x.index}"

    def _add(self, lines: list[str], x: Value, g: str, started: set[int],
             count: dict[int, int]) -> None:
        """Add contribution `g` to value `x`: into its cotangent by the sweep's rule, or, for
        an input, to the list of its contributions."""
        first = x.index not in started
        started.add(x.index)
        c, o = self._var(x), f"o{x.index}"
        if count.get(x.index, 0) <= 1:  # its one contribution, as it is (settled when read)
            lines.append(f"{c} = {g}")
        elif x.index in self.input_indices:
            lines.append(f"{c} = Contributions(({g},))" if first else f"{c}.append({g})")
        elif first:  # `accumulate`'s first case, a first array kept as it is, written out
            shape, dtype = self._name(x.shape, "s"), self._name(x.dtype, "d")
            lines.append(f"{c}, {o} = ({g}, False) if type({g}) is ndarray else "
                         f"acc(None, {g}, False, {shape}, {dtype})")
        else:  # (and its common cases, an array of the same shape added, written out)
            shape, dtype = self._name(x.shape, "s"), self._name(x.dtype, "d")
            lines.append(f"if type({g}) is not ndarray or {g}.shape != {c}.shape: "
                         f"{c}, {o} = acc({c}, {g}, {o}, {shape}, {dtype})")
            lines.append(f"elif {o}: {c} += {g}")
            if x.shape != ():  # (where the sum of two 0-d arrays is a NumPy scalar)
                lines.append(f"else: {c} = {c} + {g}; {o} = True")
            else:
                lines.append(f"else: {c}, {o} = acc({c}, {g}, {o}, {shape}, {dtype})")

    def function(self, signature: str, lines: Sequence[str], what: str) -> Callable[..., Any]:
        """`def <signature>:` with `lines` as its body, compiled in the program's names."""
        body = "\n".join("    " + line for line in lines) or "    pass"
        names = dict(self.names)
        source = f"def {signature}:\n{body}\n"
        builtins.exec(builtins.compile(source, f"<minigrad {what}>", "exec"), names)
        function = names[signature.split("(")[0]]
        function.source = source
        return function


def _node(step: Step) -> Any:
    """A step as `anomaly`'s messages name an eager node."""
    return SimpleNamespace(name=step.op.name, site=step.site, args=(), dtype=step.out.dtype)

