"""The hand-written references: gradients against central differences, accumulation,
the counter's exploding gradient, saturation, dtypes; and the presets' validation.

Gradient tolerance. A central difference with step eps = 1e-6 in float64 has a rounding
error of about 2.2e-16 * |L| / eps ~ 2e-10 |L| and a truncation error of eps^2 / 6 * L'''
~ 2e-13 L''', so ``rtol = 1e-6`` plus ``atol = 1e-8 * max(1, |L|)`` leaves a margin of
about 100 while still catching any wrong term (a wrong term is of the size of the gradient).
"""

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigrad import optim
from minigrad.models.comparison import to_engine_names
from minigrad.models.data import addition_data, bits_to_int, counting_data, encode_sum
from minigrad.models.presets import PRESETS, AdderConfig, TrainConfig, get_preset
from minigrad.models.reference import Param, ReferenceAdder, ReferenceCounter
from minigrad.models.reference.adder import initial_parameters, sigmoid, softplus

EPS = 1e-6
RTOL = 1e-6
ATOL = 1e-8

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def numerical_gradients(loss, params, eps=EPS):
    """Central differences ``(L(p + eps e_i) - L(p - eps e_i)) / (2 eps)`` for every entry
    of every parameter, perturbing ``.data`` in place and restoring it."""
    grads = []
    for param in params:
        grad = np.zeros_like(param.data, dtype=np.float64)
        for index in np.ndindex(param.data.shape):
            original = param.data[index].copy()
            param.data[index] = original + eps
            up = loss()
            param.data[index] = original - eps
            down = loss()
            param.data[index] = original
            grad[index] = (up - down) / (2 * eps)
        grads.append(grad)
    return grads


def assert_gradients_match(model, loss, loss_value):
    numerical = numerical_gradients(loss, model.parameters())
    for (name, param), expected in zip(model.named_parameters(), numerical):
        assert param.grad is not None, name
        assert param.grad.shape == param.data.shape, name
        np.testing.assert_allclose(
            param.grad, expected, rtol=RTOL, atol=ATOL * max(1.0, abs(loss_value)), err_msg=name
        )


# --- counter --------------------------------------------------------------------------


@given(
    seed=seeds,
    n=st.integers(1, 6),
    length=st.integers(1, 10),
    w_x=st.floats(-2, 2),
    w_rec=st.floats(-2, 2),
)
def test_counter_gradients_match_central_differences(seed, n, length, w_x, w_rec):
    X, t = counting_data(np.random.default_rng(seed), n_sequences=n, length=length)
    model = ReferenceCounter(w_x, w_rec)
    loss_value = model.loss_and_backward(X, t)
    assert loss_value == model.loss(X, t)
    assert_gradients_match(model, lambda: model.loss(X, t), loss_value)


@given(seed=seeds, w_x=st.floats(-2, 2), w_rec=st.floats(-2, 2))
def test_counter_state_gradients_follow_the_recurrence(seed, w_x, w_rec):
    X, t = counting_data(np.random.default_rng(seed), n_sequences=5, length=8)
    model = ReferenceCounter(w_x, w_rec)
    S = model.forward(X)
    G = model.state_gradients(X, t)
    assert S.shape == G.shape == (5, 9)
    np.testing.assert_array_equal(G[:, -1], 2 * (S[:, -1] - t) / 5)
    np.testing.assert_array_equal(G[:, :-1], G[:, 1:] * w_rec)
    # The parameter gradients are the state gradients times the local derivatives.
    model.loss_and_backward(X, t)
    np.testing.assert_allclose(model.w_x.grad, np.sum(G[:, 1:] * X), rtol=1e-12)
    np.testing.assert_allclose(model.w_rec.grad, np.sum(G[:, 1:] * S[:, :-1]), rtol=1e-12)


