"""gradcheck reporting success for a wrong gradient (the worst bug of a checker), and its
errors for inputs it cannot check: a VJP reading its op's cache of the latest forward call
fails whichever argument or parameter it is applied to, in any argnums order; a gradient
below atol is named in a VacuousCheckWarning even beside a large one, and even when the
engine's is all zeros; bad seeds, non-finite inputs, non-numeric hand-written gradients and
unknown op names get errors that say so."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad import nn
from minigrad.testing import GradcheckError, VacuousCheckWarning, check_backward_at, gradcheck
from minigrad.testing import strategies as mst

CACHE_READ = "reads what a later forward call changed"


def cached_sin(function=np.sin, derivative=np.cos):
    """sin (or `function`) whose VJP reads the input of the latest forward call (the op's
    cache), not the values its node saved: right only when no other call came between
    forward and backward."""
    cache = {}

    def forward(x):
        cache["x"] = np.array(x, copy=True)
        return function(x)

    return mg.defop(f"cached_{function.__name__}", forward,
                    (lambda g, out: g * derivative(cache["x"]),), register=False,
                    saves="nothing")


RIGHT_SIN = mg.defop("right_sin", np.sin, (lambda g, out, x: g * np.cos(x),), register=False)


@st.composite
def arguments_and_orders(draw):
    """2 or 3 arguments of one shape (none 0), the one the op is applied to, and argnums: every
    argument in a drawn order (or the op's argument alone)."""
    count = draw(st.integers(2, 3), label="count")
    shape = draw(mst.shapes(max_dims=2), label="shape")
    args = [draw(mst.arrays(shape, low=-2.0, high=2.0, avoid=(0.0,)), label=f"arg {i}")
            for i in range(count)]
    target = draw(st.integers(0, count - 1), label="target")
    order = draw(st.one_of(st.permutations(range(count)).map(tuple), st.just((target,))),
                 label="argnums")
    return args, target, order


def product_with(op, target):
    """f(*args): the product of every argument, `op` applied to the one at `target`."""
    def f(*args):
        out = op(args[target])
        for i, a in enumerate(args):
            if i != target:
                out = out * a
        return out
    return f


@given(drawn=arguments_and_orders(), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=30)
def test_a_vjp_reading_its_ops_cache_fails_in_every_argnums_order(drawn, seed):
    """gradcheck(csin(a) * b, x, y, argnums=(0, 1)) passed: the numerical side's last calls
    perturb the last argument checked only, so the cache of a earlier held x again when the
    second backward ran. f runs once more with everything checked moved before it now."""
    args, target, order = drawn
    with pytest.raises(GradcheckError, match=CACHE_READ):
        gradcheck(product_with(cached_sin(), target), *args, argnums=order, seed=seed)
    assert gradcheck(product_with(RIGHT_SIN, target), *args, argnums=order, seed=seed)


def test_the_case_reported_fails_for_every_order():
    x, y = np.random.default_rng(0).normal(size=(2, 3))
    csin = cached_sin()
    for argnums in ((0, 1), (1, 0), (0,)):
        with pytest.raises(GradcheckError, match=CACHE_READ):
            gradcheck(lambda a, b: csin(a) * b, x, y, argnums=argnums)


class CachedNet(nn.Module):
    """A Linear layer after `op`, applied to the input or to a second weight, checked
    before the Linear's own parameters."""

    def __init__(self, op, on, rng):
        self.scale = nn.Parameter(rng.normal(size=3))
        self.lin = nn.Linear(3, 2, rng=rng)
        self.op, self.on = op, on

    def forward(self, x):
        if self.on == "input":
            return self.lin(self.op(x) * self.scale)
        return self.lin(x * self.op(self.scale))


@pytest.mark.parametrize("on", ["input", "parameter"])
@given(x=mst.arrays((4, 3), low=-2.0, high=2.0, avoid=(0.0,)), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=15)
def test_a_module_applying_a_cache_reading_op_fails(on, x, seed):
    """A Module applying such an op to its input (or to a parameter other than the last one
    checked) passed."""
    rng = np.random.default_rng(seed)
    with pytest.raises(GradcheckError, match=CACHE_READ):
        gradcheck(CachedNet(cached_sin(), on, rng), x, argnums=0, seed=seed)
    assert gradcheck(CachedNet(RIGHT_SIN, on, rng), x, argnums=0, seed=seed)


# --- a gradient below atol beside a large one is named in the warning ------------------------

NEGATED_TANH = mg.defop("negated_tanh", np.tanh,
                        (lambda g, out, x: -g * (1 - np.tanh(x) ** 2),), register=False)
ZERO_SIN = mg.defop("zero_sin", np.sin, (lambda g, out, x: np.zeros_like(x),), register=False)


def vacuous_messages(caught):
    return [str(w.message) for w in caught if issubclass(w.category, VacuousCheckWarning)]


@given(x=mst.arrays(low=-2.0, high=2.0), data=st.data(), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=20)
def test_a_tiny_gradient_beside_a_large_one_is_named(x, data, seed):
    """f = sum(x x) + 1e-7 sum(wrong(b)): b's gradient (~1e-7, its sign wrong) was compared
    with nothing, silently, because x's is large; the warning names argument 1 now, in
    either order, and not argument 0."""
    b = data.draw(mst.arrays(x.shape, low=-2.0, high=2.0), label="b")
    f = lambda x, b: mg.sum(x * x) + 1e-7 * mg.sum(NEGATED_TANH(b))  # noqa: E731
    for argnums in ((0, 1), (1, 0)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert gradcheck(f, x, b, argnums=argnums, seed=seed)
        messages = vacuous_messages(caught)
        assert len(messages) == 1
        assert "every element of the gradient of argument 1 is within atol 1e-06 of 0" \
            in messages[0]
        assert "argument 0" not in messages[0]
    with pytest.raises(GradcheckError, match="gradient of argument 1 .* is wrong"):
        gradcheck(f, x, b, argnums=1, seed=seed, atol=1e-12)


class DecayedBias(nn.Module):
    """A Linear layer whose bias enters through a term scaled by 1e-7 only (`op` on it)."""

    def __init__(self, op, rng):
        self.weight = nn.Parameter(rng.normal(size=(3, 2)))
        self.bias = nn.Parameter(rng.uniform(0.5, 1.5, size=2))
        self.op = op

    def forward(self, x):
        return mg.sum(x @ self.weight) + 1e-7 * mg.sum(self.op(self.bias))


@given(x=mst.arrays((4, 3), low=0.5, high=2.0), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=15)
def test_a_parameter_with_a_tiny_gradient_is_named(x, seed):
    with pytest.warns(VacuousCheckWarning, match=r"of the gradient of parameter 'bias' is "
                                                 r"within atol"):
        gradcheck(DecayedBias(NEGATED_TANH, np.random.default_rng(seed)), x, seed=seed)


@given(x=mst.arrays(low=0.3, high=1.2), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=20)
def test_a_vjp_returning_zeros_below_atol_is_warned_about(x, seed):
    """An engine gradient of exact zeros returned early, silently, though the numerical one
    (1e-7 to 5e-7 here, 100x the residue taken for zero and more) said otherwise."""
    with pytest.warns(VacuousCheckWarning, match="gradient of argument 0 is within atol"):
        assert gradcheck(lambda t: mg.sum(ZERO_SIN(t)) * 2e-7, x, seed=seed)
    with pytest.raises(GradcheckError, match="is wrong at index"):
        gradcheck(lambda t: mg.sum(ZERO_SIN(t)) * 2e-7, x, seed=seed, atol=1e-12)


def test_the_zeros_case_reported_warns():
    with pytest.warns(VacuousCheckWarning, match="gradient of argument 0 is within atol"):
        gradcheck(lambda t: ZERO_SIN(t) * 5e-7, np.array([0.3, -0.7, 1.1]))


# --- inputs gradcheck cannot check: errors that say so ------------------------------------------


@pytest.mark.parametrize("seed, error, message", [
    (-1, ValueError, r"seed must be an int >= 0, got -1$"),
    ("a", TypeError, r"seed must be an int >= 0, got str 'a'$"),
    (1.5, TypeError, r"seed must be an int >= 0, got float 1.5$"),
    (True, TypeError, r"seed must be an int >= 0, got bool True$"),
    (None, TypeError, r"seed must be an int >= 0, got NoneType None$"),
])
def test_a_bad_seed_is_refused_by_gradcheck(seed, error, message):
    """NumPy's "expected non-negative integer" or "SeedSequence expects int" came instead."""
    with pytest.raises(error, match=f"^gradcheck: {message}"):
        gradcheck(mg.tanh, np.array([0.5, -1.0]), seed=seed)
    assert gradcheck(mg.tanh, np.array([0.5, -1.0]), seed=np.int64(2**40))


@given(x=mst.arrays(mst.shapes(min_dims=1), low=-2.0, high=2.0), data=st.data())
@settings(max_examples=20)
def test_a_non_finite_input_is_refused_naming_it(x, data):
    """A NaN or infinite argument was blamed on the gradient: "engine nan, numerical nan"."""
    index = data.draw(st.tuples(*(st.integers(0, n - 1) for n in x.shape)), label="index")
    bad = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]), label="bad")
    y = x.copy()
    y[index] = bad
    with pytest.raises(ValueError, match=rf"^gradcheck: argument 1 holds {bad!r} at index "
                                         rf"{re_tuple(index)} \(not finite"):
        gradcheck(lambda a, b: a * mg.tanh(b), x, y)
    assert gradcheck(lambda a, b: a * a, x, y, argnums=0)  # (b is data there: not checked)
    layer = nn.Linear(x.shape[-1], 2, rng=np.random.default_rng(0))
    layer.weight.data[index[-1], 0] = bad
    with pytest.raises(ValueError, match=r"^gradcheck: parameter 'weight' holds"):
        gradcheck(layer, x)


