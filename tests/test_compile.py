"""`minigrad.compile`: a replayed program gives eager mode's loss and gradients bit for bit
(float64 and float32), over optimizer steps that change the parameters between calls;
new shapes trace again, the cache is bounded, what a trace cannot capture is refused, the
gradients handed out are the caller's, and each thread's grad mode picks its own program.

Nothing here measures time.
"""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad import optim
from minigrad.models.adder import Adder
from minigrad.models.counter import Counter
from minigrad.models.data import addition_data, counting_data
from minigrad.models.presets import AdderConfig
from minigrad.models.training import engine_objective, train
from minigrad.testing.strategies import op_cases


def grads_of(model) -> dict[str, np.ndarray]:
    return {name: p.grad for name, p in model.named_parameters()}


def values_of(model) -> dict[str, np.ndarray]:
    return {name: p.data.copy() for name, p in model.named_parameters()}


def assert_bitwise(actual: dict, expected: dict) -> None:
    assert list(actual) == list(expected)
    for name, value in actual.items():
        if expected[name] is None:  # a parameter the loss does not use (one bit, no S_0)
            assert value is None, name
            continue
        assert value.dtype == expected[name].dtype, name
        np.testing.assert_array_equal(value, expected[name], err_msg=name, strict=True)


# --- same numbers as eager, over a trajectory -----------------------------------------------

ADDER_SHAPES = st.tuples(st.integers(1, 40), st.integers(1, 9), st.integers(1, 6))


@settings(max_examples=10)
@given(shape=ADDER_SHAPES, seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from([np.float64, np.float32]), learn_initial_state=st.booleans())
def test_adder_trajectory_matches_eager_bitwise(shape, seed, dtype, learn_initial_state):
    batch, n_bits, n_states = shape
    config = AdderConfig(n_bits=n_bits, n_states=n_states,
                         learn_initial_state=learn_initial_state)
    eager = Adder(config, rng=np.random.default_rng(seed), dtype=dtype)
    compiled = Adder(config, rng=np.random.default_rng(seed), dtype=dtype)
    step = mg.compile(compiled.loss)
    X, T = addition_data(np.random.default_rng(seed + 1), 3 * batch, n_bits, config.max_operand)
    X, T = X.astype(dtype), T.astype(dtype)
    # RMSProp with Nesterov momentum evaluates the loss at a look-ahead point: the compiled
    # loss must see parameters changed in place between its calls.
    opt_eager = optim.RMSPropNesterov(eager.parameters(), lr=0.05)
    opt_compiled = optim.RMSPropNesterov(compiled.parameters(), lr=0.05)
    for i in range(6):  # call 1 traces, call 2 traces and compares, the rest replay
        batch_slice = slice((i % 3) * batch, (i % 3 + 1) * batch)

        def closure_eager(model=eager, s=batch_slice):
            opt_eager.zero_grad()
            loss = model.loss(X[s], T[s])
            loss.backward()
            return loss.item()

        def closure_compiled(s=batch_slice):
            opt_compiled.zero_grad()
            loss = step(X[s], T[s])
            loss.backward()
            return loss.item()

        assert opt_compiled.step(closure_compiled) == opt_eager.step(closure_eager)
        assert_bitwise(grads_of(compiled), grads_of(eager))
        assert_bitwise(values_of(compiled), values_of(eager))
    assert step.traces == 1


@settings(max_examples=8)
@given(batch=st.integers(1, 30), length=st.integers(1, 15), seed=st.integers(0, 2**31 - 1))
def test_counter_trajectory_matches_eager_bitwise(batch, length, seed):
    X, t = counting_data(np.random.default_rng(seed), batch, length)
    histories = []
    models = []
    for compiled in (False, True):
        model = Counter()
        history = train(engine_objective(model, compiled), optim.RProp(model.parameters()),
                        X, t, epochs=8, batch_size=batch, rng=np.random.default_rng(seed))
        histories.append(history.losses)
        models.append(model)
    assert histories[1] == histories[0]
    assert_bitwise(values_of(models[1]), values_of(models[0]))
    assert_bitwise(grads_of(models[1]), grads_of(models[0]))


def test_adder_training_with_minibatches_of_two_shapes_matches_eager():
    # 250 sums in batches of 100: the last batch of each epoch is a second signature.
    config = AdderConfig()
    X, T = addition_data(np.random.default_rng(3), 250, config.n_bits, config.max_operand)
    results = []
    for compiled in (False, True):
        model = Adder(config, rng=np.random.default_rng(4))
        history = train(engine_objective(model, compiled),
                        optim.RMSPropNesterov(model.parameters()), X, T, epochs=3,
                        batch_size=100, rng=np.random.default_rng(5))
        results.append((history.losses, values_of(model)))
    assert results[1][0] == results[0][0]
    assert_bitwise(results[1][1], results[0][1])


