"""`mg.rnn`, the Elman recurrence as one op, against the loop it replaces: an `addmm` and
the activation per step. The table's tests (test_ops.py, test_errors.py, test_compile.py)
already check its gradient numerically, in float32, compiled and with wrong types; here it
must give the loop's numbers: the states and the gradients of z and s0 to the bit, the
gradient of w (one product over all positions instead of a sum of per-step products) to
within the rounding of a reordered sum; a short linear scalar recurrence, which rnn
computes in closed form (one product by the matrix of w's powers), to within the rounding
of its terms' sums.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import minigrad as mg
from minigrad.testing.strategies import arrays

ACTIVATIONS = ["tanh", "sigmoid", "identity"]


def loop(z, w, s0, activation):
    """The recurrence step by step, as a model would write it without `rnn`."""
    act = (lambda x: x) if activation == "identity" else getattr(mg, activation)
    states, s = [], s0
    for k in range(z.shape[0]):
        if s is None:
            s = act(z[k])
        else:  # a scalar recurrence multiplies, a vector one takes a product
            s = act(z[k] + s * w if np.ndim(w.data) == 0 else mg.addmm(z[k], s, w))
        states.append(s)
    return mg.stack(states, axis=0)


def gradients(run, z, w, s0, upstream, activation):
    leaves = [mg.Tensor(x, requires_grad=True) for x in (z, w)]
    if s0 is not None:
        leaves.append(mg.Tensor(s0, requires_grad=True))
    out = run(leaves[0], leaves[1], leaves[2] if s0 is not None else None, activation)
    out.backward(upstream)
    return out.data, [t.grad for t in leaves]


@st.composite
def recurrences(draw):
    length, batch, n = draw(st.integers(1, 12)), draw(st.integers(1, 6)), draw(st.integers(1, 9))
    state = () if draw(st.booleans()) else (n,)  # (): a scalar recurrence, w of shape ()
    z = draw(arrays((length, batch, *state), low=-2.0, high=2.0))
    w = draw(arrays(state * 2, low=-1.0, high=1.0))
    s0 = draw(st.sampled_from([None, state, (batch, *state)]))
    if s0 is not None:
        s0 = draw(arrays(s0, low=-1.0, high=1.0))
    upstream = draw(arrays(z.shape, low=-1.0, high=1.0))
    return z, w, s0, upstream


@pytest.mark.parametrize("activation", ACTIVATIONS)
@given(case=recurrences())
def test_rnn_gives_the_loops_numbers(activation, case):
    z, w, s0, upstream = case
    states, (gz, gw, *gs0) = gradients(
        lambda *a: mg.rnn(*a[:3], activation=a[3]), z, w, s0, upstream, activation)
    expected, (ez, ew, *es0) = gradients(loop, z, w, s0, upstream, activation)
    if ew is None:  # one step and no s0: nothing multiplies w, which rnn gives zeros
        ew = np.zeros_like(w)
    eps = np.finfo(np.float64).eps
    # Where rnn takes the closed form of a short linear scalar recurrence (S = P z, D = P^T g
    # with P[k, j] = w^(k-j)), it sums the loop's terms in another order: each state (delta)
    # within 4 L eps of the sum of its terms' magnitudes, (|P| |z|) ((|P|^T |g|)), from the
    # rounding of both; zero where it takes the loop.
    bound_s, bound_d = np.zeros(z.shape), np.zeros(z.shape)
    if activation == "identity" and mg.ops._closed_form_pays(z, w):
        length = z.shape[0]
        k = np.arange(length)
        magnitudes = np.where(k[:, None] >= k, np.abs(w) ** np.maximum(k[:, None] - k, 0), 0.0)
        bound_d = (4 * length * eps * magnitudes.T @ np.abs(upstream).reshape(length, -1)
                   ).reshape(z.shape)
        if s0 is None:
            bound_s = (4 * length * eps * magnitudes @ np.abs(z).reshape(length, -1)
                       ).reshape(z.shape)
    assert np.all(np.abs(states - expected) <= bound_s)
    assert np.all(np.abs(gz - ez) <= bound_d)
    for g, e in zip(gs0, es0):  # w sum_i D_1[i] (or its product with w): D_1 within bound_d
        assert np.all(np.abs(g - e) <= np.abs(w).max(initial=0.0) * bound_d[0].sum()
                      * (1 + 4 * z.size * eps) + 4 * z.size * eps * np.abs(e))
    # W's gradient sums the same products in another order: apart by at most the rounding
    # of two sums of m terms, 2 m eps sum |term| (m = positions x samples, with s0's terms),
    # plus what the states' and deltas' own differences (bounds above) carry into it.
    previous = np.concatenate([np.zeros((1,) + z.shape[1:]) if s0 is None else
                               np.broadcast_to(s0, (1,) + z.shape[1:]), states[:-1]])
    previous_bound = np.concatenate([np.zeros((1,) + z.shape[1:]), bound_s[:-1]])
    deltas = ez  # dloss/d(pre-activation) at every position: z's gradient
    n = w.shape[0] if w.ndim else 1
    m = previous.size // n

    def products(a, b):
        return (a.reshape(-1, n).T @ b.reshape(-1, n)).reshape(w.shape)

    terms = products(np.abs(previous), np.abs(deltas))
    carried = (products(previous_bound, np.abs(deltas) + bound_d)
               + products(np.abs(previous), bound_d))
    assert np.all(np.abs(gw - ew) <= 2 * m * eps * terms + (1 + 2 * m * eps) * carried)


def test_without_an_initial_state_the_first_step_is_the_activation_of_z1():
    z = np.array([[[0.5, -1.0]], [[0.25, 2.0]]])
    w = np.array([[1.0, 2.0], [3.0, 4.0]])
    states = mg.rnn(z, w, activation="identity").data
    np.testing.assert_array_equal(states[0], z[0])
    np.testing.assert_array_equal(states[1], z[1] + z[0] @ w)


def test_a_single_step_gives_w_a_zero_gradient_when_nothing_multiplies_it():
    w = mg.Tensor(np.ones((2, 2)), requires_grad=True)
    mg.rnn(np.ones((1, 3, 2)), w).sum().backward()
    np.testing.assert_array_equal(w.grad, np.zeros((2, 2)))


def test_each_backward_gets_its_own_deltas():
    """The three VJPs share the deltas of one upstream gradient: a second backward through
    the kept graph, with another upstream gradient, or a compiled program replayed with
    another seed must not reuse the first one's."""
    rng = np.random.default_rng(0)
    z = mg.Tensor(rng.normal(size=(4, 3, 2)), requires_grad=True)
    w = mg.Tensor(rng.normal(size=(2, 2)) * 0.5, requires_grad=True)
    s0 = mg.Tensor(rng.normal(size=2), requires_grad=True)
    out = mg.rnn(z, w, s0)
    up = rng.normal(size=(4, 3, 2))
    out.backward(up, retain_graph=True)
    first = [t.grad.copy() for t in (z, w, s0)]
    for t in (z, w, s0):
        t.grad = None
    out.backward(3.0 * up)
    for t, g in zip((z, w, s0), first):
        np.testing.assert_allclose(t.grad, 3.0 * g, rtol=1e-13, atol=1e-15)

    def loss(scale):
        return (mg.rnn(z, w, s0) * scale).sum()

    compiled = mg.compile(lambda x, scale: (mg.rnn(x, w, s0) * scale).sum())
    for scale in (1.0, 2.0, 1.0, 5.0):  # 2 and 5: traced and replayed with other seeds
        for t in (z, w, s0):
            t.grad = None
        loss(scale).backward()
        eager = [t.grad.copy() for t in (z, w, s0)]
        for t in (z, w, s0):
            t.grad = None
        compiled(z, np.array(scale)).backward()
        for t, g in zip((z, w, s0), eager):
            np.testing.assert_array_equal(t.grad, g)


