"""Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .optimizer import Optimizer, ParameterLike, check_bool, check_real

__all__ = ["SGD", "sgd_rule"]


def sgd_rule(
    p: np.ndarray,
    g: np.ndarray,
    buf: np.ndarray | None,
    d: np.ndarray,
    e: np.ndarray | None,
    *,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    first: bool,
) -> None:
    """One SGD update of ``p`` in place (PyTorch's formulation, dampening 0).

    ``g`` is only read. ``buf`` is the momentum buffer (None when ``momentum == 0``), updated
    in place; ``first`` says it has not been set yet. ``d`` and ``e`` are work arrays shaped
    like ``p`` (``e`` is needed only with both weight decay and Nesterov).
    """
    if weight_decay != 0.0:
        np.multiply(p, weight_decay, out=d)
        np.add(d, g, out=d)  # d = g + weight_decay * p
        g = d
    if momentum != 0.0:
        assert buf is not None
        if first:
            np.copyto(buf, g)  # PyTorch starts the buffer at the first gradient
        else:
            np.multiply(buf, momentum, out=buf)
            np.add(buf, g, out=buf)  # b = momentum * b + g
        if nesterov:
            if g is d:
                assert e is not None
                np.multiply(buf, momentum, out=e)
                np.add(d, e, out=d)
            else:
                np.multiply(buf, momentum, out=d)
                np.add(g, d, out=d)  # d = g + momentum * b
            g = d
        else:
            g = buf
    np.multiply(g, lr, out=d)
    np.subtract(p, d, out=p)  # p = p - lr * d


class SGD(Optimizer):
    r"""Stochastic gradient descent, exactly as ``torch.optim.SGD`` with ``dampening=0``.

    Per parameter ``p`` with gradient ``g``, at its t-th update (t = 1, 2, ...)::

        d = g + weight_decay * p                         (L2 penalty folded into g)
        if momentum != 0:
            b = d                        if t == 1       (buffer starts at the gradient,
            b = momentum * b + d         otherwise        not at zero)
            d = d + momentum * b         if nesterov
            d = b                        otherwise
        p = p - lr * d

    With ``momentum=0`` this is plain gradient descent ``p -= lr * (g + weight_decay * p)``.
    Nesterov here is PyTorch's (Sutskever et al.) reformulation, evaluated at the current
    point: no closure is needed.

    Args:
        params: iterable of parameters (see :mod:`optim.optimizer`).
        lr: learning rate, >= 0 (required).
        momentum: in [0, 1).
        nesterov: Nesterov momentum; needs ``momentum > 0``.
        weight_decay: L2 coefficient, >= 0 (added to the gradient, not decoupled).
        check_finite: raise :class:`~optim.optimizer.NonFiniteGradientError` before any
            update if a gradient holds NaN/inf (default). When False, a NaN/inf gradient
            element makes that parameter element NaN/inf (and, with momentum, poisons its
            buffer element for good).

    State per parameter: ``step`` (int) and, when ``momentum != 0``, ``momentum_buffer``.
    """

    name = "sgd"

    def __init__(
        self,
        params: Iterable[ParameterLike],
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        *,
        check_finite: bool = True,
    ) -> None:
        super().__init__(
            params,
            {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay},
            check_finite=check_finite,
        )

    @classmethod
    def _validate_hyperparameters(cls, hyper: dict[str, Any]) -> dict[str, Any]:
        o = cls.__name__
        out = {
            "lr": check_real(o, "lr", hyper["lr"], low=0.0),
            "momentum": check_real(o, "momentum", hyper["momentum"], low=0.0, high=1.0,
                                   high_open=True),
            "nesterov": check_bool(o, "nesterov", hyper["nesterov"]),
            "weight_decay": check_real(o, "weight_decay", hyper["weight_decay"], low=0.0),
        }
        if out["nesterov"] and out["momentum"] == 0.0:
            raise ValueError(f"{o}: invalid nesterov=True: Nesterov needs momentum > 0, got "
                             f"momentum={hyper['momentum']!r}")
        return out

    @classmethod
    def _state_arrays(cls, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        return ("momentum_buffer",) if hyper["momentum"] != 0.0 else ()

    def _initial_state(self, data: np.ndarray) -> dict[str, Any]:
        state: dict[str, Any] = {"step": 0}
        if self._hyper["momentum"] != 0.0:
            state["momentum_buffer"] = np.zeros_like(data)
        return state

    def _configure(self) -> None:
        h = self._hyper
        self._lr: float = h["lr"]
        self._momentum: float = h["momentum"]
        self._nesterov: bool = h["nesterov"]
        self._weight_decay: float = h["weight_decay"]
        self._needs_e = self._nesterov and self._weight_decay != 0.0

    def _update(self, items: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        for i, p, g in items:
            state = self._state[i]
            sgd_rule(
                p,
                g,
                state.get("momentum_buffer"),
                self._scratch(i, "d", p),
                self._scratch(i, "e", p) if self._needs_e else None,
                lr=self._lr,
                momentum=self._momentum,
                nesterov=self._nesterov,
                weight_decay=self._weight_decay,
                first=state["step"] == 0,
            )
            state["step"] += 1
