"""nn: Parameter, Module's parameter discovery and state, Linear and the initialisers, and the
issue's acceptance check: a GRU cell written from the public ops passes gradcheck."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import Tensor, nn
from minigrad.nn import Linear, Module, Parameter, glorot_uniform, orthogonal
from minigrad.testing import gradcheck

ATOL, RTOL = 1e-6, 1e-5  # as in tests/test_ops.py: float64 central differences, bounded inputs


def rng(seed=0):
    return np.random.default_rng(seed)


# --- Parameter and Module -------------------------------------------------------------------


def test_parameter_requires_grad():
    p = Parameter([1, 2])
    assert isinstance(p, Tensor) and p.requires_grad and p.is_leaf
    assert p.dtype == np.float64
    assert repr(p) == "Parameter([1., 2.], requires_grad=True)"
    (p * p).sum().backward()
    np.testing.assert_array_equal(p.grad, [2.0, 4.0])


class Net(Module):
    def __init__(self, seed=0):
        r = rng(seed)
        self.scale = Parameter(1.0)
        self.encoder = Linear(3, 4, rng=r)
        self.layers = [Linear(4, 4, rng=r), Linear(4, 2, bias=False, rng=r)]
        self.pair = (Parameter(np.zeros(2)), Parameter(np.ones(2)))
        self.heads = {"a": Linear(2, 1, rng=r), "b": {"inner": Parameter([3.0])}}
        self.constant = Tensor([1.0], requires_grad=True)  # not a Parameter: not learned
        self.config = {"size": 3, "names": ["x", "y"]}
        self.tied = self.encoder.weight  # shared: counted once, under its first name
        self.again = self.layers[0]  # a shared sub-module, likewise

    def forward(self, x):
        h = mg.tanh(self.encoder(x) * self.scale)
        for layer in self.layers:
            h = mg.tanh(layer(h))
        h = h * self.pair[0] + self.pair[1]
        return self.heads["a"](h) * self.heads["b"]["inner"]


NAMES = ["scale", "encoder.weight", "encoder.bias", "layers.0.weight", "layers.0.bias",
         "layers.1.weight", "pair.0", "pair.1", "heads.a.weight", "heads.a.bias",
         "heads.b.inner"]


def test_named_parameters_in_attributes_lists_tuples_and_dicts():
    net = Net()
    names = [name for name, _ in net.named_parameters()]
    assert names == NAMES
    params = list(net.parameters())
    assert len(params) == len({id(p) for p in params}) == len(NAMES)
    assert all(isinstance(p, Parameter) for p in params)
    # By identity: `in` compares tensors elementwise (==), as in PyTorch.
    assert any(p is net.encoder.weight for p in params)
    assert all(p is not net.constant for p in params)
    assert [n for n, _ in net.named_parameters(prefix="net")][:2] == ["net.scale",
                                                                        "net.encoder.weight"]


def test_every_parameter_gets_a_gradient_and_zero_grad_clears_them():
    net = Net()
    net(np.ones((5, 3))).sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_forward_is_required():
    with pytest.raises(TypeError, match="Module cannot be called: it defines no forward"):
        Module()(1.0)


REPLACEMENTS = {
    "a tensor computed from it": lambda p: p * 1.0,
    "a Tensor": lambda p: Tensor(np.ones(p.shape), requires_grad=True),
    "a detached copy": lambda p: p.detach(),
    "an array": lambda p: np.ones(p.shape),
    "a number": lambda p: 1.0,
    "a Module": lambda p: Linear(1, 1),
}


@pytest.mark.parametrize("replacement", sorted(REPLACEMENTS))
@pytest.mark.parametrize("name", ["scale", "encoder.weight", "layers.1.weight"])
def test_only_a_parameter_or_none_replaces_a_parameter(name, replacement):
    """`lin.weight = lin.weight * 1.0` dropped the weight from parameters(): an optimizer made
    after it, or a state dict, no longer saw it, and training silently stopped updating it.
    Refused as PyTorch refuses it, naming the module, the attribute and the types; nothing
    changes (not nn's generation either)."""
    net = Net()
    *path, attribute = name.split(".")
    owner = net
    for part in path:
        owner = owner[int(part)] if isinstance(owner, list) else getattr(owner, part)
    old = getattr(owner, attribute)
    value = REPLACEMENTS[replacement](old)
    generation = mg.nn.generation
    with pytest.raises(TypeError, match=rf"^{type(owner).__name__}: cannot assign a "
                                        rf"{type(value).__name__} to '{attribute}', which "
                                        r"holds a Parameter \(Parameter or None expected\)"):
        setattr(owner, attribute, value)
    assert getattr(owner, attribute) is old and mg.nn.generation == generation
    assert [n for n, _ in net.named_parameters()] == NAMES


def test_a_parameter_is_replaced_by_a_parameter_none_or_anything_once_deleted():
    """What PyTorch allows: another Parameter, None (the parameter is gone), and, once the
    attribute is deleted, anything; each moves nn's generation (compile sees the change)."""
    lin = Linear(2, 3, rng=rng(0))
    for change in (lambda: setattr(lin, "weight", Parameter(np.zeros((2, 3)))),
                   lambda: setattr(lin, "bias", None),
                   lambda: delattr(lin, "weight"),
                   lambda: setattr(lin, "weight", Tensor(np.ones((2, 3))))):
        generation = mg.nn.generation
        change()
        assert mg.nn.generation != generation
    assert list(lin.named_parameters()) == []
    np.testing.assert_array_equal(lin(np.ones((1, 2))).data, np.full((1, 3), 2.0))
    lin.weight = Parameter(np.zeros((2, 3)))  # a Parameter over a Tensor is fine too
    assert [n for n, _ in lin.named_parameters()] == ["weight"]


def test_with_parameters_swaps_tensors_in_where_compile_sees_them():
    """The test helper deletes each Parameter before setting gradcheck's tensor in its place
    (setting it over the Parameter is refused): a compiled function called inside traces
    again with the tensors swapped in, and again with the Parameters put back."""
    lin = Linear(2, 2, rng=rng(0))
    names, x = ["weight", "bias"], rng(1).standard_normal((3, 2))
    original = [p for _, p in lin.named_parameters()]
    values = [Tensor(rng(2).standard_normal((2, 2))), Tensor(rng(3).standard_normal(2))]
    compiled = mg.compile(lambda x: lin(x))
    before = compiled(x).data
    swapped = with_parameters(lin, names, values, lambda: compiled(x).data)
    np.testing.assert_array_equal(swapped, (x @ values[0].data + values[1].data))
    assert [p for _, p in lin.named_parameters()] == original
    np.testing.assert_array_equal(compiled(x).data, before)


def test_state_dict_is_a_copy():
    net = Net()
    state = net.state_dict()
    assert list(state) == NAMES
    original = net.encoder.weight.data.copy()
    state["encoder.weight"][...] = 99.0
    np.testing.assert_array_equal(net.encoder.weight.data, original)
    net.scale.data[...] = 5.0
    assert state["scale"] == 1.0


def test_load_state_dict_round_trip_in_place():
    source, target = Net(seed=1), Net(seed=2)
    assert not np.array_equal(source.encoder.weight.data, target.encoder.weight.data)
    arrays = {id(p): p.data for p in target.parameters()}
    target.load_state_dict(source.state_dict())
    for (name, p), (_, q) in zip(source.named_parameters(), target.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
        assert arrays[id(q)] is q.data  # copied into, not replaced: optimizers keep their refs


def test_load_state_dict_takes_another_modules_parameters():
    """`dict(other.named_parameters())`, tensors that require grad (NumPy on those is
    refused, and loading them raised that TypeError)."""
    source, target = Net(seed=1), Net(seed=2)
    target.load_state_dict(dict(source.named_parameters()))
    for (name, p), (_, q) in zip(source.named_parameters(), target.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)


class Row(Module):
    def __init__(self, values):
        self.rows = [Parameter(v) for v in values]


_ENTRY = {  # a state dict entry made of another parameter of the module being loaded
    "tensor": lambda p: p,
    "array": lambda p: p.data,
    "view": lambda p: p.data[...],
    "reversed view": lambda p: p.data[::-1],
}


@given(values=hnp.arrays(np.float64, st.tuples(st.integers(2, 5), st.integers(1, 4)),
                         elements=st.floats(-10, 10)),
       data=st.data(), recorded=st.booleans())
def test_load_state_dict_reads_every_value_before_writing_any(values, data, recorded):
    """Entries that are the module's own parameters, their arrays or views of them, in any
    permutation: each parameter gets the value its entry had before the call (loaded entry
    by entry, a swap left both parameters equal to the one written first). A graph recorded
    before keeps the values it saw."""
    order = data.draw(st.permutations(range(len(values))), label="order")
    forms = data.draw(st.lists(st.sampled_from(sorted(_ENTRY)), min_size=len(values),
                               max_size=len(values)), label="forms")
    row = Row(values)
    loss = sum((p * p).sum() for p in row.rows) if recorded else None
    row.load_state_dict({f"rows.{i}": _ENTRY[form](row.rows[j])
                         for i, (j, form) in enumerate(zip(order, forms))})
    for i, (j, form) in enumerate(zip(order, forms)):
        expected = values[j][::-1] if form == "reversed view" else values[j]
        np.testing.assert_array_equal(row.rows[i].data, expected, err_msg=f"rows.{i}")
    if recorded:
        loss.backward()
        for p, value in zip(row.rows, values):
            np.testing.assert_array_equal(p.grad, 2 * value)


def _assert_unchanged(net, before):
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("heads.b.inner"), r"missing \['heads.b.inner'\]"),
    (lambda s: s.update(extra=np.zeros(1)), r"unexpected \['extra'\]"),
    (lambda s: s.update({"heads.b.inner": np.zeros(2)}),
     r"'heads.b.inner' has shape \(2,\), expected \(1,\)"),
    (lambda s: s.update({"heads.b.inner": np.array([1j])}), r"'heads.b.inner' has dtype complex"),
    (lambda s: s.update({"heads.b.inner": np.array(["a"])}), r"'heads.b.inner' has dtype <U1"),
    (lambda s: s.update({"heads.b.inner": np.array([np.nan])}),
     r"'heads.b.inner' holds NaN or infinity$"),
    (lambda s: s.update({"heads.b.inner": np.array([-np.inf])}),
     r"'heads.b.inner' holds NaN or infinity$"),
])
def test_load_state_dict_refuses_a_mismatch_and_changes_nothing(edit, message):
    # Every other entry is a valid new value, and the bad one comes last in the module's
    # order: a load that copied as it went would have changed everything else by then.
    net = Net(seed=1)
    before = net.state_dict()
    state = Net(seed=2).state_dict()
    edit(state)
    with pytest.raises(ValueError, match=r"^load_state_dict: state does not match Net: .*"
                                         + message):
        net.load_state_dict(state)
    _assert_unchanged(net, before)


