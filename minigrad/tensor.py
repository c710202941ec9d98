"""`Tensor`: a NumPy array that records the ops applied to it and backpropagates through them.

Its operators and methods are ops of `minigrad.ops`, written out here so that readers and
type checkers see them (`ops` is imported as a module: it is built on Tensor in turn).
"""

from __future__ import annotations

import copy
import inspect
import numbers
import operator
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Union
from weakref import getweakrefcount

import numpy as np

from . import anomaly, ops, tape
from .modes import (
    RECORDING,
    TRACING,
    TraceError,
    current_mode,
    enclosing_grad_inputs,
    is_anomaly_enabled,
    refuse_traced,
)
from .tape import Node

Operand = Union["Tensor", np.ndarray, float]  # noqa: UP007 (a string forward reference)
Axis = int | Sequence[int] | None


# NumPy's ufuncs behind Python's binary operators, by name: what `array <op> tensor` calls,
# as (the method of the left operand, the reflected method of the right).
_OPERATORS = {"add": ("__add__", "__radd__"), "subtract": ("__sub__", "__rsub__"),
              "multiply": ("__mul__", "__rmul__"), "divide": ("__truediv__", "__rtruediv__"),
              "true_divide": ("__truediv__", "__rtruediv__"), "power": ("__pow__", "__rpow__"),
              "matmul": ("__matmul__", "__rmatmul__"), "less": ("__lt__", "__gt__"),
              "less_equal": ("__le__", "__ge__"), "greater": ("__gt__", "__lt__"),
              "greater_equal": ("__ge__", "__le__"), "equal": ("__eq__", "__eq__"),
              "not_equal": ("__ne__", "__ne__")}


def _op_of_ufunc(ufunc: np.ufunc) -> str | None:
    """The name of the table's op that computes `ufunc` (mg.abs for np.absolute), if any."""
    from .primitive import OPS  # (at a refusal only: primitive builds on this module)

    found = [name for name, op in OPS.items() if op.forward is ufunc]
    return found[0] if found else (ufunc.__name__ if ufunc.__name__ in OPS else None)