def _network(x, w, b, v):
    """Broadcasting, a recurrence over slices, stack, a reduction: a small RNN-like graph."""
    h = None
    outputs = []
    for k in range(x.shape[1]):
        pre = x[:, k] @ w + b if h is None else x[:, k] @ w + h @ v + b
        h = mg.tanh(pre)
        outputs.append(mg.sigmoid(h) * h)
    return (mg.stack(outputs, axis=1) ** 2).mean() + mg.relu(b).sum()


@settings(max_examples=20)
@given(rows=st.integers(1, 30), columns=st.integers(1, 30), out=st.integers(1, 30),
       seed=st.integers(0, 2**31 - 1))
def test_a_view_of_an_argument_has_eager_modes_layout(rows, columns, out, seed):
    """An op that returns a view of a NumPy argument gives eager mode a copy of it; the
    replay copies too, so that a product of it rounds as eager mode's does."""
    rng = np.random.default_rng(seed)
    w = mg.Tensor(rng.normal(size=(rows, out)), requires_grad=True)

    def fn(x):
        return (mg.transpose(x, (1, 0)) @ w).sum() + (x[::2].T @ w[::2]).sum()

    step = mg.compile(fn)
    for _ in range(4):
        x = rng.normal(size=(rows, columns))
        w.grad = None
        fn(x).backward()
        expected = w.grad
        w.grad = None
        assert step(x).item() == fn(x).item()
        step(x).backward()
        np.testing.assert_array_equal(w.grad, expected, strict=True)


@settings(max_examples=20)
@given(shape=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 4)),
       axes=st.permutations([0, 1, 2]), seed=st.integers(0, 2**31 - 1))
def test_a_numpy_transpose_of_an_argument_is_that_calls_transpose(shape, axes, seed):
    """`fn` may view an argument with NumPy (the adder's time-major X.transpose(1, 0, 2)),
    axes of length 1 included: a replay takes that view of each call's argument, and gives
    eager mode's numbers."""
    rng = np.random.default_rng(seed)
    w = mg.Tensor(rng.normal(size=shape[axes[-1]]), requires_grad=True)

    def fn(x):
        return (mg.tanh(x.transpose(axes) * w) ** 2).sum()

    step = mg.compile(fn)
    for _ in range(4):
        x = rng.normal(size=shape)
        w.grad = None
        fn(x).backward()
        expected = w.grad
        w.grad = None
        result = step(x)
        assert result.item() == fn(x).item()
        result.backward()
        np.testing.assert_array_equal(w.grad, expected, strict=True)


@pytest.mark.parametrize("name", sorted(mg.OPS))
@settings(max_examples=6)
@given(data=st.data())
def test_every_op_compiles_to_eager_modes_bits(name, data):
    """Each op of the table, its operands drawn from its Domain, each passed either as a
    tensor that requires grad or as a NumPy array: the compiled loss and gradients equal
    eager mode's bitwise, over calls with new values (the trace, then replays), through
    `backward()` on the returned loss and through `value_and_backward`."""
    case = data.draw(op_cases(name), label="case")
    as_array = data.draw(st.lists(st.booleans(), min_size=len(case.operands),
                                  max_size=len(case.operands)), label="as_array")
    as_array[0] = False  # at least one operand requires grad

    def loss(*operands):
        out = case.call(*operands)
        return (out * out).sum()

    step = mg.compile(loss)
    for i in range(4):
        values = [a * (1.0 - 0.01 * i) for a in case.operands]  # inside the Domain
        eager = [a.copy() if array else mg.Tensor(a, requires_grad=True)
                 for a, array in zip(values, as_array)]
        compiled = [a.copy() if array else mg.Tensor(a, requires_grad=True)
                    for a, array in zip(values, as_array)]
        lean = [a.copy() if array else mg.Tensor(a, requires_grad=True)
                for a, array in zip(values, as_array)]
        expected = loss(*eager)
        expected.backward()
        actual = step(*compiled)
        actual.backward()
        np.testing.assert_array_equal(actual.data, expected.data, strict=True)
        assert step.value_and_backward(*lean) == expected.item()
        for c, d, e in zip(compiled, lean, eager):
            if isinstance(e, mg.Tensor):
                np.testing.assert_array_equal(c.grad, e.grad, strict=True)
                np.testing.assert_array_equal(d.grad, e.grad, strict=True)


