"""Copies of what a training run holds, by `copy.deepcopy` and by pickle: a copied (model,
optimizer, schedule) goes on as the original does, bit for bit; a copied compiled function
runs on the copied module's weights; an unpickled tensor owns its array."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import nn, optim
from optim.optimizer import _Bucket

OPTIMIZERS = {
    "sgd": {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    "rprop": {"step_init": 0.01},
    "rmsprop_nesterov": {"lr": 0.05, "momentum": 0.8},
    "adam": {"lr": 0.01, "betas": (0.8, 0.99)},
    "adamw": {"lr": 0.01, "weight_decay": 0.1},
}
COPIES = ["deepcopy", "pickle2", "pickle4", "pickle5", "pickle5-out-of-band"]


def copied(x, how: str):
    """`x` copied by `copy.deepcopy` or pickled and loaded (at a protocol; out of band: the
    arrays' memory handed over as buffers, not copied into the stream)."""
    if how == "deepcopy":
        return copy.deepcopy(x)
    if how == "pickle5-out-of-band":
        buffers: list = []
        data = pickle.dumps(x, protocol=5, buffer_callback=buffers.append)
        return pickle.loads(data, buffers=buffers)
    return pickle.loads(pickle.dumps(x, protocol=int(how.removeprefix("pickle"))))


def make_run(name: str, seed: int, dtype: type):
    """A two-layer model whose layers are two parameter groups, its optimizer, and a
    schedule where the optimizer has a learning rate."""
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(3, 4, rng=rng, dtype=dtype), mg.tanh,
                          nn.Linear(4, 2, rng=rng, dtype=dtype))
    groups = [{"params": list(model[0].parameters())},
              {"params": list(model[2].parameters()), "weight_decay": 0.0}
              if "weight_decay" in OPTIMIZERS[name] else {"params": list(model[2].parameters())}]
    opt = optim.create(name, groups, **OPTIMIZERS[name])
    schedule = optim.ExponentialLR(opt, gamma=0.9) if "lr" in type(opt).bounds else None
    return model, opt, schedule


def train(run, x: np.ndarray, t: np.ndarray, steps: int) -> None:
    model, opt, schedule = run

    def closure():
        opt.zero_grad()
        loss = mg.mse_loss(model(x), t)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
        if schedule is not None:
            schedule.step()


def assert_same_run(a, b) -> None:
    """The same weights, optimizer state and schedule, bit for bit, and nothing shared."""
    for (name, p), (name_b, q) in zip(a[0].named_parameters(), b[0].named_parameters(),
                                      strict=True):
        assert name == name_b and p.data.dtype == q.data.dtype
        np.testing.assert_array_equal(p.data, q.data, strict=True)
        assert not np.shares_memory(p.data, q.data)
    state, state_b = a[1].state_dict(), b[1].state_dict()
    assert list(state) == list(state_b)
    for key in state:
        np.testing.assert_array_equal(state[key], state_b[key], err_msg=key, strict=True)
    if a[2] is not None:
        assert (a[2].epoch, a[2].base_lrs) == (b[2].epoch, b[2].base_lrs)
        assert b[2].optimizer is b[1]


@given(name=st.sampled_from(sorted(OPTIMIZERS)), how=st.sampled_from(COPIES),
       before=st.integers(0, 3), after=st.integers(1, 3), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_a_copied_run_follows_the_original_bit_for_bit(name, how, before, after, seed, dtype):
    rng = np.random.default_rng(seed)
    x, t = rng.normal(size=(5, 3)).astype(dtype), rng.normal(size=(5, 2)).astype(dtype)
    run = make_run(name, seed, dtype)
    train(run, x, t, before)
    twin = copied(run, how)
    assert twin[1].parameters == tuple(twin[0].parameters())  # the copy's own parameters
    train(run, x, t, after)
    train(twin, x, t, after)
    assert_same_run(run, twin)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_deep_copied_optimizer_steps_by_the_usual_path(dtype, monkeypatch):
    """A deep copy's buffers and dtype are those its step's usual path expects (a copy of
    a dtype is equal to NumPy's, not identical: the general path would be taken instead).
    (An unpickled one takes the general path: the same numbers, above.)"""
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(5, 3)).astype(dtype), rng.normal(size=(5, 2)).astype(dtype)
    run = make_run("adam", 0, dtype)
    how = "deepcopy"
    train(run, x, t, 1)
    twin = copied(run, how)

    def refused(self, real):
        raise AssertionError("the general path was taken")

    monkeypatch.setattr(_Bucket, "compute_apart", refused)
    train(twin, x, t, 2)
    train(run, x, t, 2)
    assert_same_run(run, twin)
    for bucket, copied_bucket in zip(run[1]._buckets, twin[1]._buckets, strict=True):
        for name in ("buffer", "gradients"):  # (out of band, the original's own)
            assert not np.shares_memory(getattr(bucket, name), getattr(copied_bucket, name))


