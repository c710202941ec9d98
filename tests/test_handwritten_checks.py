"""check_backward: hand-written gradients against the engine's over drawn inputs. It passes
the hand-coded references of the counter and the adder (`minigrad.models.reference`), and it catches
the mistakes tutorials make by hand, reporting the smallest input it can shrink to."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad.models.adder import Adder
from minigrad.models.comparison import ENGINE_NAMES
from minigrad.models.counter import Counter
from minigrad.models.presets import AdderConfig
from minigrad.models.reference import ReferenceAdder, ReferenceCounter
from minigrad.testing import BackwardMismatch, check_backward, check_backward_at
from minigrad.testing import strategies as mst

# Engine and reference compute the same sums in different orders: they differ by rounding,
# ~1e-16 relative per operation over at most a few hundred operations here. check_backward's
# defaults (atol 1e-9, rtol 1e-7) leave room for that and catch any wrong term.


def bits(shape):
    """0/1 arrays: the gradient identities hold for any bits, not only for true sums."""
    return hnp.arrays(np.float64, shape, elements=st.sampled_from([0.0, 1.0]))


# --- the counter ----------------------------------------------------------------------------


def engine_counter(w_x, w_rec, X, t):
    model = Counter(w_x, w_rec)
    return model.loss(X, t), model


def reference_counter(w_x, w_rec, X, t):
    """The only code here that knows the hand-coded counter's API."""
    reference = ReferenceCounter(w_x, w_rec)
    reference.loss_and_backward(X, t)
    return {name: p.grad for name, p in reference.named_parameters()}


@st.composite
def counter_inputs(draw):
    n, length = draw(st.integers(1, 5)), draw(st.integers(1, 10))
    weight = st.floats(-1.5, 1.5, allow_subnormal=False)
    X = draw(bits((n, length)))
    t = draw(hnp.arrays(np.float64, (n,), elements=st.integers(0, length).map(float)))
    return draw(weight), draw(weight), X, t


def test_counter_reference_matches_the_engine():
    check_backward(engine_counter, reference_counter, counter_inputs())


def truncated_counter(w_x, w_rec, X, t):
    """A tutorial's slip: backpropagation through the last step only (dL/ds_{k-1} never
    computed), right for one step, wrong from two on."""
    X, t = np.atleast_2d(X), np.asarray(t)
    s = np.zeros(X.shape[0])
    for k in range(X.shape[1] - 1):
        s = s * w_rec + X[:, k] * w_x
    last = s * w_rec + X[:, -1] * w_x
    g = 2 * (last - t) / X.shape[0]
    return {"w_x": np.sum(g * X[:, -1]), "w_rec": np.sum(g * s)}


def test_a_truncated_backward_is_caught_at_a_shrunk_input():
    with pytest.raises(BackwardMismatch) as info:
        check_backward(engine_counter, truncated_counter, counter_inputs(),
                       settings=settings(database=None, max_examples=200))
    message = str(info.value)
    assert re.match(r"check_backward: handwritten gradient of '(w_x|w_rec)' \(shape \(\)\) "
                    r"differs from the engine's at index \(\): handwritten \S+, engine \S+ "
                    r"\(\|difference\| \S+ > atol 1e-09 \+ rtol 1e-07 \* \|engine\|\); "
                    r"inputs \(", message)
    # Shrunk: one sequence of two steps, the shortest the slip shows on.
    X = re.search(r"inputs \([^,]+, [^,]+, (\[\[.*?\]\])", message).group(1)
    assert np.array(eval(X)).shape == (1, 2)


# --- the adder ------------------------------------------------------------------------------


def engine_adder(config, params, X, T):
    model = Adder(config, rng=np.random.default_rng(0))
    model.load_state_dict(params)
    return model.loss(X, T), model


def reference_adder(config, params, X, T):
    """The only code here that knows the hand-coded adder's API: its parameter names, how
    values go in and where the gradients come out."""
    reference = ReferenceAdder(config)
    reference.load_parameters({name: params[ENGINE_NAMES[name]]
                               for name, _ in reference.named_parameters()})
    reference.loss_and_backward(X, T)
    return {ENGINE_NAMES[name]: p.grad for name, p in reference.named_parameters()}


