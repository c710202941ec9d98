"""The adder's backpropagation through time in as little memory as the algorithm allows:
the baseline of the benchmark's memory section, and of its adder steps where it is the
faster of the two hand-written steps (at long sequences: C).

`HandwrittenAdder` (`benchmarks.handwritten`, whose docstring gives the math) is built for
speed: for N samples by L positions and n states it keeps, besides the states, the inputs
stacked with them, act'(S) and the deltas of every position, L n N each, so its step peaks
at about three times the states' size. A user short of memory writes it otherwise, and
the memory section compares the engine with that user: `LeanAdder` computes the same loss
and gradients keeping, of the data's length, only the states S_0 .. S_L (L + 1, n, N),
which backpropagation needs (D_j needs act'(S_j) and dW_rec needs S_{j-1}); everything
else lives in work arrays for a block of K positions (`steps_per_block`, 16 by default),
O(K n N), and the gradient accumulators, O(n^2):

- forward, per block: the block's inputs [x_j; 1] copied time-major into (K, 3, N) and
  projected by [W_in; b_in + b_rec] straight into the block's states (one batched
  product); then per step S_j += W_rec^T S_{j-1} and the activation, in place;
- backward, per block from the last position down, in `HandwrittenAdder`'s pairing
  E[m] = [D_{m+1}; G_m] with [x_{m+1}; 1; S_m] (m = 0 .. L, D_{L+1} = G_0 = 0, x_{L+1} = 0):
  the block's logits W_out^T S_m + b_out (one product into the G rows of E), the loss and
  G there (the elementwise calls of `HandwrittenAdder`'s loss, on K N numbers), act'(S)
  of the block (two calls); then per step D_m = ([W_rec | W_out] E[m + 1]) * act'(S_{m+1}),
  one product and one multiply; then every weight gradient of the block as two batched
  products [x_{m+1}; 1] E[m]^T and S_m E[m]^T summed over the block and added to the
  accumulator. The block's bottom E carries to the next block down.

So a step allocates its states and a few block-sized arrays (kept between calls, like
`HandwrittenAdder`'s, and dropped by `release_buffers`), and nothing the size of the data
per step; its calls per position are about as many as `HandwrittenAdder`'s (three forward
and two backward against two and two), the loss's and the gradients' calls per block.
Measured in float64 (one BLAS thread, both run by `flat_step`, in alternation, three
runs): at the memory case C (100 x 1000 x 32) a peak of 26.8 MB against 85 MB, the states
being 25.6 MB, in 0.85-0.88 of `HandwrittenAdder`'s time (its blocks stay in cache where
the other's arrays do not); at the step cases A, B and D 1.32, 1.13-1.16 and 1.05-1.08 of
its time (more calls per position).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from minigrad.models.presets import AdderConfig

from .handwritten import AdderModel, bce_with_logits

__all__ = ["LeanAdder"]


@dataclass
class _LeanBuffers:
    """What one step of `LeanAdder` writes, for one (N, L): the states, and work arrays for
    a block of K positions."""

    states: NDArray        # (L + 1, n, N): S_0 .. S_L, the only array of the data's length
    inputs: NDArray        # (K, 2 + bias, N): [x_{m+1}; 1] of a block (the 1s with biases)
    carried: NDArray       # (K + 1, n + 1, N): E[m] = [D_{m+1}; G_m] of a block, and above
    derivative: NDArray    # (K, n, N): act'(S) of a block
    products: NDArray      # (K, 2 + bias + n, n + 1): [x_{m+1}; 1; S_m] E[m]^T
    targets: NDArray       # (K, N)
    exp_term: NDArray      # (K, N): exp(-|A|)
    work: NDArray          # (K, N)
    nonnegative: NDArray   # (K, N) bool: A >= 0
    recurrent_term: NDArray  # (n, N): W_rec^T S_{j-1}
    ones: NDArray          # (K,)
    summed: NDArray        # (2 + bias + n, n + 1): one block's products, summed
    total: NDArray         # (2 + bias + n, n + 1): all blocks' (the gradient accumulator)
    input_weights: NDArray  # (2 + bias, n): [W_in; b_in + b_rec]
    backward_matrix: NDArray  # (n, n + 1): [W_rec | W_out]
    column_sum: NDArray    # (n,)

    def __post_init__(self) -> None:
        # The recursion's slices of a block, made once (K of them, not L):
        # (E[m + 1], D_m's rows of E[m], act'(S_{m+1})) at slot m - m0.
        n = self.states.shape[1]
        self.recursion = [(self.carried[i + 1], self.carried[i, :n], self.derivative[i])
                          for i in range(self.derivative.shape[0])]
        self.gradients = self.carried[:, n]      # the G rows of E, (K + 1, N)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self.__dataclass_fields__)


class LeanAdder(AdderModel):
    """The adder RNN of `config` (tanh or sigmoid, with or without biases and a learned
    S_0), its BPTT keeping only the states and block-sized work arrays; see the module
    docstring. The same parameters, flat buffers, protocol and results as
    `HandwrittenAdder`.

    `parameters` (name -> array, the names and shapes of `config.parameter_shapes()`) are
    copied and cast to `dtype` (float64 or float32), in which everything is computed;
    `steps_per_block` positions share the block's work arrays (more: fewer calls, more
    memory).
    """

    def __init__(self, config: AdderConfig, parameters: Mapping[str, ArrayLike], *,
                 dtype: DTypeLike = np.float64, steps_per_block: int = 16) -> None:
        super().__init__(config, parameters, dtype)
        if steps_per_block < 1:
            raise ValueError(f"LeanAdder: steps_per_block must be at least 1, "
                             f"got {steps_per_block}")
        self.steps_per_block = steps_per_block
        # The parameters' views of the flat buffer, which the step reads.
        self._data = {name: param.data for name, param in self._params.items()}
        self._input_rows = 2 + int(config.bias)     # [x; 1] or [x]

    def _buffers_for(self, n_samples: int, length: int) -> _LeanBuffers:
        b = self._buffers
        if b is not None and b.states.shape[0] == length + 1 and b.states.shape[2] == n_samples:
            return b
        self._buffers = None  # free the old buffers before allocating the new ones
        n, rows, dt = self.config.n_states, self._input_rows, self.dtype
        block = min(self.steps_per_block, length + 1)
        inputs = np.zeros((block, rows, n_samples), dt)
        if self.config.bias:
            inputs[:, 2] = 1.0
        b = self._buffers = _LeanBuffers(
            states=np.empty((length + 1, n, n_samples), dt), inputs=inputs,
            carried=np.empty((block + 1, n + 1, n_samples), dt),
            derivative=np.empty((block, n, n_samples), dt),
            products=np.empty((block, rows + n, n + 1), dt),
            targets=np.empty((block, n_samples), dt), exp_term=np.empty((block, n_samples), dt),
            work=np.empty((block, n_samples), dt),
            nonnegative=np.empty((block, n_samples), bool),
            recurrent_term=np.empty((n, n_samples), dt), ones=np.ones(block, dt),
            summed=np.empty((rows + n, n + 1), dt), total=np.empty((rows + n, n + 1), dt),
            input_weights=np.empty((rows, n), dt), backward_matrix=np.empty((n, n + 1), dt),
            column_sum=np.empty(n, dt))
        return b

    def compute_gradients(self, X: ArrayLike, T: ArrayLike) -> float:
        """The mean binary cross-entropy; every gradient into the model's own arrays."""
        X_, T_ = self._minibatch(X, T)
        b = self._buffers_for(X_.shape[0], X_.shape[1])
        self._weights_of_the_step(b)
        self._forward(b, X_)
        return self._backward(b, X_, T_)

    def _weights_of_the_step(self, b: _LeanBuffers) -> None:
        """[W_in; b_in + b_rec] (the input projection, bias included) and [W_rec | W_out]
        (the backward step, readout included), each one matrix."""
        p = self._data
        np.copyto(b.input_weights[:2], p["input.weight"])
        if self.config.bias:
            np.add(p["input.bias"], p["recurrent.bias"], out=b.input_weights[2])
        np.concatenate((p["recurrent.weight"], p["output.weight"]), axis=1,
                       out=b.backward_matrix)

    def _forward(self, b: _LeanBuffers, X: NDArray) -> None:
        S, length, block = b.states, X.shape[1], b.derivative.shape[0]
        if self.config.learn_initial_state:
            np.copyto(S[0], self._data["initial_state"][:, None])
        else:
            S[0].fill(0.0)
        input_weights_T = b.input_weights.T
        recurrent_T = self._data["recurrent.weight"].T
        matmul, add, recurrent_term = np.matmul, np.add, b.recurrent_term
        tanh = np.tanh if self.config.activation == "tanh" else None
        activate = self._activate
        for j0 in range(0, length, block):     # the block of S_{j0+1} .. S_{j1}
            j1 = min(j0 + block, length)
            inputs = b.inputs[:j1 - j0]
            np.copyto(inputs[:, :2], X[:, j0:j1].transpose(1, 2, 0))
            matmul(input_weights_T, inputs, out=S[j0 + 1:j1 + 1])  # x_j W_in + b_in + b_rec
            for previous, state in zip(S[j0:j1], S[j0 + 1:j1 + 1], strict=True):
                matmul(recurrent_T, previous, out=recurrent_term)
                add(state, recurrent_term, out=state)
                if tanh is not None:
                    tanh(state, out=state)
                else:
                    activate(state)

    def _backward(self, b: _LeanBuffers, X: NDArray, T: NDArray) -> float:
        """The loss; every gradient into the model's gradient arrays. Blocks of E[m0] ..
        E[m1 - 1] from the top (m1 = L + 1) down; E[m1], the block above's bottom, is
        carried into the slot after the block's."""
        n, length = self.config.n_states, X.shape[1]
        S, E, G, block = b.states, b.carried, b.gradients, b.derivative.shape[0]
        readout_T = self._data["output.weight"].T                  # (1, n)
        output_bias = self._data["output.bias"] if self.config.bias else None
        tanh = self.config.activation == "tanh"
        scale = 1.0 / (X.shape[0] * length)
        matmul, multiply, backward_matrix = np.matmul, np.multiply, b.backward_matrix
        b.total.fill(0.0)
        loss_sum = 0.0
        m1 = length + 1
        while m1 > 0:
            m0 = max(0, m1 - block)
            k = m1 - m0
            recursion_end = min(m1, length) - m0   # slots whose D_{m+1} is computed
            if m1 == length + 1:
                E[k - 1, :n] = 0.0                  # D_{L+1} = 0
            else:
                np.copyto(E[k], E[0])               # E[m1], from the block above
            first = 1 if m0 == 0 else 0             # G_0 = 0: no output at m = 0
            if first:
                G[0] = 0.0
            # The block's logits A_m = W_out^T S_m + b_out into E's G rows, then the loss
            # terms and G_m there.
            logits = G[first:k]
            matmul(readout_T, S[m0 + first:m1], out=E[first:k, n:n + 1])
            if output_bias is not None:
                np.add(logits, output_bias, out=logits)
            targets = b.targets[:k - first]
            np.copyto(targets, T[:, m0 + first - 1:m1 - 1, 0].T)
            loss_sum += self._loss_and_output_gradient(b, logits, targets, scale)
            # act'(S_{m+1}) of the block, then D_{m+1} from E[m + 1], from the top down.
            if recursion_end:
                states, derivative = S[m0 + 1:m0 + 1 + recursion_end], b.derivative[:recursion_end]
                multiply(states, states, out=derivative)
                if tanh:                                      # act' = 1 - S^2
                    np.subtract(1.0, derivative, out=derivative)
                else:                                         # act' = S (1 - S) = S - S^2
                    np.subtract(states, derivative, out=derivative)
                for carried, delta, factor in reversed(b.recursion[:recursion_end]):
                    matmul(backward_matrix, carried, out=delta)  # W_rec D + W_out G
                    multiply(delta, factor, out=delta)
            # Every weight gradient of the block: sum_m [x_{m+1}; 1; S_m] E[m]^T.
            inputs = b.inputs[:k]
            np.copyto(inputs[:recursion_end, :2],
                      X[:, m0:m0 + recursion_end].transpose(1, 2, 0))
            inputs[recursion_end:, :2] = 0.0         # x_{L+1} = 0
            E_T = E[:k].transpose(0, 2, 1)
            rows = self._input_rows
            matmul(inputs, E_T, out=b.products[:k, :rows])
            matmul(S[m0:m1], E_T, out=b.products[:k, rows:])
            np.dot(b.ones[:k], b.products[:k].reshape(k, -1), out=b.summed.reshape(-1))
            np.add(b.total, b.summed, out=b.total)
            m1 = m0
        self._gradients_from(b)
        return loss_sum * scale

    def _loss_and_output_gradient(self, b: _LeanBuffers, A: NDArray, T: NDArray,
                                  scale: float) -> float:
        """The sum of softplus(A) - T A over a block's logits A; A is overwritten with
        G = (sigmoid(A) - T) * scale (`bce_with_logits`)."""
        k = A.shape[0]
        return bce_with_logits(A, T, A, scale, b.exp_term[:k], b.work[:k], b.nonnegative[:k])

    def _gradients_from(self, b: _LeanBuffers) -> None:
        """The accumulated sum_m [x_{m+1}; 1; S_m] E[m]^T: columns :n hold dW_in, db
        (= db_in = db_rec) and dW_rec, column n (below the x rows) db_out and dW_out; and
        ds_0 = W_rec (sum over samples of D_1)."""
        n, rows, total, grads = self.config.n_states, self._input_rows, b.total, self._grads
        np.copyto(grads["input.weight"], total[:2, :n])
        np.copyto(grads["recurrent.weight"], total[rows:, :n])
        np.copyto(grads["output.weight"][:, 0], total[rows:, n])
        if self.config.bias:
            np.copyto(grads["input.bias"], total[2, :n])
            np.copyto(grads["recurrent.bias"], total[2, :n])
            np.copyto(grads["output.bias"], total[2, n:])
        if self.config.learn_initial_state:
            np.add.reduce(b.carried[0, :n], axis=1, out=b.column_sum)
            np.dot(self._data["recurrent.weight"], b.column_sum,
                   out=grads["initial_state"])