@pytest.mark.parametrize("state", [lambda s: list(s.items()), lambda s: list(s.values()),
                                   lambda s: None], ids=["pairs", "values", "None"])
def test_load_state_dict_refuses_a_state_that_is_no_mapping(state):
    """A list of (name, array) pairs raised "unhashable type: 'numpy.ndarray'"."""
    net = Net(seed=1)
    before = net.state_dict()
    state = state(Net(seed=2).state_dict())
    with pytest.raises(TypeError, match=rf"^Net\.load_state_dict: expected a mapping .*, got "
                                        rf"{type(state).__name__}$"):
        net.load_state_dict(state)
    _assert_unchanged(net, before)


@pytest.mark.parametrize("how", ["read-only", "memory-mapped"])
def test_load_state_dict_refuses_a_read_only_parameter_and_changes_nothing(how, tmp_path):
    """A parameter whose .data cannot be written (last in the module's order, so that a
    load copying as it went would have changed every other one) is a mismatch named in
    the error, and nothing is loaded."""
    net = Net(seed=1)
    if how == "read-only":
        frozen = net.heads["b"]["inner"].data.copy()
        frozen.flags.writeable = False
    else:
        np.save(tmp_path / "inner.npy", net.heads["b"]["inner"].data)
        frozen = np.load(tmp_path / "inner.npy", mmap_mode="r")
    net.heads["b"]["inner"].data = frozen
    before = net.state_dict()
    with pytest.raises(ValueError, match=r"^load_state_dict: state does not match Net: "
                                         r"'heads.b.inner' has a read-only \.data"):
        net.load_state_dict(Net(seed=2).state_dict())
    _assert_unchanged(net, before)