def _slices_and_broadcasts(x, w, b):
    """Overlapping slices of one tensor (sparse cotangents added into a dense one, and
    densified onto one), a weight broadcast over rows, a 0-d weight: the cotangent rules that
    the first replay's backward writes down as code for the later ones."""
    h = mg.tanh(x * w + b)
    parts = [h[:, :2].sum(), (h[1:] * h[:-1]).sum(), h[0].sum() * b, (h[:, 1:] ** 2).mean()]
    return mg.stack(parts).sum() + (w * w).sum() * b


@settings(max_examples=15)
@given(rows=st.integers(2, 5), columns=st.integers(2, 4), seed=st.integers(0, 2**31 - 1))
def test_the_backward_code_applies_the_sweeps_rules(rows, columns, seed):
    rng = np.random.default_rng(seed)
    w0, b0 = rng.normal(size=columns), np.array(rng.normal())
    eager = [mg.Tensor(w0, requires_grad=True), mg.Tensor(b0, requires_grad=True)]
    compiled = [mg.Tensor(w0, requires_grad=True), mg.Tensor(b0, requires_grad=True)]
    step = mg.compile(lambda x: _slices_and_broadcasts(x, *compiled))
    for _ in range(5):  # traced twice, then written down by the first replay, then run
        x = rng.normal(size=(rows, columns))
        for p in eager + compiled:
            p.grad = None
        _slices_and_broadcasts(x, *eager).backward()
        step(x).backward()
        for p, q in zip(compiled, eager):
            np.testing.assert_array_equal(p.grad, q.grad, strict=True)


@settings(max_examples=25)
@given(batch=st.integers(1, 6), steps=st.integers(1, 5), n_in=st.integers(1, 4),
       n_hidden=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_any_graph_of_ops_gives_eager_numbers(batch, steps, n_in, n_hidden, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, steps, n_in))
    weights = [rng.normal(size=s) for s in [(n_in, n_hidden), (n_hidden,), (n_hidden, n_hidden)]]
    eager_params = [mg.Tensor(a, requires_grad=True) for a in weights]
    compiled_params = [mg.Tensor(a, requires_grad=True) for a in weights]
    step = mg.compile(lambda x: _network(x, *compiled_params[:2], compiled_params[2]))
    for i in range(4):
        x_i = x + i  # a new argument array each call: an input, not a constant
        loss = _network(x_i, *eager_params)
        loss.backward()
        compiled_loss = step(x_i)
        compiled_loss.backward()
        assert compiled_loss.item() == loss.item()
        for p, q in zip(compiled_params, eager_params):
            np.testing.assert_array_equal(p.grad, q.grad, strict=True)


@pytest.mark.parametrize("dtype", [np.int64, np.float32])
def test_arguments_the_models_convert_to_their_dtype_are_inputs(dtype):
    # Adder and Counter take np.asarray(X, float64): a converted copy (and views of it, for
    # the counter's X[:, k]) must follow the argument, not stay the first call's constant.
    config = AdderConfig()
    adders = [Adder(config, rng=np.random.default_rng(0)) for _ in range(2)]
    counters = [Counter(), Counter()]
    steps = [mg.compile(adders[1].loss), mg.compile(counters[1].loss)]
    rng = np.random.default_rng(1)
    for _ in range(4):
        X, T = addition_data(rng, 10, config.n_bits, config.max_operand)
        Xc, t = counting_data(rng, 6, 5)
        cases = [(adders, steps[0], X.astype(dtype), T.astype(dtype)),
                 (counters, steps[1], Xc.astype(dtype), t.astype(dtype))]
        for (eager, compiled), step, inputs, targets in cases:
            eager.zero_grad()
            compiled.zero_grad()
            loss = eager.loss(inputs, targets)
            loss.backward()
            compiled_loss = step(inputs, targets)
            compiled_loss.backward()
            assert compiled_loss.item() == loss.item()
            assert_bitwise(grads_of(compiled), grads_of(eager))


def test_tensor_arguments_get_gradients_and_the_loss_composes_with_eager_ops():
    w = mg.Tensor([[0.5, -1.0], [2.0, 0.25]], requires_grad=True)
    step = mg.compile(lambda x, w: mg.tanh(x @ w).sum())
    x_values = [np.arange(4.0).reshape(2, 2) / k for k in (1, 2, 3, 4)]
    for x in x_values:
        x_eager = mg.Tensor(x, requires_grad=True)
        w_eager = mg.Tensor(w.data, requires_grad=True)
        (mg.tanh(x_eager @ w_eager).sum() * 3.0).backward()
        x_compiled = mg.Tensor(x, requires_grad=True)
        w.grad = None
        (step(x_compiled, w) * 3.0).backward()
        np.testing.assert_array_equal(x_compiled.grad, x_eager.grad, strict=True)
        np.testing.assert_array_equal(w.grad, w_eager.grad, strict=True)


