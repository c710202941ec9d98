"""gradcheck's defaults: float16 and float32 models checked in float64 (no false failure, a
real mistake still caught), only what needs a gradient perturbed (a loss's targets are
data), and each output of a tuple checked and named."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import OPS, Tensor, defop, nn
from minigrad.testing import GradcheckError, VacuousCheckWarning, gradcheck, numerical_grad
from minigrad.testing import mutants as mm
from minigrad.testing import strategies as mst

# The check runs in float64 whatever the model's dtype: central differences with eps = 1e-6
# on these bounded values are good to ~1e-9, so the float64 tolerances hold for every dtype.
ATOL, RTOL = 1e-6, 1e-5
LOW_PRECISION = (np.float16, np.float32)


class MLP(nn.Module):
    """tanh hidden layers, a linear last layer, in `dtype`."""

    def __init__(self, sizes, dtype, rng):
        self.layers = [nn.Linear(a, b, rng=rng, dtype=dtype) for a, b in zip(sizes, sizes[1:])]

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = mg.tanh(layer(x))
        return self.layers[-1](x)


class LSTMCell(nn.Module):
    """(h, c) -> (h', c'): c' = f c + i g, h' = o tanh(c'), with gates i, f, o = sigmoid and
    g = tanh of slices of one Linear of [x, h]. `copy_c` makes the c' it returns (the
    identity, or a broken one)."""

    def __init__(self, n_in, n_hidden, dtype, rng, copy_c=lambda c: c):
        self.gates = nn.Linear(n_in + n_hidden, 4 * n_hidden, rng=rng, dtype=dtype)
        self.n, self.copy_c = n_hidden, copy_c

    def forward(self, x, h, c):
        z, n = self.gates(mg.concatenate([x, h], axis=-1)), self.n
        i, f, o = (mg.sigmoid(z[..., k * n:(k + 1) * n]) for k in range(3))
        c = f * c + i * mg.tanh(z[..., 3 * n:])
        return o * mg.tanh(c), self.copy_c(c)


def bce(model):
    """The issue's loss: binary cross-entropy of the model's probabilities against targets
    T of 0s and 1s, which no perturbation may move out of [0, 1]."""
    return lambda X, T: mg.binary_cross_entropy(mg.sigmoid(model(X)), T)


def drawn_values(module, draw, dtype):
    """Draw a value in [-1, 1] (in `dtype`) for every parameter, biases nonzero; `draw` is
    Hypothesis's (of a composite strategy, or `data.draw`)."""
    module.load_state_dict({
        name: draw(mst.arrays(p.shape, low=-1.0, high=1.0, dtype=dtype), label=name)
        for name, p in module.named_parameters()
    })


@st.composite
def mlp_cases(draw, dtypes=LOW_PRECISION):
    """A model in a drawn dtype with drawn weights, inputs X and binary targets T."""
    dtype = draw(st.sampled_from(dtypes), label="dtype")
    sizes = draw(st.lists(st.integers(1, 3), min_size=2, max_size=4), label="sizes")
    batch = draw(st.integers(1, 3), label="batch")
    model = MLP(sizes, dtype, np.random.default_rng(0))
    drawn_values(model, draw, dtype)
    X = draw(mst.arrays((batch, sizes[0]), low=-2.0, high=2.0, dtype=dtype), label="X")
    T = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=batch * sizes[-1],
                      max_size=batch * sizes[-1]), label="T")
    return model, X, np.array(T, dtype).reshape(batch, sizes[-1])


# --- float16 and float32 models --------------------------------------------------------------

@given(case=mlp_cases(), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=60)
def test_no_false_failure_on_low_precision_models(case, seed):
    """Before, a float32 model failed with a right gradient (eps = 1e-6 is below float32's
    resolution): 'parameter 'weight': engine 0.766, numerical 0.730'."""
    model, X, T = case
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert gradcheck(model, X, argnums=0, atol=ATOL, rtol=RTOL, seed=seed)
    assert gradcheck(bce(model), Tensor(X, requires_grad=True), T, params=model, atol=ATOL,
                     rtol=RTOL, seed=seed)
    assert {name: p.dtype for name, p in model.named_parameters()} == dtypes