def test_only_the_operands_that_need_a_gradient_get_one():
    rng = np.random.default_rng(1)
    z, w = rng.normal(size=(3, 2, 2)), mg.Tensor(rng.normal(size=(2, 2)), requires_grad=True)
    s0 = mg.Tensor(rng.normal(size=(2, 2)), requires_grad=True)
    mg.rnn(z, w.detach(), s0).sum().backward()  # only s0: its VJP computes the deltas alone
    expected = mg.Tensor(s0.data, requires_grad=True)
    loop(z, w.data, expected, "tanh").sum().backward()
    np.testing.assert_array_equal(s0.grad, expected.grad)
    assert w.grad is None


@pytest.mark.parametrize("args, message", [
    (((3,), (3, 3)), r"rnn: expected z of shape \(L >= 1, \.\.\., n\) and w of shape "
                     r"\(n, n\), or w of shape \(\) and z \(L >= 1, \.\.\.\), got z \(3,\) "
                     r"and w \(3, 3\)"),
    (((0, 3), ()), r"got z \(0, 3\) and w \(\)"),
    (((), ()), r"got z \(\) and w \(\)"),
    (((2, 4, 3), (3, 2)), r"got z \(2, 4, 3\) and w \(3, 2\)"),
    (((0, 4, 3), (3, 3)), r"got z \(0, 4, 3\)"),
    (((2, 4, 3), (3, 3), (5, 3)), r"rnn: initial state of shape \(5, 3\) does not broadcast "
                                  r"to a step's shape \(4, 3\)"),
])
def test_wrong_shapes_are_refused_with_the_shapes(args, message):
    with pytest.raises(ValueError, match=message):
        mg.rnn(*(np.zeros(shape) for shape in args))


