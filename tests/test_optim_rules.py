"""Each optimizer against a direct, independent transcription of its update rule.

Hypothesis draws parameter shapes and values, a sequence of gradients (some of them None:
that parameter is skipped on that step) and the hyperparameters; the optimizer's trajectory
must equal the transcription's at every step, bit for bit (Adam: to 1e-12 relative, because
the transcription evaluates the bias correction in a different order).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import optim


class Param:
    """The smallest parameter: a float array and its gradient."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.grad: np.ndarray | None = None


VALUES = st.floats(-10.0, 10.0, allow_nan=False, allow_infinity=False)
# Repeated values (and exact zeros) make same-sign / flipped / zero cases frequent for RProp.
GRAD_VALUES = VALUES | st.sampled_from([0.0, 1.0, -1.0, 0.5, -2.0])
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def problems(draw: st.DrawFn, max_steps: int = 6) -> tuple[list[np.ndarray], list[list]]:
    """Initial parameter values and, per step, one gradient (or None) per parameter."""
    shapes = draw(st.lists(SHAPES, min_size=1, max_size=3))
    inits = [draw(hnp.arrays(np.float64, s, elements=VALUES)) for s in shapes]
    n_steps = draw(st.integers(1, max_steps))
    steps = []
    for _ in range(n_steps):
        row = []
        for s in shapes:
            if draw(st.integers(0, 5)) == 0:
                row.append(None)
            else:
                row.append(draw(hnp.arrays(np.float64, s, elements=GRAD_VALUES)))
        steps.append(row)
    return inits, steps


def run(
    make: Callable[[list[Param]], optim.Optimizer],
    inits: list[np.ndarray],
    steps: list[list],
) -> list[list[np.ndarray]]:
    """Run the optimizer on the given gradients; return the parameters after every step.

    Also checks the shell's contract on the way: ``.data`` is updated in place (same object,
    views follow), ``.grad`` is never modified, and ``step()`` returns None.
    """
    params = [Param(x.copy()) for x in inits]
    arrays = [p.data for p in params]
    views = [p.data[...] for p in params]
    opt = make(params)
    trajectory = []
    for grads in steps:
        for p, g in zip(params, grads, strict=True):
            p.grad = None if g is None else g.copy()
        assert opt.step() is None
        for p, g, a, v in zip(params, grads, arrays, views, strict=True):
            assert p.data is a
            np.testing.assert_array_equal(v, p.data)
            if g is not None:
                np.testing.assert_array_equal(p.grad, g)
        trajectory.append([p.data.copy() for p in params])
    return trajectory


def assert_trajectories_equal(got: list, want: list) -> None:
    assert len(got) == len(want)
    for k, (g_step, w_step) in enumerate(zip(got, want, strict=True)):
        for i, (g, w) in enumerate(zip(g_step, w_step, strict=True)):
            assert g.shape == w.shape
            np.testing.assert_array_equal(g, w, err_msg=f"step {k}, parameter {i}")


# --------------------------------------------------------------------------------------
# SGD
# --------------------------------------------------------------------------------------


def sgd_reference(inits, steps, lr, momentum, nesterov, weight_decay):
    """torch.optim.SGD's algorithm (dampening 0), written out."""
    ps = [x.copy() for x in inits]
    bufs: list = [None] * len(ps)
    out = []
    for grads in steps:
        for i, g in enumerate(grads):
            if g is None:
                continue
            d = g + weight_decay * ps[i] if weight_decay != 0 else g
            if momentum != 0:
                bufs[i] = d.copy() if bufs[i] is None else momentum * bufs[i] + d
                d = d + momentum * bufs[i] if nesterov else bufs[i]
            ps[i] = ps[i] - lr * d
        out.append([p.copy() for p in ps])
    return out


SGD_VARIANTS = ["plain", "weight_decay", "momentum", "momentum+weight_decay", "nesterov",
                "nesterov+weight_decay"]


@st.composite
def sgd_hyperparameters(draw: st.DrawFn, variant: str) -> dict:
    with_momentum = variant.startswith(("momentum", "nesterov"))
    return {
        "lr": draw(st.floats(1e-3, 1.0)),
        "momentum": draw(st.floats(0.05, 0.99)) if with_momentum else 0.0,
        "nesterov": variant.startswith("nesterov"),
        "weight_decay": draw(st.floats(1e-3, 1.0)) if variant.endswith("weight_decay") else 0.0,
    }


