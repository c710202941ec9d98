"""The tape: backward's seeds, accumulation, retain_graph, no_grad, skipped inputs, several
graphs at once, and the release of a graph once it has been backpropagated."""

import gc
import re
import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import minigrad as mg
from minigrad import Tensor, defop, no_grad
from minigrad.testing import gradcheck, numerical_grad


def test_backward_from_a_scalar():
    x = Tensor([1.0, -2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * x.data)


@pytest.mark.parametrize("shape", [(1,), (1, 1), (1, 1, 1)])
def test_backward_from_a_size_one_tensor_needs_no_grad(shape):
    x = Tensor(np.full(shape, 3.0), requires_grad=True)
    (x * x).backward()
    np.testing.assert_array_equal(x.grad, np.full(shape, 6.0))


def test_backward_from_a_non_scalar_needs_a_grad_of_its_shape():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    y = x * 2.0
    with pytest.raises(ValueError, match=r"backward: a tensor of shape \(2, 3\) is not a scalar; "
                                         r"pass grad= an array of shape \(2, 3\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"backward: grad has shape \(3,\), but the tensor has "
                                         r"shape \(2, 3\)"):
        y.backward(np.ones(3))
    g = np.arange(6.0).reshape(2, 3)
    y.backward(g)
    np.testing.assert_array_equal(x.grad, 2.0 * g)


def test_backward_does_not_mutate_the_given_grad():
    x = Tensor(np.ones(4), requires_grad=True)
    y = x[:2] + x[1:3]  # sparse slice gradients are summed in place somewhere; not in g
    g = np.array([1.0, 2.0])
    y.backward(g)
    np.testing.assert_array_equal(g, [1.0, 2.0])
    np.testing.assert_array_equal(x.grad, [1.0, 3.0, 2.0, 0.0])


def test_leaf_backward():
    x = Tensor([1.0, 2.0], requires_grad=True)
    g = np.array([5.0, 6.0])
    x.backward(g)
    np.testing.assert_array_equal(x.grad, g)
    assert x.grad is not g  # .grad is the user's own copy


def test_gradients_accumulate_until_reset():
    x = Tensor([1.0, 2.0], requires_grad=True)
    for _ in range(3):
        (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, 3 * 2 * x.data)
    x.grad = None
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * x.data)


def test_retain_graph_allows_a_second_backward():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = mg.tanh(x * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.copy()
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * first, rtol=1e-15)


def test_second_backward_without_retain_graph_is_refused():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"already released.*retain_graph=True"):
        y.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])  # the refused call added nothing


def test_backward_through_a_released_shared_part_is_refused_and_adds_nothing():
    x = Tensor([1.0, 2.0], requires_grad=True)
    h = mg.tanh(x)
    h.sum().backward()
    before = x.grad.copy()
    with pytest.raises(RuntimeError, match="'tanh' was already released"):
        (h * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, before)


def test_backward_on_a_tensor_that_does_not_require_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (Tensor([1.0]) * 2.0).backward()


def test_no_grad_records_nothing():
    x = Tensor([1.0, 2.0], requires_grad=True)
    assert mg.is_recording()
    with no_grad():
        assert not mg.is_recording()
        y = mg.tanh(x * x).sum()
        z = mg.stack([x, x])
    assert mg.is_recording()
    for t in (y, z):
        assert not t.requires_grad and t.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_no_grad_nests_and_restores_on_exception():
    with no_grad():
        with no_grad():
            assert not mg.is_recording()
        assert not mg.is_recording()  # the inner block restores "off", not "on"
    assert mg.is_recording()
    with pytest.raises(ZeroDivisionError), no_grad():
        raise ZeroDivisionError
    assert mg.is_recording()
    x = Tensor([1.0], requires_grad=True)
    assert (x * 2).requires_grad


class _Probe:
    """VJPs for a test-local multiply: the first counts its calls, the second must never run."""

    def __init__(self):
        self.calls = 0

    def first(self, g, out, a, b):
        self.calls += 1
        return g * b

    def second(self, g, out, a, b):
        raise AssertionError("the VJP of an input that needs no gradient was called")


