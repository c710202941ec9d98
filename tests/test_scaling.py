"""How the engine scales: a 10,000-step recurrence backpropagates without recursion, memory
stays flat over many training rounds once graphs are released, and backward through T slices
of one tensor costs O(T) bytes. Memory is measured with tracemalloc (NumPy reports its array
buffers to it); nothing here is timed."""

import gc
import sys
import tracemalloc
from contextlib import contextmanager

import numpy as np
import pytest

import minigrad as mg
from minigrad import Tensor


@contextmanager
def traced():
    """Trace allocations; yields a function returning (current, peak) bytes since the start."""
    gc.collect()
    already = tracemalloc.is_tracing()
    if not already:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    try:
        yield lambda: tuple(m - base for m in tracemalloc.get_traced_memory())
    finally:
        if not already:
            tracemalloc.stop()


# --- deep graphs ----------------------------------------------------------------------------

STEPS = 10_000


def _reference_elementwise(h0, w, xs, v):
    """h_{t+1} = tanh(h_t * w + x_t), loss = <v, h_T>, differentiated by hand."""
    hs = [h0]
    for x in xs:
        hs.append(np.tanh(hs[-1] * w + x))
    dh, dw, dxs = v, np.zeros_like(w), np.zeros_like(xs)
    for t in reversed(range(len(xs))):
        da = dh * (1 - hs[t + 1] ** 2)
        dw += da * hs[t]
        dxs[t] = da
        dh = da * w
    return dh, dw, dxs


def _reference_matmul(h0, w, xs, v):
    """h_{t+1} = tanh(h_t @ W + x_t), loss = <v, h_T>, differentiated by hand."""
    hs = [h0]
    for x in xs:
        hs.append(np.tanh(hs[-1] @ w + x))
    dh, dw, dxs = v, np.zeros_like(w), np.zeros_like(xs)
    for t in reversed(range(len(xs))):
        da = dh * (1 - hs[t + 1] ** 2)
        dw += np.outer(hs[t], da)
        dxs[t] = da
        dh = w @ da
    return dh, dw, dxs