@pytest.mark.parametrize("variant", SGD_VARIANTS)
@given(data=st.data())
def test_sgd_matches_transcription(variant, data):
    inits, steps = data.draw(problems())
    hyper = data.draw(sgd_hyperparameters(variant))
    got = run(lambda ps: optim.SGD(ps, **hyper), inits, steps)
    assert_trajectories_equal(got, sgd_reference(inits, steps, **hyper))


# --------------------------------------------------------------------------------------
# RProp
# --------------------------------------------------------------------------------------


def rprop_reference(inits, steps, eta_plus, eta_minus, step_init, step_min, step_max,
                    bounds_at=None, starts_at=None):
    """RProp- element by element, in plain Python floats, Delta clipped at every step.
    ``bounds_at``: per step, the (step_min, step_max) in force (default: the given ones);
    ``starts_at``: per step, the step_init in force (default: the given one), which a
    parameter's Delta starts at on its first step with a gradient."""
    ps = [x.reshape(-1).tolist() for x in inits]
    deltas: list[list[float] | None] = [None] * len(ps)
    prevs = [[0.0] * len(p) for p in ps]
    out = []
    for k, grads in enumerate(steps):
        low, high = (step_min, step_max) if bounds_at is None else bounds_at[k]
        for i, g in enumerate(grads):
            if g is None:
                continue
            if deltas[i] is None:
                deltas[i] = [step_init if starts_at is None else starts_at[k]] * len(ps[i])
            for j, gj in enumerate(g.reshape(-1).tolist()):
                s = 1.0 if gj > 0 else (-1.0 if gj < 0 else 0.0)
                if s * prevs[i][j] > 0:
                    deltas[i][j] *= eta_plus
                elif s * prevs[i][j] < 0:
                    deltas[i][j] *= eta_minus
                deltas[i][j] = min(max(deltas[i][j], low), high)
                ps[i][j] = ps[i][j] - s * deltas[i][j]
                prevs[i][j] = s
        out.append([np.array(p).reshape(x.shape) for p, x in zip(ps, inits, strict=True)])
    return out


@st.composite
def rprop_hyperparameters(draw: st.DrawFn) -> dict:
    step_init = draw(st.floats(1e-3, 1.0))
    # Bounds close to step_init, so that the clipping happens within a few steps.
    return {
        "eta_plus": draw(st.floats(1.01, 3.0)),
        "eta_minus": draw(st.floats(0.05, 0.99)),
        "step_init": step_init,
        "step_min": step_init * draw(st.floats(0.1, 1.0)),
        "step_max": step_init * draw(st.floats(1.0, 3.0)),
    }


@given(problems(max_steps=8), rprop_hyperparameters())
def test_rprop_matches_transcription(problem, hyper):
    inits, steps = problem
    got = run(lambda ps: optim.RProp(ps, **hyper), inits, steps)
    assert_trajectories_equal(got, rprop_reference(inits, steps, **hyper))


def rprop_reference_in(dtype, inits, steps, eta_plus, eta_minus, step_init, step_min,
                       step_max):
    """RProp- element by element in NumPy scalars of ``dtype`` (a hyperparameter rounded to
    it where it meets a value, as a Python float meets an array), every gradient present."""
    one = dtype.type
    ps = [[one(v) for v in x.reshape(-1).tolist()] for x in inits]
    deltas = [[one(step_init)] * len(p) for p in ps]
    prevs = [[one(0.0)] * len(p) for p in ps]
    out = []
    for grads in steps:
        for i, g in enumerate(grads):
            for j, gj in enumerate(g.reshape(-1).tolist()):
                s = one(1.0 if gj > 0 else (-1.0 if gj < 0 else 0.0))
                if s * prevs[i][j] > 0:
                    deltas[i][j] = deltas[i][j] * one(eta_plus)
                elif s * prevs[i][j] < 0:
                    deltas[i][j] = deltas[i][j] * one(eta_minus)
                deltas[i][j] = min(max(deltas[i][j], one(step_min)), one(step_max))
                ps[i][j] = ps[i][j] - s * deltas[i][j]
                prevs[i][j] = s
        out.append([np.array(p, dtype).reshape(x.shape) for p, x in zip(ps, inits, strict=True)])
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@given(problems(max_steps=8), rprop_hyperparameters())
def test_rprop_matches_transcription_in_lower_precision(dtype, problem, hyper):
    """float32 and float16 parameters and gradients (the shell's usual path: every gradient
    present, of the parameters' dtype) step as the rule's arithmetic in that dtype."""
    dtype = np.dtype(dtype)
    inits, steps = problem
    inits = [x.astype(dtype) for x in inits]
    steps = [[(np.zeros(x.shape) if g is None else g).astype(dtype) for g, x in
              zip(grads, inits, strict=True)] for grads in steps]
    got = run(lambda ps: optim.RProp(ps, **hyper), inits, steps)
    assert_trajectories_equal(got, rprop_reference_in(dtype, inits, steps, **hyper))


