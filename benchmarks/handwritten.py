"""The benchmarks' baseline: the adder and the counter in the fastest NumPy we know to write.

`minigrad.models.reference` is written the way the tutorial writes it (batch-major arrays, a weight
gradient assembled from per-step pieces, fresh temporaries for every expression); it is a
yardstick of correctness, not of speed. The classes here compute the same losses and
gradients the way a user who cares about speed would, so that a ratio "engine / hand-written"
measures what the engine costs over the best plain NumPy, not over a slow example.

`HandwrittenAdder`, for X (N, L, 2), T (N, L, 1), M = N L samples-times-positions:

    S_0 = s_0 (learned) or 0,   S_k = act(X_k W_in + b_in + b_rec + S_{k-1} W_rec)
    A = S_{1..L} W_out + b_out,                 loss = mean(softplus(A) - T A)
    G = dloss/dA = (sigmoid(A) - T) / M
    D_k = (G_k W_out^T + D_{k+1} W_rec^T) * act'(S_k)    (no second term at k = L)
    dW_out = S_{1..L}^T G    dW_rec = S_{0..L-1}^T D    dW_in = X^T D    (each one product)
    db_out = sum G    db_in = db_rec = sum D    ds_0 = W_rec (sum over samples of D_1)

How it is fast:

- time-major buffers (L, N, ·): every per-step slice is contiguous, and "all positions" is
  a plain (M, ·) matrix, so each weight gradient is one matrix product over all M rows
  instead of L products and L additions;
- three NumPy calls per timestep each way (tanh): forward `S_{k-1} W_rec` into a work array, add
  into S_k (which already holds the input term, computed for all steps at once), the
  activation in place; backward the carried product, the add, the multiply by act';
- act'(S) for all steps in two passes before the backward loop, not three per step;
- both biases folded into the input term once, not added per step;
- every array preallocated once per (N, L) and reused (`out=` everywhere), so a step
  allocates nothing the size of the data.

`HandwrittenCounter` is the tutorial's backpropagation through time for the counter
(s_k = s_{k-1} w_rec + x_k w_x forward, dL/ds_{k-1} = dL/ds_k w_rec backward), vectorised
over the batch and preallocated: the benchmark's baseline for the counter.
`ClosedFormCounter` uses that the counter is linear: unrolled, s_T = w_x sum_k x_k
w_rec^(T-k), so its forward and its whole backward through time are one (n, T) by (T, 2)
matrix product (see its docstring); algebra, not backpropagation, an extra row.

All follow the protocol of `minigrad.models.reference` (`parameters()`, `zero_grad()`,
`loss_and_backward(X, T)`), so the plain NumPy updates of `benchmarks.updates` (and
`optim`'s optimizers) drive them as they drive the tutorial-style reference. Gradients
are written into arrays the model owns: `.grad` is set to them (or, if it already holds a
gradient, to the sum); a `.grad` still holding the previous call's array is first copied
out, so accumulating without `zero_grad` stays right. The parameters' arrays, and the
gradient arrays, are each views of one flat buffer (`laid_end_to_end`), so that the plain
updates run once over the two buffers, as the fastest hand-written update does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from minigrad.models.presets import AdderConfig
from minigrad.models.reference.param import Param, Parameters

from .updates import end_to_end, tiled

__all__ = ["ClosedFormCounter", "HandwrittenAdder", "HandwrittenCounter", "bce_with_logits",
           "laid_end_to_end"]


def checked_parameters(owner: str, parameters: Mapping[str, ArrayLike],
                       shapes: Mapping[str, tuple[int, ...]], dtype: np.dtype
                       ) -> tuple[dict[str, Param], dict[str, NDArray]]:
    """A hand-written model's parameters (copies in `dtype`, named and shaped as `shapes`
    says, else a ValueError naming `owner`) and its gradient arrays, each set laid end to
    end in one flat buffer (`laid_end_to_end`)."""
    if set(parameters) != set(shapes):
        raise ValueError(f"{owner}: parameters must be named {sorted(shapes)}, "
                         f"got {sorted(parameters)}")
    values = {}
    for name, shape in shapes.items():
        value = np.asarray(parameters[name])
        if value.shape != shape:
            raise ValueError(f"{owner}: parameter {name} must have shape {shape}, "
                             f"got {value.shape}")
        values[name] = value
    return laid_end_to_end(values, dtype)


def laid_end_to_end(values: Mapping[str, ArrayLike], dtype: DTypeLike
                    ) -> tuple[dict[str, Param], dict[str, NDArray]]:
    """Parameters holding copies of `values` in `dtype`, and gradient arrays of their shapes,
    each set views of one flat buffer: the plain updates (`benchmarks.updates`) then run
    once over the two buffers, with no copy in or out."""
    arrays = {name: np.asarray(value) for name, value in values.items()}
    shapes = [a.shape for a in arrays.values()]
    _, data = end_to_end(shapes, dtype)
    _, grads = end_to_end(shapes, dtype)
    for view, value in zip(data, arrays.values(), strict=True):
        view[...] = value
    return ({name: Param(view) for name, view in zip(arrays, data, strict=True)},
            dict(zip(arrays, grads, strict=True)))


def _hand_over(params: Mapping[str, Param], grads: Mapping[str, NDArray]) -> None:
    """Set each parameter's `.grad` to the model's gradient array, or add it to a gradient
    the caller is accumulating (a new array: the caller's is not written to)."""
    for name, param in params.items():
        param.grad = grads[name] if param.grad is None else param.grad + grads[name]


def _detach_kept(params: Mapping[str, Param], grads: Mapping[str, NDArray]) -> None:
    """Copy out any `.grad` that is still the model's own array (kept from the last call,
    no `zero_grad` since), before this call overwrites it."""
    for name, param in params.items():
        if param.grad is grads[name]:
            param.grad = param.grad.copy()


def bce_with_logits(A: NDArray, T: NDArray, e: NDArray, work: NDArray, work2: NDArray,
                    nonnegative: NDArray) -> float:
    """The mean of softplus(A) - T A over the logits A; A is overwritten with its gradient
    G = (sigmoid(A) - T) / A.size. `e`, `work`, `work2` (A's shape and dtype) and
    `nonnegative` (bool) are scratch.

    Both are computed as the engine's `binary_cross_entropy_with_logits` computes them (the
    same operations in the same order), so they agree to the last bit on the same logits.
    """
    np.abs(A, out=e)
    np.negative(e, out=e)
    np.exp(e, out=e)                        # e = exp(-|A|) <= 1: never overflows
    np.maximum(A, 0.0, out=work)            # softplus(A) - T A
    np.multiply(A, T, out=work2)            #   = max(A, 0) - T A + log1p(e)
    np.subtract(work, work2, out=work)
    np.log1p(e, out=work2)
    np.add(work, work2, out=work)
    loss = float(np.sum(work)) / A.size
    # sigmoid(A) = 1 / (1 + e) where A >= 0, e / (1 + e) elsewhere.
    np.greater_equal(A, 0.0, out=nonnegative)
    np.add(e, 1.0, out=work)
    np.copyto(e, 1.0, where=nonnegative)
    np.divide(e, work, out=e)
    np.subtract(e, T, out=A)
    np.multiply(A, 1.0 / A.size, out=A)
    return loss


@dataclass
class _AdderBuffers:
    """Everything one step of the adder writes, for one (N, L); time-major."""

    X: NDArray          # (L, N, 2) the inputs
    T: NDArray          # (L * N, 1) the targets
    S: NDArray          # (L + 1, N, n) the states, S[0] = S_0
    logits: NDArray     # (L * N, 1); then dloss/dlogits
    e: NDArray          # (L * N, 1) exp(-|logits|)
    work: NDArray       # (L * N, 1)
    work2: NDArray      # (L * N, 1)
    nonnegative: NDArray  # (L * N, 1) bool: logits >= 0
    D: NDArray          # (L, N, n) dloss/d(pre-activation)
    derivative: NDArray  # (L, N, n) act'(S_k)
    carry: NDArray      # (N, n) S_{k-1} W_rec, then D_{k+1} W_rec^T
    column_sum: NDArray  # (n,)

    def __post_init__(self) -> None:
        # The per-step slices, made once: indexing in the loops would make new views on
        # every step of every call.
        self.S_k = list(self.S)
        self.D_k = list(self.D)
        self.derivative_k = list(self.derivative)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self.__dataclass_fields__)


