"""`minigrad.gradients` (gradients of leaves and intermediate tensors, no `.grad` touched),
checked against central differences; and `minigrad.models.diagnostics.state_gradient_norms`, the
per-timestep gradient of an RNN's states, against the hand-coded counter."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import Tensor
from minigrad.testing import numerical_grad


def rnn_tail(W, X, s, start):
    """The loss of a small tanh RNN, run from state `s` at step `start` to the end."""
    for k in range(start, X.shape[1]):
        s = mg.tanh(X[:, k] + s @ W)
    return (s * s).sum()


def test_gradients_of_every_state_of_an_rnn_match_central_differences():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 3)) * 0.8
    X = rng.normal(size=(4, 5, 3))
    Wt = Tensor(W, requires_grad=True)
    states = [Tensor(np.zeros((4, 3)), requires_grad=True)]
    for k in range(X.shape[1]):
        states.append(mg.tanh(X[:, k] + states[-1] @ Wt))
    loss = (states[-1] * states[-1]).sum()
    *grads, grad_W = mg.gradients(loss, states + [Wt])
    for k, (s, g) in enumerate(zip(states, grads)):
        (expected,) = numerical_grad(lambda s_, k=k: rnn_tail(W, X, s_, k), s.data)
        np.testing.assert_allclose(g, expected, rtol=1e-6, atol=1e-8)
    (expected_W,) = numerical_grad(lambda W_: rnn_tail(W_, X, np.zeros((4, 3)), 0), W)
    np.testing.assert_allclose(grad_W, expected_W, rtol=1e-6, atol=1e-8)
    assert Wt.grad is None and all(s.grad is None for s in states)


def test_a_non_scalar_output_takes_an_upstream_gradient():
    rng = np.random.default_rng(1)
    a, v = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    x = Tensor(a, requires_grad=True)
    h = mg.exp(x) * 2.0
    y = mg.tanh(h)
    grad_x, grad_h = mg.gradients(y, [x, h], grad=v)
    (expected_x,) = numerical_grad(lambda a_: (mg.tanh(mg.exp(a_) * 2.0) * v).sum(), a)
    (expected_h,) = numerical_grad(lambda h_: (mg.tanh(h_) * v).sum(), h.data.copy())
    np.testing.assert_allclose(grad_x, expected_x, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(grad_h, expected_h, rtol=1e-6, atol=1e-9)


def test_gradients_agree_with_backward_and_leave_grad_alone():
    rng = np.random.default_rng(2)
    x = Tensor(rng.normal(size=5), requires_grad=True)
    x.grad = np.full(5, 7.0)
    loss = (mg.tanh(x) * x[::-1]).sum()  # reversed slice: the sparse cotangent path
    (g,) = mg.gradients(loss, [x], retain_graph=True)
    np.testing.assert_array_equal(x.grad, np.full(5, 7.0))
    x.grad = None
    loss.backward()
    np.testing.assert_array_equal(g, x.grad)


def test_unused_inputs_get_zeros_and_the_output_its_seed():
    x = Tensor(np.ones(2), requires_grad=True)
    unused = Tensor(np.ones((3, 1), np.float32), requires_grad=True)
    y = x * 3.0
    g_unused, g_y, g_x = mg.gradients(y, [unused, y, x], grad=np.array([1.0, 2.0]))
    assert g_unused.dtype == np.float32 and not g_unused.any() and g_unused.shape == (3, 1)
    np.testing.assert_array_equal(g_y, [1.0, 2.0])
    np.testing.assert_array_equal(g_x, [3.0, 6.0])


def test_returned_arrays_belong_to_the_caller():
    x = Tensor(np.ones(3), requires_grad=True)
    y = x + 0.0  # add's VJP passes the cotangent through: shared arrays inside the pass
    seed = np.array([1.0, 2.0, 3.0])
    g_x, g_y = mg.gradients(y, [x, y], grad=seed)
    g_x[:] = 0.0
    np.testing.assert_array_equal(g_y, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(seed, [1.0, 2.0, 3.0])


@given(values=hnp.arrays(np.float64, st.integers(1, 4), elements=st.floats(-3, 3)),
       picks=st.lists(st.integers(0, 3), min_size=1, max_size=6))
def test_each_position_asked_for_gets_an_array_of_its_own(values, picks):
    """Tensors listed any number of times: each position gets the gradient one call for it
    alone gives, in an array of its own (a tensor listed twice got the same array twice,
    so that a write into one result changed the other)."""
    x = Tensor(values, requires_grad=True)
    unused = Tensor(np.ones(3), requires_grad=True)
    h = x * x
    y = (h * 3.0).sum()
    wanted = [[x, h, y, unused][i] for i in picks]
    results = mg.gradients(y, wanted, retain_graph=True)
    for i, t in enumerate(wanted):
        (alone,) = mg.gradients(y, [t], retain_graph=True)
        np.testing.assert_array_equal(results[i], alone)
        assert not any(np.shares_memory(results[i], other) for other in results[:i])


def test_the_graph_is_released_unless_retained():
    x = Tensor(2.0, requires_grad=True)
    y = x * x
    assert mg.gradients(y, x, retain_graph=True)[0] == 4.0
    assert mg.gradients(y, x)[0] == 4.0
    with pytest.raises(RuntimeError, match="^gradients: .* already released"):
        mg.gradients(y, x)


def test_bad_arguments_are_refused():
    x = Tensor(np.ones(2), requires_grad=True)
    y = x * 2.0
    with pytest.raises(ValueError, match=r"inputs\[1\] \(shape \(2,\)\) does not require grad"):
        mg.gradients(y.sum(), [x, Tensor(np.ones(2))])
    with pytest.raises(ValueError, match="the output does not require grad"):
        mg.gradients(Tensor(1.0), [x])
    with pytest.raises(ValueError, match="not a scalar"):
        mg.gradients(y, [x])
    with pytest.raises(ValueError, match=r"grad has shape \(3,\)"):
        mg.gradients(y, [x], grad=np.ones(3))
    with pytest.raises(TypeError):
        mg.gradients(y.sum(), [x.data])


# --- state_gradient_norms -------------------------------------------------------------------


@pytest.mark.parametrize("w_rec", [2.0, -2.0, 0.5, -0.5, 1.0])
def test_counter_state_gradients_match_the_hand_coded_backprop(w_rec):
    from minigrad.models.counter import Counter
    from minigrad.models.data import counting_data
    from minigrad.models.diagnostics import state_gradient_norms
    from minigrad.models.reference import ReferenceCounter

    X, t = counting_data(np.random.default_rng(3), 20, 10)
    norms = state_gradient_norms(Counter(1.0, w_rec), X, t)
    G = ReferenceCounter(1.0, w_rec).state_gradients(X, t)  # (n, T + 1), k = 0 .. T
    expected = np.linalg.norm(G[:, 1:], axis=0)
    assert norms.shape == (10,)
    np.testing.assert_allclose(norms, expected, rtol=1e-12)


def test_counter_gradients_explode_alternate_and_vanish():
    from minigrad.models.counter import Counter
    from minigrad.models.data import counting_data
    from minigrad.models.diagnostics import state_gradient_norms

    X, t = counting_data(np.random.default_rng(0), 20, 10)
    exploding = state_gradient_norms(Counter(1.0, 2.0), X, t)
    vanishing = state_gradient_norms(Counter(1.0, 0.5), X, t)
    np.testing.assert_allclose(exploding[:-1] / exploding[1:], 2.0)  # |w_rec| per step back
    np.testing.assert_allclose(vanishing[:-1] / vanishing[1:], 0.5)
    assert exploding[0] > 1e5


@pytest.mark.parametrize("preset", ["small", "keras"])
def test_adder_state_gradients_match_central_differences(preset):
    from minigrad.models.adder import Adder
    from minigrad.models.data import addition_data
    from minigrad.models.diagnostics import state_gradient_norms
    from minigrad.models.presets import get_preset

    config, _ = get_preset(preset)
    rng = np.random.default_rng(4)
    model = Adder(config, rng=rng)
    X, T = addition_data(rng, 6, config.n_bits, config.max_operand)
    norms = state_gradient_norms(model, X, T)
    assert norms.shape == (config.n_bits,)
    assert all(p.grad is None for p in model.parameters())

    # dL/dS_k numerically: perturb S_k and run the rest of the recurrence and the loss.
    def loss_from(k, S_k):
        with mg.no_grad():
            states = model.unrolled_states(X)[:k]
            S = Tensor(S_k)
            states.append(S)
            Z = model.input(X)
            if model.recurrent.bias is not None:
                Z = Z + model.recurrent.bias
            for j in range(k + 1, config.n_bits):
                S = getattr(mg, config.activation)(Z[:, j] + S @ model.recurrent.weight)
                states.append(S)
            logits = model.output(mg.stack(states, axis=1))
            return mg.binary_cross_entropy_with_logits(logits, T)

    with mg.no_grad():
        states = [s.data.copy() for s in model.unrolled_states(X)]
    for k in (0, config.n_bits // 2, config.n_bits - 1):
        (g,) = numerical_grad(lambda s, k=k: loss_from(k, s), states[k])
        np.testing.assert_allclose(norms[k], np.linalg.norm(g), rtol=1e-6)


class TanhRNN:
    """A model that is not one of the write-ups': all `state_gradients` needs is a
    `loss_and_states`. Its __slots__ forbid setting attributes on the instance, so a
    diagnostic that patched the model would fail here."""

    __slots__ = ("W",)

    def __init__(self, W):
        self.W = Tensor(W, requires_grad=True)

    def loss_and_states(self, X, T):
        states, s = [], Tensor(np.zeros((X.shape[0], self.W.shape[0])))
        for k in range(X.shape[1]):
            s = mg.tanh(X[:, k] + s @ self.W)
            states.append(s)
        return ((s - T) * (s - T)).sum(), states


def test_state_gradients_of_any_model_that_hands_back_its_states():
    from minigrad.models.diagnostics import state_gradients

    rng = np.random.default_rng(5)
    W, X, T = rng.normal(size=(3, 3)) * 0.7, rng.normal(size=(4, 6, 3)), rng.normal(size=(4, 3))
    model = TanhRNN(W)
    grads = state_gradients(model, X, T)
    assert len(grads) == 6 and model.W.grad is None

    def tail(k, s):  # the loss from state s after k + 1 inputs
        for j in range(k + 1, X.shape[1]):
            s = mg.tanh(X[:, j] + s @ W)
        return ((s - T) * (s - T)).sum()

    with mg.no_grad():
        _, states = model.loss_and_states(X, T)
    for k in (0, 3, 5):
        (expected,) = numerical_grad(lambda s, k=k: tail(k, s), states[k].data)
        np.testing.assert_allclose(grads[k], expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("model_name", ["counter", "adder"])
def test_the_models_hand_back_the_states_their_loss_used(model_name):
    from minigrad.models.adder import Adder
    from minigrad.models.counter import Counter
    from minigrad.models.data import addition_data, counting_data

    rng = np.random.default_rng(2)
    if model_name == "counter":
        model, (X, T) = Counter(0.9, 1.1), counting_data(rng, 5, 7)
    else:
        model = Adder(rng=rng)
        X, T = addition_data(rng, 5, 7)
    loss, states = model.loss_and_states(X, T)
    assert len(states) == 7
    with mg.no_grad():
        expected = model.states(X)  # the one rnn op's states, time-major
    if model_name == "adder":  # the same numbers
        assert loss.item() == model.loss(X, T).item()
        for s, e in zip(states, expected.data, strict=True):
            np.testing.assert_array_equal(s.data, e)
        return
    # The counter's rnn is a closed form, S = P z (P[k, j] = w_rec^(k-j)): the loop's terms,
    # all positive here, summed in another order; each state within 4 L eps of it, relative.
    bound = 4 * 7 * np.finfo(np.float64).eps * np.abs(expected.data)
    for s, e, b in zip(states, expected.data, bound, strict=True):
        assert np.all(np.abs(s.data - e) <= b)
    # the loss, mean (s_n - t)^2, moves by at most mean(2 |s_n - t| b + b^2)
    residual, b = np.abs(expected.data[-1] - T), bound[-1]
    assert abs(loss.item() - model.loss(X, T).item()) <= np.mean(2 * residual * b + b * b) * (
        1 + 1e-12)


def test_alternate_leaves_what_the_caller_froze_frozen():
    import gc

    from minigrad.models.timing import alternate

    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        alternate({"a": lambda: None}, repeats=2, warmup=0)
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()
