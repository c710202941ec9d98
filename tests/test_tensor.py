"""Tensor basics: what a Tensor holds, what it copies, and how it reports itself."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import Tensor


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_floating_dtypes_are_kept(dtype):
    t = Tensor(np.ones(3, dtype))
    assert t.dtype == dtype
    for out in (t * 2.5, 2.5 - t, t ** 2, 2 ** t):  # Python numbers do not promote the tensor
        assert out.dtype == dtype


@pytest.mark.parametrize("data", [[1, 2, 3], np.arange(3, dtype=np.int32),
                                  np.arange(3, dtype=np.uint8), [True, False], 7, True])
def test_integers_and_bools_become_float64(data):
    t = Tensor(data)
    assert t.dtype == np.float64
    np.testing.assert_array_equal(t.data, np.asarray(data, dtype=np.float64))


@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
def test_item_takes_a_tensor_of_one_element_of_any_shape_and_names_any_other(shape):
    t = Tensor(np.full(shape, 2.5))
    if t.size == 1:
        assert t.item() == 2.5 and isinstance(t.item(), float)
        return
    with pytest.raises(ValueError, match=re.escape(
            f"item() needs a tensor of one element, got shape {shape}")):
        t.item()


def test_copies_its_input():
    a = np.arange(4.0)
    t = Tensor(a)
    a[0] = 100.0
    assert t.data[0] == 0.0
    u = Tensor(t)  # from a Tensor: a copy as well
    u.data[1] = -1.0
    assert t.data[1] == 1.0


def test_grad_is_none_until_backward_and_can_be_reset():
    x = Tensor([1.0, 2.0], requires_grad=True)
    assert x.grad is None and x.requires_grad and x.is_leaf
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])
    x.grad = None
    assert x.grad is None


def test_properties():
    t = Tensor(np.arange(6.0).reshape(2, 3))
    assert t.shape == (2, 3) and t.ndim == 2 and t.size == 6 and t.dtype == np.float64
    assert len(t) == 2
    assert Tensor([[2.5]]).item() == 2.5 and isinstance(Tensor([[2.5]]).item(), float)
    assert float(Tensor(3.0)) == 3.0
    assert t.numpy() is t.data  # shared, as documented
    np.testing.assert_array_equal(np.asarray(t), t.data)
    np.testing.assert_array_equal(t.T.data, t.data.T)
    with pytest.raises(TypeError, match="0-d"):
        len(Tensor(1.0))


@given(values=hnp.arrays(st.sampled_from([np.float64, np.float32]), hnp.array_shapes(max_dims=3),
                         elements=st.floats(-10, 10, width=32)),
       convert=st.sampled_from([lambda t, **k: np.asarray(t, **k),
                                lambda t, **k: np.array(t, **k)]))
def test_numpy_on_a_tensor_is_a_copy_and_refuses_copy_false(values, convert):
    """NumPy gets a copy of a tensor's values (its writes reach no graph), so copy=False,
    which NumPy 2 asks as "no copy, or ValueError", raises, pointing to .data (it silently
    returned a copy)."""
    t = Tensor(values)
    got = convert(t)
    np.testing.assert_array_equal(got, values, strict=True)
    assert not np.shares_memory(got, t.data)
    with pytest.raises(ValueError, match=r"copy=False.*t\.data is the array itself"):
        convert(t, copy=False)


def test_requires_grad_flag_and_ops_outputs():
    x = Tensor([1.0, 2.0], requires_grad=True)
    c = Tensor([3.0, 4.0])
    y = x * c
    assert y.requires_grad and not y.is_leaf
    z = c * c
    assert not z.requires_grad and z.is_leaf  # nothing recorded for constants


def test_detach_cuts_the_graph_and_copies_on_write():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x * 3.0
    d = y.detach()
    assert not d.requires_grad and d.is_leaf
    np.testing.assert_array_equal(d.data, [3.0, 6.0])
    (d * x).sum().backward()  # d is a constant: the gradient is d, not d + 3 x
    np.testing.assert_array_equal(x.grad, [3.0, 6.0])
    d.data[...] = 0.0  # d's own copy: y keeps its values
    np.testing.assert_array_equal(y.data, [3.0, 6.0])


def test_repr():
    assert repr(Tensor([1.0, 2.0])) == "Tensor([1., 2.])"
    assert repr(Tensor([1.0], requires_grad=True)) == "Tensor([1.], requires_grad=True)"
    assert repr(Tensor([1.0], requires_grad=True) * 2) == "Tensor([2.], op=mul)"
    assert repr(Tensor(np.float32(1.5))) == "Tensor(1.5, dtype=float32)"
    assert repr(mg.nn.Parameter([0.0])).startswith("Parameter([0.]")


def test_truth_value_of_a_one_element_tensor_and_ambiguity_otherwise():
    assert bool(Tensor(2.0)) and not bool(Tensor([0.0]))
    with pytest.raises(ValueError, match=r"truth value of a tensor of shape \(2,\) is ambiguous"):
        bool(Tensor([1.0, 2.0]))


def test_a_constant_copy_of_a_tensor_that_requires_grad_is_refused():
    """`Tensor(h)` of an `h` on the graph would be a copy without a gradient: the loss's
    gradient through it silently zero. It raises; the three things meant instead work."""
    w = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    h = w * 3.0
    with pytest.raises(TypeError, match=r"Tensor\(t\): t \(shape \(2,\)\) requires grad"):
        Tensor(h)
    kept = (Tensor(h.detach()) * w).sum()  # a constant copy, asked for
    kept.backward()
    np.testing.assert_array_equal(w.grad, [3.0, -6.0])
    leaf = Tensor(h, requires_grad=True)  # a new leaf: its own gradient
    (leaf * leaf).sum().backward()
    np.testing.assert_array_equal(leaf.grad, 2 * h.data)
    with mg.no_grad():  # nothing is recorded: nothing to lose
        np.testing.assert_array_equal(Tensor(h).data, h.data)


def test_data_of_a_shared_array_copies_it_in_its_own_layout():
    """`.data` of an array a graph keeps copies it (copy-on-write) laid out as it was: a
    C-ordered copy of a transposed tensor made reading `.data` change the order in which a
    later sum adds, and so its last bit."""
    w = Tensor(np.random.default_rng(0).normal(size=(37, 29)), requires_grad=True)
    h = mg.tanh(w).T  # a Fortran-ordered view, which the graph keeps (tanh's VJP reads it)
    before = h.sum().item()
    assert h._shared and not h._data.flags.c_contiguous
    assert h.data.strides == h._data.strides and not h._data.flags.c_contiguous
    assert h.sum().item() == before


@pytest.mark.parametrize("value", [np.array([1, 2]), [3, 4], np.array([True, False])],
                         ids=["int array", "list of ints", "bool array"])
def test_data_set_to_integers_takes_the_constructors_dtype(value):
    """`w.data = ints` made `w` an integer tensor, whose gradient then truncated to 0; the
    setter follows `Tensor(...)`: floats kept, other numbers float64, the rest refused."""
    w = Tensor(np.zeros(2), requires_grad=True)
    w.data = value
    assert w.dtype == np.float64
    (w * 0.3).sum().backward()
    np.testing.assert_array_equal(w.grad, [0.3, 0.3])
    with pytest.raises(TypeError, match="dtype"):
        w.data = np.array(["a", "b"])


@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4),
                  elements={"min_value": -10, "max_value": 10}))
def test_iteration_gives_the_rows_as_tensors_and_refuses_a_0d_tensor(values):
    """As NumPy's arrays: the rows, each t[i] (gradients flow through them); a 0-d tensor
    raises TypeError (it iterated as empty: list(Tensor(3.0)) == [] while len() raised)."""
    t = Tensor(values, requires_grad=True)
    rows = list(t)
    assert len(rows) == len(values)
    for row, want in zip(rows, values, strict=True):
        assert isinstance(row, Tensor)
        np.testing.assert_array_equal(row.data, want)
    if rows:
        mg.stack([row * float(i) for i, row in enumerate(rows)]).sum().backward()
        np.testing.assert_array_equal(
            t.grad, np.broadcast_to(np.arange(len(values)).reshape(-1, *[1] * (values.ndim - 1)),
                                    values.shape))
    for zero_d in (Tensor(3.0), Tensor(values.sum(), requires_grad=True)):
        with pytest.raises(TypeError, match=r"^iteration over a 0-d tensor$"):
            list(zero_d)
        with pytest.raises(TypeError, match=r"^iteration over a 0-d tensor$"):
            sum(zero_d)


def test_a_copy_of_a_tensor_is_its_own_and_a_copy_of_a_graph_vertex_is_refused():
    """copy.copy of a tensor shared its array: writing through the copy's .data changed the
    array the graph kept (w.grad 200 where 2 is right, and w itself). A copy now holds its
    own values; a tensor computed by ops is refused, as PyTorch refuses to deepcopy one
    (its deepcopy kept a copy of the whole graph, whose backward reached no leaf)."""
    import copy

    w = mg.Tensor([1.0, 2.0, 3.0], requires_grad=True)
    w2 = copy.copy(w)
    loss = (w * w).sum()
    w2.data[:] = 100.0
    loss.backward()
    np.testing.assert_array_equal(w.grad, [2.0, 4.0, 6.0])
    np.testing.assert_array_equal(w.data, [1.0, 2.0, 3.0])
    assert type(copy.deepcopy(mg.nn.Parameter(np.ones(2)))) is mg.nn.Parameter
    for make in (copy.copy, copy.deepcopy):
        with pytest.raises(RuntimeError, match="computed by 'mul' .* cannot be copied"):
            make(w * 2.0)


def test_grad_and_gradcheck_record_inside_no_grad():
    """Inside no_grad, mg.grad returned zeros (f recorded nothing) and gradcheck blamed the
    engine ('engine 0.0, numerical 47.8'): both run f with gradients recorded, as
    torch.func.grad does."""
    from minigrad.testing import gradcheck

    with mg.no_grad():
        np.testing.assert_array_equal(mg.grad(lambda x: (x * x).sum())(np.array([1.0, 2.0])),
                                      [2.0, 4.0])
        assert gradcheck(mg.tanh, np.array([0.3, -0.2]))


def test_a_backward_into_a_grad_of_another_shape_changes_no_grad():
    """A .grad of another shape (the .data set to another shape since) was broadcast or made
    NumPy raise after other leaves' .grad had changed; checked first, nothing changes."""
    a = mg.Tensor(np.ones(2), requires_grad=True)
    b = mg.Tensor(np.ones(2), requires_grad=True)
    a.grad, b.grad = np.zeros(2), np.zeros((2, 1))
    with pytest.raises(ValueError, match=r"\.grad has shape \(2, 1\), its gradient now \(2,\)"):
        (a * b).sum().backward()
    np.testing.assert_array_equal(a.grad, [0.0, 0.0])