class IntAndStrKeys(Module):
    def __init__(self, value):
        self.heads = {1: Parameter(np.full(2, value)), "1": Parameter(np.full(2, -value))}


class DottedAttribute(Module):
    def __init__(self, value):
        self.heads = {"1": Parameter(np.full(2, value))}
        setattr(self, "heads.1", Parameter(np.full(2, -value)))


@pytest.mark.parametrize("Clashing", [IntAndStrKeys, DottedAttribute])
def test_two_parameters_with_one_name_are_refused_by_state_dict_and_load(Clashing, tmp_path):
    """Dotted names can clash: state_dict kept one of the two, and load_state_dict loaded
    one and left the other as it was, without a word. Both refuse, naming the clash (as
    `minigrad.save` does), and the load changes nothing."""
    source, target = Clashing(1.0), Clashing(0.0)
    assert [name for name, _ in source.named_parameters()] == ["heads.1", "heads.1"]
    message = rf"two parameters of {Clashing.__name__} are named 'heads\.1'"
    with pytest.raises(ValueError, match=rf"^state_dict: {message}"):
        source.state_dict()
    with pytest.raises(ValueError, match=rf"^load_state_dict: {message}"):
        target.load_state_dict({"heads.1": np.ones(2)})
    assert [p.data.tolist() for p in target.parameters()] == [[0.0, 0.0], [-0.0, -0.0]]
    with pytest.raises(ValueError, match=r"^save: two parameters are named 'heads\.1'"):
        mg.save(source, tmp_path / "model.npz")
    assert not list(tmp_path.iterdir())


