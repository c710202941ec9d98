"""The hand-written GRU and LSTM of `benchmarks.cells` (the baselines of the GRU and LSTM
rows) through their two entry points: `compute_gradients` (the loss, and every gradient into
the model's flat gradient buffer, `.grad` untouched) and `loss_and_backward` (the same
wrapped in the `Parameters` protocol's hand-over).

Tolerances: against the engine (`nn.GRUCell` / `nn.LSTMCell` under `mg.scan`) the same
expressions in another order on O(1) factors, so ``rtol = 1e-10`` plus ``atol = 1e-13`` as
in `tests/test_benchmarks.py`; the two entry points run the same code on the same buffers,
so they agree bit for bit, as do two calls on the same data; a model whose buffers were
made for other sizes agrees with a fresh one to rounding (``rtol = 1e-13``: only where a
BLAS kernel's path depends on the buffers' alignment could they differ at all), far below
the size of any stale or missing term.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from benchmarks.cells import HandwrittenGRU, HandwrittenLSTM
from benchmarks.user_models import ScanGRU, ScanLSTM

RTOL, ATOL = 1e-10, 1e-13
ENGINES = {HandwrittenGRU: ScanGRU, HandwrittenLSTM: ScanLSTM}
CELLS = pytest.mark.parametrize("handwritten_class", list(ENGINES), ids=["gru", "lstm"])

seeds = st.integers(0, 2**32 - 1)
sizes = st.tuples(st.integers(1, 6), st.integers(1, 5))          # (N, L)


@st.composite
def data(draw, n_samples: int, length: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """X of any values in [-3, 3], T in [0, 1] (BCE takes soft targets)."""
    X = draw(hnp.arrays(np.float64, (n_samples, length, n_in),
                        elements=st.floats(-3, 3, allow_subnormal=False)))
    T = draw(hnp.arrays(np.float64, (n_samples, length, 1),
                        elements=st.sampled_from([0.0, 0.25, 1.0])))
    return X, T


def drawn_engine(handwritten_class, seed: int, n_in: int, hidden: int, scale: float):
    """The engine's model with parameters drawn normal(0, scale): wider than its own init,
    so that the gates work away from their linear range."""
    rng = np.random.default_rng(seed)
    engine = ENGINES[handwritten_class](n_in, hidden, rng=rng)
    engine.load_state_dict({name: rng.normal(0.0, scale, value.shape)
                            for name, value in engine.state_dict().items()})
    return engine


def engine_loss_and_gradients(engine, X, T) -> tuple[float, np.ndarray]:
    """The engine's loss and its gradients laid end to end in parameter order."""
    engine.zero_grad()
    loss = engine.loss(X, T)
    loss.backward()
    return loss.item(), np.concatenate([p.grad.ravel() for _, p in engine.named_parameters()])


def flat_of(model) -> np.ndarray:
    return np.concatenate([p.grad.ravel() for p in model.parameters()])


@CELLS
@given(seed=seeds, n_in=st.integers(1, 3), hidden=st.integers(1, 5),
       scale=st.sampled_from([0.3, 0.7, 1.5]), size=sizes, drawn=st.data())
def test_compute_gradients_fills_the_flat_buffer_with_the_engines_gradients(
        handwritten_class, seed, n_in, hidden, scale, size, drawn):
    X, T = drawn.draw(data(*size, n_in))
    engine = drawn_engine(handwritten_class, seed, n_in, hidden, scale)
    model = handwritten_class(n_in, hidden, engine.state_dict())
    loss = model.compute_gradients(X, T)
    computed = model.flat_gradients.copy()
    assert all(p.grad is None for p in model.parameters())
    # loss_and_backward: the same numbers, handed over as `.grad`.
    assert model.loss_and_backward(X, T) == loss
    np.testing.assert_array_equal(flat_of(model), computed)
    expected_loss, expected = engine_loss_and_gradients(engine, X, T)
    np.testing.assert_allclose(loss, expected_loss, rtol=RTOL, atol=0)
    np.testing.assert_allclose(computed, expected, rtol=RTOL, atol=ATOL)


@CELLS
@given(seed=seeds, hidden=st.integers(1, 5), size=sizes, drawn=st.data())
def test_compute_gradients_twice_gives_the_same_numbers(handwritten_class, seed, hidden,
                                                        size, drawn):
    # Every buffer is rewritten, none carries a value from the call before: the first data
    # again after other data of the same sizes gives the first answer to the bit.
    first, other = drawn.draw(data(*size, 2)), drawn.draw(data(*size, 2))
    model = handwritten_class(2, hidden, drawn_engine(handwritten_class, seed, 2, hidden,
                                                      0.7).state_dict())
    loss = model.compute_gradients(*first)
    gradients = model.flat_gradients.copy()
    assert model.compute_gradients(*first) == loss
    np.testing.assert_array_equal(model.flat_gradients, gradients)
    model.compute_gradients(*other)
    assert model.compute_gradients(*first) == loss
    np.testing.assert_array_equal(model.flat_gradients, gradients)


