"""The binary adder RNN with backpropagation through time by hand, as part 2 of the tutorial
"How to implement an RNN" ("Implement binary addition with a non-linear RNN") writes it;
with a sigmoid state, no biases and a fixed zero S_0 it is the Keras model of "Understand
recurrent networks with the binary addition".

This is the yardstick for the engine's adder. It shares no code and no names with the
engine: its parameters are plain NumPy arrays named as in the write-up (W_in, b_in, W_rec,
b_rec, S_0, W_out, b_out), the two biases of the write-up stay two, and `forward` and
`backward` below are its equations. `minigrad.models.comparison` maps these names to the engine's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from ..presets import AdderConfig
from .param import Param, Parameters

__all__ = [
    "cross_entropy",
    "parameter_shapes",
    "ReferenceAdder",
    "backward",
    "forward",
    "initial_parameters",
    "sigmoid",
    "softplus",
]

_BIASES = ("b_in", "b_rec", "b_out")

Arrays = Mapping[str, NDArray]


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


_ACTIVATIONS: dict[str, Callable[[NDArray], NDArray]] = {"tanh": np.tanh, "sigmoid": sigmoid}
# Derivatives expressed through the activation's output s = act(z).
_DERIVATIVES: dict[str, Callable[[NDArray], NDArray]] = {
    "tanh": lambda s: 1.0 - s * s,
    "sigmoid": lambda s: s * (1.0 - s),
}


def parameter_shapes(config: AdderConfig) -> dict[str, tuple[int, ...]]:
    """The parameters ``config`` has, name -> shape, in the write-up's order: the biases
    only with ``config.bias``, S_0 only with ``config.learn_initial_state``."""
    n = config.n_states
    shapes = {"W_in": (2, n), "b_in": (n,), "W_rec": (n, n), "b_rec": (n,), "S_0": (n,),
              "W_out": (n, 1), "b_out": (1,)}
    return {name: shape for name, shape in shapes.items()
            if (config.bias or name not in _BIASES)
            and (config.learn_initial_state or name != "S_0")}


def initial_parameters(
    config: AdderConfig, rng: np.random.Generator, dtype: DTypeLike = np.float64
) -> dict[str, NDArray]:
    """Fresh parameters for ``config``, drawn from ``rng``, as the write-ups initialise them.

    Weights are drawn in the order W_in, W_rec, W_out:

    - W_in and W_out: Glorot uniform, ``U(-a, a)`` with ``a = sqrt(6 / (n_in + n_out))``,
      by ``rng.uniform(-a, a, shape)``;
    - W_rec, "glorot": ``U(-a, a)`` with ``a = sqrt(6 / (2 n_states))``; "orthogonal" (the
      Keras default): ``Q`` of the QR decomposition of ``rng.standard_normal((n, n))``, its
      columns' signs flipped so that ``diag(R) > 0`` (which makes ``Q`` Haar-distributed);
    - biases and S_0: zero.

    Returns name -> array of ``dtype``, in the order of `parameter_shapes`.
    """
    shapes = parameter_shapes(config)
    drawn = {
        "W_in": _glorot_uniform(rng, shapes["W_in"]),
        "W_rec": _recurrent_weight(rng, config.n_states, config.recurrent_init),
        "W_out": _glorot_uniform(rng, shapes["W_out"]),
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


def forward(p: Arrays, X: NDArray, activation: str) -> tuple[NDArray, NDArray]:
    """The states and the logits for inputs X (N, L, 2)::

        Z   = X W_in + b_in                           (all positions at once)
        S_k = act(Z_k + S_{k-1} W_rec + b_rec)        k = 1 .. L
        A   = S_{1..L} W_out + b_out                  (the logits, N x L x 1)

    An absent bias counts as zero, an absent S_0 as a zero state. Returns ``S`` of shape
    (N, L + 1, n) with ``S[:, 0] = S_0``, and ``A``.
    """
    act = _ACTIVATIONS[activation]
    W_in, W_rec, W_out = p["W_in"], p["W_rec"], p["W_out"]
    n_samples, length, _ = X.shape
    Z = X @ W_in + p.get("b_in", 0.0)
    b_rec = p.get("b_rec", 0.0)
    S = np.empty((n_samples, length + 1, W_rec.shape[0]), dtype=W_rec.dtype)
    S[:, 0] = p.get("S_0", 0.0)
    for k in range(1, length + 1):
        S[:, k] = act(Z[:, k - 1] + S[:, k - 1] @ W_rec + b_rec)
    A = S[:, 1:] @ W_out + p.get("b_out", 0.0)
    return S, A


def backward(p: Arrays, X: NDArray, T: NDArray, S: NDArray, A: NDArray,
             activation: str) -> dict[str, NDArray]:
    """The gradient of the mean binary cross-entropy ``mean(softplus(A) - T A)`` over the N
    samples and L positions, for every parameter in ``p``. With ``Y = sigmoid(A)`` and
    ``D_k`` the gradient at the pre-activation of step k::

        dL/dA   = (Y - T) / (N L)                     the classifier's gradient: no log taken
        dL/dS_k = dL/dA_k W_out^T + D_{k+1} W_rec^T   (no second term at k = L)
        D_k     = dL/dS_k * act'(S_k)                 act' = 1 - S^2 (tanh), S (1 - S) (sigmoid)
        dW_out  = sum_k S_k^T dL/dA_k                 db_out = sum dL/dA
        dW_rec  = sum_k S_{k-1}^T D_k                 db_rec = sum D
        dW_in   = sum_k X_k^T D_k                     db_in  = sum D
        dS_0    = sum over the samples of D_1 W_rec^T
    """
    W_rec, W_out = p["W_rec"], p["W_out"]
    derivative = _DERIVATIVES[activation]
    n_samples, length, _ = X.shape
    dA = (sigmoid(A) - T) / (n_samples * length)
    dS_from_output = dA @ W_out.T
    D = np.empty_like(dS_from_output)
    dS_from_next = np.zeros_like(dS_from_output[:, 0])
    for k in range(length, 0, -1):
        D[:, k - 1] = (dS_from_output[:, k - 1] + dS_from_next) * derivative(S[:, k])
        dS_from_next = D[:, k - 1] @ W_rec.T
    # dS_from_next now holds dL/dS_0 for every sample.
    over_samples_and_steps = ([0, 1], [0, 1])
    grads = {
        "W_in": np.tensordot(X, D, axes=over_samples_and_steps),
        "b_in": D.sum(axis=(0, 1)),
        "W_rec": np.tensordot(S[:, :-1], D, axes=over_samples_and_steps),
        "b_rec": D.sum(axis=(0, 1)),
        "S_0": dS_from_next.sum(axis=0),
        "W_out": np.tensordot(S[:, 1:], dA, axes=over_samples_and_steps),
        "b_out": dA.sum(axis=(0, 1)),
    }
    return {name: grads[name] for name in p}


def cross_entropy(A: NDArray, T: NDArray) -> float:
    """``mean(-T log Y - (1 - T) log(1 - Y))`` with ``Y = sigmoid(A)``, written as
    ``mean(softplus(A) - T A)`` (the same number), which stays finite when Y rounds to 0
    or 1."""
    return float(np.mean(softplus(A) - T * A))


class ReferenceAdder(Parameters):
    """The adder of ``config`` on plain arrays, with `forward` and `backward` by hand.

    Inputs ``X`` are (N, L, 2), two operand bits per position, least significant first;
    targets ``T`` are (N, L, 1). The parameters (see `parameter_shapes`) are attributes
    named as in the write-up, each a `Param` (an array ``.data`` and its ``.grad``), so
    that the optimizers of `optim` can train this model as they train the engine's.

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
            values = {name: np.zeros(shape, self.dtype)
                      for name, shape in parameter_shapes(config).items()}
        else:
            values = initial_parameters(config, rng, self.dtype)
        self._params = {name: Param(value) for name, value in values.items()}

    def __getattr__(self, name: str) -> Param:
        # W_in, b_in, ... as attributes; only called for names not found the usual way.
        params = self.__dict__.get("_params", {})
        if name in params:
            return params[name]
        raise AttributeError(f"ReferenceAdder has no attribute {name!r}")

    # --- parameters -------------------------------------------------------------------

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
        cast = {name: np.array(arrays[name], dtype=self.dtype) for name in self._params}
        for name, param in self._params.items():  # (every value cast before any is set)
            param.data = cast[name]

    # --- forward and backward ---------------------------------------------------------

    def _arrays(self) -> dict[str, NDArray]:
        return {name: param.data for name, param in self._params.items()}

    def forward(self, X: ArrayLike) -> NDArray:
        """The probabilities ``Y = sigmoid(A)`` that each output bit is 1, (N, L, 1)."""
        _, A = forward(self._arrays(), self._inputs(X), self.config.activation)
        return sigmoid(A)

    def predict_bits(self, X: ArrayLike) -> NDArray:
        """``[Y > 0.5]`` as 0/1 in the model's dtype, shape ``(N, L, 1)``."""
        return (self.forward(X) > 0.5).astype(self.dtype)

    def loss(self, X: ArrayLike, T: ArrayLike) -> float:
        """Mean binary cross-entropy over samples and positions (`cross_entropy`)."""
        X_ = self._inputs(X)
        T_ = self._targets(T, X_)
        _, A = forward(self._arrays(), X_, self.config.activation)
        return cross_entropy(A, T_)

    def loss_and_backward(self, X: ArrayLike, T: ArrayLike) -> float:
        """The loss; adds every parameter's gradient into its ``.grad`` (None -> set)."""
        X_ = self._inputs(X)
        T_ = self._targets(T, X_)
        p = self._arrays()
        S, A = forward(p, X_, self.config.activation)
        grads = backward(p, X_, T_, S, A, self.config.activation)
        for name, param in self._params.items():
            param.grad = grads[name] if param.grad is None else param.grad + grads[name]
        return cross_entropy(A, T_)

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
