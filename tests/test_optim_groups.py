"""Hyperparameters as people set them: `opt.lr = x` and `group["lr"] = x` take effect at the
next step (or raise, changing nothing); parameter groups with their own hyperparameters step
as separate optimizers would; schedules set the groups' rates; clip_grad_norm."""

from __future__ import annotations

import math
import re
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import optim


class Param:
    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.grad: np.ndarray | None = None


VALUES = st.floats(-10.0, 10.0)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3)


@st.composite
def parameter_sets(draw: st.DrawFn, n: int = 3) -> list[np.ndarray]:
    return [draw(hnp.arrays(np.float64, draw(SHAPES), elements=VALUES)) for _ in range(n)]


def step_with(opt, params, grads) -> None:
    def closure() -> float:
        for p, g in zip(params, grads, strict=True):
            p.grad = None if g is None else g.copy()
        return 0.0

    opt.step(closure)


@pytest.mark.parametrize("name", ["sgd", "rmsprop_nesterov", "adam", "adamw"])
@given(inits=parameter_sets(), lrs=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3))
def test_setting_lr_between_steps_equals_an_optimizer_built_with_it(name, inits, lrs):
    """opt.lr = x before each step gives the trajectory of fresh optimizers that were built
    with x and loaded with the state so far: the new value is used, nothing else changes."""
    params = [Param(x.copy()) for x in inits]
    twins = [Param(x.copy()) for x in inits]
    opt = optim.create(name, params, lr=0.5)
    for k, lr in enumerate(lrs):
        grads = [np.cos(p.data + k) for p in params]
        opt.lr = lr
        assert opt.lr == lr == opt.param_groups[0]["lr"]
        fresh = optim.create(name, twins, lr=lr)
        if k:
            state = opt.state_dict()
            state["groups.0.lr"] = np.array(lr)
            fresh.load_state_dict(state)
        step_with(opt, params, grads)
        step_with(fresh, twins, grads)
        for p, q in zip(params, twins, strict=True):
            np.testing.assert_array_equal(p.data, q.data)


def test_zero_lr_freezes_the_parameters():
    p = Param(np.ones(3))
    opt = optim.SGD([p], lr=0.1)
    opt.lr = 0.0
    p.grad = np.ones(3)
    opt.step()
    np.testing.assert_array_equal(p.data, np.ones(3))


@pytest.mark.parametrize(("setting", "error", "message"), [
    (("lr", -0.1), ValueError, r"^Adam: invalid lr=-0.1: must be >= 0$"),
    (("betas", (0.9, 1.0)), ValueError, r"^Adam: invalid betas\[1\]=1.0: must be in \[0, 1\)$"),
    (("eps", float("nan")), ValueError, r"^Adam: invalid eps=nan: must be finite$"),
    (("momentum", 0.9), AttributeError, r"^Adam has no hyperparameter 'momentum'; its "
                                         r"hyperparameters: lr, betas, eps$"),
])
def test_a_bad_setting_is_a_clear_error_and_changes_nothing(setting, error, message):
    params = [Param(np.ones(2)), Param(np.ones(3))]
    opt = optim.Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.5}], lr=0.1)
    before = opt.state_dict()
    with pytest.raises(error, match=message):
        setattr(opt, *setting)
    with pytest.raises(ValueError if error is ValueError else TypeError):
        opt.param_groups[1][setting[0]] = setting[1]
    after = opt.state_dict()
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value)


@pytest.mark.parametrize("how", ["optimizer", "item", "attribute", "load"])
@given(lr=st.floats(0.0, 1.0), start=hnp.arrays(np.float64, SHAPES, elements=VALUES))
def test_the_rule_uses_the_value_set_last(how, lr, start):
    """However a rate is set, and whatever refused settings follow, the step uses the value
    the group reports (the group also keeps its values as attributes, for the rules)."""
    p = Param(start.copy())
    opt = optim.SGD([p], lr=0.5)
    group = opt.param_groups[0]
    if how == "load":
        state = opt.state_dict()
        state["groups.0.lr"] = np.array(lr)
        opt.load_state_dict(state)
    else:
        {"optimizer": lambda: setattr(opt, "lr", lr), "item": lambda: group.__setitem__("lr", lr),
         "attribute": lambda: setattr(group, "lr", lr)}[how]()
    for refused in (lambda: setattr(opt, "lr", -1.0), lambda: group.__setitem__("lr", -1.0)):
        with pytest.raises(ValueError, match="invalid lr=-1.0"):
            refused()
    assert group.lr == group["lr"] == group.hyperparameters()["lr"] == opt.lr == lr
    p.grad = np.cos(start)
    opt.step()
    np.testing.assert_array_equal(p.data, start - lr * np.cos(start))