def test_backward_twice_with_retain_graph_accumulates_as_eager():
    w = mg.Tensor([1.0, -2.0, 0.5], requires_grad=True)
    step = mg.compile(lambda x: (mg.exp(w * x)).sum())
    x = np.array([0.1, 0.2, 0.3])
    for _ in range(3):
        step(x)
    w.grad = None
    loss = step(x)
    loss.backward(retain_graph=True)
    first = w.grad.copy()
    loss.backward()
    np.testing.assert_array_equal(w.grad, 2 * first)
    np.testing.assert_array_equal(first, x * np.exp(w.data * x))


# --- value_and_backward: a training step's objective without a node ------------------------


@settings(max_examples=10)
@given(shape=ADDER_SHAPES, seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_value_and_backward_accumulates_as_backward_does(shape, seed, dtype):
    """Over calls that trace, compare and replay, with the gradients reset on some calls and
    accumulated on others: the loss and every `.grad` equal eager mode's bitwise."""
    batch, n_bits, n_states = shape
    config = AdderConfig(n_bits=n_bits, n_states=n_states)
    eager = Adder(config, rng=np.random.default_rng(seed), dtype=dtype)
    lean = Adder(config, rng=np.random.default_rng(seed), dtype=dtype)
    step = mg.compile(lean.loss)
    X, T = addition_data(np.random.default_rng(seed + 1), 2 * batch, n_bits, config.max_operand)
    X, T = X.astype(dtype), T.astype(dtype)
    for i in range(6):
        s = slice((i % 2) * batch, (i % 2 + 1) * batch)
        if i % 3 == 0:
            eager.zero_grad()
            lean.zero_grad()
        loss = eager.loss(X[s], T[s])
        loss.backward()
        assert step.value_and_backward(X[s], T[s]) == loss.item()
        assert_bitwise(grads_of(lean), grads_of(eager))
        for p in eager.parameters():
            p.data -= 0.1 * p.grad  # the parameters change between calls
        for p in lean.parameters():
            p.data -= 0.1 * p.grad
    assert step.traces == 1


def test_value_and_backward_hands_out_arrays_of_the_callers_own():
    """`a + b` gives both leaves the seed itself as cotangent: each gets its own copy, and
    no later call writes into a gradient handed out."""
    step = mg.compile(lambda a, b: (a + b).sum())
    grads = []
    for k in range(5):
        a, b = mg.Tensor([float(k)], requires_grad=True), mg.Tensor([1.0], requires_grad=True)
        assert step.value_and_backward(a, b) == k + 1.0
        assert not np.shares_memory(a.grad, b.grad)
        a.grad += 1.0
        np.testing.assert_array_equal(b.grad, [1.0])
        grads.append(a.grad)
    np.testing.assert_array_equal(np.concatenate(grads), np.full(5, 2.0))


def test_value_and_backward_hands_captured_leaves_arrays_of_their_own():
    """The same with leaves read from outside (a model's parameters), whose replays run as
    one fused function: `a + b` still gives each its own copy of the shared cotangent, and
    a `.grad` kept from the last call is added to into a new array."""
    a, b = mg.Tensor([0.0], requires_grad=True), mg.Tensor([1.0], requires_grad=True)
    step = mg.compile(lambda x: ((a + b) * x).sum())
    kept = []
    for _ in range(5):
        a.grad = b.grad = None
        assert step.value_and_backward(np.array([2.0])) == 2.0
        assert not np.shares_memory(a.grad, b.grad)
        a.grad += 1.0
        np.testing.assert_array_equal(b.grad, [2.0])
        kept.append(a.grad)
    assert step.value_and_backward(np.array([2.0])) == 2.0  # b's .grad kept: accumulated
    np.testing.assert_array_equal(b.grad, [4.0])
    np.testing.assert_array_equal(np.concatenate(kept), np.full(5, 3.0))
    assert step.traces == 1


def test_value_and_backward_casts_to_the_leafs_dtype():
    w32 = mg.Tensor(np.array([0.5, -1.5], np.float32), requires_grad=True)
    w_eager = mg.Tensor(w32.data, requires_grad=True)
    step = mg.compile(lambda x: (mg.tanh(w32 * x)).sum())  # x float64: a float64 loss
    for k in range(4):
        x = np.array([1.0, 2.0]) / (k + 1)
        w32.grad = w_eager.grad = None
        loss = mg.tanh(w_eager * x).sum()
        loss.backward()
        assert step.value_and_backward(x) == loss.item()
        assert w32.grad.dtype == np.float32
        np.testing.assert_array_equal(w32.grad, w_eager.grad, strict=True)


def test_value_and_backward_takes_the_general_path_where_it_must():
    """A leaf argument computed by an op (its gradient flows on into the leaf behind it) and
    anomaly mode give backward's numbers and checks; a loss that cannot seed a backward
    gives backward's error."""
    w = mg.Tensor([1.0, 2.0], requires_grad=True)
    step = mg.compile(lambda v, x: mg.sqrt(v * x).sum())
    x = np.array([1.0, 4.0])
    for k in range(3):
        u = mg.Tensor([1.0, 1.0 + k], requires_grad=True)
        v = u * 2.0
        assert step.value_and_backward(v, x) == float(np.sqrt(v.data * x).sum())
        np.testing.assert_array_equal(u.grad, 2.0 * x / (2 * np.sqrt(v.data * x)))
    with mg.detect_anomaly():
        u = mg.Tensor([1.0, 1.0], requires_grad=True)
        for _ in range(3):
            step.value_and_backward(u, x)
        with pytest.raises(mg.AnomalyError, match="'sqrt'.*backward"):
            step.value_and_backward(u, np.array([0.0, 1.0]))
    with mg.no_grad(), pytest.raises(RuntimeError, match="does not require grad"):
        step.value_and_backward(w, x)
    vector = mg.compile(lambda x: w * x)
    for _ in range(3):
        with pytest.raises(ValueError, match="not a scalar"):
            vector.value_and_backward(x)


# --- parameters, ownership, retracing, the cache --------------------------------------------


def test_parameter_changes_between_calls_are_seen():
    w = mg.Tensor([1.0, 2.0], requires_grad=True)
    step = mg.compile(lambda x: (w * x).sum())
    x = np.array([3.0, 4.0])
    for _ in range(3):
        step(x)
    w.data[...] = [10.0, 20.0]          # in place
    assert step(x).item() == 110.0
    w.data = np.array([-1.0, 1.0])      # a new array
    assert step(x).item() == 1.0
    np.subtract(w.data, 1.0, out=w.data)  # as optimizers do
    assert step(x).item() == -6.0


def test_an_update_between_forward_and_backward_does_not_change_the_gradient():
    w = mg.Tensor([1.0, 2.0], requires_grad=True)
    step = mg.compile(lambda x: (w * w * x).sum())
    x = np.array([3.0, 4.0])
    for _ in range(3):
        step(x)
    w.grad = None
    loss = step(x)
    w.data += 100.0  # copy-on-write: the program keeps the forward pass's values
    x[...] = 0.0     # and its own copy of the argument
    loss.backward()
    np.testing.assert_array_equal(w.grad, [6.0, 16.0])


@pytest.mark.parametrize("model_name", ["adder", "counter"])
def test_arguments_changed_between_a_replay_and_its_backward_change_nothing(model_name):
    """A replay copies what its VJPs read of its arguments: the adder's targets directly,
    the inputs through the contiguous copy of their time-major view, the counter's inputs
    through a transposed copy. Overwriting the arguments before backward changes nothing."""
    rng = np.random.default_rng(3)
    if model_name == "adder":
        model, (X, T) = Adder(rng=rng), addition_data(rng, 6, 7)
    else:
        model, (X, T) = Counter(0.9, 1.1), counting_data(rng, 6, 7)
    step = mg.compile(model.loss)
    for k in range(3):  # a trace, a second one from other inputs, then replays
        step(X + 0.0 if k else X.copy(), T.copy())
    model.zero_grad()
    model.loss(X, T).backward()
    expected = grads_of(model)
    model.zero_grad()
    X_, T_ = X.copy(), T.copy()
    loss = step(X_, T_)
    X_[...] = 1.0 - X_
    T_[...] = 1.0 - T_
    loss.backward()
    assert_bitwise(grads_of(model), expected)


def test_returned_gradients_are_not_overwritten_by_later_calls():
    w = mg.Tensor(np.ones((3, 2)), requires_grad=True)
    step = mg.compile(lambda x: mg.tanh(x @ w).sum())
    grads = []
    for k in range(5):
        w.grad = None
        step(np.full((4, 3), float(k))).backward()
        grads.append(w.grad)
    for k, g in enumerate(grads):
        w_eager = mg.Tensor(np.ones((3, 2)), requires_grad=True)
        mg.tanh(np.full((4, 3), float(k)) @ w_eager).sum().backward()
        np.testing.assert_array_equal(g, w_eager.grad)
    for a, b in zip(grads, grads[1:]):
        assert not np.shares_memory(a, b)


@given(shapes=st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5)), min_size=1,
                       max_size=6))
