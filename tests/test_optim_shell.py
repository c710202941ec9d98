"""The optimizer shell: construction, closures, skipped and non-finite gradients,
hyperparameter validation, state_dict round trips and the registry."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minigrad import optim
from minigrad.optim import NonFiniteGradientError


class Param:
    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.grad: np.ndarray | None = None


# One non-default configuration per optimizer (every state array in use).
CONFIGS = {
    "sgd": {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    "rprop": {"eta_plus": 1.3, "eta_minus": 0.4, "step_init": 0.01},
    "rmsprop_nesterov": {"lr": 0.05, "decay": 0.5, "momentum": 0.8, "eps": 1e-6},
    "adam": {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-7},
}
# Other hyperparameters, for the fresh optimizer that load_state_dict must overwrite.
OTHER = {
    "sgd": {"lr": 0.5},
    "rprop": {},
    "rmsprop_nesterov": {"lr": 0.3, "momentum": 0.1},
    "adam": {"lr": 0.2},
}
NAMES = sorted(CONFIGS)
SHAPES = [(3, 2), (4,), ()]


def make_params(rng: np.random.Generator) -> list[Param]:
    return [Param(rng.normal(size=s)) for s in SHAPES]


def copy_params(params: list[Param]) -> list[Param]:
    return [Param(p.data.copy()) for p in params]


def loss_closure(params, opt, a):
    """A separable quartic-plus-quadratic, so gradients keep changing along the run."""

    def closure() -> float:
        opt.zero_grad()
        loss = 0.0
        for p, ai in zip(params, a, strict=True):
            loss += float(np.sum(0.25 * p.data**4 + ai * p.data**2 - p.data))
            p.grad = p.data**3 + 2 * ai * p.data - 1.0
        return loss

    return closure


def coefficients():
    return [np.linspace(-1.0, 2.0, num=int(np.prod(s))).reshape(s) for s in SHAPES]


def run_steps(opt, params, n):
    closure = loss_closure(params, opt, coefficients())
    return [opt.step(closure) for _ in range(n)]


def assert_state_dicts_equal(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
        assert a[k].dtype == b[k].dtype, k


def entry(sd: dict, j: int) -> dict:
    """Parameter j's part of a state dict, by the rule's names ("step", "velocity", ...)."""
    return {k.split(".", 2)[2]: v for k, v in sd.items() if k.startswith(f"state.{j}.")}


def buffer_key(sd: dict, j: int) -> str:
    """The name of parameter j's first state array (not its step count)."""
    return next(k for k in sd if k.startswith(f"state.{j}.") and not k.endswith(".step"))


# --------------------------------------------------------------------------------------
# Construction
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_generator_of_parameters_is_materialised_once(name):
    params = make_params(np.random.default_rng(0))
    opt = optim.create(name, (p for p in params), **CONFIGS[name])
    assert opt.parameters == tuple(params)
    before = [p.data.copy() for p in params]
    run_steps(opt, params, 2)  # a consumed generator would leave nothing to update
    assert all(not np.array_equal(b, p.data) for b, p in zip(before, params, strict=True) if b.size)


@pytest.mark.parametrize("name", NAMES)
def test_empty_parameter_list_raises(name):
    with pytest.raises(ValueError, match="empty"):
        optim.create(name, [], **CONFIGS[name])
    with pytest.raises(ValueError, match="empty"):
        optim.create(name, iter([]), **CONFIGS[name])


def test_bad_parameter_lists():
    p = Param(np.zeros(3))
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(TypeError, match="floating"):
        optim.SGD([Param(np.zeros(3, dtype=np.int64))], lr=0.1)
    with pytest.raises(TypeError, match="data"):
        optim.SGD([object()], lr=0.1)


# --------------------------------------------------------------------------------------
# Hyperparameter validation: every error is a ValueError naming the hyperparameter
# --------------------------------------------------------------------------------------

BAD_HYPERPARAMETERS = [
    ("sgd", {"lr": -0.1}, "lr"),
    ("sgd", {"lr": float("nan")}, "lr"),
    ("sgd", {"lr": float("inf")}, "lr"),
    ("sgd", {"lr": "0.1"}, "lr"),
    ("sgd", {"lr": 0.1, "momentum": -0.5}, "momentum"),
    ("sgd", {"lr": 0.1, "momentum": 1.0}, "momentum"),
    ("sgd", {"lr": 0.1, "nesterov": True}, "nesterov"),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": "yes"}, "nesterov"),
    ("sgd", {"lr": 0.1, "weight_decay": -1e-4}, "weight_decay"),
    ("sgd", {"lr": 0.1, "check_finite": 1}, "check_finite"),
    ("rprop", {"eta_plus": 1.0}, "eta_plus"),
    ("rprop", {"eta_plus": 0.5}, "eta_plus"),
    ("rprop", {"eta_minus": 1.0}, "eta_minus"),
    ("rprop", {"eta_minus": 1.5}, "eta_minus"),
    ("rprop", {"eta_minus": 0.0}, "eta_minus"),
    ("rprop", {"eta_minus": -0.5}, "eta_minus"),
    ("rprop", {"step_init": 0.0}, "step_init"),
    ("rprop", {"step_min": 0.0}, "step_min"),
    ("rprop", {"step_min": -1.0}, "step_min"),
    ("rprop", {"step_max": -1.0}, "step_max"),
    ("rprop", {"step_min": 1.0, "step_max": 0.5, "step_init": 0.7}, "step_min"),
    ("rmsprop_nesterov", {"lr": -0.05}, "lr"),
    ("rmsprop_nesterov", {"decay": 1.0}, "decay"),
    ("rmsprop_nesterov", {"decay": -0.1}, "decay"),
    ("rmsprop_nesterov", {"momentum": 1.0}, "momentum"),
    ("rmsprop_nesterov", {"momentum": -0.2}, "momentum"),
    ("rmsprop_nesterov", {"eps": -1e-6}, "eps"),
    ("rmsprop_nesterov", {"eps": 0.0}, "eps"),  # 0/0 = NaN at the first zero gradient
    ("adam", {"lr": -1e-3}, "lr"),
    ("adam", {"betas": (1.0, 0.999)}, "betas[0]"),
    ("adam", {"betas": (0.9, 1.0)}, "betas[1]"),
    ("adam", {"betas": (-0.1, 0.999)}, "betas[0]"),
    ("adam", {"betas": (0.9,)}, "betas"),
    ("adam", {"betas": 0.9}, "betas"),
    ("adam", {"eps": -1e-8}, "eps"),
    ("adam", {"eps": 0.0}, "eps"),  # 0/0 = NaN at the first zero gradient
]


@pytest.mark.parametrize(("name", "hyper", "key"), BAD_HYPERPARAMETERS,
                         ids=[f"{n}-{k}-{i}" for i, (n, _, k) in enumerate(BAD_HYPERPARAMETERS)])
def test_bad_hyperparameter_raises_value_error_naming_it(name, hyper, key):
    with pytest.raises(ValueError) as info:
        optim.create(name, [Param(np.zeros(2))], **hyper)
    message = str(info.value)
    assert f"{key}=" in message
    value = hyper.get(key.split("[")[0], hyper.get("step_min"))
    if key.endswith("]"):
        value = value[int(key[-2])]
    assert repr(value) in message