def test_an_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="rnn: activation must be one of tanh, sigmoid, "
                                         "identity, got 'relu'"):
        mg.rnn(np.zeros((2, 1, 3)), np.zeros((3, 3)), activation="relu")


def test_float32_stays_float32_and_the_inputs_are_not_written():
    z = np.random.default_rng(2).normal(size=(5, 2, 3)).astype(np.float32)
    w = np.eye(3, dtype=np.float32) * 0.5
    before = z.copy(), w.copy()
    zt, wt = mg.Tensor(z, requires_grad=True), mg.Tensor(w, requires_grad=True)
    out = mg.rnn(zt, wt, activation="sigmoid")
    out.sum().backward()
    assert out.dtype == zt.grad.dtype == wt.grad.dtype == np.float32
    np.testing.assert_array_equal(z, before[0])
    np.testing.assert_array_equal(w, before[1])


def test_an_initial_state_given_as_a_number_is_one():
    """Only None means "no initial state": s0 = 5.0 is S_0 = 5 (a scalar recurrence), and a
    number is refused where S_0 w must be a product."""
    z = np.array([[0.5, -1.0], [0.25, 2.0]])
    states = mg.rnn(z, np.array(0.5), 5.0, activation="identity").data
    np.testing.assert_array_equal(states[0], z[0] + 5.0 * 0.5)
    s0 = mg.Tensor(5.0, requires_grad=True)
    mg.rnn(z, np.array(0.5), s0, activation="identity").sum().backward()
    assert s0.grad == 2 * (0.5 + 0.25)  # dS_1/ds0 = w, dS_2/ds0 = w^2, for both samples
    with pytest.raises(ValueError, match=r"rnn: initial state of shape \(\) does not "
                                         r"broadcast to a step's shape \(2, 3\)"):
        mg.rnn(np.zeros((2, 2, 3)), np.eye(3), 5.0)