def test_each_new_shape_traces_and_the_cache_keeps_the_most_recent(shapes):
    w = mg.Tensor([2.0], requires_grad=True)
    step = mg.compile(lambda x: (x * w).sum(), cache_size=2)
    traces = 0
    recent: list[tuple[int, int]] = []
    for shape in shapes:
        x = np.ones(shape)
        for _ in range(3):
            assert step(x).item() == 2.0 * x.size
        traces += 0 if shape in recent else 1  # the first call of a signature traces
        recent = ([s for s in recent if s != shape] + [shape])[-2:]
        assert step.traces == traces
        assert step.signatures == len(recent)


def test_a_parameter_whose_shape_changed_is_traced_again():
    w = mg.Tensor([1.0, 1.0], requires_grad=True)
    step = mg.compile(lambda: (w * 3.0).sum())
    for _ in range(3):
        step()
    w.data = np.ones(5)
    assert step().item() == 15.0
    assert step.traces == 2


# --- modes and threads ----------------------------------------------------------------------


def test_grad_mode_is_part_of_the_signature():
    w = mg.Tensor([1.0, 2.0], requires_grad=True)
    step = mg.compile(lambda x: (w * x).sum())
    x = np.array([1.0, 1.0])
    for _ in range(3):
        with mg.no_grad():
            assert not step(x).requires_grad
        loss = step(x)
        assert loss.requires_grad
        w.grad = None
        loss.backward()
        np.testing.assert_array_equal(w.grad, [1.0, 1.0])
    assert step.signatures == 2