def test_reading_a_rate_that_differs_between_groups_is_a_clear_error():
    opt = optim.SGD([{"params": [Param(np.ones(2))]},
                     {"params": [Param(np.ones(2))], "lr": 0.5}], lr=0.1)
    with pytest.raises(AttributeError, match=r"SGD.lr differs between the parameter groups "
                                             r"\(0.1, 0.5\)"):
        _ = opt.lr
    assert opt.momentum == 0.0
    opt.lr = 0.2
    assert [g["lr"] for g in opt.param_groups] == [0.2, 0.2]


@pytest.mark.parametrize("name", ["sgd", "rmsprop_nesterov", "adam", "rprop"])
@given(inits=parameter_sets(n=4), dtypes=st.lists(st.sampled_from([np.float64, np.float32]),
                                                  min_size=4, max_size=4))
def test_groups_step_as_separate_optimizers(name, inits, dtypes):
    """Two groups with their own hyperparameters, mixed dtypes: each parameter follows the
    trajectory it follows under an optimizer of its own with its group's values."""
    first = {"rprop": {"eta_plus": 1.5}}.get(name, {"lr": 0.3})
    second = {"rprop": {"step_init": 0.01}}.get(name, {"lr": 0.02})
    hyper = {"sgd": {"lr": 0.1, "momentum": 0.5}}.get(name, {})
    params = [Param(x.astype(d)) for x, d in zip(inits, dtypes, strict=True)]
    alone = [Param(p.data.copy()) for p in params]
    grouped = optim.create(name, [{"params": params[:2], **first},
                                  {"params": params[2:], **second}], **hyper)
    singles = [optim.create(name, [q], **{**hyper, **(first if i < 2 else second)})
               for i, q in enumerate(alone)]
    for k in range(4):
        grads = [np.sin(p.data * (k + 1)) for p in params]
        if k == 2:
            grads[1] = None  # skipped: its state and step count stay
        step_with(grouped, params, grads)
        for opt, q, g in zip(singles, alone, grads, strict=True):
            step_with(opt, [q], [g])
        for p, q in zip(params, alone, strict=True):
            assert p.data.dtype == q.data.dtype
            np.testing.assert_array_equal(p.data, q.data)


def test_group_errors():
    p = Param(np.ones(2))
    with pytest.raises(TypeError, match="mixes parameters and group dicts"):
        optim.SGD([p, {"params": [Param(np.ones(2))]}], lr=0.1)
    with pytest.raises(ValueError, match="appears more than once"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="group 1 is empty"):
        optim.SGD([{"params": [p]}, {"params": []}], lr=0.1)
    with pytest.raises(TypeError, match="has no hyperparameter betas"):
        optim.SGD([{"params": [p], "betas": (0.9, 0.9)}], lr=0.1)
    with pytest.raises(ValueError, match="SGD: invalid lr=-1"):
        optim.SGD([{"params": [p], "lr": -1}], lr=0.1)


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_a_param_group_reads_as_a_dict(name):
    """Before, `"momentum" in group` raised TypeError, and list(group), group.get("lr"),
    group.items() failed."""
    settings = {"lr": 0.1} if name == "sgd" else {}
    group = optim.create(name, [Param(np.ones(2)), Param(np.ones(3))], **settings).param_groups[0]
    keys = group.keys()
    assert keys == ["params", *group.hyperparameters()]
    assert list(group) == keys and dict(group).keys() == set(keys)
    assert group.items() == [(key, group[key]) for key in keys]
    for key in keys:
        assert key in group
        assert group.get(key) is group[key]
    for absent in ("nope", 1, None, ("lr",)):
        assert absent not in group
        assert group.get(absent) is None and group.get(absent, absent) is absent


# --- schedules ------------------------------------------------------------------------------


@given(base=st.floats(1e-3, 1.0), gamma=st.floats(0.1, 0.99), size=st.integers(1, 5),
       total=st.integers(1, 10), epochs=st.integers(0, 20))
