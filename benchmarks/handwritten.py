"""The benchmarks' baseline: the adder and the counter in the fastest NumPy we know to write.

`minigrad.models.reference` is written the way the tutorial writes it (batch-major arrays, a weight
gradient assembled from per-step pieces, fresh temporaries for every expression); it is a
yardstick of correctness, not of speed. The classes here compute the same losses and
gradients the way a user who cares about speed would, so that a ratio "engine / hand-written"
measures what the engine costs over the best plain NumPy, not over a slow example.

`HandwrittenAdder`, for X (N, L, 2), T (N, L, 1), M = N L samples-times-positions, in the
features-by-samples orientation (S_j is (n, N), x_j is (2, N)):

    S_0 = s_0 (learned) or 0,   S_j = act(W_in^T x_j + b_in + b_rec + W_rec^T S_{j-1})
    A_j = W_out^T S_j + b_out,                  loss = mean(softplus(A) - T A)
    G = dloss/dA = (sigmoid(A) - T) / M
    D_j = (W_rec D_{j+1} + W_out G_j) * act'(S_j)    (D_{L+1} = 0)
    dW_in = sum_j x_j D_j^T   dW_rec = sum_j S_{j-1} D_j^T   db_in = db_rec = sum D
    dW_out = sum_j S_j G_j^T   db_out = sum G               ds_0 = W_rec (sum over samples of D_1)

How it is fast (every call a NumPy call on a contiguous block, as few as the math allows):

- one stacked matrix per step each way. The parameters, laid end to end in their canonical
  order, begin with [W_in; b_in; W_rec; b_rec]: one (F, n) matrix Q, F = n + 4 (n + 2
  without biases), a view of the flat buffer. The inputs live in U (L + 1, F, N), time-major
  blocks with U[j] = [x_{j+1}; 1; S_j; 1], so S_j = act(Q^T U[j - 1]) is one product
  written straight into U[j]'s state rows and the activation in place: two calls per step,
  input projection and both biases included. Backward, E (L + 1, n + 1, N) holds
  E[j] = [D_{j+1}; G_j], so D_j = ([W_rec | W_out] E[j]) * act'(S_j) is one product and one
  multiply per step, the readout's gradient included ([W_rec | W_out] is one concatenate
  per call);
- the readout [W_out; b_out] . [S_j; 1] for all j is one product (the rows [S_j; 1] are
  adjacent in U), and every weight gradient is one batched product sum_j U[j] E[j]^T,
  whose columns are [dQ | d[W_out; b_out]], summed over j by one matrix-vector product and
  copied into the model's flat gradient buffer: no per-parameter product, sum or bias add;
- the loss in twelve elementwise calls: softplus(A) = max(A, 0) + log1p(exp(-|A|)) (several
  times faster than np.logaddexp, which is not vectorised), sigmoid(A) = exp(A -
  softplus(A)), the loss sum(softplus) - T . A. It agrees with the engine's to rounding of
  the logits (the engine's fused formula subtracts T A per element);
- act'(S) for all steps in two calls before the backward loop; the batched product reuses
  act'(S)'s buffer once it is dead (when it fits);
- every array preallocated once per (N, L) and reused (`out=` everywhere), the per-step
  slices made once, so a step allocates nothing the size of the data.

`HandwrittenCounter` is the tutorial's backpropagation through time for the counter
(s_k = s_{k-1} w_rec + x_k w_x forward, dL/ds_{k-1} = dL/ds_k w_rec backward), vectorised
over the batch and preallocated, time stored in reverse so that the backward recursion is
one `np.multiply.accumulate` and both gradients one matrix-vector product: the benchmark's
baseline for the counter.
`ClosedFormCounter` uses that the counter is linear: unrolled, s_T = w_x sum_k x_k
w_rec^(T-k), so its forward and its whole backward through time are one (n, T) by (T, 2)
matrix product (see its docstring); algebra, not backpropagation, an extra row.

Each is a `HandwrittenModel`: its parameters' arrays, and its gradient arrays, are each
views of one flat buffer (`laid_end_to_end`), and `compute_gradients(X, T)` writes every
gradient into the model's own arrays. The benchmark's hand-written step is that and a plain
NumPy update of `benchmarks.updates` run once over the two flat buffers, as a hand-writer's
own loop does (`benchmarks.steps.flat_step`). `loss_and_backward(X, T)` wraps it in the
protocol of `minigrad.models.reference` (`parameters()`, `zero_grad()`, `.data`, `.grad`)
that `optim`'s optimizers and the tests use: a `.data` replaced by assignment (which the
protocol allows) is first copied into its view, `.grad` is set to the model's array (or,
if it already holds a gradient, to the sum), and a `.grad` still holding the previous
call's array is first copied out, so accumulating without `zero_grad` stays right.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from minigrad.models.presets import AdderConfig
from minigrad.models.reference.param import Param, Parameters

from .updates import end_to_end, tiled

__all__ = ["AdderModel", "ClosedFormCounter", "HandwrittenAdder", "HandwrittenCounter",
           "HandwrittenModel", "bce_with_logits", "laid_end_to_end"]


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


class HandwrittenModel(Parameters):
    """A hand-written model whose parameters, and whose gradients, are each views of one
    flat buffer (`flat_parameters`, `flat_gradients`, laid out by `_lay_out`).

    A subclass implements `compute_gradients(X, T)`: the loss, every gradient written into
    the model's own gradient arrays, the parameters read from their views; nothing else.
    That is the benchmark's hand-written step, its update running on the two flat buffers
    (`benchmarks.updates.FlatBuffers`). `loss_and_backward` wraps it in the `Parameters`
    protocol that `optim` and the tests use: a `.data` replaced by assignment is copied into
    its view first, and the gradients are handed over in `.grad` (added to any there).
    """

    _grads: dict[str, NDArray]
    flat_parameters: NDArray
    flat_gradients: NDArray

    def _lay_out(self, params: dict[str, Param], grads: dict[str, NDArray]) -> None:
        self._params, self._grads = params, grads
        self._views = [(param, param.data) for param in params.values()]
        data, gradients = tiled([p.data for p in params.values()]), tiled(list(grads.values()))
        assert data is not None and gradients is not None  # laid_end_to_end lays them so
        self.flat_parameters, self.flat_gradients = data, gradients

    def compute_gradients(self, X: ArrayLike, T: ArrayLike) -> float:
        """The loss on (X, T); every gradient into the model's own arrays."""
        raise NotImplementedError

    def loss_and_backward(self, X: ArrayLike, T: ArrayLike) -> float:
        """The loss on (X, T); every parameter's gradient into its `.grad`."""
        for param, view in self._views:
            if param.data is not view:
                view[...] = param.data
                param.data = view
        _detach_kept(self._params, self._grads)
        loss = self.compute_gradients(X, T)
        _hand_over(self._params, self._grads)
        return loss


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


