"""`mg.scan` against `jax.lax.scan`'s contract: the Python loop of the same `f`.

The reference everywhere is that loop run eagerly: `carry, y = f(carry, x_k)` for each slice,
the ys stacked with `mg.stack`. Bounds, stated once:

- Values are compared bit for bit: a step of the scan runs the same ops on the same arrays
  as a step of the loop.
- The gradients of `init` and `xs` are bit for bit too, where the cotangents meeting at a
  carry are added in the loop's order: a step's backward runs the same VJPs, and adds what
  the next step gives its carry input in the tape's order. The one difference: where a y
  *is* the new carry, the loop's sweep adds the y's cotangent first and then the next
  step's contributions one by one, (y + a) + b, while scan adds the next step's
  contributions among themselves first, (a + b) + y. With at most two terms that is the
  same sum (addition commutes); with three or more (a GRU's h, read twice by the next step
  and returned as y) only the bound below holds, and the tests say which case they are in.
- A loop invariant's gradient (a weight `f` reads from outside) is a sum over the steps. It
  is exact today (the steps' contributions are added from the last step to the first, as the
  tape adds them), but the issue allows batching them (one VJP call on the stacked steps)
  which sums the same terms in another order; the bound is that of a reordered sum of
  `steps` terms of order one (or of the largest gradient):
  `|scan - loop| <= INVARIANT_RTOL * steps * (|loop| + max(1, max|loop|))`, elementwise,
  with INVARIANT_RTOL 1e-12 in float64 (about 4500 ulps per step), and the same number of
  ulps in float32.

Nothing here measures time.
"""

from __future__ import annotations

import re
import sys
import threading
import unittest.mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad import nn
from minigrad.testing import gradcheck
from minigrad.testing import strategies as mst
from minigrad.trace import Program

scan_module = sys.modules["minigrad.scan"]  # (the module: minigrad.scan is the function)

# --- the reference: the Python loop of the same body -----------------------------------------


def _slice(xs, k):
    if xs is None:
        return None
    if isinstance(xs, tuple):
        return tuple(x[k] for x in xs)
    return xs[k]


def _stack(ys):
    """The ys of a loop stacked as scan stacks them: None, a tensor, or a tuple of them."""
    if ys[0] is None:
        return None
    if isinstance(ys[0], tuple):
        return tuple(mg.stack(list(parts)) for parts in zip(*ys))
    return mg.stack(ys)


def loop(f, init, xs=None, length=None, reverse=False):
    """`scan` written as the Python loop it stands for (ys[k] is the y of step k)."""
    if length is None:
        length = len(xs[0] if isinstance(xs, tuple) else xs)
    carry, ys = init, [None] * length
    for k in (range(length - 1, -1, -1) if reverse else range(length)):
        carry, ys[k] = f(carry, _slice(xs, k))
    return carry, _stack(ys)


def leaves(tree):
    return [] if tree is None else list(tree) if isinstance(tree, tuple) else [tree]


INVARIANT_RTOL = {np.dtype(np.float64): 1e-12,
                  np.dtype(np.float32): 1e-12 / np.finfo(np.float64).eps
                  * np.finfo(np.float32).eps}


def assert_bitwise(actual, expected, what=""):
    actual = actual.data if isinstance(actual, mg.Tensor) else actual
    expected = expected.data if isinstance(expected, mg.Tensor) else expected
    np.testing.assert_array_equal(actual, expected, err_msg=what, strict=True)