class Tensor:
    """A NumPy array that can record the ops applied to it and backpropagate through them.

    `Tensor(data, requires_grad=False)` copies `data`; floating dtypes are kept (float32
    stays float32, float16 stays float16), integers and bools become float64 (any other
    dtype, complex, strings, objects, is refused: TypeError).

    `.data` is the array. While a recorded graph keeps it for its gradients, it is read-only
    and `.data` hands out a fresh copy to change (copy-on-write): the graph computes its
    gradients at the values of the forward pass, whatever happens to the tensor meanwhile.

    A copy (`copy.copy`, `copy.deepcopy`, pickle at any protocol) is a leaf holding arrays
    of its own, its values and `.grad`; a tensor computed by ops is not copied (RuntimeError).
    """

    __slots__ = ("_data", "grad", "_requires_grad", "_node", "_shared", "_exposed",
                 "__weakref__")
    _data: np.ndarray
    grad: np.ndarray | None
    _requires_grad: bool
    _node: Node | None
    _shared: bool  # a graph keeps `_data`: copy it before handing it out
    _exposed: bool  # `_data` was handed out (or handed in): others may hold it
    _traced = False  # a trace's stand-in (`minigrad.trace.Tracer`), which has no graph
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any,
                        **kwargs: Any) -> Any:
        """`array + tensor` and the like, as the operator (a NumPy array on the left defers
        to the tensor's reflected method). Any other NumPy ufunc on a tensor is refused: it
        would compute on the values outside the graph (and on none while tracing)."""
        operators = _OPERATORS.get(ufunc.__name__)
        if method == "__call__" and not kwargs and operators and len(inputs) == 2:
            a, b = inputs
            return getattr(a, operators[0])(b) if a is self else getattr(b, operators[1])(a)
        name = ufunc.__name__
        op = _op_of_ufunc(ufunc)
        what = f"NumPy's {name}" + (f" (use minigrad's op: mg.{op})" if op else "")
        if current_mode() >= TRACING:
            raise refuse_traced(what, self.shape)
        raise TypeError(f"{what} on a tensor of shape {self.shape}: NumPy would compute "
                        "outside the graph; t.data gives the values")

    def __init__(self, data: Any, requires_grad: bool = False):
        if isinstance(data, Tensor) and data.requires_grad and not requires_grad \
                and current_mode() & RECORDING:
            # A constant copy of a value the loss depends on: its gradient would stop here.
            raise TypeError(
                f"Tensor(t): t (shape {data.shape}) requires grad, and Tensor(t) is a copy "
                "that does not: every gradient through it would be lost. Use t itself (or "
                "an op on it) to keep the graph, t.detach() for a constant copy, or "
                "Tensor(t, requires_grad=True) for a new leaf")
        self._data = tensor_array(data)
        self.grad = None
        self._requires_grad = bool(requires_grad)
        self._node = None
        self._shared = False
        self._exposed = False  # a private copy
        if current_mode() & TRACING:  # minigrad.compile replays the copy from `data`'s source
            trace_new_tensor(self, data)

    @property
    def requires_grad(self) -> bool:
        """Whether gradients flow to this tensor. A leaf's may be set; a tensor computed by
        ops keeps its own (set to False, the ops that used it would still pass it gradients:
        `t.detach()` is the value cut from the graph), as PyTorch refuses it too."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if current_mode() >= TRACING:  # (the program's flags are its arguments', fixed)
            raise TraceError(
                f"setting .requires_grad of a tensor of shape {self.shape} while a function "
                "is traced (minigrad.compile, minigrad.scan): a program's gradients follow "
                "from the flags its inputs have at the call; set it outside, or use "
                "t.detach() for a value cut from the graph")
        node = getattr(self, "_node", None)  # (not set yet while a pickle is loaded)
        if node is not None and not value:
            raise RuntimeError(
                f"requires_grad = False on a tensor computed by '{node.name}' (shape "
                f"{self.shape}): only a leaf's can change (the graph it is part of is "
                "recorded); use t.detach() for its value cut from the graph")
        self._requires_grad = bool(value)

    @property
    def data(self) -> np.ndarray:
        """The array, yours to change: a graph that saved the previous one keeps it."""
        if current_mode() >= TRACING:
            raise refuse_traced(".data", self.shape)
        if self._shared:
            # Copied unless no graph holds it any more (this slot is its only reference, and
            # it views no other array): an optimizer's step after backward copies nothing.
            # (Counted as `_share` counts: an attribute read is a reference of its own, where
            # CPython 3.14 may lend a local to the call without one. A weak reference is no
            # graph's: `_share` counts it, where the array handed out here is recorded.)
            # One thread at a time: two copying at once would each install its own copy,
            # the later one without what the other thread wrote into the first.
            with _COPY_ON_WRITE:
                if self._shared:
                    if self._data.base is not None or sys.getrefcount(self._data) > 2:
                        copied = self._data.copy(order="K")  # (its layout too)
                        if self._shared:  # (else a .data read in the copy installed one)
                            self._data = copied
                    self._shared = False
        self._exposed = True
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        if current_mode() >= TRACING:
            raise refuse_traced("setting .data", self.shape)
        array = value if type(value) is np.ndarray else plain_array(value, "setting .data")
        if array.dtype.kind != "f":  # the constructor's rule: an integer gradient truncates
            array = tensor_array(array)
        if array.shape != self._data.shape:  # (a graph recorded before now is refused)
            tape.reshaped(self, self._data.shape)
        self._data = array
        self._shared = False
        self._exposed = True

    def _share(self, held: int = 0) -> np.ndarray:
        """The array a graph keeps for this tensor: its own, which the next `.data` copies
        while a graph still holds it (copy-on-write); or a copy, where something else
        holds it or a view of it (`a = t.data`, `v = t.data[:2]`, beyond the `held`
        references the caller knows of), or where it is a view itself (`t.data = buf[:2]`;
        the setter views a memmap too). Writes through those go to the tensor, never to
        the graph. A handed-out array that nobody holds any more is kept as it is; one
        held only through a weak reference (which no reference count counts) is held."""
        if self._exposed:
            # (the references: the slot and the argument)
            if self._data.base is not None or sys.getrefcount(self._data) > 2 + held \
                    or getweakrefcount(self._data):
                return self._data.copy(order="K")
            self._exposed = False
        self._shared = True
        return self._data

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def size(self) -> int:
        return self._data.size

    @property
    def is_leaf(self) -> bool:
        """True for tensors the user made; False for outputs of recorded ops."""
        return self._node is None

    def item(self) -> float:
        """The value of a tensor of one element (of any shape: (), (1,), (1, 1)...), a
        Python number."""
        if current_mode() >= TRACING:
            raise refuse_traced(".item()", self.shape)
        if self._data.size != 1:
            raise ValueError(f"item() needs a tensor of one element, got shape {self.shape}")
        return self._data.item()

    def numpy(self) -> np.ndarray:
        """The array, as `.data`."""
        return self.data

    def __setitem__(self, index: Any, value: Any) -> None:
        raise TypeError(
            f"Tensor (shape {self.shape}) does not take item assignment (t[...] = v): a graph "
            "records ops, not writes into their results; make the new tensor with ops "
            "(mg.where(mask, v, t), mg.concatenate), or write into t.data[...] where no "
            "gradient is involved")

    def detach(self) -> Tensor:
        """The same values, cut from the graph (sharing the array until either changes it):
        an op, so that a traced function's detach is traced too."""
        return ops._detach(self)

    def backward(self, grad: Any = None, retain_graph: bool = False, *,
                 gradient: Any = None) -> None:
        """Accumulate the gradient of this tensor into `.grad` of every leaf it depends on.

        `grad` (or `gradient=`, PyTorch's name) is the upstream gradient, of this tensor's
        shape, real numbers (a complex one is refused, TypeError); it may be omitted for a
        tensor of one element. The graph is released afterwards unless `retain_graph`. A
        backward that raises part-way (a VJP's error, anomaly mode's) changes no `.grad`;
        the nodes it swept are released all the same, so a retry needs `retain_graph`.
        """
        if gradient is not None:
            if grad is not None:
                raise TypeError("backward: give grad or gradient=, not both")
            grad = gradient
        if current_mode() >= TRACING:
            raise refuse_traced("backward()", self.shape)
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad; none of the tensors it was "
                "computed from has requires_grad=True (or it was computed under no_grad())")
        if enclosing_grad_inputs.get():  # (inside a grad's f: first order only)
            from .functional import refuse_enclosing_output
            refuse_enclosing_output(self, "backward")
        accumulate_grads(self._sweep(grad, "backward", "a tensor", retain_graph).items())

    def _sweep(self, grad: Any, caller: str, role: str, retain_graph: bool,
               capture: Any = ()) -> dict[Any, np.ndarray]:
        """`tape.sweep` from this tensor, seeded with `grad` (see `_seed`); in anomaly mode
        the seed and the graph are watched first."""
        if current_mode() >= TRACING:  # a traced value has no graph: every gradient 0
            raise TraceError(f"{caller}() inside a traced function (minigrad.compile, "
                             "minigrad.scan): its values have no graph to sweep, so every "
                             "gradient would be 0; take gradients of the function's result, "
                             "outside it")
        seed = self._seed(grad, caller, role)
        root = self._node or self
        if not is_anomaly_enabled():
            return tape.sweep(root, seed, retain_graph=retain_graph, capture=capture,
                              caller=caller)
        anomaly.watch_backward(root, seed, caller, grad)
        results = tape.sweep(root, seed, retain_graph=retain_graph, capture=capture,
                             caller=caller)
        anomaly.check_totals(results, caller)
        return results

    def _seed(self, grad: Any, caller: str, role: str) -> np.ndarray:
        """The upstream gradient `grad` as an array of this tensor's shape and dtype; ones
        for a one-element tensor when `grad` is None. `role` names this tensor in errors.
        As `Tensor(data)`, real numbers only (integers and bools converted): a complex,
        string or object grad is refused, TypeError."""
        if grad is None:
            if self._data.size != 1:
                raise ValueError(f"{caller}: {role} of shape {self.shape} is not a scalar; "
                                 f"pass grad= an array of shape {self.shape}")
            seed = np.empty(self._data.shape, self._data.dtype)  # np.ones, without its
            seed.fill(1)  # Python layer
        else:
            seed = grad._data if isinstance(grad, Tensor) else \
                plain_array(grad, f"{caller}: grad")
            if seed.dtype.kind not in "biuf":  # (a cast would drop an imaginary part)
                raise TypeError(f"{caller}: grad must hold real numbers, got dtype "
                                f"{seed.dtype} ({type(grad).__name__})")
            seed = np.asarray(seed, self.dtype)
            if seed.shape != self.shape:
                raise ValueError(f"{caller}: grad has shape {seed.shape}, but the "
                                 f"{role.split()[-1]} has shape {self.shape}")
            seed = seed.view()  # (the caller's array keeps its flags)
        # Read-only: a VJP that writes into its cotangent raises, rather than changing the
        # caller's array and what the root's other VJPs get (and gradcheck's own seed).
        seed.flags.writeable = False
        return seed

    def __reduce_ex__(self, protocol: Any) -> Any:  # pickle
        self._copyable("a pickle")
        return super().__reduce_ex__(protocol)

    def __getstate__(self) -> Any:
        """Python's default state, the array and `.grad` pickled in band whatever the
        protocol (`_InBand`)."""
        attributes, slots = _default_state(self)
        for name in ("_data", "grad"):
            if type(slots.get(name)) is np.ndarray:
                slots[name] = _InBand(slots[name])
        return attributes, slots

    def __setstate__(self, state: Any) -> None:
        """Unpickled: the attributes and slots as pickled (Python's default), with the array
        and `.grad` the tensor's own (`unpickled_own`)."""
        attributes, slots = state if isinstance(state, tuple) else (state, None)
        if attributes:
            self.__dict__.update(attributes)
        for name, value in (slots or {}).items():
            setattr(self, name, value)
        for name in ("_data", "grad"):
            array = getattr(self, name, None)
            if type(array) is np.ndarray:
                setattr(self, name, unpickled_own(array))

    def __copy__(self, what: str = "copy.copy") -> Tensor:
        """A new leaf of this one's class holding a copy of its values (and of its `.grad`):
        sharing the array, as a copy of the slots would, lets a write through one reach the
        array a graph keeps for the other."""
        self._copyable(what)
        new = object.__new__(type(self))
        new._data, new._requires_grad, new._node = self._data.copy(order="K"), \
            self._requires_grad, None
        new.grad = None if self.grad is None else np.copy(self.grad)
        new._shared = new._exposed = False
        for name in _own_slots(type(self)):  # a subclass's own slots and attributes
            if hasattr(self, name):
                setattr(new, name, getattr(self, name))
        if hasattr(self, "__dict__"):
            new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo: dict) -> Tensor:
        memo[id(self)] = new = self.__copy__("copy.deepcopy")
        if hasattr(new, "__dict__"):  # (its attributes deep-copied too, as a class's would)
            new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

    def _copyable(self, what: str) -> None:
        if current_mode() >= TRACING:  # the copy would keep this call's values for ever
            raise TraceError(f"{what} of a tensor of shape {self.shape} while a function is "
                             "traced (minigrad.compile, minigrad.scan) would keep this "
                             "call's values in the program; mg.Tensor(x) is a copy the trace "
                             "records")
        if self._node is not None:  # (as PyTorch: its copy would be a leaf, or keep the graph)
            raise RuntimeError(f"{what}: a tensor computed by '{self._node.name}' (not a leaf) "
                               "cannot be copied with its graph; copy t.detach(), or "
                               "mg.Tensor(t.detach())")

    def __repr__(self) -> str:
        body = np.array2string(self._data, separator=", ", prefix="Tensor(")
        extra = ""
        if self._node is not None:
            extra = f", op={self._node.name}"
        elif self.requires_grad:
            extra = ", requires_grad=True"
        if self.dtype != np.float64:
            extra = f", dtype={self.dtype}" + extra
        return f"Tensor({body}{extra})"

    def __bool__(self) -> bool:
        if current_mode() >= TRACING:
            raise refuse_traced("bool()", self.shape)
        if self._data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self._data)

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self._data)

    def __iter__(self) -> Iterator[Tensor]:
        """The rows `t[0]`, `t[1]`, ... (each a getitem op); a 0-d tensor raises TypeError,
        as NumPy's 0-d array (Python's fallback to __getitem__ gave no rows)."""
        if not self.shape:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __float__(self) -> float:
        if current_mode() >= TRACING:
            raise refuse_traced("float()", self.shape)
        return float(self._data)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if current_mode() >= TRACING:
            raise refuse_traced("NumPy (np.asarray, a ufunc, ...)", self.shape)
        if self.requires_grad and current_mode() >= RECORDING:
            raise TypeError(f"NumPy (np.asarray, np.concatenate, ...) on a tensor of shape "
                            f"{self.shape} that requires grad would compute outside the "
                            "graph and lose its gradient: use minigrad's ops (mg.concatenate, "
                            "mg.stack, ...), or take the values with .data or .detach()")
        if copy is False:  # (NumPy's protocol: an array without a copy, or ValueError)
            raise ValueError(f"NumPy without a copy (np.asarray(t, copy=False)) of a tensor of "
                             f"shape {self.shape}: a tensor hands NumPy a copy of its values, "
                             "never its array (a graph may keep it); t.data is the array itself")
        # A copy: NumPy code given a tensor must not write into an array a graph keeps.
        return np.array(self._data, dtype=dtype, copy=True)

    # The operators and methods, each an op of the table (minigrad/ops.py).
    def __add__(self, other: Operand) -> Tensor:
        return ops.add(self, other)

    def __radd__(self, other: Operand) -> Tensor:
        return ops.add(other, self)

    def __sub__(self, other: Operand) -> Tensor:
        return ops.sub(self, other)

    def __rsub__(self, other: Operand) -> Tensor:
        return ops.sub(other, self)

    def __mul__(self, other: Operand) -> Tensor:
        return ops.mul(self, other)

    def __rmul__(self, other: Operand) -> Tensor:
        return ops.mul(other, self)

    def __truediv__(self, other: Operand) -> Tensor:
        return ops.div(self, other)

    def __rtruediv__(self, other: Operand) -> Tensor:
        return ops.div(other, self)

    def __pow__(self, other: Operand) -> Tensor:
        return ops.pow(self, other)

    def __rpow__(self, other: Operand) -> Tensor:
        return ops.pow(other, self)

    def __matmul__(self, other: Operand) -> Tensor:
        return ops.matmul(self, other)

    def __rmatmul__(self, other: Operand) -> Tensor:
        return ops.matmul(other, self)

    def __neg__(self) -> Tensor:
        return ops.neg(self)

    # `x += y` and the like (`p -= lr * p.grad` under no_grad, as in PyTorch): see _in_place.
    def __iadd__(self, other: Operand) -> Tensor:
        return _in_place(self, other, operator.iadd, "+")

    def __isub__(self, other: Operand) -> Tensor:
        return _in_place(self, other, operator.isub, "-")

    def __imul__(self, other: Operand) -> Tensor:
        return _in_place(self, other, operator.imul, "*")

    def __itruediv__(self, other: Operand) -> Tensor:
        return _in_place(self, other, operator.itruediv, "/")

    def __ipow__(self, other: Operand) -> Tensor:
        return _in_place(self, other, operator.ipow, "**")

    def __imatmul__(self, other: Operand) -> Tensor:
        return _in_place(self, other, operator.imatmul, "@")

    def __pos__(self) -> Tensor:
        """`+t` is `t` itself, as in PyTorch (no op: nothing to record)."""
        return self

    def __abs__(self) -> Tensor:
        return ops.abs(self)

    def __getitem__(self, index: Any) -> Tensor:
        return ops.getitem(self, index)

    # Comparisons are elementwise, as in NumPy and PyTorch: a mask (1.0 where it holds, 0.0
    # elsewhere) that does not require grad. Against anything that is not an operand (None,
    # a string) they return NotImplemented: == and != then fall back to identity, the
    # others raise Python's TypeError. A list or tuple, meant elementwise, is not an operand
    # either: == and != hand it to their op, which refuses it as `t + [1, 2]` is refused
    # (identity would answer a silent False). Tensors stay hashable by identity (dict keys,
    # set members); `t in a_list` compares elementwise, as in PyTorch: test identity instead.
    __hash__ = object.__hash__

    def __lt__(self, other: Any) -> Tensor:
        return ops.less(self, other) if _is_operand(other) else NotImplemented

    def __le__(self, other: Any) -> Tensor:
        return ops.less_equal(self, other) if _is_operand(other) else NotImplemented

    def __gt__(self, other: Any) -> Tensor:
        return ops.greater(self, other) if _is_operand(other) else NotImplemented

    def __ge__(self, other: Any) -> Tensor:
        return ops.greater_equal(self, other) if _is_operand(other) else NotImplemented

    def __eq__(self, other: object) -> Tensor:  # type: ignore[override]
        return ops.equal(self, other) if _is_compared(other) else NotImplemented

    def __ne__(self, other: object) -> Tensor:  # type: ignore[override]
        return ops.not_equal(self, other) if _is_compared(other) else NotImplemented

    def abs(self) -> Tensor:
        return ops.abs(self)

    def exp(self) -> Tensor:
        return ops.exp(self)

    def log(self) -> Tensor:
        return ops.log(self)

    def relu(self) -> Tensor:
        return ops.relu(self)

    def sigmoid(self) -> Tensor:
        return ops.sigmoid(self)

    def sqrt(self) -> Tensor:
        return ops.sqrt(self)

    def tanh(self) -> Tensor:
        return ops.tanh(self)

    def square(self) -> Tensor:
        return ops.square(self)

    def clip(self, low: float | None = None, high: float | None = None,
             **unexpected: Any) -> Tensor:
        if unexpected:
            raise _unexpected_keywords("clip", self, unexpected)
        return ops.clip(self, low, high)

    def astype(self, dtype: Any) -> Tensor:
        """The values converted to `dtype`, a floating dtype: `mg.astype(t, dtype)` (NumPy's
        idiom; the gradient is converted back)."""
        return ops.astype(self, dtype)

    def softmax(self, axis: int = -1, **unexpected: Any) -> Tensor:
        if unexpected:
            raise _unexpected_keywords("softmax", self, unexpected)
        return ops.softmax(self, axis)

    def log_softmax(self, axis: int = -1, **unexpected: Any) -> Tensor:
        if unexpected:
            raise _unexpected_keywords("log_softmax", self, unexpected)
        return ops.log_softmax(self, axis)

    def var(self, axis: Axis = None, keepdims: bool = False, ddof: float = 0,
            **unexpected: Any) -> Tensor:
        if unexpected:
            raise _unexpected_keywords("var", self, unexpected)
        return ops.var(self, axis, keepdims, ddof)

    def squeeze(self, axis: Axis = None, **unexpected: Any) -> Tensor:
        if unexpected:
            raise _unexpected_keywords("squeeze", self, unexpected)
        return ops.squeeze(self, axis)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return ops.flatten(self, start_dim, end_dim)

    def split(self, sections: int | Sequence[int], axis: int = 0,
              **unexpected: Any) -> list[Tensor]:
        if unexpected:
            raise _unexpected_keywords("split", self, unexpected)
        return ops.split(self, sections, axis)

    def sum(self, axis: Axis = None, keepdims: bool = False, **unexpected: Any) -> Tensor:
        if unexpected:
            raise _unexpected_keywords("sum", self, unexpected)
        return ops.sum(self, axis, keepdims)

    def mean(self, axis: Axis = None, keepdims: bool = False, **unexpected: Any) -> Tensor:
        if unexpected:
            raise _unexpected_keywords("mean", self, unexpected)
        return ops.mean(self, axis, keepdims)

    def max(self, axis: Axis = None, keepdims: bool = False, **unexpected: Any) -> Tensor:
        """`mg.max(self, axis, keepdims)`: the gradient goes to the maxima, split evenly
        between ties."""
        if unexpected:
            raise _unexpected_keywords("max", self, unexpected)
        return ops.max(self, axis, keepdims)

    def min(self, axis: Axis = None, keepdims: bool = False, **unexpected: Any) -> Tensor:
        """`mg.min(self, axis, keepdims)`: the gradient goes to the minima, split evenly
        between ties."""
        if unexpected:
            raise _unexpected_keywords("min", self, unexpected)
        return ops.min(self, axis, keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        return ops.reshape(self, *shape)

    def transpose(self, *axes: Any) -> Tensor:
        return ops.transpose(self, *axes)

    @property
    def T(self) -> Tensor:
        return ops.transpose(self)


# The binary operator of each in-place one, by its symbol: grad mode's `x op= y`.
_BINARY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
           "**": operator.pow, "@": operator.matmul}