# Values of a wrong type: TypeError, by Python's convention (they were ValueError only, and
# are still ValueErrors too: HyperparameterTypeError).
WRONG_TYPES = [
    ("sgd", {"lr": "0.1"}, "lr", "str"),
    ("sgd", {"lr": None}, "lr", "NoneType"),
    ("sgd", {"lr": np.array([0.1])}, "lr", "ndarray"),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": "yes"}, "nesterov", "str"),
    ("sgd", {"lr": 0.1, "check_finite": 1}, "check_finite", "int"),
    ("sgd", {"lr": True}, "lr", "bool"),
    ("rprop", {"eta_plus": b"1.2"}, "eta_plus", "bytes"),
    ("rmsprop_nesterov", {"decay": 1j}, "decay", "complex"),
    ("adam", {"betas": 0.9}, "betas", "float"),
    ("adam", {"betas": (0.9, "0.99")}, "betas[1]", "str"),
    ("adam", {"eps": [1e-8]}, "eps", "list"),
]


@pytest.mark.parametrize(("name", "hyper", "key", "kind"), WRONG_TYPES,
                         ids=[f"{n}-{k}-{i}" for i, (n, _, k, _) in enumerate(WRONG_TYPES)])
def test_a_hyperparameter_of_a_wrong_type_raises_type_error_naming_it(name, hyper, key, kind):
    """`optim.SGD(p, lr='0.1')`, `lr=None` raised ValueError: TypeError now, naming the
    optimizer, the hyperparameter, its value and its type."""
    value = hyper.get(key.split("[")[0], hyper.get("step_min"))
    if key.endswith("]"):
        value = value[int(key[-2])]
    owner = optim.OPTIMIZERS[name].__name__
    message = (rf"^{owner}: invalid {re.escape(key)}={re.escape(repr(value))}: must be .*, "
               rf"got {kind}$")
    with pytest.raises(TypeError, match=message) as info:
        optim.create(name, [Param(np.zeros(2))], **hyper)
    assert isinstance(info.value, ValueError)  # (an `except ValueError` still catches it)


@given(name=st.sampled_from(["sgd", "adam"]), lr=st.floats(0.0, 1.0),
       kind=st.sampled_from(["float64", "float32", "float16", "int64", "uint8"]))
def test_a_0d_array_learning_rate_is_taken_as_its_number(name, lr, kind):
    """As PyTorch takes a float: `lr=np.array(0.1)` (a 0-d array read from a file, say) was
    refused; it is the number it holds, a Python float, and the step uses it."""
    value = np.array(lr).astype(kind)
    p, twin = Param(np.ones(2)), Param(np.ones(2))
    opt = optim.create(name, [p], lr=value)
    assert type(opt.lr) is float and opt.lr == value.item()
    reference = optim.create(name, [twin], lr=value.item())
    p.grad = twin.grad = np.array([0.5, -2.0])
    opt.step()
    reference.step()
    assert p.data.tobytes() == twin.data.tobytes()


def test_a_hyperparameter_of_a_wrong_type_in_a_state_dict_is_a_value_error():
    """Loading keeps its contract, every defect of the file a ValueError."""
    opt = optim.SGD([Param(np.zeros(2))], lr=0.1)
    state = opt.state_dict()
    state["groups.0.lr"] = np.array("x")
    with pytest.raises(ValueError, match=r"^SGD.load_state_dict: group 0: SGD: invalid lr='x': "
                                         r"must be a real number, got str$"):
        opt.load_state_dict(state)
    assert opt.lr == 0.1


def test_a_tensor_computed_by_ops_is_refused_as_a_parameter():
    """`optim.SGD([w * 2], lr=0.1)` was accepted and its step did nothing useful (backward
    gives such a tensor no .grad, and the next forward pass computes it anew): refused at
    construction, naming its position, as PyTorch refuses a non-leaf tensor."""
    import minigrad as mg

    w = mg.Tensor(np.ones(3), requires_grad=True)
    v = mg.Tensor(np.ones((2, 2)), requires_grad=True)
    for params in ([w, v * 2.0], [{"params": [w]}, {"params": [v.sum() + 1.0]}]):
        with pytest.raises(ValueError, match=r"^SGD: parameter 1 is not a leaf: a tensor "
                                             r"computed by ops \((shape \(2, 2\)|shape \(\))\)"):
            optim.SGD(params, lr=0.1)
    optim.SGD([w, v, mg.nn.Parameter(np.ones(2))], lr=0.1)  # leaves, made by the user


def test_boundary_hyperparameters_are_accepted():
    p = [Param(np.zeros(2))]
    optim.SGD(p, lr=0.0, momentum=0.0, weight_decay=0.0)
    optim.RProp(p, step_min=0.5, step_max=0.5, step_init=0.5)
    optim.RMSPropNesterov(p, lr=0.0, decay=0.0, momentum=0.0, eps=5e-324)
    optim.Adam(p, lr=0.0, betas=(0.0, 0.0), eps=5e-324)


@pytest.mark.parametrize("name", ["adam", "rmsprop_nesterov"])
def test_smallest_eps_keeps_a_zero_gradient_finite(name):
    """Why eps must be > 0: a gradient element that has always been 0 divides 0 by eps."""
    p = Param(np.ones(2))
    opt = optim.create(name, [p], eps=5e-324)

    def closure():
        p.grad = np.array([0.0, 1.0])
        return 0.0

    opt.step(closure)
    assert p.data[0] == 1.0 and np.isfinite(p.data[1])


def test_hyperparameters_by_position_and_the_signature():
    p = [Param(np.zeros(2))]
    by_position = optim.SGD(p, 0.1, 0.9)
    assert by_position.hyperparameters == optim.SGD(p, lr=0.1, momentum=0.9).hyperparameters
    assert list(inspect.signature(optim.Adam).parameters) == [
        "params", "lr", "betas", "eps", "check_finite"]
    with pytest.raises(TypeError, match=r"missing 1 required positional argument: 'lr'"):
        optim.SGD(p)
    with pytest.raises(TypeError, match=r"takes from 2 to 5 positional arguments"):
        optim.Adam(p, 0.1, (0.9, 0.99), 1e-8, 0.5)
    with pytest.raises(TypeError, match=r"got multiple values for argument 'lr'"):
        optim.Adam(p, 0.1, lr=0.2)


# --------------------------------------------------------------------------------------
# Closures, zero_grad, skipped gradients
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_closure_called_once_per_step_and_its_loss_returned(name):
    params = make_params(np.random.default_rng(1))
    opt = optim.create(name, params, **CONFIGS[name])
    inner = loss_closure(params, opt, coefficients())
    calls = []

    def closure():
        loss = inner()
        calls.append(loss)
        return loss

    for k in range(3):
        assert opt.step(closure) == calls[-1]
        assert len(calls) == k + 1


@pytest.mark.parametrize("name", [n for n in NAMES if n != "rmsprop_nesterov"])
def test_step_without_closure_uses_grads_and_returns_none(name):
    p = Param(np.ones(3))
    opt = optim.create(name, [p], **CONFIGS[name])
    p.grad = np.array([1.0, -1.0, 0.5])
    assert opt.step() is None
    assert not np.array_equal(p.data, np.ones(3))


def test_rmsprop_nesterov_requires_a_closure():
    p = Param(np.ones(3))
    opt = optim.RMSPropNesterov([p])
    p.grad = np.ones(3)
    with pytest.raises(TypeError, match="closure.*look-ahead"):
        opt.step()
    with pytest.raises(TypeError, match="callable"):
        opt.step(42)
    np.testing.assert_array_equal(p.data, np.ones(3))
    assert opt.state_dict()["state.0.step"] == 0


