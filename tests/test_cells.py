"""The recurrent cells against plain NumPy implementations of PyTorch's equations (values)
and numerical differentiation (gradients, of inputs and parameters), on drawn sizes;
`Sequential` and `Module.modules()`."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import nn
from minigrad.testing import gradcheck

ATOL, RTOL = 1e-6, 1e-5  # central differences in float64, as in tests/test_ops.py


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _parameters(cell):
    """The cell's arrays as PyTorch lays them out: W_ih (gates * hidden, n_in), ..."""
    zeros = np.zeros(cell.weight_ih.shape[1])
    b_ih = zeros if cell.bias_ih is None else cell.bias_ih.data
    b_hh = zeros if cell.bias_hh is None else cell.bias_hh.data
    return cell.weight_ih.data.T, cell.weight_hh.data.T, b_ih, b_hh


def rnn_reference(cell, x, h):
    w_ih, w_hh, b_ih, b_hh = _parameters(cell)
    pre = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    return np.tanh(pre) if cell.nonlinearity == "tanh" else np.maximum(pre, 0.0), pre


def gru_reference(cell, x, h):
    """PyTorch's GRUCell, rows r, z, n of its weights."""
    w_ih, w_hh, b_ih, b_hh = _parameters(cell)
    H = cell.hidden
    gi, gh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    r = _sigmoid(gi[..., :H] + gh[..., :H])
    z = _sigmoid(gi[..., H:2 * H] + gh[..., H:2 * H])
    n = np.tanh(gi[..., 2 * H:] + r * gh[..., 2 * H:])
    return (1 - z) * n + z * h


def lstm_reference(cell, x, h, c):
    """PyTorch's LSTMCell, rows i, f, g, o of its weights."""
    w_ih, w_hh, b_ih, b_hh = _parameters(cell)
    H = cell.hidden
    gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f = _sigmoid(gates[..., :H]), _sigmoid(gates[..., H:2 * H])
    g, o = np.tanh(gates[..., 2 * H:3 * H]), _sigmoid(gates[..., 3 * H:])
    c = f * c + i * g
    return o * np.tanh(c), c


@st.composite
def sizes(draw):
    """(batch shape, n_in, hidden, bias, seed): a batch of rows, one row, or a stack."""
    batch = draw(st.sampled_from([(), (1,), (3,), (2, 2)]))
    return (batch, draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.booleans()),
            draw(st.integers(0, 2**32 - 1)))


def _inputs(seed, batch, n_in, hidden):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=batch + (n_in,)), rng.normal(size=batch + (hidden,)),
            rng.normal(size=batch + (hidden,)))


def _cell(kind, n_in, hidden, bias, seed, **options):
    return kind(n_in, hidden, bias, rng=np.random.default_rng(seed), **options)


@settings(max_examples=30)
@given(size=sizes(), nonlinearity=st.sampled_from(["tanh", "relu"]))
def test_rnn_cell_is_pytorchs_equation(size, nonlinearity):
    batch, n_in, hidden, bias, seed = size
    cell = _cell(nn.RNNCell, n_in, hidden, bias, seed, nonlinearity=nonlinearity)
    x, h, _ = _inputs(seed, batch, n_in, hidden)
    expected, pre = rnn_reference(cell, x, h)
    np.testing.assert_allclose(cell(x, h).data, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cell(x).data, rnn_reference(cell, x, np.zeros_like(h))[0],
                               rtol=1e-12, atol=1e-14)
    if nonlinearity == "tanh" or np.min(np.abs(pre)) > 1e-3:  # off relu's kink
        gradcheck(cell, x, h, atol=ATOL, rtol=RTOL, seed=seed)


@settings(max_examples=30)
@given(size=sizes())
def test_gru_cell_is_pytorchs_equation(size):
    batch, n_in, hidden, bias, seed = size
    cell = _cell(nn.GRUCell, n_in, hidden, bias, seed)
    x, h, _ = _inputs(seed, batch, n_in, hidden)
    np.testing.assert_allclose(cell(x, h).data, gru_reference(cell, x, h), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cell(x).data, gru_reference(cell, x, np.zeros_like(h)),
                               rtol=1e-12, atol=1e-14)
    gradcheck(cell, x, h, atol=ATOL, rtol=RTOL, seed=seed)
    gradcheck(cell, x, atol=ATOL, rtol=RTOL, seed=seed)  # the zero state


@settings(max_examples=30)
@given(size=sizes())
def test_lstm_cell_is_pytorchs_equation(size):
    batch, n_in, hidden, bias, seed = size
    cell = _cell(nn.LSTMCell, n_in, hidden, bias, seed)
    x, h, c = _inputs(seed, batch, n_in, hidden)
    for state, expected in [((h, c), lstm_reference(cell, x, h, c)),
                            (None, lstm_reference(cell, x, 0 * h, 0 * c))]:
        got = cell(x, state)
        for value, want in zip(got, expected):
            np.testing.assert_allclose(value.data, want, rtol=1e-12, atol=1e-14)
    both = lambda x, h, c: mg.concatenate(list(cell(x, (h, c))), axis=-1)  # noqa: E731
    gradcheck(both, x, h, c, atol=ATOL, rtol=RTOL, seed=seed, params=cell)


