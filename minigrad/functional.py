"""Gradients as functions, for tests and for users who think in functions (as in JAX)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .modes import enable_grad
from .tensor import Tensor


def value_and_grad(f: Callable[..., Tensor], argnums: int | Sequence[int] = 0) -> Callable:
    """`value_and_grad(f)(*args)` is `(f(*args) as a float, gradient)`.

    `f` takes arrays (the arguments at `argnums` arrive as Tensors that require grad) and
    returns a scalar Tensor. The gradient comes back as a NumPy array of the argument's shape,
    or a tuple of them when `argnums` is a tuple; an argument `f` does not use gets zeros.
    `f` runs with gradients recorded, also inside `no_grad()` (as `torch.func.grad`).
    As `jax.value_and_grad`, it has no side effect: the `.grad` of the tensors `f` reads (a
    model's parameters) is left alone, as by `gradients`, so a later `backward()` does not
    add to a gradient of this call.
    """
    return _value_and_grad(f, argnums, "value_and_grad")


def _value_and_grad(f: Callable[..., Tensor], argnums: int | Sequence[int],
                    name: str) -> Callable:
    """`value_and_grad(f, argnums)`, its errors naming `name` (the function the user called)."""
    single = isinstance(argnums, (int, np.integer))
    positions = (int(argnums),) if isinstance(argnums, (int, np.integer)) else tuple(argnums)

    def wrapped(*args: Any) -> tuple[float, Any]:
        for i in positions:
            if not -len(args) <= i < len(args):
                raise ValueError(f"{name}: argnums {argnums} out of range for "
                                 f"{len(args)} arguments")
        inputs = [Tensor(a, requires_grad=True) if i in positions or i - len(args) in positions
                  else a for i, a in enumerate(args)]
        with enable_grad():  # (as torch.func.grad: an outer no_grad would record nothing)
            out = f(*inputs)
        if not isinstance(out, Tensor) or out.size != 1:
            raise TypeError(f"{name}: f must return a scalar Tensor, got {_described(out)}")
        wanted = [inputs[i] for i in positions]
        grads = tuple(gradients(out, wanted) if out.requires_grad
                      else [np.zeros_like(t._data) for t in wanted])
        return out.item(), grads[0] if single else grads

    return wrapped


def grad(f: Callable[..., Tensor], argnums: int | Sequence[int] = 0) -> Callable:
    """`grad(f)(*args)`: the gradient part of `value_and_grad(f, argnums)(*args)` (no
    `.grad` is touched)."""
    value_and_grad_f = _value_and_grad(f, argnums, "grad")

    def wrapped(*args: Any) -> Any:
        return value_and_grad_f(*args)[1]

    return wrapped


def _described(out: Any) -> str:
    """What f returned instead of a scalar Tensor, for a message: a number (a float, a NumPy
    scalar) is a value computed outside the graph, which holds no gradient."""
    if isinstance(out, (float, int, np.number)) and not isinstance(out, bool):
        numpy = "NumPy " if isinstance(out, np.generic) else ""
        return (f"{numpy}{type(out).__name__} {out}: a number computed outside the graph (.item(), "
                "float(), NumPy on .data) has no gradient; return the Tensor of minigrad's ops")
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
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"gradients: inputs[{i}] is a {type(t).__name__}, not a Tensor")
        if not t.requires_grad:
            raise ValueError(f"gradients: inputs[{i}] (shape {t.shape}) does not require grad")
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
