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
in; the forward stores the gates; every factor of the backward that does not depend on
the incoming gradient is computed for all steps at once before the backward loop, so the
loop does a few multiplies and one product with W_hh^T per step; each weight gradient is
one product over all steps (X^T dGI, H_{0..L-1}^T dGH, H_{1..L}^T G). sigmoid(a) is
computed as (1 + tanh(a / 2)) / 2: no overflow, no temporary.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from minigrad.models.reference.param import Param, Parameters

from .handwritten import _detach_kept, _hand_over, bce_with_logits

__all__ = ["HandwrittenGRU", "HandwrittenLSTM"]


class _HandwrittenCell(Parameters):
    """The parameters, the readout, the loss and the weight gradients shared by both cells;
    a subclass adds its per-step buffers (`_allocate`), the recurrence (`_forward`) and its
    backward into `self.dGI` / `self.dGH` (`_backward`)."""

    gates = 1
    name = "cell"

    def __init__(self, n_in: int, hidden: int, parameters: Mapping[str, ArrayLike], *,
                 dtype: DTypeLike = np.float64) -> None:
        self.n_in, self.hidden, self.dtype = n_in, hidden, np.dtype(dtype)
        width = self.gates * hidden
        shapes = {"cell.weight_ih": (n_in, width), "cell.weight_hh": (hidden, width),
                  "cell.bias_ih": (width,), "cell.bias_hh": (width,),
                  "readout.weight": (hidden, 1), "readout.bias": (1,)}
        if set(parameters) != set(shapes):
            raise ValueError(f"{type(self).__name__}: parameters must be named "
                             f"{sorted(shapes)}, got {sorted(parameters)}")
        self._params = {}
        for key, shape in shapes.items():
            value = np.array(parameters[key], dtype=self.dtype)
            if value.shape != shape:
                raise ValueError(f"{type(self).__name__}: parameter {key} must have shape "
                                 f"{shape}, got {value.shape}")
            self._params[key] = Param(value)
        self._grads = {key: np.empty(shape, self.dtype) for key, shape in shapes.items()}
        self._sizes = (-1, -1)

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
        self.dGI = np.empty((length, n_samples, width), dt)  # dloss/d(x_k W_ih + b_ih)
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
        np.matmul(self.X, p["cell.weight_ih"], out=self.GI)
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
        dGI = self.dGI.reshape(m, -1)
        np.matmul(self.X.reshape(m, self.n_in).T, dGI, out=g["cell.weight_ih"])
        np.sum(dGI, axis=0, out=g["cell.bias_ih"])
        _hand_over(self._params, self._grads)
        return loss

    def _forward(self, p: dict[str, NDArray]) -> None:
        raise NotImplementedError

    def _backward(self, p: dict[str, NDArray]) -> None:
        raise NotImplementedError


def _sigmoid(a: NDArray) -> None:
    """sigmoid(a) = (1 + tanh(a / 2)) / 2, in place."""
    np.multiply(a, 0.5, out=a)
    np.tanh(a, out=a)
    np.add(a, 1.0, out=a)
    np.multiply(a, 0.5, out=a)


