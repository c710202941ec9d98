"""Gradients as functions, for tests and for users who think in functions (as in JAX).

minigrad computes first-order gradients only: `grad` returns NumPy arrays, outside any graph,
so a gradient of a gradient (`grad(grad(f))`, or a `grad`, `gradients` or `backward()`
inside the `f` of a grad on that one's tensors) would take the inner gradient for a
constant. That is refused with a TypeError, in the thread (or asyncio task) that runs `f`:
a thread `f` starts does not see the enclosing grad, so a gradient taken there is not
refused (and is a constant to it).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .modes import TRACING, TraceError, current_mode, enable_grad, enclosing_grad_inputs
from .tape import Node
from .tensor import Tensor

_enclosing = enclosing_grad_inputs


def value_and_grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0, *,
                   has_aux: bool = False) -> Callable:
    """`value_and_grad(f)(*args)` is `(f(*args) as a float, gradient)`.

    `f` takes arrays (the arguments at `argnums` arrive as Tensors that require grad) and
    returns a scalar Tensor. `argnums` is an int or a sequence of ints, negative ones
    counting from the end (not a bool: TypeError; out of range or empty: ValueError). The
    gradient comes back as a NumPy array of the argument's shape, or a tuple of them when
    `argnums` is a sequence (one per entry, an argument named twice twice); an argument
    `f` does not use gets zeros. An argument may also be a tree of arrays, as in JAX: dicts,
    lists and tuples (namedtuples too) of arrays, nested, None an empty subtree (a layer
    without bias); `f` gets the same tree of Tensors (made anew) and its gradient is that
    tree of arrays, of the tree as it was before `f` ran (`grad(loss)({"w": w, "b": b}, x)`
    gives `{"w": dw, "b": db}`). So a list or tuple of numbers is a tree of 0-d arrays, as
    in JAX: pass `np.asarray(values)` for one array.
    `f` runs with gradients recorded, also inside `no_grad()` (as `torch.func.grad`).
    As `jax.value_and_grad`, it has no side effect: the `.grad` of the tensors `f` reads (a
    model's parameters) is left alone, as by `gradients`, so a later `backward()` does not
    add to a gradient of this call.
    First order only: the gradient is a NumPy array, a constant to any graph, so no grad of
    grad. Called inside the `f` of another `grad` / `value_and_grad` with (or reading, as a
    closure) a tensor of that one's computation (its arguments or what `f` computed from
    them), it raises TypeError rather than have the enclosing gradient take its result for
    a constant; `t.detach()` is a constant, where one is meant.

    Keyword arguments go to `f` as they are, not differentiated, as in JAX (a flag such as
    `training=False`, a target): `value_and_grad(f)(x, t=targets)`.
    With `has_aux=True`, as in JAX, `f` returns a pair `(loss, aux)`: the loss is
    differentiated and `aux` (an accuracy, the model's outputs) comes back as it is, in
    `((value, aux), gradient)`.
    """
    return _value_and_grad(f, argnums, has_aux, "value_and_grad")


def _value_and_grad(f: Callable[..., Any], argnums: int | Sequence[int], has_aux: bool,
                    name: str) -> Callable:
    """`value_and_grad(f, argnums, has_aux=has_aux)`, its errors naming `name` (the
    function the user called)."""
    if not callable(f):
        raise TypeError(f"{name}: expected a function, got {type(f).__name__}")
    # (argnums' types now, and that it names some argument; the range at each call)
    if not _argnums(argnums, name):
        raise ValueError(f"{name}: argnums {argnums!r} names no argument to differentiate "
                         "with respect to")
    if type(has_aux) is not bool:
        raise TypeError(f"{name}: has_aux must be True or False, got {has_aux!r}")
    single = isinstance(argnums, (int, np.integer))

    def wrapped(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if current_mode() >= TRACING:
            raise TraceError(f"{name} inside a traced function (minigrad.compile, "
                             f"minigrad.scan): the gradient would be a constant of the trace. "
                             f"Take it outside: compile the loss and call its "
                             f"value_and_backward, or backward() on what it returns")
        try:
            positions = argnum_positions(argnums, len(args), name, repeats=True)
        except ValueError as error:
            if not kwargs:
                raise
            raise ValueError(f"{error} (keyword arguments are passed to f as they are, not "
                             f"differentiated: pass what to differentiate positionally)"
                             ) from None
        enclosing = _enclosing.get()
        if enclosing:
            _refuse_enclosing_tensors(args, enclosing, name)
        leaves: list[Tensor] = []
        inputs = list(args)
        for i in dict.fromkeys(positions):
            try:
                inputs[i] = _leaves_of(args[i], leaves, enclosing)
            except _BadLeaf as error:
                raise TypeError(f"{name}: argument {i}{_where(args[i], [], enclosing)} "
                                f"{error}") from None
        structures = [_structure(inputs[i]) for i in positions]
        token = _enclosing.set(enclosing + tuple(leaves))
        try:
            with enable_grad():  # (as torch.func.grad: an outer no_grad would record nothing)
                out = f(*inputs, **kwargs)
        finally:
            _enclosing.reset(token)
        if has_aux:
            if not isinstance(out, tuple) or len(out) != 2:
                raise TypeError(f"{name}: with has_aux=True, f must return a pair (loss, "
                                f"aux), got {_described(out)}")
            out, aux = out
        if not isinstance(out, Tensor) or out.size != 1:
            what = "the loss f returns must be" if has_aux else "f must return"
            raise TypeError(f"{name}: {what} a scalar Tensor, got {_described(out)}")
        if enclosing and out.requires_grad and _depends_on(out, enclosing):
            raise TypeError(f"{name}: f reads a tensor of an enclosing grad's computation "
                            f"(a closure): {_FIRST_ORDER}")
        for original, copy_ in zip(*_handed_tensors(args, positions, leaves), strict=True):
            if out.requires_grad and _depends_on(out, (original,)) and not _depends_on(
                    out, (copy_,)):
                raise TypeError(
                    f"{name}: f reads a tensor that requires grad which it is handed at "
                    f"argnums, and not the copy it is handed (a model's parameter, read "
                    f"through the model): as jax.grad, {name} differentiates the copies, so "
                    f"that gradient would be 0. Have f compute from what it is handed, or "
                    f"take mg.gradients(loss, parameters) of the tensors themselves")
        found = (gradients(out, leaves) if out.requires_grad and leaves
                 else [np.zeros_like(t._data) for t in leaves])
        by_leaf = dict(zip(map(id, leaves), found, strict=True))
        taken: set[int] = set()  # (an argument named twice: its arrays copied the 2nd time)
        grads = tuple(_tree_of(tree, by_leaf, taken) for tree in structures)
        value = out.item()
        return (value, aux) if has_aux else value, grads[0] if single else grads

    return wrapped


def _handed_tensors(args: tuple, positions: tuple[int, ...], leaves: list[Tensor]
                    ) -> tuple[list[Tensor], list[Tensor]]:
    """The tensors that require grad among the arguments at `positions`, and the copies
    of them f was handed (`leaves`, made in the same order)."""
    every: list[Any] = []
    for i in dict.fromkeys(positions):
        every += _leaves_in(args[i])
    pairs = [(t, leaf) for t, leaf in zip(every, leaves, strict=True)
             if isinstance(t, Tensor) and t.requires_grad]
    return [t for t, _ in pairs], [leaf for _, leaf in pairs]


def _leaves_in(tree: Any) -> list[Any]:
    """`tree`'s leaves in `_leaves_of`'s order (None, an empty subtree, has none)."""
    if tree is None:
        return []
    if isinstance(tree, (dict, list, tuple)):
        items = tree.values() if isinstance(tree, dict) else tree
        return [leaf for item in items for leaf in _leaves_in(item)]
    return [tree]


def _leaves_of(tree: Any, leaves: list[Tensor], enclosing: tuple[Tensor, ...]) -> Any:
    """`tree` (an array, or dicts, lists and tuples of them, None an empty one) made anew,
    each array a new Tensor that requires grad, appended to `leaves` in order. A leaf that
    is no array, or a tensor of an enclosing grad's computation, raises `_BadLeaf`."""
    if tree is None:
        return None
    if isinstance(tree, dict):
        return _rebuilt(tree, [(k, _leaves_of(v, leaves, enclosing)) for k, v in tree.items()])
    if isinstance(tree, (list, tuple)):
        return _rebuilt(tree, [_leaves_of(v, leaves, enclosing) for v in tree])
    if enclosing and isinstance(tree, Tensor) and tree.requires_grad and _depends_on(
            tree, enclosing):
        raise _BadLeaf(f"is a tensor of an enclosing grad's computation: {_FIRST_ORDER}")
    try:
        leaf = Tensor(tree, requires_grad=True)
    except (TypeError, ValueError) as error:
        raise _BadLeaf(f"is a {type(tree).__name__}: a gradient is taken of arrays, or dicts, "
                       f"lists and tuples of them ({error})") from None
    leaves.append(leaf)
    return leaf


class _BadLeaf(TypeError):
    """A leaf `_leaves_of` refuses; `_where` finds it again to name its place."""


def _where(tree: Any, leaves: list[Tensor], enclosing: tuple[Tensor, ...]) -> str:
    """The path to the first leaf of `tree` `_leaves_of` refuses (`['layers'][1]`): made
    only for the message, so that a good call builds no strings."""
    if isinstance(tree, (dict, list, tuple)):
        for key, value in tree.items() if isinstance(tree, dict) else enumerate(tree):
            try:
                _leaves_of(value, [], enclosing)
            except _BadLeaf:
                return f"[{key!r}]" + _where(value, leaves, enclosing)
    return ""


def _rebuilt(tree: Any, items: list[Any]) -> Any:
    """A container of `tree`'s class holding `items` (pairs for a dict): a namedtuple by
    its fields, another class from its items; a plain dict, list or tuple where the class
    cannot be made so."""
    kind = type(tree)
    if kind is dict or kind is list or kind is tuple:
        return dict(items) if kind is dict else kind(items)
    try:
        if hasattr(tree, "_make"):
            return tree._make(items)
        if isinstance(tree, dict):
            made = copy.copy(tree)  # (a defaultdict's factory kept)
            made.clear()
            made.update(items)
            return made
        return kind(items)
    except Exception:  # noqa: BLE001 (a class of its own rules: the plain container)
        return dict(items) if isinstance(tree, dict) else (
            list(items) if isinstance(tree, list) else tuple(items))


def _structure(tree: Any) -> Any:
    """`tree`'s containers copied (its leaves as they are): what its gradient is built on,
    whatever f does to the tree it is handed."""
    if isinstance(tree, dict):
        return _rebuilt(tree, [(k, _structure(v)) for k, v in tree.items()])
    if isinstance(tree, (list, tuple)):
        return _rebuilt(tree, [_structure(v) for v in tree])
    return tree


def _tree_of(tree: Any, by_leaf: dict[int, np.ndarray], taken: set[int]) -> Any:
    """The gradient of `tree` (a `_structure` of a tree `_leaves_of` made): each Tensor's
    gradient in its place, a copy where an earlier tree took that array already."""
    if tree is None:
        return None
    if isinstance(tree, Tensor):
        g = by_leaf[id(tree)]
        if id(g) in taken:
            return g.copy()
        taken.add(id(g))
        return g
    if isinstance(tree, dict):
        return _rebuilt(tree, [(k, _tree_of(v, by_leaf, taken)) for k, v in tree.items()])
    return _rebuilt(tree, [_tree_of(v, by_leaf, taken) for v in tree])


def grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0, *,
         has_aux: bool = False) -> Callable:
    """`grad(f)(*args)`: the gradient part of `value_and_grad(f, argnums)(*args)` (no
    `.grad` is touched); with `has_aux=True`, `(gradient, aux)`, as in JAX. First order
    only, as there: no grad of grad (a TypeError, not the inner gradient as a constant)."""
    value_and_grad_f = _value_and_grad(f, argnums, has_aux, "grad")

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        value, gradient = value_and_grad_f(*args, **kwargs)
        return (gradient, value[1]) if has_aux else gradient

    return wrapped