def test_load_state_dict_names_every_problem():
    net = Net()
    state = net.state_dict()
    del state["scale"]
    state["pair.0"] = np.zeros(3)
    state["bogus"] = np.zeros(1)
    with pytest.raises(ValueError) as info:
        net.load_state_dict(state)
    assert all(s in str(info.value) for s in ("missing ['scale']", "unexpected ['bogus']",
                                              "'pair.0' has shape (3,), expected (2,)"))


# --- Linear and initialisers ----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3,), (5, 3), (2, 4, 3)])
def test_linear_on_any_rank(shape):
    layer = Linear(3, 2, rng=rng())
    layer.bias.data[...] = [0.5, -1.0]
    x = rng(1).standard_normal(shape)
    y = layer(x)
    assert y.shape == shape[:-1] + (2,)
    np.testing.assert_allclose(y.data, x @ layer.weight.data + layer.bias.data, rtol=1e-14)
    y.backward(np.ones(y.shape))
    np.testing.assert_allclose(layer.bias.grad, np.full(2, np.prod(shape[:-1])))
    gradcheck(layer, x, argnums=0, atol=ATOL, rtol=RTOL)  # x, and the layer's parameters


def test_linear_without_bias():
    layer = Linear(3, 2, bias=False, rng=rng())
    assert layer.bias is None
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    x = rng(1).standard_normal((4, 3))
    np.testing.assert_allclose(layer(x).data, x @ layer.weight.data, rtol=1e-14)
    assert repr(layer) == "Linear(3, 2, bias=False)"


def test_linear_wrong_input_width():
    layer = Linear(3, 2, rng=rng())
    with pytest.raises(ValueError, match=r"^Linear: expected input whose last axis has 3 "
                                         r"elements, got shape \(5, 4\)"):
        layer(np.ones((5, 4)))
    with pytest.raises(ValueError, match=r"got shape \(\)"):
        layer(Tensor(1.0))


def test_linear_glorot_bounds_and_zero_bias():
    n_in, n_out = 50, 30
    layer = Linear(n_in, n_out, rng=rng())
    limit = np.sqrt(6.0 / (n_in + n_out))
    w = layer.weight.data
    assert w.shape == (n_in, n_out)
    assert np.abs(w).max() <= limit
    # 1500 uniform draws: the chance that none reaches 0.95 of the limit is 0.95^1500 ~ 1e-34
    assert np.abs(w).max() > 0.95 * limit
    assert abs(w.mean()) < 0.05 * limit  # std of the mean: limit / sqrt(3 * 1500) = 0.015 limit
    np.testing.assert_array_equal(layer.bias.data, np.zeros(n_out))
    direct = glorot_uniform(rng(), n_in, n_out)
    np.testing.assert_array_equal(w, direct)


def test_same_seed_same_weights():
    a, b, c = Linear(4, 3, rng=rng(7)), Linear(4, 3, rng=rng(7)), Linear(4, 3, rng=rng(8))
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(a.weight.data, c.weight.data)


def test_linear_float32():
    layer = Linear(3, 2, rng=rng(), dtype=np.float32)
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    assert layer(np.ones((2, 3), np.float32)).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("n_in, n_out", [(3, 2), (4, 4)])
def test_linear_checks_what_init_returns(n_in, n_out, dtype):
    """Linear refuses, where it is made, a W from `init` in another dtype than its own (the
    bias, and the outputs, would differ) or of another shape (PyTorch's (n_out, n_in) is
    silently a valid W when n_in == n_out, so every square shape is checked too)."""
    name = np.dtype(dtype).name
    other = np.float64 if dtype != np.float64 else np.float32
    what = rf"^Linear: init\(rng, {n_in}, {n_out}, {name}\) returned an array of"
    with pytest.raises(TypeError, match=rf"{what} dtype {np.dtype(other).name}, not the "
                                        rf"layer's {name}$"):
        Linear(n_in, n_out, dtype=dtype, init=lambda r, i, o, d: np.zeros((i, o), other))
    with pytest.raises(TypeError, match=rf"{what} dtype int64"):
        Linear(n_in, n_out, dtype=dtype, init=lambda r, i, o, d: np.zeros((i, o), np.int64))
    for shape in [(n_in, n_out, 1), (n_in + 1, n_out), (n_in * n_out,)]:
        with pytest.raises(ValueError, match=rf"{what} shape {re.escape(str(shape))}, not "
                                             rf"\(n_in, n_out\) = \({n_in}, {n_out}\)$"):
            Linear(n_in, n_out, dtype=dtype, init=lambda r, i, o, d, s=shape: np.zeros(s, d))
    if n_in != n_out:
        with pytest.raises(ValueError, match=r"\(PyTorch's \(n_out, n_in\) layout: "
                                             r"transpose it\)$"):
            Linear(n_in, n_out, dtype=dtype, init=lambda r, i, o, d: np.zeros((o, i), d))
    # the checks pass what init is asked for: an array, a list (float64) or a tensor
    values = rng().standard_normal((n_in, n_out)).astype(dtype)
    for result in [values, Tensor(values), values.tolist()]:
        if isinstance(result, list) and dtype != np.float64:
            continue
        layer = Linear(n_in, n_out, dtype=dtype, init=lambda r, i, o, d, w=result: w)
        assert layer.weight.dtype == layer.bias.dtype == dtype
        np.testing.assert_array_equal(layer.weight.data, values)