def assert_invariant_close(actual, expected, steps, what=""):
    """A gradient summed over `steps` steps (a loop invariant's, or one reached through
    carries whose cotangents are added in another order): the loop's up to a reordered
    sum."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
    rtol = INVARIANT_RTOL[expected.dtype] * steps
    scale = max(1.0, np.abs(expected).max(initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


def loss_of(carry, ys, weights):
    """<weights, outputs>: every output element gets its own cotangent."""
    outputs = leaves(carry) + leaves(ys)
    return mg.stack([(out * w).sum() for out, w in zip(outputs, weights)]).sum()


def take_grads(tensors):
    grads = [t.grad for t in tensors]
    for t in tensors:
        t.grad = None
    return grads


# --- the property: bodies drawn from the op table ----------------------------------------------

UNARY = sorted(name for name, op in mg.OPS.items() if op.domain.family == "unary")
BINARY = sorted(name for name, op in mg.OPS.items() if op.domain.family == "binary")


def into(t, interval):
    """`t` squashed into an op's Domain interval (a smooth map made of ops of the table),
    so that every drawn body is finite on every step, however long."""
    low, high = interval
    return low + (high - low) * mg.sigmoid(t)


@st.composite
def op_steps(draw):
    """1 to 3 ops, each taking the running value: unary and binary ops of the table (a
    binary op's other operand the step's x, the incoming carry, or an outside tensor, on
    either side), add, sub or mul of an outside tensor itself, and matmul / addmm with an
    outside weight."""
    kinds = st.one_of(
        st.tuples(st.just("unary"), st.sampled_from(UNARY)),
        st.tuples(st.just("binary"), st.sampled_from(BINARY),
                  st.sampled_from(["x", "carry", "V", "b"]), st.booleans()),
        st.tuples(st.just("matmul"), st.sampled_from(["matmul", "addmm"])),
        # an outside tensor itself as an operand (its VJP batched over the steps)
        st.tuples(st.just("invariant"), st.sampled_from(["add", "sub", "mul"]),
                  st.sampled_from(["V", "b"]), st.booleans()),
    )
    return draw(st.lists(kinds, min_size=1, max_size=3))


def make_body(steps, y_from, W, b, V):
    """`f(carry, x) -> (carry, y)` applying `steps` to the carry; y as `y_from` says."""

    def f(carry, x):
        others = {"x": x, "carry": carry, "V": V, "b": b}
        value, first = carry, None
        for step in steps:
            kind, name = step[0], step[1]
            domain = mg.OPS[name].domain
            if kind == "unary":
                value = mg.OPS[name].function(into(value, domain.interval(0)))
            elif kind == "binary":
                other, swap = others[step[2]], step[3]
                a, c = (other, value) if swap else (value, other)
                value = mg.OPS[name].function(into(a, domain.interval(0)),
                                              into(c, domain.interval(1)))
            elif kind == "invariant":
                other, swap = others[step[2]], step[3]
                a, c = (other, into(value, (-1.0, 1.0))) if swap else (
                    into(value, (-1.0, 1.0)), other)
                value = mg.OPS[name].function(a, c)
            elif name == "matmul":
                value = mg.matmul(into(value, (-1.0, 1.0)), W)
            else:
                value = mg.addmm(b, into(value, (-1.0, 1.0)), W)
            first = value if first is None else first
        y = {"none": None, "first": first, "carry": value, "x": x, "incoming": carry,
             "pair": (first, value)}[y_from]
        return value, y

    return f


@settings(max_examples=40)
@given(data=st.data(), steps=op_steps(),
       y_from=st.sampled_from(["none", "first", "carry", "x", "incoming", "pair"]),
       length=st.integers(1, 6), batch=st.sampled_from([(), (1,), (3,)]),
       n=st.integers(1, 3), reverse=st.booleans(),
       dtype=st.sampled_from([np.float64, np.float32]),
       init_is_tensor=st.booleans(), xs_is_tensor=st.booleans(),
       chunk=st.sampled_from([1, 2, 64]))
def test_scan_is_the_loop_of_the_same_body(data, steps, y_from, length, batch, n, reverse,
                                           dtype, init_is_tensor, xs_is_tensor, chunk):
    """Values and the gradients of init, xs and the invariants W, b, V (the last within the
    invariant bound), for bodies composed of the table's unary and binary ops and of
    matmul/addmm with an outside weight; the carry keeps its shape. The batched VJPs take
    `chunk` steps at a time, so that short loops cross chunk boundaries too."""
    with unittest.mock.patch.object(scan_module, "_CHUNK", chunk):
        check_scan_is_the_loop(data, steps, y_from, length, batch, n, reverse, dtype,
                               init_is_tensor, xs_is_tensor)


def check_scan_is_the_loop(data, steps, y_from, length, batch, n, reverse, dtype,
                           init_is_tensor, xs_is_tensor):
    carry_shape = (*batch, n)
    x_shape = data.draw(st.sampled_from([carry_shape, (n,), ()]), label="x slice shape")
    v_shape = data.draw(st.sampled_from([carry_shape, (n,), ()]), label="V shape")

    def draw(shape, label):
        return data.draw(mst.arrays(shape, low=-2.0, high=2.0, dtype=dtype), label=label)

    init_value = draw(carry_shape, "init")
    xs_value = draw((length, *x_shape), "xs")
    invariants = [mg.Tensor(draw(s, name), requires_grad=True)
                  for s, name in [((n, n), "W"), ((n,), "b"), (v_shape, "V")]]
    init = mg.Tensor(init_value, requires_grad=True) if init_is_tensor else init_value
    xs = mg.Tensor(xs_value, requires_grad=True) if xs_is_tensor else xs_value
    f = make_body(steps, y_from, *invariants)

    carry, ys = mg.scan(f, init, xs, reverse=reverse)
    expected_carry, expected_ys = loop(f, init, xs, reverse=reverse)
    assert (ys is None) == (y_from == "none")
    assert isinstance(ys, tuple) == (y_from == "pair")
    outputs, expected = leaves(carry) + leaves(ys), leaves(expected_carry) + leaves(expected_ys)
    assert len(outputs) == len(expected)
    for i, (out, want) in enumerate(zip(outputs, expected)):
        assert_bitwise(out, want, f"output {i}")

    weights = [draw(np.shape(out.data), f"cotangent {i}") for i, out in enumerate(outputs)]
    expected_loss = loss_of(expected_carry, expected_ys, weights)
    if not expected_loss.requires_grad:  # nothing to differentiate (see the test below)
        return
    sources = [t for t in (init, xs) if isinstance(t, mg.Tensor)]
    loss_of(carry, ys, weights).backward()
    got = take_grads(sources + invariants)
    expected_loss.backward()
    want = take_grads(sources + invariants)
    # The cotangents meeting at a carry: the next step's reads of it, and the ys that are it.
    reads = 1 + sum(s[0] == "binary" and s[2] == "carry" for s in steps) + (y_from == "incoming")
    ys_of_carry = {"carry": 1, "pair": 1 + (len(steps) == 1), "first": len(steps) == 1}
    in_the_loops_order = ys_of_carry.get(y_from, 0) == 0 or reads + ys_of_carry[y_from] <= 2
    for i, t in enumerate(sources):
        # None (the loop's, where no path reaches) and zeros are taken as one here; the
        # test of unread inputs below tells them apart.
        g, w = (np.zeros_like(t.data) if a is None else a for a in (got[i], want[i]))
        what = f"gradient of {'init' if t is init else 'xs'}"
        if in_the_loops_order:
            assert_bitwise(g, w, what)
        else:
            assert_invariant_close(g, w, length, what)
    for name, g, w in zip(["W", "b", "V"], got[len(sources):], want[len(sources):]):
        assert (g is None) == (w is None), name  # an invariant the body does not read
        if w is not None:
            assert_invariant_close(g, w, length, f"gradient of {name}")


def test_outputs_need_a_gradient_only_where_the_loops_do():
    """xs requires grad, but the body never reads it and the carry starts as an array: no
    output of the loop needs a gradient, nor should scan's (whose backward would otherwise
    have no body backward to run)."""
    xs = mg.Tensor(np.ones((3, 2)), requires_grad=True)

    def f(c, x):
        return mg.abs(c), None

    expected_carry, _ = loop(f, np.ones(2), xs)
    carry, _ = mg.scan(f, np.ones(2), xs)
    assert carry.requires_grad == expected_carry.requires_grad
    if carry.requires_grad:  # a scan that says otherwise must at least run its backward
        carry.sum().backward()


def test_inputs_the_body_never_reads_get_no_gradient_as_in_the_loop():
    """The tape's rule: a leaf no path reaches keeps `.grad` None (not zeros), as the loop's
    init here (the carry is replaced by x on the first step) and as an unread invariant."""
    init = mg.Tensor(np.ones(2), requires_grad=True)
    xs = mg.Tensor(np.ones((3, 2)), requires_grad=True)
    unread = mg.Tensor(np.ones((3, 2)), requires_grad=True)

    def f(c, x):
        return mg.tanh(x), None

    for run in (loop, mg.scan):
        carry, _ = run(f, init, xs)
        carry.sum().backward()
        assert init.grad is None, run.__name__
        assert xs.grad is not None, run.__name__
        xs.grad = None
    carry, _ = mg.scan(lambda c, x: (mg.tanh(c), None), init, unread)
    carry.sum().backward()
    assert unread.grad is None


@settings(max_examples=40)
@given(data=st.data(), h_steps=op_steps(), c_steps=op_steps(), aliased=st.booleans(),
       outside=st.sampled_from(["before", "after", "none"]), length=st.integers(1, 4),
       n=st.integers(1, 3), reverse=st.booleans(), compiled=st.booleans())
def test_inits_gradient_with_contributions_from_outside_the_loop_is_the_loops(
        data, h_steps, c_steps, aliased, outside, length, n, reverse, compiled):
    """init's gradient bit for bit where init gets contributions from outside the loop too:
    used before or after it, or passed as both carries (`init=(H, H)`), eager and compiled.
    (The first step's contributions came summed, added after the outside one, where the
    loop's sweep adds them one by one among them.)"""
    def draw(shape, label):
        return data.draw(mst.arrays(shape, low=-2.0, high=2.0), label=label)

    H = mg.Tensor(draw((2, n), "init"), requires_grad=True)
    xs = draw((length, 2, n), "xs")
    W, b, V = (mg.Tensor(draw(s, name), requires_grad=True)
               for s, name in [((n, n), "W"), ((n,), "b"), ((n,), "V")])
    weights = [draw((2, n), "cotangent of h"), draw((2, n), "cotangent of c")]
    step_h, step_c = make_body(h_steps, "none", W, b, V), make_body(c_steps, "none", W, b, V)

    def f(carry, x):  # each carry read by its own steps and by the other's
        if not aliased:
            return step_h(carry, x)[0] * mg.sigmoid(carry), None
        h, c = carry
        return (step_h(h, x)[0] * mg.sigmoid(c), step_c(c, x)[0] + mg.tanh(h)), None

    def loss(scan, H, xs):
        before = mg.tanh(H * 3.1).sum() if outside == "before" else 0.0
        carry, _ = scan(f, (H, H) if aliased else H, xs, reverse=reverse)
        after = mg.tanh(H * 3.1).sum() if outside == "after" else 0.0
        outputs = carry if aliased else (carry,)
        return sum((out * w).sum() for out, w in zip(outputs, weights)) + before + after

    (want,) = mg.gradients(loss(loop, H, xs), [H])
    run = mg.compile(lambda H, xs: loss(mg.scan, H, xs)) if compiled else (
        lambda H, xs: loss(mg.scan, H, xs))
    for _ in range(2 if compiled else 1):
        (got,) = mg.gradients(run(H, xs), [H])
        assert_bitwise(got, want, "init's gradient")


# --- recurrent cells ---------------------------------------------------------------------------


@pytest.mark.parametrize("returns_h", [False, True])
@settings(max_examples=8)
@given(length=st.integers(1, 8), batch=st.integers(1, 4), n_in=st.integers(1, 4),
       hidden=st.integers(1, 4), seed=st.integers(0, 2**31 - 1), reverse=st.booleans())
def test_a_gru_over_a_sequence_is_the_unrolled_cell(returns_h, length, batch, n_in, hidden,
                                                    seed, reverse):
    """Bit for bit, except the gradients of h0 and xs when y is h: the next step reads h
    twice (h W_hh, z * h), so three cotangents meet there (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    cell = nn.GRUCell(n_in, hidden, rng=rng)
    xs = mg.Tensor(rng.normal(size=(length, batch, n_in)), requires_grad=True)
    h0 = mg.Tensor(rng.normal(size=(batch, hidden)), requires_grad=True)
    weights = [rng.normal(size=(batch, hidden)), rng.normal(size=(length, batch, hidden))]

    def step(h, x):
        h = cell(x, h)
        return h, h if returns_h else mg.sigmoid(h)

    h, hs = mg.scan(step, h0, xs, reverse=reverse)
    loss_of(h, hs, weights).backward()
    got = take_grads([h0, xs, *cell.parameters()])
    h_loop = h0
    hs_loop = [None] * length
    for k in (reversed(range(length)) if reverse else range(length)):
        h_loop = cell(xs[k], h_loop)
        hs_loop[k] = h_loop if returns_h else mg.sigmoid(h_loop)
    assert_bitwise(h, h_loop)
    assert_bitwise(hs, mg.stack(hs_loop))
    loss_of(h_loop, mg.stack(hs_loop), weights).backward()
    want = take_grads([h0, xs, *cell.parameters()])
    for name, g, w in zip(["h0", "xs"], got, want):
        if returns_h:
            assert_invariant_close(g, w, length, name)
        else:
            assert_bitwise(g, w, name)
    for (name, _), g, w in zip(cell.named_parameters(), got[2:], want[2:]):
        assert_invariant_close(g, w, length, name)


@settings(max_examples=12)
@given(length=st.sampled_from([1, 2, 63, 64, 65, 130]), seed=st.integers(0, 2**31 - 1),
       reverse=st.booleans(), input_product=st.booleans())
def test_stacked_operands_across_chunks_give_the_loops_gradients(length, seed, reverse,
                                                                  input_product):
    """An RNN step whose weights' VJPs run once per chunk of steps on operands read from
    their stacks (the incoming states from the ys, the xs), with the xs' cotangents as the
    stacked cotangents, and a bias whose VJP gives the chunk's stacked cotangents back as
    they are: the loop's values and xs and h0 gradients bit for bit, the weights' within the
    invariant bound, for lengths around the chunk size, in both directions."""
    rng = np.random.default_rng(seed)
    n = 3
    W, U = (mg.Tensor(rng.normal(size=(n, n)) * 0.5, requires_grad=True) for _ in range(2))
    b = mg.Tensor(rng.normal(size=n), requires_grad=True)  # added per step: batched too
    xs = mg.Tensor(rng.normal(size=(length, 2, n)), requires_grad=True)
    h0 = mg.Tensor(rng.normal(size=(2, n)), requires_grad=True)

    def step(h, x):
        h = mg.tanh(mg.addmm(x @ U if input_product else x, h, W) + b)
        return h, h

    weights = [rng.normal(size=(2, n)), rng.normal(size=(length, 2, n))]
    h, hs = mg.scan(step, h0, xs, reverse=reverse)
    want_h, want_hs = loop(step, h0, xs, reverse=reverse)
    assert_bitwise(h, want_h)
    assert_bitwise(hs, want_hs)
    loss_of(h, hs, weights).backward()
    got = take_grads([h0, xs, W, U, b])
    loss_of(want_h, want_hs, weights).backward()
    want = take_grads([h0, xs, W, U, b])
    assert_bitwise(got[0], want[0], "h0")
    assert_bitwise(got[1], want[1], "xs")
    assert_invariant_close(got[2], want[2], length, "W")
    assert_invariant_close(got[4], want[4], length, "b")
    assert (got[3] is None) == (not input_product)
    if input_product:
        assert_invariant_close(got[3], want[3], length, "U")


@settings(max_examples=30)
@given(length=st.integers(1, 5), reverse=st.booleans(), chunk=st.sampled_from([1, 2, 64]),
       source=st.sampled_from([0, 1]), second=st.sampled_from(["same", "other", "kept"]),
       y=st.sampled_from(["h", "second", "pair", "none"]), seed=st.integers(0, 2**31 - 1))
def test_tuple_carries_are_the_loop(length, reverse, chunk, source, second, y, seed):
    """A carry (a, b) -> (h, second), h computed from a or b (a product with a weight, plus
    a bias and the x); second is h again, another function of h, or the carry kept (times
    an outside tensor); y is h, second, both or None; batched VJPs `chunk` steps at a
    time: the loop's values bit for bit, and its gradients within the invariant bound."""
    rng = np.random.default_rng(seed)
    W = mg.Tensor(rng.normal(size=(3, 3)) * 0.5, requires_grad=True)
    V, b = (mg.Tensor(rng.normal(size=3), requires_grad=True) for _ in range(2))
    a0, b0 = (mg.Tensor(rng.normal(size=(2, 3)), requires_grad=True) for _ in range(2))
    xs = mg.Tensor(rng.normal(size=(length, 2, 3)), requires_grad=True)

    def step(carry, x):
        h = mg.tanh(carry[source] @ W + b + x)
        other = {"same": h, "other": mg.sigmoid(h) * V, "kept": carry[1] * V}[second]
        return (h, other), {"h": h, "second": other, "pair": (h, other), "none": None}[y]

    with unittest.mock.patch.object(scan_module, "_CHUNK", chunk):
        carry, ys = mg.scan(step, (a0, b0), xs, reverse=reverse)
        want_carry, want_ys = loop(step, (a0, b0), xs, reverse=reverse)
        outputs, expected = leaves(carry) + leaves(ys), leaves(want_carry) + leaves(want_ys)
        for out, want in zip(outputs, expected):
            assert_bitwise(out, want)
        weights = [rng.normal(size=np.shape(out.data)) for out in outputs]
        tensors = [a0, b0, xs, W, V, b]
        loss_of(carry, ys, weights).backward()
        got = take_grads(tensors)
        loss_of(want_carry, want_ys, weights).backward()
        want = take_grads(tensors)
    for name, g, w in zip(["a0", "b0", "xs", "W", "V", "b"], got, want):
        assert (g is None) == (w is None), name
        if w is not None:
            assert_invariant_close(g, w, length, name)


@pytest.mark.parametrize("activation", [mg.sigmoid, mg.tanh])
def test_scalar_steps_of_xs_get_the_loops_gradient(activation):
    """xs of shape (L,): each step's x is 0-d, its cotangent a scalar row of the stacked
    ones (which a VJP cannot be given to compute into)."""
    xs = mg.Tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)

    def step(c, x):
        c = c + activation(x)
        return c, c

    c, cs = mg.scan(step, np.zeros(()), xs)
    want_c, want_cs = loop(step, np.zeros(()), xs)
    assert_bitwise(cs, want_cs)
    cs.sum().backward()
    got = take_grads([xs])[0]
    want_cs.sum().backward()
    assert_bitwise(got, take_grads([xs])[0], "xs")


def test_two_carries_that_become_one_state_keep_their_own_starts():
    """carry (a, b) -> (h, h), h computed from b: the step's incoming b is not the ys
    stacked from a's start (both carries end as h, but start apart)."""
    rng = np.random.default_rng(13)
    W = mg.Tensor(rng.normal(size=(3, 3)) * 0.5, requires_grad=True)
    xs, a0, b0 = rng.normal(size=(4, 2, 3)), rng.normal(size=(2, 3)), rng.normal(size=(2, 3))

    def step(carry, x):
        h = mg.tanh(carry[1] @ W + x)
        return (h, h), h

    _, hs = mg.scan(step, (a0, b0), xs)
    _, want_hs = loop(step, (a0, b0), xs)
    hs.sum().backward()
    got = take_grads([W])[0]
    want_hs.sum().backward()
    assert_invariant_close(got, take_grads([W])[0], 4, "W")


@pytest.mark.parametrize("batch", [2, 5])
def test_a_product_that_broadcasts_against_the_step_gets_the_loops_gradient(batch):
    """h (n,) times W, added to x (batch, n): the product broadcasts inside the step. Its
    weight's VJP is not batched over the steps (the stacked product would not line up with
    the stacked cotangents: with as many samples as steps, silently so)."""
    rng = np.random.default_rng(12)
    W = mg.Tensor(rng.normal(size=(3, 3)) * 0.5, requires_grad=True)
    h0 = mg.Tensor(rng.normal(size=3), requires_grad=True)
    xs = rng.normal(size=(5, batch, 3))

    def step(h, x):
        out = mg.tanh(mg.addmm(x, h, W))
        return out.mean(axis=0), out  # (a tracer's methods take NumPy's keywords)

    h, hs = mg.scan(step, h0, xs)
    want_h, want_hs = loop(step, h0, xs)
    assert_bitwise(hs, want_hs)
    hs.sum().backward()
    got = take_grads([W, h0])
    want_hs.sum().backward()
    want = take_grads([W, h0])
    assert_invariant_close(got[0], want[0], 5, "W")
    assert_bitwise(got[1], want[1], "h0")


_mul3 = mg.defop("mul3", lambda x, w, c: x * w * c,
                 (lambda g, out, x, w, c: g * w * c, lambda g, out, x, w, c: g * x * c,
                  lambda g, out, x, w, c: g * x * w),
                 batch="elementwise", saves="inputs", register=False)


@settings(max_examples=20, deadline=None)
@given(length=st.integers(1, 6), batch=st.integers(1, 6), n=st.integers(1, 4),
       seed=st.integers(0, 2**31 - 1))