@CELLS
@given(seed=seeds, hidden=st.integers(1, 5),
       size_list=st.lists(sizes, min_size=2, max_size=4), drawn=st.data())
def test_compute_gradients_follows_a_change_of_sizes(handwritten_class, seed, hidden,
                                                     size_list, drawn):
    # One model through every drawn (N, L): its buffers remade when the sizes change,
    # reused when they do not; each answer is a fresh model's and the engine's.
    engine = drawn_engine(handwritten_class, seed, 2, hidden, 0.7)
    model = handwritten_class(2, hidden, engine.state_dict())
    for size in size_list:
        X, T = drawn.draw(data(*size, 2))
        loss = model.compute_gradients(X, T)
        fresh = handwritten_class(2, hidden, engine.state_dict())
        np.testing.assert_allclose(loss, fresh.compute_gradients(X, T), rtol=1e-13, atol=0)
        np.testing.assert_allclose(model.flat_gradients, fresh.flat_gradients, rtol=1e-13,
                                   atol=1e-16)
        expected_loss, expected = engine_loss_and_gradients(engine, X, T)
        np.testing.assert_allclose(loss, expected_loss, rtol=RTOL, atol=0)
        np.testing.assert_allclose(model.flat_gradients, expected, rtol=RTOL, atol=ATOL)


@CELLS
def test_flat_buffers_are_the_parameters_and_gradients_end_to_end(handwritten_class):
    model = handwritten_class(2, 3, drawn_engine(handwritten_class, 0, 2, 3, 0.7)
                              .state_dict())
    params = model.parameters()
    assert model.flat_parameters.size == model.flat_gradients.size == sum(
        p.data.size for p in params)
    np.testing.assert_array_equal(model.flat_parameters,
                                  np.concatenate([p.data.ravel() for p in params]))
    assert all(np.shares_memory(model.flat_parameters, p.data) for p in params)
    model.loss_and_backward(np.ones((4, 3, 2)), np.ones((4, 3, 1)))
    assert all(np.shares_memory(model.flat_gradients, p.grad) for p in params)
    np.testing.assert_array_equal(model.flat_gradients, flat_of(model))
    assert not np.shares_memory(model.flat_parameters, model.flat_gradients)


@CELLS
def test_loss_and_backward_reads_a_replaced_data_array(handwritten_class):
    # The protocol lets an optimizer assign `.data`: the new values are laid into the flat
    # buffer before the call reads it, and `.data` is its view again.
    engine = drawn_engine(handwritten_class, 1, 2, 3, 0.7)
    model = handwritten_class(2, 3, engine.state_dict())
    X = np.random.default_rng(2).normal(size=(5, 4, 2))
    T = (X[..., :1] > 0).astype(np.float64)
    model.compute_gradients(X, T)
    replaced = {name: value + 0.125 for name, value in engine.state_dict().items()
                if name.endswith("weight_hh")}
    param = dict(model.named_parameters())["cell.weight_hh"]
    param.data = replaced["cell.weight_hh"].copy()
    loss = model.loss_and_backward(X, T)
    assert np.shares_memory(param.data, model.flat_parameters)
    expected = handwritten_class(2, 3, {**engine.state_dict(), **replaced})
    assert loss == expected.compute_gradients(X, T)
    np.testing.assert_array_equal(model.flat_gradients, expected.flat_gradients)


@CELLS
def test_compute_gradients_refuses_bad_shapes(handwritten_class):
    name = handwritten_class.__name__
    model = handwritten_class(2, 3, drawn_engine(handwritten_class, 0, 2, 3, 0.7)
                              .state_dict())
    with pytest.raises(ValueError, match=re.escape(f"{name}: X must have shape (N, L, 2), "
                                                   "got (4, 5, 3)")):
        model.compute_gradients(np.zeros((4, 5, 3)), np.zeros((4, 5, 1)))
    with pytest.raises(ValueError, match=re.escape(f"{name}: X must have shape (N, L, 2), "
                                                   "got (4, 0, 2)")):
        model.compute_gradients(np.zeros((4, 0, 2)), np.zeros((4, 0, 1)))
    with pytest.raises(ValueError, match=re.escape(f"{name}: T must have shape (4, 5, 1), "
                                                   "got (4, 5)")):
        model.compute_gradients(np.zeros((4, 5, 2)), np.zeros((4, 5)))


@CELLS
def test_float32_cells_compute_in_float32(handwritten_class):
    engine = drawn_engine(handwritten_class, 3, 2, 4, 0.7)
    X = np.random.default_rng(4).integers(0, 2, (6, 5, 2)).astype(np.float64)
    T = np.random.default_rng(5).integers(0, 2, (6, 5, 1)).astype(np.float64)
    single = handwritten_class(2, 4, engine.state_dict(), dtype=np.float32)
    double = handwritten_class(2, 4, engine.state_dict())
    loss = single.compute_gradients(X, T)
    assert single.flat_gradients.dtype == np.float32
    np.testing.assert_allclose(loss, double.compute_gradients(X, T), rtol=1e-5)
    np.testing.assert_allclose(single.flat_gradients, double.flat_gradients, rtol=1e-3,
                               atol=1e-5)
