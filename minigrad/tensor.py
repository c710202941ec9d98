"""`Tensor`, and the mechanism that turns a NumPy forward and its VJPs into a recorded op.

An op is defined once, by `defop`: a name, a NumPy forward, one vector-Jacobian product per
input (`vjp(g, out, *args, **kwargs)` returning the gradient for that input, in the shape of
the output's broadcast if the op broadcasts: the tape sums it back), the Tensor methods it
provides, and the domain its gradient tests draw from. `OPS` is that table.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from . import tape
from .tape import SAVE_INPUTS, SAVE_OUTPUT, Node

Operand = Union["Tensor", np.ndarray, float]  # noqa: UP007 (a string forward reference)
Axis = int | Sequence[int] | None


class Tensor:
    """A NumPy array that can record the ops applied to it and backpropagate through them.

    `Tensor(data, requires_grad=False)` copies `data`; floating dtypes are kept (float32
    stays float32), anything else numeric becomes float64.
    """

    __slots__ = ("data", "grad", "requires_grad", "_node", "__weakref__")
    data: np.ndarray
    grad: np.ndarray | None
    requires_grad: bool
    _node: Node | None
    # NumPy arrays on the left of an operator defer to the Tensor's reflected method.
    __array_ufunc__ = None

    def __init__(self, data: Any, requires_grad: bool = False):
        array = np.array(data.data if isinstance(data, Tensor) else data, copy=True)
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"Tensor: cannot hold data of dtype {array.dtype} ({type(data).__name__})")
        if array.dtype.kind != "f":
            array = array.astype(np.float64)
        self.data = array
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._node = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def is_leaf(self) -> bool:
        """True for tensors the user made; False for outputs of recorded ops."""
        return self._node is None

    def item(self) -> float:
        return self.data.item()

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied)."""
        return self.data

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return _make(self.data, False, None)

    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Accumulate the gradient of this tensor into `.grad` of every leaf it depends on.

        `grad` is the upstream gradient, of this tensor's shape; it may be omitted for a
        tensor of one element. The graph is released afterwards unless `retain_graph`.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad; none of the tensors it was "
                "computed from has requires_grad=True (or it was computed under no_grad())"
            )
        seed = self._seed(grad, "backward", "a tensor")
        tape.backward(self, seed, retain_graph)

    def _seed(self, grad: Any, caller: str, role: str) -> np.ndarray:
        """The upstream gradient `grad` as an array of this tensor's shape and dtype; ones
        for a one-element tensor when `grad` is None. `role` names this tensor in errors."""
        if grad is None:
            if self.data.size != 1:
                raise ValueError(f"{caller}: {role} of shape {self.shape} is not a scalar; "
                                 f"pass grad= an array of shape {self.shape}")
            return np.ones_like(self.data)
        seed = np.asarray(grad.data if isinstance(grad, Tensor) else grad, self.data.dtype)
        if seed.shape != self.shape:
            raise ValueError(f"{caller}: grad has shape {seed.shape}, but the "
                             f"{role.split()[-1]} has shape {self.shape}")
        return seed

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="Tensor(")
        extra = ""
        if self._node is not None:
            extra = f", op={self._node.name}"
        elif self.requires_grad:
            extra = ", requires_grad=True"
        if self.data.dtype != np.float64:
            extra = f", dtype={self.data.dtype}" + extra
        return f"Tensor({body}{extra})"

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.data)

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __float__(self) -> float:
        return float(self.data)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.data if dtype is None else self.data.astype(dtype)

    @property
    def T(self) -> Tensor:
        return self.transpose()

    if TYPE_CHECKING:  # What the op table (ops.py) attaches, declared for type checkers.

        def __add__(self, other: Operand) -> Tensor: ...
        def __radd__(self, other: Operand) -> Tensor: ...
        def __sub__(self, other: Operand) -> Tensor: ...
        def __rsub__(self, other: Operand) -> Tensor: ...
        def __mul__(self, other: Operand) -> Tensor: ...
        def __rmul__(self, other: Operand) -> Tensor: ...
        def __truediv__(self, other: Operand) -> Tensor: ...
        def __rtruediv__(self, other: Operand) -> Tensor: ...
        def __pow__(self, other: Operand) -> Tensor: ...
        def __rpow__(self, other: Operand) -> Tensor: ...
        def __matmul__(self, other: Operand) -> Tensor: ...
        def __rmatmul__(self, other: Operand) -> Tensor: ...
        def __neg__(self) -> Tensor: ...
        def __abs__(self) -> Tensor: ...
        def __getitem__(self, index: Any) -> Tensor: ...
        def abs(self) -> Tensor: ...
        def exp(self) -> Tensor: ...
        def log(self) -> Tensor: ...
        def relu(self) -> Tensor: ...
        def sigmoid(self) -> Tensor: ...
        def sqrt(self) -> Tensor: ...
        def tanh(self) -> Tensor: ...
        def sum(self, axis: Axis = None, keepdims: bool = False) -> Tensor: ...
        def mean(self, axis: Axis = None, keepdims: bool = False) -> Tensor: ...
        def max(self, axis: Axis = None, keepdims: bool = False) -> Tensor: ...
        def reshape(self, *shape: Any) -> Tensor: ...
        def transpose(self, *axes: Any) -> Tensor: ...