@given(problems(max_steps=8), rprop_hyperparameters(), st.data())
def test_rprop_clips_every_step_size_into_bounds_changed_mid_run(problem, hyper, data):
    """Bounds changed between steps hold from the next step on for every element (also
    those whose Delta neither grows nor shrinks), and the state stays loadable."""
    inits, steps = problem
    change = data.draw(st.integers(0, len(steps) - 1), label="change before step")
    start = hyper["step_init"]
    new = (start * data.draw(st.floats(0.1, 1.0)), start * data.draw(st.floats(1.0, 1.5)))
    params = [Param(x.copy()) for x in inits]
    opt = optim.RProp(params, **hyper)
    got = []
    for k, grads in enumerate(steps):
        if k == change:
            opt.step_min, opt.step_max = new
        for p, g in zip(params, grads, strict=True):
            p.grad = None if g is None else g.copy()
        opt.step()
        got.append([p.data.copy() for p in params])
    bounds = [(hyper["step_min"], hyper["step_max"])] * change + [new] * (len(steps) - change)
    assert_trajectories_equal(got, rprop_reference(inits, steps, **hyper, bounds_at=bounds))
    opt.load_state_dict(opt.state_dict())


@given(problems(max_steps=8), rprop_hyperparameters(), st.data())
def test_rprop_step_init_takes_effect_at_each_parameters_first_step(problem, hyper, data):
    """step_init set between steps (inside the bounds or not) seeds the Delta of each
    parameter at its first step with a gradient, as torch's Rprop reads lr; a run saved
    and resumed (before the first step too) by an optimizer built with another step_init
    follows the same trajectory."""
    inits, steps = problem
    starts = data.draw(st.lists(st.none() | st.floats(1e-4, 10.0), min_size=len(steps),
                                max_size=len(steps)), label="step_init set before step k")
    resume = data.draw(st.integers(0, len(steps)), label="save and resume before step")
    params = [Param(x.copy()) for x in inits]
    opt = optim.RProp(params, **hyper)
    got, in_force = [], []
    for k, grads in enumerate(steps):
        if k == resume:
            saved = opt.state_dict()
            opt = optim.RProp(params, **{**hyper, "step_init": 5.0})
            opt.load_state_dict(saved)
        if starts[k] is not None:
            opt.step_init = starts[k]
        in_force.append(opt.step_init)
        for p, g in zip(params, grads, strict=True):
            p.grad = None if g is None else g.copy()
        opt.step()
        got.append([p.data.copy() for p in params])
    want = rprop_reference(inits, steps, **hyper, starts_at=in_force)
    assert_trajectories_equal(got, want)


def test_rprop_bounds_and_step_init_do_not_bind_each_other():
    """After the first step, step_min may rise above step_init (which no longer matters);
    a step_init outside [step_min, step_max] is accepted and clipped at the first step, as
    every Delta (as in PyTorch). Bounds that contradict each other are still refused."""
    p = Param(np.zeros(2))
    opt = optim.RProp([p], step_init=0.1, step_min=0.01, step_max=0.5)
    p.grad = np.array([1.0, -1.0])
    opt.step()
    opt.step_min = 0.2
    opt.step()  # Delta 0.1 grows to 0.12, clipped up to 0.2
    np.testing.assert_array_equal(p.data, [-0.1 - 0.2, 0.1 + 0.2])
    with pytest.raises(ValueError, match=r"RProp: invalid step_min=0\.9: must be <= step_max"):
        opt.step_min = 0.9
    assert opt.step_min == 0.2

    q = Param(np.zeros(2))
    opt = optim.RProp([q], step_init=2.0, step_min=0.01, step_max=0.5)
    q.grad = np.array([1.0, -1.0])
    opt.step()
    np.testing.assert_array_equal(q.data, [-0.5, 0.5])