def test_an_operand_computed_from_invariants_with_a_lower_rank_gets_the_loops_gradient(
        length, batch, n, seed):
    """x (batch, n) * W * c with c = tanh(V) of shape (n,), computed in the body from a loop
    invariant: the loop stacked c step by step, (length, n), beside the cotangents (length,
    batch, n), and W's batched VJP broadcast a step's row of c against the samples: W's
    gradient `length` times the loop's with one sample, an error or, with as many samples
    as steps, right by luck. Such a VJP runs per step now."""
    rng = np.random.default_rng(seed)
    W = mg.Tensor(rng.normal(size=n), requires_grad=True)
    V = mg.Tensor(rng.normal(size=n), requires_grad=True)
    xs = rng.normal(size=(length, batch, n))

    def step(h, x):
        new = h * 0.5 + _mul3(x, W, mg.tanh(V))
        return new, new

    h, hs = mg.scan(step, np.zeros((batch, n)), xs)
    want_h, want_hs = loop(step, np.zeros((batch, n)), xs)
    assert_bitwise(hs, want_hs)
    (hs * hs).sum().backward()
    got = take_grads([W, V])
    (want_hs * want_hs).sum().backward()
    want = take_grads([W, V])
    for a, b, name in zip(got, want, "WV"):
        assert_invariant_close(a, b, length, name)


_transposing_mm = mg.defop(
    "transposing_mm", np.matmul,
    (lambda g, out, a, b: g @ b.T, lambda g, out, a, b: a.T @ g),  # a.T: right per step only
    batch="matmul", saves="inputs", register=False)


@settings(max_examples=10, deadline=None)
@given(batch=st.integers(1, 4), more=st.integers(1, 3), n=st.integers(1, 4),
       seed=st.integers(0, 2**31 - 1))
def test_a_users_batched_vjp_that_fails_on_stacked_operands_names_the_op(batch, more, n,
                                                                         seed):
    """A user's op made with batch="matmul" whose VJP writes `a.T` (right for one step's
    matrix; on the steps stacked, it reverses every axis): scan's one call for all steps
    failed with NumPy's bare matmul message; it names the op, the VJP, the stacked shapes
    and the contract of batch=. (Where the sizes let `a.T` compute, only gradcheck of a
    scan at distinct sizes can tell: documented.)"""
    length = batch + more  # (a.T of the stacked steps computes where length == batch)
    rng = np.random.default_rng(seed)
    W = mg.Tensor(rng.normal(size=(n, n)), requires_grad=True)
    xs = rng.normal(size=(length, batch, n))

    def step(h, x):
        new = mg.tanh(_transposing_mm(x, W) + h)
        return new, new

    h, hs = mg.scan(step, np.zeros((batch, n)), xs)
    with pytest.raises(ValueError, match=(
            r"^transposing_mm: VJP 1 failed on the steps' cotangents and operands stacked on "
            rf"a new axis 0 \(shapes \({length}, {batch}, {n}\), \({length}, {batch}, {n}\), "
            rf"\({n}, {n}\)\), as scan calls it once for all steps of a loop for an op made "
            r"with batch='matmul' \(matmul: .*\); it must compute on stacked operands as on "
            r"one step's \(swapaxes\(a, -1, -2\), not a.T, which reverses every axis\), or "
            r"leave batch out$")):
        hs.sum().backward()


