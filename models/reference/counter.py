"""The linear counter RNN of part 1 of the tutorial "How to implement an RNN" ("Minimal
example"), with backpropagation through time by hand. Its two parameters are named w_x and
w_rec in the tutorial and in the engine's `Counter` alike."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .param import Param, Parameters

__all__ = ["ReferenceCounter"]


class ReferenceCounter(Parameters):
    """A one-state linear RNN that learns to count the ones in a 0/1 sequence.

    For a sequence ``x_1 .. x_T``::

        s_0 = 0,   s_k = s_{k-1} w_rec + x_k w_x   (k = 1 .. T),   y = s_T

    and over ``n`` sequences with targets ``t``, ``L = (1/n) sum_i (s_{i,T} - t_i)^2``.
    The exact solution is ``w_x = w_rec = 1``. Backward (through time)::

        dL/ds_T     = 2 (s_T - t) / n
        dL/ds_{k-1} = dL/ds_k w_rec
        dL/dw_x     = sum_i sum_k dL/ds_{i,k} x_{i,k}
        dL/dw_rec   = sum_i sum_k dL/ds_{i,k} s_{i,k-1}

    so the state gradient is geometric in ``w_rec``: it explodes for ``|w_rec| > 1`` and
    vanishes for ``|w_rec| < 1``.

    Inputs ``X`` are ``(n, T)`` (or ``(T,)`` for one sequence), targets ``t`` are ``(n,)``
    (or a scalar). Parameters are 0-d float64 arrays in `Param`s named "w_x" and "w_rec".
    """

    def __init__(self, w_x: float, w_rec: float) -> None:
        self.w_x = Param(np.array(w_x, dtype=np.float64))
        self.w_rec = Param(np.array(w_rec, dtype=np.float64))
        self._params = {"w_x": self.w_x, "w_rec": self.w_rec}

    def forward(self, X: ArrayLike) -> NDArray[np.float64]:
        """All states ``S[:, k] = s_k`` for ``k = 0 .. T``: shape ``(n, T + 1)``
        (``(T + 1,)`` for a single sequence). The output is the last column."""
        X_, single = _as_sequences(X)
        S = self._states(X_)
        return S[0] if single else S

    def loss(self, X: ArrayLike, t: ArrayLike) -> float:
        """Mean squared error of the last state: ``(1/n) sum_i (s_{i,T} - t_i)^2``."""
        X_, _ = _as_sequences(X)
        t_ = _as_targets(t, X_.shape[0])
        return float(np.mean((self._states(X_)[:, -1] - t_) ** 2))

    def loss_and_backward(self, X: ArrayLike, t: ArrayLike) -> float:
        """The loss; adds ``dL/dw_x`` and ``dL/dw_rec`` into the parameters' ``.grad``
        (a None grad is set), so that two calls accumulate twice the gradient."""
        X_, _ = _as_sequences(X)
        t_ = _as_targets(t, X_.shape[0])
        S = self._states(X_)
        G = self._state_gradients(X_, S, t_)
        # Timestep k (1-based) uses input column k - 1 and the previous state S[:, k - 1].
        grads = {
            "w_x": np.sum(G[:, 1:] * X_),
            "w_rec": np.sum(G[:, 1:] * S[:, :-1]),
        }
        for name, param in self.named_parameters():
            grad = np.asarray(grads[name], dtype=np.float64)
            param.grad = grad if param.grad is None else param.grad + grad
        return float(np.mean((S[:, -1] - t_) ** 2))

    def state_gradients(self, X: ArrayLike, t: ArrayLike) -> NDArray[np.float64]:
        """``G[i, k] = dL/ds_{i,k}`` for ``k = 0 .. T``, shape ``(n, T + 1)`` (``(T + 1,)``
        for a single sequence).

        ``L`` is the batch loss of `loss` (so the 1/n of the mean is included) and
        ``s_{i,k}`` the state of sequence i after k inputs; ``G[i, k] = 2 (s_{i,T} - t_i) / n
        * w_rec ** (T - k)``. The write-up plots its magnitude per timestep to show
        exploding (``|w_rec| > 1``) and vanishing (``|w_rec| < 1``) gradients.
        """
        X_, single = _as_sequences(X)
        t_ = _as_targets(t, X_.shape[0])
        G = self._state_gradients(X_, self._states(X_), t_)
        return G[0] if single else G

    def _states(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        n, T = X.shape
        w_x, w_rec = self.w_x.data, self.w_rec.data
        S = np.zeros((n, T + 1))
        for k in range(1, T + 1):
            S[:, k] = S[:, k - 1] * w_rec + X[:, k - 1] * w_x
        return S

    def _state_gradients(
        self, X: NDArray[np.float64], S: NDArray[np.float64], t: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        n, T = X.shape
        w_rec = self.w_rec.data
        G = np.zeros((n, T + 1))
        G[:, T] = 2.0 * (S[:, T] - t) / n
        for k in range(T, 0, -1):
            G[:, k - 1] = G[:, k] * w_rec
        return G


def _as_sequences(X: ArrayLike) -> tuple[NDArray[np.float64], bool]:
    X_ = np.asarray(X, dtype=np.float64)
    if X_.ndim == 1:
        return X_[None, :], True
    if X_.ndim != 2:
        raise ValueError(f"ReferenceCounter: X must have shape (n, T) or (T,), got {X_.shape}")
    return X_, False


def _as_targets(t: ArrayLike, n: int) -> NDArray[np.float64]:
    t_ = np.asarray(t, dtype=np.float64).reshape(-1)
    if t_.shape != (n,):
        raise ValueError(f"ReferenceCounter: t must hold {n} targets, got shape {np.shape(t)}")
    return t_