def test_rprop_lowered_step_max_bounds_the_next_move():
    """Delta grown to 1.44, then step_max = 1: the next moves are at most 1, and the
    optimizer loads its own state (before the next step too)."""
    p = Param(np.zeros(2))
    opt = optim.RProp([p], step_init=1.0)
    for _ in range(3):
        p.grad = np.array([1.0, 1.0])
        opt.step()
    opt.step_max = 1.0
    opt.load_state_dict(opt.state_dict())
    before = p.data.copy()
    p.grad = np.array([0.0, -1.0])  # element 0: zero gradient; element 1: a sign flip
    opt.step()
    p.grad = np.array([1.0, -1.0])  # element 0: the first move after a zero
    opt.step()
    shrunk = 1.0 * 1.2 * 1.2 * 0.5  # 0.72, then grown to 0.864: inside the bounds
    np.testing.assert_allclose(p.data - before, [-1.0, shrunk + shrunk * 1.2], rtol=1e-15)
    np.testing.assert_array_equal(opt.state_dict()["state.0.step_size"], [1.0, shrunk * 1.2])
    opt.load_state_dict(opt.state_dict())


def test_rprop_first_step_and_zero_gradient():
    """The documented edge cases, by hand: first step uses step_init; g == 0 does not move."""
    p = Param(np.array([0.0, 0.0, 0.0]))
    opt = optim.RProp([p], eta_plus=2.0, eta_minus=0.5, step_init=0.1, step_min=0.01,
                      step_max=0.3)
    p.grad = np.array([1.0, -1.0, 0.0])
    opt.step()
    np.testing.assert_array_equal(p.data, [-0.1, 0.1, 0.0])
    p.grad = np.array([1.0, 1.0, 5.0])  # same, flipped, previous sign 0
    opt.step()
    expected = np.array([-0.1 - 0.2, 0.1 - 0.05, -0.1])
    np.testing.assert_array_equal(p.data, expected)
    p.grad = np.array([1.0, 1.0, 5.0])  # grow to 0.4 -> clipped to 0.3; 0.05 -> 0.1; 0.1 -> 0.2
    opt.step()
    np.testing.assert_array_equal(p.data, expected - [0.3, 0.1, 0.2])
    state = opt.state_dict()
    np.testing.assert_array_equal(state["state.0.step_size"], [0.3, 0.1, 0.2])
    np.testing.assert_array_equal(state["state.0.prev_sign"], [1.0, 1.0, 1.0])


# --------------------------------------------------------------------------------------
# Adam
# --------------------------------------------------------------------------------------


def adam_reference(inits, steps, lr, betas, eps, weight_decay=0.0):
    """Adam with PyTorch's bias correction, as the equations read; with weight_decay,
    AdamW's decoupled decay (PyTorch's order: p *= 1 - lr * weight_decay first)."""
    b1, b2 = betas
    ps = [x.copy() for x in inits]
    ms = [np.zeros_like(x) for x in inits]
    vs = [np.zeros_like(x) for x in inits]
    ts = [0] * len(ps)
    out = []
    for grads in steps:
        for i, g in enumerate(grads):
            if g is None:
                continue
            ts[i] += 1
            t = ts[i]
            ps[i] = ps[i] * (1 - lr * weight_decay)
            ms[i] = b1 * ms[i] + (1 - b1) * g
            vs[i] = b2 * vs[i] + ((1 - b2) * g) * g
            m_hat_scale = lr / (1 - b1**t)
            denom = np.sqrt(vs[i]) / math.sqrt(1 - b2**t) + eps
            ps[i] = ps[i] - m_hat_scale * ms[i] / denom
        out.append([p.copy() for p in ps])
    return out