def _in_place(x: Tensor, other: Any, operate: Callable[[Any, Any], Any], symbol: str) -> Any:
    """`x op= other`. Where no gradient is involved (under no_grad, or neither needs one), x
    changes in place, as a NumPy array or a PyTorch tensor does: `p -= lr * p.grad` updates
    the parameter (Python's fallback, `p = p - ...`, would rebind a loop's name and leave the
    parameter as it was). Its own array: copy-on-write keeps a graph's, and a view's, values.
    In grad mode, on a tensor in the graph, a new tensor `x op other` (the graph records
    it); on a leaf that requires grad, an error, as in PyTorch: the change would not be
    recorded. While a function is traced, a change in place is refused: eager mode would
    change the caller's tensor, which a program's later calls would not do.
    In every mode x keeps its shape and dtype, as in NumPy and PyTorch: a result of another
    shape (`x += b` that broadcasts x up) is refused, ValueError, and grad mode converts a
    result of another dtype back to x's (recorded: `x = (x op other).astype(x.dtype)`)."""
    if current_mode() & RECORDING and (
            x._requires_grad or isinstance(other, Tensor) and other._requires_grad):
        if x._requires_grad and x._node is None and not x._traced:
            raise RuntimeError(
                f"`x {symbol}= ...` on a leaf tensor that requires grad (shape {x.shape}) while "
                "grad mode is on: the graph would not record the change. Update it under "
                f"`with mg.no_grad():` (as an optimizer does), or compute x = x {symbol} ...")
        result = _BINARY[symbol](x, other)  # (a new tensor, recorded)
        if result.shape != x.shape:
            raise _reshaping(x, result.shape, symbol)
        return result if result.dtype == x.dtype else ops.astype(result, x.dtype)
    if current_mode() >= TRACING:
        raise TraceError(
            f"`x {symbol}= ...` on a tensor (shape {x.shape}) inside a traced function "
            "(minigrad.compile, minigrad.scan): eager mode changes it in place, which a "
            f"program's later calls would not do; write x = x {symbol} ...")
    data = x.data  # (a fresh copy where a graph or a view holds the array)
    try:  # NumPy's own in-place operator on the array: its casting and shape rules
        operate(data, other._data if isinstance(other, Tensor) else other)
    except (ValueError, TypeError) as error:  # (NumPy's own classes take other arguments)
        kind = TypeError if isinstance(error, TypeError) else ValueError
        shape = _result_shape(data, other, symbol)
        if shape is not None and shape != x.shape:  # (grad mode's message)
            raise _reshaping(x, shape, symbol) from None
        raise kind(f"`x {symbol}= ...` on a tensor of shape {x.shape} and dtype {x.dtype}: "
                   f"{error}") from None
    return x


