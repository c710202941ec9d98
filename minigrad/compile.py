"""`compile(fn)`: trace a function once per signature into a program (`minigrad.trace`), then
replay that program instead of running the engine op by op.

A replay is one generated Python function per signature: it reads the call's arguments
and the current array of every tensor `fn` read from outside (checking each is still the
shape, dtype and requires-grad it was), runs the forward lines, and returns the result as
a Tensor whose node is the whole program. That node's backward runs the program's
backward lines and hands each input's contributions to the tape's sweep, which adds them
as eager mode would: so what `fn` returns, and what `backward()` leaves in `.grad`, are
eager mode's bits, also where the result is combined with eager ops.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import enum
import functools
import numbers
import threading
import time
import types
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from . import nn, tape
from .modes import (
    ANOMALY,
    RECORDING,
    TRACING,
    TraceError,
    current_mode,
    enclosing_grad_inputs,
)
from .tape import Node
from .tensor import Tensor, _make, accumulate_grads, plain_array
from .trace import Program, Trace, _part, frozen

__all__ = ["CompiledFunction", "TraceError", "compile"]

_ndarray = np.ndarray


def _signature(args: tuple, mode: int) -> tuple | None:
    """The cache key of a call: the mode, each argument's shape, dtype and layout (its
    strides: a loop traced inside chooses where to compute by it; a Tensor's requires-grad
    too) or, for any other argument, its type and value (hashable; -0.0 told from 0.0 and
    every NaN equal to itself: `trace.frozen`), and which arguments are the same object.
    None if an argument is an array of an ndarray subclass (`_plain_arrays`)."""
    key: list[Any] = [mode & (RECORDING | ANOMALY)]
    ids: list[int] = []
    for i, a in enumerate(args):
        if type(a) is _ndarray:
            if a.dtype.kind not in "biuf":
                raise TypeError(f"compile: argument {i} is an array of dtype {a.dtype}")
            key += a.shape, a.dtype, a.strides  # flat: a quicker hash than a tuple each
            ids.append(id(a))
        elif isinstance(a, Tensor):
            data = a._data
            key.append((data.shape, data.dtype, data.strides, a._requires_grad))
            ids.append(id(a))
        elif isinstance(a, _ndarray):  # a memmap: the caller passes it as a plain array
            return None
        else:
            if not _static(a):
                raise TypeError(f"compile: argument {i} is a {_kind(a)}, which cannot "
                                "be part of a signature (what fn reads of an object would be "
                                "baked into the program, unchecked); pass each Tensor or NumPy "
                                "array as an argument of its own, and other values as numbers, "
                                "strings, dtypes, None, or tuples of those")
            key.append(frozen(a))
    if len(set(ids)) < len(ids):  # aliasing: the same object at several positions
        key.append(tuple(ids.index(x) for x in ids))
    return tuple(key)


# Arguments a signature holds by value: immutable, so equal values give the same program.
# A module, by identity: its attributes are watched as those of the module fn is a method of.
# An enum member by identity too: attributes it carries (a Planet's mass) are taken as
# constants, as an enum means them to be.
# (NumPy's functions, np.sum: a dispatcher type of their own)
_STATICS = (numbers.Number, np.generic, str, bytes, type(None), np.dtype, type, slice, range,
            type(Ellipsis), enum.Enum, types.FunctionType, np.ufunc, type(np.sum), nn.Module)


_VALUES = (numbers.Number, str, bytes, tuple, frozenset)
_PLAIN = frozenset({int, float, bool, complex, str, bytes, type(None)})


def _static(a: Any) -> bool:
    if type(a) in _PLAIN or isinstance(a, np.generic) and type(a).__module__ == "numpy":
        return True  # (the usual arguments, first: every call's signature asks)
    if isinstance(a, types.BuiltinFunctionType):
        # math.sqrt, float.fromhex; not a bound method ({}.get, w.sum): what it returns
        # would be baked in
        return a.__self__ is None or isinstance(a.__self__, (types.ModuleType, type))
    if isinstance(a, enum.Enum):  # (an IntEnum's member too: its attributes are its own)
        return True
    if _carried(a):
        return False  # a subclass's instance with attributes, which the key would not hold
    if isinstance(a, (tuple, frozenset)):  # a namedtuple too
        return all(_static(x) for x in a)
    if dataclasses.is_dataclass(a) and not isinstance(a, type):  # if frozen: its fields
        return a.__dataclass_params__.frozen and all(  # type: ignore[attr-defined]
            _static(getattr(a, f.name)) for f in dataclasses.fields(a))
    return isinstance(a, _STATICS)


def _kind(a: Any) -> str:
    """What an argument is, for an error: a built-in bound method as a bound method."""
    owner = getattr(a, "__self__", None)
    if isinstance(a, types.BuiltinFunctionType) and owner is not None:
        return f"bound method ({type(owner).__name__}.{a.__name__})"
    carried = _carried(a)
    if carried:
        return f"{type(a).__name__} with attributes ({', '.join(carried)})"
    return type(a).__name__


def _carried(a: Any) -> list[str]:
    """The attributes an instance of a value type's subclass (a number, string or tuple the
    signature keys by value) carries: in its `__dict__`, or in slots its classes declare
    (set or not: they may be set later). None for Python's and NumPy's own types, at once:
    every call's signature asks it of each such argument."""
    if type(a).__module__ in ("builtins", "numpy") or not isinstance(a, _VALUES):
        return []
    slots = []
    for cls in type(a).__mro__:
        if cls.__module__ != "builtins":
            declared = vars(cls).get("__slots__", ())
            slots += [declared] if isinstance(declared, str) else list(declared)
    return [*getattr(a, "__dict__", {}), *slots]


