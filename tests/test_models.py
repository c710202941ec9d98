"""The engine's models (`minigrad.models.Counter`, `minigrad.models.Adder`): their gradients
against numerical differentiation and against the hand-coded backprop of
`minigrad.models.reference`, for drawn parameters and data, every preset and every
`AdderConfig` option combination.

Tolerances (float64 throughout):

- Engine vs hand-coded reference: both evaluate the same expressions in float64, only in a
  different order (tensordot vs matmul, the recurrent bias folded into Z or not, sums
  accumulated in other orders), so they differ by rounding alone. A gradient element is a
  sum of at most N * L * n products of O(1) factors, each correct to a few ulps (2.2e-16);
  here that is below 1e-13 of the largest term. ``rtol = 1e-10`` leaves a margin of about
  1000 for ordinary elements; ``atol = 1e-13 * scale`` (scale: the largest gradient element
  of the model, at least 1) covers elements that cancel to about zero. A wrong term in a
  hand-derived formula is of the size of the gradient itself, far above either bound.
- Engine vs central differences (`minigrad.testing.numerical_grad`, eps = 1e-6): rounding
  contributes about 1e-16 * |L| / eps = 1e-10 |L| and truncation eps^2 / 6 * L''' =
  2e-13 L'''. ``rtol = 1e-6`` plus ``atol = 1e-7 * (1 + |L|)`` keeps a margin of 100 or
  more over both while any missing or wrong term still fails.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minigrad.models.adder import Adder
from minigrad.models.comparison import reference_adder, to_engine_names
from minigrad.models.counter import Counter
from minigrad.models.data import counting_data
from minigrad.models.presets import ACTIVATIONS, PRESETS, RECURRENT_INITS, AdderConfig
from minigrad.models.reference import ReferenceAdder, ReferenceCounter
from minigrad.testing import numerical_grad

REFERENCE_RTOL = 1e-10
REFERENCE_ATOL = 1e-13
NUMERICAL_EPS = 1e-6
NUMERICAL_RTOL = 1e-6
NUMERICAL_ATOL = 1e-7

seeds = st.integers(min_value=0, max_value=2**32 - 1)

# activation x bias x learned initial state x recurrent initialisation: all 16.
OPTION_COMBINATIONS = [
    {"activation": a, "bias": b, "learn_initial_state": s, "recurrent_init": r}
    for a, b, s, r in itertools.product(ACTIVATIONS, (True, False), (True, False), RECURRENT_INITS)
]


def combination_id(options: dict) -> str:
    return "{activation}-{bias_name}-{state_name}-{recurrent_init}".format(
        bias_name="bias" if options["bias"] else "nobias",
        state_name="learnedS0" if options["learn_initial_state"] else "fixedS0",
        **options,
    )


def engine_gradients(model, X, T) -> tuple[float, dict[str, np.ndarray]]:
    """The loss and every parameter's gradient from one backward pass of the engine. With a
    fixed S_0 = 0 and a single position, W_rec (the counter's w_rec) never multiplies
    anything: the engine gives it a zero gradient (0 W_rec), as the reference does."""
    model.zero_grad()
    loss = model.loss(X, T)
    loss.backward()
    grads = {}
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.shape == p.shape, name
        assert p.grad.dtype == np.float64, name
        grads[name] = p.grad.copy()
    return loss.item(), grads


def reference_gradients(reference, X, T) -> tuple[float, dict[str, np.ndarray]]:
    reference.zero_grad()
    loss = reference.loss_and_backward(X, T)
    grads = {name: p.grad.copy() for name, p in reference.named_parameters()}
    # A hand-coded adder names its parameters as the write-up does: map them to the engine's.
    return loss, to_engine_names(grads) if isinstance(reference, ReferenceAdder) else grads


def assert_same_as_reference(engine, reference) -> None:
    """Equal loss and gradients, name by name, at the tight tolerance explained above."""
    engine_loss, engine_grads = engine
    reference_loss, reference_grads = reference
    assert list(engine_grads) == list(reference_grads)
    np.testing.assert_allclose(engine_loss, reference_loss, rtol=REFERENCE_RTOL, atol=0)
    scale = max([1.0] + [float(np.abs(g).max()) for g in reference_grads.values()])
    for name, grad in engine_grads.items():
        np.testing.assert_allclose(grad, reference_grads[name], rtol=REFERENCE_RTOL,
                                   atol=REFERENCE_ATOL * scale, err_msg=name)


def assert_matches_numerical(grads: dict[str, np.ndarray], numerical: dict[str, np.ndarray],
                             loss: float) -> None:
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, numerical[name], rtol=NUMERICAL_RTOL,
                                   atol=NUMERICAL_ATOL * (1.0 + abs(loss)), err_msg=name)


# --- the counter ----------------------------------------------------------------------------


@given(
    seed=seeds,
    n=st.integers(1, 6),
    length=st.integers(1, 10),
    w_x=st.floats(-2, 2),
    w_rec=st.floats(-2, 2),
)
def test_counter_gradients_match_reference_and_central_differences(seed, n, length, w_x, w_rec):
    X, t = counting_data(np.random.default_rng(seed), n_sequences=n, length=length)
    X_before = X.copy()
    model = Counter(w_x, w_rec)
    engine = engine_gradients(model, X, t)
    np.testing.assert_array_equal(X, X_before)

    reference = ReferenceCounter(w_x, w_rec)
    assert_same_as_reference(engine, reference_gradients(reference, X, t))

    numerical = numerical_grad(lambda a, b: Counter(a, b).loss(X, t), w_x, w_rec,
                               eps=NUMERICAL_EPS)
    assert_matches_numerical(engine[1], dict(zip(["w_x", "w_rec"], numerical)), engine[0])


def test_counter_parameters_and_forward():
    model = Counter(0.5, -1.0)
    assert [(name, p.shape) for name, p in model.named_parameters()] == [("w_x", ()),
                                                                          ("w_rec", ())]
    X = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    # s_3 = ((x1 w_x) w_rec + x2 w_x) w_rec + x3 w_x
    expected = [((0.5 * -1.0) * -1.0) + 0.5, ((0.0 * -1.0 + 0.5) * -1.0) + 0.5]
    np.testing.assert_array_equal(model(X).data, expected)
    np.testing.assert_array_equal(model(X).data, ReferenceCounter(0.5, -1.0).forward(X)[:, -1])
    with pytest.raises(ValueError, match="Counter"):
        model(np.ones(3))


def test_counter_gradient_explodes_at_1_2():
    # "How to implement an RNN", part 1: at w_x = 1, w_rec = 2 the gradient is of the order
    # of 1e7.
    X, t = counting_data(np.random.default_rng(0))
    _, grads = engine_gradients(Counter(1.0, 2.0), X, t)
    assert 1e6 < abs(grads["w_rec"]) < 1e8


# --- the adder ------------------------------------------------------------------------------


def random_adder(config: AdderConfig, seed: int, n_samples: int, scale: float):
    """An engine Adder at a random point, the reference loaded with its state_dict, random
    input and target bits.

    Every parameter is drawn anew, biases and S_0 included: a weight of fan-in n_in from
    N(0, scale^2 / n_in), a vector from N(0, scale^2), so that `scale` sets the size of the
    pre-activations whatever the width (scale 1 is a little above Glorot's spread).
    """
    rng = np.random.default_rng(seed)
    model = Adder(config, rng=rng)
    model.load_state_dict({
        name: rng.normal(0.0, scale / np.sqrt(p.shape[0] if p.ndim == 2 else 1), p.shape)
        for name, p in model.named_parameters()
    })
    reference = reference_adder(model)
    X = rng.integers(0, 2, size=(n_samples, config.n_bits, 2)).astype(np.float64)
    T = rng.integers(0, 2, size=(n_samples, config.n_bits, 1)).astype(np.float64)
    return model, reference, X, T


def numerical_adder_gradients(model: Adder, X, T) -> dict[str, np.ndarray]:
    """Central differences of the loss in every element of every parameter, evaluated on a
    twin model (so `model` keeps its parameters and gradients)."""
    twin = Adder(model.config, rng=np.random.default_rng(0))
    names = [name for name, _ in model.named_parameters()]

    def loss(*values):
        twin.load_state_dict(dict(zip(names, values)))
        return twin.loss(X, T)

    state = model.state_dict()
    return dict(zip(names, numerical_grad(loss, *(state[n] for n in names), eps=NUMERICAL_EPS)))


@pytest.mark.parametrize("options", OPTION_COMBINATIONS, ids=combination_id)
@given(
    seed=seeds,
    n_samples=st.integers(1, 8),
    n_bits=st.integers(1, 8),
    n_states=st.integers(1, 6),
    scale=st.floats(0.1, 2.0),
)
def test_adder_gradients_match_reference(options, seed, n_samples, n_bits, n_states, scale):
    config = AdderConfig(n_bits=n_bits, n_states=n_states, **options)
    model, reference, X, T = random_adder(config, seed, n_samples, scale)
    assert [n for n, _ in model.named_parameters()] == list(config.parameter_shapes())
    assert_same_as_reference(engine_gradients(model, X, T), reference_gradients(reference, X, T))


@pytest.mark.parametrize("options", OPTION_COMBINATIONS, ids=combination_id)
@given(
    seed=seeds,
    n_samples=st.integers(1, 4),
    n_bits=st.integers(1, 5),
    n_states=st.integers(1, 3),
    scale=st.floats(0.1, 1.5),
)
def test_adder_gradients_match_central_differences(options, seed, n_samples, n_bits, n_states,
                                                   scale):
    config = AdderConfig(n_bits=n_bits, n_states=n_states, **options)
    model, _, X, T = random_adder(config, seed, n_samples, scale)
    loss, grads = engine_gradients(model, X, T)
    assert_matches_numerical(grads, numerical_adder_gradients(model, X, T), loss)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@given(seed=seeds, n_samples=st.integers(1, 16), scale=st.floats(0.05, 2.0))
def test_preset_gradients_match_reference_and_a_directional_derivative(preset, seed, n_samples,
                                                                       scale):
    # At full size (the large preset has 1217 parameters) the numerical check is one random
    # direction v: d/dh L(p + h v) at h = 0 must equal <grad, v>.
    config, _ = PRESETS[preset]
    model, reference, X, T = random_adder(config, seed, n_samples, scale)
    loss, grads = engine_gradients(model, X, T)
    assert_same_as_reference((loss, grads), reference_gradients(reference, X, T))

    rng = np.random.default_rng([seed, 1])
    start = model.state_dict()
    direction = {name: rng.standard_normal(value.shape) for name, value in start.items()}
    twin = Adder(config, rng=rng)

    def loss_along(h):
        twin.load_state_dict({name: start[name] + h * direction[name] for name in start})
        return twin.loss(X, T)

    (numerical,) = numerical_grad(loss_along, 0.0, eps=NUMERICAL_EPS)
    analytic = sum(np.sum(grads[name] * direction[name]) for name in grads)
    scale_of_terms = sum(np.sum(np.abs(grads[name] * direction[name])) for name in grads)
    np.testing.assert_allclose(analytic, numerical, rtol=NUMERICAL_RTOL,
                               atol=NUMERICAL_ATOL * (1.0 + abs(loss) + scale_of_terms))


@pytest.mark.parametrize("preset", sorted(PRESETS))
@given(seed=seeds, n_samples=st.integers(1, 3))
def test_shrunk_preset_gradients_match_central_differences(preset, seed, n_samples):
    # Each preset's architecture, element by element, at a size numerical_grad handles.
    config, _ = PRESETS[preset]
    config = dataclasses.replace(config, n_bits=min(config.n_bits, 5),
                                 n_states=min(config.n_states, 4), max_operand=None)
    model, _, X, T = random_adder(config, seed, n_samples, scale=0.5)
    loss, grads = engine_gradients(model, X, T)
    assert_matches_numerical(grads, numerical_adder_gradients(model, X, T), loss)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_same_initialisation_as_reference(preset):
    # Same rng, same draws in the same order: the engine starts where the reference starts.
    config, _ = PRESETS[preset]
    engine = Adder(config, rng=np.random.default_rng(7))
    reference = ReferenceAdder(config, np.random.default_rng(7))
    expected = to_engine_names(reference.state_dict())
    assert list(engine.state_dict()) == list(expected)
    for name, value in engine.state_dict().items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)


def test_adder_outputs_agree_with_reference():
    config, _ = PRESETS["small"]
    model, reference, X, _ = random_adder(config, seed=3, n_samples=50, scale=1.0)
    np.testing.assert_allclose(model(X).data, reference.forward(X), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(model.predict_bits(X), reference.predict_bits(X))
    assert model.predict_bits(X).shape == (50, config.n_bits, 1)


def test_adder_rejects_misshaped_inputs_and_targets():
    model = Adder(PRESETS["small"][0], rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="Adder"):
        model(np.zeros((4, 7, 3)))
    with pytest.raises(ValueError, match="Adder.loss"):
        model.loss(np.zeros((4, 7, 2)), np.zeros((4, 7)))


def test_counter_targets_as_a_column_or_of_the_wrong_size():
    # A (n, 1) column used to broadcast against the (n,) outputs into an (n, n) difference.
    X, t = counting_data(np.random.default_rng(0), n_sequences=4, length=5)
    model = Counter(0.5, 1.0)
    expected = ReferenceCounter(0.5, 1.0).loss(X, t)
    assert model.loss(X, t).item() == expected
    assert model.loss(X, t[:, None]).item() == expected
    with pytest.raises(ValueError, match="Counter.loss"):
        model.loss(X, t[:3])


def test_float32_models_compute_in_float32():
    # float64 data (what models.data returns) must not promote a float32 model's graph.
    X, t = counting_data(np.random.default_rng(0), n_sequences=4, length=5)
    counter = Counter(0.5, 1.0, dtype=np.float32)
    loss = counter.loss(X, t)
    loss.backward()
    assert loss.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in counter.parameters())
    assert loss.item() == pytest.approx(ReferenceCounter(0.5, 1.0).loss(X, t), rel=1e-6, abs=0)

    config, _ = PRESETS["small"]
    model, reference, X, T = random_adder(config, seed=0, n_samples=20, scale=1.0)
    model32 = Adder(config, rng=np.random.default_rng(0), dtype=np.float32)
    model32.load_state_dict(model.state_dict())
    assert model32.logits(X).dtype == np.float32
    loss = model32.loss(X, T)
    loss.backward()
    assert loss.dtype == np.float32
    reference_loss, reference_grads = reference_gradients(reference, X, T)
    assert loss.item() == pytest.approx(reference_loss, rel=1e-5, abs=0)
    for name, p in model32.named_parameters():
        assert p.grad.dtype == np.float32, name
        np.testing.assert_allclose(p.grad, reference_grads[name], rtol=1e-3, atol=1e-5,
                                   err_msg=name)