@settings(max_examples=10)
@given(length=st.integers(1, 8), batch=st.integers(1, 4), n_in=st.integers(1, 4),
       hidden=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_an_lstm_with_a_tuple_carry_is_the_unrolled_cell(length, batch, n_in, hidden, seed):
    """Bit for bit: the next step reads h once (h W_hh) and c once (f * c), so at most two
    cotangents meet at each (h's y and its read)."""
    rng = np.random.default_rng(seed)
    cell = nn.LSTMCell(n_in, hidden, rng=rng)
    xs = mg.Tensor(rng.normal(size=(length, batch, n_in)), requires_grad=True)
    h0 = mg.Tensor(rng.normal(size=(batch, hidden)), requires_grad=True)
    c0 = mg.Tensor(rng.normal(size=(batch, hidden)), requires_grad=True)
    weights = [rng.normal(size=(batch, hidden)) for _ in range(2)]
    weights.append(rng.normal(size=(length, batch, hidden)))

    def step(state, x):
        h, c = cell(x, state)
        return (h, c), h

    (h, c), hs = mg.scan(step, (h0, c0), xs)
    (h_loop, c_loop), hs_loop = loop(step, (h0, c0), xs)
    for out, want in zip((h, c, hs), (h_loop, c_loop, hs_loop)):
        assert_bitwise(out, want)
    sources = [h0, c0, xs, *cell.parameters()]
    loss_of((h, c), hs, weights).backward()
    got = take_grads(sources)
    loss_of((h_loop, c_loop), hs_loop, weights).backward()
    want = take_grads(sources)
    for name, g, w in zip(["h0", "c0", "xs"], got, want):
        assert_bitwise(g, w, name)
    for (name, _), g, w in zip(cell.named_parameters(), got[3:], want[3:]):
        assert_invariant_close(g, w, length, name)


def test_scan_of_a_gru_passes_gradcheck():
    """Against central differences too, not only against the engine's own loop."""
    rng = np.random.default_rng(0)
    cell = nn.GRUCell(2, 3, rng=rng)
    xs = mg.Tensor(rng.normal(size=(4, 2, 2)), requires_grad=True)
    h0 = mg.Tensor(rng.normal(size=(2, 3)), requires_grad=True)

    def run(h0, xs):
        h, hs = mg.scan(lambda h, x: (cell(x, h), mg.tanh(h)), h0, xs)
        return h, hs

    assert gradcheck(run, h0, xs, params=cell)


# --- the contract's corners ------------------------------------------------------------------


def test_reverse_gives_ys_k_of_xs_k_as_jax():
    """A running sum from the end: ys[k] = init + xs[k] + ... + xs[L-1], and the gradient of
    xs[k] sums the cotangents of ys[0..k]."""
    rng = np.random.default_rng(1)
    xs_value = rng.normal(size=(6, 2))
    xs = mg.Tensor(xs_value, requires_grad=True)
    carry, ys = mg.scan(lambda c, x: (c + x, c + x), np.zeros(2), xs, reverse=True)
    expected = np.cumsum(xs_value[::-1], axis=0)[::-1]
    np.testing.assert_array_equal(ys.data, expected)  # the same additions, in the same order
    np.testing.assert_array_equal(carry.data, expected[0])
    g = rng.normal(size=(6, 2))
    (ys * g).sum().backward()
    np.testing.assert_allclose(xs.grad, np.cumsum(g, axis=0), rtol=1e-14, atol=1e-14)


def test_without_xs_the_body_gets_none_for_length_steps():
    w = mg.Tensor(np.array([0.5, -2.0]), requires_grad=True)
    init = mg.Tensor(np.array([3.0, 0.25]), requires_grad=True)
    seen = []

    def f(c, x):
        seen.append(x)
        return c * w, c

    carry, ys = mg.scan(f, init, length=5)
    assert seen == [None]
    assert ys.shape == (5, 2)
    expected_carry, expected_ys = loop(f, init, length=5)
    assert_bitwise(carry, expected_carry)
    assert_bitwise(ys, expected_ys)
    np.testing.assert_array_equal(ys.data, init.data * w.data ** np.arange(5)[:, None])
    (carry.sum() + ys.sum()).backward()
    got = take_grads([init, w])
    (expected_carry.sum() + expected_ys.sum()).backward()
    want = take_grads([init, w])
    assert_bitwise(got[0], want[0])
    assert_invariant_close(got[1], want[1], 5)


def test_a_tuple_of_xs_is_sliced_together():
    rng = np.random.default_rng(2)
    a = mg.Tensor(rng.normal(size=(4, 3)), requires_grad=True)
    b = rng.normal(size=(4, 3))  # a NumPy array among them: data, no gradient

    def f(c, x):
        x_a, x_b = x
        return c * x_a + x_b, x_a * x_b

    carry, ys = mg.scan(f, np.ones(3), (a, b))
    expected_carry, expected_ys = loop(f, np.ones(3), (a, b))
    assert_bitwise(carry, expected_carry)
    assert_bitwise(ys, a.data * b)
    (carry.sum() + ys.sum()).backward()
    got = a.grad
    a.grad = None
    (expected_carry.sum() + expected_ys.sum()).backward()
    assert_bitwise(got, a.grad)


def test_a_y_of_none_gives_ys_none_and_a_tuple_y_a_tuple_of_ys():
    xs = np.arange(6.0).reshape(3, 2)
    carry, ys = mg.scan(lambda c, x: (c + x, None), np.zeros(2), xs)
    assert ys is None
    np.testing.assert_array_equal(carry.data, xs.sum(axis=0))
    carry, ys = mg.scan(lambda c, x: (c + x, (c * 2.0, mg.tanh(x).sum())), np.zeros(2), xs)
    assert isinstance(ys, tuple) and len(ys) == 2
    np.testing.assert_array_equal(ys[0].data, 2.0 * np.cumsum(xs, axis=0) - 2.0 * xs)
    np.testing.assert_array_equal(ys[1].data, np.tanh(xs).sum(axis=1))
    assert ys[1].shape == (3,)
    # a part of a tuple y that is None is None in ys, as in jax (it was refused)
    carry, ys = mg.scan(lambda c, x: (c + x, (None, c * 2.0, None)), np.zeros(2), xs)
    assert ys[0] is None and ys[2] is None and len(ys) == 3
    np.testing.assert_array_equal(ys[1].data, 2.0 * np.cumsum(xs, axis=0) - 2.0 * xs)


def test_a_length_zero_scan_is_refused_with_the_reason():
    """Unlike jax.lax.scan, a loop of no steps is refused: the body is traced on a real slice
    of xs (so that its trace computes nothing that a step would not), and there is none."""
    with pytest.raises(ValueError, match="length 0"):
        mg.scan(lambda c, x: (c + x, c * 2.0), np.ones(3), np.zeros((0, 3)))
    for length in (0, -1, np.int64(0)):  # (without xs: one message, not two that disagree)
        with pytest.raises(ValueError, match=r"length must be an integer >= 1 \(the number "
                                             r"of steps; a loop of none is refused\)"):
            mg.scan(lambda c, x: (c * 2.0, c), np.ones(3), length=length)


@pytest.mark.parametrize("length", [np.int64(3), np.int32(3), np.uint8(3)])
def test_length_may_be_a_numpy_integer_without_xs_as_with_them(length):
    """`length=np.int64(3)` was refused without xs ("must be an integer >= 0, got
    np.int64(3)") and taken with them (found by this stop's scan hunter)."""
    carry, ys = mg.scan(lambda c, x: (c * 2.0, c), np.ones(2), length=length)
    assert carry.data.tolist() == [8.0, 8.0] and ys.shape == (3, 2)
    carry, ys = mg.scan(lambda c, x: (c + x, c), np.ones(2), np.ones((3, 2)), length=length)
    assert carry.data.tolist() == [4.0, 4.0] and ys.shape == (3, 2)


# --- modes -------------------------------------------------------------------------------------


def _rnn_body(W, b):
    def f(h, x):
        h = mg.tanh(mg.addmm(b, h, W) + x)
        return h, h * h

    return f


def _rnn_parameters(rng, n, dtype=np.float64):
    return (mg.Tensor(rng.normal(size=(n, n)).astype(dtype) / n, requires_grad=True),
            mg.Tensor(rng.normal(size=n).astype(dtype), requires_grad=True))


def _rnn_case(seed, length, xs_need_grad=True):
    """W, b, h0 (2, 3), xs (length, 2, 3) and `_rnn_body(W, b)`."""
    rng = np.random.default_rng(seed)
    W, b = _rnn_parameters(rng, 3)
    h0 = mg.Tensor(rng.normal(size=(2, 3)), requires_grad=True)
    xs = rng.normal(size=(length, 2, 3))
    return W, b, h0, mg.Tensor(xs, requires_grad=True) if xs_need_grad else xs, _rnn_body(W, b)


def test_under_no_grad_there_is_no_graph():
    W, b, h0, xs, f = _rnn_case(3, 5)
    expected_carry, expected_ys = mg.scan(f, h0, xs)
    with mg.no_grad():
        carry, ys = mg.scan(f, h0, xs)
    for out, want in ((carry, expected_carry), (ys, expected_ys)):
        assert not out.requires_grad and out._node is None
        assert_bitwise(out, want)
    with pytest.raises(RuntimeError):
        ys.sum().backward()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_under_compile_scan_gives_eager_scans_bits(dtype):
    """Over calls with new inputs and with the parameters changed in place between them."""
    rng = np.random.default_rng(4)
    W, b = _rnn_parameters(rng, 3, dtype)
    f = _rnn_body(W, b)

    def loss(h0, xs):
        h, ys = mg.scan(f, h0, xs)
        return (h * h).sum() + ys.mean()

    step = mg.compile(loss)
    for call in range(5):
        h0_value = rng.normal(size=(2, 3)).astype(dtype)
        xs_value = rng.normal(size=(4, 2, 3)).astype(dtype)
        eager_h0 = mg.Tensor(h0_value, requires_grad=True)
        compiled_h0 = mg.Tensor(h0_value, requires_grad=True)
        expected = loss(eager_h0, xs_value)
        expected.backward()
        want = take_grads([W, b])
        actual = step(compiled_h0, xs_value.copy())
        actual.backward()
        got = take_grads([W, b])
        assert_bitwise(actual, expected, f"call {call}")
        assert_bitwise(compiled_h0.grad, eager_h0.grad, f"h0, call {call}")
        for name, g, w in zip("Wb", got, want):
            assert_bitwise(g, w, f"{name}, call {call}")
        W.data[...] -= dtype(0.1) * W.data  # in place: the program must read the new values
        b.data[0] += dtype(0.5)
    assert step.traces == 1


def test_under_detect_anomaly_a_finite_scan_runs_as_outside_it():
    W, b, h0, xs, f = _rnn_case(11, 4, xs_need_grad=False)
    results = []
    for checked in (False, True):
        with mg.detect_anomaly() if checked else mg.enable_grad():
            carry, ys = mg.scan(f, h0, xs)
            (carry.sum() + ys.sum()).backward()
        results.append([carry.data, ys.data, *take_grads([h0, W, b])])
    for got, want in zip(*results):
        assert_bitwise(got, want)


def test_detect_anomaly_names_the_bodys_op_and_the_step():
    xs = np.ones((6, 2))
    xs[3, 1] = -50.0  # log of a negative number at step 3 only

    def f(c, x):
        c = mg.log(c + x)
        return c + 1.0, None

    init = mg.Tensor(np.ones(2), requires_grad=True)
    with mg.detect_anomaly(), pytest.raises(mg.AnomalyError) as error:
        mg.scan(f, init, xs)
    message = str(error.value)
    assert "'log'" in message and "step 3" in message


def test_detect_anomaly_names_the_step_of_a_bad_gradient():
    """sqrt at 0 is finite forward, its gradient infinite: backward names sqrt and step 2."""
    xs = np.ones((5, 2))
    xs[2] = 0.0

    def f(c, x):
        return c + mg.sqrt(x * c), None

    init = mg.Tensor(np.ones(2), requires_grad=True)
    with mg.detect_anomaly():
        carry, _ = mg.scan(f, init, xs)
        with pytest.raises(mg.AnomalyError) as error:
            carry.sum().backward()
    message = str(error.value)
    assert "'sqrt'" in message and "step 2" in message


def test_detect_anomaly_checks_each_of_inits_contributions():
    """init's gradient is its first step's contributions, handed to the tape one by one;
    anomaly mode checks each (of the init's shape and of a broadcast one here: checked as
    one array, they raised ValueError, an inhomogeneous shape), and gives the loop's bits."""
    H = mg.Tensor(np.array([0.3, -0.2, 0.5]), requires_grad=True)
    xs = np.linspace(0.5, 2.0, 24).reshape(4, 2, 3)

    def f(h, x):
        return mg.sum(mg.tanh(h) * x + h, axis=0) * 0.5, None

    found = []
    for scan in (loop, mg.scan):
        with mg.detect_anomaly():
            found.append(mg.gradients(scan(f, H, xs)[0].sum(), [H])[0])
    assert_bitwise(found[1], found[0])


def _anomaly_of(run):
    """What `run()` raises in detect_anomaly() mode (None if nothing), and its result."""
    try:
        with mg.detect_anomaly():
            return None, run()
    except mg.AnomalyError as error:
        return str(error), None


@settings(max_examples=20, deadline=None)
@given(length=st.integers(1, 6), data=st.data(), y_reads_carry=st.booleans(),
       compiled=st.booleans())
def test_detect_anomaly_checks_a_scans_outputs_as_the_loop_checks_its_ys(
        length, data, y_reads_carry, compiled):
    """A y holding -inf (log 0) is an error exactly where the loop's is: not where it needs no
    gradient (the log of an xs that needs none: scan's check of its whole output raised,
    naming neither op nor step, and a compiled scan's said 'inputs of shapes none'), and
    where it needs one, naming the body's op and the step; such a y needs no gradient, as
    the loop's does not."""
    zero = data.draw(st.integers(0, length - 1), label="step of the zero")
    X = np.ones((length, 2, 3))
    X[zero, 0, 1] = 0.0
    W = mg.Tensor(np.eye(3) * 0.5, requires_grad=True)

    def f(h, x):
        h = mg.tanh(h @ W + 1.0)
        return h, mg.log(x + h * 0.0 if y_reads_carry else x)

    def run(scan):
        def scanned(h0, xs):
            return scan(f, h0, xs)
        h, ys = (mg.compile(scanned) if compiled else scanned)(np.zeros((2, 3)), X)
        (grad,) = mg.gradients(h.sum(), [W])
        return h, ys, grad

    expected_error, expected = _anomaly_of(lambda: run(loop))
    error, found = _anomaly_of(lambda: run(mg.scan))
    assert (error is None) == (expected_error is None) == (not y_reads_carry), error
    if error is None:
        for got, want in zip(found[:2], expected[:2]):
            assert_bitwise(got, want)
        assert found[1].requires_grad == expected[1].requires_grad
        assert_invariant_close(found[2], expected[2], length)
    else:
        assert re.match(r"detect_anomaly: 'log' ", expected_error), expected_error
        assert re.match(r"detect_anomaly: 'log' \(inputs of shapes \(2, 3\)\) ", error), error
        assert f"(scan step {zero})" in error, error


@settings(max_examples=20, deadline=None)
@given(length=st.sampled_from([1, 2, 5, 64, 65, 130]), data=st.data(),
       op=st.sampled_from(["mul", "matmul"]), reverse=st.booleans(), huge=st.booleans(),
       compiled=st.booleans())
def test_detect_anomaly_names_a_batched_invariant_vjps_op_and_its_chunk_of_steps(
        length, data, op, reverse, huge, compiled):
    """A weight's VJP called once for a chunk of steps (`x * W`, `x @ W`, batched) whose
    gradient overflows at one step: the error names the body's op and input as the loop's
    does, and the chunk's steps (it named the whole 'scan' node, its input 2); where
    nothing overflows, none is raised, as in the loop."""
    at = data.draw(st.integers(0, length - 1), label="step of the huge x")
    X = np.full((length, 2, 3), 0.7)
    if huge:
        X[at] = 1e305
    W = mg.Tensor(np.full(3, 1e-5) if op == "mul" else np.eye(3) * 1e-5, requires_grad=True)

    def f(h, x):
        h = h * 0.5 + mg.tanh((x * W if op == "mul" else x @ W) * 1e-300)
        return h, h

    def run(scan):
        def loss(xs):
            return scan(f, np.zeros((2, 3)), xs, reverse=reverse)[1].sum() * 1e305
        return mg.gradients((mg.compile(loss) if compiled else loss)(X), [W])[0]

    expected_error, expected = _anomaly_of(lambda: run(loop))
    error, found = _anomaly_of(lambda: run(mg.scan))
    assert (error is None) == (expected_error is None) == (not huge), error
    if error is None:
        assert_invariant_close(found, expected, length)
        return
    shapes = re.escape(f"(inputs of shapes (2, 3), {W.shape})")
    named = rf"detect_anomaly: '{op}' {shapes} gave the gradient of input 1 holding \+inf"
    assert re.match(named, expected_error), expected_error
    assert re.match(named, error), error
    first, last = map(int, re.search(r"\(scan steps (\d+)\.\.(\d+), in backward\)$",
                                     error).groups())
    assert first <= at <= last < first + scan_module._CHUNK, error


def test_gradients_of_init_xs_and_a_weight_equal_backwards():
    W, b, h0, xs, f = _rnn_case(5, 6)
    carry, ys = mg.scan(f, h0, xs)
    found = mg.gradients(carry.sum() + ys.sum(), [h0, xs, W])
    assert W.grad is None and h0.grad is None and xs.grad is None
    expected_carry, expected_ys = loop(f, h0, xs)
    (expected_carry.sum() + expected_ys.sum()).backward()
    assert_bitwise(found[0], h0.grad)
    assert_bitwise(found[1], xs.grad)
    assert_invariant_close(found[2], W.grad, 6)


def test_twenty_thousand_steps_run_forward_and_backward():
    """A long loop is a loop, not a recursion: backward works at 20,000 steps (far past
    Python's recursion limit), and equals the eager loop's."""
    length = 20_000
    assert length > sys.getrecursionlimit()
    rng = np.random.default_rng(6)
    w = mg.Tensor(np.array(0.999), requires_grad=True)
    xs = mg.Tensor(rng.normal(size=(length, 4)), requires_grad=True)

    def f(h, x):
        return h * w + x, h

    carry, ys = mg.scan(f, np.zeros(4), xs)
    (carry.sum() + ys.sum()).backward()
    got = take_grads([xs, w])
    expected_carry, expected_ys = loop(f, np.zeros(4), xs)
    assert_bitwise(carry, expected_carry)
    assert_bitwise(ys, expected_ys)
    (expected_carry.sum() + expected_ys.sum()).backward()
    want = take_grads([xs, w])
    assert_bitwise(got[0], want[0])
    assert_invariant_close(got[1], want[1], length)


def test_retain_graph_backward_twice_accumulates_as_eager():
    rng = np.random.default_rng(7)
    W, b = _rnn_parameters(rng, 2)
    h0 = mg.Tensor(rng.normal(size=(3, 2)), requires_grad=True)
    xs = mg.Tensor(rng.normal(size=(5, 3, 2)), requires_grad=True)
    f = _rnn_body(W, b)
    results = []
    for run in (mg.scan, loop):
        carry, ys = run(f, h0, xs)
        loss = (carry * carry).sum() + ys.sum()
        loss.backward(retain_graph=True)
        loss.backward()
        results.append(take_grads([h0, xs, W, b]))
    (got_h0, got_xs, *got_invariants), (want_h0, want_xs, *want_invariants) = results
    assert_bitwise(got_h0, want_h0)
    assert_bitwise(got_xs, want_xs)
    for g, w in zip(got_invariants, want_invariants):
        assert_invariant_close(g, w, 5)
    # and twice is twice once (the saved values survived the first sweep)
    carry, ys = mg.scan(f, h0, xs)
    ((carry * carry).sum() + ys.sum()).backward()
    assert_bitwise(2.0 * h0.grad, got_h0)



@pytest.mark.parametrize("outer_reverse, inner_reverse", [(False, False), (True, False),
                                                          (False, True), (True, True)])
def test_a_scan_in_a_scans_body_is_the_loop_of_loops(outer_reverse, inner_reverse):
    """A scan inside a scan's body (a two-level RNN), from zero states, which come to need a
    gradient only through the weights after a step: the loops' values and gradients, eager,
    compiled (eager's bits) and under no_grad. (The inner scan's VJP of its carry was
    made before that carry needed a gradient, and the gradients were silently wrong.)"""
    rng = np.random.default_rng(8)
    W = mg.Tensor(rng.normal(size=(3, 3)) * 0.5, requires_grad=True)
    V = mg.Tensor(rng.normal(size=(3, 3)) * 0.5, requires_grad=True)
    xs = mg.Tensor(rng.normal(size=(3, 4, 2, 3)), requires_grad=True)

    def inner(h, x):
        h = mg.tanh(h @ W + x)
        return h, h * 2.0

    def outer_of(run):
        def outer(c, row):
            h, ys = run(inner, c, row, reverse=inner_reverse)
            return mg.tanh(h @ V), ys.sum()
        return outer

    def two_levels(run, xs):
        carry, ys = run(outer_of(run), np.zeros((2, 3)), xs, reverse=outer_reverse)
        return carry.sum() + ys.sum()

    expected = two_levels(loop, xs)
    want = mg.gradients(expected, [W, V, xs])
    found = two_levels(mg.scan, xs)
    assert_bitwise(found, expected)
    eager = mg.gradients(found, [W, V, xs])
    for got, wanted, what in zip(eager, want, ["W", "V", "xs"]):
        assert_invariant_close(got, wanted, 12, what)
    compiled = mg.compile(lambda xs: two_levels(mg.scan, xs))
    for _ in range(2):
        loss = compiled(xs)
        assert_bitwise(loss, found)
        for got, wanted in zip(mg.gradients(loss, [W, V, xs]), eager):
            assert_bitwise(got, wanted)
    with mg.no_grad():
        assert_bitwise(two_levels(mg.scan, xs), expected)
    with mg.detect_anomaly():  # (its check of the inner scan's output raised TypeError)
        loss = two_levels(mg.scan, xs)
        assert_bitwise(loss, found)
        for got, wanted in zip(mg.gradients(loss, [W, V, xs]), eager):
            assert_bitwise(got, wanted)



def test_a_body_may_read_tensors_computed_before_the_loop():
    """A tensor computed outside the body (`W.T * 2`, an enclosing scan's carry, a compiled
    function's argument or its result) is a loop operand like a weight: the loop's values
    and gradients, eager and compiled. (Eager mode refused it; under compile, or in a scan
    inside a scan, the inner trace spent the enclosing trace's tracer, and the call
    failed.)"""
    rng = np.random.default_rng(9)
    W = mg.Tensor(rng.normal(size=(3, 3)) * 0.5, requires_grad=True)
    xs = mg.Tensor(rng.normal(size=(3, 4, 2, 3)), requires_grad=True)

    def two_levels(run, W, xs):
        Wt = W.T * 2.0

        def outer(c, row):
            h, _ = run(lambda h, x: (mg.tanh(h @ Wt + x + c), None), c, row)
            return mg.tanh(h @ W), h
        carry, hs = run(outer, np.zeros((2, 3)), xs)
        return carry.sum() + (hs * hs).sum()

    expected = two_levels(loop, W, xs)
    want = mg.gradients(expected, [W, xs])
    compiled = mg.compile(lambda W, xs: two_levels(mg.scan, W, xs))
    for loss in [two_levels(mg.scan, W, xs), compiled(W, xs), compiled(W, xs)]:
        assert_bitwise(loss, expected)
        for got, wanted, what in zip(mg.gradients(loss, [W, xs]), want, ["W", "xs"]):
            assert_invariant_close(got, wanted, 12, what)



def test_no_grad_inside_the_body_holds_for_its_ops_as_in_the_loop():
    """`with mg.no_grad():` inside f: what it computes is a constant to the gradient, as in
    the loop (the trace ignored the block: h0's gradient was 32 where the loop gives 8)."""
    W = mg.Tensor([[2.0]], requires_grad=True)

    def f(h, x):
        with mg.no_grad():
            m = h @ W
        return h * m + x, None

    results = []
    for run in (loop, mg.scan, mg.compile(lambda h0, xs: mg.scan(f, h0, xs)[0])):
        h0 = mg.Tensor([[1.0]], requires_grad=True)
        xs = mg.Tensor(np.zeros((2, 1, 1)))
        out = run(h0, xs) if run not in (loop, mg.scan) else run(f, h0, xs)[0]
        out.sum().backward()
        results.append((h0.grad, W.grad))
    for h0_grad, W_grad in results:
        np.testing.assert_array_equal(h0_grad, [[8.0]])
        assert W_grad is None


def test_an_index_array_the_body_reads_is_read_as_it_is_on_every_call():
    """f indexes with an array from outside: a later call with another array of the same
    values gets its own loop's numbers, not those of an array since edited (the cached loop
    held the first array itself), and an edit between forward and backward changes no
    gradient."""
    xs = mg.Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    index = np.array([2, 0, 1])

    def f(h, x):
        return h + x[index], None

    expected, _ = loop(f, np.zeros(3), xs)
    assert_bitwise(mg.scan(f, np.zeros(3), xs)[0], expected)
    index[:] = [0, 1, 2]  # that array, reused for something else
    index = np.array([2, 0, 1])
    carry, _ = mg.scan(f, np.zeros(3), xs)
    assert_bitwise(carry, expected)
    index[:] = [0, 0, 0]
    (carry * mg.Tensor([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(xs.grad, [[2.0, 3.0, 1.0]] * 2)


def test_detect_anomaly_passes_an_operand_no_gradient_reached():
    """An operand that needs a gradient but that none reaches (read only through a
    comparison; an init the body overwrites unread): no gradient, as outside the mode (the
    check of that missing gradient raised AttributeError), eager and compiled."""
    b = mg.Tensor(np.zeros(3), requires_grad=True)
    xs = mg.Tensor(np.ones((2, 3)), requires_grad=True)
    h0 = mg.Tensor(np.ones(3), requires_grad=True)

    def f(h, x):
        return x * mg.astype(mg.greater(x, b), np.float64) + x, None

    def loss(h0, xs):
        return mg.scan(f, h0, xs)[0].sum()

    for run in (loss, mg.compile(loss)):
        xs.grad = None
        with mg.detect_anomaly():
            run(h0, xs).backward()
        np.testing.assert_array_equal(xs.grad, [[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]])
        assert h0.grad is None and b.grad is None



LAID_OUT_OTHERWISE = {
    "a transposed carry's tanh": (lambda c, x: (c + mg.sum(mg.tanh(c.T)), mg.tanh(c.T)),
                                  (3, 4)),
    "a y summed in the body": (lambda c, x: (lambda y: (c + mg.sum(y), y))(mg.tanh(c.T)),
                               (3, 4)),
    "a fancy index": (lambda c, x: (lambda e: (c + mg.sum(e), e))(
        c[:, np.array([[0], [0], [0]])] * 1.0), (2, 1)),
    # C-ordered at the first step, Fortran-ordered from the second: not the traced layout
    "a carry returned transposed": (lambda c, x: (lambda y: ((y + mg.sum(y) * 1e-3).T, y))(
        mg.tanh(c)), (37, 37)),
}


@pytest.mark.parametrize("case", sorted(LAID_OUT_OTHERWISE))
def test_a_y_laid_out_otherwise_than_a_c_array_keeps_the_loops_bits(case):
    """A y that NumPy lays out in Fortran (or another) order, as tanh(c.T) is, was computed
    into (or rebound to) its row of the C-ordered stacked ys, and a sum of it added in
    another order: 1 ulp off the loop in 177 of 200 draws. The loop's bits now, eager and
    compiled; gradients within the bound."""
    f, shape = LAID_OUT_OTHERWISE[case]
    for seed in range(20):
        init = mg.Tensor(np.random.default_rng(seed).uniform(-2, 2, size=shape),
                         requires_grad=True)
        expected_carry, expected_ys = loop(f, init, length=3)
        carry, ys = mg.scan(f, init, length=3)
        assert_bitwise(carry, expected_carry)
        assert_bitwise(ys, expected_ys)
        compiled = mg.compile(lambda c: mg.scan(f, c, length=3)[0].sum())
        assert_bitwise(compiled(init), carry.sum())
        got = mg.gradients(carry.sum() + ys.sum(), [init])[0]
        want = mg.gradients(expected_carry.sum() + expected_ys.sum(), [init])[0]
        assert_invariant_close(got, want, 3)


# --- tracing -------------------------------------------------------------------------------


class Counting:
    """A body that counts how often its Python runs."""

    def __init__(self, W):
        self.W, self.runs = W, 0

    def __call__(self, h, x):
        self.runs += 1
        return mg.tanh(h @ self.W + x), None


def count_loops_written(monkeypatch):
    """A list that grows by one for each function scan (or compile) writes."""
    written = []
    function = Program.function

    def counting(self, *args):
        written.append(args[0])
        return function(self, *args)

    monkeypatch.setattr(Program, "function", counting)
    return written


def test_f_runs_once_per_call_and_its_loop_is_written_once_per_program(monkeypatch):
    """f's Python runs once per call, whatever the length (never per step), so what it reads
    is current; the loops are written once for each distinct program and signature."""
    written = count_loops_written(monkeypatch)
    rng = np.random.default_rng(8)
    f = Counting(mg.Tensor(rng.normal(size=(3, 3)), requires_grad=True))
    h0 = mg.Tensor(np.zeros((2, 3)), requires_grad=True)
    for length in (3, 3, 1, 200, 3):
        mg.scan(f, h0, rng.normal(size=(length, 2, 3)))[0].sum().backward()
    assert f.runs == 5
    first = len(written)
    assert first == 2  # the forward loop and one backward loop
    # A new carry shape alone (the xs' slices as before) is a new program.
    mg.scan(f, mg.Tensor(np.zeros((4, 3)), requires_grad=True), rng.normal(size=(3, 3)))
    assert len(written) == first + 1
    mg.scan(f, h0, rng.normal(size=(7, 2, 3)))
    assert len(written) == first + 1  # the first program's loops are still cached
    # A body made anew for each call (a lambda in a function) writes nothing new.
    for _ in range(3):
        mg.scan(lambda h, x: f(h, x), h0, rng.normal(size=(4, 2, 3)))
    assert len(written) == first + 1


def test_in_anomaly_mode_a_loop_is_written_once_per_program_too(monkeypatch):
    """Anomaly mode keys each step's program by where it was called: a FrameSummary, which
    is not hashable, so the key matched no other and every call wrote its loops anew (and
    pushed other scans' loops out of the cache; found by this stop's hunter)."""
    written = count_loops_written(monkeypatch)
    rng = np.random.default_rng(8)
    f = Counting(mg.Tensor(rng.normal(size=(3, 3)), requires_grad=True))
    h0 = mg.Tensor(np.zeros((2, 3)), requires_grad=True)
    with mg.detect_anomaly():
        for _ in range(4):
            mg.scan(f, h0, rng.normal(size=(5, 2, 3)))[0].sum().backward()
    assert f.runs == 4 and len(written) == 2  # the forward loop and one backward loop


def test_what_f_reads_from_outside_is_read_on_every_call(monkeypatch):
    """A weight, a number and an array that f reads from a global or a closure, rebound or
    changed in place between calls: each call computes the Python loop's numbers, with the
    loops written for the first (a constant's value is read at run time)."""
    written = count_loops_written(monkeypatch)
    rng = np.random.default_rng(10)
    init, xs = rng.normal(size=(2, 3)), rng.normal(size=(4, 2, 3))
    env = {"W": mg.Tensor(rng.normal(size=(3, 3)), requires_grad=True), "scale": 0.5,
           "shift": rng.normal(size=3)}

    def f(h, x):
        return mg.tanh(h @ env["W"] * env["scale"] + x + env["shift"]), h

    def check():
        carry, ys = mg.scan(f, init, xs)
        want_carry, want_ys = loop(f, init, xs)
        assert_bitwise(carry, want_carry, "carry")
        assert_bitwise(ys, want_ys, "ys")
        carry.sum().backward()
        got = take_grads([env["W"]])[0]
        want_carry.sum().backward()
        assert_invariant_close(got, take_grads([env["W"]])[0], len(xs), "gradient of W")

    check()
    first = len(written)
    env["W"] = mg.Tensor(rng.normal(size=(3, 3)), requires_grad=True)
    check()
    env["scale"] = -2.0
    check()
    env["shift"][:] = rng.normal(size=3)
    check()
    env["shift"] = rng.normal(size=3)
    check()
    env["W"].data[:] = rng.normal(size=(3, 3))
    check()
    assert len(written) == first
    env["scale"] = 2  # an int: NumPy's rules differ, so the program may too
    check()


def test_a_zero_initial_state_is_traced_once():
    """The common start, h0 an array of zeros (a GRU's `zero_state`), the carry coming to
    need a gradient after one step through a weight: f's Python runs once, as jax's."""
    rng = np.random.default_rng(9)
    f = Counting(mg.Tensor(rng.normal(size=(3, 3)), requires_grad=True))
    mg.scan(f, np.zeros((2, 3)), rng.normal(size=(4, 2, 3)))
    assert f.runs == 1


@settings(max_examples=20, deadline=None)
@given(copies=st.integers(1, 4), length=st.integers(1, 6), uses_carry=st.booleans(),
       reverse=st.booleans(), seed=st.integers(0, 2**16))
def test_a_state_returned_as_the_carry_and_as_several_ys_gets_the_loops_gradient(
        copies, length, uses_carry, reverse, seed):
    """`return h, (h, h)`: the loop's sweep adds a state's contributions from its stacks
    newest first (the last y's first), then the next step's, and at the last step the
    final carry's (used after the stacks were made) before the ys'. scan added the ys in
    output order and the final carry last: xs' last row differed by an ulp with the carry
    and two ys used (three terms), every row with three ys."""
    rng = np.random.default_rng(seed)
    W = mg.Tensor(rng.normal(size=(3, 3)) * 0.5, requires_grad=True)
    X, H = rng.normal(size=(length, 2, 3)), rng.normal(size=(2, 3))
    scales = rng.uniform(0.5, 4.0, size=copies + 1)

    def f(c, x):
        h = mg.tanh(c @ W + x)
        return h, (h,) * copies

    results = []
    for run in (mg.scan, loop):
        xs, h0 = mg.Tensor(X, requires_grad=True), mg.Tensor(H, requires_grad=True)
        c, ys = run(f, h0, xs, reverse=reverse)
        loss = ((c * scales[0]) ** 2).sum() if uses_carry else 0.0
        for y, scale in zip(ys, scales[1:]):
            loss = loss + ((y * scale) ** 2).sum()
        loss.backward()
        results.append([xs.grad, h0.grad, *take_grads([W])])
    (xs_grad, h0_grad, w_grad), (xs_want, h0_want, w_want) = results
    assert_bitwise(xs_grad, xs_want, "xs")
    assert_bitwise(h0_grad, h0_want, "init")
    assert_invariant_close(w_grad, w_want, length, "W")


def test_a_body_deciding_on_whether_its_carry_needs_a_gradient_is_the_loop_or_an_error():
    """scan traced f on step 0's carry (init needing no gradient) and marked the carry as
    needing one afterwards (a weight in the body) without running f again: a body taking
    `c * 2 if c.requires_grad else c * 3` took step 0's branch at every step, where the loop
    takes it at step 0 only. f is now traced again with the later steps' flags: one body
    cannot do both, so TraceError names the read; with init needing a gradient (every step
    reads True), or a body reading the flag without acting on it, scan is the loop, bit for
    bit. A second carry coming to need one only at step 2 (through the first) is caught too."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(4, 3))
    W = mg.Tensor(rng.normal(size=(3, 3)) * 0.5, requires_grad=True)

    def branches(c, x):
        y = c * 2.0 if c.requires_grad else c * 3.0
        return mg.tanh(y @ W + x), y

    def reads(c, x):
        assert c.requires_grad in (True, False)  # (a read, acted on alike)
        return mg.tanh(c @ W + x), c * 2.0

    with pytest.raises(mg.TraceError, match=r"requires_grad of carry 0 \(shape \(3,\)\), "
                                            r"which is False at step 0 and True"):
        mg.scan(branches, np.zeros(3), X)
    for f, init in ((branches, mg.Tensor(np.zeros(3), requires_grad=True)),
                    (reads, mg.Tensor(np.zeros(3))),
                    (reads, mg.Tensor(np.ones(3), requires_grad=True))):
        for run in (mg.scan, loop):
            c, ys = run(f, init, X)
            (c.sum() + (ys * ys).sum()).backward()
            got = [c.data, ys.data, *take_grads([init, W])]
            if run is mg.scan:
                expected = got
            else:  # (W's gradient: the loop's up to a reordered sum, as a weight's)
                assert_bitwise(expected[0], got[0]), assert_bitwise(expected[1], got[1])
                assert (expected[2] is None) == (got[2] is None) == (not init.requires_grad)
                if init.requires_grad:
                    assert_bitwise(expected[2], got[2])
                assert_invariant_close(expected[3], got[3], len(X))

    def second(c, x):  # b needs a gradient from step 2 on (a from step 1)
        a, b = c
        b_next = a + (b * 2.0 if b.requires_grad else b * 3.0)
        return (mg.tanh(a @ W + x), b_next), None

    with pytest.raises(mg.TraceError, match="requires_grad of carry 1"):
        mg.scan(second, (mg.Tensor(np.zeros(3)), mg.Tensor(np.zeros(3))), X)


def test_a_copy_of_a_carry_that_comes_to_need_a_gradient_raises_as_the_loop():
    """`mg.Tensor(c)` of the carry: the loop raises TypeError at step 1, where c needs a
    gradient (through W) and the copy would lose it; scan, tracing f on step 0's carry,
    accepted the copy and silently dropped every gradient path through the carry. It raises
    the loop's error now."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(4, 3))
    W = mg.Tensor(rng.normal(size=(3, 3)) * 0.5, requires_grad=True)

    def f(c, x):
        return mg.tanh(mg.Tensor(c) @ W + x), c

    errors = []
    for run in (loop, mg.scan):
        with pytest.raises(TypeError, match=r"Tensor\(t\): t \(shape \(3,\)\) requires grad") \
                as error:
            run(f, mg.Tensor(np.zeros(3)), X)
        errors.append(str(error.value))
    assert errors[0] == errors[1]
    with mg.no_grad():  # (no gradient: nothing lost, as in the loop)
        init = mg.Tensor(np.zeros(3))
        assert_bitwise(mg.scan(f, init, X)[0], loop(f, init, X)[0])


def test_a_rebound_module_parameter_is_seen_by_the_next_call():
    class Model(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.array([2.0, 3.0]))

        def step(self, c, x):
            return c * self.w + x, None

    model = Model()
    old = model.w
    xs = np.ones((3, 2))
    init = mg.Tensor(np.ones(2), requires_grad=True)
    carry, _ = mg.scan(model.step, init, xs)
    np.testing.assert_array_equal(carry.data, [15.0, 40.0])  # ((w + 1) w + 1) w + 1
    model.w = nn.Parameter(np.array([-1.0, 0.5]))
    carry, _ = mg.scan(model.step, init, xs)
    np.testing.assert_array_equal(carry.data, [0.0, 1.875])
    carry.sum().backward()
    assert old.grad is None
    expected = loop(model.step, init, xs)[0].sum()
    got = take_grads([model.w, init])
    expected.backward()
    assert_invariant_close(got[0], model.w.grad, 3)
    assert_bitwise(got[1], init.grad)


# --- errors ------------------------------------------------------------------------------------


def test_python_deciding_on_a_traced_value_raises_trace_error():
    xs = np.ones((3, 2))

    def branches(c, x):
        if c.sum() > 0:
            return c + x, None
        return c - x, None

    def reads_a_float(c, x):
        return c * float(x.sum()), None

    for f in (branches, reads_a_float):
        with pytest.raises(mg.TraceError):
            mg.scan(f, np.ones(2), xs)


@pytest.mark.parametrize("body, before, after", [
    (lambda c, x: (mg.stack([c, c]), None), "(2,)", "(2, 2)"),
    (lambda c, x: (mg.astype(c, np.float32), None), "float64", "float32"),
    (lambda c, x: ((c, c), None), "a single tensor", "a tuple of 2"),
])
def test_a_carry_that_changes_is_a_value_error_naming_both(body, before, after):
    with pytest.raises(ValueError) as error:
        mg.scan(body, mg.Tensor(np.ones(2), requires_grad=True), np.ones((3, 2)))
    message = str(error.value)
    assert before in message and after in message


def test_a_tuple_carry_that_loses_a_part_is_a_value_error():
    with pytest.raises(ValueError, match="tuple of 3.*tuple of 2|tuple of 2.*tuple of 3"):
        mg.scan(lambda c, x: ((c[0], c[1]), None), (np.ones(2), np.ones(2), np.ones(2)),
                np.ones((3, 2)))


def test_xs_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(4, 2\)"):
        mg.scan(lambda c, x: (c + x[0] * x[1], None), np.ones(2), (np.ones((3, 2)),
                                                                   np.ones((4, 2))))


def test_a_0d_xs_and_a_tuple_of_three_from_f_are_named_for_what_they_are():
    """A 0-d xs has no axis to slice steps from (it was "must have the same leading axis
    length, got shapes [()]"); f returning three values is named with its count."""
    with pytest.raises(ValueError, match=r"needs a leading axis to slice the steps from, got "
                                         r"shapes \[\(\)\] \(a 0-d one has none\)"):
        mg.scan(lambda c, x: (c, None), 0.0, np.float64(2.0))
    with pytest.raises(TypeError, match=r"must return \(carry, y\), got a tuple of 3"):
        mg.scan(lambda c, x: (c, c, c), 0.0, np.ones(2))


@pytest.mark.parametrize("init, xs, named", [
    (np.ones(2), (np.ones((3, 2)), None), r"xs\[1\] is None, not an array: .*pass xs=None "
                                           r"and length="),
    (np.ones(2), (None, np.ones((3, 2))), r"xs\[0\] is None"),
    ((np.ones(2), None), np.ones((3, 2)), r"init\[1\] is None, not an array: each part of "
                                          r"init and xs is a tensor, an array or a number$"),
    (np.ones(2), (np.ones((3, 2)), np.array(["a", "b", "c"])), r"xs\[1\] must hold numbers"),
])
def test_a_part_that_is_not_an_array_is_named_by_its_position(init, xs, named):
    """A None in a tuple xs (or init) was refused as "xs must hold numbers, got dtype
    object", saying neither which part nor that it was None."""
    with pytest.raises(TypeError, match="^scan: " + named):
        mg.scan(lambda c, x: (c, None), init, xs)


@pytest.mark.parametrize("dtype", [complex, np.complex64, "U1", object])
def test_a_part_that_is_not_real_numbers_is_said_to_need_real_ones(dtype):
    """"xs must hold numbers, got dtype complex128" told of numbers that were there: the
    message says real ones now."""
    with pytest.raises(TypeError, match=r"^scan: xs must hold numbers \(real ones: integers, "
                                        rf"floats or bools\), got dtype {np.dtype(dtype)}$"):
        mg.scan(lambda c, x: (c, None), np.ones(2), np.ones((3, 2), dtype))


def test_a_length_that_disagrees_with_xs_is_refused():
    with pytest.raises(ValueError, match="length 5.*3"):
        mg.scan(lambda c, x: (c + x, None), np.ones(2), np.ones((3, 2)), length=5)


def test_xs_none_needs_a_length():
    with pytest.raises(ValueError, match="length"):
        mg.scan(lambda c, x: (c * 2.0, None), np.ones(2))


@pytest.mark.parametrize("call", [
    lambda: mg.scan(lambda c, x: (c + x, None), [np.ones(2)], np.ones((3, 2))),
    lambda: mg.scan(lambda c, x: (c + x[0], None), np.ones(2), [np.ones((3, 2))]),
    lambda: mg.scan(lambda c, x: ([c[0] + x], None), (np.ones(2),), np.ones((3, 2))),
])
def test_a_list_instead_of_a_tuple_is_refused(call):
    with pytest.raises(TypeError, match="list"):
        call()


@pytest.mark.parametrize("body", [
    lambda c, x: c + x,
    lambda c, x: (c + x,),
    lambda c, x: (c + x, None, None),
])
def test_f_must_return_a_pair(body):
    with pytest.raises(TypeError, match=r"\(carry, y\)"):
        mg.scan(body, np.ones(2), np.ones((3, 2)))


# --- a custom op inside the body, and aliasing ------------------------------------------------

# The identity whose VJP doubles: a gradient through it tells which VJP was used.
_doubling_identity = mg.defop("doubling_identity", lambda x: x.copy(),
                              (lambda g, out: 2.0 * g,), saves="nothing", register=False)


def test_a_custom_ops_own_vjp_is_used_inside_the_body():
    xs = mg.Tensor(np.arange(8.0).reshape(4, 2), requires_grad=True)
    init = mg.Tensor(np.ones(2), requires_grad=True)

    def f(c, x):
        c = c + _doubling_identity(x)
        return c, None

    carry, _ = mg.scan(f, init, xs)
    np.testing.assert_array_equal(carry.data, 1.0 + xs.data.sum(axis=0))
    carry.sum().backward()
    np.testing.assert_array_equal(xs.grad, np.full((4, 2), 2.0))  # an identity's would be 1
    np.testing.assert_array_equal(init.grad, np.ones(2))


def test_writing_into_the_outputs_leaves_the_gradients_alone():
    """The ys (and final carry) share arrays with what backward reads (tanh's VJP reads its
    output, which is the y): writing into `.data` copies first."""
    rng = np.random.default_rng(10)
    W, b = _rnn_parameters(rng, 3)
    xs = mg.Tensor(rng.normal(size=(5, 2, 3)), requires_grad=True)

    def f(h, x):
        h = mg.tanh(h @ W + x)
        return h, h

    def run(mutate):
        carry, ys = mg.scan(f, np.zeros((2, 3)), xs)
        if mutate:  # at once, before any op of ours keeps (and so guards) these arrays
            ys.data[...] = 7.0
            carry.data[...] = -7.0
            assert (ys.data == 7.0).all() and (carry.data == -7.0).all()
        loss = carry.sum() + ys.sum()  # (their gradients do not depend on their values)
        loss.backward()
        return take_grads([xs, W, b])

    clean, mutated = run(False), run(True)
    for g, w in zip(mutated, clean):
        assert_bitwise(g, w)


def test_edits_between_a_scans_forward_and_backward_change_no_gradient():
    """The xs array edited in place and the weight stepped in place (as an optimizer does,
    also through an array taken from `.data`) after the forward pass: the gradient is the
    forward pass's."""
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 3)) * 0.5
    W = mg.Tensor(w0, requires_grad=True)
    xs = rng.normal(size=(5, 4, 3))

    def step(s, x):
        s = mg.tanh(x + s @ W)
        return s, s

    def weight_gradient(edit):
        W.data[...] = w0
        W.grad = None
        given = xs.copy()
        _, ys = mg.scan(step, np.zeros((4, 3)), given)
        loss = (ys * ys).sum()
        if edit:
            given[...] = 7.0
            W.data[...] = 0.0
            taken = W.data
            taken += 1.0
        loss.backward()
        return W.grad

    np.testing.assert_array_equal(weight_gradient(True), weight_gradient(False))


def test_an_outside_array_edited_between_forward_and_backward_changes_no_gradient():
    """An array the body reads from outside (a constant of its program, passed to the loop
    on each call) edited in place after the forward pass: the gradient is the forward
    pass's, as for an eager op's operand."""
    rng = np.random.default_rng(1)
    W = mg.Tensor(rng.normal(size=(3, 3)) * 0.5, requires_grad=True)
    mask = rng.normal(size=3)
    kept = mask.copy()
    xs = mg.Tensor(rng.normal(size=(5, 4, 3)), requires_grad=True)

    def step(s, x):
        s = mg.tanh(x * mask + (s * mask) @ W)
        return s, s

    def gradients(edit):
        mask[...] = kept
        _, ys = mg.scan(step, np.ones((4, 3)), xs)
        loss = (ys * ys).sum()
        if edit:
            mask[...] = 7.0
        loss.backward()
        return take_grads([W, xs])

    for got, want in zip(gradients(True), gradients(False)):
        assert_bitwise(got, want)


def test_four_threads_running_one_scan_body_get_their_own_gradients():
    """One body (one traced program, one pair of generated loops) run from four threads at
    once, each on its own xs: every thread's gradient is the one it gets alone."""
    rng = np.random.default_rng(1)
    v = mg.Tensor(rng.normal(size=(3, 3)) * 0.5, requires_grad=True)
    inputs = [rng.normal(size=(6, 4, 3)) for _ in range(4)]

    def step(s, x):
        s = mg.tanh(x + s @ v)
        return s, s

    def gradient(xs):
        _, ys = mg.scan(step, np.zeros((4, 3)), xs)
        return mg.gradients((ys * ys).sum(), [v])[0]

    alone = [gradient(xs) for xs in inputs]
    results: dict[int, list] = {}
    start = threading.Barrier(4)

    def run(i):
        start.wait()
        results[i] = [gradient(inputs[i]) for _ in range(15)]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, grads in results.items():
        assert all(np.array_equal(g, alone[i]) for g in grads)


def test_a_backward_through_a_scan_after_one_that_raised_part_way_says_it_was_released():
    """As for an eager node: the backward loop had freed part of what it reads, and the next
    backward raised TypeError (cannot unpack None) from inside the loop."""
    w = mg.Tensor(np.array([0.5, 0.7]), requires_grad=True)
    xs = mg.Tensor(np.array([[1.0, 2.0], [0.0, 0.0], [3.0, 1.0], [2.0, 2.0]]),
                   requires_grad=True)

    def f(h, x):
        h = mg.tanh(h * w) + mg.sqrt(x * w)  # sqrt's gradient is infinite at step 1
        return h, h

    with mg.detect_anomaly():
        h, ys = mg.scan(f, np.zeros(2), xs)
        with pytest.raises(mg.AnomalyError), np.errstate(divide="ignore"):
            ys.sum().backward()
    with pytest.raises(RuntimeError, match="through 'scan' was already released"):
        (h * 2).sum().backward()


def test_a_vjp_that_says_it_takes_into_but_returns_another_array_is_still_right():
    """scan writes such a VJP's result straight into the xs' stacked cotangents; one that
    ignored `into` left that row as np.empty made it (garbage where the loop gives the
    gradient)."""
    def vjp(g, out, into=None):
        return g * (1.0 - out * out)  # the bug: `into` ignored

    vjp.into = True
    tanh = mg.defop("tanh_ignoring_into", np.tanh, (vjp,), saves="output", register=False)
    xs = mg.Tensor(np.random.default_rng(0).normal(size=(3, 2, 4)), requires_grad=True)

    def f(c, x):
        y = tanh(x)
        return c + y, y

    carry, ys = mg.scan(f, np.zeros((2, 4)), xs)
    (carry.sum() + (ys * ys).sum()).backward()
    got = xs.grad
    xs.grad = None
    carry, ys = loop(f, np.zeros((2, 4)), xs)
    (carry.sum() + (ys * ys).sum()).backward()
    assert_bitwise(got, xs.grad)


def _mul_vjp_into(g, out, a, b, into=None):
    """a * b's VJP for a, computed into `into` where that has its result's shape (a careful
    VJP: `into` of another shape is ignored)."""
    r = g * b
    if into is not None and into.shape == r.shape:
        into[...] = r
        return into
    return r


def _mul_vjp_out(g, out, a, b, into=None):
    """a * b's VJP for a, computed into `into` as given (of its result's shape: the
    contract of `vjp.into`)."""
    return np.multiply(g, b, out=into)


def _mul_vjp_two_halves(g, out, a, b, into=None):
    """a * b's VJP for a as two halves stacked, which the sweep sums back (an array that
    broadcasts to the operand's shape), whatever `into` is."""
    return np.stack([g * b / 2, g * b / 2])


_mul_vjp_into.into = _mul_vjp_out.into = _mul_vjp_two_halves.into = True


@settings(max_examples=30, deadline=None)
@given(shapes=st.integers(1, 3).flatmap(
           lambda n: st.tuples(*[st.sampled_from([(1, 3), (3, 1), (3, 3), (1, 1)])] * n)),
       steps=st.integers(1, 4), drop=st.integers(0, 2), seed=st.integers(0, 2**32 - 1),
       vjp=st.sampled_from([_mul_vjp_into, _mul_vjp_out, _mul_vjp_two_halves]),
       carried=st.booleans(), w_grad=st.booleans())
def test_a_vjp_that_takes_into_on_an_operand_that_broadcasts_is_the_loops(
        shapes, steps, drop, seed, vjp, carried, w_grad):
    """scan passed a VJP that takes `into` the x's row of the stacked cotangents, of the
    operand's shape, where its result has the step output's (an operand that broadcasts):
    "could not broadcast (2, 3) into (3,)", where the op is right eagerly and in a loop."""
    x_shape = tuple(pair[0] for pair in shapes)[drop:]  # (fewer axes: broadcast on the left)
    w_shape = tuple(pair[1] for pair in shapes)
    mul = mg.defop("mul_into", lambda a, b: a * b, (vjp, lambda g, out, a, b: g * a),
                   saves="inputs", register=False)
    rng = np.random.default_rng(seed)
    xs = mg.Tensor(rng.normal(size=(steps, *x_shape)), requires_grad=True)
    w = mg.Tensor(rng.normal(size=w_shape), requires_grad=w_grad)

    def f(c, x):
        y = mul(x, w)
        return c + y.sum() if carried else c, y

    results = []
    for run in (mg.scan, loop):
        xs.grad = w.grad = None
        carry, ys = run(f, np.zeros(()), xs)
        (carry + (ys * ys).sum()).backward()
        results.append((carry, ys, xs.grad, w.grad))
    (carry, ys, dxs, dw), (carry_loop, ys_loop, dxs_loop, dw_loop) = results
    assert_bitwise(carry, carry_loop)
    assert_bitwise(ys, ys_loop)
    assert_bitwise(dxs, dxs_loop)
    if w_grad:
        assert_invariant_close(dw, dw_loop, steps)


# --- bodies that mix dtypes ------------------------------------------------------------------


def _loop_or_scan(f, init, xs, use_scan):
    if use_scan:
        return mg.scan(f, init, xs)
    carry, ys = init, []
    for k in range(len(xs.data if isinstance(xs, mg.Tensor) else xs)):
        carry, y = f(carry, xs[k])
        ys.append(y)
    return carry, (mg.stack(ys) if ys[0] is not None else None)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(2, 5))
@settings(max_examples=10)
def test_a_y_passed_on_as_it_is_keeps_its_gradients_dtype(dtype, seed, length):
    """A y that f returns as it got it (the incoming carry) was copied by `astype`, whose VJP
    converts the gradient to the value's dtype: a float16 carry's float64 gradient 3e5
    became inf, and a float32 one's was rounded, on the way to float64 xs (the loop passes
    it on unrounded)."""
    X = np.random.default_rng(seed).normal(size=(length, 3))
    big = np.array([3e5, 1.2345678901234, 2.0])  # float64, so the ys' gradient is float64

    def f(c, x):
        return mg.astype(mg.tanh(x), dtype), c  # y is the incoming carry itself

    grads = []
    for use_scan in (False, True):
        xs = mg.Tensor(X.copy(), requires_grad=True)
        _, ys = _loop_or_scan(f, np.zeros(3, dtype), xs, use_scan)
        (ys * big).sum().backward()
        grads.append(xs.grad)
    assert np.isfinite(grads[0]).all()
    assert np.array_equal(grads[0], grads[1]), grads


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 5))
@settings(max_examples=10)
def test_a_float64_cotangent_of_a_lower_precision_step_is_not_rounded(dtype, seed, length):
    """The stacks of the steps' cotangents were made in the values' dtype: a float16
    weight's batched gradient got its float64 cotangents rounded to float16 (3e5 to inf,
    then NaN), and sigmoid's VJP computed a float32 x's gradient into its float32 row
    (rounding g * out first). The stacks widen to the cotangents' dtype now, and a VJP
    computes into a row only in the row's own dtype."""
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(length, 2, 3)) * 1e-3).astype(dtype)
    U = rng.normal(size=(length, 2, 3)).astype(dtype)
    W0 = rng.normal(size=(3, 3)).astype(dtype)
    scale = np.array([3e5, 1.2345678901234, 1.0])  # float64; 3e5 overflows float16

    def run(use_scan):
        W = mg.Tensor(W0.copy(), requires_grad=True)
        xs, us = (mg.Tensor(A.copy(), requires_grad=True) for A in (X, U))

        def f(h, xu):
            x, u = xu
            return h + (x @ W) * scale + mg.sigmoid(u) * scale, None

        if use_scan:
            h, _ = mg.scan(f, np.zeros((2, 3)), (xs, us))
        else:
            h = np.zeros((2, 3))
            for k in range(length):
                h, _ = f(h, (xs[k], us[k]))
        h.sum().backward()
        return W.grad, us.grad

    (w_loop, u_loop), (w_scan, u_scan) = run(False), run(True)
    assert np.array_equal(u_loop, u_scan)  # per step: the loop's very bits
    assert np.isfinite(w_scan).all()
    # the same terms summed in another order (README): one rounding of W's dtype apart
    np.testing.assert_allclose(w_scan, w_loop, rtol=2 * np.finfo(dtype).eps, atol=0)