def _plain_arrays(args: tuple) -> tuple:
    """`args` with each array of an ndarray subclass that computes as a plain array (a
    memmap, a class adding attributes only) a plain view of it, as an op takes it
    (`primitive.constant`): a program reads it, and copies it where a node keeps it, as a
    plain array. An array of another subclass is refused (a masked array as an op refuses
    it): fn would get a plain array, whose operators and methods are not its class's
    (np.matrix's `*` is a matrix product), unlike in eager mode."""
    plain = list(args)
    for i, a in enumerate(args):
        if isinstance(a, _ndarray) and type(a) is not _ndarray:
            plain[i] = plain_array(a, f"compile: argument {i}")
            cls = type(a)
            if not _computes_as_plain(cls):
                raise TypeError(f"compile: argument {i} is an array of ndarray subclass "
                                f"{cls.__module__}.{cls.__qualname__} (shape {a.shape}), "
                                "which changes NumPy's operators or methods (np.matrix's * is "
                                "a matrix product): fn would get a plain array of it, unlike in "
                                "eager mode; pass np.asarray(x) to compute on a plain array")
    return tuple(plain)


def _computes_as_plain(cls: type) -> bool:
    """Whether ndarray subclass `cls` is a memmap's, or changes no attribute of ndarray's
    but how an array is made (its own attributes set in `__array_finalize__`, say)."""
    if issubclass(cls, np.memmap):  # (its __getitem__ and __array_wrap__ keep the values)
        return True
    own = cls.__mro__[:cls.__mro__.index(_ndarray)]
    return all(name in _MADE or not hasattr(_ndarray, name) for c in own for name in vars(c))


_MADE = frozenset({"__module__", "__doc__", "__dict__", "__weakref__", "__new__", "__init__",
                   "__array_finalize__"})


def _program_vjp(g: np.ndarray, out: Any, replay: _Replay, saved: list) -> list:
    """The VJP of a replay's node: every input's contributions at once. Its saved values go
    as the backward lines read them (unless the graph is retained): after a backward that
    raised part-way, the node is released, as the sweep releases an eager node."""
    if len(saved) != replay.saved:
        raise tape.released("backward", replay.name)
    return replay.backward_of(saved, not tape.retaining.get(), g)