def re_tuple(index):
    return "\\(" + ", ".join(str(i) for i in index) + (",\\)" if len(index) == 1 else "\\)")


@pytest.mark.parametrize("hand, message", [
    (lambda a: "x", r"must be real numbers \(an array, a number\), got str"),
    (lambda a: "0.5", r"must be real numbers \(an array, a number\), got str"),
    (lambda a: None, r"must be real numbers \(an array, a number\), got NoneType"),
    (lambda a: [1.0, [2.0]], r"is not an array: its parts have different shapes: "
                             r"\[1.0, \[2.0\]\]"),
])
def test_a_handwritten_gradient_that_is_not_numbers_is_named(hand, message):
    """A string or a ragged list gave NumPy's bare ValueError ("could not convert string to
    float"); a string of digits was read as a number."""
    x = np.array([0.5, -1.0])
    with pytest.raises(TypeError, match=f"^check_backward: handwritten gradient of argument 0 "
                                        f"{message}"):
        check_backward_at(lambda a: mg.sum(mg.tanh(a)), hand, x, argnums=0)


def test_op_cases_of_an_unknown_op_lists_the_known_ones():
    """op_cases("nope") raised a bare KeyError: 'nope'."""
    with pytest.raises(ValueError, match=r"^op_cases: no op 'nope' in minigrad.OPS; its ops "
                                         r"are .*\btanh\b"):
        mst.op_cases("nope")
    with pytest.raises(TypeError, match=r"^op_cases: op must be an op's name or its entry in "
                                        r"minigrad.OPS, got function"):
        mst.op_cases(mg.tanh)
    assert mst.op_cases(mg.OPS["tanh"]) is not None


