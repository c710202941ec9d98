"""RProp: resilient backpropagation, the sign-based rule of the counter write-up."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .optimizer import Optimizer, ParameterLike, check_real

__all__ = ["RProp", "rprop_rule"]


def rprop_rule(
    p: np.ndarray,
    g: np.ndarray,
    step_size: np.ndarray,
    prev_sign: np.ndarray,
    sign: np.ndarray,
    work: np.ndarray,
    up: np.ndarray,
    down: np.ndarray,
    *,
    eta_plus: float,
    eta_minus: float,
    step_min: float,
    step_max: float,
) -> None:
    """One RProp- update of ``p`` in place.

    ``g`` is only read; ``step_size`` is updated in place; ``prev_sign`` is read and
    ``sign`` receives sign(g) (the caller swaps the two afterwards, so no copy is made).
    ``work`` is a float work array, ``up`` and ``down`` boolean work arrays, all shaped like
    ``p``. No temporaries are allocated.
    """
    np.sign(g, out=sign)
    np.multiply(sign, prev_sign, out=work)
    np.greater(work, 0.0, out=up)
    np.less(work, 0.0, out=down)
    # step_size stays within [step_min, step_max], so clipping a grown value only needs the
    # upper bound and a shrunk one only the lower bound.
    np.multiply(step_size, eta_plus, out=step_size, where=up)
    np.minimum(step_size, step_max, out=step_size)
    np.multiply(step_size, eta_minus, out=step_size, where=down)
    np.maximum(step_size, step_min, out=step_size)
    np.multiply(sign, step_size, out=work)
    np.subtract(p, work, out=p)  # p = p - sign(g) * step_size


class RProp(Optimizer):
    r"""RProp without weight-backtracking ("Rprop-", Igel & Huesken 2000), full batch.

    Each parameter *element* has its own step size Delta (initially ``step_init``) and
    remembers the sign of its previous gradient s_prev (initially 0). At every step, with
    s = sign(g)::

        if s * s_prev > 0:   Delta = min(Delta * eta_plus,  step_max)   (same sign: grow)
        if s * s_prev < 0:   Delta = max(Delta * eta_minus, step_min)   (flipped: shrink)
        if s * s_prev == 0:  Delta unchanged
        p = p - s * Delta
        s_prev = s

    Only the sign of the gradient is used, so exploding or vanishing gradients (as in the
    counter RNN of SPEC section 1) do not matter. Precisely:

    - *No weight-backtracking*: after a sign flip the parameter still moves, by
      ``-s * Delta`` with the shrunk Delta, and the flipped sign is remembered (unlike
      Rprop+, which undoes the previous move, and iRprop-, which skips the move and stores 0).
    - *First step*: s_prev = 0, so Delta stays at ``step_init`` and every element moves by
      ``-sign(g) * step_init``.
    - *Gradient exactly 0*: s = 0, so that element does not move, keeps its Delta, and
      stores s_prev = 0; its next step therefore does not adapt Delta either (as on a first
      step).
    - Delta is clipped to ``[step_min, step_max]``; ``step_init`` must lie in that range.

    This is the counter write-up's rule with two deliberate refinements: a zero product
    leaves Delta unchanged (the write-up compared signs with ``==``, so its first step
    multiplied Delta by ``eta_minus``), and Delta is clipped. With the defaults, from
    w_x = -1.5, w_rec = 2, 500 full-batch iterations end within 0.01 of (1, 1) on the test's
    data (tests/test_optim_convergence.py: w_x = 1.0028, w_rec = 0.9993), and on 48 of 50
    data seeds tried (the other two within 0.02).

    RProp is meant for full-batch gradients: with minibatches the sign changes from batch
    to batch and the step sizes shrink for no good reason.

    Args:
        params: iterable of parameters (see :mod:`optim.optimizer`).
        eta_plus: growth factor, > 1.
        eta_minus: shrink factor, in (0, 1).
        step_init: initial Delta, in [step_min, step_max].
        step_min: lower bound of Delta, > 0 (a Delta of 0 would freeze the element forever).
        step_max: upper bound of Delta.
        check_finite: raise :class:`~optim.optimizer.NonFiniteGradientError` before any
            update if a gradient holds NaN/inf (default). When False: an infinite element
            counts by its sign like any other; a NaN element makes its parameter element NaN,
            keeps its Delta and stores s_prev = NaN, so its Delta never adapts again.

    State per parameter: ``step`` (int), ``step_size`` (Delta) and ``prev_sign`` (s_prev,
    values -1, 0 or 1), both arrays of the parameter's shape and dtype.
    """

    name = "rprop"

    def __init__(
        self,
        params: Iterable[ParameterLike],
        eta_plus: float = 1.2,
        eta_minus: float = 0.5,
        step_init: float = 0.001,
        step_min: float = 1e-6,
        step_max: float = 50.0,
        *,
        check_finite: bool = True,
    ) -> None:
        super().__init__(
            params,
            {
                "eta_plus": eta_plus,
                "eta_minus": eta_minus,
                "step_init": step_init,
                "step_min": step_min,
                "step_max": step_max,
            },
            check_finite=check_finite,
        )

    @classmethod
    def _validate_hyperparameters(cls, hyper: dict[str, Any]) -> dict[str, Any]:
        o = cls.__name__
        out = {
            "eta_plus": check_real(o, "eta_plus", hyper["eta_plus"], low=1.0, low_open=True),
            "eta_minus": check_real(o, "eta_minus", hyper["eta_minus"], low=0.0, high=1.0,
                                    low_open=True, high_open=True),
            "step_init": check_real(o, "step_init", hyper["step_init"], low=0.0,
                                    low_open=True),
            "step_min": check_real(o, "step_min", hyper["step_min"], low=0.0, low_open=True),
            "step_max": check_real(o, "step_max", hyper["step_max"], low=0.0, low_open=True),
        }
        if out["step_min"] > out["step_max"]:
            raise ValueError(
                f"{o}: invalid step_min={hyper['step_min']!r}: must be <= "
                f"step_max={hyper['step_max']!r}"
            )
        if not out["step_min"] <= out["step_init"] <= out["step_max"]:
            raise ValueError(
                f"{o}: invalid step_init={hyper['step_init']!r}: must be in "
                f"[step_min, step_max] = [{out['step_min']:g}, {out['step_max']:g}]"
            )
        return out

    @classmethod
    def _state_arrays(cls, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        return ("step_size", "prev_sign")

    def _initial_state(self, data: np.ndarray) -> dict[str, Any]:
        return {
            "step": 0,
            "step_size": np.full_like(data, self._hyper["step_init"]),
            "prev_sign": np.zeros_like(data),
        }

    def _check_state_values(
        self, index: int, state: dict[str, Any], hyper: Mapping[str, Any]
    ) -> None:
        where = f"{type(self).__name__}.load_state_dict: state of parameter {index}"
        s = state["prev_sign"]
        ok = (s == 1.0) | (s == 0.0) | (s == -1.0) | np.isnan(s)
        if not ok.all():
            raise ValueError(f"{where}: prev_sign must hold only -1, 0 or 1")
        d = state["step_size"]
        lo, hi = hyper["step_min"], hyper["step_max"]
        if not ((d >= lo) & (d <= hi)).all():
            raise ValueError(f"{where}: step_size must lie in [step_min, step_max] = "
                             f"[{lo:g}, {hi:g}]")

    def _configure(self) -> None:
        h = self._hyper
        self._rule_kwargs = {
            "eta_plus": h["eta_plus"],
            "eta_minus": h["eta_minus"],
            "step_min": h["step_min"],
            "step_max": h["step_max"],
        }

    def _update(self, items: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        kw = self._rule_kwargs
        for i, p, g in items:
            state = self._state[i]
            work = self._work[i]
            if not work:
                work["sign"] = np.empty_like(p)
                work["work"] = np.empty_like(p)
                work["up"] = np.empty(p.shape, dtype=bool)
                work["down"] = np.empty(p.shape, dtype=bool)
            prev = state["prev_sign"]
            sign = work["sign"]
            rprop_rule(p, g, state["step_size"], prev, sign, work["work"], work["up"],
                       work["down"], **kw)
            state["prev_sign"], work["sign"] = sign, prev
            state["step"] += 1