# --- tensors ---------------------------------------------------------------------------

arrays = hnp.arrays(st.sampled_from([np.float64, np.float32, np.float16]),
                    hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
                    elements=st.floats(-10, 10, width=16))


def _default_getstate(t):
    """Python's own state of a tensor, as a pickle written before `Tensor.__getstate__`
    holds it (its arrays out of band at protocol 5, if asked)."""
    return object.__getstate__(t)


@given(values=arrays, fortran=st.booleans(), how=st.sampled_from(COPIES),
       kind=st.sampled_from([mg.Tensor, nn.Parameter]), old_pickle=st.booleans())
def test_an_unpickled_tensor_owns_its_array(values, fortran, how, kind, old_pickle):
    """Writes through the copy, or to its .grad, reach neither the original nor the graph
    recorded on it; the dtype, the layout, the class and the flag are kept. (Out of band, the
    copy's array was the original's; a pickle made without `Tensor.__getstate__`, whose
    arrays went out of band, loads into arrays of the tensor's own too.)"""
    values = np.asfortranarray(values) if fortran else values
    w = kind(values) if kind is nn.Parameter else kind(values, requires_grad=True)
    w.grad = np.ones_like(values)
    with pytest.MonkeyPatch.context() as patch:
        if old_pickle:
            patch.setattr(mg.Tensor, "__getstate__", _default_getstate)
        w2 = copied(w, how)
    assert type(w2) is kind and w2.requires_grad
    for original, twin in ((w.data, w2.data), (w.grad, w2.grad)):
        np.testing.assert_array_equal(twin, original, strict=True)
        assert not np.shares_memory(twin, original)
        assert twin.flags.f_contiguous == original.flags.f_contiguous
    w.grad = None
    y = (w * w).sum()
    with mg.no_grad():
        w2 += 1
    w2.grad *= 3
    y.backward()
    np.testing.assert_array_equal(w.data, values)
    np.testing.assert_array_equal(w.grad, (2 * values).astype(values.dtype))


# --- compiled functions ----------------------------------------------------------------


class Net(nn.Module):
    """A module holding a compiled method of its own."""

    def __init__(self, seed: int) -> None:
        self.lin = nn.Linear(2, 1, rng=np.random.default_rng(seed))
        self.fast = mg.compile(self.loss)

    def loss(self, x, t):
        return mg.mse_loss(self.lin(x), t)


def eager_loss_and_grads(net: Net, x: np.ndarray, t: np.ndarray):
    net.zero_grad()
    loss = net.loss(x, t)
    loss.backward()
    return loss.item(), [p.grad for p in net.parameters()]


@given(seed=st.integers(0, 2**16), how=st.sampled_from(COPIES), called=st.booleans(),
       x=hnp.arrays(np.float64, (3, 2), elements=st.floats(-5, 5)),
       t=hnp.arrays(np.float64, (3, 1), elements=st.floats(-5, 5)))
def test_a_copied_module_compiles_its_own_method(seed, how, called, x, t):
    """The copy's compiled method reads the copy's weights (and gives them its gradients),
    as the copy's eager loss does, bit for bit, whatever the original's weights become."""
    net = Net(seed)
    if called:  # (the original's cache holds a program)
        net.fast(x, t)
    twin = copied(net, how)
    assert twin.fast.fn.__self__ is twin and twin.fast.signatures == 0
    before = [p.data.copy() for p in net.parameters()]
    with mg.no_grad():
        net.lin.weight += 1.0
    for p, value in zip(twin.parameters(), before, strict=True):
        np.testing.assert_array_equal(p.data, value)
    for model in (twin, net):
        expected, grads = eager_loss_and_grads(model, x, t)
        model.zero_grad()
        assert model.fast.value_and_backward(x, t) == expected
        for p, g in zip(model.parameters(), grads, strict=True):
            np.testing.assert_array_equal(p.grad, g, strict=True)


def test_a_deep_copy_of_a_compiled_method_is_its_module_copys():
    net = Net(0)
    fast = copy.deepcopy(net.fast)
    assert fast is not net.fast and fast.fn.__self__ is not net
    assert fast.fn.__self__.fast is fast  # (the cycle kept: one copy, not two)
    assert fast.cache_size == net.fast.cache_size


def test_a_shallow_copy_of_a_compiled_function_shares_its_cache():
    net = Net(0)
    x, t = np.ones((3, 2)), np.zeros((3, 1))
    net.fast(x, t)
    fast = copy.copy(net.fast)
    assert fast.fn == net.fast.fn
    assert fast(x, t).item() == net.fast(x, t).item() and fast.traces == 1  # not traced again


def test_a_compiled_lambda_does_not_pickle():
    with pytest.raises((pickle.PicklingError, AttributeError), match="lambda"):
        pickle.dumps(mg.compile(lambda x: x * 2))