def bce_with_logits(A: NDArray, T: NDArray, G: NDArray, scale: float, e: NDArray,
                    work: NDArray, nonnegative: NDArray) -> float:
    """The sum of softplus(A) - T A over the logits A, each A (step(A) - T) + log1p(e) with
    e = exp(-|A|): a sum of two terms >= 0 for T in [0, 1] (the difference of two sums would
    cancel where the answers are confidently right); G = (sigmoid(A) - T) scale, sigmoid(A)
    = 1 / (1 + e) where A >= 0, e / (1 + e) elsewhere. G may be A itself. `e`, `work` (A's
    shape and dtype) and `nonnegative` (bool) are scratch.

    Both are computed as the engine's `binary_cross_entropy_with_logits` computes them (the
    same operations in the same order), so they agree to the last bit on the same logits:
    the loss as the sum over A.size, the gradient with scale 1 / A.size.
    """
    np.abs(A, out=e)
    np.negative(e, out=e)
    np.exp(e, out=e)                        # e = exp(-|A|) <= 1: never overflows
    np.greater_equal(A, 0.0, out=nonnegative)
    np.heaviside(A, 0.0, out=work)          # softplus(A) - T A = max(A, 0) - T A + log1p(e)
    np.subtract(work, T, out=work)          #   = A (step(A) - T) + log1p(e): A (1 - T)
    np.multiply(A, work, out=work)          #   where A > 0, -A T elsewhere (no cancelling)
    np.log1p(e, out=G)                      # (A is read no more: G may be A)
    np.add(work, G, out=work)
    total = float(np.sum(work))
    np.add(e, 1.0, out=work)
    np.divide(e, work, out=G)
    np.divide(1.0, work, out=G, where=nonnegative)
    np.subtract(G, T, out=G)
    np.multiply(G, scale, out=G)
    return total