def test_rmsprop_nesterov_closure_sees_the_look_ahead_point():
    p = Param(np.array([1.0]))
    opt = optim.RMSPropNesterov([p], lr=0.1, decay=0.5, momentum=0.5, eps=1e-6)
    seen = []

    def closure():
        seen.append(p.data.copy())
        p.grad = np.array([1.0])
        return 0.0

    opt.step(closure)  # V = 0: look-ahead = P = 1; step = 0.1 * 1 / (sqrt(0.5) + eps)
    step1 = 0.1 / (np.sqrt(0.5) + 1e-6)
    np.testing.assert_array_equal(seen[0], [1.0])
    np.testing.assert_array_equal(p.data, [1.0 - step1])
    opt.step(closure)  # V = -step1: the closure runs at P + 0.5 * V
    np.testing.assert_array_equal(seen[1], [(1.0 - step1) + 0.5 * -step1])
    v = opt.state_dict()["state.0.velocity"]
    np.testing.assert_allclose(p.data, 1.0 - step1 + v, rtol=1e-15)  # P_new = P_old + V_new


@pytest.mark.parametrize("name", NAMES)
def test_zero_grad_sets_grads_to_none(name):
    params = make_params(np.random.default_rng(2))
    opt = optim.create(name, params, **CONFIGS[name])
    for p in params:
        p.grad = np.ones_like(p.data)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_without_grad_is_skipped(name):
    params = make_params(np.random.default_rng(3))
    opt = optim.create(name, params, **CONFIGS[name])
    run_steps(opt, params, 2)  # non-zero momentum / velocity / step sizes
    before = [p.data.copy() for p in params]
    state_before = opt.state_dict()
    inner = loss_closure(params, opt, coefficients())

    def closure():
        loss = inner()
        params[0].grad = None
        return loss

    opt.step(closure)
    np.testing.assert_array_equal(params[0].data, before[0])
    assert not np.array_equal(params[1].data, before[1])
    after = opt.state_dict()
    assert after["state.0.step"] == state_before["state.0.step"] == 2
    assert after["state.1.step"] == 3
    for k, v in entry(state_before, 0).items():
        np.testing.assert_array_equal(entry(after, 0)[k], v)


def test_gradient_with_wrong_shape_raises_before_any_change():
    a, b = Param(np.ones(2)), Param(np.ones(3))
    opt = optim.SGD([a, b], lr=0.1)
    a.grad, b.grad = np.ones(2), np.ones(4)
    with pytest.raises(ValueError, match="parameter 1"):
        opt.step()
    np.testing.assert_array_equal(a.data, np.ones(2))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(5,), (1,), (2, 2), ()])
def test_an_array_replaced_by_the_closure_with_another_shape_raises(name, shape):
    """A parameter's .data is read anew after the closure, so its shape is checked there:
    a closure that swaps parameter 1's array for one of another shape gets a ValueError
    naming it, and no parameter or state changes (size 1 would broadcast silently)."""
    params = make_params(np.random.default_rng(8))
    opt = optim.create(name, params, **CONFIGS[name])
    run_steps(opt, params, 2)
    before, state_before = [p.data.copy() for p in params], opt.state_dict()
    inner = loss_closure(params, opt, coefficients())

    def closure() -> float:
        loss = inner()
        params[1].data = np.ones(shape)
        return loss

    with pytest.raises(ValueError, match=rf"parameter 1 has shape {re.escape(str(shape))}, "
                                         r"expected \(4,\)"):
        opt.step(closure)
    for j in (0, 2):
        np.testing.assert_array_equal(params[j].data, before[j])
    np.testing.assert_array_equal(params[1].data, np.ones(shape))
    assert_state_dicts_equal(opt.state_dict(), state_before)


@given(seed=st.integers(0, 2**32 - 1), starts=st.tuples(st.integers(0, 6), st.integers(0, 6)),
       sizes=st.tuples(st.integers(1, 5), st.integers(1, 5)), grouped=st.booleans())
@pytest.mark.parametrize("name", NAMES)
def test_parameters_whose_arrays_overlap_are_refused_before_any_change(name, seed, starts,
                                                                        sizes, grouped):
    """Two parameters viewing parts of one buffer (`b.data = a.data` is the extreme case):
    where the parts overlap, each update was computed from the old values and the last
    write won, so one was lost (PyTorch applies both). Refused, naming both positions,
    with nothing changed (buffer, other parameter, state), whether the two share a group
    or not; disjoint parts step exactly as separate arrays do."""
    rng = np.random.default_rng(seed)
    buffer = rng.normal(size=12)
    own = Param(rng.normal(size=3))
    params = [own] + [Param(buffer[a:a + n]) for a, n in zip(starts, sizes, strict=True)]
    separate = copy_params(params)
    grads = [rng.normal(size=p.data.shape) for p in params]

    def make(ps):
        groups = [{"params": ps[:2]}, {"params": ps[2:]}] if grouped else ps
        opt = optim.create(name, groups, **CONFIGS[name])

        def closure() -> float:
            for p, g in zip(ps, grads, strict=True):
                p.grad = g.copy()
            return 0.0

        return opt, closure

    (opt, closure), (opt_separate, closure_separate) = make(params), make(separate)
    if max(starts) < min(a + n for a, n in zip(starts, sizes, strict=True)):
        before, own_before, state = buffer.copy(), own.data.copy(), opt.state_dict()
        with pytest.raises(ValueError, match=rf"^{type(opt).__name__}\.step: parameters 1 "
                                             r"and 2 share memory .* no parameter was changed"):
            opt.step(closure)
        np.testing.assert_array_equal(buffer, before)
        np.testing.assert_array_equal(own.data, own_before)
        assert_state_dicts_equal(opt.state_dict(), state)
    else:
        for _ in range(2):
            opt.step(closure)
            opt_separate.step(closure_separate)
            for p, q in zip(params, separate, strict=True):
                np.testing.assert_array_equal(p.data, q.data)


@pytest.mark.parametrize("name", NAMES)
def test_an_array_shared_by_the_closure_is_refused_and_the_parameters_moved_back(name):
    """The arrays are read anew after the closure, so one it makes shared is refused there,
    with no parameter updated. A rule with a look-ahead point moves its parameters back,
    into the arrays read anew: the shared element then takes parameter 2's old value (it
    cannot hold both), the others their own."""
    params = make_params(np.random.default_rng(9))
    opt = optim.create(name, params, **CONFIGS[name])
    run_steps(opt, params, 2)
    before, state = [p.data.copy() for p in params], opt.state_dict()
    inner = loss_closure(params, opt, coefficients())

    def closure() -> float:
        loss = inner()
        params[2].data = params[1].data[1:2].reshape(())  # (the shape () parameter 2 has)
        return loss

    with pytest.raises(ValueError, match=r"step: parameters 1 and 2 share memory"):
        opt.step(closure)
    np.testing.assert_array_equal(params[0].data, before[0])
    unshared = [0, 2, 3]
    np.testing.assert_array_equal(params[1].data[unshared], before[1][unshared])
    shared_was = before[2] if name == "rmsprop_nesterov" else before[1][1]
    np.testing.assert_array_equal(params[1].data[1], shared_was)
    assert_state_dicts_equal(opt.state_dict(), state)


@pytest.mark.parametrize("name", NAMES)
def test_a_parameter_viewing_part_of_another_array_steps_as_a_copy_would(name):
    """Views of one buffer are compared only with each other: a parameter whose array views
    part of an unrelated array (listed once) steps exactly as a copy of it, and the rest
    of that array is left alone."""
    rng = np.random.default_rng(10)
    big = rng.normal(size=(50, 4))
    params = make_params(rng)
    params[1].data = big[10:14, 2]  # a strided view, shape (4,)
    copies = copy_params(params)
    outside = np.delete(big, np.s_[10:14], axis=0).copy()
    for ps in (params, copies):
        run_steps(optim.create(name, ps, **CONFIGS[name]), ps, 3)
    for p, q in zip(params, copies, strict=True):
        np.testing.assert_array_equal(p.data, q.data)
    assert params[1].data.base is big
    np.testing.assert_array_equal(np.delete(big, np.s_[10:14], axis=0), outside)


