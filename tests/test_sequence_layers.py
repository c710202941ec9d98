"""nn.RNN, nn.GRU and nn.LSTM: their cell looped by scan equals the cell unrolled in Python."""

import contextlib
import re

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


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("layer_dtype, input_dtype", [(np.float32, np.float64),
                                                      (np.float64, np.float32)])
def test_a_layer_computes_in_numpys_promotion_of_its_inputs_and_weights(kind, layer_dtype,
                                                                       input_dtype):
    """A float32 layer given float64 data (the README's float32 example feeds float64 data),
    or a float64 layer given a float32 state: the cell unrolled's numbers, in the promoted
    dtype (it raised "scan: carry 0 changed ... f must keep it", about an f the user never
    wrote)."""
    rng = np.random.default_rng(3)
    layer = LAYERS[kind](3, 4, rng=rng, dtype=layer_dtype)
    X = rng.normal(size=(5, 2, 3)).astype(input_dtype)
    h = mg.Tensor(np.zeros((2, 4), input_dtype), requires_grad=True)
    state = (h, np.zeros((2, 4), input_dtype)) if kind == "lstm" else h
    outputs, _ = layer(X, state)
    expected, _ = unrolled(layer, X.astype(np.float64), mg.astype(h, np.float64) if kind != "lstm"
                           else (mg.astype(h, np.float64), np.zeros((2, 4))))
    assert outputs.dtype == np.float64
    np.testing.assert_allclose(outputs.data, expected.data, rtol=1e-6, atol=1e-7)
    outputs.sum().backward()
    assert h.grad.dtype == input_dtype and h.grad.shape == (2, 4)


@pytest.mark.parametrize("state", ["list", "h and None", "None and c"])
def test_an_lstm_state_is_a_pair_as_for_its_cell(state):
    """A list pair, or a pair with a None part (zeros), as LSTMCell takes it (they were
    refused by scan: "init must be a tensor ... got a list", "must hold numbers")."""
    layer = nn.LSTM(2, 3, rng=np.random.default_rng(0))
    X = np.ones((4, 5, 2))
    h0, c0 = np.full((5, 3), 0.5), np.full((5, 3), -0.5)
    given = {"list": [h0, c0], "h and None": (h0, None), "None and c": (None, c0)}[state]
    full = {"list": (h0, c0), "h and None": (h0, np.zeros((5, 3))),
            "None and c": (np.zeros((5, 3)), c0)}[state]
    outputs, _ = layer(X, given)
    expected, _ = unrolled(layer, X, full)
    np.testing.assert_array_equal(outputs.data, expected.data)


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("keyword", ["hx", "h0", "initial_state"])
def test_an_unexpected_keyword_is_named_with_the_layers_name(kind, keyword):
    """`layer(X, hx=h)` said "Recurrent.forward() got an unexpected keyword argument", an
    internal class's name: the layer's own now, with PyTorch's hx pointed to state=."""
    layer = LAYERS[kind](2, 3, rng=np.random.default_rng(0))
    name = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}[kind]
    hint = "; minigrad's names it state=" if keyword != "initial_state" else ""
    with pytest.raises(TypeError, match=rf"^{name}\(\) got an unexpected keyword argument "
                                        rf"'{keyword}'{re.escape(hint)}$"):
        layer(np.ones((4, 2)), **{keyword: np.zeros(3)})


@pytest.mark.parametrize("kind", sorted(LAYERS))
@settings(max_examples=10)
@given(part=st.sampled_from(["X", "h0", "c0"]), value=st.sampled_from(
    ["complex", "complex64", "str", "None", "object"]))
def test_a_layer_refuses_input_that_is_not_real_numbers_naming_itself(kind, part, value):
    """A complex X was refused by scan ("scan: xs must hold numbers"), not naming the
    layer; a complex h0 was cast to the weights' dtype, its imaginary part dropped with
    only NumPy's ComplexWarning. A TypeError naming the layer and the part now."""
    layer = LAYERS[kind](2, 3, rng=np.random.default_rng(0))
    name = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}[kind]
    if part == "c0" and kind != "lstm":
        part = "h0"
    shapes = {"X": (4, 5, 2), "h0": (5, 3), "c0": (5, 3)}
    bad = {"complex": np.ones(shapes[part], complex), "complex64": np.ones(shapes[part], "F"),
           "str": np.full(shapes[part], "a"), "None": None,
           "object": np.ones(shapes[part], object)}[value]
    if part != "X" and value == "None":
        bad = [[None] * 3] * 5  # (None itself is the zero state)
    X, h0, c0 = np.ones(shapes["X"]), np.zeros(shapes["h0"]), np.zeros(shapes["c0"])
    X, h0, c0 = (bad if part == p else v for p, v in (("X", X), ("h0", h0), ("c0", c0)))
    state = (h0, c0) if kind == "lstm" else h0
    dtype = np.asarray(bad).dtype
    with pytest.raises(TypeError, match=rf"^{name}: {part} must be a tensor or an array of real "
                                        rf"numbers, got .*{re.escape(str(dtype))}"):
        layer(X, state)


