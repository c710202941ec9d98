"""Seeds are not luck: statements about a range of seeds, next to the seeded tests of
tests/test_training.py. The small adder (tutorial part 2, "How to implement an RNN")
reaches 100% at the rate the write-up's setting reaches it, and the engine and the
hand-coded reference train along the same path within a bound that grows from float64
rounding at the rate the training itself amplifies differences, measured per seed."""

import numpy as np
import pytest

from minigrad import optim
from minigrad.models import runs
from minigrad.models.adder import Adder
from minigrad.models.comparison import ENGINE_NAMES
from minigrad.models.data import addition_data
from minigrad.models.presets import PRESETS
from minigrad.models.reference import ReferenceAdder
from minigrad.models.training import engine_objective, train

SMALL_CONFIG, SMALL_SETTINGS = PRESETS["small"]

# --- how often the small adder reaches 100% -------------------------------------------------
#
# The tutorial warns that training can end in a local minimum. An independent NumPy
# implementation of its setting (same model, RMSProp-Nesterov, minibatches of 100, 5 passes)
# reached 100% on fresh sums for 21-23 of 50 seeds; this engine, measured, for 20 of seeds
# 0-49 (9 of 0-19). So the rate is about p = 0.40-0.46, and over 20 seeds the count of runs
# at 100% is Binomial(20, p): for every p in that range P(count <= 3) <= 1.6% and
# P(count >= 15) <= 0.9%. A count outside [4, 14] means the engine does not train as the
# write-up's setting does: too rarely (a wrong gradient, a wrong optimizer step) or too often
# (a different problem, e.g. test sums seen in training).
RATE_SEEDS = range(20)
AT_LEAST, AT_MOST = 4, 14


def test_small_adder_reaches_100_percent_at_the_write_ups_rate():
    accuracies = [runs.train_adder_once(SMALL_CONFIG, SMALL_SETTINGS, seed).accuracy
                  for seed in RATE_SEEDS]
    full = sum(a.sums == 1.0 for a in accuracies)
    assert AT_LEAST <= full <= AT_MOST, [a.sums for a in accuracies]


# --- engine and reference, step by step -----------------------------------------------------
#
# Both compute the same gradient in different operation orders, then take the same
# optimizer step. Let d_k be the largest difference between their parameters after step k.
# Each step adds new rounding differences r_k and carries the old ones through the step's
# Jacobian J_k: d_k <= |r_k| + |J_k d_{k-1}|, so d_k <= sum_{j<=k} |J_k ... J_{j+1}| |r_j|.
#
# The amplification J_k ... J_{j+1} is measured, per seed, by a twin engine run started one
# rounding error away (every parameter moved by eps max(|value|, 1), random signs): with
# A_k its distance from the engine run after k steps over its distance at the start, the
# growth from step j to step k is A_k / A_j (measured here: 1.08 to 1.29 per step, a growth
# of 2e3 to 1e11 over 100 steps, depending on the seed).
#
# The rounding added per step, |r_j|, is a few ulps of the parameters' scale: the two
# gradients differ by a rounding random walk over at most N L = 700 terms (~sqrt(700) eps
# ~ 26 eps relative), the step lr g / (sqrt(MA) + eps) is at most lr / sqrt(1 - decay)
# ~ 0.07, so it differs by ~2 eps; the update itself rounds to an ulp of the parameter
# (|value| < 16 here, at most 14.4 measured: an ulp of at most 8 eps). So
# |r_j| <= ROUNDING_PER_STEP eps with ROUNDING_PER_STEP = 32, a factor 3 over that estimate.
# Measured on seeds 0-9, d_k / (eps sum_j A_k / A_j) is at most 1.0 over all 100 steps: the
# bound holds with a margin of 32 for every seed, and at step 1 it is 7e-15. Adding 1e-12
# to one element of the reference's recurrent-weight gradient fails it at step 1 or 2 for
# each of the ten seeds. (Scaling a whole gradient by 1 + 1e-12 would not: RMSProp divides
# the gradient by its own running scale.)
TRAJECTORY_SEEDS = range(10)
TRAJECTORY_STEPS = 100  # 5 passes of 20 minibatches
ROUNDING_PER_STEP = 32
EPS = np.finfo(np.float64).eps


