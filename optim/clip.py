"""Gradient clipping by the total norm, as ``torch.nn.utils.clip_grad_norm_`` except for norms
less than 1e-6 below ``max_norm``, which PyTorch shrinks slightly and this leaves as they are."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

from minigrad.nn import Module
from minigrad.tensor import Tensor, plain_array

from .optimizer import POSITIVE

__all__ = ["clip_grad_norm"]


def clip_grad_norm(params: Iterable[Any], max_norm: float) -> float:
    """Scale the gradients so that their total norm is at most ``max_norm``; return the
    total norm before clipping.

    ``params`` is an iterable of parameters (``model.parameters()``), or one parameter (a
    Tensor), as in PyTorch. A parameter is what the optimizers take: a Tensor, or any object
    with a NumPy array ``.data`` and a ``.grad``. Anything else is a TypeError naming its
    position and type (a (name, parameter) pair of ``named_parameters()``, a state dict's
    array, a Module: pass ``model.parameters()``), before any gradient changes; so is a
    ``.grad`` that is not a real floating-point array (a complex, an integer one). A
    parameter listed twice is a ValueError (PyTorch would count its gradient twice).
    With the gradients g_i of ``params`` (those whose ``.grad`` is None are left out)::

        total = sqrt(sum_i sum(g_i^2))
        if total > max_norm:  g_i = g_i * max_norm / (total + 1e-6)   for every i

    PyTorch's ``clip_grad_norm_`` scales by min(1, max_norm / (total + 1e-6)) instead, so it
    also shrinks (by a factor of at least 1 - 1e-6 / max_norm) gradients whose norm is in
    (max_norm - 1e-6, max_norm], which are left untouched here.

    The squares are summed in float64. Finite gradients too large for that sum (elements
    beyond about 1e154 in float64) are still measured and clipped: the norm is then taken
    as m * sqrt(sum_i sum((g_i / m)^2)) with m the largest |g| (and returned as inf only if
    it exceeds the float64 range; the gradients are clipped all the same), as it is for
    norms below about 1e-145, whose squares would be subnormal floats of few bits.

    Each clipped ``.grad`` is replaced by a new array (the old one is not written to). A
    gradient holding NaN or inf makes the total NaN or inf and leaves the gradients as
    they are, for the optimizer's finiteness check to report. ``max_norm`` must be a real
    number (TypeError otherwise) > 0 (ValueError otherwise), inf to measure the norm
    without clipping; a masked gradient is refused
    (TypeError: its mask would be ignored, the values under it measured and clipped).
    """
    if isinstance(max_norm, (bool, np.bool_)) or not isinstance(max_norm, numbers.Real):
        raise TypeError(f"clip_grad_norm: max_norm must be a real number, got "
                        f"{type(max_norm).__name__} {max_norm!r}")
    try:
        max_norm = float(max_norm)
    except OverflowError:  # (an integer beyond float64: beyond any norm, as inf)
        max_norm = math.inf if max_norm > 0 else -math.inf
    # (inf: measure only, as PyTorch's clip_grad_norm_(params, inf) is used to)
    limit = math.inf if max_norm == math.inf else POSITIVE("clip_grad_norm", "max_norm",
                                                            max_norm)
    params = [(k, p) for k, p in enumerate(_parameters(params)) if p.grad is not None]
    grads = [_gradient(k, p) for k, p in params]
    with np.errstate(over="ignore", under="ignore"):  # (handled below)
        total = math.sqrt(_sum_of_squares(grads))
    if total <= _SMALL:  # (0 too: no gradient at all, or zeros)
        largest, root = _by_largest(grads)
        total = largest * root
    if math.isfinite(total):
        scale = limit / (total + 1e-6)
    elif total == math.inf and all(np.isfinite(g).all() for g in grads):
        largest, root = _by_largest(grads)
        total = largest * root  # inf if beyond float64's range
        scale = limit / largest / root  # the 1e-6 is far below float64's precision here
    else:
        return total
    if total > limit:  # (every clipped gradient computed before any is set)
        # The product in float64 (or wider), then rounded once: scale as a float16 or float32
        # would be rounded first (to 0 below their range), clipping such gradients to 0 or
        # past max_norm.
        clipped = [np.multiply(g, scale, dtype=np.result_type(g.dtype, np.float64))
                   .astype(g.dtype, copy=False) for g in grads]
        for (_, p), g in zip(params, clipped, strict=True):
            p.grad = g
    return total


def _parameters(params: Any) -> list[Any]:
    """`params` as a list of parameters (one parameter as a list of it), each checked."""
    if isinstance(params, Module):
        raise TypeError(f"clip_grad_norm: expected parameters, got the Module "
                        f"{type(params).__name__}; pass model.parameters()")
    if _is_parameter(params):
        return [params]  # (a single tensor, as torch.nn.utils.clip_grad_norm_ takes)
    try:
        items = list(params)
    except TypeError:
        raise TypeError(f"clip_grad_norm: params must be an iterable of parameters (e.g. "
                        f"model.parameters()) or one, got {type(params).__name__}") from None
    first: dict[int, int] = {}
    for k, p in enumerate(items):
        if not _is_parameter(p):
            hint = ("; named_parameters() gives (name, parameter) pairs: pass "
                    "model.parameters()" if isinstance(p, tuple) else
                    "; pass model.parameters()" if isinstance(p, (Module, np.ndarray)) else "")
            raise TypeError(f"clip_grad_norm: item {k} of params ({type(p).__name__}) is not "
                            f"a parameter (a Tensor, or an object with a NumPy array .data and "
                            f"a .grad){hint}")
        if id(p) in first:
            raise ValueError(f"clip_grad_norm: item {k} of params is item {first[id(p)]} again; "
                             f"its gradient would count twice in the norm")
        first[id(p)] = k
    return items


def _is_parameter(p: Any) -> bool:
    """Whether `p` is a parameter as the optimizers take one: an array .data and a .grad.
    (A Tensor's .data is not read: that would hand its array out, Tensor._share.)"""
    return isinstance(p, Tensor) or isinstance(getattr(p, "data", None), np.ndarray) \
        and hasattr(p, "grad")


def _gradient(k: int, p: Any) -> np.ndarray:
    """Parameter `k`'s .grad as an array, refused unless a real floating-point one."""
    g = plain_array(p.grad, f"clip_grad_norm: gradient of parameter {k}")
    if g.dtype.kind != "f":
        raise TypeError(f"clip_grad_norm: the gradient of parameter {k} ({type(p.grad).__name__}"
                        f" of dtype {g.dtype}) is not a real floating-point array")
    return g


# Below this norm the squares are subnormal floats of few bits (1e-158 squared is 1e-316):
# the norm is then taken by the largest |g| as past float64's range.
_SMALL = 1e-145


def _by_largest(grads: list[np.ndarray]) -> tuple[float, float]:
    """m, the largest |g|, and sqrt(sum((g / m)^2)): the norm is their product, taken so
    where the squares themselves would overflow or be subnormal. (0, 0) for zeros."""
    largest = max((float(np.max(np.abs(g))) for g in grads if g.size), default=0.0)
    if largest == 0.0:
        return 0.0, 0.0
    return largest, math.sqrt(_sum_of_squares([g / largest for g in grads]))


def _sum_of_squares(grads: list[np.ndarray]) -> float:
    return sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads)