_FIRST_ORDER = ("minigrad computes first-order gradients only (the result would be a constant "
                "there, its own gradient lost); use t.detach() if a constant is meant")


def refuse_enclosing_output(output: Tensor, who: str) -> None:
    """TypeError if `output` (of a `backward()` or `gradients` inside a grad's `f`) depends
    on that grad's inputs: its result would be a constant to the enclosing gradient."""
    enclosing = _enclosing.get()
    if enclosing and output.requires_grad and _depends_on(output, enclosing):
        raise TypeError(f"{who}: inside the f of a grad / value_and_grad, on a tensor of that "
                        f"one's computation: {_FIRST_ORDER}")


def _refuse_enclosing_tensors(args: Sequence[Any], enclosing: tuple[Tensor, ...],
                              name: str) -> None:
    """TypeError for an argument that is a tensor of an enclosing grad's computation."""
    for i, a in enumerate(args):
        if isinstance(a, Tensor) and a.requires_grad and _depends_on(a, enclosing):
            raise TypeError(f"{name}: argument {i} is a tensor of an enclosing grad's "
                            f"computation: {_FIRST_ORDER}")


def _depends_on(t: Tensor, leaves: tuple[Tensor, ...]) -> bool:
    """Whether the graph of `t` reaches one of `leaves` (walked only in a nested grad)."""
    wanted = {id(leaf) for leaf in leaves}
    stack, seen = [t._node or t], set()
    while stack:
        vertex = stack.pop()
        if id(vertex) in wanted:
            return True
        if id(vertex) not in seen:
            seen.add(id(vertex))
            if type(vertex) is Node and vertex.inputs:  # (None once released)
                stack.extend(v for v in vertex.inputs if v is not None)
    return False


