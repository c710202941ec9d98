"""Gradients as functions, for tests and for users who think in functions (as in JAX)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .tensor import Tensor


def value_and_grad(f: Callable[..., Tensor], argnums: int | Sequence[int] = 0) -> Callable:
    """`value_and_grad(f)(*args)` is `(f(*args) as a float, gradient)`.

    `f` takes arrays (the arguments at `argnums` arrive as Tensors that require grad) and
    returns a scalar Tensor. The gradient comes back as a NumPy array of the argument's shape,
    or a tuple of them when `argnums` is a tuple; an argument `f` does not use gets zeros.
    """
    single = isinstance(argnums, (int, np.integer))
    positions = (int(argnums),) if single else tuple(argnums)

    def wrapped(*args: Any) -> tuple[float, Any]:
        for i in positions:
            if not -len(args) <= i < len(args):
                raise ValueError(f"value_and_grad: argnums {argnums} out of range for {len(args)} arguments")
        inputs = [Tensor(a, requires_grad=True) if i in positions or i - len(args) in positions
                  else a for i, a in enumerate(args)]
        out = f(*inputs)
        if not isinstance(out, Tensor) or out.size != 1:
            shape = getattr(out, "shape", None)
            raise TypeError(f"value_and_grad: f must return a scalar Tensor, got "
                            f"{type(out).__name__}{'' if shape is None else f' of shape {shape}'}")
        if out.requires_grad:
            out.backward()
        grads = tuple(_grad_or_zeros(inputs[i]) for i in positions)
        return out.item(), grads[0] if single else grads

    return wrapped


def grad(f: Callable[..., Tensor], argnums: int | Sequence[int] = 0) -> Callable:
    """`grad(f)(*args)`: the gradient part of `value_and_grad(f, argnums)(*args)`."""
    value_and_grad_f = value_and_grad(f, argnums)

    def wrapped(*args: Any) -> Any:
        return value_and_grad_f(*args)[1]

    return wrapped


def _grad_or_zeros(t: Tensor) -> np.ndarray:
    return t.grad if t.grad is not None else np.zeros_like(t.data)