@pytest.mark.parametrize("name", sorted(OPS))
@given(data=st.data())
@settings(max_examples=10)
def test_no_false_failure_on_float32_op_cases(name, data):
    case = data.draw(mst.op_cases(name, dtype=np.float32), label="case")
    assert gradcheck(case.call, *case.operands, atol=ATOL, rtol=RTOL,
                     seed=data.draw(st.integers(0, 2**32 - 1), label="seed"))


def test_numerical_grad_differentiates_float32_arguments_in_float64():
    x = np.array([-1.5, 0.25, 0.7, 2.0], np.float32)
    (g,) = numerical_grad(lambda t: (t * t * t).sum(), x)
    assert g.dtype == np.float64 and x.dtype == np.float32
    np.testing.assert_allclose(g, 3 * x.astype(np.float64) ** 2, rtol=1e-8, atol=1e-9)


# d/dx x^2 is 2x; this op claims 3x.
broken_square = defop("broken_square", np.square, (lambda g, out, x: g * 3 * x,), register=False)


class SquaredLinear(nn.Module):
    """y = square(x W): the square through `square`, right or broken."""

    def __init__(self, dtype, square=mg.mul):
        self.weight = nn.Parameter(np.array([[0.9, -0.4], [0.3, 0.8]], dtype))
        self.square = square

    def forward(self, x):
        y = x @ self.weight
        return self.square(y, y) if self.square is mg.mul else self.square(y)


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_a_wrong_vjp_is_caught_in_low_precision(dtype):
    x = np.array([[1.0, -0.5], [0.25, 2.0]], dtype)
    assert gradcheck(SquaredLinear(dtype), x)
    with pytest.raises(GradcheckError) as info:
        gradcheck(SquaredLinear(dtype, broken_square), x)
    message = str(info.value)
    assert message.startswith("gradcheck: gradient of parameter 'weight' (shape (2, 2)) is "
                              "wrong at index (")
    engine, numerical = (float(v) for v in message.split("engine ")[1].split(" (")[0]
                         .split(", numerical "))
    assert engine == pytest.approx(1.5 * numerical, rel=1e-6, abs=0)  # 3 y against 2 y
    assert "> atol 1e-06 + rtol 1e-05 * |numerical|" in message


def test_every_mutant_of_a_float32_model_that_changes_a_gradient_is_caught():
    """Each plausible mistake (minigrad.testing.mutants) in the VJPs a float32 classifier
    runs through fails the check exactly when it changes a gradient (a GradcheckError, or a
    gradient of the wrong shape refused by the engine)."""
    rng = np.random.default_rng(0)
    model = MLP([3, 4, 2], np.float32, rng)
    for p in model.parameters():
        p.data[...] = rng.uniform(-1, 1, p.shape)
    X = rng.uniform(-2, 2, (5, 3)).astype(np.float32)
    T = rng.integers(0, 2, (5, 2)).astype(np.float32)
    killed = 0
    for op in ("addmm", "tanh", "sigmoid", "binary_cross_entropy"):
        for mutant in mm.mutants(op):
            with mm.installed(mutant) as tally:
                try:
                    gradcheck(bce(model), Tensor(X, requires_grad=True), T, params=model)
                    caught = False
                except (GradcheckError, ValueError):
                    caught = True
            assert caught == (tally.changed > 0), str(mutant)
            killed += caught
    assert killed >= 15


# --- what is perturbed ----------------------------------------------------------------------

def test_a_loss_target_is_data():
    """The issue's call: before, T was perturbed too, out of [0, 1]."""
    rng = np.random.default_rng(1)
    model = MLP([3, 2], np.float32, rng)
    X, T = rng.normal(size=(4, 3)).astype(np.float32), np.array([[0.0, 1.0]] * 4, np.float32)
    assert gradcheck(lambda X, T: mg.binary_cross_entropy(mg.sigmoid(model(X)), T), X, T,
                     params=model)
    with pytest.raises(ValueError, match="target must lie in"):  # T named: perturbed
        gradcheck(bce(model), X, T, argnums=1, params=model)