def argnum_positions(argnums: Any, n: int, who: str,
                     repeats: bool = False) -> tuple[int, ...]:
    """The argument positions `argnums` names (an int or a sequence of them, negative ones
    counting from the end, as in Python) among `n` arguments; TypeError for anything but
    ints (a bool, a float), ValueError for one out of range or (unless `repeats`, as
    `grad` takes them: one gradient per entry) named twice. `who` (the function's name)
    starts the messages."""
    positions = []
    for i in _argnums(argnums, who):
        if not -n <= i < n:
            raise ValueError(f"{who}: argnums {argnums!r} out of range for {n} arguments")
        positions.append(i % n)
    if not repeats and len(set(positions)) < len(positions):
        raise ValueError(f"{who}: argnums {argnums!r} names an argument twice")
    return tuple(positions)


def _argnums(argnums: Any, who: str) -> tuple[int, ...]:
    """`argnums` as a tuple of ints, or TypeError: an int or a sequence of them (a 1-d
    array, a set, as JAX takes them), never a bool, a float or a string."""
    if isinstance(argnums, np.ndarray) and argnums.ndim == 1 or isinstance(
            argnums, (set, frozenset)):
        argnums = tuple(sorted(argnums) if isinstance(argnums, (set, frozenset)) else argnums)
    every = argnums if isinstance(argnums, Sequence) and not isinstance(
        argnums, (str, bytes)) else (argnums,)
    if not all(isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_))
               for i in every):
        raise TypeError(f"{who}: argnums must be an int or a sequence of ints (argument "
                        f"positions), got {argnums!r}")
    return tuple(int(i) for i in every)