def test_a_masked_upstream_gradient_is_refused():
    w = mg.Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(TypeError, match="backward: grad: cannot use a masked array"):
        (w * 2.0).backward(np.ma.array([1.0, 1e6, 1.0], mask=[0, 1, 0]))


def test_a_copy_keeps_a_subclass_attributes_and_a_number_grad_still_adds():
    """The review of the copies: a Parameter subclass's own attributes were dropped by
    copy.deepcopy (an EMA copy then lost `decay`), and a `.grad` set to a number made
    backward raise AttributeError where it added before."""
    import copy

    class Tagged(mg.nn.Parameter):
        pass

    p = Tagged(np.ones(2))
    p.decay = False
    for make in (copy.copy, copy.deepcopy):
        q = make(p)
        assert type(q) is Tagged and q.decay is False
    w = mg.Tensor(np.ones(3), requires_grad=True)
    w.grad = 0.0
    (w * 2.0).sum().backward()
    np.testing.assert_array_equal(w.grad, [2.0, 2.0, 2.0])


def test_a_zero_dimensional_grad_of_an_old_shape_is_refused_and_a_number_keeps_the_dtype():
    """The number case of the shape check let a 0-d array .grad through, which then
    broadcast to a tensor's new shape ([6, 6, 6]); a NumPy float64 number as the .grad of
    a float32 tensor made it float64."""
    w = mg.Tensor(np.array(1.0), requires_grad=True)
    (w * 2.0).backward()
    w.data = np.ones(3)
    with pytest.raises(ValueError, match=r"\.grad has shape \(\), its gradient now \(3,\)"):
        (w * 2.0).sum().backward()
    v = mg.Tensor(np.ones(2, np.float32), requires_grad=True)
    v.grad = np.float64(0.0)
    (v * 2.0).sum().backward()
    assert v.grad.dtype == np.float32