@settings(max_examples=10)
@given(size=sizes(), steps=st.integers(1, 4))
def test_a_cell_unrolled_over_a_sequence_backpropagates_through_time(size, steps):
    batch, n_in, hidden, bias, seed = size
    cell = _cell(nn.GRUCell, n_in, hidden, bias, seed)
    xs = np.random.default_rng(seed).normal(size=(steps,) + batch + (n_in,))

    def last(xs):
        h = None
        for t in range(steps):
            h = cell(xs[t], h)
        return h

    gradcheck(last, xs, atol=ATOL, rtol=RTOL, seed=seed, params=cell)


@pytest.mark.parametrize("kind, gates", [(nn.RNNCell, 1), (nn.GRUCell, 3), (nn.LSTMCell, 4)])
def test_cell_parameters_and_initialisation(kind, gates):
    cell = kind(3, 5, rng=np.random.default_rng(0), dtype=np.float32)
    shapes = {name: p.shape for name, p in cell.named_parameters()}
    assert shapes == {"weight_ih": (3, gates * 5), "weight_hh": (5, gates * 5),
                      "bias_ih": (gates * 5,), "bias_hh": (gates * 5,)}
    bound = 1 / np.sqrt(5)
    for p in cell.parameters():
        assert p.dtype == np.float32 and np.all(np.abs(p.data) <= bound)
    assert [n for n, _ in kind(3, 5, bias=False).named_parameters()] == ["weight_ih", "weight_hh"]
    same = kind(3, 5, rng=np.random.default_rng(0), dtype=np.float32)
    for a, b in zip(cell.parameters(), same.parameters()):
        np.testing.assert_array_equal(a.data, b.data)  # drawn from the rng given
    h = cell(np.ones((2, 3), np.float32))
    assert (h[0] if isinstance(h, tuple) else h).dtype == np.float32


def test_cells_refuse_wrong_shapes_and_options():
    with pytest.raises(ValueError, match=r"^GRUCell: expected input whose last axis has 3 "
                                         r"elements, got shape \(2, 4\)$"):
        nn.GRUCell(3, 5)(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"^RNNCell: expected a state of shape \(2, 5\) for "
                                         r"an input of shape \(2, 3\), got shape \(2, 4\)$"):
        nn.RNNCell(3, 5)(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"^RNNCell: nonlinearity must be 'tanh' or 'relu'"):
        nn.RNNCell(3, 5, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match=r"^LSTMCell: state must be a pair \(h, c\) or None"):
        nn.LSTMCell(3, 5)(np.ones((2, 3)), np.ones((2, 5)))


def wrong_state_shapes(expected):
    """Shapes other than `expected`, often ones that broadcast against it (PyTorch's
    (1, batch, hidden) layout, an unbatched state, a batch of 1)."""
    broadcasting = [(1, *expected), expected[-1:], (*[1] * (len(expected) - 1), expected[-1])]
    return (st.sampled_from(broadcasting)
            | hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
            ).filter(lambda shape: shape != expected)


@settings(max_examples=40)
@given(kind=st.sampled_from(["rnn", "gru", "lstm"]), size=sizes(), part=st.sampled_from("hc"),
       data=st.data())
def test_a_state_of_another_shape_is_refused_not_broadcast(kind, size, part, data):
    """A cell's state must have its input's batch shape, a layer's its X's (both naming the
    shapes); a state that would broadcast (it did: outputs of shape (L, 1, batch, hidden))
    is refused too, and the right shape, unbatched included, is taken."""
    batch, n_in, hidden, bias, seed = size
    cell_class, layer = {"rnn": (nn.RNNCell, nn.RNN), "gru": (nn.GRUCell, nn.GRU),
                         "lstm": (nn.LSTMCell, nn.LSTM)}[kind]
    part = part if kind == "lstm" else "h"
    expected = (*batch, hidden)
    shape = data.draw(wrong_state_shapes(expected), label="state shape")
    cell = _cell(cell_class, n_in, hidden, bias, seed)
    x, h, c = _inputs(seed, batch, n_in, hidden)
    bad = np.zeros(shape)
    state = bad if kind != "lstm" else (bad, c) if part == "h" else (h, bad)
    what = "a state" if kind != "lstm" else part
    with pytest.raises(ValueError, match=rf"^{cell_class.__name__}: expected {what} of shape "
                                         rf"{re.escape(str(expected))} for an input of shape "
                                         rf"{re.escape(str(x.shape))}, got shape "
                                         rf"{re.escape(str(shape))}$"):
        cell(x, state)
    right = h if kind != "lstm" else (h, c)
    out = cell(x, right)
    assert (out[0] if kind == "lstm" else out).shape == expected

    sequence = layer(n_in, hidden, bias, rng=np.random.default_rng(seed))
    X = np.ones((2, *batch, n_in))
    with pytest.raises(ValueError, match=rf"^{kind.upper()}: expected {part}0 of shape "
                                         rf"{re.escape(str(expected))} \(X of shape "
                                         rf"{re.escape(str(X.shape))} is \(L, \*batch, n_in\), "
                                         rf"hidden {hidden}\), got shape "
                                         rf"{re.escape(str(shape))}$"):
        sequence(X, state)
    outputs, _ = sequence(X, right)
    assert outputs.shape == (2, *expected)