def test_replays_in_two_threads_give_each_its_own_gradients():
    """A compiled program's rnn VJPs (and the deltas they share) serve every replay, in any
    thread: replays of two inputs at once each give eager mode's gradients."""
    import sys
    import threading

    rng = np.random.default_rng(4)
    w = mg.Tensor(rng.normal(size=(3, 3)) * 0.5, requires_grad=True)
    s0 = mg.Tensor(rng.normal(size=3), requires_grad=True)
    step = mg.compile(lambda z: (mg.rnn(z, w, s0) * mg.rnn(z, w, s0)).sum())
    zs = [rng.normal(size=(6, 4, 3)) for _ in range(2)]

    def grads(loss, z):
        return mg.gradients(loss, [z, w, s0])

    expected = []
    for z in zs:
        zt = mg.Tensor(z, requires_grad=True)
        expected.append(grads((mg.rnn(zt, w, s0) * mg.rnn(zt, w, s0)).sum(), zt))
    for z in zs * 2:  # trace, trace again from other inputs: replays from here on
        step(mg.Tensor(z, requires_grad=True))
    wrong: list[int] = []

    def replay(k):
        for _ in range(100):
            zt = mg.Tensor(zs[k], requires_grad=True)
            if not all(np.array_equal(a, b) for a, b in zip(grads(step(zt), zt), expected[k])):
                wrong.append(k)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows
    try:
        threads = [threading.Thread(target=replay, args=(k,)) for k in (0, 1, 0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert step.traces == 1 and not wrong


def test_changing_what_rnn_saved_between_forward_and_backward_changes_nothing():
    """rnn's backward reads its states, w and s0: an in-place change to any of them (the
    states through `.data`, a weight an optimizer steps, a plain NumPy w) after the forward
    pass changes the tensors, not the gradients."""
    rng = np.random.default_rng(6)
    z = rng.normal(size=(5, 3, 2))
    w0, s00 = rng.normal(size=(2, 2)) * 0.5, rng.normal(size=2)

    def gradients_of(mutate):
        zt = mg.Tensor(z, requires_grad=True)
        w, s0 = mg.Tensor(w0, requires_grad=True), mg.Tensor(s00, requires_grad=True)
        plain = w0.copy()
        states = mg.rnn(zt, w, s0)
        other = mg.rnn(zt, plain, s0, activation="sigmoid")
        loss = (states * states).sum() + other.sum()
        if mutate:
            states.data[...] = 0.0
            w.data += 1.0
            s0.data *= -1.0
            plain[...] = 7.0
        loss.backward()
        return zt.grad, w.grad, s0.grad

    for a, b in zip(gradients_of(True), gradients_of(False)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the loop's own overflow and inf - inf
@pytest.mark.parametrize("z_first, w", [
    (0.0, 1e40),     # w^(L-1) overflows; the loop's states do not (only z_L is non-zero)
    (np.inf, 0.5),   # an inf in z: the product's zeros times inf would be NaN
    (np.nan, 0.5),
])
def test_a_linear_recurrence_the_closed_form_cannot_give_is_the_loops(z_first, w):
    """A short linear scalar recurrence is computed as S = P z, P[k, j] = w^(k-j); where P
    or z is not finite that product is not the loop's number (inf - inf, 0 times inf), and
    rnn gives the loop's states and deltas, bit for bit."""
    z = np.zeros((10, 3))
    z[0, 0], z[-1] = z_first, 1.0
    upstream = np.ones_like(z)
    upstream[-1, 1] = z_first
    states, grads = gradients(lambda *a: mg.rnn(*a[:3], activation=a[3]), z, np.array(w),
                              None, upstream, "identity")
    expected, expected_grads = gradients(loop, z, np.array(w), None, upstream, "identity")
    np.testing.assert_array_equal(states, expected)
    np.testing.assert_array_equal(grads[0], expected_grads[0])


def test_a_long_linear_recurrence_runs_the_loop():
    """The closed form costs L^2 m products against the loop's 2 L m: past a small size
    rnn runs the loop, whose numbers are the unrolled graph's to the bit."""
    rng = np.random.default_rng(7)
    z, w = rng.normal(size=(60, 40)), np.array(0.9)
    assert not mg.ops._closed_form_pays(z, w)
    upstream = rng.normal(size=z.shape)
    states, grads = gradients(lambda *a: mg.rnn(*a[:3], activation=a[3]), z, w, None,
                              upstream, "identity")
    expected, expected_grads = gradients(loop, z, w, None, upstream, "identity")
    np.testing.assert_array_equal(states, expected)
    np.testing.assert_array_equal(grads[0], expected_grads[0])


@pytest.mark.parametrize("w", [1e-40, -1e-40, 1e30, -0.5, 0.0, -1.0])
def test_a_linear_recurrence_under_a_callers_errstate_raises_only_where_the_loop_would(w):
    """Under np.errstate(all="raise") the closed form must not fail on a power of w that
    underflows (1e-40^9) where the loop, whose states stay near 1, needs no such power: rnn
    then runs the loop. With every power normal it gives the loop's numbers, no error."""
    z = np.ones((10, 3))
    with np.errstate(all="raise"):
        states = mg.rnn(z, np.array(w), activation="identity").data
        expected = loop(mg.Tensor(z), mg.Tensor(np.array(w)), None, "identity").data
    np.testing.assert_allclose(states, expected, rtol=4 * 10 * np.finfo(np.float64).eps)


# --- rnn_last: the last state alone ---------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
@given(case=recurrences())
def test_rnn_last_gives_rnns_last_state_and_its_gradients(activation, case):
    """Outside the closed form, rnn_last runs rnn's loop and seeds rnn's backward at step L:
    its numbers are rnn(...)[-1]'s to the bit. In closed form (S_L = sum_j w^(L-1-j) z_j,
    one product each way) they are within the rounding of the loop's terms summed in
    another order: S_L and D_j = w^(L-1-j) g within 4 L eps of their terms' magnitudes, w's
    gradient within 8 (L + m) eps of its terms' (m: the step's size)."""
    z, w, s0, upstream = case
    g = upstream[-1]
    seeded = np.zeros_like(upstream)
    seeded[-1] = g
    last, (gz, gw, *gs0) = gradients(
        lambda *a: mg.rnn_last(*a[:3], activation=a[3]), z, w, s0, g, activation)
    closed = mg.ops._last_closed_form(z, w, s0, activation)
    run = loop if closed else (lambda *a: mg.rnn(*a[:3], activation=a[3]))
    states, (ez, ew, *es0) = gradients(run, z, w, s0, seeded, activation)
    if ew is None:  # one step and no s0: nothing multiplies w
        ew = np.zeros_like(w)
    if not closed:
        np.testing.assert_array_equal(last, states[-1], strict=True)
        for a, b in zip([gz, gw, *gs0], [ez, ew, *es0]):
            np.testing.assert_array_equal(a, b, strict=True)
        return
    eps, length, scale = np.finfo(np.float64).eps, z.shape[0], np.abs(w).reshape(())
    along = (length,) + (1,) * (z.ndim - 1)  # a vector over j, broadcast along a step
    powers = (scale ** np.arange(length - 1, -1, -1)).reshape(along)  # |w|^(L-1-j)
    assert np.all(np.abs(last - states[-1])
                  <= 4 * length * eps * (powers * np.abs(z)).sum(axis=0))
    assert np.all(np.abs(gz - ez) <= 4 * length * eps * powers * np.abs(g))
    factors = (np.arange(length - 1, 0, -1) * scale ** np.arange(
        length - 2, -1, -1)).reshape((length - 1,) + along[1:])  # (L-1-j) |w|^(L-2-j)
    terms = (factors * np.abs(z[:-1]) * np.abs(g)).sum()
    assert np.all(np.abs(gw - ew) <= 8 * (length + g.size) * eps * terms)


@given(length=st.integers(2, 8), batch=st.integers(1, 4),
       w=st.sampled_from([0.0, 0.5, -0.9, 1.0]), where=st.sampled_from(["z", "g"]),
       value=st.sampled_from([np.inf, -np.inf, np.nan]), data=st.data())
def test_rnn_last_gives_way_to_the_loop_on_an_inf_or_nan(length, batch, w, where, value, data):
    """An inf or NaN in z or in the cotangent g: S_L = p . z and D = p g weigh each term as
    the loop does (w = 0 included), and w's gradient gives way to the loop where it is not
    finite, so every number is the loop's up to rounding, and non-finite exactly where the
    loop's is, with the same sign or NaN."""
    z = data.draw(arrays((length, batch), low=-2.0, high=2.0), label="z")
    g = data.draw(arrays((batch,), low=-1.0, high=1.0), label="g")
    place = data.draw(st.integers(0, (z if where == "z" else g).size - 1), label="place")
    (z if where == "z" else g).flat[place] = value
    seeded = np.zeros(z.shape)
    seeded[-1] = g
    with np.errstate(all="ignore"):
        last, (gz, gw) = gradients(lambda *a: mg.rnn_last(*a[:3], activation=a[3]), z,
                                   np.array(w), None, g, "identity")
        states, (ez, ew) = gradients(lambda *a: mg.rnn(*a[:3], activation=a[3]), z,
                                     np.array(w), None, seeded, "identity")
    rtol = 4 * length * np.finfo(np.float64).eps
    np.testing.assert_allclose(last, states[-1], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(gz, ez, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(gw, ew, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("w", [1e-40, -1e-40, 1e30, -0.5, 0.0, -1.0])
def test_rnn_last_under_a_callers_errstate_raises_only_where_the_loop_would(w):
    """As rnn's closed form: a power of w that underflows (1e-40^9) sends rnn_last to the
    loop under np.errstate(all="raise"), whose states stay near 1; with every power normal
    the closed form gives the loop's numbers. Backward raises exactly where the unrolled
    loop's does (its deltas w^(L-k) g do underflow for w = 1e-40)."""
    z = np.ones((10, 3))

    def outcome(run):
        try:
            return gradients(run, z, np.array(w), None, np.ones(3), "identity")
        except FloatingPointError:
            return None

    with np.errstate(all="raise"):
        last = mg.rnn_last(z, np.array(w), activation="identity").data
        states = loop(mg.Tensor(z), mg.Tensor(np.array(w)), None, "identity").data
        closed = outcome(lambda *a: mg.rnn_last(*a[:3], activation=a[3]))
        unrolled = outcome(lambda *a: loop(*a)[-1])
    np.testing.assert_allclose(last, states[-1], rtol=4 * 10 * np.finfo(np.float64).eps)
    assert (closed is None) == (unrolled is None)
    if closed is not None:
        for a, b in zip(closed[1], unrolled[1]):
            np.testing.assert_allclose(a, b, rtol=4 * 10 * np.finfo(np.float64).eps)


@pytest.mark.parametrize("op", [mg.rnn, mg.rnn_last])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_number_for_w_or_s0_is_a_0d_array_of_zs_precision(op, dtype):
    """A Python float for a scalar recurrence's w (or s0) gives the numbers of the same value
    as a 0-d array of z's dtype: no promotion of float32, no error from a missing shape."""
    z_values = np.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(4, 3)
    results = []
    for w, s0 in [(0.5, 0.25), (np.array(0.5, dtype), np.array(0.25, dtype))]:
        z = mg.Tensor(z_values, requires_grad=True)
        out = op(z, w, s0, activation="tanh")
        out.sum().backward()
        results.append((out.data, z.grad))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b, strict=True)
    assert results[0][0].dtype == dtype


@example(length=5, batch=3, w=0.0, data=None)  # NaN above -inf: the loop makes no 0 * inf
@given(length=st.integers(2, 6), batch=st.integers(1, 3),
       w=st.sampled_from([0.0, 0.5, -0.9, 1.0, -1.0, 2.0]), data=st.data())
def test_rnn_last_under_errstate_raises_on_an_inf_or_nan_in_z_only_where_the_loop_does(
        length, batch, w, data):
    """Under np.errstate(all="raise"), with infs and NaNs drawn into z and a finite
    cotangent, rnn_last (forward and backward) fails exactly where the unrolled loop does:
    the closed form must not multiply an inf by a zero power (w = 0) that the loop, after a
    NaN, never computes."""
    if data is None:
        z, g = np.ones((length, batch)), np.ones(batch)
        z[0, 2], z[1, 2] = np.nan, -np.inf
    else:
        z = data.draw(arrays((length, batch), low=-2.0, high=2.0), label="z")
        for place in data.draw(st.lists(st.integers(0, z.size - 1), min_size=1, max_size=3),
                               label="places"):
            z.flat[place] = data.draw(st.sampled_from([np.inf, -np.inf, np.nan]),
                                      label="value")
        g = data.draw(arrays((batch,), low=-1.0, high=1.0), label="g")

    def fails(run):
        try:
            with np.errstate(all="raise"):
                gradients(run, z, np.array(w), None, g, "identity")
        except FloatingPointError:
            return True
        return False

    assert fails(lambda *a: mg.rnn_last(*a[:3], activation=a[3])) == fails(
        lambda *a: loop(*a)[-1])