@st.composite
def adder_inputs(draw):
    """Every architecture the config allows, at sizes small enough to draw many of."""
    config = AdderConfig(
        n_bits=draw(st.integers(1, 5)), n_states=draw(st.integers(1, 4)),
        activation=draw(st.sampled_from(["tanh", "sigmoid"])), bias=draw(st.booleans()),
        learn_initial_state=draw(st.booleans()))
    params = {name: draw(mst.arrays(shape, low=-2.0, high=2.0))
              for name, shape in config.parameter_shapes().items()}
    n = draw(st.integers(1, 6))
    X = draw(bits((n, config.n_bits, 2)))
    T = draw(bits((n, config.n_bits, 1)))
    return config, params, X, T


def test_adder_reference_matches_the_engine():
    check_backward(engine_adder, reference_adder, adder_inputs())


# --- functions of arrays (argnums) ----------------------------------------------------------


def layer(x, w):
    return mg.tanh(x @ w).sum()


def layer_backward(x, w):
    """d/dx and d/dw of sum(tanh(x w)): the upstream gradient of x w is 1 - tanh(x w)^2."""
    d = 1 - np.tanh(x @ w) ** 2
    return d @ w.T, x.T @ d


def layer_backward_without_transpose(x, w):
    """A tutorial's slip: d @ w instead of d @ w.T, right when w is square and symmetric."""
    d = 1 - np.tanh(x @ w) ** 2
    return d @ w if w.shape[0] == w.shape[1] else d @ w.T, x.T @ d


@st.composite
def layer_inputs(draw):
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    return draw(mst.arrays((n, k))), draw(mst.arrays((k, m)))


def test_a_function_of_arrays_with_argnums():
    check_backward(layer, layer_backward, layer_inputs(), argnums=(0, 1))
    check_backward(layer, lambda x, w: layer_backward(x, w)[1], layer_inputs(), argnums=1)
    with pytest.raises(BackwardMismatch, match=r"^check_backward: handwritten gradient of "
                                               r"argument 0 \(shape \((\d), (\d)\)\) differs"):
        check_backward(layer, layer_backward_without_transpose, layer_inputs(), argnums=(0, 1),
                       settings=settings(database=None, max_examples=200))


@given(inputs=layer_inputs())
def test_check_backward_at_inside_given(inputs):
    check_backward_at(layer, layer_backward, *inputs, argnums=(0, 1))


def test_a_tuple_of_strategies_is_one_per_argument():
    check_backward(layer, layer_backward, (mst.arrays((2, 3)), mst.arrays((3, 2))),
                   argnums=(0, 1))


def test_the_report_names_the_element_and_gives_the_inputs_exactly():
    x, w = np.array([[0.1, 0.2]]), np.array([[0.3], [-0.7]])

    def wrong(x, w):
        dx, dw = layer_backward(x, w)
        dw[1, 0] += 0.5
        return dx, dw

    with pytest.raises(BackwardMismatch) as info:
        check_backward_at(layer, wrong, x, w, argnums=(0, 1))
    message = str(info.value)
    dw = float(layer_backward(x, w)[1][1, 0])
    assert message == (
        f"check_backward: handwritten gradient of argument 1 (shape (2, 1)) differs from the "
        f"engine's at index (1, 0): handwritten {dw + 0.5!r}, engine {dw!r} (|difference| "
        f"0.5 > atol 1e-09 + rtol 1e-07 * |engine|); inputs ([[0.1, 0.2]], [[ 0.3], [-0.7]])")


