"""Gradient checking for users' own ops and models.

`numerical_grad` takes central differences; `gradcheck` compares the engine's gradient with
them and raises `GradcheckError` (an AssertionError, so test runners report a failure)
naming the argument, the worst element and both values. Hypothesis strategies for drawing
inputs live in `minigrad.testing.strategies` (importing this module does not need Hypothesis).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..functional import value_and_grad
from ..modes import no_grad
from ..tensor import Tensor

__all__ = ["GradcheckError", "gradcheck", "numerical_grad"]


class GradcheckError(AssertionError):
    """The engine's gradient and the numerical one disagree beyond the tolerances."""


def numerical_grad(f: Callable[..., Any], *args: Any, eps: float = 1e-6,
                   argnums: int | Sequence[int] | None = None) -> tuple[np.ndarray, ...]:
    """Central differences (f(x + eps) - f(x - eps)) / (2 eps), element by element.

    `f` takes the arguments as NumPy arrays and returns a scalar (a Tensor or a number).
    Returns one gradient per argument in `argnums` (all by default), as a tuple. Use float64
    arguments: in float32 the differences lose most of their digits.
    """
    arrays = [_float_array(a) for a in args]
    positions = _positions(argnums, len(arrays))
    grads = []
    with no_grad():
        for i in positions:
            x = arrays[i]
            g = np.zeros_like(x)
            for j in np.ndindex(x.shape):
                original = x[j]
                x[j] = original + eps
                plus = _scalar(f(*arrays))
                x[j] = original - eps
                minus = _scalar(f(*arrays))
                x[j] = original
                g[j] = (plus - minus) / (2 * eps)
            grads.append(g)
    return tuple(grads)


def gradcheck(f: Callable[..., Any], *args: Any, eps: float = 1e-6, atol: float = 1e-6,
              rtol: float = 1e-5, argnums: int | Sequence[int] | None = None,
              seed: int = 0) -> bool:
    """Check the engine's gradient of `f` at `args` against `numerical_grad`.

    `f` takes the arguments (Tensors that require grad, or arrays) and returns a Tensor of
    any shape; a non-scalar output is checked through a random projection <v, f(args)> with
    v drawn from `seed`, which tests the whole vector-Jacobian product, not just a sum.
    An element passes when |engine - numerical| <= atol + rtol * |numerical|. Returns True,
    or raises GradcheckError.
    """
    arrays = [_float_array(a) for a in args]
    positions = _positions(argnums, len(arrays))
    projection = _projection(f, arrays, seed)

    def projected(*xs: Any) -> Any:
        out = f(*xs)
        return out if projection is None else (out * projection).sum()

    _, analytic = value_and_grad(projected, positions)(*[a.copy() for a in arrays])
    numeric = numerical_grad(projected, *arrays, eps=eps, argnums=positions)
    for i, engine, numerical in zip(positions, analytic, numeric):
        _compare(i, engine, numerical, atol, rtol)
    return True


def _compare(i: int, engine: np.ndarray, numerical: np.ndarray, atol: float, rtol: float) -> None:
    excess = np.abs(engine - numerical) - (atol + rtol * np.abs(numerical))
    excess = np.where(np.isnan(excess), np.inf, excess)
    if excess.size and excess.max() > 0:
        worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
        e, n = engine[worst], numerical[worst]
        raise GradcheckError(
            f"gradcheck: gradient of argument {i} (shape {engine.shape}) is wrong at index "
            f"{tuple(int(k) for k in worst)}: engine {float(e)!r}, numerical {float(n)!r} "
            f"(|difference| {abs(e - n):.3g} > atol {atol} + rtol {rtol} * |numerical|)"
        )


def _projection(f: Callable, arrays: list[np.ndarray], seed: int) -> np.ndarray | None:
    with no_grad():
        out = f(*arrays)
    shape = np.shape(out.data if isinstance(out, Tensor) else out)
    if shape == () or int(np.prod(shape)) == 1 and len(shape) == 0:
        return None
    return np.random.default_rng(seed).standard_normal(shape)


def _positions(argnums: int | Sequence[int] | None, n: int) -> tuple[int, ...]:
    if argnums is None:
        return tuple(range(n))
    positions = (argnums,) if isinstance(argnums, (int, np.integer)) else tuple(argnums)
    for i in positions:
        if not 0 <= i < n:
            raise ValueError(f"argnums {argnums} out of range for {n} arguments")
    return positions


def _float_array(a: Any) -> np.ndarray:
    """A private copy, with the Tensor constructor's dtype rule (floats kept, else float64)."""
    return Tensor(a).data


def _scalar(value: Any) -> float:
    data = value.data if isinstance(value, Tensor) else np.asarray(value)
    if data.size != 1:
        raise ValueError(f"numerical_grad: f must return a scalar, got shape {data.shape}")
    return float(data.reshape(()))
