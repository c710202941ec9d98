"""The binary adder on minigrad: the non-linear RNN of part 2 of the tutorial "How to
implement an RNN" ("Implement binary addition with a non-linear RNN"), and the Keras model
of the post "Understand recurrent networks with the binary addition".

Bits come least significant first, so the network reads the numbers in the order a carry
travels. With x_k the two input bits at position k:

    Z_k = x_k W_in + (b_in + b_rec)              (all positions at once)
    S_k = act(Z_k + S_{k-1} W_rec)               k = 1 .. n_bits
    logit_k = S_k W_out + b_out,   y_k = sigmoid(logit_k)
    loss = mean over samples and positions of BCE(y_k, t_k)

The loss is taken from the logits (`binary_cross_entropy_with_logits`), so it stays finite
and keeps training when y saturates to exactly 0 or 1: in float64 that happens after a few
passes, and BCE taken from the probabilities then gives log(0) = -inf and NaN parameters,
where the tutorial's hand-written gradient at the logits, y - t, trains on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import minigrad as mg
from minigrad import nn

from .data import as_dtype
from .presets import AdderConfig

_RECURRENT_INITS = {"glorot": nn.glorot_uniform, "orthogonal": nn.orthogonal}
_SMALL = AdderConfig()  # the tutorial's small adder


class Adder(nn.Module):
    """The adder RNN of `config`; parameters named as in `AdderConfig.parameter_shapes()`.

    `input`, `recurrent` and `output` are `nn.Linear` layers; the recurrent layer's weight is
    Glorot-uniform (+-sqrt(6 / (2 n_states))) or orthogonal, as the config says. The initial
    state S_0 is a learned parameter starting at zero, or a fixed zero.
    """

    def __init__(self, config: AdderConfig = _SMALL, *, rng: np.random.Generator,
                 dtype: Any = np.float64):
        n = config.n_states
        self.config = config
        self.input = nn.Linear(2, n, bias=config.bias, rng=rng, dtype=dtype)
        self.recurrent = nn.Linear(n, n, bias=config.bias, rng=rng, dtype=dtype,
                                   init=_RECURRENT_INITS[config.recurrent_init])
        self.initial_state = (nn.Parameter(np.zeros(n, dtype)) if config.learn_initial_state
                              else None)
        self.output = nn.Linear(n, 1, bias=config.bias, rng=rng, dtype=dtype)

    def step(self, S: mg.Tensor, z: mg.Tensor) -> tuple[mg.Tensor, mg.Tensor]:
        """One step of the recurrence, S_k = act(z_k + S_{k-1} W_rec): the new state, twice
        (the carry and this step's output, as `mg.scan` takes a step)."""
        S = self._activation(mg.addmm(z, S, self.recurrent.weight))
        return S, S

    def states(self, X: Any) -> mg.Tensor:
        """S_1 .. S_L for inputs X (batch, L, 2), time-major: shape (L, batch, n_states);
        `step` looped by `mg.scan`, its backward derived step by step."""
        Z = self._inputs(X)
        return mg.scan(self.step, self._initial(Z), Z)[1]

    def unrolled_states(self, X: Any) -> list[mg.Tensor]:
        """[S_1, ..., S_L], each (batch, n_states): `step` in a Python loop (`states`' very
        numbers), every S_k a vertex of the graph, so that `minigrad.gradients(loss,
        states)` gives the whole dL/dS_k."""
        Z = self._inputs(X)
        S = self._initial(Z)
        states = []
        for k in range(Z.shape[0]):
            S, _ = self.step(S, Z[k])
            states.append(S)
        return states

    def _initial(self, Z: mg.Tensor) -> Any:
        """S_0 for every sample: the learned initial state broadcast to (batch, n_states)
        (its gradient summed over the samples), or zeros."""
        zeros = np.zeros(Z.shape[1:], Z.dtype)
        return zeros if self.initial_state is None else self.initial_state + zeros

    @property
    def _activation(self) -> Any:
        return mg.tanh if self.config.activation == "tanh" else mg.sigmoid

    def _inputs(self, X: Any) -> mg.Tensor:
        # Z_k = x_k W_in + (b_in + b_rec) for all positions at once, time-major (L, batch, n):
        # each position's block is contiguous. The two biases are summed first and join Z
        # once, one pass over Z forward and one sum backward, as a hand-written step does.
        X = self._check_inputs(X).transpose(1, 0, 2)
        if self.input.bias is None or self.recurrent.bias is None:
            return self.input(X)
        return mg.addmm(self.input.bias + self.recurrent.bias, X, self.input.weight)

    def logits(self, X: Any) -> mg.Tensor:
        """The output logits, shape (batch, L, 1)."""
        return self._logits_of(self.states(X))

    def _logits_of(self, states: mg.Tensor) -> mg.Tensor:
        # All positions in one product, time-major as the states come, then batch-major.
        return self.output(states).transpose(1, 0, 2)

    def forward(self, X: Any) -> mg.Tensor:
        """The probability that each output bit is 1, shape (batch, L, 1)."""
        return mg.sigmoid(self.logits(X))

    def loss(self, X: Any, T: Any) -> mg.Tensor:
        """Mean binary cross-entropy over samples and positions, from the logits."""
        return self._loss_of(self.states(X), T)

    def loss_and_states(self, X: Any, T: Any) -> tuple[mg.Tensor, list[mg.Tensor]]:
        """The loss of `loss` (the same number), computed from the unrolled states [S_1,
        ..., S_L], and those states, so that `minigrad.gradients(loss, states)` gives dL/dS_k
        at every position."""
        states = self.unrolled_states(X)
        return self._loss_of(mg.stack(states, axis=0), T), states

    def _loss_of(self, states: mg.Tensor, T: Any) -> mg.Tensor:
        # Time-major, as the states come: the targets are transposed (a view), not the
        # logits, so that the loss and its gradient run over contiguous arrays.
        logits = self.output(states)
        T = as_dtype(T, logits.dtype)
        length, batch, _ = logits.shape
        if T.shape != (batch, length, 1):
            raise ValueError(f"Adder.loss: targets of shape {T.shape} do not match outputs "
                             f"{(batch, length, 1)}")
        return mg.binary_cross_entropy_with_logits(logits, T.transpose(1, 0, 2))

    def predict_bits(self, X: Any) -> np.ndarray:
        """The predicted sum bits (batch, L, 1) as 0.0/1.0."""
        with mg.no_grad():
            return (self.logits(X).data > 0).astype(np.float64)

    def _check_inputs(self, X: np.ndarray | mg.Tensor) -> mg.Tensor:
        # Inputs take the parameters' dtype, so a float32 model computes in float32; by an op,
        # so that a compiled loss converts each call's inputs.
        X = X if isinstance(X, mg.Tensor) else np.asarray(X)
        if X.ndim != 3 or X.shape[2] != 2:
            raise ValueError(f"Adder: expected inputs of shape (batch, n_bits, 2), got {X.shape}")
        return as_dtype(X, self.output.weight.dtype)