def test_a_grad_of_an_old_shape_in_any_form_is_refused():
    """Only an ndarray .grad of another shape was refused: a list or np.matrix of the old
    shape broadcast to the new one."""
    w = mg.Tensor(np.ones(1), requires_grad=True)
    w.data = np.ones(3)
    for old in ([1.0], np.asmatrix([[1.0]])):
        w.grad = old
        with pytest.raises(ValueError, match=r"\.grad has shape"):
            (w * 2.0).sum().backward()


def test_a_zero_dimensional_array_like_grad_of_an_old_shape_is_refused():
    """Only a plain ndarray counted as an array: a 0-d masked array or Tensor as .grad was
    taken for a number and broadcast (a masked one lost the gradient). Numbers add."""
    w = mg.Tensor(np.ones(1), requires_grad=True)
    w.data = np.ones(3)
    for old in (np.ma.array(0.5), mg.Tensor(0.5)):
        w.grad = old
        with pytest.raises(ValueError, match=r"\.grad has shape \(\)"):
            (w * 2.0).sum().backward()
    for number in (0.5, np.float32(0.5), 1):
        w.grad = number
        (w * 2.0).sum().backward()
        np.testing.assert_array_equal(w.grad, 2.0 + number)


@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=4),
                  elements={"min_value": -10, "max_value": 10}))