@pytest.mark.parametrize("constant", [
    lambda: Tensor([3.0, 4.0]),           # a Tensor without requires_grad
    lambda: np.array([3.0, 4.0]),         # an array
    lambda: 3.0,                          # a number
])
def test_inputs_needing_no_gradient_are_skipped(constant):
    probe = _Probe()
    probe_mul = defop("probe_mul", np.multiply, (probe.first, probe.second), register=False)
    x = Tensor([1.0, 2.0], requires_grad=True)
    c = constant()
    out = probe_mul(x, c)
    out.backward(np.ones(2))
    assert probe.calls == 1
    np.testing.assert_array_equal(x.grad, np.broadcast_to(np.asarray(getattr(c, "data", c)), (2,)))
    if isinstance(c, Tensor):
        assert c.grad is None


def test_outputs_of_constants_only_are_not_recorded():
    probe = _Probe()
    probe_mul = defop("probe_mul", np.multiply, (probe.second, probe.second), register=False)
    out = probe_mul(Tensor([1.0]), np.array([2.0]))
    assert not out.requires_grad and out._node is None


def test_independent_graphs_backward_in_any_order():
    rng = np.random.default_rng(0)
    shared = Tensor(rng.standard_normal(3), requires_grad=True)
    xs = [Tensor(rng.standard_normal(3), requires_grad=True) for _ in range(3)]
    losses = [mg.tanh(xs[0] * shared).sum(), (xs[1] * xs[1] * shared).sum(),
              mg.exp(xs[2] + shared).sum()]
    expected_x = [
        shared.data * (1 - np.tanh(xs[0].data * shared.data) ** 2),
        2 * xs[1].data * shared.data,
        np.exp(xs[2].data + shared.data),
    ]
    expected_shared = (
        xs[0].data * (1 - np.tanh(xs[0].data * shared.data) ** 2)
        + xs[1].data ** 2
        + np.exp(xs[2].data + shared.data)
    )
    done = []
    for i in (2, 0, 1):
        losses[i].backward()
        done.append(i)
        np.testing.assert_allclose(xs[i].grad, expected_x[i], rtol=1e-13)
        assert all(xs[j].grad is None for j in range(3) if j not in done)
    np.testing.assert_allclose(shared.grad, expected_shared, rtol=1e-13)


def test_graph_is_released_after_backward():
    x = Tensor(np.linspace(-1, 1, 5), requires_grad=True)
    h = mg.tanh(x)
    # (the array itself, not `.data`: the graph keeps a copy of a handed-out array that a
    # weak reference still reaches)
    hidden = weakref.ref(h._data)
    y = (h * h).sum()
    node = y._node
    del h
    gc.collect()
    assert hidden() is not None  # the graph holds tanh's output for the VJPs
    y.backward()
    assert node.vjps is None and node.inputs is None and node.out is None and node.args is None
    gc.collect()
    assert hidden() is None  # and lets go of it once backpropagated


def test_retained_graph_is_kept():
    x = Tensor([0.5], requires_grad=True)
    y = mg.tanh(x).sum()
    y.backward(retain_graph=True)
    assert y._node.vjps is not None and y._node.inputs is not None


# --- a state machine over graph reuse, accumulation, retain_graph and clearing --------------


class _Entry:
    """A tensor of the machine, with the function of the leaf arrays that computes it, the
    machine's other non-leaf tensors its graph goes through (itself included) and the leaves
    it depends on."""

    def __init__(self, tensor, f, through, leaves):
        self.tensor, self.f, self.through, self.leaves = tensor, f, through, leaves


