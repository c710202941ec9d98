"""Models as a user writes them with minigrad's public ops: the engine side of the
benchmark's GRU, LSTM and "user's adder" rows.

- `ScanGRU` / `ScanLSTM`: `nn.GRUCell` / `nn.LSTMCell` stepped by `mg.scan` over the time
  axis from a zero state, a linear readout of every state, and binary cross-entropy on the
  logits (mean over samples and positions). Their hand-written counterparts are
  `benchmarks.cells`.
- `UnrolledAdder`: the adder of `minigrad.models.Adder` (same parameters, same loss up to
  rounding) written the way the tutorial reads: batch-major slices `X[:, k]`, a Python loop
  of s = tanh(x_k W_in + b_in + s W_rec + b_rec), an output probability per step
  (`sigmoid`), and `binary_cross_entropy` on the probabilities.

Each has `loss(X, T)` (X (N, L, n_in), T (N, L, 1)) and parameters, so
`minigrad.models.training.engine_objective` drives it eagerly or compiled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import minigrad as mg
from minigrad import nn
from minigrad.models.presets import AdderConfig

__all__ = ["ScanGRU", "ScanLSTM", "UnrolledAdder"]


class ScanGRU(nn.Module):
    """h_k = GRUCell(x_k, h_{k-1}) from h_0 = 0 by `mg.scan`; logits h_k W_out + b_out."""

    cell_class: Any = nn.GRUCell

    def __init__(self, n_in: int, hidden: int, *, rng: np.random.Generator,
                 dtype: Any = np.float64):
        self.cell = self.cell_class(n_in, hidden, rng=rng, dtype=dtype)
        self.readout = nn.Linear(hidden, 1, rng=rng, dtype=dtype)

    def initial_carry(self, n_samples: int) -> Any:
        return self.cell.zero_state((n_samples,))

    def step(self, h: Any, x: Any) -> tuple[Any, Any]:
        h = self.cell(x, h)
        return h, h

    def loss(self, X: Any, T: Any) -> mg.Tensor:
        """Mean binary cross-entropy of the readout's logits over all samples and steps."""
        _, states = mg.scan(self.step, self.initial_carry(X.shape[0]), mg.transpose(X, 1, 0, 2))
        return mg.binary_cross_entropy_with_logits(self.readout(states),
                                                   mg.transpose(T, 1, 0, 2))


class ScanLSTM(ScanGRU):
    """(h_k, c_k) = LSTMCell(x_k, (h_{k-1}, c_{k-1})) from zeros by `mg.scan` (a tuple
    carry); logits h_k W_out + b_out."""

    cell_class = nn.LSTMCell

    def initial_carry(self, n_samples: int) -> Any:
        zeros = self.cell.zero_state((n_samples,))
        return zeros, zeros

    def step(self, state: Any, x: Any) -> tuple[Any, Any]:
        h, c = self.cell(x, state)
        return (h, c), h


class UnrolledAdder(nn.Module):
    """The adder of `config` as a user writes it: a Python loop over batch-major slices,
    probabilities, and BCE on them. Its parameters are `minigrad.models.Adder`'s (names and
    shapes), so it loads the same state dict."""

    def __init__(self, config: AdderConfig, *, rng: np.random.Generator,
                 dtype: Any = np.float64):
        n = config.n_states
        self.config = config
        self.input = nn.Linear(2, n, bias=config.bias, rng=rng, dtype=dtype)
        self.recurrent = nn.Linear(n, n, bias=config.bias, rng=rng, dtype=dtype)
        self.initial_state = (nn.Parameter(np.zeros(n, dtype)) if config.learn_initial_state
                              else None)
        self.output = nn.Linear(n, 1, bias=config.bias, rng=rng, dtype=dtype)

    def loss(self, X: Any, T: Any) -> mg.Tensor:
        """Mean binary cross-entropy of the output probabilities over samples and bits."""
        activation = getattr(mg, self.config.activation)
        s: Any = self.initial_state
        if s is None:
            s = np.zeros(self.config.n_states, X.dtype)
        probabilities = []
        for k in range(X.shape[1]):
            s = activation(self.input(X[:, k]) + self.recurrent(s))
            probabilities.append(mg.sigmoid(self.output(s)))
        return mg.binary_cross_entropy(mg.stack(probabilities, axis=1), T)