def test_requires_grad_of_a_computed_tensor_cannot_be_turned_off(x):
    """`y.requires_grad = False` on a tensor computed by ops cut the graph silently: the ops
    after it recorded nothing, so w got the gradient of one use of two (PyTorch refuses
    it). It raises, names the op, and leaves the graph whole."""
    w = Tensor(np.full(x.shape, 1.5), requires_grad=True)
    y = x * w
    with pytest.raises(RuntimeError, match=r"computed by 'mul'.*detach\(\)"):
        y.requires_grad = False
    assert y.requires_grad
    y.requires_grad = True  # (what it is already: allowed)
    (y * w).sum().backward()
    np.testing.assert_allclose(w.grad, 2 * x * 1.5)


def test_requires_grad_of_a_leaf_can_change():
    w = Tensor(np.arange(3.0), requires_grad=True)
    w.requires_grad = False
    assert not (w * 2.0).requires_grad
    w.requires_grad = np.True_  # (stored as a bool)
    assert w.requires_grad is True
    (w * 2.0).sum().backward()
    np.testing.assert_array_equal(w.grad, [2.0, 2.0, 2.0])


@pytest.mark.parametrize("before, after", [((3,), (1,)), ((3,), (2, 3)), ((1, 3), (3, 1))])
@pytest.mark.parametrize("how", ["backward", "gradients", "retained"])
def test_data_set_to_another_shape_after_the_forward_pass_is_refused(before, after, how):
    """`w.data = np.zeros(1)` between the forward pass and backward summed the recorded
    gradient [10, 20, 30] into w.grad = [60] (or broadcast it to a new shape): it raises,
    and no .grad changes. A graph recorded after the change is fine."""
    w = Tensor(np.arange(1.0, 4.0).reshape(before), requires_grad=True)
    loss = (w * np.array([10.0, 20.0, 30.0]).reshape(before)).sum()
    if how == "retained":
        loss.backward(retain_graph=True)
        np.testing.assert_array_equal(w.grad, np.array([10.0, 20.0, 30.0]).reshape(before))
        w.grad = None
    w.data = np.zeros(after)
    with pytest.raises(RuntimeError, match=rf"shape {re.escape(str(after))} .*after the graph"):
        if how == "gradients":
            mg.gradients(loss, [w])
        else:
            loss.backward()
    assert w.grad is None
    (w * 2.0).sum().backward()  # recorded after the change
    np.testing.assert_array_equal(w.grad, np.full(after, 2.0))