def reference_adder(config, values):
    """The only code here that knows the hand-coded adder's API: a reference loaded with
    `values` (engine parameter names), as (parameters by engine name, objective)."""
    reference = ReferenceAdder(config)
    reference.load_parameters({name: values[ENGINE_NAMES[name]]
                               for name, _ in reference.named_parameters()})
    by_engine_name = {ENGINE_NAMES[name]: p for name, p in reference.named_parameters()}
    return {name: by_engine_name[name] for name in values}, reference.loss_and_backward


def trajectory(params, objective, X, T, seed):
    """The parameters (flattened, in the order of `params`) before and after every step of
    RMSProp-Nesterov with the small preset's settings, minibatches drawn from [seed, 3]."""
    settings = SMALL_SETTINGS
    optimizer = optim.RMSPropNesterov(list(params.values()), lr=settings.lr,
                                      decay=settings.decay, momentum=settings.momentum,
                                      eps=settings.eps)

    def flat():
        return np.concatenate([np.ravel(p.data) for p in params.values()])

    path = [flat()]
    train(objective, optimizer, X, T, epochs=TRAJECTORY_STEPS * settings.batch_size // len(X),
          batch_size=settings.batch_size, rng=np.random.default_rng([seed, 3]),
          callback=lambda progress: path.append(flat()))
    return np.array(path)


def engine_trajectory(values, X, T, seed):
    model = Adder(SMALL_CONFIG, rng=np.random.default_rng(0))
    model.load_state_dict(values)
    return trajectory(dict(model.named_parameters()), engine_objective(model), X, T, seed)


def rounding_growth_bound(engine_path, twin_path):
    """eps ROUNDING_PER_STEP sum_{j=1..k} A_k / A_j for every step k (0 at k = 0)."""
    distance = np.abs(twin_path - engine_path).max(axis=1)
    growth = distance / distance[0]
    bound = np.zeros(len(growth))
    for k in range(1, len(growth)):
        bound[k] = ROUNDING_PER_STEP * EPS * np.sum(growth[k] / growth[1:k + 1])
    return bound


@pytest.mark.parametrize("seed", TRAJECTORY_SEEDS)
def test_engine_and_reference_agree_within_rounding_growth(seed):
    rng = np.random.default_rng(seed)
    start = Adder(SMALL_CONFIG, rng=rng).state_dict()
    X, T = addition_data(rng, SMALL_SETTINGS.n_samples, SMALL_CONFIG.n_bits)
    engine = engine_trajectory(start, X, T, seed)
    signs = np.random.default_rng([seed, 5])
    twin_start = {name: value + EPS * np.maximum(np.abs(value), 1.0)
                  * signs.choice([-1.0, 1.0], value.shape) for name, value in start.items()}
    twin = engine_trajectory(twin_start, X, T, seed)
    reference = trajectory(*reference_adder(SMALL_CONFIG, start), X, T, seed)

    assert engine.shape == reference.shape == (TRAJECTORY_STEPS + 1, SMALL_CONFIG.n_parameters)
    difference = np.abs(engine - reference).max(axis=1)
    bound = rounding_growth_bound(engine, twin)
    assert difference[0] == 0
    beyond = np.flatnonzero(difference > bound)
    assert beyond.size == 0, (f"step {beyond[0]}: engine and reference {difference[beyond[0]]:.3g} "
                              f"apart, rounding growth allows {bound[beyond[0]]:.3g}")
    assert np.abs(engine[-1] - engine[0]).max() > 0.1  # and it trained