class GraphMachine(RuleBasedStateMachine):
    """Builds graphs that share tensors, backpropagates from any of them in any order, with or
    without retain_graph, and clears gradients; each leaf's .grad must always be the sum of
    the numerical gradients of the backward calls since its last clearing."""

    OPS = ("add", "sub", "mul", "tanh", "sigmoid")

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.values = [rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3), np.array(0.5)]
        self.leaves = [Tensor(v, requires_grad=True) for v in self.values]
        self.expected = [None] * len(self.leaves)
        self.entries = [_Entry(t, lambda *ls, k=k: ls[k], frozenset(), {k})
                        for k, t in enumerate(self.leaves)]
        self.released = set()

    @rule(op=st.sampled_from(OPS), i=st.integers(0, 99), j=st.integers(0, 99))
    def make(self, op, i, j):
        a, b = self.entries[i % len(self.entries)], self.entries[j % len(self.entries)]
        function = mg.OPS[op].function
        if op in ("tanh", "sigmoid"):
            tensor, f = function(a.tensor), lambda *ls: function(a.f(*ls))
            through, leaves = a.through, a.leaves
        else:
            tensor = function(a.tensor, b.tensor)
            f = lambda *ls: function(a.f(*ls), b.f(*ls))
            through, leaves = a.through | b.through, a.leaves | b.leaves
        self.entries.append(_Entry(tensor, f, through | {len(self.entries)}, leaves))

    @rule(i=st.integers(0, 99), retain=st.booleans(), seed=st.integers(0, 2**16))
    def backward(self, i, retain, seed):
        entry = self.entries[i % len(self.entries)]
        v = np.random.default_rng(seed).standard_normal(entry.tensor.shape)
        if entry.through & self.released:
            with pytest.raises(RuntimeError, match="already released"):
                entry.tensor.backward(v, retain_graph=retain)
            if not retain:
                # The sweep goes newest node first and releases each as it goes, so it
                # released the nodes made after the newest released one it reached.
                newest = max(entry.through & self.released)
                self.released |= {n for n in entry.through if n > newest}
            return  # and the invariant checks that nothing was added
        entry.tensor.backward(v, retain_graph=retain)
        grads = numerical_grad(lambda *ls: (entry.f(*ls) * v).sum(), *self.values)
        for k in entry.leaves:
            self.expected[k] = grads[k] if self.expected[k] is None else self.expected[k] + grads[k]
        if not retain:
            self.released |= entry.through

    @rule(k=st.integers(0, 2))
    def clear(self, k):
        self.leaves[k].grad = None
        self.expected[k] = None

    @invariant()
    def gradients_are_the_sum_since_clearing(self):
        for leaf, expected in zip(self.leaves, self.expected):
            if expected is None:
                assert leaf.grad is None
            else:
                # numerical gradients of bounded smooth functions: ~1e-9 each, summed over
                # at most a few dozen calls
                np.testing.assert_allclose(leaf.grad, expected, rtol=1e-6, atol=1e-6)


TestGraphMachine = GraphMachine.TestCase
TestGraphMachine.settings = settings(max_examples=25)


def test_a_node_keeps_only_the_operands_its_vjps_read():
    """addmm's VJP of c reads nothing, so an RNN's per-step slice z_k, a view that would keep
    the whole (batch, T, n) input projection alive until backward, is not kept."""
    z = Tensor(np.ones((4, 5, 3)), requires_grad=True)
    s = Tensor(np.ones((4, 3)), requires_grad=True)
    w = Tensor(np.eye(3), requires_grad=True)
    out = mg.addmm(z[:, 1], s, w)
    c, a, b = out._node.args
    assert c is None and a is s._data and b is w._data
    out.sum().backward()
    np.testing.assert_array_equal(z.grad[:, 1], np.ones((4, 3)))
    np.testing.assert_array_equal(w.grad, np.full((3, 3), 4.0))


def test_a_scan_keeps_its_states_and_weights_but_not_its_inputs():
    """The body's VJPs read S_{k-1}, W (addmm's a and b) and S_k (tanh's output): a scan
    keeps those, the states read back from the ys it returns, and not the inputs z, as
    large as the states."""
    z = Tensor(np.ones((5, 4, 3)), requires_grad=True)
    w, s0 = Tensor(np.eye(3), requires_grad=True), Tensor(np.ones((4, 3)), requires_grad=True)

    def step(s, z_k):
        s = mg.tanh(mg.addmm(z_k, s, w))
        return s, s

    _, states = mg.scan(step, s0, z)
    run = states._node.inputs[0].out  # the loop's node keeps one `_Run`, its residual
    for k, saved in enumerate(run.saved):
        assert any(a is w._data for a in saved)
        assert not any(np.shares_memory(a, z._data) for a in saved)
        assert any(np.shares_memory(a, states._data[k]) for a in saved)
    with pytest.raises(ValueError, match=r"saves must be .* \(and \"output\"\), got \('out', 1\)"):
        defop("bad", np.add, (None, None), saves=("out", 1), register=False)