def _result_shape(data: np.ndarray, other: Any, symbol: str) -> tuple[int, ...] | None:
    """The shape of `data op other`, or None where NumPy cannot compute it (a refused
    in-place operator's error path only)."""
    try:
        with np.errstate(all="ignore"):
            return np.shape(_BINARY[symbol](data, other._data if isinstance(other, Tensor)
                                            else other))
    except (ValueError, TypeError):
        return None


def _reshaping(x: Tensor, shape: tuple[int, ...], symbol: str) -> ValueError:
    return ValueError(f"`x {symbol}= ...` on a tensor of shape {x.shape}: the result has shape "
                      f"{shape}, and an in-place operator keeps x's shape (as in NumPy and "
                      f"PyTorch); write x = x {symbol} ... for a new tensor of that shape")


# `.grad` is read, added to and set as one step, so that threads running backward on graphs
# that share a parameter lose no contribution (NumPy releases the GIL inside a large add).
_GRAD_LOCK = threading.Lock()
# Taken by `Tensor.data` to copy an array a graph holds: one thread's copy never replaces
# another's, with what was written into it since. Re-entrant: a signal handler (or a
# finalizer) reading `.data` in the thread that holds it must not wait for itself.
_COPY_ON_WRITE = threading.RLock()


def _own_slots(cls: type) -> list[str]:
    """The slots a subclass of Tensor adds (Tensor's own are copied one by one)."""
    names = []
    for c in cls.__mro__:
        if c is not Tensor and c is not object:
            slots = c.__dict__.get("__slots__", ())
            names += [n for n in ((slots,) if isinstance(slots, str) else slots)
                      if n not in ("__dict__", "__weakref__")]
    return names


