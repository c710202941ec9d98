"""The counter of part 1 of the tutorial "How to implement an RNN" ("Minimal example") as a
computation graph on minigrad.

    s_0 = 0,   s_k = s_{k-1} w_rec + x_k w_x   (k = 1 .. n),   output s_n

a linear RNN whose exact solution is w_x = w_rec = 1: it counts the ones in a sequence.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import minigrad as mg
from minigrad import nn

from .data import as_dtype


class Counter(nn.Module):
    """Two scalar parameters, `w_x` and `w_rec`; the loss is the mean squared error of s_n.

    With sequences of one bit, s_1 = x_1 w_x does not involve `w_rec`: its gradient is
    zero."""

    def __init__(self, w_x: float = -1.5, w_rec: float = 2.0, dtype=np.float64):
        self.w_x = nn.Parameter(np.array(w_x, dtype))
        self.w_rec = nn.Parameter(np.array(w_rec, dtype))

    def step(self, s: mg.Tensor, x: mg.Tensor) -> tuple[mg.Tensor, mg.Tensor]:
        """One step of the recurrence, s_k = s_{k-1} w_rec + x_k w_x: the new state, twice
        (the carry and this step's output, as `mg.scan` takes a step)."""
        s = s * self.w_rec + x * self.w_x
        return s, s

    def states(self, X: Any) -> mg.Tensor:
        """s_1 .. s_n for sequences X (batch, n), time-major: shape (n, batch); `step`
        looped by `mg.scan` from s_0 = 0, its backward derived step by step."""
        X = _sequences(X, self.w_x.dtype)
        return mg.scan(self.step, np.zeros(X.shape[0], X.dtype), X.T)[1]

    def unrolled_states(self, X: Any) -> list[mg.Tensor]:
        """[s_1, ..., s_n], each (batch,): `step` in a Python loop (`states`' very numbers),
        every s_k a vertex of the graph, so that `minigrad.gradients(loss, states)` gives
        the whole dL/ds_k."""
        X = _sequences(X, self.w_x.dtype)
        s: Any = np.zeros(X.shape[0], X.dtype)
        states = []
        for k in range(X.shape[1]):
            s, _ = self.step(s, X[:, k])
            states.append(s)
        return states

    def forward(self, X: Any) -> mg.Tensor:
        """The count s_n of every sequence in X (batch, n): the last state of `states`."""
        X = _sequences(X, self.w_x.dtype)
        return mg.scan(self.step, np.zeros(X.shape[0], X.dtype), X.T)[0]

    def loss(self, X: Any, t: Any) -> mg.Tensor:
        """mean((s_n - t)^2) over the sequences; `t` holds one target per sequence."""
        return self._loss_of(self.forward(X), t)

    def loss_and_states(self, X: Any, t: Any) -> tuple[mg.Tensor, list[mg.Tensor]]:
        """The loss of `loss` (the same number), computed from the unrolled states [s_1, ...,
        s_n] (s_0 = 0 is a constant), and those states, so that `minigrad.gradients(loss,
        states)` gives dL/ds_k."""
        states = self.unrolled_states(X)
        return self._loss_of(states[-1], t), states

    def _loss_of(self, s_n: mg.Tensor, t: Any) -> mg.Tensor:
        t = as_dtype(t, self.w_x.dtype)
        # A (batch, 1) column would broadcast against s_n's (batch,) into a (batch, batch)
        # difference and give a wrong mean without any error.
        if t.size != s_n.shape[0]:
            raise ValueError(f"Counter.loss: {s_n.shape[0]} sequences but targets of shape "
                             f"{t.shape}")
        return mg.mse_loss(s_n, t.reshape(s_n.shape))


def _sequences(X: np.ndarray | mg.Tensor, dtype) -> mg.Tensor:
    # Inputs take the parameters' dtype, so a float32 model computes in float32; by an op,
    # so that a compiled loss converts each call's inputs.
    X = X if isinstance(X, mg.Tensor) else np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"Counter: expected sequences of shape (batch, n), got shape {X.shape}")
    return as_dtype(X, dtype)