@pytest.mark.parametrize("make", [nn.RNN, nn.GRU, nn.LSTM, nn.RNNCell, nn.GRUCell, nn.LSTMCell])
@pytest.mark.parametrize("third", [2, 0, 1.0, "yes"])
def test_a_third_argument_that_is_not_a_bool_is_refused(make, third):
    """PyTorch's layers take num_layers third (nn.LSTM(10, 20, 2), two layers): here it is
    bias, and anything but True or False is refused, not taken as one layer with a bias."""
    with pytest.raises(TypeError, match=r"bias must be True or False"):
        make(10, 20, third)


def test_recurrent_takes_the_engines_cells_only():
    with pytest.raises(TypeError, match=r"Recurrent: cell must be an RNNCell, GRUCell or "
                                        r"LSTMCell, got Linear"):
        nn.Recurrent(nn.Linear(3, 4))


@pytest.mark.parametrize("batch", [5, np.int64(5), (5,)])
def test_zero_state_takes_an_int_batch(batch):
    z = nn.GRUCell(3, 4).zero_state(batch)
    assert z.shape == (5, 4) and not z.any()
    with pytest.raises(TypeError, match="zero_state: batch must be a tuple of sizes or an int"):
        nn.GRUCell(3, 4).zero_state([5])


def test_a_relu_rnn_cell_prints_its_nonlinearity():
    assert repr(nn.RNNCell(2, 3, nonlinearity="relu")) == \
        "RNNCell(2, 3, bias=True, nonlinearity='relu')"
    assert repr(nn.RNNCell(2, 3)) == "RNNCell(2, 3, bias=True)"


def test_only_the_layers_mention_num_layers():
    """PyTorch's cells take bias third too: their refusal names bias alone."""
    with pytest.raises(TypeError) as cell:
        nn.GRUCell(3, 4, 1)
    assert "num_layers" not in str(cell.value)
    with pytest.raises(TypeError, match="num_layers"):
        nn.GRU(3, 4, 1)


@pytest.mark.parametrize("grad_mode", ["recording", "no_grad"])
def test_a_layers_output_pair_passed_on_whole_is_refused(grad_mode):
    """A recurrent layer returns (outputs, state); passed on whole to the next layer it was
    stacked into a sequence of its two parts under no_grad (an LSTM's (h, c) read as two
    steps), or refused in NumPy's words: the layer names it now."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 2, 3))
    lstm, gru, lin = nn.LSTM(3, 4, rng=rng), nn.GRU(4, 4, rng=rng), nn.Linear(4, 1, rng=rng)
    with mg.no_grad() if grad_mode == "no_grad" else contextlib.nullcontext():
        out, state = lstm(X)
        with pytest.raises(TypeError, match=r"GRU: X is a tuple of tensors, not one tensor or "
                                            r"array: a recurrent layer returns \(outputs, "
                                            r"state\); pass its outputs"):
            gru(state)
        with pytest.raises(TypeError, match=r"GRU: X is a tuple of tensors"):
            gru(lstm(X))
        with pytest.raises(TypeError, match=r"Linear: the input is a tuple of tensors"):
            lin(lstm(X))
        with pytest.raises(TypeError, match=r"GRUCell: the state is a tuple of tensors"):
            nn.GRUCell(4, 4)(out[0], state)
        assert gru(out)[0].shape == (5, 2, 4)  # (its outputs: one tensor)
        rows = [mg.Tensor(rng.normal(size=4)) for _ in range(2)]
        with pytest.raises(TypeError, match=r"LSTM: h0 is a list of tensors"):
            lstm(X, (rows, None))
        with pytest.raises(TypeError, match=r"LSTM: c0 is a list of tensors"):
            lstm(X, (None, rows))


def test_a_sequential_prints_a_layer_a_line():
    model = nn.Sequential(nn.Linear(4, 8), mg.tanh, nn.Linear(8, 3))
    assert repr(model) == ("Sequential(\n  (0): Linear(4, 8, bias=True)\n  (1): tanh\n"
                           "  (2): Linear(8, 3, bias=True)\n)")