def test_requires_grad_is_set_before_the_other_slots_when_a_pickle_loads():
    """A pickle written before requires_grad became a property restores it through the
    setter first (slots in their old order), before `_node` exists: that raised
    AttributeError."""
    t = object.__new__(Tensor)
    t.requires_grad = True  # as pickle's setattr of the old slot does
    t._data, t.grad, t._node, t._shared, t._exposed = np.arange(3.0), None, None, False, False
    assert t.requires_grad
    (t * 2.0).sum().backward()
    np.testing.assert_array_equal(t.grad, [2.0, 2.0, 2.0])


IN_PLACE = {"+=": (lambda x, y: x.__iadd__(y), np.add),
            "-=": (lambda x, y: x.__isub__(y), np.subtract),
            "*=": (lambda x, y: x.__imul__(y), np.multiply),
            "/=": (lambda x, y: x.__itruediv__(y), np.true_divide),
            "**=": (lambda x, y: x.__ipow__(y), np.power)}


@settings(max_examples=40)
@given(symbol=st.sampled_from(sorted(IN_PLACE)), tensor_operand=st.booleans(),
       dtype=st.sampled_from([np.float64, np.float32]), data=st.data())
def test_an_in_place_operator_without_a_gradient_changes_the_tensor_in_place(
        symbol, tensor_operand, dtype, data):
    """`p -= lr * p.grad` under no_grad, over `model.parameters()`: Tensor had no `__isub__`,
    so Python rebound the loop's name to `p - ...` and the parameters never changed (a
    training loop whose loss stayed put, without an error). In place now, as NumPy and
    PyTorch do it, where no gradient is involved: NumPy's in-place numbers, the same object,
    names bound to it see the change, and a graph that saved the array keeps its values."""
    operate, ufunc = IN_PLACE[symbol]
    values = data.draw(hnp.arrays(dtype, 3, elements=st.floats(0.5, 4.0, width=32)), "values")
    other = data.draw(hnp.arrays(dtype, 3, elements=st.floats(0.5, 2.0, width=32)), "other")
    p = Tensor(values.copy(), requires_grad=True)
    w = Tensor(np.array([1.0, 2.0, 3.0], dtype), requires_grad=True)
    kept = (p * w).sum()  # a graph that saved p's array, for w's gradient
    alias = p
    with mg.no_grad():
        result = operate(p, Tensor(other) if tensor_operand else other)
    assert result is p and alias is p
    expected = values.copy()
    ufunc(expected, other, out=expected)
    assert p.data.dtype == dtype and p.data.tobytes() == expected.tobytes()
    kept.backward()
    np.testing.assert_array_equal(w.grad, values)  # (the values p had at the forward)
    plain = Tensor(values.copy())  # no gradient involved, in grad mode too
    assert operate(plain, other) is plain and plain.data.tobytes() == expected.tobytes()


def test_an_in_place_operator_in_grad_mode_is_refused_on_a_leaf_and_recorded_otherwise():
    """In grad mode, `w -= 1` on a leaf that requires grad would change it without the graph
    knowing: a RuntimeError saying to use no_grad (PyTorch refuses it too). On a tensor in
    the graph, `h += b` is `h = h + b`, recorded, with its gradients."""
    w = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"`x -= \.\.\.` on a leaf tensor that requires grad"):
        w -= 1.0
    np.testing.assert_array_equal(w.data, [1.0, -2.0])
    b = Tensor(np.array([0.5, 0.5]), requires_grad=True)
    h = w * 3.0
    before = h
    h += b
    assert h is not before and h.requires_grad
    (h * h).sum().backward()
    np.testing.assert_array_equal(w.grad, 2 * (3 * w.data + 0.5) * 3)
    np.testing.assert_array_equal(b.grad, 2 * (3 * w.data + 0.5))
FLOATS = [np.float16, np.float32, np.float64]