def accumulate_grads(grads: Iterable[tuple[Tensor, np.ndarray]]) -> None:
    """Add each `g` (an array the caller hands over) to its leaf's `.grad`, cast to the
    leaf's dtype, under one taking of the lock: a model's parameters as one step, every
    sum computed before any `.grad` is set (an error part-way changes none). A leaf frozen
    since the forward pass (`requires_grad = False` before `backward()`) gets nothing, as
    in PyTorch: its `.grad` stays as it was, and optimizers skip it."""
    grads = [(leaf, g) for leaf, g in grads if leaf._requires_grad]
    for leaf, g in grads:  # (each checked before any `.grad` changes; a number adds)
        held: Any = leaf.grad  # (an array, or a number the user set)
        if held is None or type(held) is np.ndarray and held.shape == g.shape:
            continue  # (the usual cases, without the ABC check below)
        if not isinstance(held, (numbers.Number, np.generic)) and np.shape(held) != g.shape:
            raise ValueError(f"backward: a tensor's .grad has shape {np.shape(held)}, its "
                             f"gradient now {g.shape} (its .data changed shape since the "
                             "last backward?); set .grad = None (zero_grad()) first")
    with _GRAD_LOCK:
        totals = []
        for leaf, g in grads:
            dtype = leaf._data.dtype
            if g.dtype is not dtype and g.dtype != dtype:  # (`is`: the usual case, quicker)
                g = g.astype(dtype)
            if leaf.grad is not None:  # (a NumPy float64 number added to float32 would
                g = leaf.grad + g      # make it float64)
                g = g if g.dtype is dtype else g.astype(dtype)
            totals.append(g)
        for (leaf, _), total in zip(grads, totals):
            leaf.grad = total


