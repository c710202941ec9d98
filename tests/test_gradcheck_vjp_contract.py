"""gradcheck holds a user's VJPs to their contract, which the engine's casts and read-only
seed used to hide or report badly: a VJP returns its operand's dtype and leaves its upstream
gradient g alone; and f computing in a lower precision inside, or integer labels handed to
numerical_grad, get an error saying so rather than a wrong number."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad.nn import Parameter
from minigrad.testing import GradcheckError, gradcheck, numerical_grad
from minigrad.testing import strategies as mst


def _sin(name, vjp):
    return mg.defop(name, np.sin, (vjp,), saves="inputs", register=False)


RIGHT = _sin("sin", lambda g, out, x: g * np.cos(x))


@given(x=mst.arrays(), seed=st.integers(0, 2**32 - 1))
def test_a_vjp_computing_in_float64_for_float32_operands_is_refused(x, seed):
    """Its numbers are right in float64, where gradcheck compares them, and a float32 leaf's
    .grad is cast back: a float32 model's backward ran in float64 unseen. gradcheck runs a
    backward on float32 copies too, for the VJPs' dtypes."""
    upcast = _sin("sin_upcast", lambda g, out, x: g.astype(np.float64) * np.cos(x))
    with pytest.raises(GradcheckError, match=r"float32 copies .* VJP of 'sin_upcast' for "
                                             r"operand 0 returned float64 for a float32 "
                                             r"operand \(its upstream gradient float32\)"):
        gradcheck(upcast, x, seed=seed)
    assert gradcheck(RIGHT, x, seed=seed)


@given(x=mst.arrays(), seed=st.integers(0, 2**32 - 1))
def test_a_vjp_computing_in_float32_for_float64_operands_is_refused(x, seed):
    """Off by float32's rounding (~1e-7 relative), well inside rtol 1e-5: it passed."""
    downcast = _sin("sin_downcast", lambda g, out, x: (g * np.cos(x)).astype(np.float32))
    with pytest.raises(GradcheckError, match="VJP of 'sin_downcast' for operand 0 returned "
                                             "float32 for a float64 operand"):
        gradcheck(downcast, x, seed=seed)


@given(x=mst.arrays((3,)), c=mst.arrays((3,)))
def test_dtypes_promoted_by_the_graph_and_parameters_pass(x, c):
    """A float32 operand whose output NumPy promotes (by a float64 array downstream) gets a
    float64 g: its VJP returns float64 then. The float32 pass gives parameters float32
    copies and their own arrays back."""
    assert gradcheck(lambda t: RIGHT(t) * c, x)
    w = Parameter(c.copy())
    assert gradcheck(lambda t: RIGHT(t * w), x, params={"w": w})
    assert w.dtype == np.float64 and np.array_equal(w.data, c)
    upcast = _sin("sin_upcast", lambda g, out, x: g.astype(np.float64) * np.cos(x))
    with pytest.raises(GradcheckError, match="VJP of 'sin_upcast'"):
        gradcheck(lambda t: upcast(t * w), x, params={"w": w}, argnums=0)
    assert w.dtype == np.float64 and np.array_equal(w.data, c)


def test_a_vjp_writing_into_g_is_named_where_g_is_the_sweeps_own():
    """g an array the sweep got from tanh's VJP (writable): the doubled g reached the
    gradient, reported as a wrong number without naming the op."""
    def vjp(g, out, x):
        g *= 2.0
        return g * np.cos(x)

    with pytest.raises(GradcheckError, match="VJP of 'sin_doubling_g' for operand 0 wrote "
                                             "into its upstream gradient g"):
        gradcheck(lambda t: mg.tanh(_sin("sin_doubling_g", vjp)(t)), np.array([0.3, -1.2]))


@pytest.mark.parametrize("low", [np.float32, np.float16])
@given(x=mst.arrays(low=-2.0, high=2.0))
def test_f_casting_to_a_lower_precision_inside_is_named(low, x):
    """f casting to float32 and back got "gradient ... is wrong" (central differences of
    float32 numbers), where a float32 output got this message."""
    with pytest.raises(TypeError, match=f"f casts to a lower precision: 'astype' makes "
                                        f"{np.dtype(low)} of a float64 operand"):
        gradcheck(lambda t: mg.astype(mg.tanh(mg.astype(t, low)), np.float64), x)
    narrowing = mg.defop("sin32", lambda x: np.sin(x).astype(np.float32),
                         (lambda g, out, x: g * np.cos(x),), saves="inputs", register=False)
    with pytest.raises(TypeError, match="'sin32' makes float32 of a float64 operand"):
        gradcheck(lambda t: mg.astype(narrowing(t), np.float64) * 2.0, x)


@given(logits=mst.arrays(st.tuples(st.integers(1, 4), st.integers(2, 5))), data=st.data())
def test_numerical_grad_treats_integer_labels_as_data(logits, data):
    """Its default differentiated every argument, labels too (cross_entropy refused the
    perturbed labels), where gradcheck treats integer arguments as data."""
    n, k = logits.shape
    labels = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    mask = labels % 2 == 0
    gradients = numerical_grad(lambda z, y, m: mg.cross_entropy(z * m[:, None], y),
                               logits, labels, mask)
    assert len(gradients) == 1
    z = mg.Tensor(logits, requires_grad=True)
    mg.cross_entropy(z * mask[:, None], labels).backward()
    np.testing.assert_allclose(gradients[0], z.grad, rtol=1e-6, atol=1e-8)


