"""load_state_dict on drawn states: every state inside its rule's domain loads and comes back
unchanged (in the parameter's dtype; a parameter at step 0 has no state yet and comes back
with its rule's initial one); one bad element anywhere, or a step count below 0 or past
int64, is refused with a ValueError naming the optimizer, the parameter, the buffer and the
problem, and nothing is loaded."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minigrad import optim


class Param:
    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.grad: np.ndarray | None = None


HYPERPARAMETERS = {
    "sgd": {"lr": 0.1, "momentum": 0.9},
    "rprop": {"step_min": 1e-6, "step_max": 50.0},
    "rmsprop_nesterov": {},
    "adam": {},
}
ANY = st.floats(-1e3, 1e3)
SQUARES = st.floats(0.0, 1e3)
# Per buffer: (values inside the rule's domain, finite values outside it, what the error says).
# The outside values keep clear of the domain's edges, so that a float32 cast stays outside.
DOMAINS = {
    "momentum_buffer": (ANY, None, None),
    "exp_avg": (ANY, None, None),
    "velocity": (ANY, None, None),
    "exp_avg_sq": (SQUARES, st.floats(-1e3, -1e-3), "has negative values"),
    "mean_square": (SQUARES, st.floats(-1e3, -1e-3), "has negative values"),
    # Any Delta > 0 loads, also outside [step_min, step_max]: the next step clips it.
    "step_size": (st.floats(1e-6, 1e3), st.floats(-1e3, -1e-3) | st.just(0.0), "must be > 0"),
    "prev_sign": (st.sampled_from([-1.0, 0.0, 1.0]),
                  ANY.filter(lambda x: min(abs(x - c) for c in (-1.0, 0.0, 1.0)) > 1e-3),
                  "must hold only -1, 0 or 1"),
}
NON_FINITE = st.sampled_from([np.nan, np.inf, -np.inf])


@st.composite
def optimizers_and_states(draw: st.DrawFn):
    """An optimizer on drawn parameters, and a valid state dict for it."""
    name = draw(st.sampled_from(sorted(HYPERPARAMETERS)))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    shapes = draw(st.lists(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4),
                           min_size=1, max_size=3))
    params = [Param(np.zeros(s, dtype=dtype)) for s in shapes]
    opt = optim.create(name, params, **HYPERPARAMETERS[name])
    sd = opt.state_dict()
    for full_key in sd:
        _, j, key = full_key.split(".", 2)
        if full_key.startswith("groups."):
            continue
        if key == "step":
            sd[full_key] = np.array(draw(st.integers(0, 10**6) | st.just(2**63 - 1)))
        else:
            sd[full_key] = draw(hnp.arrays(np.float64, shapes[int(j)],
                                           elements=DOMAINS[key][0]))
    return opt, sd


@given(optimizers_and_states())
def test_a_state_inside_the_domain_loads_and_comes_back(problem):
    opt, sd = problem
    initial = opt.state_dict()  # the hyperparameters are the drawn state's
    opt.load_state_dict(sd)
    back = opt.state_dict()
    assert back.keys() == sd.keys()
    for key, got in back.items():
        if key.startswith("state.") and not key.endswith(".step"):
            j = key.split(".")[1]
            dtype = opt.parameters[int(j)].data.dtype
            assert got.dtype == dtype
            want = initial[key] if sd[f"state.{j}.step"] == 0 else sd[key].astype(dtype)
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_array_equal(got, sd[key])


@given(optimizers_and_states(), st.data())
def test_one_bad_element_is_refused_and_nothing_loads(problem, data):
    opt, sd = problem
    before = opt.state_dict()
    index = data.draw(st.integers(0, len(opt.parameters) - 1))
    names = sorted(k.split(".", 2)[2] for k in sd if k.startswith(f"state.{index}."))
    key = data.draw(st.sampled_from(names))
    array = sd[f"state.{index}.{key}"]
    if key == "step":
        # (past int64, a state dict could not hold it: as a Python int, or as a uint64)
        step = data.draw(st.integers(-10, -1) | st.integers(2**63, 2**80))
        sd[f"state.{index}.step"] = np.array(step) if step < 2**64 else step
        message = f"state.{index}.step must be a non-negative integer"
    else:
        _, outside, domain_problem = DOMAINS[key]
        bad = data.draw(NON_FINITE if outside is None else NON_FINITE | outside)
        array.flat[data.draw(st.integers(0, array.size - 1))] = bad
        finite = np.isfinite(bad)
        message = (f"state of parameter {index}: {key} "
                   f"{domain_problem if finite else 'holds NaN or infinite values'}")
    with pytest.raises(ValueError, match=rf"^{type(opt).__name__}\.load_state_dict: "
                                         rf"{re.escape(message)}"):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    for key, was in before.items():
        np.testing.assert_array_equal(after[key], was)