def _held(fn: Any, args: tuple, read: Any) -> list[tuple[Any, tuple, tuple]]:
    """The lists, dicts and plain objects that hold a layer, a parameter or a tensor the
    program read (`read`: their ids), under `fn` (a module), the object it is a method of,
    its arguments and what its closure and globals name, each with what it holds now:
    `model.layers[1] = other` or `trainer.model = other` sets no module's attribute, and
    would leave a replay reading the old layer's weights. The code fn runs is read for
    what it names: fn's (a partial's function), and every method and class attribute of
    the classes of the object fn is (a module, a callable object) or is a method of, and
    of each module met (not minigrad's own classes: they read nothing of yours); the
    helper functions of those functions' files, with what they name. (Not a list of
    numbers or of tensors fn does not read, a log the training loop appends to, say:
    watching it would trace anew on every call.)"""
    owner = _owner(fn)
    roots = [fn, owner, *args, *_named_by(fn)]
    # The files whose helper functions are walked: fn's, and those of the classes' methods
    home = _function(fn)
    homes = {id(home.__globals__)} if home is not None else set()
    held: list[tuple[Any, tuple, tuple]] = []
    seen: dict[int, bool] = {}  # what a walk found (a container held twice: the same)
    classes: set[type] = set()

    def walk_class(x: Any) -> None:
        """The methods (their globals in `homes`, then what they name) and the class
        attributes of x's class and its bases."""
        for cls in (x if isinstance(x, type) else type(x)).__mro__:
            home_module = str(getattr(cls, "__module__", ""))
            if cls in classes or home_module == "builtins" or home_module.startswith("minigrad."):
                continue
            classes.add(cls)
            members = []
            for name, member in list(vars(cls).items()):
                member = getattr(member, "__func__", member)  # (a static or class method)
                if isinstance(member, property):
                    members += [member.fget, member.fset]
                elif isinstance(member, types.FunctionType) or not (
                        name.startswith("__") and name.endswith("__")):
                    members.append(member)
            homes.update(id(m.__globals__) for m in members
                         if isinstance(m, types.FunctionType))
            for member in members:
                looked_at(member, 0, False)

    def walk(x: Any, depth: int, in_module: bool) -> bool:
        """Whether x is or holds a module, a parameter or a tensor the program read; the
        containers on the way that do are held. `depth`: how far from the nearest module
        (or root)."""
        if type(x) in _ATOMS or type(x) in _PROXIES:  # (a number holds nothing; isinstance
            return False                              # would look through a dead proxy)
        if isinstance(x, nn.Module):
            if id(x) not in seen:
                seen[id(x)] = True
                walk_class(x)
                for value in list(vars(x).values()):
                    looked_at(value, 0, True)
            return True
        if isinstance(x, Tensor):
            return isinstance(x, nn.Parameter) or id(x) in read
        if id(x) in seen:
            return seen[id(x)]
        if type(x) is types.FunctionType and id(x.__globals__) not in homes:
            return False  # (not remembered: a class met later may make its file a home)
        if not in_module and depth > _DEEP:  # (not remembered: a module may hold it nearer)
            return False
        if type(x) is tuple or isinstance(x, (types.FunctionType, types.MethodType,
                                              CompiledFunction)):
            seen[id(x)] = False  # (while it is walked: a cycle back finds nothing more)
            # (a helper function of fn's own module, a bound method, a compiled function:
            # what they name)
            if type(x) is tuple:
                parts: Any = x
            elif isinstance(x, types.MethodType):
                parts = [x.__self__, x.__func__]
            elif isinstance(x, CompiledFunction):
                parts = [x.fn]
            else:  # (a function of a file in `homes`)
                parts = _named_by(x)
            seen[id(x)] = any([looked_at(y, depth + 1, in_module) for y in parts])
            return seen[id(x)]
        holds = x if isinstance(x, (list, dict, collections.deque)) else _attributes(x)
        # (what a module holds is walked unless huge; elsewhere only small ones, and only so
        # many items in all: a dataset or a table a helper reads would make every trace
        # slow. Not remembered: a module may hold it.)
        if holds is None or len(holds) > (_WALKED_IN_MODULE if in_module else _WALKED):
            return False
        items = holds.values() if isinstance(holds, dict) else holds
        if set(map(type, items)) <= _ATOMS:  # (numbers hold no layer: a table, at C speed)
            seen[id(x)] = False
            return False
        seen[id(x)] = False
        # the entries that hold what fn read (not a step counter beside the model)
        if isinstance(holds, (list, collections.deque)):  # (its length, their positions)
            found = [k for k, v in enumerate(list(holds)) if looked_at(v, depth + 1, in_module)]
            keys = (len(holds), *found) if found else ()
        else:
            keys = tuple([k for k, v in list(holds.items())
                          if looked_at(v, depth + 1, in_module)])
        if keys == ():
            return False
        held.append((x, keys, _contents(x, keys)))
        seen[id(x)] = True
        return True

    def looked_at(x: Any, depth: int, in_module: bool) -> bool:
        try:
            return walk(x, depth, in_module)
        except Exception:  # noqa: BLE001 (an object that raises when looked at, a proxy
            return False  # outside its context, say: what fn reads through it is not seen)

    if owner is not None:
        with contextlib.suppress(Exception):  # (a proxy that raises when looked at)
            walk_class(owner)
    for root in roots:
        looked_at(root, 0, False)
    return held


def _function(fn: Any) -> types.FunctionType | None:
    """The Python function a call of `fn` starts in, if it is one (a method's, a
    partial's, a compiled function's)."""
    while True:
        if isinstance(fn, types.FunctionType):
            return fn
        if isinstance(fn, types.MethodType):
            fn = fn.__func__
        elif isinstance(fn, functools.partial):
            fn = fn.func
        elif isinstance(fn, CompiledFunction):
            fn = fn.fn
        else:
            return None


