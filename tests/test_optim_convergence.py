"""Convergence on small problems whose answer is known.

- every optimizer on an ill-conditioned quadratic bowl;
- RProp on the counter of "How to implement an RNN" (part 1): a two-weight linear RNN with
  exploding gradients (loss and BPTT written out here in NumPy), from w_x = -1.5,
  w_rec = 2, 500 full-batch iterations, must end within 0.01 of (1, 1).
"""

from __future__ import annotations

import numpy as np
import pytest

from minigrad import optim


class Param:
    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.grad: np.ndarray | None = None


# --------------------------------------------------------------------------------------
# Quadratic bowl: f(x, y) = 0.5 * sum(a * (w - c)^2) over two parameters
# --------------------------------------------------------------------------------------

A = [np.array([1.0, 10.0]), np.array([[0.5, 3.0]])]
C = [np.array([1.0, -2.0]), np.array([[0.25, 4.0]])]


def bowl_closure(params, opt):
    def closure() -> float:
        opt.zero_grad()
        loss = 0.0
        for p, a, c in zip(params, A, C, strict=True):
            loss += 0.5 * float(np.sum(a * (p.data - c) ** 2))
            p.grad = a * (p.data - c)
        return loss

    return closure


BOWL_CASES = [
    ("sgd", {"lr": 0.1}, 500, 1e-8),
    ("sgd", {"lr": 0.05, "momentum": 0.9}, 500, 1e-8),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}, 500, 1e-8),
    ("rprop", {}, 300, 1e-6),
    # A constant-lr RMSProp step is about lr * sign(g) near the minimum (MA tracks g^2), so
    # it hovers within a few lr of it rather than converging.
    ("rmsprop_nesterov", {"lr": 0.01}, 1000, 1e-2),
    ("rmsprop_nesterov", {"lr": 0.001, "decay": 0.9}, 5000, 1e-3),
    ("adam", {"lr": 0.05}, 2000, 1e-4),
]


@pytest.mark.parametrize(("name", "hyper", "steps", "tol"), BOWL_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(BOWL_CASES)])
def test_quadratic_bowl(name, hyper, steps, tol):
    params = [Param(np.zeros_like(c)) for c in C]
    opt = optim.create(name, params, **hyper)
    closure = bowl_closure(params, opt)
    first = opt.step(closure)
    for _ in range(steps - 1):
        last = opt.step(closure)
    assert last < first
    for p, c in zip(params, C, strict=True):
        np.testing.assert_allclose(p.data, c, rtol=0, atol=tol)


# --------------------------------------------------------------------------------------
# The counter ("How to implement an RNN", part 1)
# --------------------------------------------------------------------------------------


def counter_data(rng: np.random.Generator, sequences: int = 20, length: int = 10):
    """Sequences of 0/1 (a uniform draw rounded); the target is the number of ones."""
    x = np.round(rng.uniform(0.0, 1.0, (sequences, length)))
    return x, x.sum(axis=1)


def counter_loss_and_grad(w_x: float, w_rec: float, x: np.ndarray, t: np.ndarray):
    """s_k = s_{k-1} w_rec + x_k w_x, s_0 = 0; loss = mean (s_n - t)^2; BPTT by hand."""
    n_seq, n = x.shape
    s = np.zeros((n_seq, n + 1))
    for k in range(1, n + 1):
        s[:, k] = s[:, k - 1] * w_rec + x[:, k - 1] * w_x
    loss = float(np.mean((s[:, n] - t) ** 2))
    grad_s = 2.0 * (s[:, n] - t) / n_seq  # dL/ds_n
    grad_x = grad_rec = 0.0
    for k in range(n, 0, -1):
        grad_x += float(np.sum(grad_s * x[:, k - 1]))
        grad_rec += float(np.sum(grad_s * s[:, k - 1]))
        grad_s = grad_s * w_rec  # dL/ds_{k-1} = dL/ds_k * w_rec
    return loss, grad_x, grad_rec


def test_counter_gradient_matches_central_differences():
    """The hand-written BPTT of this test is itself right (so the RProp test means what it
    says), including at the exploding point (1, 2) where the gradient is of order 1e7."""
    x, t = counter_data(np.random.default_rng(0))
    for w in [(-1.5, 2.0), (1.0, 2.0), (0.7, -0.5)]:
        _, gx, gr = counter_loss_and_grad(*w, x, t)
        h = 1e-6
        nx = (counter_loss_and_grad(w[0] + h, w[1], x, t)[0]
              - counter_loss_and_grad(w[0] - h, w[1], x, t)[0]) / (2 * h)
        nr = (counter_loss_and_grad(w[0], w[1] + h, x, t)[0]
              - counter_loss_and_grad(w[0], w[1] - h, x, t)[0]) / (2 * h)
        np.testing.assert_allclose([gx, gr], [nx, nr], rtol=1e-5)
    assert abs(counter_loss_and_grad(1.0, 2.0, x, t)[2]) > 1e6


def test_rprop_trains_the_counter():
    x, t = counter_data(np.random.default_rng(0))
    w_x, w_rec = Param(np.array([-1.5])), Param(np.array([2.0]))
    opt = optim.RProp([w_x, w_rec])  # defaults: eta_plus 1.2, eta_minus 0.5, step_init 1e-3

    def closure() -> float:
        loss, gx, gr = counter_loss_and_grad(w_x.data[0], w_rec.data[0], x, t)
        w_x.grad, w_rec.grad = np.array([gx]), np.array([gr])
        return loss

    first = opt.step(closure)
    for _ in range(499):
        loss = opt.step(closure)
    assert abs(w_x.data[0] - 1.0) < 0.01
    assert abs(w_rec.data[0] - 1.0) < 0.01
    assert loss < 1e-3 < first
    # The tutorial's check: a sequence with 5 ones gives 5.
    test_seq = np.array([[0, 1, 1, 0, 0, 1, 0, 1, 1, 0]], dtype=float)
    s = 0.0
    for xk in test_seq[0]:
        s = s * w_rec.data[0] + xk * w_x.data[0]
    assert round(s, 1) == 5.0