@given(x=mst.arrays(), seed=st.integers(0, 2**32 - 1))
def test_a_vjp_computing_in_float32_and_casting_back_is_refused(x, seed):
    """Its dtype is right, and its numbers within rtol 1e-5; but every element of the
    gradient is a float32 number, which a float64 gradient (linear in an upstream one of
    full precision) is by chance only."""
    def vjp(g, out, x):
        return (g.astype(np.float32) * np.cos(x).astype(np.float32)).astype(g.dtype)

    with pytest.raises(GradcheckError, match="gradient of argument 0 holds float32 numbers "
                                             "only .*a VJP computes in float32"):
        gradcheck(_sin("sin_in_float32", vjp), x, seed=seed)


def test_a_graph_made_before_gradcheck_keeps_its_own_vjps():
    """gradcheck watches the VJPs of the nodes f records, not those of a graph the caller
    made before (f closing over a computed tensor): that graph's own backward runs them
    later, unwatched, as the caller recorded them."""
    w = mg.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = mg.tanh(w * 3.0)
    before = h._node.vjps
    assert gradcheck(lambda x: (x * h).sum(), np.array([0.5, -1.0]), argnums=0)
    assert h._node.vjps is before
    h.sum().backward()
    np.testing.assert_allclose(w.grad, 3.0 / np.cosh([3.0, 6.0]) ** 2)


def test_a_gradient_that_cancels_to_zero_is_not_taken_for_float32_numbers():
    """A bias followed by a normalisation over the batch, a shift of every logit: their
    gradients are 0, left as rounding residue of a few bits (~1e-16), which are float32
    numbers too; gradcheck refused these right gradients as computed in float32 (found by
    this stop's review). Elements that are 0 up to atol are not looked at."""
    rng = np.random.default_rng(0)
    lin = mg.nn.Linear(5, 3, rng=rng)
    X = rng.standard_normal((6, 5))

    def normalised(X):
        h = lin(X)
        centred = h - h.mean(axis=0, keepdims=True)
        return mg.tanh(centred / mg.sqrt((centred * centred).mean(axis=0, keepdims=True)
                                         + 1e-5)).sum()

    assert gradcheck(normalised, X, params=lin)
    labels = np.array([0, 3, 1, 4])
    z = mg.Tensor(rng.standard_normal((4, 5)), requires_grad=True)
    b = mg.Tensor(rng.standard_normal(()), requires_grad=True)
    assert gradcheck(lambda z, b: mg.cross_entropy(z + b, labels), z, b)


def test_a_function_made_for_float64_only_is_still_checked():
    """The dtype pass on float32 copies ends where f cannot run in float32 (a scan's
    float32 carry meeting float64 data; an op taking float64 only): gradcheck raised those
    errors on right functions (found by this stop's review)."""
    rng = np.random.default_rng(1)
    h0 = rng.standard_normal(3)
    xs = rng.standard_normal((4, 3))
    assert gradcheck(lambda h: mg.scan(lambda c, x: (mg.tanh(c + x), None), h, xs)[0].sum(),
                     h0)

    def only_float64(a):
        if a.dtype != np.float64:
            raise TypeError("float64 only")
        return np.sin(a)

    sin64 = mg.defop("sin64", only_float64, (lambda g, out, a: g * np.cos(a),),
                     register=False)
    assert gradcheck(lambda x: sin64(x).sum(), h0)


def test_a_vjp_that_fails_on_float32_operands_is_reported():
    """The dtype pass ends quietly where f's forward cannot run in float32, but a VJP that
    fails on float32 operands fails for a float32 model too: raised, as before this stop
    (its review found the pass swallowing it)."""
    def vjp(g, out, x):  # the sign from a float64's bit pattern: breaks on float32
        return g * (1 - 2 * (x.view(np.int64) < 0))

    bits_abs = mg.defop("bits_abs", np.abs, (vjp,), register=False, saves="inputs")
    with pytest.raises(GradcheckError, match=r"float32 copies .* the VJP of 'bits_abs' for "
                                             r"operand 0 raised ValueError"):
        gradcheck(lambda t: bits_abs(t), np.array([0.3, -1.2, 2.0]))


def test_gradcheck_under_detect_anomaly_runs_its_float32_pass_without_it():
    """log(t * 1e-40) overflows to inf in float32 only: under detect_anomaly the dtype pass
    on float32 copies stopped there and gradcheck blamed log's VJP for a right function. The
    pass runs with anomaly mode off, so it still finds a VJP returning float64."""
    with mg.detect_anomaly():
        assert gradcheck(lambda t: mg.log(t * 1e-40).sum(), np.array([1.0, 2.0]))
        upcast = _sin("sin_upcast_anomaly", lambda g, out, x: g.astype(np.float64) * np.cos(x))
        with pytest.raises(GradcheckError, match="float32 copies .* returned float64"):
            gradcheck(lambda t: upcast(t).sum(), np.array([0.5, 1.0]))
