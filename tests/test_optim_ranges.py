"""The optimizers and clip_grad_norm at the edges of a dtype's range: a large finite
gradient whose square alone would overflow, a clipping scale below float16's range, a
gradient that only overflows once cast to the parameter's dtype, a parameter listed twice."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minigrad import optim

DTYPES = [np.float16, np.float32, np.float64]


class Param:
    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.grad: np.ndarray | None = None


def run(opt: optim.Optimizer, p: Param, grads: list[float]) -> list[np.ndarray]:
    """The parameter after each step with the given gradients."""
    trajectory = []
    for g in grads:
        def closure(g: float = g) -> float:
            p.grad = np.full_like(p.data, g)
            return 0.0
        opt.step(closure)
        trajectory.append(p.data.copy())
    return trajectory


RULES = {
    # (maker, the running mean of squares' key, its decay)
    "adam": (lambda ps: optim.Adam(ps, lr=0.01, eps=1e-3), "exp_avg_sq", 0.999),
    "adamw": (lambda ps: optim.AdamW(ps, lr=0.01, eps=1e-3), "exp_avg_sq", 0.999),
    "rmsprop-nesterov": (lambda ps: optim.RMSPropNesterov(ps, lr=0.01, eps=1e-3),
                         "mean_square", 0.5),
}


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", DTYPES)
@given(fraction=st.floats(0.0, 1.0))
def test_a_large_finite_gradient_does_not_freeze_the_parameter(rule, dtype, fraction):
    # |g| between sqrt(max) (g^2 overflows) and the largest g whose (1 - decay) g^2 fits:
    # the mean of squares must stay finite, so later steps still move the parameter.
    make, key, decay = RULES[rule]
    info = np.finfo(dtype)
    low = math.sqrt(float(info.max)) * 1.01
    high = math.sqrt(float(info.max)) / math.sqrt(1 - decay) * 0.99
    g = float(dtype(low * (high / low) ** fraction))
    assert g * g > float(info.max)  # the square alone overflows in dtype
    p = Param(np.zeros(3, dtype))
    opt = make([p])
    first = run(opt, p, [g])[0]
    square = opt.state_dict()[f"state.0.{key}"]
    expected = dtype(dtype(1 - decay) * dtype(g)) * dtype(g)  # the rule's rounding, in dtype
    assert np.isfinite(expected)
    np.testing.assert_array_equal(square, expected)
    later = run(opt, p, [1.0, 1.0])
    assert np.all(later[1] != later[0]) and np.all(later[0] != first)  # still moving


def test_clip_grad_norm_scales_float16_gradients_by_a_scale_below_their_range():
    # Total norm 60000; the scale 1e-3 / 6e4 is below float16's smallest subnormal, so
    # multiplying by it in float16 gave 0; the exact clipped value 0.0005 is representable.
    p = Param(np.zeros(4, np.float16))
    p.grad = np.full(4, 30000.0, np.float16)
    total = optim.clip_grad_norm([p], 1e-3)
    assert total == 60000.0
    assert p.grad.dtype == np.float16
    np.testing.assert_allclose(p.grad.astype(np.float64), 0.0005, rtol=1e-3)
    for max_norm in (0.01, 1.0):
        p.grad = np.full(4, 30000.0, np.float16)
        optim.clip_grad_norm([p], max_norm)
        norm = float(np.linalg.norm(p.grad.astype(np.float64)))
        assert norm <= max_norm * (1 + 2 * float(np.finfo(np.float16).eps))


def test_clip_grad_norm_refuses_a_parameter_listed_twice():
    p = Param(np.zeros(2))
    p.grad = np.array([3.0, 4.0])
    with pytest.raises(ValueError, match="item 1 of params is item 0 again"):
        optim.clip_grad_norm([p, p], 1.0)
    np.testing.assert_array_equal(p.grad, [3.0, 4.0])  # nothing changed


def test_a_finite_gradient_beyond_the_parameters_dtype_is_named_as_such():
    p = Param(np.zeros(2, np.float16))
    opt = optim.SGD([p], lr=0.1)

    def closure() -> float:
        p.grad = np.array([1e6, 1.0])  # float64, finite; 1e6 overflows float16
        return 0.0

    with pytest.raises(optim.NonFiniteGradientError,
                       match=r"parameter 0 \(shape \(2,\), float64\) has 1 finite value "
                             r"beyond the range of float16"):
        opt.step(closure)
    np.testing.assert_array_equal(p.data, [0.0, 0.0])


def test_rprop_refuses_a_step_min_that_is_zero_in_the_parameters_dtype():
    # 1e-8 is 0 in float16: a Delta shrunk to it stopped its element for good, silently.
    p = Param(np.zeros(2, np.float16))
    opt = optim.RProp([p], step_min=1e-8)

    def closure() -> float:
        p.grad = np.ones(2, np.float16)
        return 0.0

    with pytest.raises(ValueError, match=r"RProp: step_min=1e-08 is 0 in float16, so a Delta "
                                         r"shrunk to it would be 0"):
        opt.step(closure)
    np.testing.assert_array_equal(p.data, [0.0, 0.0])
    q = Param(np.zeros(2))  # (in float64 1e-8 is a Delta like any other)
    assert run(optim.RProp([q], step_min=1e-8), q, [1.0])[0].tolist() == [-0.001, -0.001]


@pytest.mark.parametrize("rule", RULES)
def test_a_mean_of_squares_past_float16s_range_is_an_error_not_a_frozen_element(rule):
    # Gradients of 300 for long: the mean of squares tends to 90,000, past float16's 65,504,
    # and inf would stop the element for good (m / inf = 0), silently.
    make, key, _ = RULES[rule]
    p = Param(np.zeros(2, np.float16))
    opt = make([p])
    with warnings.catch_warnings(), pytest.raises(
            OverflowError, match=rf"{key}, the running mean of squared gradients, overflows "
                                 r"float16"):
        warnings.simplefilter("ignore", RuntimeWarning)  # (NumPy's overflow, as it happens)
        for _ in range(20_000):
            before = p.data.copy()
            run(opt, p, [300.0])
    np.testing.assert_array_equal(p.data, before)  # the failed step changed nothing
    assert np.isfinite(opt.state_dict()[f"state.0.{key}"]).all()


@pytest.mark.parametrize("rule", RULES)
def test_after_a_non_finite_gradient_let_through_the_others_still_step(rule):
    # check_finite=False: an inf gradient makes its element's mean of squares inf, as
    # documented; the other elements go on stepping, and so do later steps.
    make, key, _ = RULES[rule]
    p = Param(np.zeros(2, np.float32))
    opt = make([p])
    opt.check_finite = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        opt.step(lambda: setattr(p, "grad", np.array([np.inf, 1.0], np.float32)) or 0.0)
        trajectory = run(opt, p, [1.0, 1.0])
    assert not np.isfinite(opt.state_dict()[f"state.0.{key}"][0])
    assert trajectory[1][1] != trajectory[0][1]