def _owner(fn: Any) -> Any:
    """The object whose class's code a call of `fn` runs: the one fn is a method of, or fn
    itself if it is neither a function nor a partial (a module, a callable object)."""
    while isinstance(fn, (functools.partial, CompiledFunction)):
        fn = fn.func if isinstance(fn, functools.partial) else fn.fn
    if isinstance(fn, types.MethodType):
        return fn.__self__
    return None if isinstance(fn, (types.FunctionType, types.BuiltinFunctionType)) else fn


_PROXIES = (weakref.ProxyType, weakref.CallableProxyType)
_ATOMS = frozenset({int, float, complex, bool, str, bytes, type(None), np.float64, np.float32,
                    np.float16, np.int64, np.int32, np.bool_})
# A list, dict or object holding more is not looked into (a dataset, a vocabulary), nor one
# outside modules further than this from fn (a chain of objects): a layer swapped there is
# not seen. (Deeper inside modules, Python's recursion limit is the bound: not seen either.)
_WALKED, _WALKED_IN_MODULE, _DEEP = 1_000, 100_000, 50


def _attributes(x: Any) -> dict | None:
    """The attributes of a plain object (a trainer holding the model), its slots too; None
    for anything else (a class, a module of Python, a function: what they hold is code, not
    state; a compiled function: its cache)."""
    if isinstance(x, _NOT_STATE):
        return None
    try:
        attributes = getattr(x, "__dict__", None)
        slots = _slot_names(type(x))  # type: ignore[arg-type]  # (a class is hashable)
        if not slots:
            return attributes if isinstance(attributes, dict) else None
        values = {n: getattr(x, n) for n in slots if hasattr(x, n)}
        return {**attributes, **values} if isinstance(attributes, dict) else values
    except Exception:  # (a proxy whose attributes raise: nothing to watch)  # noqa: BLE001
        return None


@functools.lru_cache(maxsize=256)
def _slot_names(cls: type) -> tuple[str, ...]:
    """The slots of `cls` and its bases, as attribute names (a private one mangled)."""
    names = []
    for c in cls.__mro__:
        slots = c.__dict__.get("__slots__", ())
        for n in (slots,) if isinstance(slots, str) else slots:
            if n not in ("__dict__", "__weakref__"):
                private = n.startswith("__") and not n.endswith("__")
                names.append(f"_{c.__name__.lstrip('_')}{n}" if private else n)
    return tuple(names)


def _named_by(fn: Any) -> list[Any]:
    """What a function's defaults, closure cells and the globals its code names hold
    (`lambda x: model(x)`), or a partial's function and arguments: the modules among them
    are watched as fn's own is."""
    if isinstance(fn, functools.partial):  # its function and what it was given
        return [*_named_by(fn.func), *fn.args, *fn.keywords.values()]
    code, cells = getattr(fn, "__code__", None), getattr(fn, "__closure__", None) or ()
    named = [*(getattr(fn, "__defaults__", None) or ()),
             *(getattr(fn, "__kwdefaults__", None) or {}).values()]
    for cell in cells:
        with contextlib.suppress(ValueError):  # (a cell not yet filled)
            named.append(cell.cell_contents)
    if code is not None:
        scope = getattr(fn, "__globals__", {})
        named += [scope[name] for name in _names(code) if name in scope]
    return named


def _names(code: types.CodeType) -> list[str]:
    """The global names a code object reads, its comprehensions' and nested functions' too."""
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += _names(const)
    return names


def _contents(container: Any, keys: tuple) -> tuple:
    """What a list holds at the positions `keys[1:]`, if it has the length `keys[0]`; or a
    dict's or a plain object's keys and what those of `keys` hold."""
    if isinstance(container, (list, collections.deque)):
        if len(container) != keys[0]:
            return (_contents,)  # (equal to nothing it held)
        return tuple([container[k] for k in keys[1:]])
    held = container if isinstance(container, dict) else _attributes(container) or {}
    return (*held, *[held.get(k, _contents) for k in keys])  # (_contents: no such entry)


def _unchanged(held: list[tuple[Any, tuple, tuple]]) -> bool:
    """Whether each container holds the very objects it held when traced."""
    for container, keys, was in held:
        now = _contents(container, keys)
        if len(now) != len(was) or any(a is not b for a, b in zip(now, was)):
            return False
    return True


# Held while a program's code is written after its trace (a tuple's backward, made for the
# results a backward reaches on first use), as `scan` writes its loops.
_WRITING = threading.Lock()