@dataclass
class _AdderBuffers:
    """Everything one step of the adder writes, for one (N, L): time-major blocks, each
    step's slice a contiguous (features, N) matrix."""

    U: NDArray          # (L + 1, F, N): U[j] = [x_{j+1}; 1; S_j; 1] (the 1s with biases)
    T: NDArray          # (L, N) the targets
    logits: NDArray     # (L, N) A
    softplus: NDArray   # (L, N) softplus(A)
    work: NDArray       # (L, N)
    nonnegative: NDArray  # (L, N) bool: A >= 0
    derivative: NDArray  # (L, n, N) act'(S_j)
    E: NDArray          # (L + 1, n + 1, N): E[j] = [D_{j+1}; G_j], D_{L+1} = G_0 = 0
    products: NDArray   # (L + 1, F, n + 1): U[j] E[j]^T (in act'(S)'s buffer if it fits)
    ones: NDArray       # (L + 1,)
    summed: NDArray     # (F, n + 1): sum_j U[j] E[j]^T
    backward_matrix: NDArray  # (n, n + 1) [W_rec | W_out]
    column_sum: NDArray  # (n,)
    first: int          # U's first state row: 2 + bias

    def __post_init__(self) -> None:
        # The per-step slices, made once: indexing in the loops would make new views on
        # every step of every call.
        length, n, first = self.T.shape[0], self.E.shape[1] - 1, self.first
        self.states = self.U[1:, first:first + n]                # S_1 .. S_L
        self.readout_inputs = self.U[1:, first:]                 # [S_j; 1]
        self.inputs = self.U[:length, :2]                        # x_1 .. x_L
        self.initial_state = self.U[0, first:first + n]          # S_0
        self.gradients = self.E[1:, n]                           # G_1 .. G_L
        self.forward_steps = [(self.U[j - 1], self.U[j, first:first + n])
                              for j in range(1, length + 1)]
        self.backward_steps = [(self.E[j], self.E[j - 1, :n], self.derivative[j - 1])
                               for j in range(length, 0, -1)]
        self.first_deltas = self.E[0, :n]                        # D_1

    @property
    def nbytes(self) -> int:
        arrays = [getattr(self, name) for name in self.__dataclass_fields__ if name != "first"]
        return sum(a.nbytes for a in arrays if a.base is None)  # a view adds no bytes


class AdderModel(HandwrittenModel):
    """What the hand-written adders share: the config, a dtype (float64 or float32) in which
    everything is computed, the parameters (copies, named and shaped as
    `config.parameter_shapes()` says) laid out, the step's buffers kept between calls, and
    the check of a minibatch."""

    _buffers: Any

    def __init__(self, config: AdderConfig, parameters: Mapping[str, ArrayLike],
                 dtype: DTypeLike) -> None:
        name = type(self).__name__
        self.config = config
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise ValueError(f"{name}: dtype must be float64 or float32, got {self.dtype}")
        self._lay_out(*checked_parameters(name, parameters, config.parameter_shapes(),
                                          self.dtype))
        self._buffers = None

    @property
    def workspace_bytes(self) -> int:
        """Bytes of the buffers kept between calls (0 after `release_buffers`)."""
        return 0 if self._buffers is None else self._buffers.nbytes

    def release_buffers(self) -> None:
        """Drop the step buffers; the next call allocates them afresh."""
        self._buffers = None

    def _minibatch(self, X: ArrayLike, T: ArrayLike) -> tuple[NDArray, NDArray]:
        """X (N, L, 2) and T (N, L, 1) as arrays, or a ValueError naming the model."""
        X_, T_ = np.asarray(X), np.asarray(T)
        name = type(self).__name__
        if X_.ndim != 3 or X_.shape[1] < 1 or X_.shape[2] != 2:
            raise ValueError(f"{name}: X must have shape (N, L, 2), got {X_.shape}")
        if T_.shape != X_.shape[:2] + (1,):
            raise ValueError(f"{name}: T must have shape {X_.shape[:2] + (1,)}, got {T_.shape}")
        return X_, T_

    def _activate(self, a: NDArray) -> None:
        """The activation in place: tanh, or sigmoid as (1 + tanh(a / 2)) / 2 (no overflow,
        no temporary)."""
        if self.config.activation == "tanh":
            np.tanh(a, out=a)
        else:
            np.multiply(a, 0.5, out=a)
            np.tanh(a, out=a)
            np.add(a, 1.0, out=a)
            np.multiply(a, 0.5, out=a)