@given(x=hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=4),
                    elements={"min_value": -1e3, "max_value": 1e3}),
       dtype=st.sampled_from(FLOATS), source=st.sampled_from(FLOATS))
def test_astype_of_a_tensor_is_the_op_astype(x, dtype, source):
    """`t.astype(np.float32)`, NumPy's idiom, was an AttributeError: it is `mg.astype`, its
    value and its gradient (converted back to t's dtype) bit for bit."""
    t = Tensor(x.astype(source), requires_grad=True)
    u = Tensor(x.astype(source), requires_grad=True)
    w = np.linspace(-2.0, 2.0, x.size).reshape(x.shape).astype(dtype)
    a, b = t.astype(dtype), mg.astype(u, dtype)
    assert a.dtype == b.dtype == dtype
    assert a.data.tobytes() == b.data.tobytes()
    (a * w).sum().backward()
    (b * w).sum().backward()
    assert t.grad.dtype == source
    assert t.grad.tobytes() == u.grad.tobytes()


def test_astype_of_a_tensor_to_integers_is_refused_as_the_ops():
    with pytest.raises(TypeError, match=r"^astype: converts to a floating dtype"):
        Tensor([1.5, 2.0]).astype(np.int32)


@given(x=hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=4),
                    elements={"min_value": -1e3, "max_value": 1e3}))
def test_unary_plus_of_a_tensor_is_the_tensor(x):
    """`+t` was a bare TypeError; it is t itself, as in PyTorch, gradient and all."""
    t = Tensor(x, requires_grad=True)
    assert +t is t
    (+t * 3.0).sum().backward()
    np.testing.assert_array_equal(t.grad, np.full(x.shape, 3.0))