@settings(max_examples=30)
@given(kind=st.sampled_from(["rnn", "gru", "lstm"]), n_in=st.integers(1, 4),
       shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4),
       compiled=st.booleans())
def test_a_layer_given_x_of_another_feature_count_names_itself_and_x_s_shape(
        kind, n_in, shape, compiled):
    """Not the cell and one step's slice, which the user never passed."""
    layer = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind](n_in, 2)
    X = np.ones(shape)
    def outputs(X):
        return layer(X)[0]

    run = mg.compile(outputs) if compiled else outputs
    if len(shape) >= 2 and shape[-1] == n_in:
        assert run(X).shape == (*shape[:-1], 2)
        return
    with pytest.raises(ValueError, match=rf"^{kind.upper()}: expected X of shape \(L, \*batch, "
                                         rf"{n_in}\), time-major with {n_in} features on its last "
                                         rf"axis, got shape {re.escape(str(shape))}$"):
        run(X)


# --- Sequential and modules() ---------------------------------------------------------------


def test_sequential_composes_its_layers_in_order():
    rng = np.random.default_rng(3)
    first, second = nn.Linear(3, 4, rng=rng), nn.Linear(4, 2, rng=rng)
    model = nn.Sequential(first, mg.tanh, second)
    x = rng.normal(size=(5, 3))
    np.testing.assert_array_equal(model(x).data, second(mg.tanh(first(x))).data)
    assert [name for name, _ in model.named_parameters()] == [
        "0.weight", "0.bias", "2.weight", "2.bias"]  # PyTorch's names
    assert len(model) == 3 and model[0] is first and model[-1] is second
    assert list(model) == [first, mg.tanh, second]
    gradcheck(model, x, atol=ATOL, rtol=RTOL)
    with pytest.raises(IndexError, match=r"^Sequential: index 3 out of range for 3 layers$"):
        model[3]
    with pytest.raises(TypeError, match=r"^Sequential: layer 1 is a int, which cannot be "
                                        r"called$"):
        nn.Sequential(first, 3)


@given(data=st.data(), size=st.integers(0, 5))
def test_a_slice_of_a_sequential_is_a_sequential_of_those_layers(data, size):
    """As PyTorch's: the same layer objects, numbered from 0 again. A slice raised a
    TypeError about '<=' between int and slice."""
    rng = np.random.default_rng(size)
    layers = [nn.Linear(2, 2, rng=rng) if k % 2 == 0 else mg.tanh for k in range(size)]
    model = nn.Sequential(*layers)
    part = data.draw(st.slices(size))
    sliced = model[part]
    assert type(sliced) is nn.Sequential and len(sliced) == len(layers[part])
    assert all(a is b for a, b in zip(sliced, layers[part], strict=True))
    names = [f"{k}.{w}" for k, layer in enumerate(layers[part]) if isinstance(layer, nn.Linear)
             for w in ("weight", "bias")]
    assert [name for name, _ in sliced.named_parameters()] == names
    x = rng.normal(size=(3, 2))
    expected = x
    for layer in layers[part]:
        expected = layer(expected)
    got = sliced(x)
    np.testing.assert_array_equal(getattr(got, "data", got), getattr(expected, "data", expected))


def test_a_sequential_index_must_be_an_integer_or_a_slice():
    model = nn.Sequential(mg.tanh, mg.relu)
    assert model[np.int64(1)] is mg.relu
    with pytest.raises(TypeError, match=r"^Sequential: indices must be integers or slices, "
                                        r"not str$"):
        model["1"]


def test_modules_yields_each_module_once_in_order():
    inner = nn.Linear(2, 2)
    cell = nn.GRUCell(2, 2)

    class Net(nn.Module):
        def __init__(self):
            self.body = nn.Sequential(inner, mg.relu, inner)  # one module twice
            self.heads = {"a": nn.Linear(2, 1), "b": [cell]}
            self.parent = self  # a cycle

    net = Net()
    found = list(net.modules())
    assert len({id(m) for m in found}) == len(found) == 5
    assert found[0] is net and found[1] is net.body and found[2] is inner
    assert found[3] is net.heads["a"] and found[4] is cell
    assert list(inner.modules()) == [inner]