@pytest.mark.parametrize("n_in, n_out", [(4, 4), (6, 3), (3, 6)])
def test_orthogonal(n_in, n_out):
    w = orthogonal(rng(), n_in, n_out)
    assert w.shape == (n_in, n_out)
    small = w.T @ w if n_in >= n_out else w @ w.T
    np.testing.assert_allclose(small, np.eye(min(n_in, n_out)), atol=1e-12)
    layer = Linear(n_in, n_out, rng=rng(), init=orthogonal)
    np.testing.assert_array_equal(layer.weight.data, w)


# --- a GRU cell, as a user would write it ---------------------------------------------------


class GRUCell(Module):
    """h' = (1 - z) * n + z * h with z = sigmoid(x Wz + h Uz + bz), r = sigmoid(x Wr + h Ur + br),
    n = tanh(x Wn + (r * h) Un + bn) (Cho et al., 2014)."""

    def __init__(self, n_in, n_hidden, rng):
        def pair():  # x W + b and h U
            return Linear(n_in, n_hidden, rng=rng), Linear(n_hidden, n_hidden, False, rng=rng)

        self.xz, self.hz = pair()
        self.xr, self.hr = pair()
        self.xn, self.hn = pair()

    def forward(self, x, h):
        z = mg.sigmoid(self.xz(x) + self.hz(h))
        r = mg.sigmoid(self.xr(x) + self.hr(h))
        n = mg.tanh(self.xn(x) + self.hn(r * h))
        return (1 - z) * n + z * h


def with_parameters(module, names, values, call):
    """Run `call()` with `values` in place of the module's parameters `names` (for gradcheck,
    which hands the function its own tensors), then put the parameters back. Each Parameter
    is deleted before its tensor is set (an attribute holding a Parameter takes no Tensor):
    both move nn's generation, as a swap must for a compiled function to see it."""
    owners = []
    try:
        for name, value in zip(names, values):
            *path, attribute = name.split(".")
            owner = module
            for part in path:
                owner = getattr(owner, part)
            owners.append((owner, attribute, getattr(owner, attribute)))
            delattr(owner, attribute)
            setattr(owner, attribute, value)
        return call()
    finally:
        for owner, attribute, original in owners:
            setattr(owner, attribute, original)


def test_gru_cell_passes_gradcheck():
    cell = GRUCell(3, 4, rng(0))
    for p in cell.parameters():  # nonzero biases, so that every term of the rule matters
        p.data[...] = rng(1).uniform(-0.5, 0.5, p.shape)
    x = rng(2).standard_normal((2, 3))
    h = rng(3).uniform(-0.9, 0.9, (2, 4))
    names = [name for name, _ in cell.named_parameters()]
    weights = [p.data.copy() for p in cell.parameters()]
    assert len(names) == 9

    def step(x, h, *weights):
        return with_parameters(cell, names, weights, lambda: cell(x, h))

    # A non-scalar output: gradcheck projects it on a random direction.
    assert gradcheck(step, x, h, *weights, atol=ATOL, rtol=RTOL)
    # and through a few steps of the recurrence, the state feeding back into every gate
    xs = rng(4).standard_normal((3, 2, 3))

    def unrolled(xs, h, *weights):
        def run():
            state = h
            for t in range(3):
                state = cell(xs[t], state)
            return state
        return with_parameters(cell, names, weights, run)

    assert gradcheck(unrolled, xs, h, *weights, atol=ATOL, rtol=RTOL)