class HandwrittenGRU(_HandwrittenCell):
    """`nn.GRUCell`'s recurrence, a readout and BCE, with hand-written BPTT::

        r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z)   gi = x W_ih + b_ih
        n = tanh(gi_n + r gh_n),  h' = n + z (h - n)          gh = h W_hh + b_hh

    Backward, with dh the gradient reaching h' (its readout's plus the next step's):
    da_n = dh (1 - z)(1 - n^2), da_r = da_n gh_n r(1 - r), da_z = dh (h - n) z(1 - z);
    dgi = [da_r, da_z, da_n], dgh = [da_r, da_z, da_n r]; dh_prev = dh z + dgh W_hh^T.
    """

    gates = 3

    def _allocate(self, n_samples: int, length: int) -> None:
        dt, h = self.dtype, self.hidden
        shape = (length, n_samples, h)
        self.GH = np.empty((length, n_samples, 3 * h), dt)   # h W_hh (+ b_hn on n)
        self.RZ = np.empty((length, n_samples, 2 * h), dt)   # r, z
        self.N = np.empty(shape, dt)
        self.dGH = np.empty((length, n_samples, 3 * h), dt)
        # The backward's factors that do not depend on dh, for all steps at once.
        self.A_n, self.P_r, self.Q_z, self.spare = (np.empty(shape, dt) for _ in range(4))
        h2 = 2 * h
        self.forward_views = [
            (self.GH[k], self.GH[k][:, h2:], self.GI[k][:, :h2], self.GI[k][:, h2:],
             self.RZ[k], self.RZ[k][:, :h], self.RZ[k][:, h:], self.N[k], self.H[k],
             self.H[k + 1]) for k in range(length)]
        self.backward_views = [
            (self.dH[k], self.A_n[k], self.P_r[k], self.Q_z[k], self.RZ[k][:, :h],
             self.RZ[k][:, h:], self.dGI[k][:, h2:], self.dGH[k][:, :h],
             self.dGH[k][:, h:h2], self.dGH[k][:, h2:], self.dGH[k])
            for k in range(length)]

    def _forward(self, p: dict[str, NDArray]) -> None:
        h2 = 2 * self.hidden
        b_ih, b_hh, W = p["cell.bias_ih"], p["cell.bias_hh"], p["cell.weight_hh"]
        # r and z see both biases outside any product: fold them into gi once.
        np.add(self.GI, b_ih, out=self.GI)
        np.add(self.GI[..., :h2], b_hh[:h2], out=self.GI[..., :h2])
        b_hn = b_hh[h2:]
        for gh, gh_n, gi_rz, gi_n, rz, r, z, n, h_prev, h in self.forward_views:
            np.matmul(h_prev, W, out=gh)
            np.add(gh_n, b_hn, out=gh_n)
            np.add(gi_rz, gh[:, :h2], out=rz)
            _sigmoid(rz)
            np.multiply(r, gh_n, out=n)
            np.add(n, gi_n, out=n)
            np.tanh(n, out=n)
            np.subtract(h_prev, n, out=h)
            np.multiply(h, z, out=h)
            np.add(h, n, out=h)

    def _backward(self, p: dict[str, NDArray]) -> None:
        hidden = self.hidden
        r, z = self.RZ[..., :hidden], self.RZ[..., hidden:]
        gh_n, spare = self.GH[..., 2 * hidden:], self.spare
        np.subtract(1.0, z, out=self.A_n)                  # (1 - z)(1 - n^2)
        np.multiply(self.N, self.N, out=spare)
        np.subtract(1.0, spare, out=spare)
        np.multiply(self.A_n, spare, out=self.A_n)
        np.subtract(1.0, r, out=self.P_r)                  # gh_n r (1 - r)
        np.multiply(self.P_r, r, out=self.P_r)
        np.multiply(self.P_r, gh_n, out=self.P_r)
        np.subtract(1.0, z, out=spare)                     # (h - n) z (1 - z)
        np.multiply(spare, z, out=spare)
        np.subtract(self.H[:-1], self.N, out=self.Q_z)
        np.multiply(self.Q_z, spare, out=self.Q_z)
        W_T, carry, scratch = p["cell.weight_hh"].T, self.carry, self.scratch
        last = len(self.backward_views) - 1
        for k in range(last, -1, -1):
            dh, a_n, p_r, q_z, r_k, z_k, da_n, dgh_r, dgh_z, dgh_n, dgh = \
                self.backward_views[k]
            if k < last:
                np.add(dh, carry, out=dh)
            np.multiply(dh, a_n, out=da_n)
            np.multiply(da_n, p_r, out=dgh_r)
            np.multiply(dh, q_z, out=dgh_z)
            np.multiply(da_n, r_k, out=dgh_n)
            if k:
                np.matmul(dgh, W_T, out=carry)
                np.multiply(dh, z_k, out=scratch)
                np.add(carry, scratch, out=carry)
        h2 = 2 * hidden
        np.copyto(self.dGI[..., :h2], self.dGH[..., :h2])  # r and z: dgi = dgh
        m = self.dGH.shape[0] * self.dGH.shape[1]
        dGH = self.dGH.reshape(m, -1)
        np.matmul(self.H[:-1].reshape(m, hidden).T, dGH, out=self._grads["cell.weight_hh"])
        np.sum(dGH, axis=0, out=self._grads["cell.bias_hh"])


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

    def _allocate(self, n_samples: int, length: int) -> None:
        dt, h = self.dtype, self.hidden
        shape = (length, n_samples, h)
        self.A = np.empty((length, n_samples, 4 * h), dt)   # gates i, f, g, o
        self.C = np.zeros((length + 1, n_samples, h), dt)    # c_0 = 0 .. c_L
        self.TC = np.empty(shape, dt)                        # tanh(c_k)
        self.F = np.empty((length, n_samples, 4 * h), dt)    # da / (dc or dh), per gate
        self.K = np.empty(shape, dt)                         # dc / dh = o (1 - tanh(c)^2)
        self.carry_c = np.empty((n_samples, h), dt)
        self.dc = np.empty((n_samples, h), dt)
        # sigmoid on i, f, o and tanh on g in four passes: a / 2 on the sigmoids' columns,
        # tanh of all, then (1 + t) / 2 on the sigmoids' columns.
        half = np.full(4 * h, 0.5, dt)
        half[2 * h:3 * h] = 1.0
        self.scale, self.shift = half, np.where(half == 0.5, 0.5, 0.0).astype(dt)
        h3 = 3 * h
        self.forward_views = [
            (self.A[k], self.GI[k], self.A[k][:, :h], self.A[k][:, h:2 * h],
             self.A[k][:, 2 * h:h3], self.A[k][:, h3:], self.C[k], self.C[k + 1], self.TC[k],
             self.H[k], self.H[k + 1]) for k in range(length)]
        self.backward_views = [
            (self.dH[k], self.K[k], self.F[k][:, :h3].reshape(n_samples, 3, h),
             self.dGI[k][:, :h3].reshape(n_samples, 3, h), self.F[k][:, h3:],
             self.dGI[k][:, h3:], self.A[k][:, h:2 * h], self.dGI[k])
            for k in range(length)]
        self.dc_blocks = self.dc[:, None, :]

    def _forward(self, p: dict[str, NDArray]) -> None:
        np.add(self.GI, p["cell.bias_ih"] + p["cell.bias_hh"], out=self.GI)
        W, scale, shift, scratch = p["cell.weight_hh"], self.scale, self.shift, self.scratch
        for a, gi, i, f, g, o, c_prev, c, tc, h_prev, h in self.forward_views:
            np.matmul(h_prev, W, out=a)
            np.add(a, gi, out=a)
            np.multiply(a, scale, out=a)
            np.tanh(a, out=a)
            np.multiply(a, scale, out=a)
            np.add(a, shift, out=a)
            np.multiply(f, c_prev, out=c)
            np.multiply(i, g, out=scratch)
            np.add(c, scratch, out=c)
            np.tanh(c, out=tc)
            np.multiply(o, tc, out=h)

    def _backward(self, p: dict[str, NDArray]) -> None:
        h = self.hidden
        A, F = self.A, self.F
        np.subtract(1.0, A, out=F)                       # the gates' own derivatives:
        np.multiply(F, A, out=F)                         # s (1 - s) for i, f, o
        g, F_g = A[..., 2 * h:3 * h], F[..., 2 * h:3 * h]
        np.multiply(g, g, out=F_g)                       # 1 - g^2 for g
        np.subtract(1.0, F_g, out=F_g)
        np.multiply(F[..., :h], g, out=F[..., :h])              # i: times dc g
        np.multiply(F[..., h:2 * h], self.C[:-1], out=F[..., h:2 * h])  # f: dc c_prev
        np.multiply(F_g, A[..., :h], out=F_g)                   # g: dc i
        np.multiply(F[..., 3 * h:], self.TC, out=F[..., 3 * h:])  # o: dh tanh(c)
        np.multiply(self.TC, self.TC, out=self.K)        # o (1 - tanh(c)^2)
        np.subtract(1.0, self.K, out=self.K)
        np.multiply(self.K, A[..., 3 * h:], out=self.K)
        W_T, carry, carry_c, dc, blocks = (p["cell.weight_hh"].T, self.carry, self.carry_c,
                                           self.dc, self.dc_blocks)
        last = len(self.backward_views) - 1
        for k in range(last, -1, -1):
            dh, k_k, f_ifg, da_ifg, f_o, da_o, f_gate, da = self.backward_views[k]
            if k < last:
                np.add(dh, carry, out=dh)
            np.multiply(dh, k_k, out=dc)
            if k < last:
                np.add(dc, carry_c, out=dc)
            np.multiply(f_ifg, blocks, out=da_ifg)
            np.multiply(dh, f_o, out=da_o)
            if k:
                np.multiply(dc, f_gate, out=carry_c)
                np.matmul(da, W_T, out=carry)
        m = A.shape[0] * A.shape[1]
        dA = self.dGI.reshape(m, -1)                     # dgh = dgi = da
        np.matmul(self.H[:-1].reshape(m, h).T, dA, out=self._grads["cell.weight_hh"])
        np.sum(dA, axis=0, out=self._grads["cell.bias_hh"])