class _Replay:
    """A signature's program, as the functions a call runs."""

    def __init__(self, program: Program, positions: dict[int, int], generation: int,
                 name: str, held: list[tuple[Any, tuple, tuple]], several: bool):
        self.generation = generation  # of the modules' attributes, when traced
        self.held = held  # the containers of fn's module, as they were (`_held`)
        self.name = name
        self.program = program
        self.several = several  # fn returns a tuple (of `program.outputs`)
        results = program.outputs
        # (position, the first holding the same value): fn returned one tensor twice, which
        # is one object, as in eager mode (a change in place reaches both)
        self.repeated = [(i, first) for i, v in enumerate(results)
                         if (first := results.index(v)) != i]
        self.grads = [v.requires_grad for v in results]
        self.requires_grad = any(self.grads)
        self.scalar = not several and all(n == 1 for n in results[0].shape)
        # Copy-on-write of a result where a graph keeps its array, or where it may be an
        # operand's own (a user op's `np.asarray(x)`: eager mode's `_one_of`), as a view is,
        # or where another result or a kept value may view it (`y, y.T`)
        lasts = [next(step for step in program.steps if step.out is v) for v in results]
        viewed = program.viewed_outputs()
        self.shared = [v.name in program.saved or v.index in viewed or not (
            isinstance(last.op.forward, np.ufunc) or last.numpy)
            for v, last in zip(results, lasts, strict=True)]
        self.saved = len(program.saved)  # how many values a node keeps for the backward
        # The expression of the tensor behind an input: an argument, or one read from outside.
        arguments = {v.index: f"a[{positions[v.index]}]" for v in program.inputs
                     if v.index in positions and not v.raw}
        read = {value.index: t for value, t in program.captured}  # tensors read from outside
        captured = {i: program._name(t, "T") for i, t in read.items()}
        tensor_of = {**arguments, **captured}
        # A call reads its inputs; None if a tensor read from outside changed its shape,
        # dtype, strides or requires-grad, or is now also an argument. A tensor a VJP reads
        # is shared as `record` shares it (`Tensor._share`), before anything else holds it.
        lines = []
        for value, tensor in program.captured:
            t = captured[value.index]
            shape, dtype = program._name(value.shape, "s"), program._name(value.dtype, "d")
            strides = program._name(tensor._data.strides, "s")
            wanted = "not " if tensor.requires_grad else ""  # (by truth: np.True_ too)
            lines.append(f"if {t}._data.shape != {shape} or {t}._data.dtype != {dtype} "
                         f"or {t}._data.strides != {strides} "
                         f"or {wanted}{t}._requires_grad: return None")
            lines += [f"if {a} is {t}: return None" for a in arguments.values()]
        for tensor, value in program.aliased:  # read from outside and passed at the trace
            lines.append(f"if a[{positions[value.index]}] is not "
                         f"{program._name(tensor, 'T')}: return None")
        shared = program.shared_inputs()
        for value in program.inputs:
            if value.index in positions and value.raw:
                lines.append(f"{value.name} = a[{positions[value.index]}]")
            elif value.index in tensor_of:
                t = tensor_of[value.index]
                lines.append(f"{value.name} = {t}._data if {t}._shared else {t}._share()"
                             if value.index in shared else f"{value.name} = {t}._data")
        lines += program.forward_lines(lambda v: tensor_of.get(v.index))
        saved = ", ".join(program.saved)
        result = f"[{', '.join(v.name for v in results)}]" if several else results[0].name
        lines.append(f"return {result}, [{saved}]" if self.requires_grad else f"return {result}")
        self.forward = program.function("forward(a)", lines, f"compiled {name}")
        # The vertex of each grad input on a call: an argument's node or itself, or the tensor.
        self.sources = [(positions[v.index], None) if v.index in positions else
                        (-1, read[v.index]) for v in program.grad_inputs]
        self.backwards: dict[tuple[bool, ...], Callable[..., list]] = {}
        if self.requires_grad and not several:
            self.backward = self._backward_for(None)

    def _backward_for(self, given: tuple[bool, ...] | None) -> Callable[..., list]:
        """The backward function from the result's cotangent `g`, or, for a tuple, from those
        of the results `given` says have one (`g[i]`, the parts of the node's)."""
        program, saved = self.program, ", ".join(self.program.saved)
        head = [f"{saved}, = s" if saved else "pass", "if free: s.clear()"]
        if given is None:
            lines = program.backward_lines(["g"])
        else:
            lines = program.backward_lines([f"g[{i}]" for i in range(len(given))],
                                           order=[i for i, here in enumerate(given) if here])
        return program.function("backward(s, free, g)", head + lines + ["return grads"],
                                self.name)

    def backward_of(self, saved: list, free: bool, g: Any) -> list:
        """The program's backward for the node's cotangent `g` (the parts, for a tuple)."""
        if not self.several:
            return self.backward(saved, free, g)
        given = tuple(part is not None for part in g)
        backward = self.backwards.get(given)
        if backward is None:
            with _WRITING:  # (names are numbered as they are made: one writer at a time)
                backward = self.backwards.get(given) or self._backward_for(given)
                self.backwards[given] = backward
        return backward(saved, free, g)

    def run(self, args: tuple, traced_now: bool = False) -> Any:
        """The result for `args` (a Tensor, or a tuple of them), its backward one node of the
        tape; None if the program is stale (a module's attribute was rebound, a parameter
        changed shape or dtype). `traced_now`: the program was traced for this very call,
        from the modules as they were then (what another thread sets meanwhile, it may set
        as well during an eager call: this call reads what it read)."""
        if not traced_now and (nn.generation != self.generation
                               or self.held and not _unchanged(self.held)):
            return None
        r = self.forward(args)
        if r is None:
            return None
        out, saved = r if self.requires_grad else (r, None)
        if self.several:
            return self._results(args, out, saved)
        if not self.requires_grad:
            return _make(out, False, None, self.shared[0] or out.base is not None)
        node = Node(self.name, _program_vjp, self._inputs(args), (self, saved), {}, None, out)
        return _make(out, True, node, self.shared[0] or out.base is not None)

    def _inputs(self, args: tuple) -> list:
        """The vertex of each grad input on a call: an argument's node or itself, or the
        tensor read from outside."""
        return [t if t is not None else args[p]._node or args[p] for p, t in self.sources]

    def _results(self, args: tuple, outs: list, saved: list | None) -> tuple:
        """A tuple's results: those that need a gradient parts of one node's object array
        (as `scan`'s outputs), each copied before it is written to (the node holds them)."""
        if self.requires_grad:
            packed = np.empty(len(outs), object)
            for i, out in enumerate(outs):
                packed[i] = out
            node = Node(self.name, _program_vjp, self._inputs(args), (self, saved), {}, None,
                        packed)
            whole = _make(packed, True, node, True)
        results = []
        for i, out in enumerate(outs):
            if self.grads[i]:
                part = _part(whole, index=i)
                part._shared = True
            else:
                part = _make(out, False, None, self.shared[i] or out.base is not None)
            results.append(part)
        for i, first in self.repeated:
            results[i] = results[first]
        return tuple(results)

    def value_and_backward(self, args: tuple) -> float | None:
        """`run(args)`, `backward()` on its one-element result and its value, without a node:
        the backward lines run at once and each leaf's contributions are added up, taken and
        accumulated into `.grad` as the sweep and `Tensor.backward` do. None (having done
        nothing) if the program is stale or an argument's gradient flows on into a graph."""
        leaves = [t if t is not None else args[p] for p, t in self.sources]
        if nn.generation != self.generation or self.held and not _unchanged(self.held) \
                or any(t._node is not None for t in leaves):
            return None
        r = self.forward(args)
        if r is None:
            return None
        out, saved = r
        seed = np.empty(out.shape, out.dtype)
        seed.fill(1)
        seed.flags.writeable = False  # as `Tensor.backward`'s: a VJP may not write into it
        grads = []
        for leaf, g in zip(leaves, self.backward(saved, True, seed)):
            if g is not None:
                mine = False  # (a VJP's array: `.grad` gets a copy)
                if type(g) is not _ndarray or g.shape != leaf.shape:  # as the sweep takes it
                    g, mine = tape.total(g, leaf.shape, leaf.dtype)
                grads.append((leaf, g if mine else g.copy()))
        accumulate_grads(grads)  # (as `Tensor.backward`: every leaf as one step)
        return out.item()