def test_a_module_that_refers_back_to_its_parent_is_walked_once():
    class Child(Module):
        def __init__(self, parent):
            self.parent = parent
            self.w = Parameter(np.ones(2))

    class Parent(Module):
        def __init__(self):
            self.v = Parameter(np.zeros(3))
            self.child = Child(self)
            self.itself = self

    assert [name for name, _ in Parent().named_parameters()] == ["v", "child.w"]


def test_load_state_dict_refuses_values_that_overflow_the_parameters_dtype():
    """float64 values beyond float16's range became inf in a float16 module, with only
    NumPy's warning; refused, as `minigrad.load` and the optimizers refuse them."""
    layer = Linear(2, 1, rng=np.random.default_rng(0), dtype=np.float16)
    before = layer.state_dict()
    state = {"weight": np.array([[1e6], [1.0]]), "bias": np.array([0.5])}
    with pytest.raises(ValueError, match=r"'weight' holds NaN or infinity once cast to float16"):
        layer.load_state_dict(state)
    _assert_unchanged(layer, before)


LAYERS = {"Linear": lambda n_in, n, **kw: mg.nn.Linear(n_in, n, **kw),
          "RNNCell": lambda n_in, n, **kw: mg.nn.RNNCell(n_in, n, **kw),
          "GRUCell": lambda n_in, n, **kw: mg.nn.GRUCell(n_in, n, **kw),
          "LSTMCell": lambda n_in, n, **kw: mg.nn.LSTMCell(n_in, n, **kw),
          "RNN": lambda n_in, n, **kw: mg.nn.RNN(n_in, n, **kw),
          "GRU": lambda n_in, n, **kw: mg.nn.GRU(n_in, n, **kw),
          "LSTM": lambda n_in, n, **kw: mg.nn.LSTM(n_in, n, **kw)}
SECOND = {"Linear": "n_out"}  # (the cells' and layers' is hidden)


@given(name=st.sampled_from(sorted(LAYERS)), dtype=st.sampled_from(
    [np.int32, np.int64, np.uint8, np.bool_, complex, np.complex64, object, "U3"]))
def test_a_layer_refuses_a_dtype_its_parameters_cannot_learn_in(name, dtype):
    """`nn.Linear(4, 3, dtype=np.int32)` made float64 weights, the dtype ignored silently
    (the cells' too), and dtype=complex raised the Tensor's message: a TypeError naming the
    layer and the dtype now."""
    with pytest.raises(TypeError, match=rf"^{name}: dtype must be a floating dtype .*got "
                                        rf"{np.dtype(dtype)}"):
        LAYERS[name](4, 3, dtype=dtype)


@given(name=st.sampled_from(sorted(LAYERS)), dtype=st.sampled_from(
    [np.float16, np.float32, np.float64, "float32"]))
def test_a_layer_holds_its_parameters_in_a_floating_dtype_it_is_given(name, dtype):
    layer = LAYERS[name](4, 3, dtype=dtype)
    assert {p.dtype for p in layer.parameters()} == {np.dtype(dtype)}


@given(name=st.sampled_from(sorted(LAYERS)), first=st.booleans(), size=st.one_of(
    st.integers(-5, 0), st.floats(-3, 8), st.sampled_from([True, False, "4", None, (4,)])))
def test_a_layer_refuses_a_size_that_is_not_an_integer_of_at_least_1(name, first, size):
    """`nn.RNN(3, 0)` was a ZeroDivisionError, `nn.GRU(3, -1)` a math domain error,
    `nn.Linear(-1, 3)` NumPy's "negative dimensions", `nn.Linear(4.0, 3)` and `nn.Linear('4',
    3)` NumPy's own errors, `nn.Linear(True, 3)` a layer of one input: a TypeError (not an
    integer) or ValueError (below 1) naming the layer and the size now."""
    what = "n_in" if first else SECOND.get(name, "hidden")
    sizes = (size, 3) if first else (4, size)
    if isinstance(size, int) and not isinstance(size, bool):
        error, message = ValueError, rf"^{name}: {what} must be at least 1, got {size}$"
    else:
        error = TypeError
        message = rf"^{name}: {what} must be an integer, got {type(size).__name__}"
    with pytest.raises(error, match=message):
        LAYERS[name](*sizes)


