"""nn.RNN, nn.GRU and nn.LSTM: their cell looped by scan equals the cell unrolled in Python."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad import nn

LAYERS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def unrolled(layer, X, state):
    outputs = []
    for k in range(X.shape[0]):
        state = layer.cell(X[k], state)
        outputs.append(state[0] if isinstance(state, tuple) else state)
    return mg.stack(outputs), state


@pytest.mark.parametrize("kind", sorted(LAYERS))
@settings(max_examples=15)
@given(length=st.integers(1, 6), batch=st.sampled_from([(), (1,), (3,)]),
       n_in=st.integers(1, 3), hidden=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_a_layer_is_its_cell_unrolled(kind, length, batch, n_in, hidden, seed):
    """Outputs and last state bitwise; every weight's gradient within the rounding of its
    per-step terms summed in another order (one product over all steps: 1e-12 relative);
    the input's gradient bitwise."""
    rng = np.random.default_rng(seed)
    layer = LAYERS[kind](n_in, hidden, rng=rng)
    X = mg.Tensor(rng.normal(size=(length, *batch, n_in)), requires_grad=True)
    outputs, last = layer(X)
    zero = layer.cell.zero_state(batch)
    expected, expected_last = unrolled(layer, X, (zero, zero) if kind == "lstm" else zero)
    np.testing.assert_array_equal(outputs.data, expected.data)
    for a, b in zip(last if kind == "lstm" else [last],
                    expected_last if kind == "lstm" else [expected_last]):
        np.testing.assert_array_equal(a.data, b.data)
    g = rng.normal(size=outputs.shape)
    grads = mg.gradients((outputs * g).sum(), [X, *layer.parameters()])
    wanted = mg.gradients((expected * g).sum(), [X, *layer.parameters()])
    np.testing.assert_array_equal(grads[0], wanted[0])
    for a, b in zip(grads[1:], wanted[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(b).max()))


def test_a_layer_takes_a_given_state_and_names_its_parameters():
    layer = nn.LSTM(2, 3, rng=np.random.default_rng(0))
    X = np.ones((4, 5, 2))
    h0 = (np.full((5, 3), 0.5), np.full((5, 3), -0.5))
    outputs, (h, c) = layer(X, h0)
    expected, (h_e, c_e) = unrolled(layer, X, h0)
    np.testing.assert_array_equal(outputs.data, expected.data)
    np.testing.assert_array_equal(c.data, c_e.data)
    assert [n for n, _ in layer.named_parameters()] == [
        "cell.weight_ih", "cell.weight_hh", "cell.bias_ih", "cell.bias_hh"]