@st.composite
def adam_hyperparameters(draw: st.DrawFn) -> dict:
    return {
        "lr": draw(st.floats(1e-3, 1.0)),
        "betas": (draw(st.floats(0.0, 0.99)), draw(st.floats(0.0, 0.9999))),
        "eps": draw(st.floats(1e-10, 1e-2)),
    }


@pytest.mark.parametrize("decoupled", [False, True])
@given(problem=problems(), hyper=adam_hyperparameters(), data=st.data())
def test_adam_and_adamw_match_transcription(decoupled, problem, hyper, data):
    inits, steps = problem
    if decoupled:
        hyper["weight_decay"] = data.draw(st.floats(0.0, 0.5))
    got = run(lambda ps: (optim.AdamW if decoupled else optim.Adam)(ps, **hyper), inits, steps)
    want = adam_reference(inits, steps, **hyper)
    # Each step moves a parameter by at most about lr / (1 - beta1) * ... ; rounding
    # differences are relative to the size of the values involved, hence the atol.
    for g_step, w_step in zip(got, want, strict=True):
        for g, w, x in zip(g_step, w_step, inits, strict=True):
            scale = 1.0 + (float(np.abs(x).max()) if x.size else 0.0) + 100 * hyper["lr"]
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12 * scale)


# --------------------------------------------------------------------------------------
# RMSPropNesterov: gradients through the closure, at the look-ahead point
# --------------------------------------------------------------------------------------


@st.composite
def quadratic_problems(draw: st.DrawFn):
    """A separable quadratic 0.5 * sum(a * (P - c)^2) per parameter, and per step a mask
    saying which parameters the closure gives a gradient (the others get None)."""
    shapes = draw(st.lists(SHAPES, min_size=1, max_size=3))
    inits = [draw(hnp.arrays(np.float64, s, elements=VALUES)) for s in shapes]
    a = [draw(hnp.arrays(np.float64, s, elements=st.floats(0.1, 5.0))) for s in shapes]
    c = [draw(hnp.arrays(np.float64, s, elements=VALUES)) for s in shapes]
    n_steps = draw(st.integers(1, 6))
    masks = [[draw(st.integers(0, 5)) > 0 for _ in shapes] for _ in range(n_steps)]
    return inits, a, c, masks


def quadratic_loss(ps, a, c) -> float:
    return float(sum(0.5 * np.sum(ai * (p - ci) ** 2) for p, ai, ci in zip(ps, a, c, strict=True)))


def rmsprop_nesterov_reference(inits, a, c, masks, lr, decay, momentum, eps):
    """The adder's optimizer in "How to implement an RNN" (part 2), steps 1-5, written out.
    Returns (trajectory, losses). It computes on 1-d arrays, as the optimizer does: NumPy's
    0-d (scalar) arithmetic can round sqrt(MA) + eps differently from its array loops (found
    by Hypothesis: g = -8.271747311077478, decay 0.5, eps 2^-7, one ulp apart)."""
    shapes = [np.shape(x) for x in inits]
    a0, c0 = a, c  # the loss, as the closure computes it, on the parameters' own shapes
    inits = [np.atleast_1d(x) for x in inits]
    a = [np.atleast_1d(x) for x in a]
    c = [np.atleast_1d(x) for x in c]
    ps = [x.copy() for x in inits]
    vs = [np.zeros_like(x) for x in inits]
    mas = [np.zeros_like(x) for x in inits]
    out, losses = [], []
    for mask in masks:
        v_tmps = [momentum * v for v in vs]  # 1.
        look = [p + vt for p, vt in zip(ps, v_tmps, strict=True)]
        own = [x.reshape(shape) for x, shape in zip(look, shapes, strict=True)]
        losses.append(quadratic_loss(own, a0, c0))
        for i, has_grad in enumerate(mask):
            if not has_grad:
                continue  # skipped: P, V and MA unchanged
            g = a[i] * (look[i] - c[i])  # 2.
            mas[i] = decay * mas[i] + ((1 - decay) * g) * g  # 3.
            step = lr * g / (np.sqrt(mas[i]) + eps)  # 4.
            vs[i] = v_tmps[i] - step  # 5.
            ps[i] = look[i] - step
        out.append([p.reshape(shape) for p, shape in zip(ps, shapes, strict=True)])
    return out, losses