@given(seed=st.integers(0, 2**32 - 1), replaced=st.lists(st.booleans(), min_size=3,
                                                         max_size=3))
@pytest.mark.parametrize("name", NAMES)
def test_arrays_replaced_by_the_closure_are_updated_in_their_place(name, seed, replaced):
    """The closure may hand a parameter a new array (as a Tensor does on write after a
    forward pass): the update is written into the array it leaves, bit for bit as if
    nothing had been replaced, and later steps go on from there."""
    rng = np.random.default_rng(seed)
    params = make_params(rng)
    kept = copy_params(params)
    opt, opt_kept = (optim.create(name, ps, **CONFIGS[name]) for ps in (params, kept))
    inner = loss_closure(params, opt, coefficients())
    handed: list[np.ndarray] = []

    def closure() -> float:
        loss = inner()
        for p, swap in zip(params, replaced, strict=True):
            if swap:
                p.data = p.data.copy()
                handed.append(p.data)
        return loss

    for _ in range(3):
        handed.clear()
        assert opt.step(closure) == opt_kept.step(loss_closure(kept, opt_kept,
                                                                coefficients()))
        for p, q in zip(params, kept, strict=True):
            np.testing.assert_array_equal(p.data, q.data)
        assert all(any(a is p.data for p in params) for a in handed)
    assert_state_dicts_equal(opt.state_dict(), opt_kept.state_dict())


@given(seed=st.integers(0, 2**32 - 1),
       kind=st.sampled_from(["float32", "list", "int", "Fortran", "view"]))
@pytest.mark.parametrize("name", NAMES)
def test_gradients_of_any_array_like_step_as_their_float64_values(name, seed, kind):
    """A gradient given as a float32 array, a nested list, an integer array, a Fortran-
    ordered array or a strided view steps exactly as the same values in a C-ordered
    float64 array (cast as np.concatenate casts them)."""
    rng = np.random.default_rng(seed)
    params = make_params(rng)
    plain = copy_params(params)
    opt, opt_plain = (optim.create(name, ps, **CONFIGS[name]) for ps in (params, plain))
    for _ in range(3):
        values = [np.round(rng.normal(size=p.data.shape) * 8) / 8 for p in params]
        given_as = {"float32": lambda v: v.astype(np.float32), "list": lambda v: v.tolist(),
                    "int": lambda v: np.round(v).astype(np.int64),
                    "Fortran": lambda v: np.array(v, order="F"),
                    "view": lambda v: np.repeat(v[..., None], 2, axis=-1)[..., 0]}[kind]
        for p, q, v in zip(params, plain, values, strict=True):
            p.grad = given_as(v)
            q.grad = np.asarray(p.grad, dtype=np.float64).copy()
        closure = (lambda: 0.0) if name == "rmsprop_nesterov" else None
        opt.step(closure)
        opt_plain.step(closure)
        for p, q in zip(params, plain, strict=True):
            np.testing.assert_array_equal(p.data, q.data)
    assert_state_dicts_equal(opt.state_dict(), opt_plain.state_dict())


# --------------------------------------------------------------------------------------
# Non-finite gradients
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", NAMES)
def test_non_finite_gradient_raises_before_any_parameter_changes(name, bad):
    params = make_params(np.random.default_rng(4))
    opt = optim.create(name, params, **CONFIGS[name])
    run_steps(opt, params, 2)
    before = [p.data.copy() for p in params]
    state_before = opt.state_dict()
    inner = loss_closure(params, opt, coefficients())

    def closure():
        loss = inner()
        params[0].grad[1, 0] = bad  # parameter 0 is checked and fine until the last one
        params[0].grad[2, 1] = bad
        return loss

    with pytest.raises(NonFiniteGradientError) as info:
        opt.step(closure)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FloatingPointError)
    assert "parameter 0 (shape (3, 2)) has 2 non-finite values" in str(info.value)
    assert type(opt).__name__ + ".step" in str(info.value)
    for b, p in zip(before, params, strict=True):
        np.testing.assert_array_equal(p.data, b)
    assert_state_dicts_equal(opt.state_dict(), state_before)


def test_non_finite_check_covers_every_parameter_before_updating():
    a, b = Param(np.ones(2)), Param(np.ones((3, 2)))
    opt = optim.Adam([a, b])
    a.grad = np.ones(2)
    b.grad = np.ones((3, 2))
    b.grad[0, 0] = np.nan
    message = r"parameter 1 \(shape \(3, 2\)\) has 1 non-finite value;"
    with pytest.raises(FloatingPointError, match=message):
        opt.step()
    np.testing.assert_array_equal(a.data, np.ones(2))  # the earlier parameter is untouched


def test_large_finite_gradients_are_not_mistaken_for_non_finite():
    p = Param(np.zeros(3))
    opt = optim.SGD([p], lr=1e-310)
    p.grad = np.array([1e308, 1e308, 1e308])  # the sum overflows; the values are finite
    opt.step()
    assert np.all(np.isfinite(p.data))


@given(sizes=st.lists(st.integers(1, 150), min_size=1, max_size=3), data=st.data())
def test_a_non_finite_value_is_found_whatever_the_number_of_values(sizes, data):
    """check_finite sums few values in Python and many in NumPy: either way one NaN or inf
    anywhere raises, naming its parameter, before any change, and values so large that
    their sum overflows pass."""
    rng = np.random.default_rng(sum(sizes))
    params = [Param(rng.normal(size=n)) for n in sizes]
    before = [p.data.copy() for p in params]
    opt = optim.SGD(params, lr=1e-310)
    for p in params:
        p.grad = np.full_like(p.data, 1e308)
    opt.step()
    j = data.draw(st.integers(0, len(sizes) - 1))
    params[j].grad[data.draw(st.integers(0, sizes[j] - 1))] = data.draw(
        st.sampled_from([np.nan, np.inf, -np.inf]))
    after = [p.data.copy() for p in params]
    with pytest.raises(NonFiniteGradientError, match=rf"parameter {j} \(shape \({sizes[j]},\)\) "
                                                      r"has 1 non-finite value;"):
        opt.step()
    for a, b, p in zip(before, after, params, strict=True):
        np.testing.assert_array_equal(p.data, b)
        assert np.all(np.isfinite(p.data)) and not np.array_equal(a, b)


def test_check_finite_false_lets_values_through():
    p = Param(np.zeros(3))
    opt = optim.SGD([p], lr=0.1, check_finite=False)
    p.grad = np.array([np.nan, np.inf, 1.0])
    opt.step()
    assert np.isnan(p.data[0]) and p.data[1] == -np.inf and p.data[2] == -0.1

    q = Param(np.zeros(3))
    opt = optim.RProp([q], step_init=0.1, check_finite=False)
    q.grad = np.array([np.nan, np.inf, -1.0])
    opt.step()
    assert np.isnan(q.data[0])
    np.testing.assert_array_equal(q.data[1:], [-0.1, 0.1])
    np.testing.assert_array_equal(opt.state_dict()["state.0.step_size"], [0.1] * 3)