class HandwrittenAdder(AdderModel):
    """The adder RNN of `config` (tanh or sigmoid, with or without biases and a learned
    S_0) with the fastest hand-written BPTT we know; see the module docstring for the math
    and the layout.

    `parameters` (name -> array, the names and shapes of `config.parameter_shapes()`) are
    copied and cast to `dtype` (float64 or float32), in which everything is computed.
    """

    def __init__(self, config: AdderConfig, parameters: Mapping[str, ArrayLike], *,
                 dtype: DTypeLike = np.float64) -> None:
        super().__init__(config, parameters, dtype)
        # In the canonical order the parameters lay out [W_in; b_in; W_rec; b_rec] as one
        # (F, n) matrix, then S_0, then [W_out; b_out] as one vector: the step's two weight
        # matrices are views of the flat buffers, and so are their gradients.
        n, bias = config.n_states, int(config.bias)
        self._features = features = 2 + bias + n + bias
        self._first_state = 2 + bias
        data, grads = self.flat_parameters, self.flat_gradients
        self._weights = data[:features * n].reshape(features, n)
        self._readout = data[data.size - n - bias:]
        self._weights_gradient = grads[:features * n].reshape(features, n)
        self._readout_gradient = grads[grads.size - n - bias:]

    def _buffers_for(self, n_samples: int, length: int) -> _AdderBuffers:
        b = self._buffers
        if b is not None and b.T.shape == (length, n_samples):
            return b
        self._buffers = None  # free the old buffers before allocating the new ones
        n, features, dt = self.config.n_states, self._features, self.dtype
        U = np.zeros((length + 1, features, n_samples), dt)
        if self.config.bias:
            U[:, 2] = U[:, -1] = 1.0
        derivative = np.empty((length, n, n_samples), dt)
        # act'(S) is dead when the weight gradients' products are made: they reuse it.
        products_shape = (length + 1, features, n + 1)
        size = int(np.prod(products_shape))
        products = (derivative.reshape(-1)[:size].reshape(products_shape)
                    if size <= derivative.size else np.empty(products_shape, dt))
        b = self._buffers = _AdderBuffers(
            U=U, T=np.empty((length, n_samples), dt), logits=np.empty((length, n_samples), dt),
            softplus=np.empty((length, n_samples), dt), work=np.empty((length, n_samples), dt),
            nonnegative=np.empty((length, n_samples), bool),
            derivative=derivative, E=np.zeros((length + 1, n + 1, n_samples), dt),
            products=products, ones=np.ones(length + 1, dt),
            summed=np.empty((features, n + 1), dt), backward_matrix=np.empty((n, n + 1), dt),
            column_sum=np.empty(n, dt), first=self._first_state)
        return b

    def compute_gradients(self, X: ArrayLike, T: ArrayLike) -> float:
        """The mean binary cross-entropy; every gradient into the model's own arrays."""
        X_, T_ = self._minibatch(X, T)
        n_samples, length, _ = X_.shape
        b = self._buffers_for(n_samples, length)
        np.copyto(b.inputs, X_.transpose(1, 2, 0))
        np.copyto(b.T, T_[:, :, 0].T)
        self._forward(b)
        loss = self._loss_and_output_gradient(b)
        self._backward(b)
        return loss

    def _forward(self, b: _AdderBuffers) -> None:
        if self.config.learn_initial_state:
            np.copyto(b.initial_state, self._params["initial_state"].data[:, None])
        weights_T, matmul = self._weights.T, np.matmul
        if self.config.activation == "tanh":
            tanh = np.tanh
            for inputs, state in b.forward_steps:   # S_j = tanh(Q^T [x_j; 1; S_{j-1}; 1])
                matmul(weights_T, inputs, out=state)
                tanh(state, out=state)
        else:
            activate = self._activate
            for inputs, state in b.forward_steps:
                matmul(weights_T, inputs, out=state)
                activate(state)
        np.matmul(self._readout, b.readout_inputs, out=b.logits)  # A_j = [W_out; b_out] . [S_j; 1]

    def _loss_and_output_gradient(self, b: _AdderBuffers) -> float:
        """The loss mean(softplus(A) - T A); G = (sigmoid(A) - T) / M into `b.gradients`."""
        A = b.logits
        return bce_with_logits(A, b.T, b.gradients, 1.0 / A.size, b.work, b.softplus,
                               b.nonnegative) / A.size

    def _backward(self, b: _AdderBuffers) -> None:
        S, dS = b.states, b.derivative
        np.multiply(S, S, out=dS)
        if self.config.activation == "tanh":      # act' = 1 - S^2
            np.subtract(1.0, dS, out=dS)
        else:                                     # act' = S (1 - S) = S - S^2
            np.subtract(S, dS, out=dS)
        p = self._params
        W = p["recurrent.weight"].data
        np.concatenate((W, p["output.weight"].data), axis=1, out=b.backward_matrix)
        matmul, multiply, backward_matrix = np.matmul, np.multiply, b.backward_matrix
        for carried, delta, derivative in b.backward_steps:
            matmul(backward_matrix, carried, out=delta)   # W_rec D_{j+1} + W_out G_j
            multiply(delta, derivative, out=delta)
        # Every weight gradient at once: sum_j U[j] E[j]^T = [dQ | d[W_out; b_out] below
        # the x rows], summed over j as one matrix-vector product.
        np.matmul(b.U, b.E.transpose(0, 2, 1), out=b.products)
        np.dot(b.ones, b.products.reshape(b.ones.size, -1), out=b.summed.reshape(-1))
        n = self.config.n_states
        np.copyto(self._weights_gradient, b.summed[:, :n])
        np.copyto(self._readout_gradient, b.summed[self._first_state:, n])
        if self.config.learn_initial_state:
            # sum_i W_rec D_1[:, i] = W_rec (sum_i D_1[:, i]): one vector, not N columns.
            np.add.reduce(b.first_deltas, axis=1, out=b.column_sum)
            np.dot(W, b.column_sum, out=self._grads["initial_state"])


