"""Adam (Kingma & Ba 2015) in PyTorch's formulation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .optimizer import Optimizer, State, UpdateRule, check_real

__all__ = ["Adam", "AdamRule"]


@dataclass(frozen=True)
class AdamRule(UpdateRule):
    """Adam's hyperparameters and update (see :class:`Adam` for the equations)."""

    optimizer = "Adam"

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        self.real("lr", low=0.0)
        betas = self.betas
        if isinstance(betas, (str, bytes)) or not isinstance(betas, Sequence) or len(betas) != 2:
            raise ValueError(f"Adam: invalid betas={betas!r}: must be a pair (beta1, beta2)")
        pair = tuple(check_real("Adam", f"betas[{k}]", b, low=0.0, high=1.0, high_open=True)
                     for k, b in enumerate(betas))
        object.__setattr__(self, "betas", pair)  # the dataclass is frozen
        # eps = 0 would make an element whose gradients have all been 0 into 0/0 = NaN.
        self.real("eps", low=0.0, low_open=True)

    def init(self, p: np.ndarray) -> State:
        return {"exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p)}

    def update(
        self, t: int, p: np.ndarray, g: np.ndarray, state: State
    ) -> tuple[np.ndarray, State]:
        b1, b2 = self.betas
        m = b1 * state["exp_avg"] + (1 - b1) * g
        v = b2 * state["exp_avg_sq"] + (1 - b2) * g**2
        denominator = np.sqrt(v) / math.sqrt(1 - b2**t) + self.eps
        return self.lr / (1 - b1**t) * (m / denominator), {"exp_avg": m, "exp_avg_sq": v}

    def state_problem(self, state: State) -> str | None:
        if (state["exp_avg_sq"] < 0).any():
            return "exp_avg_sq has negative values; it is a mean of squares"
        return None


class Adam(Optimizer):
    r"""Adam, as ``torch.optim.Adam`` (no weight decay, no amsgrad).

    Per parameter, at its t-th update (t = 1, 2, ...; m and v start at 0)::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    i.e. the bias-corrected ``p -= lr * m_hat / (sqrt(v_hat) + eps)`` with m_hat = m /
    (1 - beta1^t), v_hat = v / (1 - beta2^t), and **eps outside the square root**, added to
    sqrt(v_hat). (PyTorch writes the m update as ``m.lerp_(g, 1 - beta1)``, which equals the
    line above in exact arithmetic; values agree to rounding.)

    Args:
        params: iterable of parameters (see :mod:`minigrad.optim.optimizer`).
        lr: learning rate, >= 0.
        betas: (beta1, beta2), each in [0, 1).
        eps: > 0, added to the denominator (with 0, an element whose gradients have all
            been 0 would get 0/0 = NaN).
        check_finite: raise :class:`~optim.optimizer.NonFiniteGradientError` before any
            update if a gradient holds NaN/inf (default). When False, a NaN gradient element
            makes m, v and the parameter element NaN for good; an infinite one makes v
            infinite and m/(sqrt(v)...) NaN, so the parameter element becomes NaN too.

    State per parameter: ``step`` (int, the t above), ``exp_avg`` (m), ``exp_avg_sq`` (v).
    """

    name = "adam"
    Rule = AdamRule
