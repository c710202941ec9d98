"""Adam (Kingma & Ba 2015) in PyTorch's formulation."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .optimizer import Optimizer, ParameterLike, check_real

__all__ = ["Adam", "adam_rule"]


def adam_rule(
    p: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    work: np.ndarray,
    *,
    t: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """The t-th (t >= 1) Adam update of ``p`` in place; ``m``, ``v`` updated in place.

    ``g`` is only read; ``work`` is a work array shaped like ``p``.
    """
    np.multiply(m, beta1, out=m)
    np.multiply(g, 1.0 - beta1, out=work)
    np.add(m, work, out=m)  # m = beta1 * m + (1 - beta1) * g
    np.multiply(v, beta2, out=v)
    np.multiply(g, g, out=work)
    np.multiply(work, 1.0 - beta2, out=work)
    np.add(v, work, out=v)  # v = beta2 * v + (1 - beta2) * g^2
    step_size = lr / (1.0 - beta1**t)
    np.sqrt(v, out=work)
    np.divide(work, math.sqrt(1.0 - beta2**t), out=work)
    np.add(work, eps, out=work)  # sqrt(v) / sqrt(1 - beta2^t) + eps
    np.divide(m, work, out=work)
    np.multiply(work, step_size, out=work)
    np.subtract(p, work, out=p)


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
        params: iterable of parameters (see :mod:`optim.optimizer`).
        lr: learning rate, >= 0.
        betas: (beta1, beta2), each in [0, 1).
        eps: >= 0, added to the denominator. With ``eps=0`` an element whose gradients have
            all been 0 gets 0/0 = NaN.
        check_finite: raise :class:`~optim.optimizer.NonFiniteGradientError` before any
            update if a gradient holds NaN/inf (default). When False, a NaN gradient element
            makes m, v and the parameter element NaN for good; an infinite one makes v
            infinite and m/(sqrt(v)...) NaN, so the parameter element becomes NaN too.

    State per parameter: ``step`` (int, the t above), ``exp_avg`` (m), ``exp_avg_sq`` (v).
    """

    name = "adam"

    def __init__(
        self,
        params: Iterable[ParameterLike],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        *,
        check_finite: bool = True,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps},
                         check_finite=check_finite)

    @classmethod
    def _validate_hyperparameters(cls, hyper: dict[str, Any]) -> dict[str, Any]:
        o = cls.__name__
        betas = hyper["betas"]
        if isinstance(betas, (str, bytes)) or not isinstance(betas, Sequence) or len(betas) != 2:
            raise ValueError(f"{o}: invalid betas={betas!r}: must be a pair (beta1, beta2)")
        b1 = check_real(o, "betas[0]", betas[0], low=0.0, high=1.0, high_open=True)
        b2 = check_real(o, "betas[1]", betas[1], low=0.0, high=1.0, high_open=True)
        return {
            "lr": check_real(o, "lr", hyper["lr"], low=0.0),
            "betas": (b1, b2),
            "eps": check_real(o, "eps", hyper["eps"], low=0.0),
        }

    @classmethod
    def _state_arrays(cls, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def _initial_state(self, data: np.ndarray) -> dict[str, Any]:
        return {"step": 0, "exp_avg": np.zeros_like(data), "exp_avg_sq": np.zeros_like(data)}

    def _configure(self) -> None:
        h = self._hyper
        self._lr: float = h["lr"]
        self._beta1, self._beta2 = h["betas"]
        self._eps: float = h["eps"]

    def _update(self, items: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        for i, p, g in items:
            state = self._state[i]
            t = state["step"] + 1
            adam_rule(p, g, state["exp_avg"], state["exp_avg_sq"], self._scratch(i, "w", p),
                      t=t, lr=self._lr, beta1=self._beta1, beta2=self._beta2, eps=self._eps)
            state["step"] = t