def test_an_empty_tuple_of_xs_takes_length_as_jax_does():
    """`xs=()` with `length` (jax.lax.scan's way of no per-step input) was refused with
    "every xs must have the same leading axis length, got shapes []"."""
    carry, ys = mg.scan(lambda c, x: (c + 1.0, c * 2.0 if x == () else None), 0.0, xs=(),
                        length=3)
    assert carry.item() == 3.0 and ys.data.tolist() == [0.0, 2.0, 4.0]
    with pytest.raises(ValueError, match="without xs, length must be"):
        mg.scan(lambda c, x: (c, c), 0.0, xs=())


@pytest.mark.parametrize("y", [lambda c: (c, (c, c)), lambda c: {"a": c}, lambda c: [c]],
                         ids=["nested tuple", "dict", "list"])
def test_a_structured_y_is_refused_naming_it(y):
    """A nested tuple y raised a TraceError about NumPy on a traced tensor, a dict y
    "must hold numbers, got dtype object"."""
    with pytest.raises(TypeError, match=r"scan: y must be a tensor, an array, .* flat tuple"
                                        r"|list \(a tuple keeps"):
        mg.scan(lambda c, x: (c, y(c)), 0.0, length=2)


@given(seed=st.integers(0, 2**32 - 1), length=st.integers(2, 6))
@settings(max_examples=15)
def test_a_vjp_computes_into_a_row_only_in_the_ops_own_dtype(seed, length):
    """A float32 body passing through float64 (a float64 constant, cast back): once a
    float64 cotangent widened the xs' stack, tanh's VJP computed into a float64 row, its
    1 - y^2 in float64 where the loop takes it in float32 (every step but the first off)."""
    rng = np.random.default_rng(seed)
    K = np.array([[1.25, 0.75, 1.5]])  # float64

    def step(h, x):
        h = mg.astype(mg.tanh(h * np.float32(0.5) + x) * K, np.float32)
        return h, h

    h0 = rng.normal(size=(2, 3)).astype(np.float32)
    X = rng.normal(size=(length, 2, 3)).astype(np.float32)
    grads = []
    for use_scan in (False, True):
        xs = mg.Tensor(X.copy(), requires_grad=True)
        _, ys = _loop_or_scan(step, h0, xs, use_scan)
        (ys * ys).sum().backward()
        grads.append(xs.grad)
    assert np.array_equal(grads[0], grads[1])
    g, out = rng.normal(size=(2, 3)), np.tanh(X[0])  # and the VJP itself, into or not
    for vjp in (mg.ops._tanh_vjp, mg.ops._sigmoid_vjp):
        assert vjp(g, out).tobytes() == vjp(g, out, into=np.empty((2, 3))).tobytes()


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.bool_])
def test_integer_xs_and_init_of_a_compiled_function_are_float64_as_in_eager_mode(dtype):
    """Inside mg.compile an integer array argument reached scan as a traced integer tensor
    and stayed integer (int8 * 1 then tanh computed in float16: 22.1819 where eager gives
    22.1800), and an integer init raised 'carry changed from int64 to float64'."""
    W = mg.Tensor(np.full((3, 3), 0.3), requires_grad=True)

    def f(xs, h0):
        def step(h, x):
            h = mg.tanh(h @ W + mg.tanh(x * 1))
            return h, h
        _, ys = mg.scan(step, h0, xs)
        return (ys * ys).sum()

    xs, h0 = np.ones((5, 2, 3), dtype), np.ones((2, 3), dtype)
    results = []
    for fn in (f, mg.compile(f)):
        W.grad = None
        loss = fn(xs, h0)
        loss.backward()
        results.append((loss.data.tobytes(), W.grad.tobytes()))
    assert results[0] == results[1]


