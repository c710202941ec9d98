"""The benchmarks: the hand-written baseline computes what the engine computes, and the
benchmark command runs and prints its report.

The hand-written steps (`benchmarks.handwritten`) are checked against the engine's models
and the tutorial-style references of `minigrad.models.reference` on drawn sizes, parameters and
data, for every adder architecture option (activation, biases, learned initial state:
the benchmark cases use tanh with both, the Keras preset sigmoid with neither):

- Adder, float64: all three evaluate the same expressions in another order, so they differ
  by rounding alone: a gradient element is a sum of at most N L n products of O(1)
  factors each right to a few ulps, below 1e-14 here. ``rtol = 1e-10`` plus
  ``atol = 1e-13`` (for elements that cancel to about zero) leave a margin of 100 or more;
  a wrong or missing term is of the size of the gradient itself.
- Counter (the loop BPTT baseline and the closed form): its gradients reach 1e7 and its
  residual s_T - t can cancel, so the bound is the classic one for sums of products:
  |error| <= c eps * (the same gradient computed on absolute values), which is what the
  reference computes on |X|, |w_x|, |w_rec| and targets -|t| (every term then adds). c = 8
  (2T + n + 8) covers the T-fold products, the sums over T and n, and the few operations
  around them; a few subnormal steps are added for results that underflow (w_rec near 0),
  where rounding is absolute.
- GRU and LSTM (`benchmarks.cells` against `nn.GRUCell` / `nn.LSTMCell` under `mg.scan`),
  float64: as the adder, the same expressions in another order on O(1) factors (gates in
  (0, 1), states in (-1, 1), weights below 1, bits), so ``rtol = 1e-10`` plus
  ``atol = 1e-13``.
- The adder as a user writes it (`benchmarks.user_models.UnrolledAdder`) against the
  models' adder: BCE on probabilities, log(p), against BCE on logits, softplus, differ by
  a few ulps of the loss where the logits are O(1): the same bounds.
- The plain NumPy updates (`benchmarks.updates`) against `optim`'s optimizers: the same
  arithmetic in the same order, so bit for bit, whether the parameters and gradients are
  laid end to end as the hand-written models lay them or not.

No timing is asserted anywhere: the numbers of a quick run mean nothing.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad
from benchmarks import allocator
from benchmarks.cells import HandwrittenGRU, HandwrittenLSTM
from benchmarks.configs import FULL, QUICK
from benchmarks.handwritten import (
    ClosedFormCounter,
    HandwrittenAdder,
    HandwrittenCounter,
    laid_end_to_end,
)
from benchmarks.lean import LeanAdder
from benchmarks.memory import step_peak
from benchmarks.steps import (
    adder_setup,
    cell_setup,
    counter_setup,
    flat_step,
    plain_step,
    training_step,
)
from benchmarks.updates import (
    FlatBuffers,
    plain_rmsprop_nesterov,
    plain_rprop,
    plain_sgd,
    tiled,
)
from benchmarks.user_models import ScanGRU, ScanLSTM, UnrolledAdder
from minigrad import optim
from minigrad.models.adder import Adder
from minigrad.models.comparison import ENGINE_NAMES
from minigrad.models.counter import Counter
from minigrad.models.presets import ACTIVATIONS, AdderConfig, get_preset
from minigrad.models.reference import Param, ReferenceAdder, ReferenceCounter
from minigrad.models.training import engine_objective

ROOT = Path(__file__).resolve().parent.parent
RTOL, ATOL = 1e-10, 1e-13
EPS = np.finfo(np.float64).eps
# Below the normal range rounding is absolute: each operation may be off by half a
# subnormal step, whatever the size of its operands.
UNDERFLOW = 64 * np.finfo(np.float64).smallest_subnormal

seeds = st.integers(min_value=0, max_value=2**32 - 1)
# (activation, bias, learned initial state): all combinations.
ARCHITECTURES = list(itertools.product(ACTIVATIONS, (True, False), (True, False)))


def architecture_of(config: AdderConfig) -> tuple[str, bool, bool]:
    return config.activation, config.bias, config.learn_initial_state


def test_every_benchmark_architecture_is_drawn():
    presets = {case.preset for plan in (FULL, QUICK) for case in plan.steps
               if not case.is_counter}
    for preset in presets:
        assert architecture_of(get_preset(preset)[0]) in ARCHITECTURES


# --- the hand-written adder -------------------------------------------------------------


def drawn_adder(architecture, states: int, seed: int, dtype=np.float64):
    """A config of `architecture`, parameters drawn away from zero (so that a bias or an
    initial state left out of a formula shows), and an rng for the data."""
    activation, bias, learned = architecture
    config = AdderConfig(n_bits=4, n_states=states, activation=activation, bias=bias,
                         learn_initial_state=learned)
    rng = np.random.default_rng(seed)
    params = {name: rng.normal(0.0, 0.7, shape)
              for name, shape in config.parameter_shapes().items()}
    return config, params, rng


def bits(rng, *shape):
    return rng.integers(0, 2, size=shape).astype(np.float64)


def engine_loss_and_gradients(config, params, X, T):
    model = Adder(config, rng=np.random.default_rng(0))
    model.load_state_dict(params)
    loss = model.loss(X, T)
    loss.backward()
    # A parameter the graph never used (W_rec at L = 1 from a fixed S_0 = 0) keeps grad
    # None in the engine; its gradient is zero.
    return loss.item(), {name: np.zeros_like(p.data) if p.grad is None else p.grad
                         for name, p in model.named_parameters()}


def reference_loss_and_gradients(config, params, X, T):
    model = ReferenceAdder(config)
    model.load_parameters({name: params[ENGINE_NAMES[name]]
                           for name, _ in model.named_parameters()})
    loss = model.loss_and_backward(X, T)
    return loss, {ENGINE_NAMES[name]: p.grad for name, p in model.named_parameters()}


def handwritten_loss_and_gradients(model, X, T):
    model.zero_grad()
    loss = model.loss_and_backward(X, T)
    return loss, {name: p.grad.copy() for name, p in model.named_parameters()}


def assert_same(actual, expected, what):
    loss, grads = actual
    expected_loss, expected_grads = expected
    np.testing.assert_allclose(loss, expected_loss, rtol=RTOL, atol=0, err_msg=what)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        assert grad.shape == expected_grads[name].shape, (what, name)
        np.testing.assert_allclose(grad, expected_grads[name], rtol=RTOL, atol=ATOL,
                                   err_msg=f"{what}: {name}")


@given(architecture=st.sampled_from(ARCHITECTURES), states=st.integers(1, 6), seed=seeds,
       sizes=st.lists(st.tuples(st.integers(1, 9), st.integers(1, 8)), min_size=1,
                      max_size=3))
def test_handwritten_adder_gives_the_engines_and_the_references_loss_and_gradients(
        architecture, states, seed, sizes):
    # One model through every drawn (batch, length): its buffers are reallocated when the
    # sizes change and reused when they do not.
    config, params, rng = drawn_adder(architecture, states, seed)
    model = HandwrittenAdder(config, params)
    for batch, length in sizes:
        X, T = bits(rng, batch, length, 2), bits(rng, batch, length, 1)
        handwritten = handwritten_loss_and_gradients(model, X, T)
        assert_same(handwritten, engine_loss_and_gradients(config, params, X, T), "engine")
        assert_same(handwritten, reference_loss_and_gradients(config, params, X, T),
                    "reference")


@pytest.mark.parametrize("make", [
    lambda config, params: HandwrittenAdder(config, params, dtype=np.float32),
    lambda config, params: LeanAdder(config, params, dtype=np.float32, steps_per_block=4),
], ids=["hand-written", "lean"])
@given(architecture=st.sampled_from(ARCHITECTURES), states=st.integers(1, 5), seed=seeds,
       batch=st.integers(1, 8), length=st.integers(1, 20))
def test_handwritten_adders_in_float32_compute_in_float32(make, architecture, states, seed,
                                                          batch, length):
    config, params, rng = drawn_adder(architecture, states, seed)
    X, T = bits(rng, batch, length, 2), bits(rng, batch, length, 1)
    model = make(config, params)
    loss, grads = handwritten_loss_and_gradients(model, X.astype(np.float32),
                                                 T.astype(np.float32))
    expected_loss, expected = engine_loss_and_gradients(config, params, X, T)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    for name, grad in grads.items():
        assert grad.dtype == np.float32, name
        np.testing.assert_allclose(grad, expected[name], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("case", [c for c in FULL.steps if not c.is_counter],
                         ids=lambda c: c.key)
def test_every_benchmark_case_starts_with_equal_loss_and_gradients(case):
    # The case's preset architecture at sizes small enough for a unit test.
    setup = adder_setup(min(case.batch, 12), min(case.timesteps, 9), min(case.states, 6),
                        preset=case.preset)
    handwritten = handwritten_loss_and_gradients(setup.handwritten(), setup.X, setup.T)
    engine = setup.engine()
    loss = engine.loss(setup.X, setup.T)
    loss.backward()
    assert_same(handwritten, (loss.item(), {n: p.grad for n, p in engine.named_parameters()}),
                case.key)
    reference = setup.reference()
    assert_same(handwritten, (reference.loss_and_backward(setup.X, setup.T),
                              {ENGINE_NAMES[n]: p.grad for n, p in reference.named_parameters()}),
                case.key)


def test_handwritten_training_steps_follow_the_engines_trajectory():
    setup = adder_setup(30, 9, 5, preset="large")
    engine = setup.engine()
    engine_step = training_step(setup.optimizer(list(engine.parameters())),
                                engine_objective(engine), setup.X, setup.T)
    handwritten = setup.handwritten()
    handwritten_step = setup.handwritten_step(handwritten)
    for _ in range(4):
        np.testing.assert_allclose(handwritten_step(), engine_step(), rtol=RTOL)
    engine_params = dict(engine.named_parameters())
    for name, param in handwritten.named_parameters():
        np.testing.assert_allclose(param.data, engine_params[name].data, rtol=RTOL, atol=ATOL,
                                   err_msg=name)


def test_gradients_accumulate_across_calls_without_zero_grad():
    config, params, rng = drawn_adder(("tanh", True, True), 4, seed=5)
    X, T = bits(rng, 6, 5, 2), bits(rng, 6, 5, 1)
    model = HandwrittenAdder(config, params)
    _, once = handwritten_loss_and_gradients(model, X, T)
    model.loss_and_backward(X, T)  # no zero_grad: adds a second, equal gradient
    for name, param in model.named_parameters():
        np.testing.assert_allclose(param.grad, 2 * once[name], rtol=1e-15, err_msg=name)
    X = bits(rng, 7, 6)
    for counter in (HandwrittenCounter(0.5, 1.5), ClosedFormCounter(0.5, 1.5)):
        counter.loss_and_backward(X, X.sum(axis=1))
        first = [p.grad.copy() for p in counter.parameters()]
        counter.loss_and_backward(X, X.sum(axis=1))
        for param, grad in zip(counter.parameters(), first):
            np.testing.assert_allclose(param.grad, 2 * grad, rtol=1e-15)


def test_handwritten_adder_reads_a_parameter_replaced_by_assignment():
    # The protocol lets an optimizer assign `.data`; the adder computes from its flat buffer,
    # so it copies a replaced array in (and keeps its parameters end to end).
    config, params, rng = drawn_adder(("tanh", True, True), 3, seed=7)
    X, T = bits(rng, 5, 4, 2), bits(rng, 5, 4, 1)
    model = HandwrittenAdder(config, params)
    model.loss_and_backward(X, T)
    moved = {**params, "recurrent.weight": params["recurrent.weight"] + 0.5,
             "output.bias": params["output.bias"] - 1.0}
    for name in ("recurrent.weight", "output.bias"):
        model._params[name].data = moved[name].copy()
    assert_same(handwritten_loss_and_gradients(model, X, T),
                engine_loss_and_gradients(config, moved, X, T), "replaced")
    assert tiled([p.data for p in model.parameters()]) is not None


@pytest.mark.parametrize("batch, states", [(1, 6), (40, 2)], ids=["own buffer", "shared"])
def test_handwritten_adder_gradient_products_in_either_buffer(batch, states):
    # The batched products of the weight gradients reuse act'(S)'s buffer when they fit in
    # it, else get their own: both give the engine's gradients.
    config, params, rng = drawn_adder(("sigmoid", True, True), states, seed=3)
    X, T = bits(rng, batch, 4, 2), bits(rng, batch, 4, 1)
    model = HandwrittenAdder(config, params)
    result = handwritten_loss_and_gradients(model, X, T)
    shared = np.shares_memory(model._buffers.products, model._buffers.derivative)
    assert shared == (batch == 40)
    assert_same(result, engine_loss_and_gradients(config, params, X, T), "products")


@pytest.mark.parametrize("model_class", [HandwrittenAdder, LeanAdder])
@pytest.mark.parametrize("X_shape, T_shape, message", [
    ((4, 5, 3), (4, 5, 1), r"X must have shape \(N, L, 2\), got \(4, 5, 3\)"),
    ((4, 5), (4, 5, 1), r"X must have shape \(N, L, 2\), got \(4, 5\)"),
    ((4, 0, 2), (4, 0, 1), r"X must have shape \(N, L, 2\), got \(4, 0, 2\)"),
    ((4, 5, 2), (4, 5), r"T must have shape \(4, 5, 1\), got \(4, 5\)"),
    ((4, 5, 2), (5, 4, 1), r"T must have shape \(4, 5, 1\), got \(5, 4, 1\)"),
])
def test_handwritten_adders_refuse_bad_shapes_and_lose_nothing(model_class, X_shape, T_shape,
                                                               message):
    config, params, rng = drawn_adder(("tanh", True, True), 3, seed=1)
    X, T = bits(rng, 4, 5, 2), bits(rng, 4, 5, 1)
    model = model_class(config, params)
    model.loss_and_backward(X, T)
    before = {name: (p.data.copy(), p.grad.copy()) for name, p in model.named_parameters()}
    with pytest.raises(ValueError, match=f"^{model_class.__name__}: {message}"):
        model.loss_and_backward(np.zeros(X_shape), np.zeros(T_shape))
    for name, param in model.named_parameters():
        np.testing.assert_array_equal(param.data, before[name][0])
        np.testing.assert_array_equal(param.grad, before[name][1])
    model.zero_grad()  # and the model still computes right
    assert_same(handwritten_loss_and_gradients(model, X, T),
                engine_loss_and_gradients(config, params, X, T), "after the error")


@pytest.mark.parametrize("model_class", [HandwrittenAdder, LeanAdder])
def test_handwritten_adders_refuse_bad_parameters_and_dtype(model_class):
    config = AdderConfig(n_states=3)
    params = {name: np.zeros(shape) for name, shape in config.parameter_shapes().items()}
    name = model_class.__name__
    with pytest.raises(ValueError, match=rf"{name}: parameters must be named"):
        model_class(config, {k: v for k, v in params.items() if k != "output.bias"})
    with pytest.raises(ValueError, match=rf"{name}: parameter recurrent.weight must have "
                                         r"shape \(3, 3\), got \(3, 2\)"):
        model_class(config, {**params, "recurrent.weight": np.zeros((3, 2))})
    with pytest.raises(ValueError, match=rf"{name}: dtype must be float64 or float32, got "
                                         r"int64"):
        model_class(config, params, dtype=np.int64)


# --- the hand-written counter -----------------------------------------------------------


def counter_gradients(model, X, t):
    model.zero_grad()
    loss = model.loss_and_backward(X, t)
    return loss, np.array([float(p.grad) for p in model.parameters()])


COUNTERS = [HandwrittenCounter, ClosedFormCounter]


@pytest.mark.parametrize("counter_class", COUNTERS, ids=lambda c: c.__name__)
@given(n=st.integers(1, 25), length=st.integers(1, 12), seed=seeds,
       w_x=st.floats(-2.0, 2.0), w_rec=st.floats(-2.0, 2.0))
def test_handwritten_counters_give_the_references_and_the_engines_loss_and_gradients(
        counter_class, n, length, seed, w_x, w_rec):
    rng = np.random.default_rng(seed)
    X = bits(rng, n, length)
    t = rng.integers(0, length + 1, size=n).astype(np.float64)
    loss, grads = counter_gradients(counter_class(w_x, w_rec), X, t)
    loss_bound, bound = counter_gradients(ReferenceCounter(abs(w_x), abs(w_rec)), X, -t)
    tolerance = 8 * (2 * length + n + 8) * EPS
    expected_loss, expected = counter_gradients(ReferenceCounter(w_x, w_rec), X, t)
    engine = Counter(w_x, w_rec)
    engine_loss = engine.loss(X, t)
    engine_loss.backward()
    # With one position w_rec multiplies nothing: its .grad stays None, its gradient is 0.
    engine_grads = np.array([0.0 if p.grad is None else float(p.grad)
                             for p in engine.parameters()])
    # Below the normal range (a subnormal w_x) rounding is absolute, and the unrolled
    # reference's error in an early state is multiplied by w_rec at every later step (P, the
    # sum of |w_rec|^j), then by the counts u and X q' (each at most L P) in the gradients:
    # found by Hypothesis, w_x = 5e-324, w_rec = 1.5, L = 6 put the reference 66 subnormal
    # steps from the closed forms' 513.
    growth = sum(max(1.0, abs(w_rec)) ** j for j in range(length))
    underflow = UNDERFLOW * (1 + growth) * (1 + length * growth)
    for other_loss, other in ((expected_loss, expected), (engine_loss.item(), engine_grads)):
        assert abs(loss - other_loss) <= tolerance * loss_bound + underflow
        assert np.all(np.abs(grads - other) <= tolerance * bound + underflow), (grads, other)


@pytest.mark.parametrize("counter_class", COUNTERS, ids=lambda c: c.__name__)
def test_handwritten_counters_refuse_bad_shapes(counter_class):
    model, name = counter_class(1.0, 1.0), counter_class.__name__
    with pytest.raises(ValueError, match=name + r": X must have shape \(n, T\), "
                                         r"got \(2, 3, 4\)"):
        model.loss_and_backward(np.zeros((2, 3, 4)), np.zeros(2))
    with pytest.raises(ValueError, match=name + r": t must hold 2 targets, got "
                                         r"shape \(3,\)"):
        model.loss_and_backward(np.zeros((2, 3)), np.zeros(3))


def test_handwritten_counter_steps_follow_the_engines_trajectory():
    # The benchmark's hand-written and closed-form steps (plain NumPy RProp) and the
    # engine's (optim.RProp): RProp moves by the gradients' signs, so the parameters agree
    # to rounding after 30 steps.
    setup = counter_setup(20, 10)
    engine = Counter(*setup.start)
    engine_step = training_step(optim.RProp(list(engine.parameters())),
                                engine_objective(engine), setup.X, setup.t)
    models = [HandwrittenCounter(*setup.start), ClosedFormCounter(*setup.start),
              ReferenceCounter(*setup.start)]
    steps = [plain_step(plain_rprop(m.parameters()), m.loss_and_backward, setup.X, setup.t, m)
             for m in models]
    for _ in range(30):
        expected = engine_step()
        for step in steps:
            np.testing.assert_allclose(step(), expected, rtol=1e-12)
    for model in models:
        for a, b in zip(model.parameters(), engine.parameters()):
            np.testing.assert_allclose(a.data, b.data, rtol=1e-12)


# --- the plain NumPy updates --------------------------------------------------------------


PLAIN_UPDATES = {
    "rprop": (plain_rprop, optim.RProp, {}),
    "sgd": (plain_sgd, optim.SGD, {"lr": 0.3}),
    "rmsprop_nesterov": (plain_rmsprop_nesterov, optim.RMSPropNesterov,
                         {"lr": 0.05, "decay": 0.5, "momentum": 0.8, "eps": 1e-6}),
}


def laid_like_a_model(start: list[np.ndarray]) -> tuple[list[Param], list[np.ndarray]]:
    """Parameters holding copies of `start` and gradient arrays, each of a dtype laid end to
    end in one flat buffer, as the hand-written models lay theirs."""
    params: list[Param] = [Param(x) for x in start]
    grads: list[np.ndarray] = list(start)
    for dtype in {x.dtype for x in start}:
        run = [k for k, x in enumerate(start) if x.dtype == dtype]
        laid, views = laid_end_to_end({str(k): start[k] for k in run}, dtype)
        for k, param, view in zip(run, laid.values(), views.values(), strict=True):
            params[k], grads[k] = param, view
    return params, grads


@pytest.mark.parametrize("rule", PLAIN_UPDATES)
@given(seed=seeds,
       parameters=st.lists(st.tuples(st.lists(st.integers(1, 4), max_size=2).map(tuple),
                                     st.sampled_from([np.float64, np.float32])),
                           min_size=1, max_size=4),
       laid_out=st.booleans())
def test_plain_updates_follow_the_optimizers_trajectory_bit_for_bit(rule, seed, parameters,
                                                                    laid_out):
    # laid_out: parameters and gradients each end to end per dtype, the gradients written
    # in place, as by a hand-written model (the update reads its buffers as they are);
    # else separate arrays and a new gradient array each step (copied into the update's).
    plain_of, optimizer_class, hyper = PLAIN_UPDATES[rule]
    rng = np.random.default_rng(seed)
    start = [rng.normal(size=shape).astype(dtype) for shape, dtype in parameters]
    if laid_out:
        plain, grads = laid_like_a_model(start)
    else:
        plain, grads = [Param(x.copy()) for x in start], []
    arrays = [p.data for p in plain]
    ours = [Param(x.copy()) for x in start]
    steps = [plain_of(plain, **hyper), optimizer_class(ours, **hyper).step]
    for params, step, into in ((plain, steps[0], grads), (ours, steps[1], [])):
        for k in range(5):
            def closure(params=params, into=into, k=k) -> float:
                for j, p in enumerate(params):  # a gradient whose signs change each step
                    g = np.sin(3 * p.data + k)
                    if into:
                        np.copyto(into[j], g)
                        g = into[j]
                    p.grad = g
                return 0.0

            step(closure)
    for a, b in zip(plain, ours, strict=True):
        assert a.data.dtype == b.data.dtype
        np.testing.assert_array_equal(a.data, b.data)
    if laid_out:  # updated in place, where the model reads them
        assert all(a.data is array for a, array in zip(plain, arrays, strict=True))


def test_plain_updates_lay_in_a_replaced_array_as_optim_reads_it():
    # A model's `load_parameters` replaces `.data` between steps: the next step starts from
    # the new values, as `optim`'s does (it reads `.data` anew).
    for plain_of, optimizer_class, hyper in PLAIN_UPDATES.values():
        pairs = [[Param(np.linspace(-1, 1, 3)), Param(np.ones((2, 1)))] for _ in range(2)]
        steps = [plain_of(pairs[0], **hyper), optimizer_class(pairs[1], **hyper).step]
        for params, step in zip(pairs, steps, strict=True):
            for k in range(3):
                def closure(params=params, k=k) -> float:
                    for p in params:
                        p.grad = np.cos(2 * p.data + k)
                    return 0.0

                step(closure)
                params[1].data = np.full((2, 1), 0.25 * k)
        for a, b in zip(*pairs, strict=True):
            np.testing.assert_array_equal(a.data, b.data)


def test_plain_update_refuses_a_gradient_of_another_shape():
    params = [Param(np.zeros(3)), Param(np.zeros((2, 2)))]
    step = plain_sgd(params, lr=0.1)

    def closure() -> float:
        params[0].grad, params[1].grad = np.ones(3), np.ones(4)
        return 0.0

    with pytest.raises(ValueError, match=re.escape("plain update: parameter 1 of shape (2, 2) "
                                                   "has gradient ndarray of shape (4,)")):
        step(closure)


HANDWRITTEN_MODELS = {
    "adder": lambda: adder_setup(5, 4, 3).handwritten(),
    "adder float32": lambda: adder_setup(5, 4, 3, np.float32).handwritten(),
    "lean adder": lambda: LeanAdder(adder_setup(5, 4, 3).config, adder_setup(5, 4, 3).start,
                                    steps_per_block=2),
    "counter": lambda: HandwrittenCounter(-1.5, 2.0),
    "closed form": lambda: ClosedFormCounter(-1.5, 2.0),
    "gru": lambda: cell_setup("gru", 5, 4, 3).handwritten(),
    "lstm": lambda: cell_setup("lstm", 5, 4, 3).handwritten(),
}


@pytest.mark.parametrize("make", HANDWRITTEN_MODELS.values(), ids=HANDWRITTEN_MODELS)
def test_handwritten_models_keep_parameters_and_gradients_end_to_end(make):
    # So that the plain update runs once over two flat buffers, with no copy in or out.
    model = make()
    data = [p.data for p in model.parameters()]
    assert tiled(data) is not None
    X, T = ((np.ones((3, 4)), np.full(3, 2.0)) if isinstance(model, (HandwrittenCounter,
                                                                        ClosedFormCounter))
            else (np.ones((3, 4, 2), model.dtype), np.ones((3, 4, 1), model.dtype)))
    step = plain_step(plain_sgd(model.parameters(), lr=0.1), model.loss_and_backward, X, T,
                      model)
    for _ in range(2):
        step()
        grads = [p.grad for p in model.parameters()]
        assert tiled(grads) is not None
        assert not any(np.shares_memory(g, d) for g in grads for d in data)
    assert all(p.data is d for p, d in zip(model.parameters(), data, strict=True))


@pytest.mark.parametrize("make", HANDWRITTEN_MODELS.values(), ids=HANDWRITTEN_MODELS)
@pytest.mark.parametrize("make_update", [
    lambda params: plain_sgd(params, lr=1e-3),
    plain_rprop,
    lambda params: plain_rmsprop_nesterov(params, lr=0.01, decay=0.9, momentum=0.7, eps=1e-8),
], ids=["sgd", "rprop", "rmsprop-nesterov"])
def test_flat_step_follows_the_protocol_step_bit_for_bit(make, make_update):
    # The benchmark times the hand-written step without the `.grad` protocol (`flat_step`):
    # it must be the same computation, step for step.
    flat, protocol = make(), make()
    rng = np.random.default_rng(3)
    if isinstance(flat, (HandwrittenCounter, ClosedFormCounter)):
        X = rng.integers(0, 2, (6, 5)).astype(float)
        T = X.sum(axis=1)
    else:
        X = rng.integers(0, 2, (6, 5, 2)).astype(flat.dtype)
        T = rng.integers(0, 2, (6, 5, 1)).astype(flat.dtype)
    steps = (flat_step(make_update, flat, X, T),
             plain_step(make_update(protocol.parameters()), protocol.loss_and_backward, X, T,
                        protocol))
    start = flat.flat_parameters.copy()
    for _ in range(4):
        losses = [step() for step in steps]
        assert np.isfinite(losses[0]) and losses[0] == losses[1]
        np.testing.assert_array_equal(flat.flat_parameters, protocol.flat_parameters)
    assert np.all(flat.flat_parameters != start)
    assert all(p.grad is None for p in flat.parameters())  # the protocol was not used


def test_flat_buffers_refuse_buffers_that_do_not_match():
    with pytest.raises(ValueError, match=r"FlatBuffers: parameters float64\(3,\) and "
                                         r"gradient float64\(4,\)"):
        FlatBuffers(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="must be 1-D"):
        FlatBuffers(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="float32"):
        FlatBuffers(np.zeros(3), np.zeros(3, np.float32))


# --- the GRU and the LSTM ---------------------------------------------------------------------


CELL_MODELS = [(ScanGRU, HandwrittenGRU), (ScanLSTM, HandwrittenLSTM)]


@pytest.mark.parametrize("engine_class, handwritten_class", CELL_MODELS,
                         ids=["gru", "lstm"])
@given(seed=seeds, hidden=st.integers(1, 5),
       sizes=st.lists(st.tuples(st.integers(1, 7), st.integers(1, 6)), min_size=1,
                      max_size=3))
def test_handwritten_cells_give_the_engines_loss_and_gradients(
        engine_class, handwritten_class, seed, hidden, sizes):
    # One hand-written model through every drawn (batch, length): buffers reallocated when
    # the sizes change, reused when they do not. Parameters drawn wider than the engine's
    # init (normal, sd 0.7) so that every gate works away from its linear range.
    rng = np.random.default_rng(seed)
    engine = engine_class(2, hidden, rng=rng)
    engine.load_state_dict({name: rng.normal(0.0, 0.7, value.shape)
                            for name, value in engine.state_dict().items()})
    model = handwritten_class(2, hidden, engine.state_dict())
    for batch, length in sizes:
        X, T = bits(rng, batch, length, 2), bits(rng, batch, length, 1)
        engine.zero_grad()
        loss = engine.loss(X, T)
        loss.backward()
        expected = (loss.item(), {name: p.grad for name, p in engine.named_parameters()})
        assert_same(handwritten_loss_and_gradients(model, X, T), expected,
                    handwritten_class.__name__)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_cell_steps_follow_the_engines_trajectory(kind):
    # The benchmark's steps: the hand-written BPTT with plain SGD and the engine eager and
    # compiled with optim.SGD give the same losses step after step.
    setup = cell_setup(kind, 12, 6, 5, lr=0.5)
    steps = [setup.handwritten_step(), setup.engine_step(),
             setup.engine_step(lambda model: engine_objective(model, compiled=True))]
    for _ in range(5):
        losses = [step() for step in steps]
        np.testing.assert_allclose(losses[1:], losses[0], rtol=RTOL)


def test_handwritten_cells_refuse_bad_shapes_and_parameters():
    start = ScanGRU(2, 3, rng=np.random.default_rng(0)).state_dict()
    model = HandwrittenGRU(2, 3, start)
    with pytest.raises(ValueError, match=r"HandwrittenGRU: X must have shape \(N, L, 2\), "
                                         r"got \(4, 5, 3\)"):
        model.loss_and_backward(np.zeros((4, 5, 3)), np.zeros((4, 5, 1)))
    with pytest.raises(ValueError, match=r"HandwrittenGRU: T must have shape \(4, 5, 1\), "
                                         r"got \(4, 5\)"):
        model.loss_and_backward(np.zeros((4, 5, 2)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"HandwrittenLSTM: parameter cell.weight_hh must "
                                         r"have shape \(3, 12\), got \(3, 9\)"):
        HandwrittenLSTM(2, 3, {**start, "cell.weight_ih": np.zeros((2, 12)),
                               "cell.bias_ih": np.zeros(12), "cell.bias_hh": np.zeros(12)})
    with pytest.raises(ValueError, match=r"HandwrittenGRU: parameters must be named"):
        HandwrittenGRU(2, 3, {"cell.weight_ih": np.zeros((2, 9))})


# --- the adder as a user writes it ------------------------------------------------------


@given(architecture=st.sampled_from(ARCHITECTURES), states=st.integers(1, 5), seed=seeds,
       batch=st.integers(1, 8), length=st.integers(1, 7))
def test_the_users_adder_gives_the_models_loss_and_gradients(architecture, states, seed,
                                                            batch, length):
    config, params, rng = drawn_adder(architecture, states, seed)
    X, T = bits(rng, batch, length, 2), bits(rng, batch, length, 1)
    user = UnrolledAdder(config, rng=np.random.default_rng(0))
    user.load_state_dict(params)
    loss = user.loss(X, T)
    loss.backward()
    assert_same((loss.item(), {name: np.zeros_like(p.data) if p.grad is None else p.grad
                               for name, p in user.named_parameters()}),
                engine_loss_and_gradients(config, params, X, T), "user's adder")


def test_the_users_adder_steps_follow_the_hand_written_trajectory():
    setup = adder_setup(12, 6, 4, preset="small")
    steps = [setup.handwritten_step(), setup.user_step(),
             setup.user_step(lambda model: engine_objective(model, compiled=True))]
    for _ in range(4):
        losses = [step() for step in steps]
        np.testing.assert_allclose(losses[1:], losses[0], rtol=RTOL)


# --- memory of the hand-written step ----------------------------------------------------


def test_handwritten_peak_includes_the_buffers_it_keeps():
    setup = adder_setup(20, 30, 8)
    model = setup.handwritten()
    step = setup.handwritten_step(model)
    warm = step_peak(step, repeats=1)
    cold = step_peak(step, repeats=1, before_each=model.release_buffers)
    assert model.workspace_bytes > 0
    assert cold >= model.workspace_bytes > warm


# --- the command ------------------------------------------------------------------------


def run_benchmarks(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=300, check=False)


def rows_of(report: str, first_cell: str) -> list[str]:
    return [line for line in report.splitlines() if line.startswith(f"| {first_cell} |")]


def implementations(report: str, case: str) -> list[str]:
    return [row.split(" | ")[3] for row in rows_of(report, case)]


def test_quick_run_prints_every_table():
    result = run_benchmarks("--quick")
    assert result.returncode == 0, result.stderr
    report = result.stdout
    for case in ("A", "B", "C", "D"):
        # C is also the memory case: its memory rows come after the step tables.
        step_rows = implementations(report.split("## Peak memory")[0], case)
        for name in ("hand-written", "hand-written, lean", "tutorial-style", "minigrad eager",
                     "minigrad compiled"):
            assert step_rows.count(name) == 2, (case, name)  # float64 and float32
    assert implementations(report, "counter") == ["hand-written",
                                                  "closed form (algebra, not autodiff)",
                                                  "tutorial-style", "minigrad eager",
                                                  "minigrad compiled"]
    for case in ("gru", "lstm"):
        assert implementations(report, case) == ["hand-written", "minigrad eager",
                                                 "minigrad compiled"], case
    assert implementations(report, "user") == 2 * ["hand-written", "hand-written, lean",
                                                   "tutorial-style", "minigrad eager",
                                                   "minigrad compiled"]
    # The compiled rows say what tracing cost (one trace: the first call's);
    # the others leave that cell empty.
    for row in rows_of(report, "counter"):
        tracing = row.strip().strip("|").split("|")[-1].strip()
        if "minigrad compiled" in row:
            assert re.fullmatch(r"[0-9.]+ (µs|ms|s) \(1\)", tracing), row
        else:
            assert tracing == "", row
    for heading in ("## One training step", "## Peak memory of one step",
                    "## Scaling with the sequence length T", "## Scaling with the batch",
                    "## Scaling with the state size", "## Overhead per op", "## Targets",
                    "## Machine and method"):
        assert heading in report
    for op in minigrad.OPS:
        assert len(rows_of(report, op)) == 1, op
    for target in ("≤ 1.6 ", "≤ 1.2 ", "≤ 1.1 ", "≤ 1.05 ", "≤ 2 ", "≤ 1.5 ", "≤ 1.3 "):
        assert target in report
    assert "| ratio to the faster hand-written | ratio to tutorial-style |" in report
    assert "CPU" in report and "NumPy" in report
    if allocator.is_glibc():
        assert "glibc malloc: pinned: MALLOC_MMAP_THRESHOLD_=33554432" in report


@pytest.mark.skipif(not allocator.is_glibc(), reason="the malloc variables are glibc's")
def test_adaptive_malloc_runs_under_glibcs_defaults():
    result = run_benchmarks("--quick", "--only", "a", "--adaptive-malloc")
    assert result.returncode == 0, result.stderr
    assert "glibc malloc: glibc's adaptive defaults" in result.stdout


def test_only_and_output(tmp_path):
    output = tmp_path / "results" / "quick.md"
    result = run_benchmarks("--quick", "--only", "a,ops", "--repeats", "2",
                            "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert output.read_text(encoding="utf-8") == result.stdout
    assert rows_of(result.stdout, "A") and not rows_of(result.stdout, "B")
    assert "## Overhead per op" in result.stdout
    assert "## Peak memory" not in result.stdout
    assert list(output.parent.iterdir()) == [output]  # no temporary file left behind


def test_only_the_new_sections():
    result = run_benchmarks("--quick", "--only", "gru,LSTM,user")
    assert result.returncode == 0, result.stderr
    assert rows_of(result.stdout, "gru") and rows_of(result.stdout, "lstm")
    assert rows_of(result.stdout, "user") and not rows_of(result.stdout, "A")
    assert "minigrad compiled, gru (10 × 5 × 4) step: ratio ≤ 1.3" in result.stdout


def test_unknown_section_is_refused():
    result = run_benchmarks("--quick", "--only", "Z")
    assert result.returncode == 2
    assert "unknown section" in result.stderr


def test_profiling_helper_runs():
    for who in ([], ["--handwritten"]):
        result = subprocess.run([sys.executable, "-m", "benchmarks.profiling", "A", "--steps",
                                 "3", "--top", "5", *who], cwd=ROOT, text=True,
                                capture_output=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert "tottime" in result.stdout
        assert ("hand-written, 3 steps" if who else "minigrad, 3 steps") in result.stdout
    result = subprocess.run([sys.executable, "-m", "benchmarks.profiling", "A", "--phases",
                             "--steps", "3"], cwd=ROOT, text=True, capture_output=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    for name in ("minigrad", "tutorial-style", "hand-written"):
        assert f"| {name} |" in result.stdout


def test_setups_steps_share_no_state():
    # Each *_step() builds its own model: stepping one leaves the starting point intact.
    setup = adder_setup(5, 4, 3)
    start = setup.initial_parameters()
    setup.engine_step()()
    setup.handwritten_step()()
    for name, value in setup.start.items():
        np.testing.assert_array_equal(value, start[name])