@pytest.mark.parametrize("step, reference, w_shape", [
    (lambda h, w, x: mg.tanh(h * w + x), _reference_elementwise, (3,)),
    (lambda h, w, x: mg.tanh(h @ w + x), _reference_matmul, (3, 3)),
])
def test_ten_thousand_step_recurrence(step, reference, w_shape):
    limit = sys.getrecursionlimit()
    assert limit < 3 * STEPS  # three nodes a step: any recursion over the graph would fail
    rng = np.random.default_rng(0)
    h0 = rng.standard_normal(3)
    # |w| around 0.9 keeps the hidden state away from saturation, so gradients of the last
    # few hundred steps are far from zero and the comparison means something.
    w = rng.uniform(-0.9, 0.9, w_shape) / (np.sqrt(3) if len(w_shape) == 2 else 1)
    xs = rng.standard_normal((STEPS, 3)) * 0.5
    v = rng.standard_normal(3)
    th0, tw, txs = (Tensor(a, requires_grad=True) for a in (h0, w, xs))
    h = th0
    for t in range(STEPS):
        h = step(h, tw, txs[t])
    (h * v).sum().backward()
    assert sys.getrecursionlimit() == limit
    dh0, dw, dxs = reference(h0, w, xs, v)
    # The same operations in the same order as the hand-written loop: equal up to rounding.
    np.testing.assert_allclose(tw.grad, dw, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(txs.grad, dxs, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(th0.grad, dh0, rtol=1e-10, atol=1e-12)
    assert np.abs(dxs[-100:]).max() > 1e-3  # the late steps really carry gradient


# --- memory over many rounds ----------------------------------------------------------------

BATCH, HIDDEN, T = 8, 32, 20


def _rnn_round(w, u, xs, losses, retain_graph=False):
    """One forward/backward round of a small RNN; the user keeps the loss (the classic leak)."""
    h = Tensor(np.zeros((BATCH, HIDDEN)))
    for x in xs:
        h = mg.tanh(h @ w + x @ u)
    loss = (h * h).mean()
    loss.backward(retain_graph=retain_graph)
    losses.append(loss)
    w.grad = u.grad = None


def _rnn():
    rng = np.random.default_rng(0)
    w = Tensor(rng.standard_normal((HIDDEN, HIDDEN)) * 0.1, requires_grad=True)
    u = Tensor(rng.standard_normal((HIDDEN, HIDDEN)) * 0.1, requires_grad=True)
    xs = [rng.standard_normal((BATCH, HIDDEN)) for _ in range(T)]
    return w, u, xs


def test_memory_is_flat_when_losses_are_kept():
    w, u, xs = _rnn()
    losses = []
    with traced() as memory:
        for _ in range(10):
            _rnn_round(w, u, xs, losses)
        gc.collect()
        current_10, peak_10 = memory()
        for _ in range(90):
            _rnn_round(w, u, xs, losses)
        gc.collect()
        current_100, peak_100 = memory()
    # One round's graph holds ~4 T arrays of BATCH * HIDDEN doubles (~160 KB); a kept loss
    # (a Tensor, a 0-d array and its released Node) is a few hundred bytes. Allow 2 KB a round:
    # a leak of even a tenth of each graph would be 16 KB a round.
    allowed = 90 * 2048
    assert current_100 - current_10 < allowed, (current_10, current_100)
    assert peak_100 - peak_10 < allowed, (peak_10, peak_100)
    assert len(losses) == 100 and all(loss._node.vjps is None for loss in losses)


def test_memory_measure_sees_retained_graphs():
    """The control for the test above: graphs that are kept (retain_graph=True) do show up."""
    w, u, xs = _rnn()
    losses = []
    with traced() as memory:
        _rnn_round(w, u, xs, losses, retain_graph=True)
        gc.collect()
        first, _ = memory()
        for _ in range(9):
            _rnn_round(w, u, xs, losses, retain_graph=True)
        gc.collect()
        tenth, _ = memory()
    # A retained graph keeps at least tanh's output at every step (T * 2 KB = 40 KB): far
    # above the 2 KB a round that the test above allows.
    assert (tenth - first) / 9 > 5 * 2048


# --- slicing is linear ----------------------------------------------------------------------

def _slice_backward_peak(steps, batch=8, n=16):
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((batch, steps, n)), requires_grad=True)
    w = Tensor(rng.uniform(-0.5, 0.5, n), requires_grad=True)
    h = Tensor(np.zeros((batch, n)))
    for t in range(steps):
        h = mg.tanh(h * w + x[:, t, :])
    loss = h.sum()
    with traced() as memory:
        loss.backward()
        _, peak = memory()
    assert x.grad.shape == (batch, steps, n)
    return peak


def test_backward_through_per_step_slices_is_linear():
    peaks = {steps: _slice_backward_peak(steps) for steps in (100, 200, 400, 800)}
    # The gradient of x alone is 8 T bytes per element of a step; O(T) overheads (the swept
    # node list, per-step cotangents) come on top. Linear growth gives a ratio of about 8;
    # a dense gradient per slice kept alive would give about 64.
    assert peaks[800] / peaks[100] < 12, peaks
    for a, b in [(100, 200), (200, 400), (400, 800)]:
        assert peaks[b] / peaks[a] < 2.5, peaks


def test_per_step_slices_allocate_one_dense_gradient(monkeypatch):
    """Peak memory misses a dense gradient per slice that is freed at once (O(T^2) work with a
    linear peak); counting the input-sized allocations catches it: one, whatever T."""
    batch, n = 3, 4
    for steps in (10, 100):
        x = Tensor(np.random.default_rng(0).normal(size=(batch, steps, n)), requires_grad=True)
        h = Tensor(np.zeros((batch, n)))
        for t in range(steps):
            h = mg.tanh(h + x[:, t])
        loss = h.sum()
        full_size = batch * steps * n
        sizes = []
        real = {name: getattr(np, name) for name in ("zeros", "zeros_like", "empty", "empty_like")}

        def counting(allocator, sizes=sizes):
            def allocate(shape_or_array, *args, **kwargs):
                out = allocator(shape_or_array, *args, **kwargs)
                sizes.append(out.size)
                return out
            return allocate

        for name in real:
            monkeypatch.setattr(np, name, counting(real[name]))
        loss.backward()
        monkeypatch.undo()
        assert sizes.count(full_size) == 1, (steps, sizes)
        assert x.grad.shape == (batch, steps, n)