def _make(data: np.ndarray, requires_grad: bool, node: Node | None) -> Tensor:
    """Wrap an op's output without the checks and the copy of `Tensor.__init__`."""
    t = object.__new__(Tensor)
    t.data = data
    t.grad = None
    t.requires_grad = requires_grad
    t._node = node
    return t


# --- the op table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    """Where an op's gradient tests draw their inputs (read by `minigrad.testing.strategies`).

    `family` names the argument structure ("unary", "binary", "tensordot", ...); `values`
    gives the interval of each operand's values (the last one repeats); `avoid` lists points
    where the op is not differentiable; `distinct` asks for values without ties.
    """

    family: str
    values: tuple[tuple[float, float], ...] = ((-3.0, 3.0),)
    avoid: tuple[float, ...] = ()
    distinct: bool = False

    def interval(self, i: int) -> tuple[float, float]:
        return self.values[min(i, len(self.values) - 1)]


@dataclass(frozen=True)
class OpInfo:
    name: str
    function: Callable[..., Tensor]
    domain: Domain
    primitive: bool
    methods: tuple[str, ...] = field(default=())


OPS: dict[str, OpInfo] = {}


def register(name: str, function: Callable, domain: Domain, *, primitive: bool = False,
             methods: Sequence[str] = (), reflected: Sequence[str] = ()) -> Callable:
    """Put `function` in the op table and give Tensor the methods named for it.

    `methods` call `function(self, ...)`; `reflected` (such as `__radd__`) call
    `function(other, self)`.
    """
    if name in OPS:
        raise ValueError(f"register: an op named '{name}' is already registered")
    OPS[name] = OpInfo(name, function, domain, primitive, tuple(methods) + tuple(reflected))
    for method in methods:
        setattr(Tensor, method, function)
    for method in reflected:
        setattr(Tensor, method, _reflect(function))
    return function


def _reflect(function: Callable) -> Callable:
    def reflected(self: Tensor, other: Any) -> Tensor:
        return function(other, self)

    return reflected


def defop(name: str, forward: Callable, vjps: Sequence[Callable], domain: Domain,
          *, methods: Sequence[str] = (), reflected: Sequence[str] = (),
          saves: str = "both") -> Callable[..., Tensor]:
    """Define a primitive op from its NumPy `forward` and its VJPs, and register it."""
    op = primitive(name, forward, vjps, saves=saves)
    return register(name, op, domain, primitive=True, methods=methods, reflected=reflected)


def primitive(name: str, forward: Callable, vjps: Sequence[Callable] | Callable,
              variadic: bool = False, saves: str = "both") -> Callable[..., Tensor]:
    """A recorded op from its NumPy `forward` and VJPs, not registered (for `register` to
    publish behind a wrapper that normalises arguments).

    Operands are positional, options are keywords. For a `variadic` op (stack, ...)
    `vjps(args, kwargs)` returns the list of per-input VJPs for one call. `saves` says what
    the VJPs read besides `g` and the keywords: "inputs", "output", "both" or "nothing".
    What is not saved is not kept alive by the graph: an unsaved output is passed as None,
    and unsaved inputs are not passed at all (the VJP is `vjp(g, out, **kwargs)`).
    """
    if saves not in _SAVES:
        raise ValueError(f"primitive: saves must be one of {', '.join(_SAVES)}, got {saves!r}")
    mask = _SAVES[saves]
    if variadic or callable(vjps):
        op = _nary_op(name, forward, vjps, mask, variadic=True)
    elif len(vjps) == 1:
        op = _unary_op(name, forward, vjps[0], mask)
    elif len(vjps) == 2:
        op = _binary_op(name, forward, (vjps[0], vjps[1]), mask)
    else:
        op = _nary_op(name, forward, tuple(vjps), mask)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = forward.__doc__
    return op


_SAVES = {"both": SAVE_INPUTS | SAVE_OUTPUT, "inputs": SAVE_INPUTS, "output": SAVE_OUTPUT,
          "nothing": 0}


def _unary_op(name: str, forward: Callable, vjp: Callable, saves: int) -> Callable:
    vjps = (vjp,)

    def op(x: Any, **kwargs: Any) -> Tensor:
        is_tensor = isinstance(x, Tensor)
        a = x.data if is_tensor else operand(x, name)
        try:
            out = forward(a, **kwargs) if kwargs else forward(a)
        except (ValueError, TypeError) as error:
            raise _op_error(name, error, (a,)) from None
        if is_tensor and x.requires_grad and tape._recording:
            node = Node(name, vjps, (x._node or x,), (a,), kwargs or None, out, saves)
            return _make(out, True, node)
        return _make(out, False, None)

    return op


def _binary_op(name: str, forward: Callable, vjps: tuple[Callable, Callable],
               saves: int) -> Callable:
    # Written out for two operands: the arithmetic of every RNN step goes through here.
    def op(x: Any, y: Any, **kwargs: Any) -> Tensor:
        if isinstance(x, Tensor):
            a, x_needs = x.data, x.requires_grad
        else:
            a, x_needs = operand(x, name), False
        if isinstance(y, Tensor):
            b, y_needs = y.data, y.requires_grad
        else:
            b, y_needs = operand(y, name), False
        try:
            out = forward(a, b, **kwargs) if kwargs else forward(a, b)
        except (ValueError, TypeError) as error:
            raise _op_error(name, error, (a, b)) from None
        if (x_needs or y_needs) and tape._recording:
            inputs = (x._node or x if x_needs else None, y._node or y if y_needs else None)
            node = Node(name, vjps, inputs, (a, b), kwargs or None, out, saves)
            return _make(out, True, node)
        return _make(out, False, None)

    return op


def _nary_op(name: str, forward: Callable, vjps: Any, saves: int,
             variadic: bool = False) -> Callable:
    """Any number of operands; for a variadic op `vjps(args, kwargs)` makes the VJPs."""

    def op(*xs: Any, **kwargs: Any) -> Tensor:
        args = tuple([x.data if isinstance(x, Tensor) else operand(x, name) for x in xs])
        try:
            out = forward(*args, **kwargs)
        except (ValueError, TypeError) as error:
            raise _op_error(name, error, args) from None
        inputs = tuple([x._node or x if isinstance(x, Tensor) and x.requires_grad else None
                        for x in xs])
        if tape._recording and any(x is not None for x in inputs):
            node_vjps = vjps(args, kwargs) if variadic else vjps
            node = Node(name, node_vjps, inputs, args, kwargs or None, out, saves)
            return _make(out, True, node)
        return _make(out, False, None)

    return op


def operand(x: Any, op_name: str) -> Any:
    """A non-Tensor operand as NumPy will see it: numbers pass as they are (so a Python float
    does not promote a float32 tensor), arrays must be numeric."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{op_name}: cannot use an array of dtype {x.dtype}")
        return x
    if isinstance(x, numbers.Real):
        return x
    raise TypeError(
        f"{op_name}: expected a Tensor, a NumPy array or a real number, got {type(x).__name__}"
    )


def _op_error(name: str, error: Exception, args: Sequence[Any]) -> Exception:
    kind = ValueError if isinstance(error, ValueError) else TypeError
    message = str(error)
    if message.startswith(f"{name}:"):  # NumPy's own prefix (matmul's): keep one, add shapes
        message = message[len(name) + 1:].lstrip()
    shapes = ", ".join(str(np.shape(a)) for a in args)
    return kind(f"{name}: invalid inputs of shapes {shapes}: {message}")
