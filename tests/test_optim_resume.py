"""Optimizer state to and from a file with `minigrad.save` / `minigrad.load`: a run split by
a save and a load of the model, the optimizer and its schedule is the run in one piece, bit
for bit; a file for another optimizer is refused and changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad import optim
from minigrad.models.adder import Adder
from minigrad.models.data import addition_data
from minigrad.models.presets import AdderConfig
from minigrad.models.training import engine_objective, train

OPTIMIZERS = {
    "rmsprop_nesterov": {"lr": 0.05},
    "adam": {"lr": 0.01},
    "adamw": {"lr": 0.01, "weight_decay": 0.1},
    "sgd": {"lr": 0.1, "momentum": 0.9, "nesterov": True},
    "rprop": {},
}


def make_run(name: str, seed: int):
    model = Adder(AdderConfig(n_bits=5, n_states=3), rng=np.random.default_rng(seed))
    opt = optim.create(name, model.parameters(), **OPTIMIZERS[name])
    schedule = optim.ExponentialLR(opt, gamma=0.9) if "lr" in type(opt).bounds else None
    return model, opt, schedule


def run_epochs(model, opt, schedule, X, T, epochs: int, rng) -> list[float]:
    losses = []
    for _ in range(epochs):
        losses += train(engine_objective(model), opt, X, T, epochs=1, batch_size=8,
                        rng=rng).losses
        if schedule is not None:
            schedule.step()
    return losses


@settings(max_examples=10, deadline=None)
@given(name=st.sampled_from(sorted(OPTIMIZERS)), seed=st.integers(0, 2**16),
       split=st.integers(0, 3))
def test_resuming_from_files_gives_the_same_trajectory(tmp_path_factory, name, seed, split):
    X, T = addition_data(np.random.default_rng(seed), 24, 5)
    whole = make_run(name, seed)
    losses_whole = run_epochs(*whole, X, T, 4, np.random.default_rng(1))

    first = make_run(name, seed)
    data_rng = np.random.default_rng(1)
    losses = run_epochs(*first, X, T, split, data_rng)
    folder = tmp_path_factory.mktemp("resume")
    for part, thing in zip(("model", "opt", "schedule"), first, strict=True):
        if thing is not None:
            mg.save(thing, folder / f"{part}.npz")
    resumed = make_run(name, seed + 1)  # other parameters: everything must come from files
    for part, thing in zip(("model", "opt", "schedule"), resumed, strict=True):
        if thing is not None:
            mg.load(thing, folder / f"{part}.npz")
    losses += run_epochs(*resumed, X, T, 4 - split, data_rng)

    assert losses == losses_whole
    for (key, a), b in zip(whole[0].state_dict().items(), resumed[0].state_dict().values(),
                           strict=True):
        np.testing.assert_array_equal(a, b, err_msg=key)
    expected, got = whole[1].state_dict(), resumed[1].state_dict()
    assert list(expected) == list(got)
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key], err_msg=key, strict=True)


def test_a_file_of_another_optimizer_is_refused_and_changes_nothing(tmp_path):
    params = [mg.nn.Parameter(np.ones((2, 3)))]
    mg.save(optim.Adam(params), tmp_path / "adam.npz")
    sgd = optim.SGD(params, lr=0.1, momentum=0.9)
    before = sgd.state_dict()
    with pytest.raises(ValueError, match=r"does not fit SGD: missing .*momentum_buffer"):
        mg.load(sgd, tmp_path / "adam.npz")
    for key, value in sgd.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_a_hyperparameter_out_of_bounds_in_a_file_is_refused(tmp_path):
    params = [mg.nn.Parameter(np.ones(3))]
    opt = optim.SGD(params, lr=0.1)
    state = opt.state_dict()
    state["groups.0.lr"] = np.array(-1.0)
    np.savez(tmp_path / "bad.npz", **state)
    with pytest.raises(ValueError, match=r"SGD: invalid lr=-1.0: must be >= 0"):
        mg.load(opt, tmp_path / "bad.npz")
    assert opt.lr == 0.1
