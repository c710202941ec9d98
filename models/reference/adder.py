"""The binary adder RNN of tutorial part 2 (and the Keras post), every backward by hand.

This is the yardstick for the engine's adder: the same parameter names, shapes,
initialisation draws and loss, computed in plain vectorised NumPy (loops over timesteps
only), as the tutorial writes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from models.presets import AdderConfig
from models.reference.param import Param

__all__ = ["ReferenceAdder", "initial_parameters", "sigmoid", "softplus"]


def sigmoid(z: NDArray) -> NDArray:
    """``1 / (1 + exp(-z))`` without overflow: only ``exp(-|z|) <= 1`` is ever formed.

    ``sigmoid(z) = 1 / (1 + e)`` for ``z >= 0`` and ``e / (1 + e)`` for ``z < 0``, with
    ``e = exp(-|z|)``. Keeps the dtype of ``z``.
    """
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, np.ones_like(e), e) / (1.0 + e)


def softplus(z: NDArray) -> NDArray:
    """``log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|))``, finite for every finite z."""
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def initial_parameters(
    config: AdderConfig, rng: np.random.Generator, dtype: DTypeLike = np.float64
) -> dict[str, NDArray]:
    """Fresh parameters for ``config``, drawn from ``rng`` (SPEC 2 and 3).

    Weights are drawn in the order input.weight, recurrent.weight, output.weight:

    - input and output weights: Glorot uniform, ``U(-a, a)`` with ``a = sqrt(6 / (n_in +
      n_out))``, by ``rng.uniform(-a, a, shape)``;
    - recurrent weight, "glorot": ``U(-a, a)`` with ``a = sqrt(6 / (2 n_states))``;
      "orthogonal": ``Q`` of the QR decomposition of ``rng.standard_normal((n, n))``, its
      columns' signs flipped so that ``diag(R) > 0`` (which makes ``Q`` Haar-distributed);
    - biases and the initial state: zero.

    Returns name -> array of ``dtype``, in the order of ``config.parameter_shapes()``.
    """
    shapes = config.parameter_shapes()
    drawn = {
        "input.weight": _glorot_uniform(rng, shapes["input.weight"]),
        "recurrent.weight": _recurrent_weight(rng, config.n_states, config.recurrent_init),
        "output.weight": _glorot_uniform(rng, shapes["output.weight"]),
    }
    return {
        name: np.asarray(drawn[name], dtype=dtype) if name in drawn else np.zeros(shape, dtype)
        for name, shape in shapes.items()
    }


def _glorot_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> NDArray[np.float64]:
    n_in, n_out = shape
    limit = np.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-limit, limit, size=shape)


def _recurrent_weight(rng: np.random.Generator, n: int, init: str) -> NDArray[np.float64]:
    if init == "glorot":
        return _glorot_uniform(rng, (n, n))
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    # QR is unique only up to column signs; fixing diag(R) > 0 removes the bias that
    # LAPACK's sign convention would otherwise put into Q's distribution.
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


class ReferenceAdder:
    """The adder RNN with hand-written backpropagation through time (SPEC 2, SPEC 3).

    For inputs ``X`` of shape ``(N, L, 2)`` (two operand bits per position, least
    significant first) and targets ``T`` of shape ``(N, L, 1)``::

        Z      = X W_in + b_in                        (all positions at once)
        S_k    = act(Z_k + S_{k-1} W_rec + b_rec)     k = 1 .. L, S_0 learned or zero
        A      = S_{1..L} W_out + b_out               (logits, N x L x 1)
        Y      = sigmoid(A)
        loss   = mean over N and L of  softplus(A) - T A

    The last line is binary cross-entropy ``-T log Y - (1 - T) log(1 - Y)`` written in the
    logits, so it stays finite when ``Y`` rounds to exactly 0 or 1. Backward, with
    ``D_k = dL/d(pre-activation at k)``::

        dL/dA      = (Y - T) / (N L)
        dL/dS_k    = dL/dA_k W_out^T + D_{k+1} W_rec^T      (no second term at k = L)
        D_k        = dL/dS_k * act'(S_k)     act' = 1 - S^2 (tanh) or S (1 - S) (sigmoid)
        dW_out     = sum S_k^T dL/dA_k       db_out = sum dL/dA
        dW_rec     = sum S_{k-1}^T D_k       db_rec = db_in = sum D
        dW_in      = sum X_k^T D_k           dS_0   = sum over samples of D_1 W_rec^T

    Parameters (see `AdderConfig.parameter_shapes`): "input.weight" (2, n),
    "input.bias" (n,), "recurrent.weight" (n, n), "recurrent.bias" (n,), "initial_state"
    (n,), "output.weight" (n, 1), "output.bias" (1,); biases only with ``config.bias``,
    the initial state only with ``config.learn_initial_state``.

    ``rng`` draws the initial parameters (`initial_parameters`); without it every parameter
    is zero, to be set with `load_parameters`. All arrays, inputs included, are converted
    to ``dtype`` (float64 or float32) and everything is computed in it.
    """

    def __init__(
        self,
        config: AdderConfig,
        rng: np.random.Generator | None = None,
        *,
        dtype: DTypeLike = np.float64,
    ) -> None:
        self.config = config
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise ValueError(f"ReferenceAdder: dtype must be float64 or float32, got {dtype}")
        if rng is None:
            values = {
                name: np.zeros(shape, self.dtype)
                for name, shape in config.parameter_shapes().items()
            }
        else:
            values = initial_parameters(config, rng, self.dtype)
        self._params = {name: Param(value) for name, value in values.items()}

    # --- parameters -------------------------------------------------------------------

    def named_parameters(self) -> list[tuple[str, Param]]:
        """``(name, Param)`` pairs in the order of ``config.parameter_shapes()``."""
        return list(self._params.items())

    def parameters(self) -> list[Param]:
        """The parameters in the order of `named_parameters`."""
        return list(self._params.values())

    def zero_grad(self) -> None:
        """Forget accumulated gradients (sets every ``.grad`` to None)."""
        for param in self._params.values():
            param.grad = None

    def state_dict(self) -> dict[str, NDArray]:
        """Copies of the parameter values, name -> array."""
        return {name: param.data.copy() for name, param in self._params.items()}

    def load_parameters(self, values: Mapping[str, ArrayLike]) -> None:
        """Copy ``values`` (name -> array) into the parameters, cast to the model's dtype.

        The names must be exactly those of `named_parameters` and every shape must match;
        otherwise ValueError names the missing, unexpected or mis-shaped entries and
        nothing is changed.
        """
        missing = [name for name in self._params if name not in values]
        unexpected = [name for name in values if name not in self._params]
        if missing or unexpected:
            raise ValueError(
                f"ReferenceAdder.load_parameters: missing {missing}, unexpected {unexpected}"
            )
        arrays = {name: np.asarray(values[name]) for name in self._params}
        wrong = [
            f"{name}: expected {param.data.shape}, got {arrays[name].shape}"
            for name, param in self._params.items()
            if arrays[name].shape != param.data.shape
        ]
        if wrong:
            raise ValueError(f"ReferenceAdder.load_parameters: wrong shapes: {'; '.join(wrong)}")
        for name, param in self._params.items():
            param.data = np.array(arrays[name], dtype=self.dtype)

    # --- forward and backward ---------------------------------------------------------

    def forward(self, X: ArrayLike) -> NDArray:
        """The probabilities ``Y`` that each output bit is 1, shape ``(N, L, 1)``."""
        _, logits = self._forward(self._inputs(X))
        return sigmoid(logits)

    def predict_bits(self, X: ArrayLike) -> NDArray:
        """``[Y > 0.5]`` as 0/1 in the model's dtype, shape ``(N, L, 1)``."""
        return (self.forward(X) > 0.5).astype(self.dtype)

    def loss(self, X: ArrayLike, T: ArrayLike) -> float:
        """Mean binary cross-entropy over samples and positions, from the logits."""
        X_ = self._inputs(X)
        T_ = self._targets(T, X_)
        _, logits = self._forward(X_)
        return _bce_with_logits(logits, T_)

    def loss_and_backward(self, X: ArrayLike, T: ArrayLike) -> float:
        """The loss; adds every parameter's gradient into its ``.grad`` (None -> set)."""
        X_ = self._inputs(X)
        T_ = self._targets(T, X_)
        S, logits = self._forward(X_)
        grads = self._backward(X_, T_, S, logits)
        for name, param in self._params.items():
            param.grad = grads[name] if param.grad is None else param.grad + grads[name]
        return _bce_with_logits(logits, T_)

    def _forward(self, X: NDArray) -> tuple[NDArray, NDArray]:
        """All states ``S`` (N, L + 1, n), ``S[:, 0] = S_0``, and the logits (N, L, 1)."""
        p = self._params
        act = _ACTIVATIONS[self.config.activation]
        n_samples, length, _ = X.shape
        Z = X @ p["input.weight"].data
        if self.config.bias:
            Z = Z + p["input.bias"].data + p["recurrent.bias"].data
        W_rec = p["recurrent.weight"].data
        S = np.empty((n_samples, length + 1, self.config.n_states), dtype=self.dtype)
        S[:, 0] = p["initial_state"].data if self.config.learn_initial_state else 0.0
        for k in range(1, length + 1):
            S[:, k] = act(Z[:, k - 1] + S[:, k - 1] @ W_rec)
        logits = S[:, 1:] @ p["output.weight"].data
        if self.config.bias:
            logits = logits + p["output.bias"].data
        return S, logits

    def _backward(
        self, X: NDArray, T: NDArray, S: NDArray, logits: NDArray
    ) -> dict[str, NDArray]:
        p = self._params
        n_samples, length, _ = X.shape
        # The classifier's gradient at the logits, as the write-up has it: no log is ever
        # taken, so saturated outputs still give a finite, correct gradient.
        grad_logits = (sigmoid(logits) - T) / (n_samples * length)
        # Gradient reaching each state S_1..S_L from its own output.
        grad_S = grad_logits @ p["output.weight"].data.T
        W_rec_T = p["recurrent.weight"].data.T
        derivative = _DERIVATIVES[self.config.activation]
        D = np.empty_like(grad_S)
        grad_next = np.zeros_like(grad_S[:, 0])
        for k in range(length, 0, -1):
            D[:, k - 1] = (grad_S[:, k - 1] + grad_next) * derivative(S[:, k])
            grad_next = D[:, k - 1] @ W_rec_T
        # grad_next is now dL/dS_0 for every sample.
        sum_axes = ([0, 1], [0, 1])
        grads = {
            "input.weight": np.tensordot(X, D, axes=sum_axes),
            "recurrent.weight": np.tensordot(S[:, :-1], D, axes=sum_axes),
            "output.weight": np.tensordot(S[:, 1:], grad_logits, axes=sum_axes),
        }
        if self.config.bias:
            # Both biases feed the same pre-activation, so they share a gradient (but not
            # an array: an optimizer may update one .grad in place).
            grads["input.bias"] = D.sum(axis=(0, 1))
            grads["recurrent.bias"] = grads["input.bias"].copy()
            grads["output.bias"] = grad_logits.sum(axis=(0, 1))
        if self.config.learn_initial_state:
            grads["initial_state"] = grad_next.sum(axis=0)
        return grads

    # --- input checks -----------------------------------------------------------------

    def _inputs(self, X: ArrayLike) -> NDArray:
        X_ = np.asarray(X, dtype=self.dtype)
        if X_.ndim != 3 or X_.shape[2] != 2 or X_.shape[1] < 1:
            raise ValueError(f"ReferenceAdder: X must have shape (N, L, 2), got {X_.shape}")
        return X_

    def _targets(self, T: ArrayLike, X: NDArray) -> NDArray:
        T_ = np.asarray(T, dtype=self.dtype)
        if T_.shape != X.shape[:2] + (1,):
            raise ValueError(
                f"ReferenceAdder: T must have shape {X.shape[:2] + (1,)}, got {T_.shape}"
            )
        return T_


def _bce_with_logits(logits: NDArray, T: NDArray) -> float:
    # -T log(sigmoid(a)) - (1 - T) log(1 - sigmoid(a)) = softplus(a) - T a, exactly.
    return float(np.mean(softplus(logits) - T * logits))


_ACTIVATIONS: dict[str, Callable[[NDArray], NDArray]] = {"tanh": np.tanh, "sigmoid": sigmoid}
# Derivatives expressed through the activation's output s = act(z).
_DERIVATIVES = {
    "tanh": lambda s: 1.0 - s * s,
    "sigmoid": lambda s: s * (1.0 - s),
}