# Right for argument 0, wrong (sign) for argument 1.
broken_mul = defop("broken_mul", np.multiply,
                   (lambda g, out, a, b: g * b, lambda g, out, a, b: -g * a), register=False)


def test_tensors_that_require_grad_are_checked_and_the_rest_is_data():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([0.5, -4.0, 1.0])
    f = lambda p, q: broken_mul(p, q).sum()
    assert gradcheck(f, Tensor(a, requires_grad=True), b)  # b is data
    assert gradcheck(f, Tensor(a, requires_grad=True), Tensor(b))  # without requires_grad too
    for second in (Tensor(b, requires_grad=True), b):
        with pytest.raises(GradcheckError, match=r"^gradcheck: gradient of argument 1 "):
            gradcheck(f, a, second)  # requires_grad, or nothing marked: every argument
    with pytest.raises(GradcheckError, match="argument 1"):  # argnums names exactly
        gradcheck(f, Tensor(a, requires_grad=True), b, argnums=1)
    assert gradcheck(f, a, Tensor(b, requires_grad=True), argnums=0)


@given(logits=mst.arrays((4, 3), avoid=(0.0,)),
       labels=hnp.arrays(np.int64, 4, elements=st.integers(0, 2)), mask=hnp.arrays(np.bool_, 4))
@settings(max_examples=10)
def test_integer_and_boolean_arguments_are_data_when_nothing_is_marked(logits, labels, mask):
    """Before, nothing marked made the labels float tensors: cross_entropy refused them
    ("labels require grad; pass an integer array") though an integer array was passed."""
    seen = []

    def loss(z, y, m, k):
        seen.append((y, m, k))
        return mg.cross_entropy(z, y) * k + (z.sum(axis=1) * m).sum()

    assert gradcheck(loss, logits, labels, mask, 2)
    assert all(y is labels and m is mask and k == 2 for y, m, k in seen)  # as they are
    # broken_mul is wrong for its second operand: checked only where argnums names it
    weights = labels + 1
    assert gradcheck(lambda x, w: broken_mul(x, w).sum(), logits[0], weights[:3])
    with pytest.raises(GradcheckError, match=r"^gradcheck: gradient of argument 1 "):
        gradcheck(lambda x, w: broken_mul(x, w).sum(), logits[0], weights[:3], argnums=(0, 1))


def test_only_integer_arguments_leave_nothing_to_check():
    with pytest.raises(ValueError, match=r"^gradcheck: nothing to check: .*integer and "
                                         r"boolean arguments are data unless named in argnums"):
        gradcheck(lambda y: mg.Tensor(y * 2.0).sum(), np.array([1, 2]))


def test_data_is_passed_as_it_is():
    x = Tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    index = np.array([2, 0, 2])

    def gather(t, i):
        assert i is index  # not a float64 copy: an index stays an index
        return t[i] * 2.0

    assert gradcheck(gather, x, index)


def test_a_modules_inputs_are_data_unless_named():
    class Squares(nn.Module):  # right for the weight, wrong for the input
        def __init__(self):
            self.weight = nn.Parameter(np.array([0.5, -1.5]))

        def forward(self, x):
            return broken_square(x) * self.weight

    x = np.array([1.0, 2.0])
    assert gradcheck(Squares(), x)
    with pytest.raises(GradcheckError, match="^gradcheck: gradient of argument 0 "):
        gradcheck(Squares(), x, argnums=0)
    with pytest.raises(GradcheckError, match="^gradcheck: gradient of argument 0 "):
        gradcheck(Squares(), Tensor(x, requires_grad=True))


def test_nothing_to_check_is_refused():
    with pytest.raises(ValueError, match=r"^gradcheck: nothing to check: no argument to "
                                         r"perturb \(argnums=\(\)\) and no parameters"):
        gradcheck(lambda t: t * 2.0, np.ones(2), argnums=())
    with pytest.raises(ValueError, match=r"nothing to check: no argument to perturb "
                                         r"\(argnums=None\)"):
        gradcheck(lambda: mg.Tensor(1.0))


