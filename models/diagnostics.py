"""Looking inside training: the gradient reaching each timestep of an RNN, and the counter's
loss over a grid of its two parameters.

`state_gradient_norms` is the tool part 1 of "How to implement an RNN" uses to show
exploding and vanishing gradients: the gradient reaching state s_k is the one at s_n times
w_rec^(n - k), so it explodes for |w_rec| > 1 and vanishes for |w_rec| < 1. The model
computes its loss and hands back the states it used (`loss_and_states`), and the engine
(`minigrad.gradients`) gives dL/dS_k for every one of them.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

import minigrad as mg


class HasStates(Protocol):
    """A model whose loss can hand back the states it was computed from."""

    def loss_and_states(self, X: np.ndarray,
                        T: np.ndarray) -> tuple[mg.Tensor, list[mg.Tensor]]: ...


def state_gradient_norms(model: HasStates, X: np.ndarray, T: np.ndarray) -> np.ndarray:
    """||dL/dS_k|| for k = 1 .. n: the norm, over the batch and the state, of the gradient of
    the model's loss on (X, T) with respect to the state after k inputs. Shape (n,).

    The initial state is not included: it is a constant for the counter and absent from the
    Keras adder. Parameters' `.grad` are not touched.
    """
    return np.array([np.linalg.norm(g) for g in state_gradients(model, X, T)])


def state_gradients(model: HasStates, X: np.ndarray, T: np.ndarray) -> list[np.ndarray]:
    """[dL/dS_1, ..., dL/dS_n], each of the state's shape: see `state_gradient_norms`."""
    loss, states = model.loss_and_states(X, T)
    return mg.gradients(loss, states)


def counter_loss_surface(X: np.ndarray, t: np.ndarray, w_x: np.ndarray,
                         w_rec: np.ndarray) -> np.ndarray:
    """The counter's loss mean_i (s_{i,n} - t_i)^2 at every (w_x[j], w_rec[i]): shape
    (len(w_rec), len(w_x)), rows along w_rec, as `matplotlib`'s pcolormesh wants.

    Vectorised over the grid: one pass of s_k = s_{k-1} w_rec + x_k w_x for all points.
    """
    X = np.asarray(X, np.float64)
    t = np.asarray(t, np.float64)
    WX, WR = np.meshgrid(np.asarray(w_x, np.float64), np.asarray(w_rec, np.float64))
    s = np.zeros(WX.shape + (X.shape[0],))
    for k in range(X.shape[1]):
        s = s * WR[..., None] + X[:, k] * WX[..., None]
    return np.mean((s - t) ** 2, axis=-1)