def test_wrong_forms_are_refused_with_what_was_expected():
    x, w = np.ones((1, 2)), np.ones((2, 1))
    with pytest.raises(TypeError, match=r"^check_backward: without argnums, engine_fn must "
                                        r"return a pair \(scalar Tensor, Module\), got Tensor"):
        check_backward_at(layer, layer_backward, x, w)
    with pytest.raises(TypeError, match=r"^check_backward: engine_fn's loss must be a scalar "
                                        r"Tensor, got Tensor of shape \(1, 3\)"):
        check_backward_at(lambda x, w: (x @ w) * np.ones(3), layer_backward, x, w,
                          argnums=(0, 1))
    with pytest.raises(TypeError, match=r"^check_backward: handwritten_fn must return 2 "
                                        r"gradients \(one per argnums entry \(0, 1\)\), got "
                                        r"ndarray of shape \(1, 2\)"):
        check_backward_at(layer, lambda x, w: layer_backward(x, w)[0], x, w, argnums=(0, 1))
    with pytest.raises(ValueError, match=r"^check_backward: argnums 2 out of range for 2 "
                                         r"arguments"):
        check_backward_at(layer, layer_backward, x, w, argnums=2)
    with pytest.raises(BackwardMismatch, match=r"handwritten gradient of argument 1 has shape "
                                               r"\(1, 2\), the engine's \(2, 1\)"):
        check_backward_at(layer, lambda x, w: (layer_backward(x, w)[0], w.T), x, w,
                          argnums=(0, 1))
    with pytest.raises(TypeError, match=r"^check_backward: handwritten_fn must return a mapping "
                                        r"with the engine's parameter names \['w_rec', 'w_x'\], "
                                        r"got \['W_rec', 'W_x'\]"):
        check_backward_at(engine_counter,
                          lambda *a: {"W_x": 0.0, "W_rec": 0.0}, 1.0, 1.0, np.ones((1, 2)),
                          np.ones(1))


def test_a_model_mismatch_names_the_parameter_and_shows_a_mapping_input_on_one_line():
    config = AdderConfig(n_bits=2, n_states=2)
    params = {name: np.full(shape, 0.5) for name, shape in config.parameter_shapes().items()}
    X, T = np.ones((1, 2, 2)), np.ones((1, 2, 1))

    def off_in_the_output_bias(config, params, X, T):
        grads = reference_adder(config, params, X, T)
        grads["output.bias"] = grads["output.bias"] + 1.0
        return grads

    with pytest.raises(BackwardMismatch) as info:
        check_backward_at(engine_adder, off_in_the_output_bias, config, params, X, T)
    message = str(info.value)
    assert message.startswith("check_backward: handwritten gradient of 'output.bias' (shape "
                              "(1,)) differs from the engine's at index (0,): ")
    assert "\n" not in message
    assert "'recurrent.weight': [[0.5, 0.5], [0.5, 0.5]]" in message
    assert message.endswith("[[[1., 1.], [1., 1.]]], [[[1.], [1.]]])")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_float32_model_is_checked_at_float32_rounding(dtype):
    """The engine's float32 adder against the hand-written float32 BPTT of the benchmarks,
    both right (within 2e-6 of float64): they agree to float32 rounding, which the float64
    defaults refused (2.5 units in the last place against a 1e-7 relative tolerance); a
    wrong rule (a gradient scaled by 1.01) is still caught."""
    from benchmarks.handwritten import HandwrittenAdder

    config = AdderConfig(n_bits=7, n_states=3)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, (4, 7, 2)).astype(dtype)
    T = rng.integers(0, 2, (4, 7, 1)).astype(dtype)

    def engine_fn(X, T):
        model = Adder(config, rng=np.random.default_rng(0), dtype=dtype)
        return model.loss(X, T), model

    def handwritten_fn(X, T, scale=1.0):
        model = Adder(config, rng=np.random.default_rng(0), dtype=dtype)
        hand = HandwrittenAdder(config, model.state_dict(), dtype=dtype)
        hand.loss_and_backward(X, T)
        return {name: p.grad * scale for name, p in hand.named_parameters()}

    check_backward_at(engine_fn, handwritten_fn, X, T)
    with pytest.raises(BackwardMismatch):
        check_backward_at(engine_fn, lambda X, T: handwritten_fn(X, T, 1.01), X, T)


@pytest.mark.parametrize("inputs, kind", [(np.array([0.5, 1.5]), r"ndarray of shape \(2,\)"),
                                          ((st.floats(0, 1), 2.0), "tuple"),
                                          (None, "NoneType")])
def test_check_backward_refuses_inputs_that_are_no_strategy_pointing_to_check_backward_at(
        inputs, kind):
    """An array for inputs failed inside Hypothesis: "The truth value of an array ... is
    ambiguous"."""
    with pytest.raises(TypeError, match=rf"^check_backward: inputs must be a Hypothesis "
                                        rf"strategy .* got {kind}; for fixed inputs call "
                                        r"check_backward_at\(engine_fn, handwritten_fn, "
                                        r"\*args\)$"):
        check_backward(lambda x: mg.sum(x * x), lambda x: 2 * x, inputs, argnums=0)
