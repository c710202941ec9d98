"""A GRU and an LSTM with backpropagation through time written by hand in NumPy: the
baselines of the benchmark's GRU and LSTM rows, whose engine side is `nn.GRUCell` /
`nn.LSTMCell` driven by `mg.scan` (`benchmarks.user_models`).

The model, for X (N, L, n_in), T (N, L, 1): h_0 = 0, h_k = cell(x_k, h_{k-1}) with the
cell of `nn.GRUCell` / `nn.LSTMCell` (PyTorch's gate layout: weight_ih (n_in, G H),
weight_hh (H, G H), biases (G H), G = 3 gates r, z, n or 4 gates i, f, g, o), a linear
readout A_k = h_k W_out + b_out, and loss = mean over all N L positions of
softplus(A) - T A (binary cross-entropy on the logits). Parameter names are the engine
model's (`cell.weight_ih`, ..., `readout.bias`).

Written as fast as we know (as `benchmarks.handwritten`): time-major buffers allocated once
per (N, L) and reused (`out=` everywhere, per-step views made once); the input projection
of all steps one product, with every bias that is added outside a gate's product folded
in; one product with W_hh per step forward and one with a contiguous copy of W_hh^T per
step backward; the forward stores each gate in its own contiguous array (NumPy is several
times slower on a (N, H) column block of a (N, G H) array than on a contiguous one); every
factor of the backward that does not depend on the incoming gradient is computed for all
steps at once before the backward loop, so the loop does a few multiplies per step; each
weight gradient is one product over all steps (X^T dGI, H_{0..L-1}^T dGH, H_{1..L}^T G).
sigmoid(a) is computed as (1 + tanh(a / 2)) / 2, with the halving folded into the sigmoid
gates' columns of W_ih, W_hh and the biases once per call (exact: a power of two), so a
step runs one tanh over all its gates' pre-activations.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from minigrad.models.reference.param import Parameters

from .handwritten import _detach_kept, _hand_over, bce_with_logits, checked_parameters

__all__ = ["HandwrittenGRU", "HandwrittenLSTM"]


class _HandwrittenCell(Parameters):
    """The parameters, the readout and the loss shared by both cells; a subclass adds its
    per-step buffers (`_allocate`), the recurrence (`_forward`: the states into `self.H`)
    and its backward from `self.dH` (`_backward`: the cell's four gradients)."""

    gates = 1
    sigmoid_columns: tuple[slice, ...] = ()   # blocks of the G H columns that are sigmoids

    def __init__(self, n_in: int, hidden: int, parameters: Mapping[str, ArrayLike], *,
                 dtype: DTypeLike = np.float64) -> None:
        self.n_in, self.hidden, self.dtype = n_in, hidden, np.dtype(dtype)
        width = self.gates * hidden
        shapes = {"cell.weight_ih": (n_in, width), "cell.weight_hh": (hidden, width),
                  "cell.bias_ih": (width,), "cell.bias_hh": (width,),
                  "readout.weight": (hidden, 1), "readout.bias": (1,)}
        self._params, self._grads = checked_parameters(type(self).__name__, parameters,
                                                       shapes, self.dtype)
        # 1/2 on the sigmoid gates' columns, 1 elsewhere: sigmoid(a) = (1 + tanh(a/2)) / 2.
        self.halves = np.ones(width, self.dtype)
        for block in self.sigmoid_columns_of(hidden):
            self.halves[block] = 0.5
        self.W_in = np.empty((n_in, width), self.dtype)     # W_ih, halved columns
        self.W = np.empty((hidden, width), self.dtype)      # W_hh, halved columns
        self.W_T = np.empty((width, hidden), self.dtype)    # W_hh^T, contiguous
        self._sizes = (-1, -1)

    @classmethod
    def sigmoid_columns_of(cls, hidden: int) -> list[slice]:
        raise NotImplementedError

    def _allocate_common(self, n_samples: int, length: int) -> None:
        dt, h, m, width = self.dtype, self.hidden, length * n_samples, self.gates * self.hidden
        self.X = np.empty((length, n_samples, self.n_in), dt)
        self.T = np.empty((m, 1), dt)
        self.H = np.zeros((length + 1, n_samples, h), dt)   # h_0 = 0 .. h_L
        self.GI = np.empty((length, n_samples, width), dt)  # x_k W_ih + folded biases
        self.logits = np.empty((m, 1), dt)                  # then dloss/dlogits
        self.e, self.work, self.work2 = (np.empty((m, 1), dt) for _ in range(3))
        self.nonnegative = np.empty((m, 1), bool)
        self.dH = np.empty((length, n_samples, h), dt)      # dloss/dh_k
        self.carry = np.empty((n_samples, h), dt)           # dloss/dh_{k-1} via step k
        self.scratch = np.empty((n_samples, h), dt)
        self.H_k, self.dH_k = list(self.H), list(self.dH)

    def _allocate(self, n_samples: int, length: int) -> None:
        raise NotImplementedError

    def loss_and_backward(self, X: ArrayLike, T: ArrayLike) -> float:
        """The mean binary cross-entropy of the readout; every gradient into `.grad`."""
        X_, T_ = np.asarray(X), np.asarray(T)
        if X_.ndim != 3 or X_.shape[1] < 1 or X_.shape[2] != self.n_in:
            raise ValueError(f"{type(self).__name__}: X must have shape (N, L, {self.n_in}), "
                             f"got {X_.shape}")
        if T_.shape != X_.shape[:2] + (1,):
            raise ValueError(f"{type(self).__name__}: T must have shape "
                             f"{X_.shape[:2] + (1,)}, got {T_.shape}")
        n_samples, length, _ = X_.shape
        if self._sizes != (n_samples, length):
            self._sizes = (n_samples, length)
            self._allocate_common(n_samples, length)
            self._allocate(n_samples, length)
        p = {key: param.data for key, param in self._params.items()}
        np.copyto(self.X, X_.transpose(1, 0, 2))
        np.copyto(self.T.reshape(length, n_samples, 1), T_.transpose(1, 0, 2))
        _detach_kept(self._params, self._grads)
        np.multiply(p["cell.weight_ih"], self.halves, out=self.W_in)
        np.multiply(p["cell.weight_hh"], self.halves, out=self.W)
        np.copyto(self.W_T, p["cell.weight_hh"].T)
        np.matmul(self.X, self.W_in, out=self.GI)
        self._forward(p)
        m, h = length * n_samples, self.hidden
        states = self.H[1:].reshape(m, h)
        np.matmul(states, p["readout.weight"], out=self.logits)
        np.add(self.logits, p["readout.bias"], out=self.logits)
        loss = bce_with_logits(self.logits, self.T, self.e, self.work, self.work2,
                               self.nonnegative)
        g, G = self._grads, self.logits
        np.matmul(states.T, G, out=g["readout.weight"])
        np.sum(G, axis=0, out=g["readout.bias"])
        np.multiply(G, p["readout.weight"].T, out=self.dH.reshape(m, h))  # G W_out^T
        self._backward(p)
        _hand_over(self._params, self._grads)
        return loss

    def _forward(self, p: dict[str, NDArray]) -> None:
        raise NotImplementedError

    def _backward(self, p: dict[str, NDArray]) -> None:
        raise NotImplementedError

    def _products(self, dGI: NDArray, dGH: NDArray) -> None:
        """The cell's four gradients from dloss/d(gi) and dloss/d(gh) of every step, (L, N,
        G H) each (the same array where they are equal): one product and one sum each."""
        g, m = self._grads, dGH.shape[0] * dGH.shape[1]
        dGI_, dGH_ = dGI.reshape(m, -1), dGH.reshape(m, -1)
        np.matmul(self.X.reshape(m, self.n_in).T, dGI_, out=g["cell.weight_ih"])
        np.sum(dGI_, axis=0, out=g["cell.bias_ih"])
        np.matmul(self.H[:-1].reshape(m, self.hidden).T, dGH_, out=g["cell.weight_hh"])
        if dGH is dGI:
            np.copyto(g["cell.bias_hh"], g["cell.bias_ih"])
        else:
            np.sum(dGH_, axis=0, out=g["cell.bias_hh"])


def _half_plus_half(a: NDArray, out: NDArray) -> None:
    """(1 + a) / 2 into `out`: sigmoid from tanh(x / 2)."""
    np.multiply(a, 0.5, out=out)
    np.add(out, 0.5, out=out)


class HandwrittenGRU(_HandwrittenCell):
    """`nn.GRUCell`'s recurrence, a readout and BCE, with hand-written BPTT::

        r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z)   gi = x W_ih + b_ih
        n = tanh(gi_n + r gh_n),  h' = n + z (h - n)          gh = h W_hh + b_hh

    Backward, with dh the gradient reaching h' (its readout's plus the next step's):
    da_n = dh (1 - z)(1 - n^2), da_r = da_n gh_n r(1 - r), da_z = dh (h - n) z(1 - z);
    dgi = [da_r, da_z, da_n], dgh = [da_r, da_z, da_n r]; dh_prev = dh z + dgh W_hh^T.
    """

    gates = 3

    @classmethod
    def sigmoid_columns_of(cls, hidden: int) -> list[slice]:
        return [slice(0, 2 * hidden)]

    def _allocate(self, n_samples: int, length: int) -> None:
        dt, h = self.dtype, self.hidden
        shape = (length, n_samples, h)
        self.GH = np.empty((n_samples, 3 * h), dt)           # h W_hh (halved r, z columns)
        self.R, self.Z, self.GHN, self.N = (np.empty(shape, dt) for _ in range(4))
        self.dGH = np.empty((length, n_samples, 3 * h), dt)
        self.dGI = np.empty((length, n_samples, 3 * h), dt)
        # The backward's factors that do not depend on dh, for all steps at once.
        self.A_n, self.P_r, self.Q_z, self.spare = (np.empty(shape, dt) for _ in range(4))
        gh, h2 = self.GH, 2 * h
        self.forward_views = [
            (self.GI[k][:, :h], self.GI[k][:, h:h2], self.GI[k][:, h2:], self.R[k],
             self.Z[k], self.GHN[k], self.N[k], self.H[k], self.H[k + 1])
            for k in range(length)]
        self.gh_blocks = gh[:, :h], gh[:, h:h2], gh[:, h2:]
        self.backward_views = [
            (self.dH[k], self.A_n[k], self.P_r[k], self.Q_z[k], self.R[k], self.Z[k],
             self.dGI[k][:, h2:], self.dGH[k][:, :h], self.dGH[k][:, h:h2],
             self.dGH[k][:, h2:], self.dGH[k])
            for k in range(length)]

    def _forward(self, p: dict[str, NDArray]) -> None:
        h2 = 2 * self.hidden
        b_ih, b_hh = p["cell.bias_ih"], p["cell.bias_hh"]
        # r and z see both biases outside any product: fold them into gi once (halved).
        bias = b_ih.copy()
        bias[:h2] += b_hh[:h2]
        np.add(self.GI, bias * self.halves, out=self.GI)
        b_hn, W, gh = b_hh[h2:], self.W, self.GH
        gh_r, gh_z, gh_n = self.gh_blocks
        for gi_r, gi_z, gi_n, r, z, ghn, n, h_prev, h in self.forward_views:
            np.matmul(h_prev, W, out=gh)
            np.add(gi_r, gh_r, out=r)
            np.tanh(r, out=r)
            _half_plus_half(r, r)
            np.add(gi_z, gh_z, out=z)
            np.tanh(z, out=z)
            _half_plus_half(z, z)
            np.add(gh_n, b_hn, out=ghn)
            np.multiply(r, ghn, out=n)
            np.add(n, gi_n, out=n)
            np.tanh(n, out=n)
            np.subtract(h_prev, n, out=h)
            np.multiply(h, z, out=h)
            np.add(h, n, out=h)

    def _backward(self, p: dict[str, NDArray]) -> None:
        R, Z, spare = self.R, self.Z, self.spare
        np.subtract(1.0, Z, out=self.A_n)                  # (1 - z)(1 - n^2)
        np.multiply(self.N, self.N, out=spare)
        np.subtract(1.0, spare, out=spare)
        np.multiply(self.A_n, spare, out=self.A_n)
        np.subtract(1.0, R, out=self.P_r)                  # gh_n r (1 - r)
        np.multiply(self.P_r, R, out=self.P_r)
        np.multiply(self.P_r, self.GHN, out=self.P_r)
        np.subtract(1.0, Z, out=spare)                     # (h - n) z (1 - z)
        np.multiply(spare, Z, out=spare)
        np.subtract(self.H[:-1], self.N, out=self.Q_z)
        np.multiply(self.Q_z, spare, out=self.Q_z)
        W_T, carry, scratch = self.W_T, self.carry, self.scratch
        last = len(self.backward_views) - 1
        for k in range(last, -1, -1):
            dh, a_n, p_r, q_z, r, z, da_n, dgh_r, dgh_z, dgh_n, dgh = self.backward_views[k]
            if k < last:
                np.add(dh, carry, out=dh)
            np.multiply(dh, a_n, out=da_n)
            np.multiply(da_n, p_r, out=dgh_r)
            np.multiply(dh, q_z, out=dgh_z)
            np.multiply(da_n, r, out=dgh_n)
            if k:
                np.matmul(dgh, W_T, out=carry)
                np.multiply(dh, z, out=scratch)
                np.add(carry, scratch, out=carry)
        h2 = 2 * self.hidden
        np.copyto(self.dGI[..., :h2], self.dGH[..., :h2])  # r and z: dgi = dgh
        self._products(self.dGI, self.dGH)


class HandwrittenLSTM(_HandwrittenCell):
    """`nn.LSTMCell`'s recurrence (c_0 = 0), a readout and BCE, with hand-written BPTT::

        a = x W_ih + b_ih + h W_hh + b_hh = [a_i, a_f, a_g, a_o]
        i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g)
        c' = f c + i g,  h' = o tanh(c')

    Backward, with dh reaching h' and dc_next reaching c' from the next step:
    dc = dh o (1 - tanh(c')^2) + dc_next;  da = [dc g i(1-i), dc c f(1-f), dc i (1-g^2),
    dh tanh(c') o(1-o)];  dc_prev = dc f, dh_prev = da W_hh^T; dgi = dgh = da.
    """

    gates = 4

    @classmethod
    def sigmoid_columns_of(cls, hidden: int) -> list[slice]:
        return [slice(0, 2 * hidden), slice(3 * hidden, 4 * hidden)]

    def _allocate(self, n_samples: int, length: int) -> None:
        dt, h = self.dtype, self.hidden
        shape = (length, n_samples, h)
        self.A = np.empty((n_samples, 4 * h), dt)            # tanh of the halved gates
        self.I, self.F, self.G, self.O, self.TC = (np.empty(shape, dt) for _ in range(5))
        self.C = np.zeros((length + 1, n_samples, h), dt)    # c_0 = 0 .. c_L
        # da / dc for i, f, g; da / dh for o; dc / dh: for all steps before the loop.
        self.F_i, self.F_f, self.F_g, self.F_o, self.K = (np.empty(shape, dt)
                                                          for _ in range(5))
        self.dA = np.empty((length, n_samples, 4 * h), dt)
        self.carry_c = np.empty((n_samples, h), dt)
        self.dc = np.empty((n_samples, h), dt)
        a = self.A
        self.gate_blocks = a[:, :h], a[:, h:2 * h], a[:, 2 * h:3 * h], a[:, 3 * h:]
        self.forward_views = [
            (self.GI[k], self.I[k], self.F[k], self.G[k], self.O[k], self.C[k],
             self.C[k + 1], self.TC[k], self.H[k], self.H[k + 1]) for k in range(length)]
        self.backward_views = [
            (self.dH[k], self.K[k], self.F_i[k], self.F_f[k], self.F_g[k], self.F_o[k],
             self.F[k], self.dA[k][:, :h], self.dA[k][:, h:2 * h], self.dA[k][:, 2 * h:3 * h],
             self.dA[k][:, 3 * h:], self.dA[k]) for k in range(length)]

    def _forward(self, p: dict[str, NDArray]) -> None:
        bias = (p["cell.bias_ih"] + p["cell.bias_hh"]) * self.halves
        np.add(self.GI, bias, out=self.GI)
        W, a, scratch = self.W, self.A, self.scratch
        a_i, a_f, a_g, a_o = self.gate_blocks
        for gi, i, f, g, o, c_prev, c, tc, h_prev, h in self.forward_views:
            np.matmul(h_prev, W, out=a)
            np.add(a, gi, out=a)
            np.tanh(a, out=a)
            _half_plus_half(a_i, i)
            _half_plus_half(a_f, f)
            np.copyto(g, a_g)
            _half_plus_half(a_o, o)
            np.multiply(f, c_prev, out=c)
            np.multiply(i, g, out=scratch)
            np.add(c, scratch, out=c)
            np.tanh(c, out=tc)
            np.multiply(o, tc, out=h)

    def _backward(self, p: dict[str, NDArray]) -> None:
        I, F, G, O, TC = self.I, self.F, self.G, self.O, self.TC

        def derivative_times(gate: NDArray, sigmoid: bool, factor: NDArray,
                             out: NDArray) -> None:
            # gate'(a) * factor: s (1 - s) for a sigmoid, 1 - t^2 for tanh.
            if sigmoid:
                np.subtract(1.0, gate, out=out)
                np.multiply(out, gate, out=out)
            else:
                np.multiply(gate, gate, out=out)
                np.subtract(1.0, out, out=out)
            np.multiply(out, factor, out=out)

        derivative_times(I, True, G, self.F_i)             # dc g i(1-i)
        derivative_times(F, True, self.C[:-1], self.F_f)   # dc c_prev f(1-f)
        derivative_times(G, False, I, self.F_g)            # dc i (1-g^2)
        derivative_times(O, True, TC, self.F_o)            # dh tanh(c) o(1-o)
        derivative_times(TC, False, O, self.K)             # dh o (1 - tanh(c)^2)
        W_T, carry, carry_c, dc = self.W_T, self.carry, self.carry_c, self.dc
        last = len(self.backward_views) - 1
        for k in range(last, -1, -1):
            dh, k_k, f_i, f_f, f_g, f_o, f, da_i, da_f, da_g, da_o, da = \
                self.backward_views[k]
            if k < last:
                np.add(dh, carry, out=dh)
            np.multiply(dh, k_k, out=dc)
            if k < last:
                np.add(dc, carry_c, out=dc)
            np.multiply(dc, f_i, out=da_i)
            np.multiply(dc, f_f, out=da_f)
            np.multiply(dc, f_g, out=da_g)
            np.multiply(dh, f_o, out=da_o)
            if k:
                np.multiply(dc, f, out=carry_c)
                np.matmul(da, W_T, out=carry)
        self._products(self.dA, self.dA)