# --- several outputs ------------------------------------------------------------------------

# The identity with a VJP that doubles: wrong wherever its output is used.
wrong_copy = defop("wrong_copy", lambda x: x.copy(), (lambda g, out, x: 2 * g,), register=False)


@given(dtype=st.sampled_from((np.float64,) + LOW_PRECISION), n_in=st.integers(1, 3),
       n_hidden=st.integers(1, 3), batch=st.integers(1, 2), data=st.data())
@settings(max_examples=30)
def test_an_lstm_cells_two_outputs_are_checked(dtype, n_in, n_hidden, batch, data):
    cell = LSTMCell(n_in, n_hidden, dtype, np.random.default_rng(0))
    drawn_values(cell, data.draw, dtype)
    x, h, c = (data.draw(mst.arrays((batch, n), low=-2.0, high=2.0, dtype=dtype), label=name)
               for name, n in (("x", n_in), ("h", n_hidden), ("c", n_hidden)))
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    assert gradcheck(cell, x, h, c, argnums=(0, 1, 2), atol=ATOL, rtol=RTOL, seed=seed)
    # c' returned through wrong_copy: h' (output 0, checked first) is right, c' is not
    cell.copy_c = wrong_copy
    with pytest.raises(GradcheckError, match=r"^gradcheck: gradient of argument [0-2] \(shape "
                                             rf"\({batch}, (?:{n_in}|{n_hidden})\)\) through "
                                             r"output 1 of 2 is wrong at index"):
        gradcheck(cell, x, h, c, argnums=(0, 1, 2), atol=ATOL, rtol=RTOL, seed=seed)


def test_each_output_gets_its_own_upstream_gradient():
    # sum() twice: a scalar output's VJP that ignores its upstream gradient is caught in
    # either place, and named (a list is a tuple of outputs too)
    ignores_upstream = defop("ignores_upstream", np.square, (lambda g, out, x: 2 * x,),
                             register=False)
    x = np.array([0.5, 1.5])
    assert gradcheck(lambda t: [(t * t).sum(), mg.tanh(t)], x)
    with pytest.raises(GradcheckError, match="through output 1 of 2 .*upstream gradient -?[1-2]"):
        gradcheck(lambda t: [mg.tanh(t), ignores_upstream(t.sum())], x)
    # an output that no checked value reaches has a zero gradient, numerically too
    assert gradcheck(lambda t, u: (t * 2.0, mg.exp(u)), Tensor(x, requires_grad=True), x)


def test_outputs_that_cannot_be_checked_are_refused():
    x = np.ones(2)
    with pytest.raises(TypeError, match=r"^gradcheck: f must return a Tensor when given "
                                        r"Tensors, got float as output 1$"):
        gradcheck(lambda t: (t * 2.0, 1.0), x)
    with pytest.raises(TypeError, match="^gradcheck: f returned an empty sequence"):
        gradcheck(lambda t: (), x)
    to_float32 = defop("to_float32", lambda v: v.astype(np.float32), (lambda g, out, v: g,),
                       register=False)
    with pytest.raises(TypeError, match=r"^gradcheck: output 1 of f is float32 while every "
                                        r"argument and parameter checked is float64: f casts"):
        gradcheck(lambda t: (t * 2.0, to_float32(t)), x)


# --- a gradient below atol everywhere is checked against nothing: a warning -------------------


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


SIGN_FLIPPED_SIGMOID = defop("sign_flipped_sigmoid", _sigmoid,
                             (lambda g, out: -g * out * (1.0 - out),), register=False,
                             saves="output")
TRIPLED_SQUARE = defop("tripled_square", np.square, (lambda g, out, x: 3.0 * g * x,),
                       register=False)  # 3x where 2x belongs: 50% off
BELOW_ATOL = "every element of the gradient of argument 0 is within atol 1e-06 of 0"