def test_writing_the_ys_changes_no_carry_without_a_gradient():
    """Without a recorded gradient the outputs were not marked shared: the last carry is a
    row of the ys' stack, so ys.data[...] = 0 set h to 0 (the loop's h is its own)."""
    h, ys = mg.scan(lambda h, x: (h * 0.5 + x, h * 0.5 + x), np.zeros(2), np.ones((3, 2)))
    before = h.data.copy()
    ys.data[...] = 0.0
    assert_equal = np.testing.assert_array_equal
    assert_equal(h.data, before)
    h.data[...] = 7.0
    assert_equal(ys.data, np.zeros((3, 2)))


@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 6))
@settings(max_examples=10)
def test_a_float16_loop_gives_the_loops_bits_with_a_mean_loss(seed, length):
    """The float32 scale of a float16 mean's VJP (a first version) made the cotangents'
    dtype depend on the order contributions arrived: a float16 RNN under mse_loss plus a
    term on h differed from the loop in 38 of 72 xs gradients. The VJP rounds its result
    to float16 once, at its end."""
    rng = np.random.default_rng(seed)
    W = mg.Tensor((rng.normal(size=(3, 3)) * 0.5).astype(np.float16))
    X0 = rng.normal(size=(length, 4, 3)).astype(np.float16)
    h00 = rng.normal(size=(4, 3)).astype(np.float16)

    def step(h, x):
        n = mg.tanh(h @ W + x)
        return n, n

    grads = []
    for use_scan in (False, True):
        X = mg.Tensor(X0, requires_grad=True)
        h0 = mg.Tensor(h00, requires_grad=True)
        h, ys = _loop_or_scan(step, h0, X, use_scan)
        (mg.mse_loss(ys, np.zeros(ys.shape, np.float16)) + (h * h).sum()).backward()
        grads.append((X.grad, h0.grad))
    for loop, scanned in zip(*grads):
        assert loop.dtype == np.float16 and loop.tobytes() == scanned.tobytes()