@st.composite
def rmsprop_hyperparameters(draw: st.DrawFn, with_momentum: bool) -> dict:
    return {
        "lr": draw(st.floats(1e-3, 1.0)),
        "decay": draw(st.floats(0.0, 0.99)),
        "momentum": draw(st.floats(0.05, 0.99)) if with_momentum else 0.0,
        "eps": draw(st.floats(1e-8, 1e-2)),
    }


@pytest.mark.parametrize("with_momentum", [True, False])
@given(data=st.data())
def test_rmsprop_nesterov_matches_transcription(with_momentum, data):
    inits, a, c, masks = data.draw(quadratic_problems())
    hyper = data.draw(rmsprop_hyperparameters(with_momentum))
    params = [Param(x.copy()) for x in inits]
    arrays = [p.data for p in params]
    opt = optim.RMSPropNesterov(params, **hyper)
    calls = 0
    mask: list[bool] = []
    seen_grads: list = []

    def closure() -> float:
        nonlocal calls
        calls += 1
        seen_grads.clear()
        for p, ai, ci, has_grad in zip(params, a, c, mask, strict=True):
            p.grad = ai * (p.data - ci) if has_grad else None
            seen_grads.append(None if p.grad is None else p.grad.copy())
        return quadratic_loss([p.data for p in params], a, c)

    got, losses = [], []
    for k, step_mask in enumerate(masks):
        mask[:] = step_mask
        losses.append(opt.step(closure))
        assert calls == k + 1
        for p, arr, g in zip(params, arrays, seen_grads, strict=True):
            assert p.data is arr
            if g is not None:
                np.testing.assert_array_equal(p.grad, g)  # the optimizer left .grad alone
        got.append([p.data.copy() for p in params])
    want, want_losses = rmsprop_nesterov_reference(inits, a, c, masks, **hyper)
    assert_trajectories_equal(got, want)
    assert losses == want_losses


# --------------------------------------------------------------------------------------
# dtype
# --------------------------------------------------------------------------------------


def test_float32_parameters_stay_float32():
    for name, kw in [("sgd", {"lr": 0.1, "momentum": 0.9}), ("rprop", {}), ("adam", {})]:
        p = Param(np.ones((2, 3), dtype=np.float32))
        opt = optim.create(name, [p], **kw)
        for _ in range(3):
            p.grad = np.full((2, 3), 0.5)  # float64 gradient on a float32 parameter
            opt.step()
        assert p.data.dtype == np.float32
        assert np.all(p.data < 1.0)
        for key, value in opt.state_dict().items():
            if key.startswith("state.") and not key.endswith(".step"):
                assert value.dtype == np.float32, key


def test_the_package_docstring_shows_adams_rule_as_written():
    """optim's docstring quotes Adam.update as the example of a rule: it must not drift."""
    quoted = optim.__doc__.split("def update(self, h, t, p, g, state):\n")[1].split("\n\n")[0]
    source = inspect.getsource(optim.Adam.update)
    for line in quoted.splitlines():
        assert line.strip() in source, line


@pytest.mark.parametrize("make", [lambda ps, eps: optim.Adam(ps, lr=0.1, eps=eps),
                                  lambda ps, eps: optim.AdamW(ps, lr=0.1, eps=eps),
                                  lambda ps, eps: optim.RMSPropNesterov(ps, lr=0.1, eps=eps)],
                         ids=["Adam", "AdamW", "RMSPropNesterov"])
def test_an_eps_that_is_zero_in_the_parameters_dtype_is_refused(make):
    """In float16, eps = 1e-8 rounds to 0: an element whose gradient is 0 stepped by 0/0,
    a NaN parameter and only NumPy's warning. Refused, nothing changed; 1e-4 steps."""
    w = mg.nn.Parameter(np.array([1.0, 2.0], np.float16))
    opt = make([w], 1e-8)
    w.grad = np.array([0.5, 0.0], np.float16)
    with pytest.raises(ValueError, match=r"eps=1e-08 is 0 in float16"):
        opt.step(lambda: 0.0)
    np.testing.assert_array_equal(w.data, np.array([1.0, 2.0], np.float16))
    opt.eps = 1e-4
    opt.step(lambda: 0.0)
    assert np.isfinite(w.data).all()