@pytest.mark.parametrize("batch", [True, "rows", "Matmul", 1])
def test_defop_refuses_a_batch_it_does_not_know(batch):
    """batch= is None, "elementwise" or "matmul"; another value (batch=True) was taken and
    meant nothing: the VJPs ran per step where the user meant them batched (review)."""
    with pytest.raises(ValueError, match=r"^defop: batch must be None, 'elementwise' or "
                                         rf"'matmul', got {re.escape(repr(batch))}$"):
        defop("bad", np.add, (None, None), batch=batch, register=False)


@settings(max_examples=40)
@given(n=st.integers(1, 3), data=st.data())
def test_defop_refuses_a_saved_position_that_names_no_operand(n, data):
    """saves=(-1,), a position past the last operand or a bool was taken, and backward
    failed with a TypeError naming neither the op nor the position ("unsupported operand
    type(s) for *: 'float' and 'NoneType'"): refused where the op is defined."""
    bad = data.draw(st.one_of(st.integers(-5, -1), st.integers(n, n + 3), st.booleans()))
    good = data.draw(st.lists(st.integers(0, n - 1), max_size=n, unique=True))
    output = data.draw(st.sampled_from([[], ["output"]]))
    seen = []

    def vjp(g, out, *operands):  # (the op's a sum: each operand's gradient is g)
        seen.append(tuple(a is not None for a in operands))
        return g

    def define(saves):
        return defop("total", lambda *a: sum(a), (vjp,) * n, saves=saves, register=False)

    with pytest.raises(ValueError, match=rf"^defop: 'total' saves operand position "
                                         rf"{re.escape(repr(bad))}, which names no operand of "
                                         rf"its {n} operands?: saves takes positions 0, 1"):
        define(tuple(data.draw(st.permutations([*good, bad, *output]))))
    # Its valid positions alone are taken: the VJPs get those operands, None for the others
    # (no operand at all for no position)
    x = [Tensor(np.full(2, i + 2.0), requires_grad=True) for i in range(n)]
    define(tuple([*good, *output]))(*x).sum().backward()
    for t in x:
        np.testing.assert_array_equal(t.grad, np.ones(2))
    assert set(seen) == {tuple(i in good for i in range(n)) if good else ()}


def _cube_with_residual():
    """x^3, whose forward hands its VJP the residual 3 x^2 (and keeps neither x nor x^3)."""
    def forward(x):
        return x * x * x, 3.0 * x * x

    return defop("cube", forward, (lambda g, slope: g * slope,), saves="nothing",
                 residual=True, register=False)


@given(x=hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=4),
                    elements=st.floats(-2.0, 2.0).filter(lambda v: v == 0 or abs(v) > 1e-3)))
def test_an_op_with_a_residual_hands_it_to_its_vjp_eagerly_and_compiled(x):
    # (no value below 1e-3: the cube's gradient would be below gradcheck's atol, unchecked)
    """A forward's residual reaches the VJP in place of the output: the gradient is the
    numerical one (eager), and a compiled replay gives eager's bits; the node keeps the
    residual, not the output or the operand."""
    cube = _cube_with_residual()
    t = Tensor(x, requires_grad=True)
    out = cube(t)
    assert out._node.out is not out._data and out._node.args == ()
    assert gradcheck(lambda a: cube(a), Tensor(x, requires_grad=True))
    step = mg.compile(lambda a: cube(a).sum())
    for k in range(4):
        eager = Tensor(x + k, requires_grad=True)
        loss = cube(eager).sum()
        loss.backward()
        leaf = Tensor(x + k, requires_grad=True)
        assert step.value_and_backward(leaf) == loss.item()
        np.testing.assert_array_equal(leaf.grad, eager.grad, strict=True)


def test_a_residual_is_not_saved_beside_the_output():
    with pytest.raises(ValueError, match="residual in place of the output"):
        defop("bad", lambda x: (x, x), (None,), saves="output", residual=True,
              register=False)