def test_counter_single_sequence_shapes():
    model = ReferenceCounter(1.0, 1.0)
    x = np.array([1.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(model.forward(x), [0.0, 1.0, 1.0, 2.0, 3.0])
    assert model.state_gradients(x, 3.0).shape == (5,)
    assert model.loss(x, 3.0) == 0.0


def test_counter_exact_solution_has_zero_loss_and_zero_gradient():
    X, t = counting_data(np.random.default_rng(0))
    model = ReferenceCounter(1.0, 1.0)
    assert model.loss_and_backward(X, t) == 0.0
    assert model.w_x.grad == 0.0 and model.w_rec.grad == 0.0
    assert not model.state_gradients(X, t).any()
    assert [(name, p.data.shape, p.data.dtype) for name, p in model.named_parameters()] == [
        ("w_x", (), np.float64),
        ("w_rec", (), np.float64),
    ]


def closed_form_w_rec_gradient_at_1_2(X, t):
    """dL/dw_rec at w_x = 1, w_rec = 2, computed without the model.

    There ``s_k`` is the integer whose binary digits, most significant first, are
    ``x_1 .. x_k``, and ``dL/ds_k = 2 (s_T - t) / n * 2**(T - k)``, so
    ``dL/dw_rec = 2/n sum_i (s_T - t) sum_k 2**(T - k) s_{k-1}``.
    """
    n, T = X.shape
    bits = X.astype(np.int64)
    s = np.zeros((n, T + 1), dtype=np.int64)
    for k in range(1, T + 1):
        s[:, k] = bits_to_int(bits[:, k - 1 :: -1])
    inner = sum(2 ** (T - k) * s[:, k - 1] for k in range(1, T + 1))
    return 2.0 / n * np.sum((s[:, T] - t) * inner)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counter_gradient_explodes_at_1_2(seed):
    # The tutorial's data size (part 1): 20 sequences of 10 steps.
    X, t = counting_data(np.random.default_rng(seed))
    model = ReferenceCounter(1.0, 2.0)
    model.loss_and_backward(X, t)
    expected = closed_form_w_rec_gradient_at_1_2(X, t)
    np.testing.assert_allclose(model.w_rec.grad, expected, rtol=1e-12)
    # The tutorial calls it "of the order of 1e7": within a decade of 1e7 (here a few 1e6).
    assert 1e6 <= abs(model.w_rec.grad) < 1e8
    # At the solution's neighbour w_rec = 0.5 the same data gives a gradient 1e4 times
    # smaller or more: the gradient is geometric in w_rec.
    tame = ReferenceCounter(1.0, 0.5)
    tame.loss_and_backward(X, t)
    assert abs(tame.w_rec.grad) * 1e4 < abs(model.w_rec.grad)


@pytest.mark.parametrize("w_rec", [2.0, -2.0, 0.5, -0.5])
def test_counter_state_gradient_magnitude_is_geometric(w_rec):
    # The write-up's plot: |dL/ds_k| per timestep at (1, w_rec).
    X, t = counting_data(np.random.default_rng(0))
    G = ReferenceCounter(1.0, w_rec).state_gradients(X, t)
    magnitude = np.abs(G).sum(axis=0)
    np.testing.assert_allclose(magnitude[:-1] / magnitude[1:], abs(w_rec), rtol=1e-12)
    signs = np.sign(G[np.argmax(np.abs(G[:, -1]))])
    if w_rec < 0:
        assert (signs[:-1] == -signs[1:]).all()
    else:
        assert (signs == signs[-1]).all()


def test_counter_gradients_accumulate_and_zero_grad_clears():
    X, t = counting_data(np.random.default_rng(3), n_sequences=7, length=6)
    model = ReferenceCounter(0.7, 1.1)
    model.loss_and_backward(X, t)
    once = [p.grad.copy() for p in model.parameters()]
    model.loss_and_backward(X, t)
    for param, grad in zip(model.parameters(), once):
        np.testing.assert_array_equal(param.grad, 2 * grad)
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# --- adder ----------------------------------------------------------------------------

OPTION_COMBINATIONS = [
    dict(activation=activation, bias=bias, learn_initial_state=learn)
    for activation, bias, learn in itertools.product(
        ("tanh", "sigmoid"), (True, False), (True, False)
    )
]


def random_problem(config, seed, n_samples, scale=0.5):
    """A model at a random point (weights from the initialiser, then every parameter, biases
    and S_0 included, moved by N(0, scale^2)), random input bits and random target bits."""
    rng = np.random.default_rng(seed)
    model = ReferenceAdder(config, rng)
    model.load_parameters(
        {
            name: p.data + rng.normal(0.0, scale, p.data.shape)
            for name, p in model.named_parameters()
        }
    )
    X = rng.integers(0, 2, size=(n_samples, config.n_bits, 2)).astype(np.float64)
    T = rng.integers(0, 2, size=(n_samples, config.n_bits, 1)).astype(np.float64)
    return model, X, T


def check_adder_gradients(config, seed, n_samples):
    model, X, T = random_problem(config, seed, n_samples)
    X_before, T_before = X.copy(), T.copy()
    loss_value = model.loss_and_backward(X, T)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(T, T_before)
    assert loss_value == model.loss(X, T)
    assert_gradients_match(model, lambda: model.loss(X, T), loss_value)


@pytest.mark.parametrize(
    "options", OPTION_COMBINATIONS, ids=lambda o: "-".join(map(str, o.values()))
)
@given(
    seed=seeds,
    n_samples=st.integers(1, 4),
    n_bits=st.integers(1, 5),
    n_states=st.integers(1, 4),
    recurrent_init=st.sampled_from(["glorot", "orthogonal"]),
)
def test_adder_gradients_match_central_differences(
    options, seed, n_samples, n_bits, n_states, recurrent_init
):
    config = AdderConfig(
        n_bits=n_bits, n_states=n_states, recurrent_init=recurrent_init, **options
    )
    check_adder_gradients(config, seed, n_samples)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@settings(max_examples=10)
@given(seed=seeds, n_samples=st.integers(1, 3))
def test_adder_gradients_match_central_differences_for_presets(preset, seed, n_samples):
    config, _ = PRESETS[preset]
    # The large preset's 1217 parameters would need 2434 losses per example: keep its
    # architecture but at most 8 states and 7 positions.
    small = dataclasses.replace(
        config, n_states=min(config.n_states, 8), n_bits=min(config.n_bits, 7), max_operand=None
    )
    check_adder_gradients(small, seed, n_samples)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("seed", [0, 1])
def test_adder_directional_derivative_at_full_preset_size(preset, seed):
    # At full size one random direction v: <grad, v> = (L(p + eps v) - L(p - eps v)) / 2eps.
    config, _ = PRESETS[preset]
    model, X, T = random_problem(config, seed, n_samples=8, scale=0.1)
    model.loss_and_backward(X, T)
    rng = np.random.default_rng(seed + 100)
    directions = [rng.standard_normal(p.data.shape) for p in model.parameters()]
    analytic = sum(np.sum(p.grad * v) for p, v in zip(model.parameters(), directions))
    start = [p.data.copy() for p in model.parameters()]

    def loss_at(step):
        for p, p0, v in zip(model.parameters(), start, directions):
            p.data = p0 + step * v
        return model.loss(X, T)

    numerical = (loss_at(EPS) - loss_at(-EPS)) / (2 * EPS)
    np.testing.assert_allclose(analytic, numerical, rtol=RTOL, atol=ATOL)


def test_adder_gradients_accumulate_and_zero_grad_clears():
    model, X, T = random_problem(PRESETS["small"][0], seed=5, n_samples=6)
    model.loss_and_backward(X, T)
    once = {name: p.grad.copy() for name, p in model.named_parameters()}
    model.loss_and_backward(X, T)
    for name, param in model.named_parameters():
        np.testing.assert_array_equal(param.grad, 2 * once[name], err_msg=name)
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_adder_bias_gradients_are_separate_arrays():
    model, X, T = random_problem(PRESETS["small"][0], seed=6, n_samples=3)
    model.loss_and_backward(X, T)
    params = dict(model.named_parameters())
    assert params["b_in"].grad is not params["b_rec"].grad


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_adder_parameter_names_and_shapes(preset):
    config, _ = PRESETS[preset]
    model = ReferenceAdder(config, np.random.default_rng(0))
    n = config.n_states
    expected = [("W_in", (2, n))]
    expected += [("b_in", (n,))] if config.bias else []
    expected += [("W_rec", (n, n))]
    expected += [("b_rec", (n,))] if config.bias else []
    expected += [("S_0", (n,))] if config.learn_initial_state else []
    expected += [("W_out", (n, 1))]
    expected += [("b_out", (1,))] if config.bias else []
    assert [(name, p.data.shape) for name, p in model.named_parameters()] == expected
    # The engine has the same parameters under its own names, in the same order.
    assert list(to_engine_names(dict(expected)).items()) == list(
        config.parameter_shapes().items())
    assert model.parameters() == [p for _, p in model.named_parameters()]


def test_keras_preset_has_304_parameters():
    assert PRESETS["keras"][0].n_parameters == 304


@pytest.mark.parametrize("recurrent_init", ["glorot", "orthogonal"])
def test_adder_initialisation(recurrent_init):
    config = AdderConfig(n_states=16, recurrent_init=recurrent_init)
    params = dict(ReferenceAdder(config, np.random.default_rng(0)).named_parameters())
    for name in ("W_in", "W_out"):
        n_in, n_out = params[name].data.shape
        assert np.abs(params[name].data).max() <= np.sqrt(6 / (n_in + n_out))
    W = params["W_rec"].data
    if recurrent_init == "glorot":
        assert np.abs(W).max() <= np.sqrt(6 / 32)
    else:
        np.testing.assert_allclose(W.T @ W, np.eye(16), atol=1e-12)
    for name in ("b_in", "b_rec", "b_out", "S_0"):
        assert not params[name].data.any(), name


def test_adder_initialisation_is_reproducible_and_rng_none_gives_zeros():
    config = PRESETS["keras"][0]
    first = initial_parameters(config, np.random.default_rng(42))
    again = ReferenceAdder(config, np.random.default_rng(42)).state_dict()
    assert list(first) == list(again)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    zeros = ReferenceAdder(config)
    assert all(not p.data.any() for p in zeros.parameters())


def test_load_parameters_copies_and_validates():
    config = PRESETS["small"][0]
    source = ReferenceAdder(config, np.random.default_rng(1)).state_dict()
    model = ReferenceAdder(config)
    model.load_parameters(source)
    source["W_in"][...] = 0.0
    assert dict(model.named_parameters())["W_in"].data.any()

    missing = dict(source)
    del missing["b_out"]
    with pytest.raises(ValueError, match=r"missing \['b_out'\], unexpected \[\]"):
        model.load_parameters(missing)
    extra = dict(source, **{"W_gain": np.ones(1)})
    with pytest.raises(ValueError, match=r"unexpected \['W_gain'\]"):
        model.load_parameters(extra)
    wrong = dict(source, **{"W_rec": np.zeros((3, 4))})
    with pytest.raises(ValueError, match=r"W_rec: expected \(3, 3\), got \(3, 4\)"):
        model.load_parameters(wrong)


def test_adder_predictions_and_shapes():
    config = PRESETS["small"][0]
    model = ReferenceAdder(config, np.random.default_rng(2))
    X, T = addition_data(np.random.default_rng(3), 5, config.n_bits)
    Y = model.forward(X)
    assert Y.shape == (5, config.n_bits, 1)
    assert ((Y > 0) & (Y < 1)).all()
    np.testing.assert_array_equal(model.predict_bits(X), (Y > 0.5).astype(np.float64))
    with pytest.raises(ValueError, match=r"X must have shape \(N, L, 2\)"):
        model.forward(X[..., :1])
    with pytest.raises(ValueError, match=r"T must have shape \(5, 7, 1\)"):
        model.loss(X, T[..., 0])


def test_adder_loss_is_binary_cross_entropy():
    model, X, T = random_problem(PRESETS["keras"][0], seed=4, n_samples=5)
    Y = model.forward(X)
    naive = -np.mean(T * np.log(Y) + (1 - T) * np.log(1 - Y))
    np.testing.assert_allclose(model.loss(X, T), naive, rtol=1e-12)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_adder_saturated_outputs_keep_loss_and_gradients_finite(preset):
    config, _ = PRESETS[preset]
    model, X, T = random_problem(config, seed=7, n_samples=4)
    params = dict(model.named_parameters())
    params["W_out"].data = params["W_out"].data * 1e6
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        Y = model.forward(X)
        loss_value = model.loss_and_backward(X, T)
    # The outputs really are saturated: some probabilities round to exactly 0 or 1.
    assert ((Y == 0.0) | (Y == 1.0)).any()
    assert np.isfinite(loss_value) and loss_value > 0
    for name, param in model.named_parameters():
        assert np.isfinite(param.grad).all(), name


def test_sigmoid_and_softplus_are_stable():
    z = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        s = sigmoid(z)
        sp = softplus(z)
        s32 = sigmoid(z.astype(np.float32))
    np.testing.assert_allclose(s, [0.0, np.exp(-50.0), 0.5, 1.0, 1.0], rtol=1e-12)
    np.testing.assert_allclose(sp, [0.0, np.exp(-50.0), np.log(2.0), 50.0, 1e4], rtol=1e-12)
    assert s32.dtype == np.float32


def test_adder_float32_stays_float32():
    config = PRESETS["small"][0]
    model, X, T = random_problem(config, seed=8, n_samples=10)
    model32 = ReferenceAdder(config, dtype=np.float32)
    model32.load_parameters(model.state_dict())
    X32, T32 = X.astype(np.float32), T.astype(np.float32)
    assert model32.forward(X32).dtype == np.float32
    assert model32.predict_bits(X32).dtype == np.float32
    loss32 = model32.loss_and_backward(X32, T32)
    loss64 = model.loss_and_backward(X, T)
    for (name, p32), p64 in zip(model32.named_parameters(), model.parameters()):
        assert p32.data.dtype == p32.grad.dtype == np.float32, name
        # float32 carries ~7 digits; through 7 steps of tanh the gradients keep ~5.
        np.testing.assert_allclose(p32.grad, p64.grad, rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(loss32, loss64, rtol=1e-5)


def test_adder_adds_with_hand_set_weights():
    # A hand-made solution (states: "sum bit odd" and "carry"), as a check that the forward
    # pass wires the recurrence the way the write-up does: the carry travels LSB first.
    config = AdderConfig(n_bits=8, n_states=3, activation="sigmoid", bias=True)
    k = 20.0
    # State units: h1 = [x1 + x2 + c >= 1], h2 = [>= 2], h3 = [>= 3], with c = h2_{k-1}.
    params = {
        "W_in": np.array([[k, k, k], [k, k, k]]),
        "b_in": np.array([-0.5, -1.5, -2.5]) * k,
        "W_rec": np.array([[0.0, 0.0, 0.0], [k, k, k], [0.0, 0.0, 0.0]]),
        "b_rec": np.zeros(3),
        "S_0": np.zeros(3),
        # Sum bit = h1 - h2 + h3 (odd count of ones).
        "W_out": np.array([[2 * k], [-2 * k], [2 * k]]),
        "b_out": np.array([-k]),
    }
    model = ReferenceAdder(config)
    model.load_parameters(params)
    X, T = encode_sum(np.array([254, 37, 100]), np.array([1, 43, 27]), 8)
    np.testing.assert_array_equal(bits_to_int(model.predict_bits(X)[..., 0]), [255, 80, 127])


# --- presets --------------------------------------------------------------------------


def test_presets_match_the_write_ups():
    small, small_train = get_preset("small")
    assert (small.n_bits, small.n_states, small.activation) == (7, 3, "tanh")
    assert small.bias and small.learn_initial_state and small.recurrent_init == "glorot"
    assert small_train == TrainConfig(2000, 100, 5, "rmsprop_nesterov", 0.05, 0.5, 0.8, 1e-6)
    large, large_train = get_preset("large")
    assert (large.n_bits, large.n_states, large.operand_limit) == (13, 32, 4096)
    assert (large_train.n_samples, large_train.batch_size, large_train.epochs) == (20000, 200, 20)
    assert large_train.lr == 0.02
    keras, keras_train = get_preset("keras")
    assert (keras.n_bits, keras.n_states, keras.activation, keras.operand_limit) == (
        8,
        16,
        "sigmoid",
        128,
    )
    assert not keras.bias and not keras.learn_initial_state
    assert keras.recurrent_init == "orthogonal"
    assert (keras_train.optimizer, keras_train.lr, keras_train.total_steps) == ("sgd", 0.1, 100_000)
    with pytest.raises(ValueError, match="unknown preset 'huge'; known: small, large, keras"):
        get_preset("huge")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(n_bits=0), "n_bits"),
        (dict(n_bits=True), "n_bits"),
        (dict(n_states=0), "n_states"),
        (dict(activation="relu"), "activation"),
        (dict(bias=1), "bias"),
        (dict(learn_initial_state="yes"), "learn_initial_state"),
        (dict(recurrent_init="uniform"), "recurrent_init"),
        (dict(n_bits=8, max_operand=129), "max_operand"),
        (dict(max_operand=0), "max_operand"),
    ],
)
def test_adder_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        AdderConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(n_samples=0), "n_samples"),
        (dict(batch_size=0), "batch_size"),
        (dict(n_samples=10, batch_size=11), "batch_size"),
        (dict(epochs=0), "epochs"),
        (dict(optimizer="adagrad"), "optimizer"),
        (dict(optimizer="sgd", lr=0.1, decay=0.5), "decay"),
        (dict(optimizer="sgd", lr=0.1, eps=1e-6), "eps"),
        (dict(lr=-0.1), "lr"),
        (dict(lr=float("nan")), "lr"),
        (dict(decay=1.0), "decay"),
        (dict(momentum=-0.1), "momentum"),
        (dict(eps=0.0), "eps"),
    ],
)
def test_train_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kwargs)


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_train_config_builds_any_registered_optimizer(name):
    # The optimizer's name comes from optim's registry, and only the hyperparameters that
    # are set reach it (the rest keep the optimizer's own defaults).
    if TrainConfig(optimizer=name, lr=None).takes("lr"):
        optimizer = TrainConfig(optimizer=name, lr=0.01).create_optimizer([Param(np.zeros(2))])
        assert optimizer.lr == 0.01
    else:
        optimizer = TrainConfig(optimizer=name, lr=None).create_optimizer([Param(np.zeros(2))])
        with pytest.raises(ValueError, match=f"TrainConfig: {name} takes no lr"):
            TrainConfig(optimizer=name, lr=0.01)
    assert isinstance(optimizer, optim.OPTIMIZERS[name])


