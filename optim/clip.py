"""Gradient clipping by the total norm, as ``torch.nn.utils.clip_grad_norm_``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .optimizer import POSITIVE

__all__ = ["clip_grad_norm"]


def clip_grad_norm(params: Iterable[Any], max_norm: float) -> float:
    """Scale the gradients so that their total norm is at most ``max_norm``; return the
    total norm before clipping.

    With the gradients g_i of ``params`` (those whose ``.grad`` is None are left out)::

        total = sqrt(sum_i sum(g_i^2))
        if total > max_norm:  g_i = g_i * max_norm / (total + 1e-6)   for every i

    Each clipped ``.grad`` is replaced by a new array (the old one is not written to). A
    total that is NaN or infinite leaves the gradients as they are, for the optimizer's
    finiteness check to report. ``max_norm`` must be > 0 (ValueError otherwise).
    """
    limit = POSITIVE("clip_grad_norm", "max_norm", max_norm)
    params = [p for p in params if getattr(p, "grad", None) is not None]
    total = math.sqrt(sum(float(np.sum(np.square(p.grad, dtype=np.float64))) for p in params))
    if math.isfinite(total) and total > limit:
        scale = limit / (total + 1e-6)
        for p in params:
            p.grad = (p.grad * scale).astype(p.grad.dtype, copy=False)
    return total