def _freeing_probes():
    """`top(x)` = tanh(x), noting a weak reference to each output it makes; `bottom(x)` = x
    whose VJP notes whether the last of those outputs is still alive when it runs (the
    sweep reaches `bottom` after `top`, whose VJP reads that output)."""
    made: list = []
    alive_at_bottom: list = []

    def tanh_noting(x):
        out = np.tanh(x)
        made.append(weakref.ref(out))
        return out

    def bottom_vjp(g, out):
        gc.collect()
        alive_at_bottom.append(made[-1]() is not None)
        return g

    top = defop("top", tanh_noting, (lambda g, out: g * (1 - out * out),), saves="output",
                register=False)
    bottom = defop("bottom", lambda x: x * 1.0, (bottom_vjp,), saves="nothing",
                   register=False)
    return top, bottom, alive_at_bottom


@pytest.mark.parametrize("compiled", [False, True])
def test_what_a_node_reads_is_freed_as_soon_as_it_is_swept(compiled):
    """Unless the graph is retained, backward frees a swept node's arrays before it goes on
    (so an RNN's states go one by one), in eager mode and in a compiled replay; with
    retain_graph=True they stay for the next backward."""
    top, bottom, alive_at_bottom = _freeing_probes()
    x = Tensor(np.linspace(-1, 1, 5), requires_grad=True)

    def loss_of(x):
        return top(bottom(x)).sum()

    loss = mg.compile(loss_of) if compiled else loss_of
    for _ in range(4):  # a compiled function traces twice, writes its backward, then runs it
        loss(x).backward()
    assert alive_at_bottom[-1] is False
    loss(x).backward(retain_graph=True)
    assert alive_at_bottom[-1] is True


@pytest.mark.parametrize("saves", [("output",), ()], ids=["('output',)", "()"])
def test_a_tuple_of_no_operand_position_is_the_word_it_stands_for(saves):
    """`saves=("output",)` passed the VJPs (g, out, None) eagerly and (g, out) compiled and in
    scan: one VJP failed in one mode or the other. It is "output" ("nothing" for `()`) now:
    the VJPs get no operand, in every mode."""
    got = []

    def vjp(g, out, *operands):
        got.append(len(operands))
        return g * 3.0

    triple = mg.defop("triple", lambda x: x * 3.0, (vjp,), saves=saves, register=False)
    x = mg.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    triple(x).sum().backward()
    step = mg.compile(lambda x: triple(x).sum())
    step(x).backward()
    step(x).backward()
    carry, _ = mg.scan(lambda c, x: (c + triple(x), None), np.zeros(2), np.ones((3, 2)) * x)
    carry.sum().backward()
    assert got and set(got) == {0}


@pytest.mark.parametrize("grad", [np.ones(3, complex), np.array(1j), np.array([1, 2, 3], object),
                                  "x", np.array(["a", "b", "c"])])
@pytest.mark.parametrize("caller", ["backward", "gradients"])
def test_an_upstream_gradient_that_is_not_real_numbers_is_refused(grad, caller):
    """A complex grad was cast to the tensor's dtype, its imaginary part dropped with only
    NumPy's ComplexWarning (an object one was accepted, a string was NumPy's bare "could not
    convert string to float"): a TypeError naming the caller and the dtype now, as
    `Tensor(data)` refuses such data."""
    x = Tensor(np.ones(3), requires_grad=True)
    y = x * 2.0 if np.shape(grad) == (3,) else (x * 2.0).sum()
    dtype = np.asarray(grad).dtype
    with pytest.raises(TypeError, match=rf"^{caller}: grad must hold real numbers, got dtype "
                                        rf"{re.escape(str(dtype))}"):
        y.backward(grad) if caller == "backward" else mg.gradients(y, [x], grad=grad)
    assert x.grad is None


@given(kind=st.sampled_from(["bool", "int8", "int64", "uint16"]),
       values=st.lists(st.integers(0, 1), min_size=3, max_size=3))
def test_an_upstream_gradient_of_integers_or_bools_is_taken_as_numbers(kind, values):
    """As `Tensor(data)` takes them: converted to the tensor's dtype."""
    x = Tensor(np.ones(3), requires_grad=True)
    g = np.array(values, dtype=kind)
    (x * 2.0).backward(g)
    np.testing.assert_array_equal(x.grad, 2.0 * g.astype(np.float64))