def _default_state(t: Tensor) -> tuple[dict | None, dict[str, Any]]:
    """What `object.__getstate__` gives a tensor, as (its __dict__ or None, its slots)."""
    state = object.__getstate__(t)  # type: ignore[misc]  # (Python 3.11+)
    attributes, slots = state if isinstance(state, tuple) else (state, None)
    return attributes, dict(slots or {})


class _InBand:
    """An array that pickles as protocol 4 pickles it, its bytes in the pickle, at any
    protocol: loaded, NumPy's array views those bytes, the pickle's own, with no copy. At
    protocol 5 a buffer_callback could take its memory out of band, and the loaded array
    would view the caller's buffers (the original's array itself, say)."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __reduce__(self) -> Any:
        return self.array.__reduce_ex__(4)


def unpickled_own(array: np.ndarray) -> np.ndarray:
    """An unpickled array as one nobody else writes: itself where it owns its memory or
    views the bytes it was unpickled from (in band, as `_InBand` pickles: the pickle's own,
    and no copy), else a copy in its layout (out of band, it views the caller's buffers)."""
    if array.flags.owndata or type(array.base) is bytes and array.flags.writeable:
        return array
    return array.copy(order="K")


def _is_operand(x: Any) -> bool:
    """Whether a comparison takes `x`: a Tensor, a NumPy array or a real number."""
    return isinstance(x, (Tensor, np.ndarray, numbers.Real))


def _is_compared(x: Any) -> bool:
    """Whether == and != call their op on `x`: an operand, or a list or tuple (which the op
    refuses: see the comment above `Tensor.__lt__`)."""
    return _is_operand(x) or isinstance(x, (list, tuple))


def tensor_array(data: Any) -> np.ndarray:
    """The array a `Tensor(data)` holds: a copy of `data`, floating dtypes kept, other
    numeric ones made float64."""
    if isinstance(data, np.ndarray) and type(data) is not np.ndarray:
        _refuse_masked(data, "Tensor")
    try:
        array = np.array(data._data if isinstance(data, Tensor) else data, copy=True)
    except ValueError as error:  # (NumPy's "inhomogeneous shape", of nested lists, say)
        raise ValueError(f"Tensor: cannot make an array of the data "
                         f"({type(data).__name__}): {error}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"Tensor: cannot hold data of dtype {array.dtype} ({type(data).__name__})")
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    return array


def plain_array(x: Any, what: str) -> np.ndarray:
    """An array of an ndarray subclass (`np.memmap`, a user's class) as a plain ndarray view
    of it (anything else as `np.asarray` makes it): an op computes on it, and a node or a
    program keeps a copy of it, as of a plain array (kept as it was, a memmap refilled
    before backward changed the gradient). A masked array is refused: minigrad computes
    on its values and would ignore its mask."""
    _refuse_masked(x, what)
    return np.asarray(x)


def _refuse_masked(x: Any, what: str) -> None:
    # (numpy.ma's class if it is loaded: else there is no masked array, and importing it
    # costs every later garbage collection its objects)
    ma = sys.modules.get("numpy.ma")
    if ma is not None and isinstance(x, ma.MaskedArray):
        raise TypeError(f"{what}: cannot use a masked array (shape {x.shape}): minigrad "
                        "computes on its values and would ignore its mask; pass "
                        "m.filled(value), or m.data for all its values")


def _unexpected_keywords(name: str, t: Tensor, keywords: dict[str, Any]) -> TypeError:
    """The error of method `name` given keywords it does not take. NumPy's `np.sum(t)` calls
    `t.sum(axis=..., out=...)` (its reductions defer to the method), which is refused as any
    other NumPy on a tensor is; PyTorch's name of a parameter (`dim=`) is answered with
    minigrad's (`axis=`), as the ops' functions answer it."""
    if "out" not in keywords:  # not NumPy's call: Python's own message, with the hint
        from .primitive import other_name  # (primitive imports this module)
        keyword, method = next(iter(keywords)), f"Tensor.{name}"
        parameters = inspect.signature(getattr(Tensor, name)).parameters
        return TypeError(f"{method}() got an unexpected keyword argument {keyword!r}"
                         f"{other_name(method, keyword, parameters)}")
    return TypeError(f"NumPy's {name} (use minigrad's op: mg.{name}(t), or t.{name}()) on a "
                     f"tensor of shape {t.shape}: NumPy would compute outside the graph; "
                     "t.data gives the values")


def _not_tracing(t: Tensor, data: Any) -> None:
    raise RuntimeError("Tensor: tracing is on but minigrad.trace is not loaded")


# Set by `minigrad.trace`: a tensor made while a function is traced becomes a step of the
# program (a copy of a traced value) or one of its constants.
trace_new_tensor: Any = _not_tracing


def _make(data: np.ndarray, requires_grad: bool, node: Node | None,
          shared: bool = False) -> Tensor:
    """Wrap an op's output without the checks and the copy of `Tensor.__init__`; `shared`
    if a graph keeps `data` (copy-on-write, as `Tensor._share`)."""
    t = object.__new__(Tensor)
    t._data = data
    t.grad = None
    t._requires_grad = requires_grad
    t._node = node
    t._shared = shared
    t._exposed = False
    return t
