"""Looking inside training: the gradient reaching each timestep of an RNN, and the counter's
loss over a grid of its two parameters.

`state_gradient_norms` is the tool the write-up uses to show exploding and vanishing
gradients (SPEC 1): it runs the model's own `loss(X, T)`, keeps the states that loss was
computed from, and asks the engine (`minigrad.gradients`) for dL/dS_k at every step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import minigrad as mg


def state_gradient_norms(model: Any, X: np.ndarray, T: np.ndarray) -> np.ndarray:
    """||dL/dS_k|| for k = 1 .. n: the norm, over the batch and the state, of the gradient of
    `model.loss(X, T)` with respect to the state after k inputs. Shape (n_timesteps,).

    `model` is a minigrad Module whose `loss` computes its states through `model.states(X)`
    (the `Counter` and the `Adder` do). The initial state is not included: it is a constant
    for the counter and absent from the Keras adder. Parameters' `.grad` are not touched.
    """
    return np.array([np.linalg.norm(g) for g in state_gradients(model, X, T)])


def state_gradients(model: Any, X: np.ndarray, T: np.ndarray) -> list[np.ndarray]:
    """[dL/dS_1, ..., dL/dS_n], each of the state's shape: see `state_gradient_norms`."""
    captured: list[list[mg.Tensor]] = []
    original = model.states

    def states(X_: np.ndarray) -> list[mg.Tensor]:
        result = original(X_)
        captured.append(result)
        return result

    model.states = states  # an instance attribute shadows the method for this one call
    try:
        loss = model.loss(X, T)
    finally:
        del model.states
    if len(captured) != 1:
        raise ValueError(f"state_gradient_norms: {type(model).__name__}.loss called states() "
                         f"{len(captured)} times, expected once")
    computed = [s for s in captured[0] if s.requires_grad]
    if len(computed) < len(captured[0]) - 1:
        raise ValueError("state_gradient_norms: the model's states do not depend on its "
                         "parameters")
    return mg.gradients(loss, computed)


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
