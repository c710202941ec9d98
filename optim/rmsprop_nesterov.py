"""RMSProp with Nesterov momentum, the binary adder's optimizer (SPEC section 2)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .optimizer import Closure, Optimizer, ParameterLike, check_real

__all__ = ["RMSPropNesterov", "rmsprop_nesterov_look_ahead", "rmsprop_nesterov_rule"]


def rmsprop_nesterov_look_ahead(
    p: np.ndarray, velocity: np.ndarray, saved: np.ndarray, work: np.ndarray, *, momentum: float
) -> None:
    """Steps 1 of the rule: save ``p`` into ``saved``, then ``p += momentum * velocity``."""
    np.copyto(saved, p)
    np.multiply(velocity, momentum, out=work)
    np.add(p, work, out=p)


def rmsprop_nesterov_rule(
    p: np.ndarray,
    g: np.ndarray,
    velocity: np.ndarray,
    mean_square: np.ndarray,
    work: np.ndarray,
    work2: np.ndarray,
    *,
    lr: float,
    decay: float,
    momentum: float,
    eps: float,
) -> None:
    """Steps 3 to 5 of the rule, in place, with ``p`` at the look-ahead point.

    ``g`` (the gradient at the look-ahead point) is only read; ``work`` and ``work2`` are
    work arrays shaped like ``p``. ``V_tmp = momentum * V`` is recomputed (bit for bit the
    value used for the look-ahead) rather than kept, to save an array.
    """
    np.multiply(mean_square, decay, out=mean_square)
    np.multiply(g, g, out=work)
    np.multiply(work, 1.0 - decay, out=work)
    np.add(mean_square, work, out=mean_square)  # MA = decay * MA + (1 - decay) * g^2
    np.sqrt(mean_square, out=work)
    np.add(work, eps, out=work)
    np.multiply(g, lr, out=work2)
    np.divide(work2, work, out=work2)  # step = lr * g / (sqrt(MA) + eps)
    np.multiply(velocity, momentum, out=velocity)
    np.subtract(velocity, work2, out=velocity)  # V = V_tmp - step
    np.subtract(p, work2, out=p)  # P = P - step


class RMSPropNesterov(Optimizer):
    r"""RMSProp with Nesterov momentum, exactly as in SPEC section 2 (the adder write-up).

    Per parameter P, with velocity V and moving average MA (both start at 0), one step is::

        1. V_tmp = momentum * V;  P = P + V_tmp          (move to the look-ahead point)
        2. g = the gradient at that point                (closure() computes it)
        3. MA = decay * MA + (1 - decay) * g^2
        4. step = lr * g / (sqrt(MA) + eps)              (eps outside the square root)
        5. V = V_tmp - step;  P = P - step

    Where the parameters sit: between steps, at the *real* point P (what you evaluate,
    save or test). During ``step`` they sit at the look-ahead point P + momentum * V while
    ``closure`` runs, so the closure's loss, and the ``.grad`` left on the parameters after
    ``step``, belong to the look-ahead point. After ``step`` P = P_old + V_new.

    Because the gradient has to be taken at a point that only exists inside ``step``,
    ``step`` *requires* a closure (zero the grads, compute the loss, call backward, return
    the loss); calling it without one raises TypeError.

    Failure handling: every parameter is saved before the look-ahead. If the closure raises,
    or a gradient is non-finite (with ``check_finite``), all parameters are restored bit for
    bit and the state is unchanged before the error propagates. A parameter whose grad is
    None after the closure is skipped as in PyTorch: restored to where it was, V and MA
    unchanged.

    Args:
        params: iterable of parameters (see :mod:`optim.optimizer`).
        lr: learning rate, >= 0.
        decay: lambda, the moving average's decay, in [0, 1).
        momentum: in [0, 1).
        eps: >= 0. With ``eps=0``, a zero gradient element on a zero MA gives 0/0 = NaN.
        check_finite: raise :class:`~optim.optimizer.NonFiniteGradientError` (after
            restoring the parameters) if a gradient holds NaN/inf (default). When False, a
            NaN gradient element makes the parameter element, V and MA NaN for good; an
            infinite one makes MA infinite and the step inf/inf = NaN, likewise.

    State per parameter: ``step`` (int), ``velocity`` (V) and ``mean_square`` (MA).
    """

    name = "rmsprop_nesterov"

    def __init__(
        self,
        params: Iterable[ParameterLike],
        lr: float = 0.05,
        decay: float = 0.5,
        momentum: float = 0.8,
        eps: float = 1e-6,
        *,
        check_finite: bool = True,
    ) -> None:
        super().__init__(
            params,
            {"lr": lr, "decay": decay, "momentum": momentum, "eps": eps},
            check_finite=check_finite,
        )

    @classmethod
    def _validate_hyperparameters(cls, hyper: dict[str, Any]) -> dict[str, Any]:
        o = cls.__name__
        return {
            "lr": check_real(o, "lr", hyper["lr"], low=0.0),
            "decay": check_real(o, "decay", hyper["decay"], low=0.0, high=1.0, high_open=True),
            "momentum": check_real(o, "momentum", hyper["momentum"], low=0.0, high=1.0,
                                   high_open=True),
            "eps": check_real(o, "eps", hyper["eps"], low=0.0),
        }

    @classmethod
    def _state_arrays(cls, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        return ("velocity", "mean_square")

    def _initial_state(self, data: np.ndarray) -> dict[str, Any]:
        return {"step": 0, "velocity": np.zeros_like(data), "mean_square": np.zeros_like(data)}

    def _configure(self) -> None:
        h = self._hyper
        self._momentum: float = h["momentum"]
        self._rule_kwargs = {"lr": h["lr"], "decay": h["decay"], "momentum": h["momentum"],
                             "eps": h["eps"]}

    def step(self, closure: Closure | None = None) -> Any:
        """One step (1-5 above); ``closure`` is required and called exactly once.

        Returns the closure's loss, i.e. the loss at the look-ahead point.
        """
        owner = type(self).__name__
        if closure is None:
            raise TypeError(
                f"{owner}.step needs a closure: the gradient must be taken at the look-ahead "
                f"point P + momentum * V, which exists only inside step. Pass a function that "
                f"zeroes the grads, computes the loss, calls backward and returns the loss."
            )
        if not callable(closure):
            raise TypeError(f"{owner}.step: closure must be callable, got "
                            f"{type(closure).__name__}")
        params = self._params
        for i, prm in enumerate(params):
            if prm.data.shape != self._shapes[i]:
                raise ValueError(f"{owner}.step: parameter {i} has shape {prm.data.shape}, "
                                 f"expected {self._shapes[i]}")
        saved = [self._scratch(i, "saved", prm.data) for i, prm in enumerate(params)]
        momentum = self._momentum
        for i, prm in enumerate(params):
            rmsprop_nesterov_look_ahead(prm.data, self._state[i]["velocity"], saved[i],
                                        self._scratch(i, "work", prm.data), momentum=momentum)
        try:
            loss = closure()
            items = self._gradients()
        except BaseException:
            for i, prm in enumerate(params):
                np.copyto(prm.data, saved[i])
            raise
        if len(items) != len(params):
            have = {i for i, _, _ in items}
            for i, prm in enumerate(params):
                if i not in have:
                    np.copyto(prm.data, saved[i])
        kw = self._rule_kwargs
        for i, p, g in items:
            state = self._state[i]
            rmsprop_nesterov_rule(p, g, state["velocity"], state["mean_square"],
                                  self._scratch(i, "work", p), saved[i], **kw)
            state["step"] += 1
        return loss

    def _update(self, items: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        raise AssertionError("unreachable: RMSPropNesterov overrides step")