def _described(out: Any) -> str:
    """What f returned instead of a scalar Tensor, for a message: a number (a float, a NumPy
    scalar) is a value computed outside the graph, which holds no gradient."""
    if isinstance(out, (float, int, np.number)) and not isinstance(out, bool):
        numpy = "NumPy " if isinstance(out, np.generic) else ""
        return (f"{numpy}{type(out).__name__} {out}: a number computed outside the graph (.item(), "
                "float(), NumPy on .data) has no gradient; return the Tensor of minigrad's ops")
    if isinstance(out, np.ndarray):  # (grad's own result, say: grad of grad)
        return (f"ndarray of shape {out.shape}: a NumPy array holds no gradient; grad and "
                "value_and_grad return NumPy arrays, as minigrad computes first-order "
                "gradients only (no grad of grad)")
    shape = getattr(out, "shape", None)
    return f"{type(out).__name__}{'' if shape is None else f' of shape {shape}'}"


def gradients(output: Tensor, inputs: Tensor | Sequence[Tensor], grad: Any = None,
              retain_graph: bool = False) -> list[np.ndarray]:
    """The gradient of `output` with respect to each tensor of `inputs`, as NumPy arrays,
    without touching any `.grad` (as `torch.autograd.grad`).

    `inputs` may be leaves or intermediate results (an RNN's states, say), each requiring
    grad; one that `output` does not depend on gets zeros. `grad` is the upstream gradient,
    as for `Tensor.backward`, and may be omitted for an output of one element. The graph is
    released afterwards unless `retain_graph`. Each array is the caller's own, also where a
    tensor is listed twice.
    """
    if not isinstance(output, Tensor):
        raise TypeError(f"gradients: output must be a Tensor, got {type(output).__name__}")
    if isinstance(inputs, Tensor):
        inputs = [inputs]
    elif isinstance(inputs, (str, bytes)) or not isinstance(inputs, Iterable):
        raise TypeError(f"gradients: inputs must be a Tensor or a sequence of Tensors, got "
                        f"{type(inputs).__name__}")
    inputs = list(inputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"gradients: inputs[{i}] is a {type(t).__name__}, not a Tensor")
        if not t.requires_grad:
            raise ValueError(f"gradients: inputs[{i}] (shape {t.shape}) does not require grad")
    refuse_enclosing_output(output, "gradients")
    if not output.requires_grad:
        raise ValueError("gradients: the output does not require grad; none of the tensors it "
                         "was computed from has requires_grad=True (or it was computed under "
                         "no_grad())")
    vertices = [t._node or t for t in inputs]
    found = output._sweep(grad, "gradients", "an output", retain_graph, capture=set(vertices))
    results: list[np.ndarray] = []
    for t, v in zip(inputs, vertices):
        result = np.zeros_like(t._data) if v not in found else \
            found[v].astype(t.dtype, copy=False)
        # (a tensor asked for twice: an array of its own at each position, as two calls give)
        results.append(result.copy() if any(result is r for r in results) else result)
    return results
