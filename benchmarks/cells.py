"""A GRU and an LSTM with backpropagation through time written by hand in NumPy: the
baselines of the benchmark's GRU and LSTM rows, whose engine side is `nn.GRUCell` /
`nn.LSTMCell` driven by `mg.scan` (`benchmarks.user_models`).

The model, for X (N, L, n_in), T (N, L, 1): h_0 = 0, h_k = cell(x_k, h_{k-1}) with the
cell of `nn.GRUCell` / `nn.LSTMCell` (PyTorch's gate layout: weight_ih (n_in, G H),
weight_hh (H, G H), biases (G H), G = 3 gates r, z, n or 4 gates i, f, g, o), a linear
readout A_k = h_k W_out + b_out, and loss = mean over all N L positions of
softplus(A) - T A (binary cross-entropy on the logits). Parameter names are the engine
model's (`cell.weight_ih`, ..., `readout.bias`).

How it is fast (as `benchmarks.handwritten`'s adder: every call a NumPy call on a
contiguous block, as few per step as the math allows):

- feature-major, time-major blocks: a step's matrices are (features, N), one contiguous
  block of an (L, features, N) buffer, so each gate is a contiguous (H, N) row block, and
  the gates are ordered so that those treated alike are adjacent rows, one call for all of
  them (NumPy takes several times longer on a strided block than on a contiguous one): the
  GRU's step computes [gh_n; r; z], the LSTM's [o; i; f; g], so tanh runs once over the
  gates and the sigmoid's (1 + t) / 2 once over the sigmoids;
- one product per step each way, inputs and biases included: U[k] = [x_{k+1}; 1; h_k; 1]
  (the adder's layout), so a step's pre-activations are M U[k], M gathered from the flat
  parameters once per call (one `np.take`; the sigmoid gates' rows halved: sigmoid(a) =
  (1 + tanh(a / 2)) / 2, exact); backward, dh_k = [W_hh | W_out] E[k], where E[k] holds
  step k+1's pre-activation gradients and the readout's G_k, so the readout's gradient
  rides in the product. The GRU's gi_n (kept apart from gh_n by r) is one product for all
  steps before the loop;
- the forward keeps what the backward needs where one call reaches it (the LSTM's c_{k-1}
  beside its g, so [i; f] * [g; c_{k-1}] is one multiply); every factor of the backward
  that does not depend on the incoming gradient is computed for all steps before the
  backward loop, stacked so that the loop's gate gradients are two multiplies broadcast
  over them ([da_n; da_z] = dh [A_n; Q_z] and [da_r; dgh_n] = da_n [P_r; r] for the GRU,
  P_r written over gh_n; da_o = dh F_o and [da_i; da_f; da_g] = dc [F_i; F_f; F_g] for
  the LSTM);
- every weight gradient at once: sum_k U[k] E[k]^T (a batched product, summed over k by
  one matrix-vector product; for the GRU two, so that [h; 1] is not multiplied by dgi_n)
  holds d[W_ih; b_ih; W_hh; b_hh] and d[W_out; b_out], picked into the flat gradient
  buffer by one `np.take`;
- the loss as the adder's (`bce_with_logits`, softplus without `np.logaddexp`);
- every buffer allocated once per (N, L), `out=` everywhere, the per-step views made once;
  the products reuse a factor buffer the backward is done with.

NumPy calls per step: the GRU 10 forward, 5 backward (the batch-major version this
replaced, gates in separate (N, H) arrays: 16 and 8); the LSTM 8 and 6 (15 and 9).

Both are `HandwrittenModel`s: `compute_gradients(X, T)` computes the loss and writes every
gradient into the model's gradient arrays (views of `flat_gradients`), reading the
parameters from the flat buffer `flat_parameters`; `loss_and_backward` wraps it in the
`Parameters` protocol (a `.data` replaced by assignment copied in, the gradients handed
over in `.grad`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from .handwritten import HandwrittenModel, bce_with_logits, checked_parameters

__all__ = ["HandwrittenGRU", "HandwrittenLSTM"]


class _HandwrittenCell(HandwrittenModel):
    """The parameters, the layout, the readout, the loss and the weight gradients shared by
    both cells. A subclass says how its step matrix and backward matrix are gathered from
    the parameters (`_step_map`, `_backward_map`, `_gradient_block`), and adds its
    per-step buffers (`_allocate`), the recurrence (`_forward`: the states into U) and the
    loop of its backward (`_backward`: the pre-activation gradients into E).

    Indices: U's rows are [x (n_in); 1; h (H); 1]; the gathered parameter matrix Q is the
    flat buffer's first F W entries as (F, W) = [W_ih; W_hh; b_ih; b_hh], F = n_in + H + 2,
    W = G H; E's rows are the step's `blocks` (H, N) pre-activation gradients, then G.
    """

    gates = 1
    blocks = 0         # (H, N) blocks of E before G: the pre-activation gradients it holds

    def __init__(self, n_in: int, hidden: int, parameters: Mapping[str, ArrayLike], *,
                 dtype: DTypeLike = np.float64) -> None:
        self.n_in, self.hidden, self.dtype = n_in, hidden, np.dtype(dtype)
        width = self.gates * hidden
        shapes = {"cell.weight_ih": (n_in, width), "cell.weight_hh": (hidden, width),
                  "cell.bias_ih": (width,), "cell.bias_hh": (width,),
                  "readout.weight": (hidden, 1), "readout.bias": (1,)}
        self._lay_out(*checked_parameters(type(self).__name__, parameters, shapes,
                                          self.dtype))
        self.features = n_in + hidden + 2
        self.g_row = self.blocks * hidden          # E's row (and the sum's column) of G
        # The step matrix's entries: where each comes from in the flat parameters, its
        # factor (1/2 on sigmoid gates), and which entries are not structural zeros.
        index, scale = self._step_map()
        self._step_index, self._step_scale = index, scale.astype(self.dtype)
        self._step_nonzero = scale != 0
        self._step_values = np.empty(index.shape, self.dtype)
        self.step_matrix = np.zeros(index.shape, self.dtype)
        self._backward_index = self._backward_map()
        self.backward_matrix = np.empty(self._backward_index.shape, self.dtype)
        self.parts = [(rows_u, slice(*rows_e.indices(self.g_row + 1)))
                      for rows_u, rows_e in self._product_parts()]
        self._gradient_index = self._gradient_map()
        # The readout's sums are evenly spaced in `summed` (a column of one part): a slice,
        # so that the last step's [h_L; 1] G_L is added to them in place.
        readout = self._gradient_index[-(hidden + 1):].tolist()
        stride = readout[1] - readout[0]
        assert readout == list(range(readout[0], readout[-1] + 1, stride))
        self._readout_sums = slice(readout[0], readout[-1] + 1, stride)
        self.readout_column = self._params["readout.weight"].data   # (H, 1): W_out
        self._sizes = (-1, -1)

    # --- where things are ----------------------------------------------------------------

    def _q(self, row: str, a: int | NDArray, column: int | NDArray) -> NDArray:
        """Positions in the flat parameters of Q's entries: `row` "x", "h", "1a" (b_ih) or
        "1b" (b_hh), row offset `a`, column `column`."""
        width = self.gates * self.hidden
        first = {"x": 0, "h": self.n_in, "1a": self.n_in + self.hidden,
                 "1b": self.n_in + self.hidden + 1}[row]
        return np.asarray((first + a) * width + column)

    def _u_rows(self) -> list[tuple[str, int, int]]:
        """U's rows: (kind, offset in U, count)."""
        return [("x", 0, self.n_in), ("1a", self.n_in, 1), ("h", self.n_in + 1, self.hidden),
                ("1b", self.n_in + 1 + self.hidden, 1)]

    def _step_map(self) -> tuple[NDArray, NDArray]:
        raise NotImplementedError

    def _backward_map(self) -> NDArray:
        raise NotImplementedError

    def _gradient_block(self, gate: int, recurrent: bool) -> int:
        """The column of E (and of sum_k U[k] E[k]^T) holding the canonical `gate`'s
        gradient, for the input side (W_ih, b_ih) or the recurrent side (W_hh, b_hh)."""
        raise NotImplementedError

    def _product_parts(self) -> list[tuple[slice, slice]]:
        """The weight gradients' products: (rows of U, rows of E) of each sum_k U[k] E[k]^T
        that the gradients are picked from."""
        raise NotImplementedError

    def _sum_position(self, u_row: int, e_row: int) -> int:
        """Where sum_k U[k][u_row] E[k][e_row] is in `summed` (the parts end to end)."""
        start = 0
        for rows_u, rows_e in self.parts:
            if rows_u.start <= u_row < rows_u.stop and rows_e.start <= e_row < rows_e.stop:
                return (start + (u_row - rows_u.start) * (rows_e.stop - rows_e.start)
                        + e_row - rows_e.start)
            start += (rows_u.stop - rows_u.start) * (rows_e.stop - rows_e.start)
        raise AssertionError(f"no product holds U row {u_row} times E row {e_row}")

    def _gradient_map(self) -> NDArray:
        """For each entry of the flat gradients, its position in `summed`: the cell's four
        gradients, then d[W_out; b_out] from E's row of G."""
        h, width = self.hidden, self.gates * self.hidden
        rows = {kind: (first, count) for kind, first, count in self._u_rows()}
        index = []
        for kind, recurrent in (("x", False), ("h", True), ("1a", False), ("1b", True)):
            first, count = rows[kind]
            for a in range(count):
                index += [self._sum_position(first + a,
                                             self._gradient_block(c // h, recurrent) * h
                                             + c % h) for c in range(width)]
        first, _ = rows["h"]                     # [h; 1] G^T
        index += [self._sum_position(u, self.g_row) for u in range(first, first + h + 1)]
        return np.array(index, np.intp)

    # --- per call ------------------------------------------------------------------------

    def _allocate_common(self, n_samples: int, length: int) -> None:
        dt, f, n_in = self.dtype, self.features, self.n_in
        self.U = np.zeros((length + 1, f, n_samples), dt)   # [x_{k+1}; 1; h_k; 1]
        self.U[:, n_in] = self.U[:, -1] = 1.0
        self.inputs = self.U[:length, :n_in]
        self.inputs_and_ones = self.U[:length, :n_in + 1]             # [x_{k+1}; 1]
        self.states = self.U[:, n_in + 1:n_in + 1 + self.hidden]      # h_0 .. h_L
        self.readout_inputs = self.U[1:, n_in + 1:]                   # [h_k; 1], k >= 1
        self.T = np.empty((length, n_samples), dt)
        # E[k] = [pre-activation gradients of step k + 1; G_k], zero where there is none.
        self.E = np.zeros((length + 1, self.g_row + 1, n_samples), dt)
        self.G = self.E[1:, self.g_row]
        self.logits = np.empty((length, n_samples), dt)     # then G
        self.e, self.work = (np.empty((length, n_samples), dt) for _ in range(2))
        self.nonnegative = np.empty((length, n_samples), bool)
        self.dh = np.empty((self.hidden, n_samples), dt)
        self.ones = np.ones(length, dt)
        self.last_readout = np.empty(self.hidden + 1, dt)
        sizes = [(u.stop - u.start, e.stop - e.start) for u, e in self.parts]
        self.summed = np.empty(sum(a * b for a, b in sizes), dt)

    def _allocate_products(self, dead: NDArray) -> None:
        """Room for every part's U[k] E[k]^T, k < L (E[L] holds nothing but G_L, added
        apart), the parts of one k end to end: in `dead` (a buffer the backward no longer
        needs once the products are made) if it fits. `products_in` pairs each part's
        operands and output."""
        steps, size = self.U.shape[0] - 1, self.summed.size
        if steps * size <= dead.size and dead.flags.c_contiguous:
            self.products = dead.reshape(-1)[:steps * size].reshape(steps, size)
        else:
            self.products = np.empty((steps, size), self.dtype)
        self.products_in, start = [], 0
        for rows_u, rows_e in self.parts:
            a, b = rows_u.stop - rows_u.start, rows_e.stop - rows_e.start
            self.products_in.append((self.U[:-1, rows_u],
                                     self.E[:-1, rows_e].transpose(0, 2, 1),
                                     self.products[:, start:start + a * b].reshape(steps, a, b)))
            start += a * b

    def _allocate(self, n_samples: int, length: int) -> None:
        raise NotImplementedError

    def compute_gradients(self, X: ArrayLike, T: ArrayLike) -> float:
        """The mean binary cross-entropy of the readout; every gradient into the model's
        gradient arrays (`flat_gradients`), `.grad` untouched."""
        X_, T_ = np.asarray(X), np.asarray(T)
        if X_.ndim != 3 or X_.shape[1] < 1 or X_.shape[2] != self.n_in:
            raise ValueError(f"{type(self).__name__}: X must have shape (N, L, {self.n_in}), "
                             f"got {X_.shape}")
        if T_.shape != X_.shape[:2] + (1,):
            raise ValueError(f"{type(self).__name__}: T must have shape "
                             f"{X_.shape[:2] + (1,)}, got {T_.shape}")
        n_samples, length, _ = X_.shape
        if self._sizes != (n_samples, length):
            self._sizes = (-1, -1)
            self._allocate_common(n_samples, length)
            self._allocate(n_samples, length)
            self._sizes = (n_samples, length)
        np.copyto(self.inputs, X_.transpose(1, 2, 0))
        np.copyto(self.T, T_[:, :, 0].T)
        flat = self.flat_parameters
        np.take(flat, self._step_index, out=self._step_values)
        np.multiply(self._step_values, self._step_scale, out=self.step_matrix,
                    where=self._step_nonzero)
        np.take(flat, self._backward_index, out=self.backward_matrix)
        self._forward()
        np.matmul(flat[flat.size - self.hidden - 1:], self.readout_inputs, out=self.logits)
        A = self.logits
        loss = bce_with_logits(A, self.T, A, 1.0 / A.size, self.e, self.work,
                               self.nonnegative) / A.size
        np.copyto(self.G, self.logits)
        self._backward()
        for u, e_transposed, products in self.products_in:
            np.matmul(u, e_transposed, out=products)
        np.dot(self.ones, self.products, out=self.summed)
        np.matmul(self.readout_inputs[-1], self.G[-1], out=self.last_readout)
        readout_sums = self.summed[self._readout_sums]
        np.add(readout_sums, self.last_readout, out=readout_sums)
        np.take(self.summed, self._gradient_index, out=self.flat_gradients)
        return loss

    def _forward(self) -> None:
        raise NotImplementedError

    def _backward(self) -> None:
        raise NotImplementedError


def _stacked(a: NDArray, blocks: int) -> NDArray:
    """A (blocks H, N) step block as (blocks, H, N), for one multiply broadcast over it."""
    return a.reshape(blocks, a.shape[0] // blocks, a.shape[1])


class HandwrittenGRU(_HandwrittenCell):
    """`nn.GRUCell`'s recurrence, a readout and BCE, with hand-written BPTT::

        r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z)   gi = W_ih^T x + b_ih
        n = tanh(gi_n + r gh_n),  h' = n + z (h - n)          gh = W_hh^T h + b_hh

    Backward, with dh the gradient reaching h' (its readout's plus the next step's):
    da_n = dh (1 - z)(1 - n^2), da_r = da_n gh_n r(1 - r), da_z = dh (h - n) z(1 - z);
    dgi = [da_r, da_z, da_n], dgh = [da_r, da_z, da_n r]; dh_prev = dh z + W_hh dgh.

    The step's product gives A[k] = [gh_n; r; z] (3H, N) from U[k] (gh_n's x and first 1
    rows are zeros of the step matrix); gi_n of every step is one product before the loop,
    then n in place. Before the backward loop gh_n becomes P_r in place, so A[k][:2H] =
    [P_r; r]. E[k] = [da_n; da_z; da_r; dgh_n; G_k]: its rows H: are what [W_hh | W_out] (in
    the order z, r, n) multiplies; the weight gradients are [x; 1; h; 1] times those rows
    (dgi = dgh for r and z) and [x; 1] times da_n.
    """

    gates = 3
    blocks = 4     # da_n, da_z, da_r, dgh_n

    def _step_map(self) -> tuple[NDArray, NDArray]:
        # M (4H, F): rows gi_n, gh_n, r, z; columns U's rows.
        h = self.hidden
        index = np.zeros((4 * h, self.features), np.intp)
        scale = np.zeros((4 * h, self.features))
        j = np.arange(h)[:, None]
        for block, gate, factor, sides in ((0, 2, 1.0, ("x", "1a")),
                                           (1, 2, 1.0, ("h", "1b")),
                                           (2, 0, 0.5, ("x", "1a", "h", "1b")),
                                           (3, 1, 0.5, ("x", "1a", "h", "1b"))):
            for kind, first, count in self._u_rows():
                if kind in sides:
                    a = np.arange(count)[None, :]
                    rows = slice(block * h, (block + 1) * h)
                    index[rows, first:first + count] = self._q(kind, a, gate * h + j)
                    scale[rows, first:first + count] = factor
        return index, scale

    def _backward_map(self) -> NDArray:
        # [W_hh_z, W_hh_r, W_hh_n, W_out] (H, 3H + 1), unhalved.
        h = self.hidden
        a, j = np.arange(h)[:, None], np.arange(h)[None, :]
        blocks = [self._q("h", a, gate * h + j) for gate in (1, 0, 2)]
        readout = np.arange(h)[:, None] + self.features * self.gates * h
        return np.concatenate([*blocks, readout], axis=1)

    def _gradient_block(self, gate: int, recurrent: bool) -> int:
        return {0: 2, 1: 1, 2: 3 if recurrent else 0}[gate]

    def _product_parts(self) -> list[tuple[slice, slice]]:
        h, n_in = self.hidden, self.n_in
        # [x; 1; h; 1] [da_z; da_r; dgh_n; G]^T and [x; 1] da_n^T: dgi_r,z = dgh_r,z.
        return [(slice(0, self.features), slice(h, None)), (slice(0, n_in + 1), slice(0, h))]

    def _allocate(self, n_samples: int, length: int) -> None:
        dt, h, n_in = self.dtype, self.hidden, self.n_in
        shape = (length, h, n_samples)
        self.A = np.empty((length, 3 * h, n_samples), dt)   # [gh_n; r; z] per step
        self.N = np.empty(shape, dt)                        # gi_n, then n
        self.D = np.empty(shape, dt)                        # h_prev - n
        self.scratch = np.empty((h, n_samples), dt)
        self.carry = np.empty((h, n_samples), dt)           # dh z, to the step before
        # [A_n; Q_z] for every step: with A[k][:2H] = [P_r; r], the loop's stacked factors.
        self.n_z_factors = np.empty((length, 2, h, n_samples), dt)
        self._allocate_products(self.n_z_factors)
        self.GHN, self.R, self.Z = self.A[:, :h], self.A[:, h:2 * h], self.A[:, 2 * h:]
        self.step_rows = self.step_matrix[h:]               # gh_n, r, z: (3H, F)
        self.input_rows = self.step_matrix[:h, :n_in + 1]   # gi_n from [x; 1]
        states = self.states
        self.forward_views = [
            (self.U[k], self.A[k], self.A[k][h:], self.A[k][h:2 * h], self.A[k][:h],
             self.N[k], self.D[k], self.A[k][2 * h:], states[k], states[k + 1])
            for k in range(length)]
        E = self.E
        self.backward_views = [
            (E[k + 1][h:], _stacked(E[k][:2 * h], 2), E[k][:h],
             _stacked(E[k][2 * h:4 * h], 2), self.n_z_factors[k],
             _stacked(self.A[k][:2 * h], 2), self.Z[k])
            for k in range(length)]

    def _forward(self) -> None:
        matmul, multiply, add, tanh, subtract = (np.matmul, np.multiply, np.add, np.tanh,
                                                 np.subtract)
        step_rows, scratch = self.step_rows, self.scratch
        np.matmul(self.input_rows, self.inputs_and_ones, out=self.N)  # gi_n, every step
        for u, a, rz, r, ghn, n, d, z, h_prev, h in self.forward_views:
            matmul(step_rows, u, out=a)
            tanh(rz, out=rz)                     # sigmoid(v) = (1 + tanh(v / 2)) / 2
            multiply(rz, 0.5, out=rz)
            add(rz, 0.5, out=rz)
            multiply(r, ghn, out=scratch)
            add(n, scratch, out=n)
            tanh(n, out=n)
            subtract(h_prev, n, out=d)
            multiply(d, z, out=h)
            add(h, n, out=h)

    def _backward(self) -> None:
        Z, R, N = self.Z, self.R, self.N
        a_n, q_z = self.n_z_factors[:, 0], self.n_z_factors[:, 1]
        np.subtract(1.0, R, out=q_z)                       # P_r = gh_n r (1 - r), in place
        np.multiply(q_z, R, out=q_z)
        np.multiply(self.GHN, q_z, out=self.GHN)
        np.multiply(N, N, out=a_n)                         # A_n = (1 - z)(1 - n^2)
        np.subtract(1.0, a_n, out=a_n)
        np.subtract(1.0, Z, out=q_z)
        np.multiply(a_n, q_z, out=a_n)
        np.multiply(q_z, Z, out=q_z)                       # Q_z = (h - n) z (1 - z)
        np.multiply(q_z, self.D, out=q_z)
        matmul, multiply, add = np.matmul, np.multiply, np.add
        B, dh, carry = self.backward_matrix, self.dh, self.carry
        views = self.backward_views
        last = len(views) - 1
        for k in range(last, -1, -1):
            following, da_n_z, da_n, da_r_dgh_n, factors_n_z, factors_r, z = views[k]
            if k == last:   # no later step: dh = W_out G_L
                multiply(self.readout_column, following[-1], out=dh)
            else:
                matmul(B, following, out=dh)       # W_hh dgh_{k+2} + W_out G_{k+1}
                add(dh, carry, out=dh)
            multiply(dh, factors_n_z, out=da_n_z)          # [da_n; da_z]
            multiply(da_n, factors_r, out=da_r_dgh_n)      # [da_r; dgh_n]
            if k:
                multiply(dh, z, out=carry)


class HandwrittenLSTM(_HandwrittenCell):
    """`nn.LSTMCell`'s recurrence (c_0 = 0), a readout and BCE, with hand-written BPTT::

        a = W_ih^T x + b_ih + W_hh^T h + b_hh = [a_i, a_f, a_g, a_o]
        i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g)
        c' = f c + i g,  h' = o tanh(c')

    Backward, with dh reaching h' and dc_next reaching c' from the next step:
    dc = dh o (1 - tanh(c')^2) + dc_next;  da = [dc g i(1-i), dc c f(1-f), dc i (1-g^2),
    dh tanh(c') o(1-o)];  dc_prev = dc f, dh_prev = W_hh da; dgi = dgh = da.

    The step's product gives the gates in the order [o; i; f; g] (the sigmoids adjacent,
    then i, f beside g and the cell state the step starts from): A[k] = [o; i; f; g; c_k]
    (5H, N), the step writing c_{k+1} into A[k+1] (c_0 = 0). E[k] = [da_o; da_i; da_f;
    da_g; G_k].
    """

    gates = 4
    blocks = 4     # da_o, da_i, da_f, da_g
    order = (3, 0, 1, 2)   # the canonical gate (i, f, g, o = 0, 1, 2, 3) at each position

    def _step_map(self) -> tuple[NDArray, NDArray]:
        h = self.hidden
        index = np.zeros((4 * h, self.features), np.intp)
        scale = np.zeros((4 * h, self.features))
        j = np.arange(h)[:, None]
        for block, gate in enumerate(self.order):
            rows = slice(block * h, (block + 1) * h)
            for kind, first, count in self._u_rows():
                index[rows, first:first + count] = self._q(kind, np.arange(count)[None, :],
                                                           gate * h + j)
            scale[rows] = 1.0 if gate == 2 else 0.5
        return index, scale

    def _backward_map(self) -> NDArray:
        # [W_hh_o, W_hh_i, W_hh_f, W_hh_g, W_out] (H, 4H + 1), unhalved.
        h = self.hidden
        a, j = np.arange(h)[:, None], np.arange(h)[None, :]
        blocks = [self._q("h", a, gate * h + j) for gate in self.order]
        readout = np.arange(h)[:, None] + self.features * self.gates * h
        return np.concatenate([*blocks, readout], axis=1)

    def _gradient_block(self, gate: int, recurrent: bool) -> int:
        return self.order.index(gate)

    def _product_parts(self) -> list[tuple[slice, slice]]:
        return [(slice(0, self.features), slice(0, None))]     # [x; 1; h; 1] [da; G]^T

    def _allocate(self, n_samples: int, length: int) -> None:
        dt, h = self.dtype, self.hidden
        shape = (length, h, n_samples)
        self.A = np.zeros((length + 1, 5 * h, n_samples), dt)   # [o; i; f; g; c_k]
        self.TC = np.empty(shape, dt)                           # tanh(c_{k+1})
        self.pair = np.empty((2 * h, n_samples), dt)            # [i g; f c]
        # da / dh for o, da / dc for i, f, g; dc / dh: for every step before the loop.
        self.factors = np.empty((length, 4 * h, n_samples), dt)
        self.K = np.empty(shape, dt)
        self.dc = np.empty((h, n_samples), dt)
        self.carry_c = np.empty((h, n_samples), dt)
        self._allocate_products(self.factors)
        A, states, pair = self.A, self.states, self.pair
        self.forward_views = [
            (self.U[k], A[k][:4 * h], A[k][:3 * h], A[k][h:3 * h], A[k][3 * h:],
             A[k + 1][4 * h:], self.TC[k], A[k][:h], states[k + 1])
            for k in range(length)]
        self.pair_halves = pair[:h], pair[h:]
        E, F = self.E, self.factors
        self.backward_views = [
            (E[k + 1], self.K[k], F[k][:h], _stacked(F[k][h:], 3), E[k][:h],
             _stacked(E[k][h:4 * h], 3), A[k][2 * h:3 * h])
            for k in range(length)]

    def _forward(self) -> None:
        matmul, multiply, add, tanh = np.matmul, np.multiply, np.add, np.tanh
        M, pair = self.step_matrix, self.pair
        pair_ig, pair_fc = self.pair_halves
        for u, gates, sigmoids, i_f, g_c, c, tc, o, h in self.forward_views:
            matmul(M, u, out=gates)
            tanh(gates, out=gates)              # sigmoid(v) = (1 + tanh(v / 2)) / 2
            multiply(sigmoids, 0.5, out=sigmoids)
            add(sigmoids, 0.5, out=sigmoids)
            multiply(i_f, g_c, out=pair)        # [i g; f c_{k-1}]
            add(pair_ig, pair_fc, out=c)
            tanh(c, out=tc)
            multiply(o, tc, out=h)

    def _backward(self) -> None:
        h, length = self.hidden, self.TC.shape[0]
        A, F, K, TC = self.A[:length], self.factors, self.K, self.TC
        O, I_, G = A[:, :h], A[:, h:2 * h], A[:, 3 * h:4 * h]
        sig = F[:, :3 * h]
        np.subtract(1.0, A[:, :3 * h], out=sig)               # s (1 - s): o, i, f
        np.multiply(sig, A[:, :3 * h], out=sig)
        np.multiply(F[:, h:3 * h], A[:, 3 * h:], out=F[:, h:3 * h])   # i: * g, f: * c_prev
        np.multiply(F[:, :h], TC, out=F[:, :h])               # o: * tanh(c)
        f_g = F[:, 3 * h:]
        np.multiply(G, G, out=f_g)                            # i (1 - g^2)
        np.subtract(1.0, f_g, out=f_g)
        np.multiply(f_g, I_, out=f_g)
        np.multiply(TC, TC, out=K)                            # o (1 - tanh(c)^2)
        np.subtract(1.0, K, out=K)
        np.multiply(K, O, out=K)
        matmul, multiply, add = np.matmul, np.multiply, np.add
        B, dh, dc, carry_c = self.backward_matrix, self.dh, self.dc, self.carry_c
        views = self.backward_views
        last = len(views) - 1
        for k in range(last, -1, -1):
            following, k_k, f_o, f_ifg, da_o, da_ifg, f = views[k]
            if k == last:   # no later step: dh = W_out G_L
                multiply(self.readout_column, following[-1], out=dh)
                multiply(dh, k_k, out=dc)
            else:
                matmul(B, following, out=dh)       # W_hh da_{k+2} + W_out G_{k+1}
                multiply(dh, k_k, out=dc)
                add(dc, carry_c, out=dc)
            multiply(dh, f_o, out=da_o)
            multiply(dc, f_ifg, out=da_ifg)
            if k:
                multiply(dc, f, out=carry_c)