def test_small_preset_optimizer_has_the_tutorials_hyperparameters():
    _, settings = get_preset("small")
    hyper = settings.create_optimizer([Param(np.zeros(2))]).hyperparameters
    assert (hyper["lr"], hyper["decay"], hyper["momentum"], hyper["eps"]) == (
        0.05, 0.5, 0.8, 1e-6)


def test_reference_adder_parameters_are_named_as_in_the_write_up():
    model = ReferenceAdder(PRESETS["small"][0], np.random.default_rng(0))
    assert [name for name, _ in model.named_parameters()] == [
        "W_in", "b_in", "W_rec", "b_rec", "S_0", "W_out", "b_out"]
    assert model.W_rec is dict(model.named_parameters())["W_rec"]
    with pytest.raises(AttributeError, match="W_gain"):
        _ = model.W_gain


def test_param_interface():
    param = Param(np.zeros(3))
    assert param.grad is None and param.data.shape == (3,)


def test_reference_adder_load_parameters_changes_nothing_when_a_value_cannot_be_cast():
    """Every value is cast before any is set: a last entry that is no number left the
    earlier parameters overwritten (the docstring says nothing is changed)."""
    model = ReferenceAdder(AdderConfig(), np.random.default_rng(0))
    before = model.state_dict()
    bad = {name: value + 1 for name, value in before.items()}
    bad[list(bad)[-1]] = np.array(["x"] * before[list(bad)[-1]].size).reshape(
        before[list(bad)[-1]].shape)
    with pytest.raises(ValueError):
        model.load_parameters(bad)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_gradient_differences_before_any_backward_names_the_parameter():
    from minigrad.models.adder import Adder
    from minigrad.models.comparison import gradient_differences, reference_adder

    engine = Adder(AdderConfig(), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"gradient_differences: the engine's parameter "
                                         r"'\w+' has no gradient: run a backward pass"):
        gradient_differences(engine, reference_adder(engine))
