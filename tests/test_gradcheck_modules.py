"""gradcheck on Modules: every named parameter is checked and named in the error, parameters
come back exactly as they were (values and .grad), and the params= forms and their errors."""

import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad import nn
from minigrad.testing import GradcheckError, UncheckedParametersWarning, gradcheck
from minigrad.testing import strategies as mst

# Central differences (eps = 1e-6, float64) on these bounded inputs are good to ~1e-9.
ATOL, RTOL = 1e-6, 1e-5


class MLP(nn.Module):
    """tanh hidden layers, a linear last layer: y = L_k(tanh(... tanh(L_1(x))))."""

    def __init__(self, sizes, rng):
        self.layers = [nn.Linear(a, b, rng=rng) for a, b in zip(sizes, sizes[1:])]

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = mg.tanh(layer(x))
        return self.layers[-1](x)


class DetachedLinear(nn.Linear):
    """A user's bug: the weight is read through `.data`, so the engine never sees it and its
    gradient is zero, while the loss does depend on it."""

    def forward(self, x):
        return x @ self.weight.data + self.bias


def drawn_values(module, data, low=-1.0):
    """Draw a value in [low, 1] for every parameter (biases nonzero, so that every term of a
    rule matters) and load it."""
    module.load_state_dict({
        name: data.draw(mst.arrays(p.shape, low=low, high=1.0), label=name)
        for name, p in module.named_parameters()
    })


@st.composite
def mlps(draw):
    sizes = draw(st.lists(st.integers(1, 3), min_size=2, max_size=4))
    batch = draw(mst.shapes(max_dims=2, max_side=3))
    return sizes, batch


@given(drawn=mlps(), data=st.data())
@settings(max_examples=20)
def test_gradcheck_checks_every_parameter_of_a_module(drawn, data):
    sizes, batch = drawn
    model = MLP(sizes, np.random.default_rng(0))
    drawn_values(model, data)
    x = data.draw(mst.arrays(batch + (sizes[0],), low=-2.0, high=2.0), label="x")
    # a Module's input is data unless named: argnums=0 checks it too
    assert gradcheck(model, x, argnums=0, atol=ATOL, rtol=RTOL,
                     seed=data.draw(st.integers(0, 99)))


@given(drawn=mlps(), data=st.data())
@settings(max_examples=20)
def test_a_parameter_the_engine_cannot_see_is_named(drawn, data):
    sizes, batch = drawn
    model = MLP(sizes, np.random.default_rng(0))
    broken = data.draw(st.integers(0, len(model.layers) - 1), label="broken layer")
    layer = model.layers[broken]
    # Positive weights and inputs: every weight then moves the output (tanh' > 0), so the
    # hidden one has a nonzero numerical gradient: that of the right model, whose Linear
    # reads its weight through the engine. The outputs are summed, so that the random
    # signs of a projection cannot cancel it; saturated draws, where it stays below the
    # tolerance, are left out (gradcheck cannot see a gradient that small).
    drawn_values(model, data, low=0.5)
    x = data.draw(mst.arrays(batch + (sizes[0],), low=0.5, high=2.0), label="x")
    (right,) = mg.gradients(model(x).sum(), [layer.weight])
    assume(np.abs(right).max() > 10 * ATOL)
    model.layers[broken] = DetachedLinear(layer.n_in, layer.n_out, rng=np.random.default_rng(1))
    model.layers[broken].load_state_dict(layer.state_dict())
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda t: model(t).sum(), x, params=model, atol=ATOL, rtol=RTOL)
    # The inputs and the layers before the broken one are right; it is the first named.
    assert str(info.value).startswith(
        f"gradcheck: gradient of parameter 'layers.{broken}.weight' (shape "
        f"({layer.n_in}, {layer.n_out})) is wrong at index (")
    assert ": engine 0.0, numerical " in str(info.value)