def test_rmsprop_nesterov_restores_parameters_when_the_closure_fails():
    params = make_params(np.random.default_rng(5))
    opt = optim.RMSPropNesterov(params)
    run_steps(opt, params, 3)  # non-zero velocity, so the look-ahead moves the parameters
    before = [p.data.copy() for p in params]
    state_before = opt.state_dict()

    def failing():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        opt.step(failing)
    for b, p in zip(before, params, strict=True):
        np.testing.assert_array_equal(p.data, b)
    assert_state_dicts_equal(opt.state_dict(), state_before)


# --------------------------------------------------------------------------------------
# state_dict / load_state_dict
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", [0, 1, 4])
@pytest.mark.parametrize("name", NAMES)
def test_run_split_by_save_and_load_equals_the_run_in_one_piece(name, split):
    total = 7
    whole_params = make_params(np.random.default_rng(6))
    first_params = copy_params(whole_params)
    whole = optim.create(name, whole_params, **CONFIGS[name])
    losses_whole = run_steps(whole, whole_params, total)

    first = optim.create(name, first_params, **CONFIGS[name])
    losses = run_steps(first, first_params, split)
    saved = first.state_dict()
    del first
    resumed_params = copy_params(first_params)
    resumed = optim.create(name, resumed_params, **OTHER[name])
    resumed.load_state_dict(saved)
    assert resumed.hyperparameters == whole.hyperparameters
    losses += run_steps(resumed, resumed_params, total - split)

    assert losses == losses_whole
    for a, b in zip(whole_params, resumed_params, strict=True):
        assert np.array_equal(a.data, b.data)
    assert_state_dicts_equal(resumed.state_dict(), whole.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_returns_copies(name):
    params = make_params(np.random.default_rng(7))
    twin = copy_params(params)
    opt = optim.create(name, params, **CONFIGS[name])
    ref = optim.create(name, twin, **CONFIGS[name])
    run_steps(opt, params, 2)
    run_steps(ref, twin, 2)
    for v in opt.state_dict().values():
        v[...] = 7
    run_steps(opt, params, 2)
    run_steps(ref, twin, 2)
    for a, b in zip(params, twin, strict=True):
        assert np.array_equal(a.data, b.data)
    assert_state_dicts_equal(opt.state_dict(), ref.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_load_state_dict_stores_copies(name):
    params = make_params(np.random.default_rng(8))
    opt = optim.create(name, params, **CONFIGS[name])
    run_steps(opt, params, 2)
    sd = opt.state_dict()
    fresh = optim.create(name, copy_params(params), **CONFIGS[name])
    fresh.load_state_dict(sd)
    for v in sd.values():
        v[...] = 7
    assert_state_dicts_equal(fresh.state_dict(), opt.state_dict())


def test_state_dict_format():
    p, q = Param(np.zeros((2, 2))), Param(np.zeros(3, dtype=np.float32))
    sd = optim.Adam([{"params": [p]}, {"params": [q], "lr": 0.5}], lr=0.01).state_dict()
    assert list(sd) == ["groups.0.lr", "groups.0.betas", "groups.0.eps", "groups.0.params",
                        "groups.1.lr", "groups.1.betas", "groups.1.eps", "groups.1.params",
                        "state.0.step", "state.0.exp_avg", "state.0.exp_avg_sq",
                        "state.1.step", "state.1.exp_avg", "state.1.exp_avg_sq"]
    assert sd["groups.0.lr"] == 0.01 and sd["groups.1.lr"] == 0.5
    np.testing.assert_array_equal(sd["groups.0.betas"], [0.9, 0.999])
    np.testing.assert_array_equal(sd["groups.1.params"], [1])
    assert sd["state.0.step"].dtype == np.int64 and sd["state.0.step"] == 0
    assert sd["state.0.exp_avg"].shape == (2, 2) and sd["state.1.exp_avg"].dtype == np.float32
    assert set(entry(optim.SGD([p], lr=0.1).state_dict(), 0)) == {"step", "momentum_buffer"}
    assert set(entry(optim.RProp([p]).state_dict(), 0)) == {"step", "step_size", "prev_sign"}
    assert set(entry(optim.RMSPropNesterov([p]).state_dict(), 0)) == {
        "step", "velocity", "mean_square"}


def _corrupt(sd, how):
    if how == "optimizer":
        other = optim.Adam if "groups.0.momentum" in sd else optim.SGD
        sd = other([Param(np.zeros(1))], lr=0.1).state_dict()
    elif how == "too_few":
        sd = {k: v for k, v in sd.items() if not k.startswith("state.2.")}
    elif how == "shape":
        sd[buffer_key(sd, 0)] = np.zeros((2, 3))
    elif how == "missing_key":
        del sd[buffer_key(sd, 1)]
    elif how == "extra_key":
        sd["state.1.bogus"] = np.zeros(4)
    elif how == "step":
        sd["state.2.step"] = np.array(-1)
    elif how == "hyperparameter_value":
        key = next(iter(sd))
        sd[key] = np.full_like(sd[key], -5.0)
    elif how == "group":
        sd["groups.0.params"] = np.array([2, 0, 1])
    return sd


CORRUPTIONS = {
    "optimizer": "does not fit this optimizer: missing .*; unexpected",
    "too_few": r"does not fit this optimizer: missing \['state.2.",
    "shape": r"has shape \(2, 3\), the parameter has shape \(3, 2\)",
    "missing_key": r"does not fit this optimizer: missing \['state.1.",
    "extra_key": r"does not fit this optimizer: unexpected \['state.1.bogus'\]$",
    "step": "state.2.step must be a non-negative integer",
    "hyperparameter_value": "invalid",
    "group": r"group 0 holds the parameters \[2 0 1\]",
}


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
@pytest.mark.parametrize("name", NAMES)
def test_load_state_dict_validates_and_changes_nothing_on_error(name, how):
    params = make_params(np.random.default_rng(9))
    opt = optim.create(name, params, **CONFIGS[name])
    run_steps(opt, params, 2)
    before = opt.state_dict()
    with pytest.raises(ValueError, match=CORRUPTIONS[how]):
        opt.load_state_dict(_corrupt(opt.state_dict(), how))
    assert_state_dicts_equal(opt.state_dict(), before)


def test_rprop_load_checks_state_values():
    p = Param(np.zeros(3))
    opt = optim.RProp([p])
    sd = opt.state_dict()
    sd["state.0.prev_sign"] = np.array([0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="prev_sign"):
        opt.load_state_dict(sd)
    sd = opt.state_dict()
    sd["state.0.step_size"] = np.array([1e-3, 0.0, 1e-3])
    with pytest.raises(ValueError, match="step_size must be > 0"):
        opt.load_state_dict(sd)


def test_load_state_dict_refuses_extra_top_level_keys():
    opt = optim.Adam([Param(np.zeros(2))])
    sd = opt.state_dict()
    sd["momentum"] = 0.9
    with pytest.raises(ValueError, match=r"^Adam.load_state_dict: the state dict does not fit "
                                         r"this optimizer: unexpected \['momentum'\]$"):
        opt.load_state_dict(sd)


# A valid change of one hyperparameter of CONFIGS that keeps every state array in use.
CHANGED = {"sgd": {"lr": 0.3}, "rprop": {"eta_plus": 1.5}, "rmsprop_nesterov": {"lr": 0.3},
           "adam": {"lr": 0.2}}

# Each way a buffer can be wrong, as (how to spoil it, what the message says is wrong).
BAD_BUFFERS = {
    "nan": (lambda a: np.where(a == a.flat[0], np.nan, a), "holds NaN or infinite values"),
    "inf": (lambda a: np.full_like(a, -np.inf), "holds NaN or infinite values"),
    "complex": (lambda a: a.astype(np.complex128), "has dtype complex128; it must hold real"),
    "string": (lambda a: a.astype(str), "has dtype <U32; it must hold real numbers"),
    "object": (lambda a: a.astype(object), "has dtype object; it must hold real numbers"),
    "bool": (lambda a: a != 0, "has dtype bool; it must hold real numbers"),
    "list": (lambda a: a.tolist(), "must be a NumPy array, got list"),
}


@pytest.mark.parametrize("how", sorted(BAD_BUFFERS))
@pytest.mark.parametrize("name", NAMES)
def test_load_state_dict_refuses_a_bad_buffer_and_changes_nothing(name, how):
    """Parameter 1's first buffer is spoiled, in a state dict whose hyperparameters and
    other entries are fine but different from the optimizer's: nothing may be loaded."""
    params = make_params(np.random.default_rng(10))
    opt = optim.create(name, params, **CONFIGS[name])
    run_steps(opt, params, 2)
    before = opt.state_dict()
    other_params = copy_params(params)
    other = optim.create(name, other_params, **{**CONFIGS[name], **CHANGED[name]})
    run_steps(other, other_params, 3)
    sd = other.state_dict()
    full_key = buffer_key(sd, 1)
    key = full_key.split(".")[-1]
    spoil, problem = BAD_BUFFERS[how]
    sd[full_key] = spoil(sd[full_key])
    expected = rf"^{type(opt).__name__}\.load_state_dict: state of parameter 1: {key} {problem}"
    with pytest.raises(ValueError, match=expected):
        opt.load_state_dict(sd)
    assert_state_dicts_equal(opt.state_dict(), before)


@pytest.mark.parametrize("name", NAMES)
def test_load_state_dict_refuses_values_that_overflow_the_parameter_dtype(name):
    """1e300 is a finite float64 but inf as float32: refused with ValueError, also when the
    caller asks NumPy to raise on overflow (as the minigrad command line does)."""
    params = [Param(np.ones((2, 2), dtype=np.float32))]
    opt = optim.create(name, params, **CONFIGS[name])
    before = opt.state_dict()
    sd = opt.state_dict()
    key = buffer_key(sd, 0).split(".")[-1]
    sd[f"state.0.{key}"] = np.full((2, 2), 1e300)
    message = rf"^{type(opt).__name__}\.load_state_dict: .*{key} has values that overflow the " \
              r"parameter's dtype float32$"
    with np.errstate(over="raise"), pytest.raises(ValueError, match=message):
        opt.load_state_dict(sd)
    assert_state_dicts_equal(opt.state_dict(), before)


# Values a finite, real, well-shaped buffer still cannot hold under its rule.
OUT_OF_DOMAIN = [
    ("adam", "exp_avg_sq", -1e-12, "exp_avg_sq has negative values; it is a mean of squares"),
    ("rmsprop_nesterov", "mean_square", -0.5,
     "mean_square has negative values; it is a mean of squares"),
    ("rprop", "step_size", 0.0, "step_size must be > 0"),
    ("rprop", "step_size", -0.01, "step_size must be > 0"),
    ("rprop", "prev_sign", 0.5, "prev_sign must hold only -1, 0 or 1"),
]


@pytest.mark.parametrize(("name", "key", "value", "problem"), OUT_OF_DOMAIN)
def test_load_state_dict_refuses_a_buffer_outside_its_rule_domain(name, key, value, problem):
    params = make_params(np.random.default_rng(11))
    opt = optim.create(name, params, **CONFIGS[name])
    run_steps(opt, params, 2)
    before = opt.state_dict()
    sd = opt.state_dict()
    sd[f"state.0.{key}"].flat[-1] = value
    expected = rf"^{type(opt).__name__}\.load_state_dict: state of parameter 0: {problem}"
    with pytest.raises(ValueError, match=expected):
        opt.load_state_dict(sd)
    assert_state_dicts_equal(opt.state_dict(), before)


@pytest.mark.parametrize("name", ["sgd", "rmsprop_nesterov"])
def test_a_step_that_fails_midway_changes_nothing(name):
    """Under np.errstate(over="raise") the update of the second parameter overflows: the
    first, already computed, must not have been written (nor moved to a look-ahead point)."""
    params = make_params(np.random.default_rng(12))
    opt = optim.create(name, params, **{**CONFIGS[name], "lr": 1e300})
    before = [p.data.copy() for p in params]
    state_before = opt.state_dict()

    def closure():
        for p, scale in zip(params, [1.0, 1e10, 1.0], strict=True):
            p.grad = np.full_like(p.data, scale)
        return 0.0

    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        opt.step(closure)
    for b, p in zip(before, params, strict=True):
        np.testing.assert_array_equal(p.data, b)
    assert_state_dicts_equal(opt.state_dict(), state_before)


@given(start=st.floats(-1e3, 1e3), velocity=st.floats(1e38, 3e38))
def test_a_look_ahead_move_that_fails_midway_moves_nothing(start, velocity):
    """Two dtypes, two runs of parameters, moved one after the other to the look-ahead
    point: when the second move overflows (np.errstate(over="raise")), the first is moved
    back before the error propagates."""
    params = [Param(np.full(3, start)), Param(np.full(2, 3e38, np.float32))]
    opt = optim.RMSPropNesterov(params, momentum=0.9)
    state = opt.state_dict()
    state["state.0.step"] = state["state.1.step"] = np.array(1)  # at step 0: no velocity yet
    state["state.1.velocity"] = np.full(2, velocity, np.float32)
    opt.load_state_dict(state)
    state["state.0.velocity"] = np.ones(3)
    opt.load_state_dict(state)
    before = [p.data.copy() for p in params]
    called = []
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        opt.step(lambda: called.append(1))
    assert not called
    for b, p in zip(before, params, strict=True):
        np.testing.assert_array_equal(p.data, b)
    assert_state_dicts_equal(opt.state_dict(), state)


@given(values=hnp.arrays(np.float64, hnp.array_shapes(max_dims=2), elements=st.floats(-9, 9)))
def test_an_update_is_not_cast_into_an_integer_array(values):
    """A parameter whose .data was replaced by an integer array after construction is not
    truncated: the step raises ValueError naming it and the array keeps its values."""
    p = Param(values.copy())
    opt = optim.SGD([p], lr=0.1)
    p.data = np.round(values).astype(np.int64)
    p.grad = np.ones_like(values)
    with pytest.raises(ValueError, match=r"parameter 0 has dtype int64, expected float64"):
        opt.step()
    np.testing.assert_array_equal(p.data, np.round(values))


def read_only(a: np.ndarray, tmp_path) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


def memory_mapped(a: np.ndarray, tmp_path) -> np.ndarray:
    """As weights loaded by ``np.load(path, mmap_mode="r")``."""
    np.save(tmp_path / "w.npy", a)
    return np.load(tmp_path / "w.npy", mmap_mode="r")


# An array a parameter's .data may be replaced by that cannot take its update in place.
UNFIT = {
    "read-only": (read_only, r"has a read-only \.data"),
    "memory-mapped": (memory_mapped, r"has a read-only \.data"),
    "float32": (lambda a, _: a.astype(np.float32), r"has dtype float32, expected float64"),
    "int64": (lambda a, _: np.round(a).astype(np.int64), r"has dtype int64, expected float64"),
}


@pytest.mark.parametrize("when", ["before the step", "in the closure"])
@pytest.mark.parametrize("how", sorted(UNFIT))
@pytest.mark.parametrize("name", NAMES)
def test_an_array_that_cannot_take_its_update_raises_before_any_change(name, how, when,
                                                                        tmp_path):
    """Parameter 1's .data replaced (after two steps) by a read-only array, or one of
    another dtype (which would round or truncate the update): the step raises a ValueError
    naming it before anything is written, so parameters 0 and 2, and every step count and
    state array, are as before (moved back from the look-ahead point), and the next step
    with a fit array is the step that failed."""
    params = make_params(np.random.default_rng(9))
    kept = copy_params(params)
    opt, opt_kept = (optim.create(name, ps, **CONFIGS[name]) for ps in (params, kept))
    run_steps(opt, params, 2)
    run_steps(opt_kept, kept, 2)
    before, state_before = [p.data.copy() for p in params], opt.state_dict()
    replace, message = UNFIT[how]
    unfit = replace(params[1].data, tmp_path)
    unfit_before = np.array(unfit)
    inner = loss_closure(params, opt, coefficients())

    def closure() -> float:
        loss = inner()
        if when == "in the closure":
            params[1].data = unfit
        return loss

    if when == "before the step":
        params[1].data = unfit
    with pytest.raises(ValueError, match=rf"^{type(opt).__name__}\.step: parameter 1 "
                                         rf"{message}.*; no parameter was changed$"):
        opt.step(closure)
    for j in (0, 2):
        np.testing.assert_array_equal(params[j].data, before[j])
    assert params[1].data is unfit
    np.testing.assert_array_equal(unfit, unfit_before)
    assert_state_dicts_equal(opt.state_dict(), state_before)
    params[1].data = before[1]
    run_steps(opt, params, 1)
    run_steps(opt_kept, kept, 1)
    for p, q in zip(params, kept, strict=True):
        np.testing.assert_array_equal(p.data, q.data)
    assert_state_dicts_equal(opt.state_dict(), opt_kept.state_dict())


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------


def test_registry_names_and_create():
    assert set(optim.OPTIMIZERS) == {"sgd", "rprop", "rmsprop_nesterov", "adam", "adamw"}
    p = [Param(np.zeros(2))]
    assert type(optim.create("sgd", p, lr=0.1)) is optim.SGD
    assert type(optim.create("rprop", p)) is optim.RProp
    assert type(optim.create("rmsprop_nesterov", p)) is optim.RMSPropNesterov
    assert type(optim.create("RMSProp-Nesterov", p)) is optim.RMSPropNesterov
    assert type(optim.create("adam", p, lr=0.1, check_finite=False)) is optim.Adam
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'.*adam, adamw, rmsprop_n"):
        optim.create("lbfgs", p)
    # (naming what it takes, as its docstring says: it raised Python's bare TypeError)
    with pytest.raises(TypeError, match=r"^Adam: unknown hyperparameter momentum; it takes lr, "
                                        r"betas, eps, check_finite$"):
        optim.create("adam", p, momentum=0.9)
    with pytest.raises(TypeError, match=r"^SGD: unknown hyperparameters betas, decay; it takes "
                                        r"lr, momentum, nesterov, weight_decay, check_finite$"):
        optim.create("sgd", p, lr=0.1, decay=0.9, betas=(0.9, 0.99))
    for name, cls in optim.OPTIMIZERS.items():
        assert cls.name == name and issubclass(cls, optim.Optimizer)


def test_views_checked_once_are_checked_again_when_one_changes():
    """Views of one buffer laid end to end are checked for overlap once (their compare by
    pairs cost 9 ms a step for 300 of them): a view that overlaps another later is still
    refused, and nothing changes."""
    buf = np.arange(6.0)
    a, b = Param(buf[:3]), Param(buf[3:])
    a.grad = b.grad = np.ones(3)
    opt = optim.SGD([a, b], lr=0.5)
    for _ in range(3):
        opt.step()
    np.testing.assert_array_equal(buf, np.arange(6.0) - 1.5)
    b.data = buf[2:5]
    before = buf.copy()
    with pytest.raises(ValueError, match="parameters 0 and 1 share memory"):
        opt.step()
    np.testing.assert_array_equal(buf, before)


@pytest.mark.parametrize("name", NAMES)
def test_a_step_updates_each_parameter_in_its_own_array(name):
    """The optimizer holds no parameter's array between steps nor while its closure runs,
    so a graph recorded there shares each array and `.data` after backward hands it back
    as it is: five steps on a layer update the same arrays, copying none (copy-on-write
    would have made a new one at every step)."""
    import weakref

    import minigrad as mg

    layer = mg.nn.Linear(3, 2)
    x, target = np.ones((4, 3)), np.zeros((4, 2))
    opt = optim.create(name, layer.parameters(), **CONFIGS[name])

    def closure():
        opt.zero_grad()
        loss = mg.mse_loss(layer(x), target)
        loss.backward()
        return loss

    opt.step(closure)
    arrays = [weakref.ref(p._data) for p in layer.parameters()]
    before = [p.data.copy() for p in layer.parameters()]
    for _ in range(5):
        opt.step(closure)
    assert [a() for a in arrays] == [p._data for p in layer.parameters()]
    assert not any(np.array_equal(b, p.data) for b, p in zip(before, layer.parameters(),
                                                             strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_overlapping_as_strided_views_are_refused_before_any_change(name):
    """Two parameters made by `as_strided` over one buffer, overlapping: each view's base is
    a wrapper of its own (NumPy's stride tricks), so they looked owned apart and were not
    compared; one update was lost silently. Their owner is the buffer the wrappers hold."""
    from numpy.lib.stride_tricks import as_strided

    buffer = np.linspace(-1.0, 1.0, 8)
    a = Param(as_strided(buffer, shape=(4,), strides=(8,)))
    b = Param(as_strided(buffer[2:], shape=(4,), strides=(8,)))
    for p in (a, b):
        p.grad = np.full(4, 0.5)
    before = buffer.copy()
    opt = optim.create(name, [a, b], **CONFIGS[name])
    with pytest.raises(ValueError, match="parameters 0 and 1 share memory"):
        opt.step(lambda: 0.0)
    np.testing.assert_array_equal(buffer, before)


def _refused_as_overlapping(params):
    """An SGD step over `params` (two of four elements) is refused before any change."""
    for p in params:
        p.grad = np.full(4, 0.5)
    before = [p.data.copy() for p in params]
    with pytest.raises(ValueError, match="parameters 0 and 1 share memory"):
        optim.create("sgd", params, lr=0.1).step(lambda: 0.0)
    for p, b in zip(params, before, strict=True):
        np.testing.assert_array_equal(p.data, b)


def test_an_owner_whose_base_leads_back_to_its_array_ends_the_walk():
    """An object handing out an array of its memory and keeping that array as its `.base`
    (array.base is the object, the object's .base the array again): the walk to the owner
    went round for ever, and step() hung. It ends where it would loop, and overlapping
    views of that array are refused as any others are."""
    class Holder:
        def __init__(self):
            self.store = np.zeros(8)
            self.base = np.asarray(self)

        @property
        def __array_interface__(self):
            return self.store.__array_interface__

    a = Holder().base
    assert a.base.base is a
    params = [Param(a[:4]), Param(a[2:6])]
    _refused_as_overlapping(params)


def test_views_whose_bases_lead_round_a_ring_have_one_owner():
    """Two holders, each keeping as its `.base` the other's array (a ring of bases): the walk
    stopped where it would go round, at a different array for each view, so overlapping
    views looked owned apart and one update was lost. One member stands for the ring."""
    class Holder:
        def __init__(self, store):
            self.store = store
            self.base = None

        @property
        def __array_interface__(self):
            return self.store.__array_interface__

    store = np.zeros(8)
    h1, h2 = Holder(store), Holder(store)
    a, b = np.asarray(h1), np.asarray(h2)
    h1.base, h2.base = b, a
    params = [Param(a[:4]), Param(b[2:6])]
    _refused_as_overlapping(params)


def test_views_behind_a_long_chain_of_bases_are_compared():
    """Views of one buffer behind over a thousand as_strided wrappers each: the walk to the
    owner stopped at a thousand, at a different array for each, so their overlap was not
    refused. Such arrays share an owner of their own, compared by shares_memory."""
    from numpy.lib.stride_tricks import as_strided

    buffer = np.zeros(8)

    def wrapped(n):
        v = buffer
        for _ in range(n):
            v = as_strided(v, shape=(8,), strides=(8,))
        return v

    params = [Param(wrapped(1200)[:4]), Param(wrapped(1100)[2:6])]
    _refused_as_overlapping(params)


def test_a_view_past_ten_thousand_bases_is_compared_with_every_other():
    """An array whose chain of bases runs past 10,000 has no owner the walk finds: it was
    compared only with other such arrays, not with a plain view of the same buffer, and the
    overlap went unrefused. It is compared with every parameter's array now."""
    from numpy.lib.stride_tricks import as_strided

    buffer = np.zeros(8)
    deep = buffer
    for _ in range(10_001):
        deep = as_strided(deep, shape=(8,), strides=(8,))
    params = [Param(deep[:4]), Param(buffer[2:6])]
    _refused_as_overlapping(params)


class _Delayed(optim.Optimizer):
    """A user's rule that keeps its gradient in its state as it is (not a copy) and steps by
    the previous one: ``keeps_inputs`` is left at its default, so the shell must hand it
    copies of its flat buffers, which the next step's gradients would overwrite."""

    name = "delayed"
    bounds = {"lr": optim.LEARNING_RATE}

    def __init__(self, params, lr: float = 0.5) -> None:
        super().__init__(params, {"lr": lr})

    def init(self, h, p):
        return {"last": np.zeros_like(p)}

    def update(self, h, t, p, g, state):
        return h.lr * state["last"], {"last": g}


@given(st.lists(hnp.arrays(np.float64, st.integers(1, 3),
                           elements=st.floats(-10, 10, allow_nan=False)), min_size=2, max_size=5))
def test_a_rule_that_keeps_its_gradient_gets_its_own_copy(grads):
    """Each step moves by lr times the gradient of the step before, whatever the shell lays
    into its buffers since; the rule's state holds the last gradient (a copy of the buffer,
    not the buffer)."""
    size = len(grads[0])
    grads = [np.resize(g, size) for g in grads]
    p = Param(np.zeros(size))
    opt = _Delayed([p])
    expected = np.zeros(size)
    for k, g in enumerate(grads):
        p.grad = g.copy()
        opt.step()
        if k:
            expected = expected - 0.5 * grads[k - 1]
        np.testing.assert_array_equal(p.data, expected)
        np.testing.assert_array_equal(opt.state_dict()["state.0.last"], g)


class _AveragedSGD(optim.SGD):
    """SGD along the mean of this gradient and the last (kept in its state): a user's rule
    extending a built-in one, whose keeps_inputs=False it must not inherit."""

    def update(self, h, t, p, g, state):
        last = g if t == 1 else state["momentum_buffer"]
        return h.lr * (g + last) / 2, {"momentum_buffer": g}


@given(st.lists(hnp.arrays(np.float64, 3, elements=st.floats(-10, 10, allow_nan=False)),
                min_size=2, max_size=5))
def test_a_subclass_of_a_built_in_rule_that_keeps_its_gradient_gets_its_own_copy(grads):
    """A rule extending SGD with its own update keeps its inputs (the shell hands it copies)
    unless it says otherwise: it inherited SGD's keeps_inputs=False, so the gradient its
    state kept was the shell's buffer, overwritten by the next step's (found by review)."""
    assert not optim.SGD.keeps_inputs and _AveragedSGD.keeps_inputs
    p = Param(np.zeros(3))
    opt = _AveragedSGD([p], lr=0.5)
    expected, last = np.zeros(3), None
    for g in grads:
        p.grad = g.copy()
        opt.step()
        expected = expected - 0.5 * (g + (g if last is None else last)) / 2
        last = g
        np.testing.assert_array_equal(p.data, expected)
        np.testing.assert_array_equal(opt.state_dict()["state.0.momentum_buffer"], g)


class _KeepsLast:
    """A mixin's update along the mean of this gradient and the last, kept in its state."""

    def update(self, h, t, p, g, state):
        last = g if t == 1 else state["momentum_buffer"]
        return h.lr * (g + last) / 2, {"momentum_buffer": g}


class _MixedSGD(_KeepsLast, optim.SGD):
    pass


def test_a_rule_whose_update_comes_from_a_mixin_keeps_its_inputs():
    """keeps_inputs=False vouches for the update of the class that declares it (and its
    bases'): an update from a mixin before SGD in the MRO kept the shell's buffer in its
    state, overwritten by the next step's gradient (found by this stop's third review)."""
    assert _MixedSGD.keeps_inputs and not optim.AdamW.keeps_inputs
    p = Param(np.zeros(2))
    opt = _MixedSGD([p], lr=1.0)
    for g in ([1.0, 1.0], [10.0, 10.0], [100.0, 100.0]):
        p.grad = np.array(g)
        opt.step()
    np.testing.assert_array_equal(p.data, [-61.5, -61.5])  # -(1 + 5.5 + 55)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("grad", "what"), [
    (np.ones(3, complex), r"of dtype complex128"),
    (np.ones(3, np.complex64), r"of dtype complex64"),
    ("x", r"a str of dtype <U1"), (np.array(["a", "b", "c"]), r"of dtype <U1"),
    ([1j, 2j, 3j], r"a list of dtype complex128"), (np.array([None] * 3), r"of dtype object")])
def test_a_gradient_that_is_not_real_numbers_is_named_by_its_type(name, grad, what):
    """A complex .grad raised NumPy's raw "Cannot cast array data from dtype('complex128')"
    (nothing changed: good), a string one "gradient shape ()": a TypeError naming the
    optimizer, the parameter and the dtype now, and still nothing changes."""
    params = [Param(np.ones(2)), Param(np.full(3, 2.0))]
    opt = optim.create(name, params, **CONFIGS[name])
    params[0].grad, params[1].grad = np.ones(2), grad
    owner = optim.OPTIMIZERS[name].__name__
    with pytest.raises(TypeError, match=rf"^{owner}.step: the gradient of parameter 1 is {what}, "
                                        r"not real numbers; no parameter was changed$"):
        opt.step(lambda: 0.0)
    np.testing.assert_array_equal(params[0].data, np.ones(2))
    np.testing.assert_array_equal(params[1].data, np.full(3, 2.0))


def test_an_optimizers_zero_grad_inside_a_compiled_function_is_refused():
    """It would run only when traced: the gradients would add up across the replays (the
    README names it as a side effect to keep outside; model.zero_grad() refuses it too)."""
    import minigrad as mg
    from minigrad import nn

    model = nn.Linear(2, 1, rng=np.random.default_rng(0))
    opt = optim.SGD(model.parameters(), lr=0.1)

    def step(x):
        opt.zero_grad()
        return model(x).sum()

    with pytest.raises(mg.TraceError, match=r"SGD.zero_grad\(\) inside a traced function"):
        mg.compile(step)(np.ones((3, 2)))