@given(st.integers(2, 6), st.floats(1.0, 1.9), st.integers(0, 2**32 - 1))
@settings(max_examples=20)
def test_a_cache_reading_vjp_fails_behind_a_shift_invariant_difference(n, low, seed):
    """x - max(x) and a - b are the same for every element moved by one step (within a
    binade): the last call before the second backward must move each element by its own."""
    cached = cached_sin(np.exp, np.exp)
    x = np.linspace(low, low + 0.05 * n, n)
    with pytest.raises(GradcheckError, match="two backward passes"):
        gradcheck(lambda t: mg.sum(cached(t - t.max())), x, seed=seed)
    a, b = x, x[::-1] * 0.9
    with pytest.raises(GradcheckError, match="two backward passes"):
        gradcheck(lambda a, b: mg.sum(cached(a - b)), a, b, seed=seed)


@given(st.floats(1.0, 2.0), st.integers(0, 2**32 - 1))
@settings(max_examples=15)
def test_a_zero_vjp_beside_a_large_f_warns(low, seed):
    """A term scaled by 3e-7 whose VJP returns zeros, beside a large f (~230): its numerical
    gradient (~5e-7) is within atol but far above central differences' residue of f's
    rounding (~3e-8): a vacuous check, warned, not a check of zeros passed silently."""
    tiny = mg.defop("tiny", lambda b: 3e-7 * b, (lambda g, out: np.zeros_like(g),),
                    saves="nothing", register=False)
    x = np.linspace(low, low + 1.0, 10)
    b = np.array([0.5, -0.3])
    with pytest.warns(VacuousCheckWarning, match="of argument 1 is within atol"):
        gradcheck(lambda x, b: (x * x).sum() * 10 + tiny(b).sum(), x, b, seed=seed)


def test_a_handwritten_gradient_of_fractions_is_real_numbers():
    from fractions import Fraction

    assert check_backward_at(lambda a: mg.sum(a * 3), lambda a: [Fraction(3), Fraction(3)],
                             np.array([0.5, 1.0]), argnums=0) is None
    with pytest.raises(TypeError, match="must be real numbers"):
        check_backward_at(lambda a: mg.sum(a * 3), lambda a: [Fraction(3), "3"],
                          np.array([0.5, 1.0]), argnums=0)