@given(x=mst.arrays(low=-20.0, high=-16.0), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=20)
def test_a_saturated_sigmoid_is_said_to_check_nothing(x, seed):
    """Where sigmoid saturates its gradient is below 3e-7: a VJP with its sign flipped passed
    the default tolerances silently, having been compared with nothing; it passes with a
    VacuousCheckWarning saying so (a warning: a property test drawing such an input now and
    then is no failure of the VJP's; an error made users' tests over [-3, 3] fail)."""
    for f in (mg.sigmoid, SIGN_FLIPPED_SIGMOID):
        with pytest.warns(VacuousCheckWarning, match=f"{BELOW_ATOL}.*: a wrong VJP passes. "
                          "Pick inputs where the gradient is not tiny"):
            assert gradcheck(f, x, seed=seed)
    # with an atol below the gradient, the check sees it
    assert gradcheck(mg.sigmoid, x, seed=seed, atol=1e-13)
    with pytest.raises(GradcheckError, match="is wrong at index"):
        gradcheck(SIGN_FLIPPED_SIGMOID, x, seed=seed, atol=1e-13)


@given(w=mst.arrays(low=-1.0, high=1.0, avoid=(0.0,)), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=20)
def test_a_loss_scaled_below_atol_is_said_to_check_nothing(w, seed):
    """A loss scaled by 1e-7 (a small weight-decay term) has gradients below atol: a VJP
    50% off passed silently; now with a VacuousCheckWarning."""
    with pytest.warns(VacuousCheckWarning, match=BELOW_ATOL):
        gradcheck(lambda t: mg.sum(TRIPLED_SQUARE(t)) * 1e-7, w, seed=seed)
    with pytest.raises(GradcheckError, match="is wrong at index"):
        gradcheck(lambda t: mg.sum(TRIPLED_SQUARE(t)) * 1e-7, w, seed=seed, atol=1e-14)


@given(data=st.data())
@settings(max_examples=20)
def test_a_gradient_that_is_zero_is_checked_as_zero(data):
    """f ignoring what is checked (both sides exactly 0), or x^3 at 0 (the central
    differences' residue eps^2): a check of zeros, which passes without a warning."""
    shape = data.draw(mst.shapes(), label="shape")
    x, y = data.draw(mst.arrays(shape), label="x"), data.draw(mst.arrays(shape), label="y")
    with warnings.catch_warnings():
        warnings.simplefilter("error", VacuousCheckWarning)
        assert gradcheck(lambda t: t * 0.0, x)
        assert gradcheck(lambda t, u: mg.sum(u * 0.0), x, y)
        assert gradcheck(lambda t: t**3, np.zeros(shape))
    with pytest.raises(GradcheckError, match="is wrong at index"):  # zero where it is not
        gradcheck(defop("zero_vjp_exp", np.exp, (lambda g, out, x: np.zeros_like(g),),
                        register=False), x)


# --- what the default tolerances let through, as gradcheck's docstring says --------------------

SLIGHTLY_OFF_SQUARE = defop("slightly_off_square", np.square,
                            (lambda g, out, x: g * 2.00001 * x,), register=False)  # 5e-6 off
FLOAT32_COS_SIN = defop("float32_cos_sin", np.sin,
                        (lambda g, out, x: g * np.cos(x.astype(np.float32)),), register=False)


@given(x=mst.arrays(low=0.5, high=3.0), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=20)
def test_the_defaults_let_a_vjp_off_by_1e_5_relative_through_and_tighter_ones_do_not(x, seed):
    assert gradcheck(SLIGHTLY_OFF_SQUARE, x, seed=seed)
    assert gradcheck(FLOAT32_COS_SIN, x, seed=seed)  # float32 mixed in: right to ~1e-7
    tight = {"atol": 1e-8, "rtol": 1e-7}
    assert gradcheck(mg.square, x, seed=seed, **tight)  # central differences are this good
    with pytest.raises(GradcheckError, match="is wrong at index"):
        gradcheck(SLIGHTLY_OFF_SQUARE, x, seed=seed, **tight)
