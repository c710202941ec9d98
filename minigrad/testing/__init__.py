"""Gradient checking for users' own ops, models and hand-written backward passes.

`numerical_grad` takes central differences; `gradcheck` compares the engine's gradient with
them, for a function's arguments and a Module's parameters, and raises `GradcheckError` (an
AssertionError, so test runners report a failure) naming the argument or parameter, the
worst element and both values. `check_backward` compares a hand-written backward pass with
the engine's gradient over Hypothesis-drawn inputs, `check_backward_at` at one input.
Hypothesis strategies for drawing inputs live in `minigrad.testing.strategies` (importing
this module does not need Hypothesis).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .. import Tensor, gradients, no_grad
from ..nn import Module
from .handwritten import BackwardMismatch, check_backward, check_backward_at

__all__ = [
    "BackwardMismatch", "GradcheckError", "check_backward", "check_backward_at", "gradcheck",
    "numerical_grad",
]

# A scalar output's upstream gradient is drawn with a magnitude in this range: at least 1.5
# so that a VJP which ignores it (computes as if it were 1) is off by at least 50%, at most
# 2.5 so that the tolerances keep their meaning.
SCALAR_UPSTREAM = (1.5, 2.5)


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
    with no_grad():
        return tuple(_central_differences(lambda: f(*arrays), arrays[i], eps)
                     for i in positions)


def gradcheck(f: Callable[..., Any], *args: Any, eps: float = 1e-6, atol: float = 1e-6,
              rtol: float = 1e-5, argnums: int | Sequence[int] | None = None,
              seed: int = 0, params: Any = None) -> bool:
    """Check the engine's gradient of `f` at `args` against `numerical_grad`.

    `f` takes the arguments (Tensors that require grad, or arrays) and returns a Tensor of
    any shape, which is checked through its projection <v, f(args)> on an upstream gradient
    v drawn from `seed`, as if `f` sat inside a larger graph: v is standard normal for an
    output of several elements (testing the whole vector-Jacobian product, not just a sum),
    and a number of magnitude in [1.5, 2.5] with a random sign for an output of one element
    (so a VJP that ignores its upstream gradient fails).

    The arguments at `argnums` (all by default) are checked, and the parameters in `params`:
    a Module (every `named_parameters()` entry) or a mapping name -> Parameter. By default,
    when `f` is itself a Module, its own parameters. Parameters are perturbed in place for
    the numerical gradient and restored exactly afterwards (even if `f` raises); their
    `.grad` is not touched. An element passes when
    |engine - numerical| <= atol + rtol * |numerical|. Returns True, or raises
    GradcheckError naming the argument (by position) or parameter (by name).
    """
    arrays = [_float_array(a) for a in args]
    positions = _positions(argnums, len(arrays))
    named = _named_parameters(f, params)
    upstream = _upstream(f, arrays, seed)

    def projected(*xs: Any) -> float:
        # In NumPy, not the engine: an op's mistake must not cancel in the projection too.
        out = f(*xs)
        return float(np.sum(np.asarray(out._data if isinstance(out, Tensor) else out)
                            * upstream))

    saved = [p.data.copy() for _, p in named]
    try:
        engine = _engine_gradients(f, upstream, arrays, positions, [p for _, p in named])
        with no_grad():
            numeric = [_central_differences(lambda: projected(*arrays), arrays[i], eps)
                       for i in positions]
            numeric += [_central_differences(lambda: projected(*arrays), p.data, eps)
                        for _, p in named]
    finally:
        for (_, p), value in zip(named, saved):
            np.copyto(p.data, value)
    labels = [f"argument {i}" for i in positions] + [f"parameter '{name}'" for name, _ in named]
    for label, computed, numerical in zip(labels, engine, numeric):
        _compare(label, computed, numerical, atol, rtol, _describe(upstream, seed))
    return True


def _engine_gradients(f: Callable[..., Any], upstream: np.ndarray, arrays: list[np.ndarray],
                      positions: tuple[int, ...], params: list[Tensor]) -> list[np.ndarray]:
    """The engine's gradient of <upstream, f> with respect to the arguments at `positions`
    and to `params`: backward from f's output seeded with `upstream` itself, through
    `gradients` (so no `.grad` is touched)."""
    tensors = {i: Tensor(arrays[i].copy(), requires_grad=True) for i in positions}
    wrt = [tensors[i] for i in positions] + params
    out = f(*(tensors.get(i, a) for i, a in enumerate(arrays)))
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: f must return a Tensor when given Tensors, got "
                        f"{type(out).__name__}")
    if not out.requires_grad:  # f ignores every input: a zero gradient, as numerically
        return [np.zeros_like(t.data) for t in wrt]
    return gradients(out, wrt, grad=upstream)


def _central_differences(evaluate: Callable[[], Any], x: np.ndarray, eps: float) -> np.ndarray:
    """d evaluate() / dx by central differences, perturbing `x` in place one element at a
    time and putting each element back exactly."""
    g = np.zeros_like(x)
    for j in np.ndindex(x.shape):
        original = x[j]
        x[j] = original + eps
        plus = _scalar(evaluate())
        x[j] = original - eps
        minus = _scalar(evaluate())
        x[j] = original
        g[j] = (plus - minus) / (2 * eps)
    return g


def _compare(label: str, engine: np.ndarray, numerical: np.ndarray, atol: float, rtol: float,
             upstream: str) -> None:
    excess = np.abs(engine - numerical) - (atol + rtol * np.abs(numerical))
    excess = np.where(np.isnan(excess), np.inf, excess)
    if excess.size and excess.max() > 0:
        worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
        e, n = engine[worst], numerical[worst]
        raise GradcheckError(
            f"gradcheck: gradient of {label} (shape {engine.shape}) is wrong at index "
            f"{tuple(int(k) for k in worst)}: engine {float(e)!r}, numerical {float(n)!r} "
            f"(|difference| {abs(e - n):.3g} > atol {atol} + rtol {rtol} * |numerical|; "
            f"{upstream})"
        )


def _upstream(f: Callable, arrays: list[np.ndarray], seed: int) -> np.ndarray:
    """The upstream gradient v of the projection <v, f(args)> (see `gradcheck`)."""
    with no_grad():
        out = f(*arrays)
    shape = np.shape(out.data if isinstance(out, Tensor) else out)
    rng = np.random.default_rng(seed)
    if int(np.prod(shape)) != 1:
        return rng.standard_normal(shape)
    sign = rng.choice([-1.0, 1.0])
    return np.full(shape, sign * rng.uniform(*SCALAR_UPSTREAM))


def _describe(upstream: np.ndarray, seed: int) -> str:
    if upstream.size == 1:
        return f"upstream gradient {float(upstream.reshape(())):.4g}, drawn from seed {seed}"
    return f"upstream gradient standard normal, drawn from seed {seed}"


def _named_parameters(f: Any, params: Any) -> list[tuple[str, Tensor]]:
    """(name, tensor) pairs to check: from `params` (a Module or a mapping), or from `f` when
    it is a Module and `params` is None."""
    if params is None:
        return list(f.named_parameters()) if isinstance(f, Module) else []
    if isinstance(params, Module):
        return list(params.named_parameters())
    if not isinstance(params, Mapping):
        raise TypeError(f"gradcheck: params must be a Module or a mapping name -> Parameter, "
                        f"got {type(params).__name__}")
    named = [(str(name), p) for name, p in params.items()]
    for name, p in named:
        if not isinstance(p, Tensor) or not p.requires_grad:
            raise ValueError(f"gradcheck: params['{name}'] must be a Tensor that requires "
                             f"grad, got {type(p).__name__}"
                             f"{'' if not isinstance(p, Tensor) else ' with requires_grad=False'}")
    return named


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