class HandwrittenAdder(Parameters):
    """The adder RNN of `config` (tanh or sigmoid, with or without biases and a learned
    S_0) with the fastest hand-written BPTT we know; see the module docstring for the math.

    `parameters` (name -> array, the names and shapes of `config.parameter_shapes()`) are
    copied and cast to `dtype` (float64 or float32), in which everything is computed.
    """

    def __init__(self, config: AdderConfig, parameters: Mapping[str, ArrayLike], *,
                 dtype: DTypeLike = np.float64) -> None:
        self.config = config
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise ValueError(f"HandwrittenAdder: dtype must be float64 or float32, "
                             f"got {self.dtype}")
        shapes = config.parameter_shapes()
        self._params, self._grads = checked_parameters("HandwrittenAdder", parameters, shapes,
                                                       self.dtype)
        self._buffers: _AdderBuffers | None = None

    @property
    def workspace_bytes(self) -> int:
        """Bytes of the buffers kept between calls (0 after `release_buffers`)."""
        return 0 if self._buffers is None else self._buffers.nbytes

    def release_buffers(self) -> None:
        """Drop the step buffers; the next call allocates them afresh."""
        self._buffers = None

    def _buffers_for(self, n_samples: int, length: int) -> _AdderBuffers:
        b = self._buffers
        if b is not None and b.X.shape[:2] == (length, n_samples):
            return b
        self._buffers = None  # free the old buffers before allocating the new ones
        n, m, dt = self.config.n_states, length * n_samples, self.dtype
        b = self._buffers = _AdderBuffers(
            X=np.empty((length, n_samples, 2), dt), T=np.empty((m, 1), dt),
            S=np.empty((length + 1, n_samples, n), dt), logits=np.empty((m, 1), dt),
            e=np.empty((m, 1), dt), work=np.empty((m, 1), dt), work2=np.empty((m, 1), dt),
            nonnegative=np.empty((m, 1), bool), D=np.empty((length, n_samples, n), dt),
            derivative=np.empty((length, n_samples, n), dt),
            carry=np.empty((n_samples, n), dt), column_sum=np.empty(n, dt))
        return b

    def loss_and_backward(self, X: ArrayLike, T: ArrayLike) -> float:
        """The mean binary cross-entropy; every parameter's gradient into its `.grad`."""
        X_ = np.asarray(X)
        T_ = np.asarray(T)
        if X_.ndim != 3 or X_.shape[1] < 1 or X_.shape[2] != 2:
            raise ValueError(f"HandwrittenAdder: X must have shape (N, L, 2), got {X_.shape}")
        if T_.shape != X_.shape[:2] + (1,):
            raise ValueError(f"HandwrittenAdder: T must have shape {X_.shape[:2] + (1,)}, "
                             f"got {T_.shape}")
        n_samples, length, _ = X_.shape
        b = self._buffers_for(n_samples, length)
        np.copyto(b.X, X_.transpose(1, 0, 2))
        np.copyto(b.T.reshape(length, n_samples, 1), T_.transpose(1, 0, 2))
        _detach_kept(self._params, self._grads)
        self._forward(b)
        loss = self._loss_and_output_gradient(b)
        self._backward(b)
        _hand_over(self._params, self._grads)
        return loss

    def _activate(self, a: NDArray) -> None:
        if self.config.activation == "tanh":
            np.tanh(a, out=a)
        else:  # sigmoid(a) = (1 + tanh(a / 2)) / 2: no overflow, no temporary
            np.multiply(a, 0.5, out=a)
            np.tanh(a, out=a)
            np.add(a, 1.0, out=a)
            np.multiply(a, 0.5, out=a)

    def _forward(self, b: _AdderBuffers) -> None:
        p = {name: param.data for name, param in self._params.items()}
        length, n_samples, _ = b.X.shape
        n = self.config.n_states
        S, W = b.S, p["recurrent.weight"]
        inputs = S[1:].reshape(length * n_samples, n)  # S_1..S_L start as the input terms
        np.matmul(b.X.reshape(-1, 2), p["input.weight"], out=inputs)
        if self.config.bias:
            np.add(inputs, p["input.bias"] + p["recurrent.bias"], out=inputs)
        S[0] = p["initial_state"] if self.config.learn_initial_state else 0.0
        carry, S_k, activate = b.carry, b.S_k, self._activate
        for k in range(1, length + 1):
            np.matmul(S_k[k - 1], W, out=carry)
            np.add(S_k[k], carry, out=S_k[k])
            activate(S_k[k])
        np.matmul(inputs, p["output.weight"], out=b.logits)
        if self.config.bias:
            np.add(b.logits, p["output.bias"], out=b.logits)

    def _loss_and_output_gradient(self, b: _AdderBuffers) -> float:
        """The loss; `b.logits` is overwritten with G = (sigmoid(A) - T) / M."""
        return bce_with_logits(b.logits, b.T, b.e, b.work, b.work2, b.nonnegative)

    def _backward(self, b: _AdderBuffers) -> None:
        p = {name: param.data for name, param in self._params.items()}
        g = self._grads
        length, n_samples, _ = b.X.shape
        n = self.config.n_states
        m = length * n_samples
        G, S, D, dS = b.logits, b.S, b.D, b.derivative
        states = S[1:].reshape(m, n)
        np.matmul(states.T, G, out=g["output.weight"])
        # D starts as dloss/dS_k from each position's own output: G W_out^T, one outer product.
        np.multiply(G, p["output.weight"].T, out=D.reshape(m, n))
        if self.config.activation == "tanh":      # act' = 1 - S^2
            np.multiply(S[1:], S[1:], out=dS)
            np.subtract(1.0, dS, out=dS)
        else:                                     # act' = S (1 - S) = S - S^2
            np.multiply(S[1:], S[1:], out=dS)
            np.subtract(S[1:], dS, out=dS)
        W_T = p["recurrent.weight"].T
        carry, D_k, dS_k = b.carry, b.D_k, b.derivative_k
        np.multiply(D_k[-1], dS_k[-1], out=D_k[-1])
        for k in range(length - 2, -1, -1):
            np.matmul(D_k[k + 1], W_T, out=carry)
            np.add(D_k[k], carry, out=D_k[k])
            np.multiply(D_k[k], dS_k[k], out=D_k[k])
        D_all = D.reshape(m, n)
        np.matmul(S[:-1].reshape(m, n).T, D_all, out=g["recurrent.weight"])
        np.matmul(b.X.reshape(m, 2).T, D_all, out=g["input.weight"])
        if self.config.bias:
            np.sum(D_all, axis=0, out=g["input.bias"])
            np.copyto(g["recurrent.bias"], g["input.bias"])
            np.sum(G, axis=0, out=g["output.bias"])
        if self.config.learn_initial_state:
            # sum_i D_1[i] W_rec^T = W_rec (sum_i D_1[i]): one vector, not N rows.
            np.sum(D[0], axis=0, out=b.column_sum)
            np.matmul(p["recurrent.weight"], b.column_sum, out=g["initial_state"])