def test_anomaly_mode_is_part_of_the_signature_and_checks_the_replay():
    w = mg.Tensor([1.0, 2.0], requires_grad=True)
    step = mg.compile(lambda x: mg.log(w * x).sum())
    with mg.detect_anomaly():
        for _ in range(3):
            step(np.array([1.0, 1.0]))
        with pytest.raises(mg.AnomalyError, match="'log'.*forward"):
            step(np.array([0.0, 1.0]))
    assert step.signatures == 1
    with pytest.warns(RuntimeWarning, match="divide by zero"):  # NumPy's, as in eager mode
        assert np.isneginf(step(np.array([0.0, 1.0])).item())  # outside the mode: no check


def test_anomaly_mode_checks_the_replayed_gradients():
    w = mg.Tensor([1.0, 2.0], requires_grad=True)
    step = mg.compile(lambda x: mg.sqrt(w * x).sum())
    with mg.detect_anomaly():
        for _ in range(3):
            step(np.array([1.0, 1.0])).backward()
        loss = step(np.array([0.0, 1.0]))  # sqrt(0) is finite; its gradient is not
        with pytest.raises(mg.AnomalyError, match="'sqrt'.*gradient of input 0.*backward"):
            loss.backward()


def test_threads_replay_with_their_own_grad_mode():
    w = mg.Tensor([1.0, -1.0, 0.5], requires_grad=True)
    step = mg.compile(lambda x: mg.tanh(w * x).sum())
    x = np.array([0.3, 0.2, 0.1])
    barrier = threading.Barrier(2)
    failures: list[str] = []

    def without_grad():
        with mg.no_grad():
            barrier.wait()
            for _ in range(200):
                if step(x).requires_grad:
                    failures.append("recorded under no_grad")

    def with_grad():
        barrier.wait()
        for _ in range(200):
            loss = step(x)
            if not loss.requires_grad:
                failures.append("not recorded with grad on")
                continue
            (g,) = mg.gradients(loss, [w])
            v = mg.Tensor(w.data, requires_grad=True)
            if not np.array_equal(g, mg.gradients(mg.tanh(v * x).sum(), [v])[0]):
                failures.append("gradient differs")

    threads = [threading.Thread(target=without_grad), threading.Thread(target=with_grad)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# --- what a trace cannot capture ------------------------------------------------------------

w_refuse = mg.Tensor([1.0, 2.0], requires_grad=True)


def test_reading_a_tensor_argument_in_python_is_refused():
    step = mg.compile(lambda t: t * float(t.sum()))
    t = mg.Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(mg.TraceError, match=r"float\(\)"):
        step(t)
    assert float(t.sum()) == 3.0  # the argument is an ordinary tensor again


@given(values=st.lists(st.lists(st.integers(-5, 5), min_size=2, max_size=2), min_size=3,
                       max_size=6))
def test_a_tensor_made_inside_fn_from_an_argument_follows_the_argument(values):
    """`Tensor(x)` inside fn is a step of the program, not a constant of the trace: each
    call copies the argument it is given, also after two calls with equal arguments."""
    def fn(x, n):
        # from an argument, a view of one, and an integer one (made float64 as Tensor does)
        return (w_refuse * mg.Tensor(x)).sum() + (w_refuse * mg.Tensor(x[::-1])).sum() \
            + mg.Tensor(n).sum() + mg.Tensor([1.0, 2.0]).sum()

    step = mg.compile(fn)
    for v in [values[0], *values]:
        x, n = np.array(v, float), np.array(v) * 3
        assert step(x, n).item() == fn(x, n).item()


def test_a_tensor_made_inside_fn_from_a_traced_tensor_is_recomputed():
    step = mg.compile(lambda x: (mg.Tensor(w_refuse.detach() * x) * x).sum())
    for x in (np.ones(2), np.ones(2), np.array([3.0, -1.0])):
        assert step(x).item() == ((w_refuse.data * x) * x).sum()


def test_a_constant_copy_of_a_value_that_needs_a_gradient_is_refused_when_traced_too():
    step = mg.compile(lambda x: (mg.Tensor(w_refuse * x) * x).sum())
    with pytest.raises(TypeError, match="requires grad"):
        step(np.ones(2))


def test_a_compiled_function_called_inside_another_is_traced_by_it():
    inner = mg.compile(lambda x: mg.tanh(w_refuse * x))
    outer = mg.compile(lambda x: inner(x).sum() * 2.0)
    x = np.array([0.5, -0.5])
    expected = (mg.tanh(w_refuse * x).sum() * 2.0).item()
    for _ in range(3):
        assert outer(x).item() == expected
    assert inner.traces == 0


class _Stack(mg.nn.Module):
    """Layers in a list and in a dict inside a list, as the Module docstring allows, and a
    list of numbers the training loop appends to."""

    def __init__(self, rng):
        self.layers = [mg.nn.Linear(3, 4, rng=rng), mg.nn.Linear(4, 4, rng=rng)]
        self.heads = [{"out": mg.nn.Linear(4, 1, rng=rng)}]
        self.losses = []
        self.log = [mg.Tensor(0.0)]  # detached losses, appended by the training loop

    def forward(self, x):
        for layer in self.layers:
            x = mg.tanh(layer(x))
        return self.heads[0]["out"](x).sum()


@pytest.mark.parametrize("compiled_as", ["module", "method", "closure", "argument"])
def test_layers_swapped_in_a_list_or_dict_the_module_holds_are_traced_again(compiled_as):
    """Also where fn reads the module from a closure (`lambda x: model(x)`) or is given it
    as an argument, which replayed the old layer (0.399 where eager gives 0.194)."""
    rng = np.random.default_rng(0)
    model = _Stack(rng)
    spares = [mg.nn.Linear(4, 4, rng=rng), mg.nn.Linear(4, 1, rng=rng)]  # made before
    compiled = mg.compile({"module": model, "method": model.forward,
                           "closure": lambda x: model(x),
                           "argument": _Stack.forward}[compiled_as])

    def step(x):
        return compiled(model, x) if compiled_as == "argument" else compiled(x)

    x = rng.normal(size=(5, 3))
    changes = [lambda: None,
               lambda: model.losses.append(1.5),  # numbers and plain tensors: a log, not
               lambda: model.log.append(mg.Tensor(1.5)),  # what fn reads
               lambda: model.layers.__setitem__(1, spares[0]),
               lambda: model.heads[0].__setitem__("out", spares[1]),
               lambda: model.layers.append(mg.nn.Linear(4, 4, rng=rng)),
               lambda: model.layers.pop()]
    traces = []
    for change in changes:
        change()
        assert step(x).item() == model(x).item()
        traces.append(compiled.traces)
    assert traces == [1, 1, 1, 2, 3, 4, 5]


NUMPY_METHODS = {
    "var": lambda x: x.var(0), "var ddof": lambda x: x.var(axis=1, ddof=1),
    "min": lambda x: x.min(0), "clip": lambda x: x.clip(-0.5, 0.5).sum(0),
    "squeeze": lambda x: x[:, :1].squeeze(1),
}


@pytest.mark.parametrize("method", sorted(NUMPY_METHODS))
@pytest.mark.parametrize("layout", ["C", "Fortran"])
def test_numpy_methods_of_an_array_argument_are_numpys(method, layout):
    """A method NumPy arrays share with tensors (`x.var(0)`) runs NumPy's in eager mode on an
    array argument; traced, the table's op ran on a C copy of a Fortran array, whose sum
    added in another order (49 of 50 draws 1 ulp off)."""
    rng = np.random.default_rng(0)
    w = mg.Tensor(np.ones(9), requires_grad=True)

    def fn(x):
        return (NUMPY_METHODS[method](x) * w[: x.shape[0]]).sum()

    step = mg.compile(fn)
    for _ in range(20):
        x = rng.normal(size=(9, 9))
        x = np.asfortranarray(x) if layout == "Fortran" else x
        assert step(x).data.tobytes() == fn(x).data.tobytes()


def test_a_vjp_writing_into_the_seed_of_a_compiled_backward_raises():
    """As eager mode's `backward()`: the seed a replay's backward starts from is read-only."""
    def vjp(g, out, x):
        g *= 2.0  # the bug
        return g * np.cos(x)

    sin = mg.defop("sin_in_place", np.sin, (vjp,), saves="inputs", register=False)
    w = mg.Tensor(np.array([0.3]), requires_grad=True)
    step = mg.compile(lambda x: sin(w * x))  # the seed goes to sin's VJP as it is
    for _ in range(3):
        with pytest.raises(ValueError, match="read-only"):
            step.value_and_backward(np.ones(1))
    assert w.grad is None


class _Scaled(mg.nn.Module):
    def __init__(self):
        self.weight = mg.nn.Parameter(np.array([1.0, 2.0]))
        self.scale = 1.0

    def forward(self, x):
        return (self.weight * x * self.scale).sum()



def test_an_attribute_set_in_a_scans_body_is_seen_by_a_compiled_function():
    """A scan's f runs on every call, tracing: what it sets is set for good. Such a set did
    not move the modules' generation, and a compiled function replayed the old value (3.0
    where eager mode gives 9.0)."""
    model = _Scaled()
    step = mg.compile(model)
    x = np.array([1.0, 1.0])
    assert step(x).item() == model(x).item() == 3.0

    def body(h, xk):
        model.scale = 3.0
        return h + xk, h

    mg.scan(body, np.zeros(2), np.ones((2, 2)))
    assert step(x).item() == model(x).item() == 9.0


def test_a_call_counter_in_forward_leaves_every_compiled_function_current():
    """What a compiled function's trace sets (a call counter) is a side effect of that trace:
    it moved the modules' generation, and a function's other signature, or the model's other
    compiled function, traced again on every call, each invalidating the other."""

    class Counting(mg.nn.Module):
        def __init__(self):
            self.weight = mg.nn.Parameter(np.array([1.0, 2.0]))
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return (self.weight * x).sum()

        def evaluate(self, x):
            self.calls += 1
            return (self.weight * x * 2.0).sum()

    model = Counting()
    loss, evaluate = mg.compile(model), mg.compile(model.evaluate)
    batches = [np.ones((4, 2)), np.ones((3, 2))]  # a last, smaller batch: a second signature
    with mg.no_grad():
        expected = [model.forward(b).item() for b in batches] + [model.evaluate(batches[0]).item()]
    for k in range(6):
        assert loss(batches[k % 2]).item() == expected[k % 2]
        assert evaluate(batches[0]).item() == expected[2]
    assert (loss.traces, evaluate.traces) == (2, 1)


def test_a_tensor_in_a_list_the_module_holds_and_fn_reads_is_watched():
    """Not only layers and parameters: a plain tensor fn reads from a list (a mask) swapped
    for another was replayed stale (1.0 where eager gives 7.0)."""
    class Masked(mg.nn.Module):
        def __init__(self):
            self.weight = mg.nn.Parameter(np.array([1.0, 2.0]))
            self.masks = [mg.Tensor(np.array([1.0, 0.0]))]

        def forward(self, x):
            return (self.weight * self.masks[0] * x).sum()

    model = Masked()
    step = mg.compile(model)
    x = np.array([1.0, 3.0])
    assert step(x).item() == model(x).item() == 1.0
    model.masks[0] = mg.Tensor(np.array([1.0, 2.0]))
    assert step(x).item() == model(x).item() == 13.0


def test_a_tensor_in_a_list_that_is_also_an_argument_is_watched():
    """fn reads the list's tensor, which is also the argument: the program reads it as the
    argument, and the list was not watched (5.0 where eager gives 50.0 after a swap)."""
    class Masked(mg.nn.Module):
        def __init__(self):
            self.masks = [mg.Tensor(np.array([1.0, 2.0]))]

        def f(self, x):
            return (x * self.masks[0]).sum()

    model = Masked()
    step = mg.compile(model.f)
    first = model.masks[0]
    assert step(first).item() == model.f(first).item() == 5.0
    model.masks[0] = mg.Tensor(np.array([10.0, 20.0]))
    assert step(first).item() == model.f(first).item() == 50.0


@pytest.mark.parametrize(("cache_size", "error"), [
    ("a", TypeError), (2.0, TypeError), (None, TypeError), (True, TypeError),
    (0, ValueError), (-3, ValueError)])
def test_a_cache_size_of_a_wrong_type_or_below_1_is_refused(cache_size, error):
    """`mg.compile(f, cache_size='a')` raised ValueError: TypeError for a value that is no
    integer now, by Python's convention; ValueError for one below 1."""
    with pytest.raises(error, match=rf"^compile: cache_size must be an integer >= 1, got "
                                    rf".*{re.escape(repr(cache_size))}$"):
        mg.compile(lambda x: x.sum(), cache_size=cache_size)
