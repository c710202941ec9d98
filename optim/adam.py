"""Adam (Kingma & Ba 2015) in PyTorch's formulation, and AdamW (Loshchilov & Hutter 2019)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .optimizer import (
    FRACTION,
    LEARNING_RATE,
    NONNEGATIVE,
    POSITIVE,
    Optimizer,
    Pair,
    ParamGroup,
    State,
    guard_in,
    refuse_overflow,
)

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam, as ``torch.optim.Adam`` (no weight decay, no amsgrad).

    Per parameter, at its t-th update (t = 1, 2, ...; m and v start at 0)::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + ((1 - beta2) * g) * g
        p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    i.e. the bias-corrected ``p -= lr * m_hat / (sqrt(v_hat) + eps)`` with m_hat = m /
    (1 - beta1^t), v_hat = v / (1 - beta2^t), and **eps outside the square root**, added to
    sqrt(v_hat). (PyTorch writes the m update as ``m.lerp_(g, 1 - beta1)``, which equals the
    line above in exact arithmetic; values agree to rounding.)

    Args:
        params: parameters, or group dicts (see :class:`~optim.optimizer.Optimizer`).
        lr: learning rate, >= 0.
        betas: (beta1, beta2), each in [0, 1).
        eps: > 0, added to the denominator (with 0, an element whose gradients have all
            been 0 would get 0/0 = NaN).
        check_finite: raise :class:`~optim.optimizer.NonFiniteGradientError` before any
            update if a gradient holds NaN/inf (default). When False, a NaN gradient element
            makes m, v and the parameter element NaN for good; an infinite one makes v
            infinite and m/(sqrt(v)...) NaN, so the parameter element becomes NaN too.
            Finite gradients whose v overflows a float16 or float32 parameter's dtype
            (past 256 in float16) raise OverflowError, changing nothing: v would be inf
            for good and the element stopped.

    State per parameter: ``step`` (the t above), ``exp_avg`` (m), ``exp_avg_sq`` (v).
    """

    name = "adam"
    keeps_inputs = False
    bounds = {"lr": LEARNING_RATE, "betas": Pair(FRACTION), "eps": POSITIVE}

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, *,
                 check_finite: bool = True) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps},
                         check_finite=check_finite)

    def init(self, h: ParamGroup, p: np.ndarray) -> State:
        return {"exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p)}

    def update(self, h: ParamGroup, t: int, p: np.ndarray, g: np.ndarray,
               state: State) -> tuple[np.ndarray, State]:
        b1, b2 = h.betas
        m = b1 * state["exp_avg"] + (1 - b1) * g
        # (1 - b2) g g, not (1 - b2) g^2: g^2 alone overflows for a large finite g (past
        # 256 in float16) where v does not, and v would stay inf, the element frozen.
        v = b2 * state["exp_avg_sq"] + (1 - b2) * g * g
        refuse_overflow(type(self).__name__, "exp_avg_sq", v, state["exp_avg_sq"], g)
        guard_in(type(self).__name__, h.eps, p.dtype)
        denominator = np.sqrt(v) / math.sqrt(1 - b2**t) + h.eps
        return h.lr / (1 - b1**t) * (m / denominator), {"exp_avg": m, "exp_avg_sq": v}

    def state_problem(self, h: ParamGroup, state: State) -> str | None:
        if (state["exp_avg_sq"] < 0).any():
            return "exp_avg_sq has negative values; it is a mean of squares"
        return None


class AdamW(Adam):
    r"""Adam with decoupled weight decay, as ``torch.optim.AdamW``.

    The decay shrinks the parameter directly instead of entering the gradient (and so the
    moments)::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + ((1 - beta2) * g) * g
        p = p - lr * weight_decay * p
              - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    (PyTorch multiplies p by 1 - lr * weight_decay first, which equals the line above in
    exact arithmetic.) ``weight_decay`` >= 0, default 0.01; the rest as :class:`Adam`.
    With ``weight_decay=0`` it is Adam.
    """

    name = "adamw"
    bounds = {**Adam.bounds, "weight_decay": NONNEGATIVE}
    keeps_inputs = False  # (its step is new: Adam's, plus a product of p)

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, *, check_finite: bool = True) -> None:
        Optimizer.__init__(self, params, {"lr": lr, "betas": betas, "eps": eps,
                                          "weight_decay": weight_decay},
                           check_finite=check_finite)

    def update(self, h: ParamGroup, t: int, p: np.ndarray, g: np.ndarray,
               state: State) -> tuple[np.ndarray, State]:
        step, state = super().update(h, t, p, g, state)
        return h.lr * h.weight_decay * p + step, state