def test_an_in_place_operator_follows_numpys_shape_and_casting_rules_naming_itself():
    """`A @= v` with a vector v: NumPy refuses it (the product has another shape); the
    tensor's filled every row with the product ([[10, 32], [10, 32]] for [[0, 1], [2, 3]] @
    [1, 10]: found by this stop's review). NumPy's in-place operator itself now: its shape
    and casting rules, the error naming the operator and the tensor's shape and dtype; the
    tensor unchanged."""
    A = Tensor(np.array([[0.0, 1.0], [2.0, 3.0]]))
    with mg.no_grad():
        with pytest.raises(ValueError, match=r"`x @= \.\.\.` on a tensor of shape \(2, 2\)"):
            A @= np.array([1.0, 10.0])
        with pytest.raises(ValueError, match=r"`x \+= \.\.\.` on a tensor of shape \(2, 2\) "
                                             r"and dtype float64: .*broadcast"):
            A += np.ones((3, 2))
        with pytest.raises(TypeError, match=r"`x \*= \.\.\.` .* float64: .*[Cc]annot cast"):
            A *= np.array([1j, 2j])
    np.testing.assert_array_equal(A.data, [[0.0, 1.0], [2.0, 3.0]])
    with mg.no_grad():
        A @= np.array([[1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_array_equal(A.data, [[1.0, 1.0], [5.0, 3.0]])


@settings(max_examples=30, deadline=None)
@given(order=st.sampled_from(["C", "F", "slice", "reversed", "broadcast"]),
       axis=st.sampled_from([None, 0, 1]),
       rows=st.integers(2, 40), columns=st.integers(100, 300), seed=st.integers(0, 2**31 - 1))
def test_an_op_on_a_numpy_array_of_any_layout_gives_grad_modes_bits_in_no_grad(
        order, axis, rows, columns, seed):
    """In grad mode a node keeps a copy of a NumPy operand (the caller may change the array),
    but the op computes on the array itself, as under no_grad() (on a C copy of a Fortran
    array a sum added in another order: last bits apart). tests/test_layouts.py draws the
    other ops and layouts."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(rows, columns)) * 10.0 ** rng.integers(-3, 4, size=(rows, columns))
    a = {"C": a, "F": np.asfortranarray(a), "slice": a[:, ::3], "reversed": a[::-1, ::-1],
         "broadcast": np.broadcast_to(a[0], a.shape)}[order]  # (K order would lay it as F)
    t = mg.Tensor(rng.normal(size=a.shape[1:]), requires_grad=True)
    recorded = mg.sum(mg.exp(t) * a, axis=axis)
    with mg.no_grad():
        plain = mg.sum(mg.exp(t) * a, axis=axis)
    assert recorded.requires_grad and not plain.requires_grad
    assert recorded.data.tobytes() == plain.data.tobytes()


IN_PLACE_MODES = ["graph", "no_grad", "constant"]


def _in_place_operand(mode, values):
    """A tensor holding `values` that takes `x op= ...` as `mode` says: one in the graph
    (grad mode records `x = x op ...`), one under no_grad, one needing no gradient."""
    if mode == "graph":
        return Tensor(values, requires_grad=True) * 1.0
    return Tensor(values, requires_grad=mode == "no_grad")


@settings(max_examples=40)
@given(symbol=st.sampled_from(sorted(IN_PLACE)), mode=st.sampled_from(IN_PLACE_MODES),
       shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3),
       extra=st.integers(2, 3), tensor_operand=st.booleans())
def test_an_in_place_operator_that_would_change_the_shape_is_refused_in_every_mode(
        symbol, mode, shape, extra, tensor_operand):
    """`h += b` with b of a larger broadcast shape: under no_grad, or on a tensor needing no
    gradient, NumPy refused it (its output cannot grow); in grad mode `h = h + b` made h of
    b's shape. The same ValueError in every mode now, as NumPy and PyTorch, naming the
    operator and both shapes."""
    operate, _ = IN_PLACE[symbol]
    values = np.full(shape, 2.0)
    x = _in_place_operand(mode, values)
    other = np.full((extra,) + shape, 1.5)
    message = (rf"^`x {re.escape(symbol)} \.\.\.` on a tensor of shape {re.escape(str(shape))}:"
               rf" the result has shape {re.escape(str(other.shape))}, and an in-place operator "
               r"keeps x's shape")
    with mg.no_grad() if mode == "no_grad" else mg.enable_grad(), \
            pytest.raises(ValueError, match=message):
        operate(x, Tensor(other) if tensor_operand else other)
    assert x.shape == shape and x.data.tobytes() == values.tobytes()


def test_a_matmul_in_place_that_would_change_the_shape_is_refused_in_every_mode():
    for mode in IN_PLACE_MODES:
        x = _in_place_operand(mode, np.ones((2, 3)))
        with mg.no_grad() if mode == "no_grad" else mg.enable_grad(), \
                pytest.raises(ValueError, match=r"^`x @= \.\.\.` on a tensor of shape \(2, 3\): "
                                                r"the result has shape \(2, 4\)"):
            x @= np.ones((3, 4))


@settings(max_examples=40)
@given(symbol=st.sampled_from(sorted(IN_PLACE)), data=st.data())
def test_an_in_place_operator_keeps_the_tensors_dtype_in_grad_mode_as_under_no_grad(
        symbol, data):
    """`h += b` on a float32 h with a float64 b: under no_grad h stays float32 (NumPy's
    same_kind cast), where grad mode's `h = h + b` made it float64. Now float32 in both,
    the same bits, and the gradient goes back through the conversion to h's dtype."""
    operate, _ = IN_PLACE[symbol]
    values = data.draw(hnp.arrays(np.float32, 3, elements=st.floats(0.5, 4.0, width=32)))
    other = data.draw(hnp.arrays(np.float64, 3, elements=st.floats(0.5, 2.0)))
    w = Tensor(values, requires_grad=True)
    b = Tensor(other, requires_grad=True)
    h = operate(w * 1.0, b)
    with mg.no_grad():
        expected = operate(Tensor(values), other)
    assert h.dtype == np.float32 and h.data.tobytes() == expected.data.tobytes()
    h.sum().backward()
    assert w.grad.dtype == np.float32 and b.grad.dtype == np.float64
    wide = operate(Tensor(values.astype(np.float64), requires_grad=True) * 1.0, other)
    assert wide.dtype == np.float64  # (same dtypes: `x = x op b` itself)
    d = 1e-3  # the float32 gradient against central differences of the float64 op
    ufunc = {"+=": np.add, "-=": np.subtract, "*=": np.multiply, "/=": np.true_divide,
             "**=": np.power}[symbol]
    v = values.astype(np.float64)
    numerical = (ufunc(v + d, other) - ufunc(v - d, other)) / (2 * d)
    np.testing.assert_allclose(w.grad, numerical, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("how", ["eager", "compiled", "scan"])
def test_a_parameter_frozen_after_the_forward_pass_gets_no_gradient(how):
    """As PyTorch's leaves: requires_grad = False between the forward pass and backward()
    leaves its .grad as it was (None), so an optimizer skips it. It was filled, and SGD
    moved the weight the user had just frozen."""
    from minigrad import nn, optim

    rng = np.random.default_rng(0)
    first, second = nn.Linear(2, 2, rng=rng), nn.Linear(2, 1, rng=rng)

    def loss_of(x):
        if how == "scan":
            h, _ = mg.scan(lambda h, xk: (mg.tanh(first(xk) + h), None), np.zeros((4, 2)),
                           x[None])
            return second(h).sum()
        return second(mg.tanh(first(x))).sum()

    compiled = mg.compile(loss_of)
    params = list(first.parameters()) + list(second.parameters())
    opt = optim.SGD(params, lr=0.1)
    x = rng.normal(size=(4, 2))
    before = [p.data.copy() for p in first.parameters()]
    opt.zero_grad()
    if how == "compiled":
        compiled(x)  # (traced: the next call replays)
    loss = compiled(x) if how == "compiled" else loss_of(x)
    for p in first.parameters():
        p.requires_grad = False
    loss.backward()
    assert all(p.grad is None for p in first.parameters())
    assert all(p.grad is not None for p in second.parameters())
    opt.step()
    for p, b in zip(first.parameters(), before, strict=True):
        np.testing.assert_array_equal(p.data, b)


@pytest.mark.parametrize("refusing", [0, 1])
def test_an_error_while_adding_gradients_changes_no_grad(refusing):
    """Every leaf's sum is computed before any .grad is set: an error on one leaf (here a
    .grad whose addition raises) left the leaves added before it changed, and a retry with
    retain_graph added theirs twice."""
    class Refusing(np.ndarray):
        def __add__(self, other):
            raise MemoryError("no room")

    leaves = [mg.Tensor(np.ones(2), requires_grad=True) for _ in range(2)]
    y = (leaves[0] * 2 + leaves[1] * 3).sum()
    other = leaves[1 - refusing]
    other.grad = np.full(2, 10.0)
    leaves[refusing].grad = np.zeros(2).view(Refusing)
    with pytest.raises(MemoryError):
        y.backward(retain_graph=True)
    np.testing.assert_array_equal(other.grad, [10.0, 10.0])
    leaves[refusing].grad = None
    y.backward()
    np.testing.assert_array_equal(other.grad, 10.0 + np.full(2, [2.0, 3.0][1 - refusing]))
    np.testing.assert_array_equal(leaves[refusing].grad, np.full(2, [2.0, 3.0][refusing]))


def test_item_assignment_is_refused_with_what_to_do_instead():
    """`t[0] = 5` raised Python's bare "'Tensor' object does not support item assignment";
    the same under a trace, on a value computed by ops."""
    t = mg.Tensor(np.ones(3), requires_grad=True)
    message = r"^Tensor \(shape \(3,\)\) does not take item assignment .*mg\.where"
    with pytest.raises(TypeError, match=message):
        t[0] = 5.0
    with pytest.raises(TypeError, match=message):
        t[0] += 1.0

    def writes(x):
        y = x * 2
        y[0] = 1.0
        return y.sum()

    with pytest.raises(TypeError, match=message):
        mg.compile(writes)(t)


def test_backward_takes_pytorchs_gradient_keyword():
    x = mg.Tensor(np.ones(3), requires_grad=True)
    (x * 2).backward(gradient=np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 4.0, 6.0])
    with pytest.raises(TypeError, match="^backward: give grad or gradient=, not both"):
        (x * 2).backward(np.ones(3), gradient=np.ones(3))