@settings(max_examples=15, deadline=None)
@given(length=st.integers(1, 5), batch=st.integers(1, 6), n=st.integers(2, 9),
       seed=st.integers(0, 2**31 - 1))
def test_a_fortran_constant_read_by_a_body_whose_carry_needs_a_gradient_later_is_the_loop(
        length, batch, n, seed):
    """`tanh(h @ A + x @ W)` with A a Fortran-order NumPy constant and h0 needing no
    gradient: the loop's first step makes no node for `h @ A`, later ones do. While only a
    step that made a node copied A (in C order: a product of another layout may round
    otherwise), scan, one program for every step, copied it at step 0 too: 7.8e-16 apart
    from step 0 on (found by this stop's review). The ops compute on A itself, in the loop as
    in scan (on its snapshot of A, laid out as A); a node keeps a copy for its VJPs."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n)).T * 0.3
    W = mg.Tensor(rng.normal(size=(3, n)) * 0.3, requires_grad=True)
    h0 = mg.Tensor(rng.normal(size=(batch, n)))
    xs = mg.Tensor(rng.normal(size=(length, batch, 3)))

    def body(h, x):
        h = mg.tanh(h @ A + x @ W)
        return h, h

    _, ys = mg.scan(body, h0, xs)
    _, want = loop(body, h0, xs)
    assert_bitwise(ys, want)


_LAYOUTS = {"C": lambda a: a, "F": np.asfortranarray, "reversed": lambda a: a[::-1, :, ::-1],
            "transposed": lambda a: np.ascontiguousarray(a.transpose(2, 1, 0)).transpose(2, 1, 0),
            "broadcast": lambda a: np.broadcast_to(a[:, :1], a.shape)}


@settings(max_examples=25, deadline=None)
@given(layout=st.sampled_from(sorted(_LAYOUTS)), init_layout=st.sampled_from(sorted(_LAYOUTS)),
       grad=st.booleans(), length=st.integers(1, 4), n=st.integers(150, 400),
       seed=st.integers(0, 2**31 - 1))
def test_numpy_xs_and_init_of_any_layout_give_the_loops_bits_with_or_without_a_gradient(
        layout, init_layout, grad, length, n, seed):
    """A sum over a NumPy xs's step, or over the carry, adds in the order of the array's
    layout. The loop's ops compute on the NumPy arrays themselves; scan's loop, in grad mode,
    on its copies of them (which its node keeps), laid out as the arrays (a Fortran xs on a
    C copy: 1.4e-14 apart, found by this stop's hunter), so that both add in one order.
    tests/test_layouts.py draws the table's other ops."""
    rng = np.random.default_rng(seed)
    X = _LAYOUTS[layout](rng.normal(size=(length, 2, n)))
    h0 = _LAYOUTS[init_layout](rng.normal(size=(1, 2, n)))[0]
    w = mg.Tensor(np.array(0.5), requires_grad=grad)

    def body(h, x):
        s = mg.sum(x, axis=1, keepdims=True) + mg.sum(h, axis=1, keepdims=True)
        return h * w + s, s

    carry, ys = mg.scan(body, h0, X)
    want_carry, want = loop(body, h0, X)
    assert_bitwise(ys, want)
    assert_bitwise(carry, want_carry)


@settings(max_examples=20, deadline=None)
@given(length=st.integers(1, 4), rows=st.integers(1, 40), seed=st.integers(0, 2**31 - 1))
def test_a_step_of_a_numpy_xs_is_a_tensor_whose_methods_are_the_engines(length, rows, seed):
    """f gets each x of a NumPy xs as a tensor (`mg.Tensor(xs[k])`), as the README says, so
    `x.sum(axis=0)` of a float16 slice is the engine's sum (in float32, as PyTorch's), the
    loop's over tensors bit for bit; a NumPy slice's sum adds in float16 (found by this
    stop's review, after float16 sums moved to float32)."""
    xs = (np.random.default_rng(seed).normal(size=(length, rows, 2)) * 50).astype(np.float16)

    def step(c, x):
        assert isinstance(x, mg.Tensor)
        c = c + x.sum(axis=0)
        return c, c

    init = np.zeros(2, np.float16)
    h, hs = mg.scan(step, init, xs)
    want_h, want_hs = loop(step, mg.Tensor(init), [mg.Tensor(x) for x in xs])
    assert_bitwise(h, want_h)
    assert_bitwise(hs, want_hs)


@pytest.mark.parametrize("length", [2.0, True, "2", np.float64(2.0)])
def test_a_length_that_is_not_an_integer_is_a_type_error_with_xs_or_without(length):
    """length=2.0 was a ValueError without xs, and taken with xs of 2 steps."""
    message = rf"^scan: length must be an integer \(the number of steps\) or None, got " \
              rf"{type(length).__name__} "
    with pytest.raises(TypeError, match=message):
        mg.scan(lambda c, x: (c * 2.0, c), np.ones(2), length=length)
    with pytest.raises(TypeError, match=message):
        mg.scan(lambda c, x: (c + x, c), np.ones(2), np.ones((2, 2)), length=length)


@pytest.mark.parametrize("f", [None, 3, "f"])
def test_a_body_that_is_not_callable_is_refused_by_scan(f):
    """mg.scan(None, init, xs) said "'NoneType' object is not callable", from the trace."""
    with pytest.raises(TypeError, match=rf"^scan: expected a function as f, got "
                                        rf"{type(f).__name__}$"):
        mg.scan(f, np.ones(2), np.ones((3, 2)))


@settings(max_examples=20, deadline=None)
@given(values=st.lists(st.floats(-3, 3), min_size=1, max_size=4), length=st.integers(1, 4),
       over=st.integers(0, 3))
def test_an_exception_an_op_raised_at_step_0_that_f_caught_is_refused(values, length, over):
    """f catching an op's exception on step 0's values would fix that branch for every step
    (the Python loop takes it where the values raise); an f that lets it through raises it
    as the loop does; NumPy's error state set inside f is refused (a step's replay would
    not follow it)."""
    w = mg.Tensor(np.linspace(0.5, 1.5, len(values)), requires_grad=True)
    xs = np.tile(np.array(values), (length, 1))
    xs[0, over % len(values)] = 1e4

    def caught(c, x):
        try:
            y = mg.exp(x * w)
        except FloatingPointError:
            y = x * w
        return c + y.sum(), y

    def let_through(c, x):
        return c + mg.exp(x * w).sum(), None

    def inside(c, x):
        with np.errstate(over="raise"):
            return c + mg.exp(x * w).sum(), None

    with np.errstate(over="raise"):
        with pytest.raises(mg.TraceError, match="op exp raised FloatingPointError on this "
                                                "call's values and the function caught it"):
            mg.scan(caught, mg.Tensor(0.0), xs)
        with pytest.raises(FloatingPointError, match="overflow"):
            mg.scan(let_through, mg.Tensor(0.0), xs)
    with pytest.raises(mg.TraceError, match="set np.errstate around the call"):
        mg.scan(inside, mg.Tensor(0.0), xs[1:] if length > 1 else xs * 0.0)


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 4), length=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_two_threads_sweeping_one_retained_scan_node_get_their_own_gradients(
        n, length, seed):
    """Two backwards through one scan node, with retain_graph: thread A, having run the
    backward loop for its cotangent and begun keeping the result on the node, waits until B
    has run its own and is done; A's next operand must still get A's gradient, not B's
    (the node kept the results and their cotangent in two writes)."""
    rng = np.random.default_rng(seed)
    w = mg.Tensor(rng.normal(size=(n, n)) * 0.3, requires_grad=True)
    h0 = mg.Tensor(rng.normal(size=n), requires_grad=True)

    def f(h, x):
        h = mg.tanh(h @ w + x)
        return h, h

    a_paused, b_done = threading.Event(), threading.Event()

    class Paused(scan_module._Run):  # A pauses after its first write of the loop's results
        def __setattr__(self, name, value):
            object.__setattr__(self, name, value)
            if name != "released" and threading.current_thread().name == "A" \
                    and not b_done.is_set():
                a_paused.set()
                assert b_done.wait(60), "thread B did not finish"

    with unittest.mock.patch.object(scan_module, "_Run", Paused):
        _, ys = mg.scan(f, h0, rng.normal(size=(length, n)))
    losses = {"A": ys.sum(), "B": (ys * rng.normal(size=n)).sum()}
    alone = {k: mg.gradients(L, [w, h0], retain_graph=True) for k, L in losses.items()}
    got: dict[str, list] = {}

    def run(name):
        try:
            if name == "B":
                assert a_paused.wait(60), "thread A did not run the backward loop"
            got[name] = mg.gradients(losses[name], [w, h0], retain_graph=True)
        finally:
            if name == "B":
                b_done.set()

    a = threading.Thread(target=run, args=("A",), name="A")
    b = threading.Thread(target=run, args=("B",), name="B")
    a.start()
    b.start()
    a.join()
    b.join()
    for name in "AB":
        for g, want in zip(got[name], alone[name]):
            assert_bitwise(g, want)


@pytest.mark.parametrize("constant", [np.ones(3), np.float64(2.0), mg.Tensor(np.ones(3))])
def test_a_carry_whose_dtype_changes_names_the_op_that_changed_it(constant):
    """A float32 carry times a float64 array f reads: the error named both dtypes but not
    where the float64 came from."""
    with pytest.raises(ValueError, match=r"^scan: carry 0 changed from shape \(3,\) float32 to "
                                         r"\(3,\) float64 in one step \(first made float64 by "
                                         r"'mul' of float32 and float64: give f's constants"):
        mg.scan(lambda c, x: (c * constant + x, None), np.zeros(3, np.float32),
                np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"to \(2,\) float32 in one step; f must keep it$"):
        mg.scan(lambda c, x: (c[:2], None), np.zeros(3, np.float32), np.ones((4, 3), np.float32))
