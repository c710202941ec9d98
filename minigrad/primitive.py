"""What an op is, and how one call of it is computed and recorded.

An op is one entry of `OPS`, made by `defop`: its NumPy `forward`, one vector-Jacobian
product per operand, what those VJPs read (`saves`), how a call's arguments become operands
and options (`prepare`), and the domain its property tests draw from. A VJP is
`vjp(g, out, *args, **options)`: `g` the gradient of the output, `out` the output if saved
(else None), `args` the operands' arrays if saved (else none are passed; an operand left
out by a `saves` tuple is None). It returns the gradient of its operand, maybe in a
shape the operand's broadcasts to (the output's): the tape sums it back; or with 1 on some
of the operand's axes, or 0-d (a reduction's g): the tape fills those axes with it, the
same value for each element summed; any other shape it refuses. (So a VJP that sums where
it should not, `(g * s).sum(0, keepdims=True)` for a (3, 4) operand, is filled in, not
refused: `gradcheck` finds it.) An operand without a gradient (a class
label, a condition) has None for its VJP, and the op's `prepare` refuses it if it requires
grad; an op whose VJPs are all None (a comparison) records no node: its output never
requires grad. An op defined with `residual=True` has a
forward that returns `(output, residual)`: what its VJPs need that forward computed anyway
(a loss's difference y - t), handed to them in place of `out`, as a `jax.custom_vjp`'s
forward hands its residuals to backward.

`record`, made per op by `recorder`, is the one path every call takes: operands to arrays,
the forward, and, when an operand requires grad and grad mode is on in this thread, a
`Node` on the tape.

Saved arrays never change under the graph. A tensor whose array a node saves (or that
shares its array with an op's output view) is marked shared; its next `.data` access hands
out a fresh copy while a graph still holds the array (copy-on-write; its reference count
tells), so `w.data += 1` or an optimizer step between forward and backward changes the
tensor, not the recorded values, and a step after backward copies nothing.
A NumPy array a VJP reads is copied when recorded (one of an ndarray subclass, a
`np.memmap`, as the plain array `constant` makes of it; a masked array is refused: its
mask would be ignored), and so is a handed-out array that something still holds
(`a = w.data` or a view `v = w.data[:2]` taken before the forward pass) or that is a view
itself (`w.data = buf[:2]`, where `buf` stays writable); writes through those change the
tensor, never the recorded values (`Tensor._share`).
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FunctionType
from typing import Any

import numpy as np

from . import anomaly
from .modes import RECORDING, TRACING, TraceError, current_mode
from .tape import Cotangent, Node, fits, unfit
from .tensor import Tensor, _make, plain_array

_SAVES = ("both", "inputs", "output", "nothing")
# NumPy's module __getattr__ keeps CPython 3.11 from caching a `np.name` lookup (some 300
# instructions each time): the record path and the sweep use module-level names.
_ndarray = np.ndarray
# Node(...) runs Node.__init__ through type.__call__ in C, on a fresh interpreter frame;
# called as a plain function it is inlined (some 300 instructions less, once per node).
_new, _init_node = object.__new__, Node.__init__


# The argument structures an op's tests can draw (`minigrad.testing.strategies` draws each)
FAMILIES = ("unary", "binary", "matmul", "addmm", "tensordot", "einsum", "reduction",
            "reshape", "transpose", "getitem", "stack", "concatenate", "loss", "distinct_pair",
            "comparison", "where", "clip", "softmax", "classification", "squeeze", "flatten")


@dataclass(frozen=True)
class Domain:
    """Where an op's gradient tests draw their inputs (read by `minigrad.testing.strategies`).

    `family` names the argument structure, one of `FAMILIES` ("unary", "binary",
    "tensordot", ...) for an op that joins the table (`defop` refuses another); `values`
    gives the interval of each operand's values (the last one repeats); `avoid` lists points
    where the op is not differentiable; `distinct` asks for values without ties.
    """

    family: str
    values: tuple[tuple[float, float], ...] = ((-3.0, 3.0),)
    avoid: tuple[float, ...] = ()
    distinct: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.family, str):
            raise TypeError(f"Domain: family must be a string, got "
                            f"{type(self.family).__name__}")

    def interval(self, i: int) -> tuple[float, float]:
        return self.values[min(i, len(self.values) - 1)]


@dataclass(eq=False, slots=True)
class Op:
    """One entry of the op table. Calling it calls the op.

    `vjps` is a tuple with one VJP per operand, or a function `(arrays, options, inputs) ->
    VJPs` for one call: for an op of any number of operands (stack, einsum), or one whose
    VJPs share work (stack); `inputs[i]` is None where operand i needs no gradient. Such a
    function may read the arrays' shapes and dtypes, not their values: under `compile` and
    in a `scan` body it runs once, at the trace, and its VJPs serve every later call. A VJP
    of None: that operand has no gradient (all None: the op has none, as detach).
    """

    name: str
    forward: Callable[..., Any]
    vjps: tuple[Callable[..., Any] | None, ...] | Callable[..., Sequence[Callable[..., Any]]]
    domain: Domain
    saves_inputs: bool
    saves_output: bool
    kept: tuple[int, ...] | None = None  # the operands a node keeps, if not all of them
    residual: bool = False  # forward returns (output, residual); VJPs get the residual as out
    # How the op broadcasts over a new leading axis of some operands (scan's batching of a loop
    # invariant's VJP): "elementwise" (NumPy's rules: any operand of the output's rank) or
    # "matmul" (the last operand a matrix, the others stacked on leading axes); else None.
    batch: str | None = None
    # Whether a call's options come from the engine's own `prepare`, which copies what it
    # passes on (else a node keeps copies of them: `kept_options`)
    prepared: bool = False
    # Whether a call may pass keyword options (else TypeError naming the op): not to an op
    # without `prepare` whose forward is a NumPy ufunc (exp, add), where they would be
    # NumPy's out= (writing into the caller's array), where=, dtype=, nor one whose forward
    # takes its operands only (sigmoid, addmm), whose TypeError would name a lambda
    keywords: bool = True
    # Whether a user's op (defined outside minigrad): its VJPs are checked as they run
    user: bool = False
    function: Callable[..., Tensor] = field(init=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.function(*args, **kwargs)

    @property
    def differentiable(self) -> bool:
        """Whether any operand has a gradient: else a call records no node (a comparison)."""
        return type(self.vjps) is not tuple or any(v is not None for v in self.vjps)


OPS: dict[str, Op] = {}
_UNTESTED = Domain("untested")  # the domain of an op outside the table


def kept_copy(a: np.ndarray) -> np.ndarray:
    """The copy a node keeps of a caller's array (the caller may change theirs before the
    backward), laid out as the array is, so that what computes on the copy computes as on
    the array (NumPy's summation order, SIMD and BLAS paths follow the strides): the VJPs
    (the same in a compiled program and a scan as in eager mode), a scan's loop (as the
    Python loop on the arrays) and a program on its snapshot of an array it read
    (`Trace._constant`: as eager mode's op on the array). An op's forward computes on the
    caller's array itself, as under no_grad(). The copy has the array's very strides (a
    reversed axis reversed, a broadcast axis a stride 0, a strided slice's gaps), or, for a
    view of a small part of a larger array (spanning more than 4 times its elements'
    memory), the strides of `_packed`: each axis as contiguous, or not, as the array's."""
    copy = a.copy(order="K")  # (the usual case, a transposed view's too: one plain copy)
    if copy.strides == a.strides or a.flags.c_contiguous or a.flags.f_contiguous \
            or a.dtype.hasobject:  # (no layout of raw bytes for Python objects)
        return copy
    shape, size = a.shape, a.itemsize
    strides = a.strides
    if _span(shape, strides, size) > 4 * size * math.prod(
            n for s, n in zip(strides, shape) if s != 0):
        strides = _packed(a)
    first = sum(s * (n - 1) for s, n in zip(strides, shape) if s < 0)  # (<= 0: bytes)
    copy = np.ndarray(shape, a.dtype, np.empty(_span(shape, strides, size), np.uint8), -first,
                      strides)
    copy[...] = a  # (a broadcast axis's elements written over each other, all one)
    # (read-only as a broadcast view is: one element seen many times)
    copy.flags.writeable = not any(s == 0 and n > 1 for s, n in zip(strides, shape))
    return copy


def _span(shape: tuple[int, ...], strides: tuple[int, ...], size: int) -> int:
    """The bytes from an array's first element to its last, both included."""
    return sum(abs(s) * (n - 1) for s, n in zip(strides, shape)) + size


def _packed(a: np.ndarray) -> tuple[int, ...]:
    """Strides for `a`'s shape that leave no more than an element's gap: from the axis of
    the smallest stride up, each axis contiguous with the one below it (the first, with
    the elements) where `a`'s is, else one element apart, in `a`'s directions; a broadcast
    axis a stride 0. So NumPy takes the same loops on it as on `a` (a contiguous inner axis
    or not, axes it can merge or not)."""
    size, strides, shape = a.itemsize, a.strides, a.shape
    packed = list(strides)  # (an axis of length 1 keeps its stride: it is never stepped)
    old = new = size  # the stride of the next axis up, were it contiguous, in a and here
    for i in sorted((i for i, (s, n) in enumerate(zip(strides, shape)) if s and n > 1),
                    key=lambda i: abs(strides[i])):
        step = new if abs(strides[i]) == old else new + size
        packed[i] = step if strides[i] > 0 else -step
        old, new = abs(strides[i]) * shape[i], step * shape[i]
    return tuple(packed)


def defop(name: str, forward: Callable[..., Any], vjps: Any, domain: Domain | None = None, *,
          saves: str | tuple[int | str, ...] = "both",
          prepare: Callable[..., tuple[tuple, dict]] | None = None,
          residual: bool = False, batch: str | None = None,
          register: bool = True) -> Callable[..., Tensor]:
    """Define an op, put it in `OPS` (unless `register` is False: a throwaway op for a
    test, say), and return the function that calls it.

    `saves` says what the VJPs read: "inputs", "output", "both" or "nothing", or a tuple of
    operand positions (0, 1, ...: those inputs only; the others reach the VJPs as None),
    with "output" among them if the VJPs read the output too; the graph keeps only that. A
    position that names no operand (a bool, a negative one, one past the last) is a
    ValueError naming the op. (A tuple of no
    position, `("output",)` or `()`, is "output" or "nothing": the VJPs get no operand.)
    `batch`: "elementwise" or "matmul" if the op computes on operands stacked on a new
    leading axis as it does per slice (see `Op.batch`), so that `scan` may call the VJP of a
    loop invariant once for all steps: its VJPs then get the steps' operands and
    cotangents stacked that way, and must compute on them as on one step's (a matmul VJP
    writes `swapaxes(a, -1, -2)`, not `a.T`, which reverses every axis). A user's VJP that
    fails on stacked operands is a ValueError naming the op and this contract; one that
    computes on them wrongly (`a.T` where steps and samples are as many) shapes cannot
    tell: `gradcheck` a scan of the op at distinct sizes.
    `residual`: the forward returns `(output, residual)`, and each VJP gets the residual (a
    value of the forward's own, which nothing else holds) where it would get the output;
    `saves` then names the operands they read besides ("nothing" if none). Such a forward
    computes on the node's copies of a caller's arrays (laid out as the arrays:
    `kept_copy`), since its residual may hold views of its operands; another, on the
    caller's arrays themselves.
    `prepare(*args, **kwargs) -> (operands, options)`, if given, is the op's public
    signature: it checks and normalises a call's arguments (an axis, a list of tensors) and
    names the function's parameters and docstring; without it the function takes the
    operands positionally and the options as keywords (none if `forward` is a NumPy ufunc,
    where they would be NumPy's out=, where=, dtype=, or takes its operands only: a
    TypeError naming the op and the keyword). A node keeps
    the options, with copies of the arrays, lists and dicts among them.
    An op defined outside the engine is checked as it runs: called with one operand per VJP,
    each VJP callable as `saves` has the tape call it, each result of its operand's shape,
    one that shape broadcasts to (summed back), or one with 1 on some of its axes or 0-d
    (filled in, as a reduction's g is; so shapes cannot tell a VJP that sums by mistake:
    `gradcheck` can). Any other is a ValueError naming the op and the operand, never
    broadcast into wrong numbers. A single function for `vjps` is a maker of each
    call's VJPs (see `Op`), not one VJP: write `(vjp,)` for one operand.
    Refused before anything joins `OPS`: an empty name or one with spaces (TypeError if
    not a string), a forward or prepare that is not callable, a domain not a `Domain` (for
    an op that joins, of a family outside `FAMILIES`), and a user's VJP that cannot bind
    the tape's call as `saves` has it (a parameter left over may be a call's keyword
    option, where the op takes any). Called with another number of operands than it has
    VJPs, an op raises TypeError ("add takes 2 operands, got 3").
    The forward and the VJPs must not write into the arrays they are handed (the tensors'
    own and the graph's; a VJP taking `into` writes that one only): a write would change
    the caller's tensors or a later backward. `gradcheck` reports an op that does.
    """
    _check_definition(name, forward, domain, prepare)
    if register and name in OPS:
        raise ValueError(f"defop: an op named '{name}' is already defined")
    if register and (domain is None or domain.family == "untested"):
        raise ValueError(f"defop: '{name}' needs a Domain to join the table (its tests "
                         "draw from it), or register=False")
    if register and domain is not None and domain.family not in FAMILIES:  # (no test draws)
        raise ValueError(f"defop: '{name}' has a Domain of unknown family "
                         f"{domain.family!r}; the families are {', '.join(FAMILIES)} (or "
                         f"register=False, outside the table)")
    kept: tuple[int, ...] | None = None
    if isinstance(saves, tuple):  # operand positions, and "output" if the VJPs read it
        kept = tuple(i for i in saves if isinstance(i, int))
        if len(kept) + ("output" in saves) != len(saves):
            raise ValueError(f"defop: saves must be one of {', '.join(_SAVES)} or a tuple of "
                             f"operand positions (and \"output\"), got {saves!r}")
        saves = "both" if "output" in saves else "inputs"
        if not kept:  # no operand at all: "output" or "nothing", as written out
            saves, kept = "output" if saves == "both" else "nothing", None
    if batch not in (None, "elementwise", "matmul"):
        raise ValueError(f"defop: batch must be None, 'elementwise' or 'matmul', got {batch!r}")
    if saves not in _SAVES:
        raise ValueError(f"defop: saves must be one of {', '.join(_SAVES)} or a tuple of "
                         f"operand positions (and \"output\"), got {saves!r}")

    if residual and saves in ("both", "output"):
        raise ValueError(f"defop: '{name}' hands its VJPs a residual in place of the output; "
                         "saves must not name the output too")
    module = sys._getframe(1).f_globals.get("__name__", __name__)
    user = not module.startswith("minigrad.")  # an op of the user's: its VJPs are checked
    vjps = _checked_maker(name, vjps) if callable(vjps) and user else _vjp_tuple(name, vjps)
    if kept:
        _check_saved_positions(name, kept, vjps)
    # The engine's own prepares copy what they pass on (getitem's array index); a user's
    # op's options are copied by `record` (`kept_options`), prepare or not.
    op = Op(name, forward, vjps,
            domain or _UNTESTED,
            saves in ("both", "inputs"), saves in ("both", "output"), kept, residual, batch,
            prepare is not None and module.startswith("minigrad."),
            prepare is not None or _takes_options(forward, vjps), user)
    if user and type(vjps) is tuple:
        _check_vjp_signatures(op, vjps)
    op.function = _function(op, prepare, module, user)
    if register:
        OPS[name] = op
    return op.function


def _check_saved_positions(name: str, kept: tuple[int, ...], vjps: Any) -> None:
    """Refuse an operand position in `saves` that names no operand: a bool, a negative one
    (not counted from the end: write the position), or one past the last operand (one per
    VJP; unknown for a maker of each call's VJPs). It failed only in backward, as a
    TypeError naming neither the op nor the position."""
    n = len(vjps) if type(vjps) is tuple else None
    for i in kept:
        if isinstance(i, bool) or i < 0 or n is not None and i >= n:
            operands = "" if n is None else f" of its {n} operand{'s' if n != 1 else ''}"
            raise ValueError(f"defop: '{name}' saves operand position {i!r}, which names "
                             f"no operand{operands}: saves takes positions 0, 1, ... (as "
                             f"ints, not bools; not counted from the end)")


def _check_definition(name: Any, forward: Any, domain: Any, prepare: Any) -> None:
    """Refuse a definition that could never be called or tested, before it joins `OPS`:
    an empty name or one with spaces, a forward or prepare that is not callable, a domain
    that is not a `Domain`."""
    if not isinstance(name, str):
        raise TypeError(f"defop: the name must be a string, got {type(name).__name__}")
    if not name or name != "".join(name.split()):  # ("mylib.relu6", "mylib::relu6" are fine)
        raise ValueError(f"defop: the name must be a nonempty string without spaces (it "
                         f"names the op in its errors and in mg.OPS), got {name!r}")
    if not callable(forward):
        raise TypeError(f"defop: '{name}' needs a function as its forward, got "
                        f"{type(forward).__name__}")
    if prepare is not None and not callable(prepare):
        raise TypeError(f"defop: '{name}' needs a function or None as its prepare, got "
                        f"{type(prepare).__name__}")
    if domain is not None and not isinstance(domain, Domain):
        raise TypeError(f"defop: '{name}' needs a Domain or None as its domain, got "
                        f"{type(domain).__name__}")


def _check_vjp_signatures(op: Op, vjps: tuple) -> None:
    """Refuse a user's VJP that cannot take the arguments the tape passes it: g, out, and
    each operand if `saves` keeps them, positionally (`into=` for one that writes into it).
    A parameter left over may be filled by a call's keyword options, where the op takes
    any (`Op.keywords`); a VJP without a signature to read (a builtin's) passes."""
    passed = (None,) * (2 + (len(vjps) if op.saves_inputs else 0))
    for i, vjp in enumerate(vjps):
        try:
            signature = inspect.signature(vjp)
        except (TypeError, ValueError):  # (None, or a builtin's: nothing to read)
            continue
        try:
            bound = signature.bind_partial(*passed, **({"into": None} if writes_into(vjp) else {}))
        except TypeError as error:
            problem = str(error)
        else:
            missing = [p for p in signature.parameters.values()
                       if p.name not in bound.arguments and p.default is p.empty
                       and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                       and (p.kind is p.POSITIONAL_ONLY or not op.keywords)]
            if not missing:
                continue
            problem = f"no argument for {', '.join(repr(p.name) for p in missing)}"
        raise TypeError(f"defop: '{op.name}' VJP {i} cannot take the arguments the tape passes "
                        f"it ({problem}): {_passes(op, {})}")


def _takes_options(forward: Callable[..., Any], vjps: Any) -> bool:
    """Whether the `forward` of an op without `prepare` may be passed keyword options: not a
    NumPy ufunc, nor a function with no parameter beyond its operands (one per VJP)."""
    if isinstance(forward, np.ufunc):
        return False
    try:
        parameters = inspect.signature(forward, follow_wrapped=False).parameters.values()
    except (TypeError, ValueError):  # (no signature to read: the forward decides)
        return True
    return callable(vjps) or len(parameters) > len(vjps) or any(
        p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in parameters)


def _vjp_tuple(name: str, vjps: Any) -> Any:
    """`vjps` as an op keeps it: a maker of each call's VJPs as it is, else a tuple of VJPs,
    each a function or None."""
    if callable(vjps):
        return vjps
    if isinstance(vjps, (str, bytes)) or not isinstance(vjps, Sequence) or not all(
            vjp is None or callable(vjp) for vjp in vjps):
        raise TypeError(f"defop: '{name}' needs vjps as a tuple of one VJP per operand (a "
                        f"function, or None for an operand without a gradient), got {vjps!r}")
    return tuple(vjps)


def _checked_maker(name: str, make: Callable[..., Any]) -> Callable[..., Any]:
    """A user's maker of each call's VJPs, checked: called as `make(arrays, options,
    inputs)`, it must return one VJP (or None) per operand. A single VJP passed where a
    tuple of one was meant (`vjps=vjp`, not `vjps=(vjp,)`) is taken for such a maker: one that
    cannot take those three arguments is refused here, and one that fails on them, or returns
    something else, is named so when the op is first recorded."""
    try:
        inspect.signature(make).bind(None, None, None)
    except TypeError:
        raise TypeError(_maker_message(name, "it cannot take those three arguments")) from None
    except ValueError:  # (no signature to read: a builtin's)
        pass

    def checked(arrays: tuple, options: dict, inputs: list) -> Any:
        try:
            vjps = make(arrays, options, inputs)
        except (TypeError, ValueError) as error:
            raise type(error)(_maker_message(
                name, f"calling it raised {type(error).__name__}: {error}")) from error
        if isinstance(vjps, (str, bytes)) or not isinstance(vjps, Sequence) or len(vjps) != len(
                arrays) or not all(vjp is None or callable(vjp) for vjp in vjps):
            raise TypeError(_maker_message(
                name, f"it returned {type(vjps).__name__} {_brief(vjps)}, not "
                      f"{_count(len(arrays), 'VJP')}, one per operand"))
        return vjps

    return checked


def _maker_message(name: str, problem: str) -> str:
    return (f"{name}: vjps is a single function, which defop takes for a maker of each call's "
            f"VJPs, called as make(arrays, options, inputs) -> one VJP per operand; {problem}. "
            "For one VJP per operand pass a tuple, as vjps=(vjp,) for an op of one operand")


def _brief(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _function(op: Op, prepare: Callable[..., tuple[tuple, dict]] | None,
              module: str, user: bool) -> Callable[..., Tensor]:
    """The public function of `op`: its recorder when the operands come positionally, else
    `prepare` then the recorder; for a `user` op, its recorder `_checked`."""
    record = _checked(op, recorder(op)) if user else recorder(op)
    function: Any
    if prepare is None:
        function = record
        function.__signature__ = _operand_signature(
            len(op.vjps) if type(op.vjps) is tuple else 0, op.forward)
    else:
        def function(*args: Any, **kwargs: Any) -> Tensor:
            try:
                operands, options = prepare(*args, **kwargs)
            except TypeError:
                misfit = _misfit(prepare, args, kwargs)
                if misfit is None:  # (raised inside prepare, naming the op)
                    raise
                raise _misbound(op.name, misfit, prepare, kwargs) from None
            return record(*operands, **options)

        function.__signature__ = inspect.signature(prepare).replace(return_annotation="Tensor")
    function.__name__ = function.__qualname__ = op.name
    function.__module__ = module
    described = prepare or op.forward
    function.__doc__ = described.__doc__ if isinstance(described, FunctionType) else (
        f"NumPy's {getattr(op.forward, '__name__', op.name)} on tensors, recorded for backward.")
    return function


# PyTorch's (and NumPy's) names of parameters that minigrad's ops name otherwise
_OTHER_NAMES = {"dim": "axis", "keepdim": "keepdims", "min": "low", "max": "high",
                "a_min": "low", "a_max": "high", "correction": "ddof"}


def _misfit(function: Callable[..., Any], args: tuple, kwargs: dict) -> str | None:
    """Why `args` and `kwargs` do not fit `function`'s signature (inspect's words), or None
    if they do (or it has none to read)."""
    try:
        inspect.signature(function).bind(*args, **kwargs)
    except TypeError as error:
        return str(error)
    except ValueError:
        return None
    return None


def _misbound(name: str, misfit: str, prepare: Callable[..., Any], kwargs: dict) -> TypeError:
    """The error of a call of op `name` whose arguments do not fit its signature (`misfit`
    says why), naming the op as the user called it, not its prepare function; for a keyword
    of PyTorch's or NumPy's where the op's parameter has another name, that name."""
    parameters = inspect.signature(prepare).parameters
    unknown = [k for k in kwargs if k not in parameters]
    hint = other_name(name, unknown[0], parameters) if unknown else ""
    return TypeError(f"{name}() {misfit}{hint}")


def other_name(name: str, keyword: str, parameters: Any) -> str:
    """"; minigrad's {name} names it axis=" where `keyword` is PyTorch's or NumPy's name
    (dim) of one of `parameters` (the names `name` takes), else ""."""
    ours = _OTHER_NAMES.get(keyword)
    return f"; minigrad's {name} names it {ours}=" if ours in parameters else ""


def _checked(op: Op, record: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """The recorder of an op defined outside the engine, checking what the engine's own ops
    are tested for: one VJP per operand, each callable as `saves` has the tape call it, and
    each returning a gradient the tape can sum back to its operand's shape (else it would
    broadcast it into wrong numbers: `tape.fits`). The VJPs are checked by a layer around
    the node, as in anomaly mode: the engine's ops, and the sweep, pay nothing for it. (In
    a compiled program or a scan the tape's own rule refuses such a gradient, unnamed.)"""

    def checked(*operands: Any, **options: Any) -> Tensor:
        out = record(*operands, **options)  # (which counts the operands: one per VJP)
        node = out._node
        if node is not None:  # recorded: its VJPs' results checked as they come
            node.vjps = tuple([
                vjp if vjp is None or x is None else _checked_vjp(op, i, vjp, x.shape)
                for i, (x, vjp) in enumerate(zip(node.inputs, node.vjps))])
        return out

    return checked


def _checked_vjp(op: Op, i: int, vjp: Callable[..., Any],
                 shape: tuple[int, ...]) -> Callable[..., Any]:
    """VJP `i` of a user's `op`, whose operand has `shape`, checked as `_checked` says (its
    `__wrapped__` the user's VJP: `gradcheck` holds it to a user's contract)."""

    def checked_vjp(g: Any, out: Any, *args: Any, **options: Any) -> Any:
        try:
            result = vjp(g, out, *args, **options)
        except TypeError as error:
            if _binds(vjp, (g, out, *args), options):  # (raised inside the VJP)
                raise
            raise TypeError(f"{op.name}: VJP {i} cannot take the arguments the tape passes "
                            f"it ({error}): {_passes(op, options)}") from error
        if type(result) is _ndarray and result.shape == shape or result is None or isinstance(
                result, Cotangent) or fits(np.shape(result), shape):  # (a number, a list...)
            return result
        raise unfit(f"{op.name}: VJP {i} returned a gradient", np.shape(result), shape)

    checked_vjp.__wrapped__ = vjp  # type: ignore[attr-defined]  # (functools.wraps: 1 us)
    return checked_vjp


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _binds(function: Callable[..., Any], args: tuple, options: dict) -> bool:
    """Whether `function`'s signature takes `args` and keyword `options` (True if unknown)."""
    try:
        inspect.signature(function).bind(*args, **options)
    except TypeError:
        return False
    except ValueError:  # (no signature to read: unknown)
        return True
    return True


def _passes(op: Op, options: dict) -> str:
    """How the tape calls `op`'s VJPs, from what its `saves` keeps, for a message."""
    out = ("out the forward's residual" if op.residual else
           "out the output" if op.saves_output else "out None")
    if not op.saves_inputs:
        call, operands = "vjp(g, out)", "no operand: saves=\"both\" or \"inputs\" passes them"
    else:
        call = "vjp(g, out, *operands)"
        operands = "then every operand's array" + (
            "" if op.kept is None else f" (None but for operands {list(op.kept)}, as saves says)")
    keywords = f", and the options {', '.join(options)} as keywords" if options else ""
    return (f"as its saves has it, a VJP is called as {call}: g the output's gradient, {out}, "
            f"{operands}{keywords}")


def _operand_signature(n: int, forward: Any = None) -> inspect.Signature:
    """The forward's own names for an op of n operands, where it is a Python function taking
    them first (its docstring speaks of them: addmm's `c + a @ b`), else `(x)`, `(a, b)`,
    ...; `(*operands)` for any number."""
    kind = inspect.Parameter.POSITIONAL_ONLY
    names = ["x"] if n == 1 else [chr(ord("a") + i) for i in range(n)]
    if isinstance(forward, FunctionType):
        own = [p.name for p in inspect.signature(forward).parameters.values()
               if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:n]
        names = own if len(own) == n else names
    parameters = [inspect.Parameter(name, kind) for name in names] if n else [
        inspect.Parameter("operands", inspect.Parameter.VAR_POSITIONAL)]
    return inspect.Signature(parameters, return_annotation="Tensor")


def recorder(op: Op) -> Callable[..., Tensor]:
    """`record(*operands, **options)` for `op`: the one path every call of an op takes.

    It computes the op on the operands' arrays (a caller's NumPy array as it is, in any mode)
    and, if one of them requires grad while grad mode is on in this thread, records a `Node`
    on the tape, which keeps copies of the caller's arrays (`kept_copy`). (A closure per op,
    so that what never changes is read from its cells rather than looked up on every call.)
    """
    name, forward, prepared, keywords = op.name, op.forward, op.prepared, op.keywords
    differentiable = op.differentiable  # (else no node: a comparison, detach)
    saves_inputs, saves_output, residual = op.saves_inputs, op.saves_output, op.residual
    user_residual = residual and op.user
    # A ufunc always returns a new array (or a scalar): only another forward can return a
    # view of an operand's array.
    may_view = not isinstance(forward, np.ufunc)
    # The operand positions whose arrays a node does not keep (addmm's c), found
    # once (up to the last kept one where the VJPs come per call: their number is unknown).
    dropped: tuple[int, ...] = ()
    if op.kept is not None:
        n = len(op.vjps) if isinstance(op.vjps, tuple) else max(op.kept, default=-1) + 1
        dropped = tuple(i for i in range(n) if i not in op.kept)

    # kept == (): the operands are treated as kept (copied, marked shared) but the node holds
    # none of them: a residual holds what the VJPs read (scan's).
    kept_any = op.kept != ()
    no_vjp = type(op.vjps) is tuple and None in op.vjps  # (checked where a node is made)
    # One operand per VJP (a ufunc would take one more as its `out` and write into it)
    arity = len(op.vjps) if type(op.vjps) is tuple else -1

    def record(*operands: Any, **options: Any) -> Tensor:
        if len(operands) != arity and arity >= 0:
            raise _miscounted(op, len(operands))
        if options and not keywords:  # (before the trace records them too)
            raise unexpected_keyword(name, options, numpy=True)
        mode = current_mode()
        if mode >= TRACING:  # a function is traced in this thread: the trace records the op
            return trace_hook(op, operands, options)
        # (TRACING is off: see the bit order in modes)
        recording = mode >= RECORDING and differentiable
        keeps = saves_inputs and recording  # a node would keep the operands' arrays
        # ... or a user's residual may hold views of them (saves="nothing"): guarded all the
        # same (the engine's own residuals, mse_loss's, are arrays of their own)
        guards = keeps or user_residual and recording
        arrays: Any = []  # each operand's array (a tuple once complete)
        inputs: list[Any] = []  # each operand's vertex, or None where no gradient is needed
        needs_grad = False
        caller = False  # a caller's array among them, which a node would keep a copy of
        for x in operands:
            if isinstance(x, Tensor):
                if x.__class__ is traced_class:  # a trace's value, here outside its trace
                    raise _escaped(name, x)
                if guards and not x._shared:  # the node keeps its array: copy-on-write
                    if x._exposed:  # handed out: a copy if still held (Tensor._share)
                        arrays.append(x._share())
                    else:  # the usual case, an op's output: only the flag, without a call
                        x._shared = True
                        arrays.append(x._data)
                else:
                    arrays.append(x._data)
                if x._requires_grad:
                    inputs.append(x._node or x)
                    needs_grad = True
                    continue
            else:
                a = x if type(x) is float else constant(x, name)
                # The caller's own array, which the engine cannot guard: the forward computes
                # on it, as under no_grad(), and a node keeps a copy (`_guarded`), but for a
                # residual's op (scan's): its residual holds what the VJPs read, and may
                # hold views of its operands, so it computes on the copies, laid out as the
                # arrays (`kept_copy`). (Those are made wherever a node may be, not only where
                # one is: a scan's body is one program for every step, whose first may make
                # none where later ones do.)
                if guards and type(a) is _ndarray:
                    caller = True
                    if residual:
                        a = kept_copy(a)
                arrays.append(a)
            inputs.append(None)
        arrays = tuple(arrays)  # once, for the forward's call and for the node
        try:
            out = forward(*arrays, **options) if options else forward(*arrays)
        except OP_ERRORS as error:
            raise _op_error(name, error, arrays) from None
        if residual:
            out, kept_out = out  # (the residual, what the VJPs get as `out`)
            _own_residual(name, kept_out, out, arrays)
        if type(out) is not _ndarray:
            out = np.asarray(out)  # a reduction to a NumPy scalar
        # (A forward may also return an operand's very array: `np.asarray(x)`.)
        view = may_view and (out.base is not None or _one_of(out, arrays))
        if view:  # the output shares an operand's array: neither may change under the other
            out = _share_view(operands, arrays, out)
        if not (needs_grad and recording):
            return _make(out, False, None, view)
        if no_vjp:  # an operand that needs a gradient which the op cannot give
            refuse_no_vjp(op, operands)
        kept = _guarded(operands, arrays) if caller and not residual else arrays
        vjps: Any = op.vjps
        if type(vjps) is not tuple:  # VJPs made for this call (stack's, scan's)
            vjps = vjps(kept, options, inputs)
            # (an operand given no VJP is one the output does not depend on: no edge)
            inputs = [x if vjp is not None else None for x, vjp in zip(inputs, vjps)]
        args: tuple = kept if keeps and kept_any else ()
        if keeps and dropped:
            saved = list(kept)
            for i in dropped:
                if i < len(saved):  # an op whose VJPs come per call may have fewer
                    saved[i] = None
            args = tuple(saved)
        if options and not prepared:
            options = kept_options(options)
        node = _new(Node)  # Node(...), but the __init__ call is one CPython 3.11 inlines
        _init_node(node, name, vjps, inputs, args, options,
                   kept_out if residual else out if saves_output else None, out)
        if mode != RECORDING:  # so ANOMALY is set: recording is on and tracing off here
            anomaly.watch(node, arrays, out)
        return _make(out, True, node, view or saves_output)

    return record


def _miscounted(op: Op, n: int) -> TypeError:
    """The error of `op` called with `n` operands, not one per VJP; for a user's op, the
    rule its author may have broken (one VJP per operand)."""
    arity = len(op.vjps)  # type: ignore[arg-type]
    rule = (f"; defop was given {_count(arity, 'VJP')}: one per operand (None for an operand "
            "without a gradient)") if op.user else ""
    return TypeError(f"{op.name} takes {_count(arity, 'operand')}, got {n}{rule}")


def unexpected_keyword(name: str, keywords: Any, numpy: bool = False) -> TypeError:
    """The error of op `name` called with `keywords` it does not take, naming the op as the
    user called it; for an op that takes operands only (`numpy`), saying that NumPy's ufunc
    keywords are not the op's (out= wrote into the caller's array, where= left the output's
    other elements uninitialised, and backward failed on them)."""
    keyword = next(iter(keywords))
    message = f"{name}() got an unexpected keyword argument {keyword!r}"
    if numpy:
        message += (f": {name} takes its operands only, not NumPy's ufunc keywords (out=, "
                    "where=, dtype=, ...); convert with mg.astype, select with mg.where")
    return TypeError(message)


def refuse_no_vjp(op: Op, operands: Sequence[Any]) -> None:
    """TypeError if an operand that requires grad has no VJP in `op` (defop was given None
    for it): its gradient would be lost (compiled, silently), or the sweep would fail."""
    for i, (x, vjp) in enumerate(zip(operands, op.vjps)):  # type: ignore[arg-type]
        if vjp is None and isinstance(x, Tensor) and x.requires_grad:
            raise no_vjp_error(op.name, i, np.shape(x._data))


def no_vjp_error(name: str, i: int, shape: Any) -> TypeError:
    return TypeError(
        f"{name}: operand {i} (shape {shape}) requires grad, but the op has no VJP for it "
        "(None): its gradient would be lost. Pass x.detach() (a value cut from the graph), "
        "or give the op a VJP for that operand")


def _no_trace(op: Op, operands: Sequence[Any], options: dict[str, Any]) -> Tensor:
    raise RuntimeError("record: tracing is on but minigrad.trace is not loaded")


# Set by `minigrad.trace`: the innermost trace of this thread records the call.
trace_hook: Callable[[Op, Sequence[Any], dict[str, Any]], Tensor] = _no_trace
# Set by `minigrad.trace`: the class of a traced value, which no op outside its trace takes.
traced_class: type | None = None


def traced_shape(x: Tensor) -> Any:
    """A traced value's shape for a message: a spent one (its trace ended) has none."""
    return "unknown, its trace ended" if x._data is None else x._data.shape


def _escaped(name: str, x: Tensor) -> TraceError:
    return TraceError(
        f"{name}: a traced value (shape {traced_shape(x)}) used outside its trace: in another "
        "thread or context than the traced function's, or after the trace ended (stored somewhere "
        "outside the function); compute with it inside the traced function")


def _own_residual(name: str, residual: Any, out: Any, arrays: Sequence[Any]) -> None:
    """Refuse a residual array that shares memory with the output or an operand: the node
    would keep it unguarded, and a write to either would change the gradient."""
    if isinstance(residual, (tuple, list)):  # (its parts, one by one)
        for part in residual:
            _own_residual(name, part, out, arrays)
    elif isinstance(residual, dict):
        for part in residual.values():
            _own_residual(name, part, out, arrays)
    elif isinstance(residual, np.ndarray) and any(
            isinstance(a, np.ndarray) and np.may_share_memory(residual, a)
            for a in (out, *arrays)):
        raise ValueError(f"{name}: the forward's residual shares memory with its output or an "
                         f"operand; a residual must be an array of the forward's own (a copy)")


def kept_options(options: dict[str, Any]) -> dict[str, Any]:
    """`options` as a node or a program keeps them: the NumPy arrays among them (also inside
    lists, tuples and dicts) copied, and the lists and dicts themselves, as an array operand
    a VJP reads is, since the caller's may change before the backward (or before a cached
    loop's next call). Nothing else is copied: a tensor or a lock in a list is kept as is."""
    for value in options.values():  # (a loop, not any(): every recorded x[:, t] comes here)
        if _mutable(value):
            return {k: _kept(v) for k, v in options.items()}
    return options


_MUTABLE = frozenset({_ndarray, list, dict})


def _mutable(x: Any) -> bool:
    """Whether `x` is, or holds in tuples, an array (of any ndarray class), a list or a dict
    (of any class of these: a namedtuple, an OrderedDict)."""
    kind = type(x)
    if kind is tuple:
        for part in x:  # noqa: SIM110 (a loop, not any(): see kept_options)
            if _mutable(part):
                return True
        return False
    if kind is slice:  # (a user op's x[lo:hi] with 0-d arrays for bounds)
        return _mutable((x.start, x.stop, x.step))
    # (a failed isinstance costs more than these for the usual int, float, str)
    return kind in _MUTABLE or issubclass(kind, _CONTAINERS) and (
        not issubclass(kind, tuple) or _mutable(tuple(x)))


_CONTAINERS = (_ndarray, list, dict, tuple)


def _kept(value: Any) -> Any:
    """`value` with its arrays copied, in copies of the lists, tuples and dicts (of their own
    classes) that hold them."""
    kind = type(value)
    if isinstance(value, _ndarray):
        return value.copy()
    if kind is list or kind is tuple:
        return kind(_kept(x) for x in value)
    if kind is dict:
        return {k: _kept(x) for k, x in value.items()}
    if kind is slice:
        return slice(_kept(value.start), _kept(value.stop), _kept(value.step))
    if not _mutable(value):  # (a tuple's subclass holding no array, list or dict: as it is)
        return value
    try:
        if isinstance(value, tuple):  # a namedtuple's class takes its fields, another items
            parts = [_kept(x) for x in value]
            return value._make(parts) if hasattr(value, "_make") else kind(parts)
        copied = copy.copy(value)  # a list's or dict's subclass (a defaultdict's factory kept)
        for k, x in (enumerate(value) if isinstance(value, list) else value.items()):
            copied[k] = _kept(x)
        return copied
    except Exception:  # noqa: BLE001 (a class of its own rules: it is what it is)
        if isinstance(value, (list, dict)) and not _holds_array(value):
            return value  # (one that refuses item assignment: the caller's cannot change)
        raise TypeError(f"an option of class {kind.__name__} holds arrays (or lists, dicts), "
                        f"which a node keeps copies of, but cannot be copied item by item; "
                        f"pass a tuple, list or dict") from None


def _holds_array(x: Any) -> bool:
    """Whether `x` is an array or holds one in its lists, tuples and dicts (of any class)."""
    if isinstance(x, _ndarray):
        return True
    items = x.values() if isinstance(x, dict) else x if isinstance(x, (list, tuple)) else ()
    return any(_holds_array(item) for item in items)


def _guarded(operands: Sequence[Any], arrays: tuple) -> tuple:
    """`arrays` as a node keeps them: each caller's array (an operand that is no tensor) a
    copy (`kept_copy`), which the caller's changes after the call do not reach."""
    return tuple([a if type(a) is not _ndarray or isinstance(x, Tensor) else kept_copy(a)
                  for x, a in zip(operands, arrays)])


def _one_of(out: np.ndarray, arrays: Sequence[Any]) -> bool:
    for a in arrays:  # noqa: SIM110 (any() with a generator costs twice this, on every op)
        if a is out:
            return True
    return False


def _share_view(operands: Sequence[Any], arrays: Sequence[Any], out: np.ndarray) -> np.ndarray:
    """`out`, a view of an array the forward got (`arrays`): a tensor's own array shared by
    both tensors, or, where an operand is the caller's array (the forward's own, whatever
    the mode: the caller may change it) or a handed-out one held elsewhere, a copy. (A
    tensor whose array `record` copied for the node is not viewed.)"""
    for i, x in enumerate(operands):
        if isinstance(x, Tensor):
            if arrays[i] is not x._data or x._shared or not _views(out, x._data):
                continue  # (a copy through NumPy's own temporary, as `w[:, cols]`, is none)
            # (Held besides: `arrays` in `record` where the view was made, and `out` if it
            # is that array or its base is; no name here may hold it, or `_share` counts
            # one holder too many.)
            held = 2 if out is x._data or out.base is x._data else 1
            if x._share(held=held) is not x._data:
                return out.copy()
        elif isinstance(x, np.ndarray):  # the caller's array, which the engine cannot guard
            return out.copy()
    return out


def _views(out: np.ndarray, array: np.ndarray) -> bool:
    """Whether `out` is `array` or a view of its memory. NumPy's views have the owner of the
    memory as their base; an array NumPy made through a temporary of its own (a fancy
    index) has that temporary; a stride trick's (`as_strided`, `sliding_window_view`) has
    a wrapper that is no array, where only the memory bounds can tell."""
    base = out.base
    if out is array or base is array:
        return True
    if base is None:
        return False
    return base is array.base or type(base) is not _ndarray and np.may_share_memory(out, array)


def writes_into(vjp: Any) -> bool:
    """Whether a VJP takes `into=`, an array of its result's shape and dtype to compute its
    result into (the same operations, so the same numbers) and return: `vjp.into = True`.
    A loop writes such a result straight into its stacked cotangents."""
    return getattr(vjp, "into", False) is True


def identity_vjp(g: Any, *_: Any, **__: Any) -> Any:
    """The VJP of an operand that reaches the output as it is (add's, addmm's c): g itself.
    Code written from a trace knows it by this function, and calls nothing."""
    return g


def constant(x: Any, op_name: str) -> Any:
    """A non-Tensor operand as NumPy will see it: numbers pass as they are (so a Python float
    does not promote a float32 tensor), arrays must be numeric; one of an ndarray subclass
    becomes a plain view of it, a masked array is refused (`plain_array`). A real number of another
    kind (a `fractions.Fraction`) is refused: NumPy would make an array of Python objects
    of it, which no later op computes on."""
    if isinstance(x, _ndarray):
        if type(x) is not _ndarray:
            x = plain_array(x, op_name)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{op_name}: cannot use an array of dtype {x.dtype}")
        return x
    if isinstance(x, _NUMBERS):  # a concrete tuple: quicker than numbers.Real's ABC check
        return x
    if isinstance(x, numbers.Real):
        raise TypeError(f"{op_name}: cannot use a number of type {type(x).__name__} ({x!r}): "
                        "NumPy would hold it as a Python object; pass float(x)")
    raise TypeError(
        f"{op_name}: expected a Tensor, a NumPy array or a real number, got {type(x).__name__}")


# The real numbers NumPy computes on (bool is an int; np.bool_, not a numbers.Real, is what
# NumPy makes of x[0] of a bool array, and computes on as it does on True).
_NUMBERS = (int, float, np.integer, np.floating, np.bool_)


#: The errors of an op's forward that are the operands' fault, re-raised naming the op and the
#: shapes (an OverflowError: a Python int too large for NumPy, `x * 10**400`).
OP_ERRORS = (ValueError, TypeError, IndexError, OverflowError)


def _op_error(name: str, error: Exception, args: Sequence[Any]) -> Exception:
    kind = type(error) if type(error) in OP_ERRORS else ValueError
    message = str(error)
    if message.startswith(f"{name}:"):  # NumPy's own prefix (matmul's): keep one, add shapes
        message = message[len(name) + 1:].lstrip()
    shapes = ", ".join(str(np.shape(a)) for a in args)
    return kind(f"{name}: invalid inputs of shapes {shapes}: {message}")