def test_schedules_set_the_rate_of_their_formula(base, gamma, size, total, epochs):
    cases = [
        (lambda o: optim.StepLR(o, step_size=size, gamma=gamma),
         lambda b, k: b * gamma ** (k // size)),
        (lambda o: optim.ExponentialLR(o, gamma=gamma), lambda b, k: b * gamma**k),
        (lambda o: optim.CosineAnnealingLR(o, total=total, lr_min=base / 10),
         lambda b, k: base / 10 + (b - base / 10) * (1 + math.cos(math.pi * k / total)) / 2),
    ]
    for make, formula in cases:
        opt = optim.SGD([{"params": [Param(np.ones(1))]},
                         {"params": [Param(np.ones(1))], "lr": 2 * base}], lr=base)
        schedule = make(opt)
        for _ in range(epochs):
            schedule.step()
        for group, b in zip(opt.param_groups, (base, 2 * base), strict=True):
            assert group["lr"] == pytest.approx(formula(b, epochs), rel=1e-12, abs=0)


def test_cosine_reaches_its_minimum_and_schedule_errors():
    opt = optim.SGD([Param(np.ones(1))], lr=0.1)
    schedule = optim.CosineAnnealingLR(opt, total=4)
    for _ in range(4):
        schedule.step()
    assert opt.lr == 0.0
    with pytest.raises(TypeError, match="needs an optimizer with a learning rate"):
        optim.StepLR(optim.RProp([Param(np.ones(1))]), step_size=2)
    with pytest.raises(ValueError, match="StepLR: invalid step_size=0"):
        optim.StepLR(opt, step_size=0)
    for wrong in ("2", 2.0, True):  # a wrong type: a TypeError (and a ValueError), as a rate's
        with pytest.raises(optim.HyperparameterTypeError, match="StepLR: invalid step_size="):
            optim.StepLR(opt, step_size=wrong)
        with pytest.raises(TypeError):
            optim.CosineAnnealingLR(opt, total=wrong)
    with pytest.raises(ValueError, match="ExponentialLR: invalid gamma=-0.5"):
        optim.ExponentialLR(opt, gamma=-0.5)


SCHEDULES = {
    "StepLR": (lambda o, a, b: optim.StepLR(o, step_size=a, gamma=b),
               "StepLR(step_size={a!r}, gamma={b!r})"),
    "ExponentialLR": (lambda o, a, b: optim.ExponentialLR(o, gamma=b),
                      "ExponentialLR(gamma={b!r})"),
    "CosineAnnealingLR": (lambda o, a, b: optim.CosineAnnealingLR(o, total=a, lr_min=b),
                          "CosineAnnealingLR(total={a!r}, lr_min={b!r})"),
}
SCHEDULE_SETTINGS = st.tuples(st.sampled_from(sorted(SCHEDULES)), st.integers(1, 3),
                              st.sampled_from([0.1, 0.5]))


def _exact(base: float, gamma: float, epoch: int) -> float:
    """base * gamma ** epoch rounded once from the exact product (inf past the floats). A
    product within rounding of the largest float is no case: either answer is right."""
    product = Fraction(base) * Fraction(gamma) ** epoch
    assume(abs(product / _LARGEST - 1) > 1e-12)
    try:
        return float(product)
    except OverflowError:
        return math.inf


_LARGEST = Fraction(sys.float_info.max)


@pytest.mark.parametrize("kind", ["StepLR", "ExponentialLR"])
@given(bases=st.lists(st.floats(0.0, 1e308), min_size=1, max_size=4),
       gamma=st.floats(1.0, 1e100), epochs=st.integers(1, 5))
@example(bases=[0.1, 1e300], gamma=1e100, epochs=5)  # inf from *, then ** overflowing
@example(bases=[1e-300], gamma=1e100, epochs=5)  # gamma ** 4 overflows, the product not
def test_a_schedule_step_past_the_largest_float_changes_nothing(kind, bases, gamma, epochs):
    """Growing rates overflow, in some groups before others: each step sets every group's
    rate of the formula and counts the epoch, or raises ValueError naming the schedule, the
    step and the rate, and changes no group and no count (it raised after counting the
    epoch and setting the groups before the refused one; then it named the optimizer, or
    raised a bare OverflowError where gamma ** epoch overflowed). A rate whose factor
    gamma ** epoch overflows is set where the product is finite (it was refused as inf)."""
    opt = optim.SGD([{"params": [Param(np.ones(1))], "lr": base} for base in bases], lr=1.0)
    schedule = SCHEDULES[kind][0](opt, 1, gamma)
    for _ in range(epochs):
        before = (schedule.epoch, [group["lr"] for group in opt.param_groups])
        expected = [_exact(base, gamma, before[0] + 1) for base in bases]
        if all(math.isfinite(lr) for lr in expected):
            schedule.step()
            assert [group["lr"] for group in opt.param_groups] == pytest.approx(
                expected, rel=1e-12, abs=0)
            assert schedule.epoch == before[0] + 1
        else:
            first = next(i for i, lr in enumerate(expected) if not math.isfinite(lr))
            with pytest.raises(ValueError, match=(
                    rf"^{re.escape(repr(schedule))}: step {before[0] + 1} gives group {first} "
                    rf"\(base rate {re.escape(repr(bases[first]))}\) the learning rate inf, "
                    "past the largest float; no rate and not the step count changed$")):
                schedule.step()
            assert (schedule.epoch, [group["lr"] for group in opt.param_groups]) == before


@pytest.mark.parametrize("kind", ["StepLR", "ExponentialLR"])
@given(base=st.floats(1e-300, 1e308), gamma=st.floats(1e-100, 1.0), epochs=st.integers(1, 8))
@example(base=1e300, gamma=1e-100, epochs=4)  # gamma ** 4 is 0, the product 1e-100
def test_a_shrinking_rate_is_the_exact_product(kind, base, gamma, epochs):
    """A rate whose factor gamma ** epoch falls below the normal floats is still the
    product (within 1e-12), where it was 0 or lost its digits to a subnormal factor."""
    opt = optim.SGD([Param(np.ones(1))], lr=base)
    schedule = SCHEDULES[kind][0](opt, 1, gamma)
    for _ in range(epochs):
        schedule.step()
    exact = Fraction(base) * Fraction(gamma) ** epochs
    assume(exact > Fraction(sys.float_info.min))  # (a subnormal rate has fewer digits)
    assert opt.lr == pytest.approx(float(exact), rel=1e-12, abs=0)


@given(saved=SCHEDULE_SETTINGS, target=SCHEDULE_SETTINGS, epochs=st.integers(1, 5))
def test_a_schedule_state_loads_only_into_its_kind_and_settings(saved, target, epochs):
    """Before, a StepLR state loaded into a CosineAnnealingLR (or a StepLR of another
    gamma) without a word. Refused: ValueError naming both, nothing changed."""
    def make(kind, a, b):
        return SCHEDULES[kind][0](optim.SGD([Param(np.ones(1))], lr=1.0), a, b)

    source, schedule = make(*saved), make(*target)
    for _ in range(epochs):
        source.step()
    state = source.state_dict()
    saved_text = SCHEDULES[saved[0]][1].format(a=saved[1], b=saved[2])
    target_text = SCHEDULES[target[0]][1].format(a=target[1], b=target[2])
    assert (repr(source), repr(schedule)) == (saved_text, target_text)
    if saved_text == target_text:
        schedule.load_state_dict(state)
        assert schedule.epoch == epochs
        return
    with pytest.raises(ValueError) as refused:
        schedule.load_state_dict(state)
    assert str(refused.value) == (f"{target[0]}.load_state_dict: the state is of {saved_text}, "
                                  f"this schedule is {target_text}")
    assert (schedule.epoch, schedule.base_lrs, schedule.optimizer.lr) == (0, [1.0], 1.0)


GOOD_EPOCHS = st.integers(0, 2**63 - 1).flatmap(
    lambda n: st.sampled_from([n, np.array(n, dtype=np.uint64), np.array(n, dtype=np.int64)]))
BAD_EPOCHS = st.one_of(
    st.integers(-10, -1), st.integers(2**63, 2**70),  # (past the int64 a state dict holds)
    st.floats(0.0, 10.0).map(np.array),  # 2.7 was truncated to 2, 3.0 loaded as 3
    st.integers(0, 9).map(str), st.integers(0, 9).map(lambda n: np.array(str(n))),
    st.booleans(), st.integers(0, 9).map(lambda n: np.array([n])))
GOOD_RATES = st.floats(0.0, 1e300)
BAD_RATES = st.one_of(st.sampled_from([math.inf, -math.inf, math.nan]),
                      st.floats(-1e3, -1e-300))


@given(settings=SCHEDULE_SETTINGS, rates=st.lists(GOOD_RATES, min_size=1, max_size=3),
       epoch=GOOD_EPOCHS | BAD_EPOCHS, bad_rate=st.none() | BAD_RATES, data=st.data())
def test_a_schedule_state_loads_only_an_integer_epoch_and_finite_rates(
        settings, rates, epoch, bad_rate, data):
    """An epoch count is an integer from 0 to 2**63 - 1 (a 0-d integer array too), as an
    optimizer's step count; the base rates are finite and >= 0. Anything else is refused,
    ValueError naming the schedule, and changes nothing (a fractional epoch was truncated,
    a string one parsed, an infinite base rate loaded, and the next step raised)."""
    kind, a, b = settings
    opt = optim.SGD([{"params": [Param(np.ones(1))], "lr": 1.0} for _ in rates], lr=1.0)
    schedule = SCHEDULES[kind][0](opt, a, b)
    state = {**schedule.state_dict(), "epoch": epoch, "base_lrs": np.array(rates)}
    if bad_rate is not None:
        state["base_lrs"][data.draw(st.integers(0, len(rates) - 1))] = bad_rate
    if isinstance(epoch, np.ndarray):
        good_epoch = epoch.ndim == 0 and epoch.dtype.kind in "iu"
    else:
        good_epoch = type(epoch) is int and 0 <= epoch < 2**63
    if good_epoch and bad_rate is None:
        schedule.load_state_dict(state)
        assert (schedule.epoch, schedule.base_lrs) == (int(epoch), rates)
        return
    message = "epoch must be a non-negative integer" if not good_epoch else (
        rf"expected {len(rates)} base rates? \(one per group\), finite and >= 0")
    with pytest.raises(ValueError, match=rf"^{kind}\.load_state_dict: {message}"):
        schedule.load_state_dict(state)
    assert (schedule.epoch, schedule.base_lrs) == (0, [1.0] * len(rates))


@pytest.mark.parametrize("state", [[("epoch", np.array(1))], "epoch", None])
def test_a_schedule_state_that_is_no_mapping_is_refused(state):
    schedule = optim.StepLR(optim.SGD([Param(np.ones(1))], lr=1.0), step_size=2)
    with pytest.raises(ValueError, match=rf"^StepLR\.load_state_dict: expected a mapping, "
                                         rf"got {type(state).__name__}$"):
        schedule.load_state_dict(state)


def test_a_schedule_file_of_another_kind_or_settings_is_refused(tmp_path):
    def sgd():
        return optim.SGD([Param(np.ones(1))], lr=1.0)

    step = optim.StepLR(sgd(), step_size=100, gamma=0.5)
    step.step()
    mg.save(step, tmp_path / "step.npz")
    cosine = optim.CosineAnnealingLR(sgd(), total=4)
    with pytest.raises(ValueError, match=r"does not fit CosineAnnealingLR: missing "
                                         r"\['CosineAnnealingLR.total', "
                                         r"'CosineAnnealingLR.lr_min'\]; unexpected "
                                         r"\['StepLR.step_size', 'StepLR.gamma'\]"):
        mg.load(cosine, tmp_path / "step.npz")
    other = optim.StepLR(sgd(), step_size=100, gamma=0.1)
    with pytest.raises(ValueError, match=r"^StepLR.load_state_dict: the state is of "
                                         r"StepLR\(step_size=100, gamma=0.5\), this schedule is "
                                         r"StepLR\(step_size=100, gamma=0.1\)$"):
        mg.load(other, tmp_path / "step.npz")
    assert (cosine.epoch, other.epoch) == (0, 0)
    same = optim.StepLR(sgd(), step_size=100, gamma=0.5)
    mg.load(same, tmp_path / "step.npz")
    assert same.epoch == 1


# --- clip_grad_norm -----------------------------------------------------------------------


@given(grads=parameter_sets(n=3), max_norm=st.floats(1e-3, 20.0))
def test_clip_grad_norm_caps_the_total_norm(grads, max_norm):
    params = [Param(np.zeros_like(g)) for g in grads] + [Param(np.zeros(2))]  # no grad
    originals = [g.copy() for g in grads]
    for p, g in zip(params, grads, strict=False):
        p.grad = g
    total = optim.clip_grad_norm(params, max_norm)
    expected = math.hypot(*(x for g in originals for x in g.ravel().tolist()))
    assert total == pytest.approx(expected, rel=1e-12, abs=0)
    clipped = math.sqrt(sum(float(np.sum(p.grad * p.grad)) for p in params[:3]))
    assert clipped <= max_norm * (1 + 1e-12) or clipped == pytest.approx(expected)
    scale = max_norm / (expected + 1e-6) if expected > max_norm else 1.0
    for p, g in zip(params, originals, strict=False):
        np.testing.assert_allclose(p.grad, g * scale, rtol=1e-12)
    for g, original in zip(grads, originals, strict=True):
        np.testing.assert_array_equal(g, original)  # the caller's arrays are not written
    assert params[3].grad is None


@given(shape=SHAPES, data=st.data(), max_norm=st.floats(1e-3, 20.0),
       below=st.floats(0.0, 0.9e-6), sign=st.sampled_from([-1.0, 1.0]))
def test_clip_grad_norm_leaves_a_norm_just_below_max_norm_as_it_is(shape, data, max_norm,
                                                                   below, sign):
    """A total norm at most max_norm is left untouched, also less than 1e-6 below it, which
    PyTorch's min(1, max_norm / (total + 1e-6)) shrinks (its docstring says so). One nonzero
    element: the norm is |that element| exactly."""
    grad = np.zeros(shape)
    index = data.draw(st.tuples(*(st.integers(0, n - 1) for n in shape)))
    grad[index] = sign * (max_norm - below)
    p = Param(np.zeros(shape))
    p.grad = grad.copy()
    assert optim.clip_grad_norm([p], max_norm) == max_norm - below
    assert min(1.0, max_norm / (max_norm - below + 1e-6)) < 1.0  # PyTorch's scale
    np.testing.assert_array_equal(p.grad, grad)


@given(grads=parameter_sets(n=3), exponent=st.integers(150, 306),
       max_norm=st.floats(1e-3, 20.0))
def test_clip_grad_norm_measures_and_clips_finite_gradients_whose_squares_overflow(
        grads, exponent, max_norm):
    """Elements up to 1e307: their float64 squares overflow, the norm (math.hypot's,
    which does not overflow) is still returned and the gradients clipped to it, also
    under np.errstate(over="raise") as the command line runs."""
    params = [Param(np.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = g * 10.0**exponent
    originals = [p.grad.copy() for p in params]
    expected = math.hypot(*(x for g in originals for x in g.ravel().tolist()))
    with np.errstate(over="raise"):
        total = optim.clip_grad_norm(params, max_norm)
    assert total == pytest.approx(expected, rel=1e-12, abs=0)
    if expected > max_norm:
        for p, g in zip(params, originals, strict=True):
            np.testing.assert_allclose(p.grad, g * (max_norm / (expected + 1e-6)), rtol=1e-12,
                                       atol=1e-300)
            assert np.isfinite(p.grad).all()


@given(grads=parameter_sets(n=3), exponent=st.integers(-300, -140),
       max_norm=st.floats(1e-300, 1e-140))
def test_clip_grad_norm_measures_gradients_whose_squares_are_subnormal(grads, exponent,
                                                                        max_norm):
    """Elements down to 1e-300: their float64 squares are subnormal floats of few bits (or
    0), so the norm of 1e-158 gradients was 1e-8 off (math.hypot's, which scales, is the
    reference), and the gradients clipped by it."""
    params = [Param(np.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = g * 10.0**exponent
    originals = [p.grad.copy() for p in params]
    expected = math.hypot(*(x for g in originals for x in g.ravel().tolist()))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        total = optim.clip_grad_norm(params, max_norm)
    assert total == pytest.approx(expected, rel=1e-12, abs=0)
    if expected > max_norm:  # (a norm this small is clipped by max_norm / 1e-6)
        for p, g in zip(params, originals, strict=True):
            np.testing.assert_allclose(p.grad, g * (max_norm / (expected + 1e-6)), rtol=1e-12,
                                       atol=0)


def test_clip_grad_norm_of_1e155_gradients_bounds_the_step():
    """sum(g^2) overflows float64 at 4 elements of 1e155: the total is 2e155, not inf, and
    the next step moves by lr * 0.5, not by 1e154."""
    p = Param(np.zeros(4))
    p.grad = np.full(4, 1e155)
    assert optim.clip_grad_norm([p], max_norm=1.0) == pytest.approx(2e155, rel=1e-15, abs=0)
    np.testing.assert_allclose(p.grad, 0.5, rtol=1e-15)
    optim.SGD([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, -0.05, rtol=1e-15)


def test_clip_grad_norm_errors_and_non_finite():
    p = Param(np.zeros(2))
    p.grad = np.array([np.inf, 1.0])
    assert optim.clip_grad_norm([p], 1.0) == math.inf
    np.testing.assert_array_equal(p.grad, [np.inf, 1.0])
    with pytest.raises(ValueError, match="clip_grad_norm: invalid max_norm=0"):
        optim.clip_grad_norm([p], 0)


@given(grads=parameter_sets(n=3))
def test_clip_grad_norm_to_infinity_measures_without_clipping(grads):
    """max_norm=inf, PyTorch's way to take the norm alone, was refused as no positive
    finite number: the norm comes back, every gradient is left as it is."""
    params = [Param(np.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    expected = math.hypot(*(x for g in grads for x in g.ravel().tolist()))
    for limit in (math.inf, 10**400):  # (an integer beyond float64 is beyond any norm)
        assert optim.clip_grad_norm(params, limit) == pytest.approx(expected, rel=1e-12,
                                                                    abs=0)
        assert all(p.grad is g for p, g in zip(params, grads, strict=True))


@given(grad=hnp.arrays(np.float64, SHAPES, elements=VALUES), max_norm=st.floats(1e-3, 20.0))
def test_clip_grad_norm_clips_a_single_tensor_as_a_list_of_it(grad, max_norm):
    """One tensor is clipped as [tensor] is (torch's clip_grad_norm_ takes one); it was
    taken for an iterable of its rows, which have no .grad: 0.0 returned, nothing clipped."""
    alone, listed = (mg.Tensor(np.zeros_like(grad), requires_grad=True) for _ in range(2))
    alone.grad, listed.grad = grad.copy(), grad.copy()
    assert optim.clip_grad_norm(alone, max_norm) == optim.clip_grad_norm([listed], max_norm)
    np.testing.assert_array_equal(alone.grad, listed.grad)


def test_clip_grad_norm_refuses_what_is_not_a_parameter_before_clipping_any():
    model = mg.nn.Linear(2, 3)
    for p in model.parameters():
        p.grad = np.full(p.shape, 10.0)
    before = [p.grad.copy() for p in model.parameters()]
    cases = [
        (model, r"^clip_grad_norm: expected parameters, got the Module Linear; pass "
                r"model.parameters\(\)$"),
        (model.named_parameters(), r"^clip_grad_norm: item 0 of params \(tuple\) is not a "
                                   r"parameter .*named_parameters\(\) gives \(name, parameter\)"),
        ([*model.parameters(), np.ones(3)], r"^clip_grad_norm: item 2 of params \(ndarray\)"),
        (model.state_dict().values(), r"^clip_grad_norm: item 0 of params \(ndarray\)"),
        (3, r"^clip_grad_norm: params must be an iterable of parameters .* got int$"),
    ]
    for params, message in cases:
        with pytest.raises(TypeError, match=message):
            optim.clip_grad_norm(params, 1.0)
    with pytest.raises(TypeError, match=r"^clip_grad_norm: max_norm must be a real number, "
                                        r"got str '1'$"):
        optim.clip_grad_norm(model.parameters(), "1")
    for p, g in zip(model.parameters(), before, strict=True):
        np.testing.assert_array_equal(p.grad, g)


@pytest.mark.parametrize("grad, kind", [("x", r"str of dtype <U1"),
                                        (np.full(3, 10j), r"ndarray of dtype complex128"),
                                        (np.full(3, 10), r"ndarray of dtype int64")])
def test_clip_grad_norm_refuses_a_gradient_not_of_real_floats_before_clipping_any(grad, kind):
    first, second = Param(np.zeros(3)), Param(np.zeros(3))
    first.grad, second.grad = np.full(3, 10.0), grad
    with pytest.raises(TypeError, match=rf"^clip_grad_norm: the gradient of parameter 1 "
                                        rf"\({kind}\) is not a real floating-point array$"):
        optim.clip_grad_norm([first, second], 1.0)
    np.testing.assert_array_equal(first.grad, np.full(3, 10.0))