class ClosedFormCounter(HandwrittenModel):
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
        self._lay_out(*laid_end_to_end({"w_x": w_x, "w_rec": w_rec}, np.float64))
        self._length = -1
        self._powers = np.empty(0)        # w_rec^0 .. w_rec^(T-1)
        self._q = np.empty((0, 2))        # [q, q'] as columns
        self._exponents = np.empty(0)     # T-1 .. 1: the factors of q'

    def compute_gradients(self, X: ArrayLike, t: ArrayLike) -> float:
        """The mean squared error of s_T; dloss/dw_x and dloss/dw_rec into the model's own
        arrays."""
        X_, t_ = _counter_data("ClosedFormCounter", X, t)
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
        g_u = (2.0 / n) * residual @ u       # [g . u, g . X q']
        self._grads["w_x"][()] = g_u[0]
        self._grads["w_rec"][()] = w_x * g_u[1]
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


class HandwrittenCounter(HandwrittenModel):
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
        self._lay_out(*laid_end_to_end({"w_x": w_x, "w_rec": w_rec}, np.float64))
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

    def compute_gradients(self, X: ArrayLike, t: ArrayLike) -> float:
        """The mean squared error of s_T; dloss/dw_x and dloss/dw_rec into the model's own
        arrays."""
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
        np.dot(self._inputs_and_states.reshape(2, -1), deltas.reshape(-1),
               out=self.flat_gradients)
        return loss