class ClosedFormCounter(Parameters):
    """The counter of tutorial part 1 (s_0 = 0, s_k = s_{k-1} w_rec + x_k w_x, loss the
    mean of (s_T - t)^2 over n sequences), forward and backward as one matrix product: an
    extra row of the benchmark, algebra rather than backpropagation (the baseline is
    `HandwrittenCounter`'s loop).

    Unrolled, s_T = w_x u with u = sum_k x_k w_rec^(T-k) = X q, q_k = w_rec^(T-k), so::

        dloss/ds_T = g = 2 (s_T - t) / n
        dloss/dw_x   = g . u
        dloss/dw_rec = w_x g . (X q'),   q'_k = dq_k/dw_rec = (T-k) w_rec^(T-k-1)

    which is backpropagation through time summed in closed form (the state gradient
    g w_rec^(T-k) of every step is folded into q'). [u, X q'] = X [q, q'] is one product.
    The parameters are 0-d float64 arrays named "w_x" and "w_rec", as in the reference.
    """

    def __init__(self, w_x: float, w_rec: float) -> None:
        self._params, self._grads = laid_end_to_end({"w_x": w_x, "w_rec": w_rec}, np.float64)
        self._length = -1
        self._powers = np.empty(0)        # w_rec^0 .. w_rec^(T-1)
        self._q = np.empty((0, 2))        # [q, q'] as columns
        self._exponents = np.empty(0)     # T-1 .. 1: the factors of q'

    def loss_and_backward(self, X: ArrayLike, t: ArrayLike) -> float:
        """The mean squared error of s_T; dloss/dw_x and dloss/dw_rec into `.grad`."""
        X_ = np.asarray(X, dtype=np.float64)
        if X_.ndim != 2 or X_.shape[1] < 1:
            raise ValueError(f"ClosedFormCounter: X must have shape (n, T), got {X_.shape}")
        t_ = np.asarray(t, dtype=np.float64)
        if t_.size != X_.shape[0]:
            raise ValueError(f"ClosedFormCounter: t must hold {X_.shape[0]} targets, got "
                             f"shape {t_.shape}")
        t_ = t_.reshape(-1)
        n, length = X_.shape
        if length != self._length:
            self._length = length
            self._powers = np.empty(length)
            self._q = np.zeros((length, 2))
            self._exponents = np.arange(length - 1, 0, -1, dtype=np.float64)
        w_x = float(self._params["w_x"].data)
        w_rec = float(self._params["w_rec"].data)
        powers, q = self._powers, self._q
        powers.fill(w_rec)
        powers[0] = 1.0
        np.cumprod(powers, out=powers)
        q[:, 0] = powers[::-1]
        # q'_k = (T-k) w_rec^(T-k-1) for k < T; q'_T = 0 (the last input is not multiplied).
        np.multiply(self._exponents, powers[-2::-1], out=q[:-1, 1])
        u = X_ @ q                           # (n, 2): [X q, X q']
        residual = w_x * u[:, 0] - t_        # s_T - t
        _detach_kept(self._params, self._grads)
        g_u = (2.0 / n) * residual @ u       # [g . u, g . X q']
        self._grads["w_x"][()] = g_u[0]
        self._grads["w_rec"][()] = w_x * g_u[1]
        _hand_over(self._params, self._grads)
        return float(residual @ residual) / n