@given(name=st.sampled_from(sorted(LAYERS)), n_in=st.integers(1, 4), n=st.integers(1, 4))
def test_a_layer_takes_numpys_integers_as_sizes(name, n_in, n):
    layer = LAYERS[name](np.int64(n_in), np.int32(n))
    sizes = getattr(layer, "cell", layer)
    assert type(sizes.n_in) is int and sizes.n_in == n_in  # (Python's: its repr, its math)
    assert list(layer.parameters())[0].shape[0] == n_in


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("rng", [0, np.random.RandomState(0), "seed", np.random.default_rng])
def test_a_layer_refuses_an_rng_that_is_not_a_generator(name, rng):
    """`nn.Linear(4, 3, rng=0)` was "'int' object has no attribute 'uniform'"."""
    with pytest.raises(TypeError, match=rf"^{name}: rng must be a numpy.random.Generator or "
                                        rf"None, got {type(rng).__name__}"):
        LAYERS[name](4, 3, rng=rng)


@pytest.mark.parametrize("name", ["Linear", "RNNCell", "GRUCell", "LSTMCell"])
@pytest.mark.parametrize("x", [None, "abc", ["a", "b"], object()])
def test_a_layers_input_that_is_not_numbers_is_named_as_such(name, x):
    """`layer(None)` said "expected input whose last axis has 4 elements, got shape ()":
    NumPy's shape of None, where the problem is its type. A TypeError saying so now."""
    layer = LAYERS[name](4, 3, rng=np.random.default_rng(0))
    dtype = np.asarray(x).dtype
    with pytest.raises(TypeError, match=rf"^{name}: input must be a tensor or an array of real "
                                        rf"numbers, got {type(x).__name__} \(NumPy's dtype "
                                        rf"{re.escape(str(dtype))}\)$"):
        layer(x)


@pytest.mark.parametrize("name", ["RNNCell", "GRUCell", "LSTMCell"])
def test_a_cells_state_that_is_not_numbers_is_named_as_such(name):
    cell = LAYERS[name](4, 3, rng=np.random.default_rng(0))
    what = "h" if name == "LSTMCell" else "a state"
    state = ("abc", None) if name == "LSTMCell" else "abc"
    with pytest.raises(TypeError, match=rf"^{name}: {what} must be a tensor or an array of real "
                                        r"numbers, got str \(NumPy's dtype <U3\)$"):
        cell(np.ones(4), state)


@pytest.mark.parametrize("value", ["x", None, {"a": 1}, np.array(["a", "b"])])
def test_load_state_dict_names_a_value_that_is_not_numbers_by_its_type(value):
    """`load_state_dict({'weight': 'x', ...})` said "'weight' has shape ()", NumPy's shape of
    the string: its type and dtype now, and nothing changes."""
    layer = Linear(2, 3, rng=np.random.default_rng(0))
    before = layer.state_dict()
    what = "" if isinstance(value, np.ndarray) else rf" \(a {type(value).__name__}\)"
    dtype = np.asarray(value).dtype
    with pytest.raises(ValueError, match=rf"'weight' has dtype {re.escape(str(dtype))}{what}, "
                                         r"not numbers"):
        layer.load_state_dict({"weight": value, "bias": np.zeros(3)})
    for key, array in layer.state_dict().items():
        np.testing.assert_array_equal(array, before[key])


@pytest.mark.parametrize("make, name", [
    (lambda rng: nn.Linear(2, 2, bias=False, rng=rng), "bias"),
    (lambda rng: nn.GRUCell(2, 3, bias=False, rng=rng), "bias_hh"),
])
def test_an_optional_parameter_set_to_none_takes_only_a_parameter(make, name):
    """A bias=False layer's bias (or one set to None) took a Tensor, which the forward pass
    used and parameters() never found: never trained, its .grad never zeroed. As PyTorch's
    registered parameter, it takes a Parameter or None; del frees the name."""
    rng = np.random.default_rng(0)
    layer = make(rng)
    with pytest.raises(TypeError, match=rf"cannot assign a Tensor to '{name}', which holds "
                                        r"None for an optional Parameter \(Parameter or "):
        setattr(layer, name, mg.Tensor(np.zeros(getattr(layer, "hidden", 2) * 3
                                                if name == "bias_hh" else 2), requires_grad=True))
    assert getattr(layer, name) is None
    width = 9 if name == "bias_hh" else 2
    setattr(layer, name, nn.Parameter(np.zeros(width)))
    assert name in dict(layer.named_parameters())
    setattr(layer, name, None)
    with pytest.raises(TypeError, match="Parameter or None expected"):
        setattr(layer, name, np.zeros(width))
    delattr(layer, name)
    setattr(layer, name, "anything")  # (deleted: the name is free again)


def test_a_users_attribute_set_to_none_takes_anything():
    """Only a layer's declared optional parameters are slots: a user's `self.cache = None`
    then a tensor is ordinary Python."""
    class Net(nn.Module):
        def __init__(self):
            self.cache = None

    net = Net()
    net.cache = mg.Tensor(np.ones(2))
    assert list(net.parameters()) == []