class CompiledFunction:
    """`fn` traced once per signature and replayed; made by `minigrad.compile`."""

    def __init__(self, fn: Callable[..., Tensor], cache_size: int):
        if not callable(fn):
            raise TypeError(f"compile: expected a function, got {type(fn).__name__}")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int):
            raise TypeError(f"compile: cache_size must be an integer >= 1, got "
                            f"{type(cache_size).__name__} {cache_size!r}")
        if cache_size < 1:
            raise ValueError(f"compile: cache_size must be an integer >= 1, got {cache_size!r}")
        self.fn = fn
        self.cache_size = cache_size
        self.traces = 0  # how many times fn was traced
        self.trace_seconds = 0.0  # running fn on tracers and writing the replay's code
        self._cache: OrderedDict[tuple, _Replay] = OrderedDict()
        self._lock = threading.Lock()
        self._name = f"compiled {getattr(fn, '__name__', 'fn')}"
        # Its name and docstring, not its __dict__: a Module's attributes (`fn`, `traces`)
        # would overwrite this object's own.
        functools.update_wrapper(self, fn, updated=())  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<compiled {getattr(self.fn, '__qualname__', self.fn)!s}>"

    def __reduce__(self) -> tuple:
        """Pickled as `compile(fn, cache_size=...)`: the copy traces anew (its programs are
        tied to the objects `fn` reads, which it does not share). A function pickle cannot
        take (a lambda) raises pickle's own error."""
        return type(self), (self.fn, self.cache_size)

    def __deepcopy__(self, memo: dict) -> CompiledFunction:
        """`compile(deepcopy(fn), cache_size=...)`, with an empty cache: a method of a
        module copied with it (`net.fast = mg.compile(net.loss)`) is the copy's method, and
        reads the copy's weights. (Made before `fn` is copied, so that a module reached
        through `fn` that holds this function holds the copy too.)"""
        new = memo[id(self)] = object.__new__(type(self))
        new.__init__(copy.deepcopy(self.fn, memo), self.cache_size)  # type: ignore[misc]
        return new

    def __copy__(self) -> CompiledFunction:
        """The same `fn`, sharing the cache of programs traced from it (and its lock)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    @property
    def signatures(self) -> int:
        """How many signatures the cache holds (at most `cache_size`)."""
        return len(self._cache)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"compile: pass the arguments positionally, got keyword "
                            f"arguments {sorted(kwargs)}")
        mode = current_mode()
        if mode >= TRACING:  # inside another trace: be traced by it
            return self.fn(*args)
        key = _signature(args, mode)
        if key is None:  # an array of an ndarray subclass among them
            args = _plain_arrays(args)
            key = cast(tuple, _signature(args, mode))
        replay = self._cache.get(key)  # (without the lock: each dict step is atomic)
        if replay is not None:
            try:  # noqa: SIM105 (contextlib.suppress costs a context manager per call)
                self._cache.move_to_end(key)
            except KeyError:  # evicted by another thread in between: still this call's
                pass
            result = replay.run(args)
            if result is not None:
                return result
        for _ in range(3):  # traced again while another thread changes a parameter's shape
            replay = self._trace(key, args, mode)
            result = replay.run(args, traced_now=True)
            if result is not None:
                return result
        raise TraceError(f"compile: a parameter's shape, dtype or layout changed (by another "
                         f"thread) each time {self._name} was traced, so no program stayed "
                         "valid; change parameters while no compiled function is being called")

    def value_and_backward(self, *args: Any) -> float:
        """`loss = self(*args); loss.backward(); return loss.item()`, for a function returning
        a one-element tensor: the gradients accumulate into the leaves' `.grad`, and the loss
        comes back as a Python float."""
        mode = current_mode()
        # (inside a grad's f, backward() checks first order: the fast path would not)
        if RECORDING <= mode < TRACING and not mode & ANOMALY and not enclosing_grad_inputs.get():
            key = _signature(args, mode)
            replay = self._cache.get(key) if key is not None else None
            if key is not None and replay is not None and replay.requires_grad \
                    and replay.scalar:
                try:  # noqa: SIM105 (the most recently used, as by a call: see __call__)
                    self._cache.move_to_end(key)
                except KeyError:  # evicted by another thread in between
                    pass
                value = replay.value_and_backward(args)
                if value is not None:
                    return value
        loss = self(*args)
        if type(loss) is tuple:
            raise TypeError(f"value_and_backward: {self._name} returns a tuple of "
                            f"{len(loss)} tensors, not a loss: call it, then backward() the loss")
        loss.backward()
        return loss.item()

    def _trace(self, key: tuple, args: tuple, mode: int) -> _Replay:
        started = time.perf_counter()
        generation = nn.generation  # before fn reads any module's attribute
        trace = Trace(recording=bool(mode & RECORDING), anomaly=bool(mode & ANOMALY))
        traced: list[Any] = []
        positions: dict[int, int] = {}  # an input value's index -> its argument's position
        by_id: dict[int, Any] = {}
        for p, a in enumerate(args):
            if type(a) is _ndarray or isinstance(a, Tensor):
                t = by_id.get(id(a))
                if t is None:
                    if isinstance(a, Tensor):
                        t = trace.input(a._data, a.requires_grad)
                        # fn may also read it from outside: as this input (`Trace.operand`)
                        trace.aliases[id(a)] = (a, trace.inputs[-1])
                    else:
                        t = trace.input(a, False, raw=True)
                    by_id[id(a)] = t
                    positions[trace.inputs[-1].index] = p
                a = t
            traced.append(a)
        token = nn.compiling.set(True)  # (what fn sets is a side effect of this trace)
        try:
            with trace:
                result = self.fn(*traced)
        finally:
            nn.compiling.reset(token)
        several = type(result) is tuple and len(result) > 0
        if not (isinstance(result, Tensor) or several and all(
                isinstance(r, Tensor) for r in result)):
            got = type(result).__name__ if not several else "a tuple holding " + ", ".join(
                "Tensor" if isinstance(r, Tensor) else type(r).__name__ for r in result)
            raise TraceError(f"compile: fn must return a Tensor or a tuple of Tensors, got {got}")
        program = Program(trace, trace.results(list(result) if several else [result],
                                               "compile: fn"))
        read = {id(t) for _, t in program.captured} | {id(t) for t, _ in program.aliased}
        replay = _Replay(program, positions, generation, self._name,
                         _held(self.fn, args, read), several)
        with self._lock:
            self._cache[key] = replay
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self.traces += 1
        self.trace_seconds += time.perf_counter() - started
        return replay


def compile(fn: Callable[..., Any], *, cache_size: int = 8) -> CompiledFunction:
    """`compile(fn)(*args)` returns what `fn(*args)` returns (a Tensor, or a tuple of them),
    computed by a program traced from `fn` once per signature and replayed on later calls;
    `backward()` on it fills `.grad` as eager mode does, with the same bits.

    The rules, as `jax.jit`'s:
    - The signature is each Tensor or NumPy array argument's shape, dtype and strides (a
      Tensor's requires-grad too; a memmap, or an array of a subclass that only adds
      attributes, is taken as a plain array, as an op takes it; one of another ndarray
      subclass, np.matrix or a masked array, is refused), the
      type and value of any other argument (an immutable value: a number, a string, None,
      a dtype, a class, a function (NumPy's too; not a bound method: `{}.get`), an enum,
      a slice, a range, a frozen dataclass; an `nn.Module` by identity; or a tuple of them: baked
      into the program; -0.0 is not 0.0; other objects are refused, and so is a number,
      string or tuple subclass's instance that carries attributes),
      which arguments are the same object, and this thread's grad and anomaly mode. The
      `cache_size` most recently used are kept.
    - `fn` runs only when traced, on tracers: Python may read their shapes and dtypes, not
      their values (`bool`, `float`, `.item()`, `.data`, `.grad`, `.is_leaf`, NumPy on
      them raise `TraceError`, as do `.data` of every tensor, `backward()`, `gradients`
      and `state_dict()` while tracing); conversions and layout changes go through ops
      (`mg.astype`, `.T`, `.reshape`); the result is a tensor or a tuple of tensors.
      An exception an op raised on the traced call's values (an overflow under
      `np.errstate(over="raise")`, a user op's refusal) that `fn` catches would fix that
      branch for every call: `TraceError` (an uncaught one reaches the caller as raised).
      A try/except around an op is never replayed: a later call whose values make the op
      raise gets its exception, where eager mode would take the except branch.
      NumPy's error state is the caller's: `np.errstate` set inside `fn` is refused
      (`TraceError`); set it around the call.
    - The tensors `fn` reads from outside (parameters) are read afresh on every call; a
      call after a module's attribute was set, or a parameter's shape, dtype or strides
      changed, traces again; so does a list or dict of modules or parameters changed in
      place under the module `fn` is (or is a method of), a module argument, or a module
      `fn`'s closure or globals name, or in a global or class attribute that the code of
      `fn`, of its class's methods (a partial's function, a callable object's) or of a
      module's class names. What `fn` sets while traced is a side effect of the
      trace (its replays do not repeat it).
      Arrays and numbers `fn` reads from outside, or makes itself (a random draw), are
      constants of the program, as is which tensor a global or closure variable names:
      pass what changes as an argument.
    - Keyword arguments are refused.

    `copy.deepcopy` and pickle copy a compiled function as `compile(copy of fn)`, which
    traces anew: a module holding `mg.compile(self.loss)` is copied with a compiled method
    of the copy, reading the copy's weights. `copy.copy` shares `fn` and its cache.
    """
    return CompiledFunction(fn, cache_size)



# What the walk of `_held` does not look into: code, arrays, and compiled functions (whose
# cache of programs changes as they trace: watched, it would make every program stale).
_NOT_STATE = (type, types.ModuleType, types.FunctionType, types.MethodType, np.ndarray,
              functools.partial, CompiledFunction, _Replay)