def _counter_data(where: str, X: ArrayLike, t: ArrayLike) -> tuple[NDArray, NDArray]:
    """X as (n, T) float64 and t as (n,), or a ValueError naming `where`."""
    X_ = np.asarray(X, dtype=np.float64)
    if X_.ndim != 2 or X_.shape[1] < 1:
        raise ValueError(f"{where}: X must have shape (n, T), got {X_.shape}")
    t_ = np.asarray(t, dtype=np.float64)
    if t_.size != X_.shape[0]:
        raise ValueError(f"{where}: t must hold {X_.shape[0]} targets, got shape {t_.shape}")
    return X_, t_.reshape(-1)


class HandwrittenCounter(Parameters):
    """The counter of tutorial part 1 by the tutorial's backpropagation through time,
    vectorised over the n sequences::

        s_0 = 0,  s_k = s_{k-1} w_rec + x_k w_x          (forward, k = 1 .. T)
        d_T = dloss/ds_T = 2 (s_T - t) / n,  d_{k-1} = d_k w_rec   (backward)
        dloss/dw_x = sum_k d_k . x_k      dloss/dw_rec = sum_k d_k . s_{k-1}

    Every array is preallocated and stored in reversed time (row j holds step T - j), so:

    - the backward recursion is one `np.multiply.accumulate` down [d_T, w_rec, w_rec, ...]:
      the loop's very multiplications, in its order, in one call;
    - [x_k; s_{k-1}] for all k is one (2, T n) matrix, so both gradients are one
      matrix-vector product with [d_k] into the model's flat gradient buffer;
    - the weights enter as Python floats (a ufunc takes those fastest).

    The parameters are 0-d float64 arrays named "w_x" and "w_rec", as in the reference.
    """

    def __init__(self, w_x: float, w_rec: float) -> None:
        self._params, self._grads = laid_end_to_end({"w_x": w_x, "w_rec": w_rec}, np.float64)
        flat_gradient = tiled(list(self._grads.values()))
        assert flat_gradient is not None  # laid_end_to_end lays them so
        self._flat_gradient = flat_gradient
        self._shape = (-1, -1)

    def _buffers_for(self, n: int, length: int) -> None:
        if self._shape == (n, length):
            return
        self._shape = (n, length)
        # [x; s_prev][:, j] = [x_{T-j}; s_{T-j-1}]; the last row of s_prev is s_0 = 0, kept.
        self._inputs_and_states = np.zeros((2, length, n))
        self._X, states = self._inputs_and_states
        self._XW = np.empty((length, n))            # x_{T-j} w_x
        self._deltas = np.empty((length, n))        # d_{T-j}
        self._later = self._deltas[1:]              # w_rec before the accumulation
        self._last = np.empty(n)                    # s_T
        # Step k reads s_{k-1} (row T-k) and x_k w_x (row T-k), writes s_k (row T-k-1).
        steps = [(states[length - k], self._XW[length - k], states[length - k - 1])
                 for k in range(1, length)]
        self._steps = [*steps, (states[0], self._XW[0], self._last)]

    def loss_and_backward(self, X: ArrayLike, t: ArrayLike) -> float:
        """The mean squared error of s_T; dloss/dw_x and dloss/dw_rec into `.grad`."""
        X_, t_ = _counter_data("HandwrittenCounter", X, t)
        n, length = X_.shape
        self._buffers_for(n, length)
        w_x, w_rec = float(self._params["w_x"].data), float(self._params["w_rec"].data)
        multiply, add = np.multiply, np.add
        np.copyto(self._X, X_.T[::-1])
        multiply(self._X, w_x, out=self._XW)
        for previous, input_term, state in self._steps:
            multiply(previous, w_rec, out=state)
            add(state, input_term, out=state)
        deltas = self._deltas
        residual = deltas[0]
        np.subtract(self._last, t_, out=residual)   # s_T - t
        loss = float(residual @ residual) / n
        multiply(residual, 2.0 / n, out=residual)   # d_T
        self._later.fill(w_rec)
        multiply.accumulate(deltas, axis=0, out=deltas)  # d_{k-1} = d_k w_rec, in order
        _detach_kept(self._params, self._grads)
        np.matmul(self._inputs_and_states.reshape(2, -1), deltas.reshape(-1),
                  out=self._flat_gradient)
        _hand_over(self._params, self._grads)
        return loss