class _Holder(nn.Module):
    """A module holding `children` under attributes, in a list and in a dict, and one
    parameter of its own."""

    def __init__(self, children, how):
        self.own = nn.Parameter(np.zeros(1))
        if how == "attributes":
            for i, child in enumerate(children):
                setattr(self, f"c{i}", child)
        elif how == "list":
            self.items = list(children)
        else:
            self.table = {f"k{i}": child for i, child in enumerate(children)}


_trees = st.recursive(st.just("leaf"), lambda inner: st.tuples(
    st.lists(inner, max_size=3), st.sampled_from(["attributes", "list", "dict"])), max_leaves=8)


def _build(tree):
    if tree == "leaf":
        return nn.Linear(2, 2, rng=np.random.default_rng(0))
    children, how = tree
    return _Holder([_build(t) for t in children], how)


@settings(max_examples=40, deadline=None)
@given(_trees)
def test_named_modules_names_each_module_by_its_path_as_named_parameters_do(tree):
    model = _build(tree)
    named = list(model.named_modules())
    assert [m for _, m in named] == list(model.modules())
    assert named[0] == ("", model)
    assert len({id(m) for _, m in named}) == len(named)
    by_name = dict(named)
    for name, p in model.named_parameters():  # a parameter's name: its module's, then its own
        owner, _, attribute = name.rpartition(".")
        assert vars(by_name[owner])[attribute] is p
    assert [(f"top.{n}" if n else "top", m) for n, m in named] == list(
        model.named_modules("top"))


@settings(max_examples=20, deadline=None)
@given(_trees)
def test_train_and_eval_set_training_on_every_module(tree):
    model = _build(tree)
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    assert model.train() is model and all(m.training for m in model.modules())
    model.train(False)
    assert not any(m.training for m in model.modules())


def test_train_refuses_a_mode_that_is_not_a_bool():
    with pytest.raises(TypeError, match="Linear.train: mode must be True or False"):
        nn.Linear(2, 2).train(1)


def test_a_module_prints_its_direct_sub_modules_by_name():
    class Net(nn.Module):
        def __init__(self):
            self.encoder = nn.Sequential(nn.Linear(2, 3), mg.tanh)
            self.cells = [nn.GRUCell(3, 4)]

    assert repr(Net()) == ("Net(\n  (encoder): Sequential(\n    (0): Linear(2, 3, bias=True)\n"
                           "    (1): tanh\n  )\n  (cells.0): GRUCell(3, 4, bias=True)\n)")
    assert repr(nn.Module()) == "Module()"


def test_a_compiled_forward_follows_train_and_eval():
    """`training` is a module attribute like any other: compile traces again when eval() or
    train() sets it, so the compiled forward takes the branch eager mode takes."""
    class Halved(nn.Module):
        def __init__(self):
            self.lin = nn.Linear(2, 2, rng=np.random.default_rng(1))

        def forward(self, x):
            y = self.lin(x)
            return (y * 0.5).sum() if self.training else y.sum()

    model, x = Halved(), np.arange(6.0).reshape(3, 2)
    compiled = mg.compile(model.forward)
    for mode in (True, False, True, False):
        model.train(mode)
        assert compiled(x).item() == model(x).item()


def test_a_module_that_refers_back_to_its_parent_prints():
    """A child holding its parent (an `owner` attribute) is walked once by named_modules;
    printing it shows the parent inside as "...", not a RecursionError."""
    class Block(nn.Module):
        def __init__(self):
            self.lin = nn.Linear(2, 2)

    class Net(nn.Module):
        def __init__(self):
            self.block = Block()
            self.block.owner = self

    net = Net()
    assert [name for name, _ in net.named_modules()] == ["", "block", "block.lin"]
    assert repr(net) == ("Net(\n  (block): Block(\n    (lin): Linear(2, 2, bias=True)\n"
                         "    (owner): ...\n  )\n)")
    assert repr(net.block) == ("Block(\n  (lin): Linear(2, 2, bias=True)\n  (owner): Net(\n"
                               "    (block): ...\n  )\n)")


def test_train_in_the_mode_a_module_is_in_traces_nothing_again():
    """model.train() before every step (PyTorch's habit) sets nothing when the mode holds,
    so a compiled forward is not traced again."""
    lin = nn.Linear(2, 2, rng=np.random.default_rng(0))
    compiled = mg.compile(lin.forward)
    x = np.ones((3, 2))
    for _ in range(3):
        lin.train()
        compiled(x)
    assert compiled.traces == 1
    lin.eval()
    compiled(x)
    assert compiled.traces == 2
