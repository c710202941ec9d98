"""The counter of part 1 of the tutorial "How to implement an RNN" ("Minimal example") as a
computation graph on minigrad.

    s_0 = 0,   s_k = s_{k-1} w_rec + x_k w_x   (k = 1 .. n),   output s_n

a linear RNN whose exact solution is w_x = w_rec = 1: it counts the ones in a sequence.
"""

from __future__ import annotations

import numpy as np

import minigrad as mg
from minigrad import nn


class Counter(nn.Module):
    """Two scalar parameters, `w_x` and `w_rec`; the loss is the mean squared error of s_n.

    With sequences of one bit, s_1 = x_1 w_x does not involve `w_rec`: its `.grad` stays
    None after backward (nothing reached it), as PyTorch leaves an unused parameter's."""

    def __init__(self, w_x: float = -1.5, w_rec: float = 2.0, dtype=np.float64):
        self.w_x = nn.Parameter(np.array(w_x, dtype))
        self.w_rec = nn.Parameter(np.array(w_rec, dtype))

    def states(self, X: np.ndarray) -> list[mg.Tensor]:
        """[s_0, s_1, ..., s_n] for sequences X of shape (batch, n); each s_k is (batch,)."""
        X = _sequences(X, self.w_x.dtype)
        s = mg.Tensor(np.zeros(X.shape[0], self.w_x.dtype))
        states = [s]
        for k in range(X.shape[1]):
            # s_0 = 0 adds no recurrent term: s_1 = x_1 w_x, the same number, one op
            s = self.w_x * X[:, k] if k == 0 else s * self.w_rec + self.w_x * X[:, k]
            states.append(s)
        return states

    def forward(self, X: np.ndarray) -> mg.Tensor:
        """The count s_n of every sequence in X (batch, n)."""
        return self.states(X)[-1]

    def loss(self, X: np.ndarray, t: np.ndarray) -> mg.Tensor:
        """mean((s_n - t)^2) over the sequences; `t` holds one target per sequence."""
        return self.loss_and_states(X, t)[0]

    def loss_and_states(self, X: np.ndarray, t: np.ndarray) -> tuple[mg.Tensor, list[mg.Tensor]]:
        """The loss of `loss` and the states [s_1, ..., s_n] it was computed from (s_0 = 0
        is a constant), so that `minigrad.gradients(loss, states)` gives dL/ds_k."""
        states = self.states(X)
        s_n = states[-1]
        t = np.asarray(t, self.w_x.dtype)
        # A (batch, 1) column would broadcast against s_n's (batch,) into a (batch, batch)
        # difference and give a wrong mean without any error.
        if t.size != s_n.shape[0]:
            raise ValueError(f"Counter.loss: {s_n.shape[0]} sequences but targets of shape "
                             f"{t.shape}")
        return mg.mse_loss(s_n, t.reshape(s_n.shape)), states[1:]


def _sequences(X: np.ndarray, dtype) -> np.ndarray:
    # Inputs take the parameters' dtype, so a float32 model computes in float32.
    X = np.asarray(X, dtype)
    if X.ndim != 2:
        raise ValueError(f"Counter: expected sequences of shape (batch, n), got shape {X.shape}")
    return X