def test_the_parameters_come_back_exactly():
    model = MLP([2, 3, 1], np.random.default_rng(0))
    before = {name: (p.data, p.data.copy()) for name, p in model.named_parameters()}
    sentinels = {name: np.full(p.shape, 7.0) for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        p.grad = sentinels[name]
    x = np.random.default_rng(1).normal(size=(4, 2))
    assert gradcheck(model, x)
    model.layers[0] = DetachedLinear(2, 3, rng=np.random.default_rng(2))  # now it fails
    model.layers[0].weight.data[...] = before["layers.0.weight"][1]
    with pytest.raises(GradcheckError):
        gradcheck(model, x)
    for name, p in model.named_parameters():
        array, value = before[name]
        np.testing.assert_array_equal(p.data, value, err_msg=name)  # bit for bit
        if not name.startswith("layers.0."):  # the replaced layer's arrays are new
            # (the array itself may be a fresh copy: a forward pass shares the one it read)
            assert p.grad is sentinels[name], name  # a user's accumulated gradient is kept


# d/dx x^2 is 2x; this op claims 3x.
broken_square = mg.defop("broken_square", np.square, (lambda g, out, x: g * 3 * x,),
                         register=False)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_each_parameter_gets_its_own_array_back(dtype):
    """The check runs on float64 copies: the parameter's own array (its dtype, its bits) is
    back afterwards, whether the check passes, fails or f raises."""
    layer = nn.Linear(3, 2, rng=np.random.default_rng(0), dtype=dtype)
    layer.bias.data[...] = [0.25, -0.5]
    arrays = {name: p.data for name, p in layer.named_parameters()}
    values = {name: array.copy() for name, array in arrays.items()}
    x = np.random.default_rng(1).normal(size=(4, 3)).astype(dtype)
    calls = []

    def raises_on_third_call(t):
        calls.append(t)
        if len(calls) == 3:
            raise RuntimeError("third call")
        return layer(t)

    assert gradcheck(layer, x)
    with pytest.raises(GradcheckError, match="parameter 'weight'"):
        gradcheck(lambda t: broken_square(layer(t)), x, params=layer)
    with pytest.raises(RuntimeError, match="third call"):
        gradcheck(raises_on_third_call, x, params=layer)
    for name, p in layer.named_parameters():
        assert p.data is arrays[name], name
        assert p.dtype == dtype, name
        np.testing.assert_array_equal(p.data, values[name], err_msg=name)


def test_the_parameters_come_back_when_the_module_raises():
    class FailsOnThirdCall(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.array([0.5, -1.5]))
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls == 3:  # inside the central differences, with w perturbed
                raise RuntimeError("third call")
            return (x * self.w).sum()

    module = FailsOnThirdCall()
    with pytest.raises(RuntimeError, match="third call"):
        gradcheck(module, np.ones(2), argnums=())
    np.testing.assert_array_equal(module.w.data, [0.5, -1.5])


def test_params_of_a_module_used_inside_a_function():
    model = MLP([3, 2], np.random.default_rng(0))
    x, t = np.random.default_rng(1).normal(size=(5, 3)), np.random.default_rng(2).random((5, 2))
    assert gradcheck(lambda inputs: mg.mse_loss(model(inputs), t), x, params=model)
    model.layers[0] = DetachedLinear(3, 2, rng=np.random.default_rng(3))
    with pytest.raises(GradcheckError, match="parameter 'layers.0.weight'"):
        gradcheck(lambda inputs: mg.mse_loss(model(inputs), t), x, params=model)
    # without params= a function's closure is not searched: only x is checked, and x's
    # gradient is right even through the detached weight; the parameters it reads unchecked
    # are warned of
    with pytest.warns(UncheckedParametersWarning, match=r"f also reads 1 tensor that "
                                                        r"requires grad \(shape \(2,\)\)"):
        assert gradcheck(lambda inputs: mg.mse_loss(model(inputs), t), x)
    # a mapping picks the parameters to check, under the names it gives them
    with pytest.raises(GradcheckError, match="parameter 'W'"):
        gradcheck(model, x, params={"W": model.layers[0].weight})
    assert gradcheck(model, x, params={"b": model.layers[0].bias})
    assert gradcheck(model, x, params={})  # none: the inputs only


def test_params_that_cannot_be_checked_are_refused():
    model = MLP([2, 2], np.random.default_rng(0))
    x = np.ones((1, 2))
    with pytest.raises(TypeError, match=r"^gradcheck: params must be a Module or a mapping "
                                        r"name -> Parameter, got list"):
        gradcheck(model, x, params=list(model.parameters()))
    with pytest.raises(ValueError, match=r"^gradcheck: params\['c'\] must be a Tensor that "
                                         r"requires grad, got Tensor with requires_grad=False"):
        gradcheck(model, x, params={"c": mg.Tensor([1.0])})
    with pytest.raises(ValueError, match=r"^gradcheck: params\['c'\] must be a Tensor that "
                                         r"requires grad, got ndarray"):
        gradcheck(model, x, params={"c": np.ones(2)})


def test_gradcheck_of_a_module_with_a_frozen_parameter_checks_the_others():
    """`lin.bias.requires_grad = False` made gradcheck(lin, x) raise "gradients: inputs[1]
    does not require grad", naming neither the parameter nor gradcheck; a frozen parameter
    gets no gradient, so it is not checked; the others are."""
    lin = mg.nn.Linear(3, 2, rng=np.random.default_rng(0))
    lin.bias.requires_grad = False
    x = mg.Tensor(np.random.default_rng(1).normal(size=(4, 3)), requires_grad=True)
    assert gradcheck(lin, x)
    assert gradcheck(lin, x.data, params=lin)
    lin.weight.requires_grad = False
    lin.bias.requires_grad = True
    assert gradcheck(lin, x)


@pytest.mark.parametrize("marked", ["nothing", "params", "argnums", "requires_grad"])
def test_parameters_read_unchecked_are_warned_of_where_nothing_was_marked(marked):
    """gradcheck(f, X, T) with f reading a model: it checked X and T (the targets too) and
    returned True whatever the model's VJPs did; now it says so. Where the user said what
    to check, no warning."""
    layer = nn.Linear(3, 1, rng=np.random.default_rng(0))
    x, t = np.random.default_rng(1).normal(size=(4, 3)), np.zeros((4, 1))

    def f(inputs, targets):
        return mg.mse_loss(layer(inputs), targets)

    options = {"params": {"params": layer}, "argnums": {"argnums": 0}}.get(marked, {})
    args = (mg.Tensor(x, requires_grad=True), t) if marked == "requires_grad" else (x, t)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncheckedParametersWarning)
        if marked != "nothing":
            assert gradcheck(f, *args, **options)
            return
        with pytest.raises(UncheckedParametersWarning,
                           match=r"checked all of f's float arguments \(argument 0, argument "
                                 r"1; targets among them, if f takes any\); f also reads 2 "
                                 r"tensors that require grad \(shapes \(3, 1\), \(1,\)\), a "
                                 r"model's parameters"):
            gradcheck(f, *args)
    with warnings.catch_warnings():  # f reading no parameter: nothing to say
        warnings.simplefilter("error", UncheckedParametersWarning)
        assert gradcheck(lambda a, b: (a * b).sum(), x, x)


def test_an_argument_gradcheck_cannot_perturb_is_named_with_what_to_do():
    layer = nn.Linear(3, 2, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match=r"^gradcheck: argument 0 \(dict\) is not an array it "
                                        r"can perturb .*pass a tree's arrays as arguments"):
        gradcheck(lambda p, x: (x @ p["w"]).sum(), {"w": np.ones((3, 2))}, np.ones((2, 3)))
    with pytest.raises(TypeError, match=r"^gradcheck: argument 0 \(Linear\) .*params="):
        gradcheck(lambda m, x: m(x), layer, np.ones((2, 3)))
