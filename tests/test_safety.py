"""A gradient is right or an error: modes that stay in their thread, arrays that cannot change
under the graph that saved them."""

import asyncio
import os
import re
import tempfile
import threading
import uuid
import weakref
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad import Tensor, nn, optim
from minigrad.optim import SGD

# --- grad and anomaly mode belong to one thread (or task) -----------------------------------


def _in_thread(fn):
    result, errors = [], []

    def run():
        try:
            result.append(fn())
        except BaseException as error:  # noqa: BLE001 (handed back to the test)
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def test_no_grad_in_one_thread_does_not_stop_recording_in_another():
    """Thread B's forward pass runs while thread A is inside no_grad()."""
    w1 = Tensor([2.0], requires_grad=True)
    w2 = Tensor([3.0], requires_grad=True)
    x = np.array([1.0])
    a_inside, b_recorded, a_may_leave = threading.Event(), threading.Event(), threading.Event()

    def thread_a():
        with mg.no_grad():
            a_inside.set()
            b_recorded.wait(10)
            assert not mg.is_recording()
        a_may_leave.set()

    def thread_b():
        h = w1 * x
        a_inside.wait(10)
        assert mg.is_recording()
        h2 = h * w2
        b_recorded.set()
        a_may_leave.wait(10)
        (h2 + h).sum().backward()

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(w1.grad, [4.0])   # d/dw1 (w1 x w2 + w1 x) = x w2 + x
    np.testing.assert_array_equal(w2.grad, [2.0])   # w1 x


def test_overlapping_no_grad_blocks_leaving_out_of_order_leave_recording_on():
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with mg.no_grad():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with mg.no_grad():
            second_in.set()
            first_out.wait(10)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mg.is_recording()
    x = Tensor([1.0], requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0])


def test_a_new_thread_starts_recording_with_anomaly_mode_off():
    with mg.no_grad(), mg.detect_anomaly():
        assert _in_thread(lambda: (mg.is_recording(), mg.is_anomaly_enabled())) == (True, False)


def test_anomaly_mode_in_one_thread_does_not_stop_another():
    inside, done = threading.Event(), threading.Event()

    def watcher():
        with mg.detect_anomaly():
            inside.set()
            done.wait(10)

    thread = threading.Thread(target=watcher)
    thread.start()
    inside.wait(10)
    try:
        x = Tensor([0.0], requires_grad=True)
        with np.errstate(divide="ignore"):
            y = mg.log(x)  # -inf, and no AnomalyError here: the mode is the other thread's
        assert np.isneginf(y.data).all()
    finally:
        done.set()
        thread.join()


def test_each_async_task_has_its_own_grad_mode():
    async def without_grad(entered, may_leave):
        with mg.no_grad():
            entered.set()
            await may_leave.wait()
            return mg.is_recording()

    async def recording(entered, may_leave):
        await entered.wait()
        recorded = mg.is_recording()
        may_leave.set()
        return recorded

    async def main():
        entered, may_leave = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(without_grad(entered, may_leave),
                                    recording(entered, may_leave))

    assert asyncio.run(main()) == [False, True]


def test_a_generator_suspended_in_no_grad_can_be_closed_in_another_thread():
    """A generator paused inside `with mg.no_grad():` by one thread and closed by another
    ends the block there without an error (the mode's reset token refused the other
    context with a ValueError), and the closing thread records as before."""
    def paused():
        with mg.no_grad():
            yield mg.is_recording()

    generator = paused()
    found: list = []

    def advance():  # (this thread stays in no_grad, as it would with PyTorch: it ends here)
        found.append(next(generator))

    def close():
        try:
            generator.close()
        except Exception as error:  # noqa: BLE001 (reported below)
            found.append(error)
        found.append(mg.is_recording())

    for target in (advance, close):
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
    assert found == [False, True]
    assert mg.is_recording()


def test_no_grad_decorates_a_generator_function_for_its_body():
    """@mg.no_grad() on a generator function ended its block before the body ran: the
    body recorded. Its body runs without recording at each resumption (sent values and
    thrown errors passed on, its return value kept), its caller's mode in between, as
    PyTorch's decorator does; a plain function and nested blocks as before."""
    x = Tensor(np.ones(2), requires_grad=True)

    @mg.no_grad()
    def steps():
        got = yield x * 2
        assert not mg.is_recording() and got == "sent"
        try:
            yield x * 3
        except KeyError:
            yield x * 4
        return "done"

    run = steps()
    assert not next(run).requires_grad and mg.is_recording()
    assert not run.send("sent").requires_grad
    assert not run.throw(KeyError("k")).requires_grad
    with pytest.raises(StopIteration) as stop:
        next(run)
    assert stop.value.value == "done" and mg.is_recording()

    @mg.no_grad()
    def double(t):
        """Doubles."""
        return t * 2

    assert not double(x).requires_grad and double.__doc__ == "Doubles."
    with mg.no_grad():
        assert mg.enable_grad()(lambda: (x * 2).requires_grad)()
    assert (x * 2).requires_grad


def test_one_no_grad_object_is_one_block_at_a_time():
    """A no_grad() object kept and entered by two threads (or twice) kept one stack of
    saved modes: the thread leaving first got the other's mode back and stopped recording.
    A second entry is refused, each thread keeps its own mode; used again after its block,
    the object works."""
    shared = mg.no_grad()
    x = Tensor(np.ones(2), requires_grad=True)
    refused: list[str] = []

    def other():
        with mg.enable_grad():
            try:
                with shared:
                    pass
            except RuntimeError as error:
                refused.append(str(error))
            assert mg.is_recording()

    with shared:
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert not mg.is_recording()
        with pytest.raises(RuntimeError, match=r"^no_grad\(\): this object is in a block"), \
                shared:
            pass
        assert not mg.is_recording()
    assert refused and refused[0].startswith("no_grad(): this object is in a block")
    assert mg.is_recording() and (x * 2).requires_grad
    with shared:  # (its block left: usable again)
        assert not (x * 2).requires_grad
    assert mg.is_recording()
    with pytest.raises(TypeError, match="decorates a function, not a class"):
        mg.no_grad()(type("Model", (), {}))


def test_a_thread_refused_by_a_no_grad_object_does_not_take_the_others_saved_mode():
    """A thread entering an object in use adds its block, sees another and takes it back
    out: the holder leaving in between took the newcomer's saved mode (the last), and both
    went on with the other's. Each thread simulated by its own context (as threads have
    theirs), the interleaving forced."""
    import contextvars

    shared, outer = mg.no_grad(), mg.no_grad()
    first, second = contextvars.Context(), contextvars.Context()
    first.run(outer.__enter__)  # (the holder: recording off before it too)
    first.run(shared.__enter__)

    class LeavingOnSecondEntry(list):
        def append(self, item):
            super().append(item)
            if len(self) == 2:
                first.run(shared.__exit__, None, None, None)

    shared.before = LeavingOnSecondEntry(shared.before)
    second.run(shared.__enter__)  # (admitted: the holder left)
    assert not first.run(mg.is_recording)  # its outer block's mode, not the newcomer's
    second.run(shared.__exit__, None, None, None)
    assert second.run(mg.is_recording)


def test_enable_grad_records_inside_no_grad():
    x = Tensor([3.0], requires_grad=True)
    with mg.no_grad():
        with mg.enable_grad():
            y = x * x
        z = x * x
    assert y.requires_grad and not z.requires_grad


# --- saved arrays never change under the graph ----------------------------------------------

# Each changes w (or its array) in place between the forward pass and backward.
MUTATIONS = {
    "augmented assignment": lambda w: w.data.__iadd__(100.0),
    "item assignment": lambda w: w.data.__setitem__(Ellipsis, 7.0),
    "out= ufunc": lambda w: np.subtract(w.data, 5.0, out=w.data),
    "load_state_dict-like copyto": lambda w: np.copyto(w.data, -1.0),
    "optimizer step": lambda w: SGD([w], lr=0.5).step(),
}


@pytest.mark.parametrize("mutate", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_changing_a_saved_leaf_changes_the_tensor_not_the_gradient(mutate):
    x = Tensor([1.0, 2.0], requires_grad=True)
    w = Tensor([3.0, 4.0], requires_grad=True)
    w.grad = np.ones(2)  # for the optimizer step
    y = (x * w).sum()
    before = w.data.copy()
    mutate(w)
    assert not np.array_equal(w.data, before)  # the change took effect on w
    w.grad = None
    y.backward()
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])  # at the forward pass's w
    np.testing.assert_array_equal(w.grad, [1.0, 2.0])


@pytest.mark.parametrize("take", [lambda a: a, lambda a: a[:1], lambda a: a[::-1],
                                  lambda a: a.reshape(2, 1)],
                         ids=["array", "slice", "reversed", "reshaped"])
def test_an_array_or_view_taken_before_the_forward_pass_writes_to_the_tensor_not_the_graph(
        take):
    """Something still holding a handed-out array (a reference, or a view: a view cannot be
    frozen once made) makes the graph keep a copy: writing through it changes the tensor,
    never the gradient."""
    w = Tensor([3.0, 4.0], requires_grad=True)
    x = Tensor([1.0, 2.0], requires_grad=True)
    taken = take(w.data)
    y = (x * w).sum()
    taken += 10.0
    assert np.shares_memory(taken, w.data)  # still the tensor's own array
    y.backward()
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("use", [lambda w: w, lambda w: w.reshape(2, 1).T],
                         ids=["operand", "viewed"])
@given(values=st.lists(st.floats(-10, 10), min_size=2, max_size=2),
       written=st.floats(-10, 10))
def test_an_array_held_only_through_a_weak_reference_writes_to_the_tensor_not_the_graph(
        use, compiled, values, written):
    """A weak reference (a cache keyed weakly on the array, say) adds no reference count:
    the graph kept the handed-out array itself, and a write through the reference changed
    the gradient, silently. It counts as held, so the graph keeps a copy."""
    w = Tensor(values, requires_grad=True)
    x = np.arange(1.0, 3.0).reshape(use(Tensor(np.zeros(2))).shape)
    loss = mg.compile(lambda x: (use(w) * use(w) * x).sum()) if compiled else (
        lambda x: (use(w) * use(w) * x).sum())
    for call in range(3):  # (compiled: traced, then replayed)
        before = w.data.copy()
        held = weakref.ref(w.data)
        y = loss(x)
        held()[...] = written + call
        np.testing.assert_array_equal(w.data, [written + call] * 2)  # the tensor's own array
        w.grad = None
        y.backward()
        np.testing.assert_array_equal(w.grad, 2 * before * [1.0, 2.0])


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("view_op", [lambda w: w.reshape(2, 2), lambda w: w.flatten(),
                                     lambda w: w.reshape(4, 1).T],
                         ids=["reshape", "flatten", "transpose"])
def test_a_view_op_on_a_tensor_whose_array_is_held_leaves_the_holder_writing_to_it(
        view_op, compiled):
    """An op that views its operand and saves it (reshape): where the user still holds a
    view of the tensor's array, `record` gives the node a copy, and the op views that copy;
    the tensor's own array stays the user's (it was frozen and marked shared, so that the
    next `.data` copied it and the user's writes stopped reaching the tensor, silently)."""
    w = Tensor(np.zeros(4), requires_grad=True)
    loss = mg.compile(lambda x: (view_op(w) * x).sum()) if compiled else (
        lambda x: (view_op(w) * x).sum())
    x = np.arange(4.0).reshape(view_op(Tensor(np.zeros(4))).shape)
    for call in range(3):
        held = w.data[:2]
        w.grad = None
        loss(x).backward()
        np.testing.assert_array_equal(w.grad, np.arange(4.0))
        _ = w.data  # what an optimizer's step does (copy-on-write)
        held[...] = call + 7.0
        np.testing.assert_array_equal(w.data, [call + 7.0] * 2 + [0.0, 0.0])
        w.data[...] = 0.0


def test_a_handed_out_array_nobody_holds_is_kept_not_copied():
    """The usual case, an optimizer's `p.data` used and dropped: the graph keeps the array
    itself, and the next `.data` copies it while the graph holds it (copy-on-write)."""
    w = Tensor([3.0, 4.0], requires_grad=True)
    w.data[...] = [5.0, 6.0]
    before = id(w._data)  # (an id: a reference held here would be one more holder)
    squares = w * w
    assert id(squares._node.args[0]) == before
    w.data[...] = 0.0
    squares.sum().backward()
    np.testing.assert_array_equal(w.grad, [10.0, 12.0])


@pytest.mark.parametrize("retain", [False, True])
def test_data_after_backward_copies_only_while_a_graph_holds_the_array(retain):
    """An optimizer's step after backward: the freed graph holds nothing, so `.data` hands
    back the array itself (no copy of every parameter at every step); a graph kept for
    another backward still holds it, so `.data` copies, and writes leave its gradient
    as it was."""
    w = Tensor([3.0, 4.0], requires_grad=True)
    w.data[...] = [5.0, 6.0]
    before = id(w._data)
    loss = (w * w).sum()
    loss.backward(retain_graph=retain)
    w.data[...] = 0.0
    assert (id(w._data) == before) is not retain
    if retain:
        w.grad = None
        loss.backward()
        np.testing.assert_array_equal(w.grad, [10.0, 12.0])


def test_changing_a_saved_intermediate_changes_the_tensor_not_the_gradient():
    x = Tensor([0.5, -1.0], requires_grad=True)
    y = mg.tanh(x)  # tanh's VJP reads its output
    y.data[...] = 1.0
    np.testing.assert_array_equal(y.data, [1.0, 1.0])
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 1.0 - np.tanh([0.5, -1.0]) ** 2, rtol=1e-15)


def test_changing_the_base_of_a_view_after_the_view_was_saved():
    w = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    x = Tensor([5.0], requires_grad=True)
    y = (w[1:2] * x).sum()  # mul saves the view w[1:2]
    w.data[...] = 0.0
    y.backward()
    np.testing.assert_array_equal(x.grad, [2.0])


def test_changing_a_view_does_not_reach_its_saved_base():
    x = Tensor([0.5, -1.0], requires_grad=True)
    y = mg.tanh(x)
    view = y[0:1]
    view.data[...] = 9.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 1.0 - np.tanh([0.5, -1.0]) ** 2, rtol=1e-15)
    np.testing.assert_allclose(y.data, np.tanh([0.5, -1.0]), rtol=1e-15)


def test_changing_a_plain_array_operand_after_the_forward_pass():
    w = Tensor([3.0, 4.0], requires_grad=True)
    c = np.array([1.0, 2.0])
    y = (w * c).sum()
    c[...] = 50.0  # the caller's own array stays writable; the graph kept a copy
    y.backward()
    np.testing.assert_array_equal(w.grad, [1.0, 2.0])


@given(st.integers(1, 4), st.floats(-3, 3), st.sampled_from(sorted(MUTATIONS)))
def test_an_rnn_step_between_forward_and_backward_changes_nothing(steps, shift, mutation):
    """A small recurrence whose weights change after the forward pass: the gradients equal
    those of an untouched copy, to the last bit."""
    rng = np.random.default_rng(steps)
    w0, x0 = rng.standard_normal((2, 2)), rng.standard_normal((3, 2))

    def loss(w):
        s = Tensor(x0)
        for _ in range(steps):
            s = mg.tanh(s @ w + shift)
        return s.sum()

    w, reference = Tensor(w0, requires_grad=True), Tensor(w0, requires_grad=True)
    y, y_reference = loss(w), loss(reference)
    w.grad = np.ones_like(w0)
    MUTATIONS[mutation](w)
    w.grad = None
    y.backward()
    y_reference.backward()
    np.testing.assert_array_equal(w.grad, reference.grad)


def test_numpy_conversion_is_a_copy():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = mg.tanh(x)
    for converted in (np.asarray(y.detach()), np.asarray(Tensor(y.data))):
        converted[...] = 0.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 1.0 - np.tanh([1.0, 2.0]) ** 2, rtol=1e-15)


NUMPY_ON_TENSORS = {
    "np.asarray": lambda h, x: np.asarray(h) @ x,
    "np.concatenate": lambda h, x: np.concatenate([h, x], axis=1),
    "np.stack": lambda h, x: np.stack([h, x]).sum(axis=0),
    "np.array": lambda h, x: np.array(h) * x,
}


@pytest.mark.parametrize("use", sorted(NUMPY_ON_TENSORS))
def test_numpy_on_a_tensor_that_requires_grad_is_refused_not_a_lost_gradient(use):
    """`np.concatenate([h, x])` in a cell made a plain array: every later op took it as a
    constant and h got no gradient through it, without an error (as PyTorch, refused)."""
    h = mg.tanh(Tensor(np.ones((2, 2)), requires_grad=True))
    x = Tensor(np.eye(2))
    with pytest.raises(TypeError, match=r"requires grad.*mg\.concatenate"):
        NUMPY_ON_TENSORS[use](h, x)
    with mg.no_grad():  # no graph, no gradient to lose: the values, a copy
        np.testing.assert_array_equal(NUMPY_ON_TENSORS[use](h, x),
                                      NUMPY_ON_TENSORS[use](h.data, x.data))
    NUMPY_ON_TENSORS[use](h.detach(), x)  # the values, cut from the graph on purpose


def test_an_array_given_to_the_data_setter_is_guarded_like_one_taken_from_it():
    """The caller still holds the array it gave: the graph keeps a copy, and writes through
    the caller's array change the tensor, not the gradient."""
    w = Tensor([3.0, 4.0], requires_grad=True)
    mine = np.array([5.0, 6.0])
    w.data = mine
    y = (w * w).sum()
    mine[...] = 0.0
    np.testing.assert_array_equal(w.data, [0.0, 0.0])
    np.testing.assert_array_equal(mg.gradients(y, [w])[0], [10.0, 12.0])
    np.testing.assert_array_equal(y.data, 61.0)


@pytest.mark.parametrize("index", ["array", "list", "boolean array"])
def test_an_index_edited_between_forward_and_backward_changes_no_gradient(index):
    """`x[idx]` keeps the index it was given as it was: the gradient goes where the forward
    pass read, whatever happens to the caller's index array after (it went where the
    edited array pointed)."""
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    given = {"array": np.array([0, 0, 1]), "list": [0, 0, 1],
             "boolean array": np.array([True, True, False])}[index]
    weights = Tensor([1.0, 2.0, 3.0][:2 if index == "boolean array" else 3])
    loss = (x[given] * weights).sum()
    given[:] = [2, 2, 2] if index != "boolean array" else [False, False, True]
    loss.backward()
    expected = [3.0, 3.0, 0.0] if index != "boolean array" else [1.0, 2.0, 0.0]
    np.testing.assert_array_equal(x.grad, expected)


def _cast():
    """A user's op whose forward returns its operand's very array when the dtype matches."""
    return mg.defop("cast64", lambda x: x.astype(np.float64, copy=False),
                    (lambda g, out: g,), saves="nothing", register=False)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_a_forward_returning_its_operands_own_array_shares_it_safely(compiled):
    """`out is x` is a view too: the output and the tensor shared one array that neither
    guarded, so a write to w between forward and backward changed the gradient (20 for 2),
    and a NumPy operand's output was the caller's very array."""
    cast = _cast()
    w = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    loss = mg.compile(lambda: (cast(w) * cast(w)).sum()) if compiled else (
        lambda: (cast(w) * cast(w)).sum())
    for _ in range(3):
        w.data[...] = [1.0, 2.0, 3.0]
        w.grad = None
        z = loss()
        w.data[...] = 10.0  # an optimizer's step, say
        z.backward()
        np.testing.assert_array_equal(w.grad, [2.0, 4.0, 6.0])
    a = np.array([1.0, 2.0, 3.0])
    v = Tensor(np.ones(3), requires_grad=True)
    f = mg.compile(lambda a: (cast(a) * v).sum()) if compiled else (lambda a: (cast(a) * v).sum())
    for _ in range(3):
        a[...] = [1.0, 2.0, 3.0]
        v.grad = None
        z = f(a)
        a[...] = 0.0  # the caller reuses its buffer
        z.backward()
        np.testing.assert_array_equal(v.grad, [1.0, 2.0, 3.0])


def _scale_by_option():
    """A user's op taking its factor as an option (not an operand)."""
    return mg.defop("scale_by", lambda x, s: x * np.asarray(s),
                    (lambda g, out, s: g * np.asarray(s),), saves="nothing", register=False)


@pytest.mark.parametrize("wrap", [lambda a: a, list, lambda a: (a,), lambda a: {"s": a},
                                  lambda a: a.view(Subclassed), lambda a: (a.view(Subclassed),)],
                         ids=["array", "list", "array in a tuple", "array in a dict",
                              "subclass array", "subclass array in a tuple"])
def test_an_array_or_list_option_is_kept_as_it_was_when_recorded(wrap):
    """The node held the caller's array option itself: editing it before backward changed the
    gradient (5 where 1 is right); an operand array is copied, and an option is now too,
    also inside a tuple or a dict."""
    def factor(s):
        return np.asarray(s[0] if type(s) is tuple else s["s"] if type(s) is dict else s)

    scale = mg.defop("scale_by_any", lambda x, s: x * factor(s),
                     (lambda g, out, s: g * factor(s),), saves="nothing", register=False)
    w = Tensor(np.ones(3), requires_grad=True)
    array = np.ones(3)
    s = wrap(array)
    loss = scale(w, s=s).sum()
    array[0] = 5.0  # the caller's array, edited
    if type(s) is list:
        s[0] = 5.0  # the list itself, edited
    loss.backward()
    np.testing.assert_array_equal(w.grad, [1.0, 1.0, 1.0])


def test_an_option_holding_a_tensor_or_a_lock_is_kept_as_it_is():
    """Only arrays, lists and dicts are copied: a deep copy had refused a tensor in a list
    while traced, and a lock always."""
    op = mg.defop("with_extras", lambda x, extras: x * 2.0, (lambda g, out, extras: g * 2.0,),
                  saves="nothing", register=False)
    w = Tensor(np.ones(2), requires_grad=True)
    extras = [Tensor(np.ones(2)), threading.Lock()]
    op(w, extras=extras).sum().backward()
    mg.compile(lambda: op(w, extras=extras).sum())().backward()
    np.testing.assert_array_equal(w.grad, [4.0, 4.0])


@pytest.mark.parametrize("kind", [np.array, list], ids=["array", "list"])
def test_a_cached_scan_loop_uses_this_calls_options(kind):
    """A loop written for a program kept the first call's option objects, while the cache
    matched on their values then: after the caller edited that array and passed a fresh one
    of the first values, scan gave the edited numbers ([13, 13] where the loop gives [7, 7])."""
    scale = _scale_by_option()
    xs = np.ones((3, 2))

    def run(s):
        return mg.scan(lambda c, x: (scale(c, s=s) + x, None), np.zeros(2), xs)[0].data

    def loop(s):
        c = Tensor(np.zeros(2))
        for x in xs:
            c = scale(c, s=s) + x
        return c.data

    first = kind([2.0, 2.0])
    np.testing.assert_array_equal(run(first), loop(first))
    first[0] = 3.0
    np.testing.assert_array_equal(run(first), loop(first))
    fresh = kind([2.0, 2.0])
    np.testing.assert_array_equal(run(fresh), loop(fresh))


@pytest.mark.parametrize("forward", [lambda x: (lambda y: (y, y))(np.tanh(x)),
                                     lambda x: (np.tanh(x), x),
                                     lambda x: (np.tanh(x), x[::-1])],
                         ids=["the output", "the operand", "a view of the operand"])
def test_a_residual_sharing_memory_with_the_output_or_an_operand_is_refused(forward):
    """The node kept such a residual unguarded: a write to y or w before backward changed
    the gradient (1 where 0.79 is right, 8e-9 where 0.79 is right). Refused, as the op's
    docstring forbids it, eager and compiled."""
    op = mg.defop("tanh_residual", forward, (lambda g, r: g,), saves="nothing",
                  residual=True, register=False)
    w = Tensor(np.array([0.5, -1.0]), requires_grad=True)
    with pytest.raises(ValueError, match="tanh_residual: the forward's residual shares memory"):
        op(w)
    with pytest.raises(ValueError, match="tanh_residual: the forward's residual shares memory"):
        mg.compile(lambda: op(w).sum())()


def test_a_compiled_op_returning_a_constants_own_array_gives_a_copy():
    """A replay's output was the program's constant itself (the caller's array read from
    outside): writing the result changed both, and the next replay returned the write."""
    as_is = mg.defop("as_is", lambda x: np.asarray(x), (lambda g, out: g,), saves="nothing",
                     register=False)
    C = np.array([1.0, 2.0])
    step = mg.compile(lambda x: as_is(C))
    for _ in range(3):
        y = step(np.zeros(2))
        np.testing.assert_array_equal(y.data, [1.0, 2.0])
        y.data[0] = 99.0
    np.testing.assert_array_equal(C, [1.0, 2.0])


def test_a_residual_holding_a_view_of_an_operand_in_a_tuple_is_refused():
    op = mg.defop("sin_tuple_residual", lambda x: (np.sin(x), (x[...], 2.0)),
                  (lambda g, r: g * np.cos(r[0]),), saves="nothing", residual=True,
                  register=False)
    with pytest.raises(ValueError, match="residual shares memory"):
        op(Tensor(np.array([0.5, 1.0]), requires_grad=True))


def test_a_users_op_with_a_prepare_has_its_array_options_copied_too():
    """Only the engine's own prepares are trusted to copy what they pass on: a user's op with
    a prepare kept the caller's array option ([100, 100, 100] where [1, 2, 3] is right)."""
    scale = mg.defop("scale_prepared", lambda x, w: x * w, (lambda g, out, x, w: g * w,),
                     prepare=lambda x, w: ((x,), {"w": w}), register=False)
    x = Tensor(np.ones(3), requires_grad=True)
    w = np.array([1.0, 2.0, 3.0])
    y = scale(x, w).sum()
    w[:] = 100.0
    y.backward()
    np.testing.assert_array_equal(x.grad, [1.0, 2.0, 3.0])


# --- arrays of ndarray subclasses, and views handed in through .data -------------------------


class Subclassed(np.ndarray):
    """A user's ndarray subclass (a unit-carrying array, say)."""


def _kind_of_array(kind, values, directory):
    """`values` as an array of `kind`: a memmap on a file in `directory`, a user's subclass."""
    if kind == "memmap":
        array = np.memmap(os.path.join(directory, f"{uuid.uuid4().hex}.dat"), mode="w+",
                          dtype=values.dtype, shape=values.shape)
        array[...] = values
        return array
    return values.copy().view(Subclassed)


def _plain_loss(w, a):
    return (w * a).sum()


# Where an array of a subclass reaches an op; each runs the loss of w and such an array `a`.
SUBCLASS_USES = {
    "eager operand": lambda w, a: _plain_loss(w, a),
    "eager operand on the left": lambda w, a: (a * w).sum(),
    "compiled argument": lambda w, a: mg.compile(_plain_loss)(w, a),
    "compiled constant": lambda w, a: mg.compile(lambda w: _plain_loss(w, a))(w),
    "scan xs": lambda w, a: mg.scan(lambda c, x: (c + _plain_loss(w, x), None),
                                    0.0, a[None])[0],
    "scan constant": lambda w, a: mg.scan(lambda c, _: (c + _plain_loss(w, a), None),
                                          0.0, length=1)[0],
}


@settings(max_examples=30)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), seed=st.integers(0, 2**16),
       kind=st.sampled_from(["memmap", "subclass"]), use=st.sampled_from(sorted(SUBCLASS_USES)))
def test_an_ndarray_subclass_operand_is_kept_as_a_plain_array_is(shape, seed, kind, use):
    """A memmap (a dataset's batch buffer) or a user's subclass was kept by reference, only
    an exact ndarray copied: refilling the buffer before backward gave the new batch's
    gradient ([50 50 50] where [1 2 3] is right), and compile refused the argument. Now it is
    taken as a plain array wherever it enters, and gives what a plain copy of it gives."""
    rng = np.random.default_rng(seed)
    values, refill = rng.normal(size=shape), rng.normal(size=shape)
    with tempfile.TemporaryDirectory() as directory:
        a = _kind_of_array(kind, values, directory)
        w, untouched = (Tensor(np.ones(shape), requires_grad=True) for _ in range(2))
        loss = SUBCLASS_USES[use](w, a)
        expected = _plain_loss(untouched, values.copy())
        a[...] = refill  # the next batch read into the buffer
        loss.backward()
        expected.backward()
        np.testing.assert_array_equal(loss.data, expected.data)
        np.testing.assert_array_equal(w.grad, untouched.grad)
        del a, loss  # (the memmap's file closes before its directory goes)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_memmap_labels_refilled_before_backward_change_no_gradient(compiled, tmp_path):
    """cross_entropy's VJP reads the labels: a memmap of them, refilled with the next batch's,
    flipped the gradient's sign."""
    labels = np.memmap(tmp_path / "labels.dat", dtype=np.int64, mode="w+", shape=(2,))
    loss_of = mg.compile(mg.cross_entropy) if compiled else mg.cross_entropy
    for _ in range(2):
        labels[:] = [0, 1]
        z = Tensor(np.zeros((2, 2)), requires_grad=True)
        loss = loss_of(z, labels)
        labels[:] = [1, 0]
        loss.backward()
        np.testing.assert_array_equal(z.grad, [[-0.25, 0.25], [0.25, -0.25]])
    del labels


def _masked():
    return np.ma.masked_array([1.0, 2.0], mask=[False, True])


MASKED_USES = {
    "mul": lambda w, m: w * m,
    "cross_entropy": lambda w, m: mg.cross_entropy(w.reshape(1, 2), m[:1].astype(int)),
    "compile: argument 1": lambda w, m: mg.compile(lambda w, m: w * m)(w, m),
    "compile's mul": lambda w, m: mg.compile(lambda w: w * m)(w),
    "scan: xs": lambda w, m: mg.scan(lambda c, x: (c + x, None), w, m[None]),
    "scan: init": lambda w, m: mg.scan(lambda c, x: (c * 2.0, None), m, length=1),
    "Tensor": lambda w, m: Tensor(m),
    "setting .data": lambda w, m: setattr(w, "data", m),
    # nn's sequence layers and state dicts, the optimizers and clip_grad_norm made plain
    # arrays of them with np.asarray, which dropped the mask
    "GRU: X": lambda w, m: nn.GRU(2, 3)(m[None, None]),
    "RNN: h0": lambda w, m: nn.RNN(1, 2)(np.zeros((1, 1)), m),
    "LSTM: c0": lambda w, m: nn.LSTM(1, 2)(np.zeros((1, 1)), (None, m)),
    "load_state_dict: 'weight'": lambda w, m: nn.Linear(1, 2).load_state_dict(
        {"weight": m[None], "bias": np.zeros(2)}),
    "clip_grad_norm: gradient of parameter 1": lambda w, m: optim.clip_grad_norm(
        [Tensor(1.0), SimpleNamespace(data=w.data, grad=m)], 1.0),
    "SGD.step: gradient of parameter 0": lambda w, m: _step_with_gradient(w, m),
    "SGD: parameter 0's .data": lambda w, m: SGD([SimpleNamespace(data=m, grad=None)], lr=0.1),
    "SGD.step: parameter 0's .data": lambda w, m: _step_after_masking(m),
    "Adam.load_state_dict: state.0.exp_avg": lambda w, m: _load_into_adam(
        w, "state.0.exp_avg", m),
    "Adam.load_state_dict: groups.0.lr": lambda w, m: _load_into_adam(
        w, "groups.0.lr", np.ma.masked_array(0.5, mask=True)),
    "StepLR.load_state_dict: base_lrs": lambda w, m: optim.StepLR(
        SGD([w], lr=0.1), 2).load_state_dict({"epoch": np.array(1), "base_lrs": m[:1],
                                              "StepLR.step_size": np.array(2),
                                              "StepLR.gamma": np.array(0.1)}),
}


def _step_with_gradient(w, g):
    opt = SGD([w], lr=0.1)
    w.grad = g
    opt.step()


def _step_after_masking(m):
    """A parameter's .data masked after the optimizer was made: the step read its values
    and wrote the update over the mask, unmasking every element."""
    p = SimpleNamespace(data=np.ones(2), grad=np.ones(2))
    opt = SGD([p], lr=0.1)
    p.data = m
    opt.step()


def _load_into_adam(w, key, value):
    opt = optim.Adam([w])
    w.grad = np.ones(2)
    opt.step()
    state = opt.state_dict()
    state[key] = value
    opt.load_state_dict(state)


@pytest.mark.parametrize("use", sorted(MASKED_USES))
def test_a_masked_array_is_refused_not_its_mask_ignored(use):
    """The ops compute on a masked array's values: its mask was silently dropped (w * m gave
    [1. 2.] where NumPy gives [1.0 --]). Refused, naming the op or the place."""
    w = Tensor(np.ones(2), requires_grad=True)
    name = use.replace("compile's ", "")
    with pytest.raises(TypeError, match=_masked_refusal(name)):
        MASKED_USES[use](w, _masked())


def _masked_refusal(name):
    return (rf"^{re.escape(name)}: cannot use a masked array \(shape \(.*\)\): minigrad "
            "computes on its values and would ignore its mask")


def test_a_masked_array_in_a_state_dict_is_not_saved_without_its_mask(tmp_path):
    """save wrote a masked array's values, the NaN under its mask too (its finiteness check
    skipped masked values). Refused, and nothing written."""

    class Holder:
        def state_dict(self):
            return {"a": np.ma.masked_array([1.0, np.nan], mask=[False, True])}

        def load_state_dict(self, state):
            pass

    with pytest.raises(TypeError, match=_masked_refusal("save: 'a'")):
        mg.save(Holder(), tmp_path / "held.npz")
    assert os.listdir(tmp_path) == []


def _view_of(kind, buffer):
    """A view of `buffer`'s first two values, made as `kind` says."""
    return {"slice": lambda b: b[:2], "strided": lambda b: b[:4:2],
            "reversed": lambda b: b[1::-1], "row": lambda b: b.reshape(2, -1)[:, 0]}[kind](buffer)


VIEW_USES = {
    "eager": lambda w: (w * w).sum(),
    "compiled, read from outside": lambda w: mg.compile(lambda: (w * w).sum())(),
    "compiled argument": lambda w: mg.compile(lambda v: (v * v).sum())(w),
    "scan, read from outside": lambda w: mg.scan(lambda c, _: (c + (w * w).sum(), None),
                                                 0.0, length=1)[0],
    "scan init": lambda w: mg.scan(lambda c, _: (c * c, None), w, length=1)[0].sum(),
}


@given(n=st.integers(2, 5).map(lambda k: 2 * k), seed=st.integers(0, 2**16),
       kind=st.sampled_from(["slice", "strided", "reversed", "row", "another tensor's .data"]),
       use=st.sampled_from(sorted(VIEW_USES)))
def test_a_view_given_to_the_data_setter_is_guarded_from_writes_to_its_base(n, seed, kind,
                                                                            use):
    """`w.data = buf[:2]`: nothing else held the view, so the graph froze it and kept it, but
    `buf` stayed writable, and a write to it reached the gradient ([200 4] where [2 4] is
    right). The graph keeps a copy of a view; writes through its base still reach w."""
    rng = np.random.default_rng(seed)
    buffer = rng.normal(size=n)
    if kind == "another tensor's .data":
        owner = Tensor(buffer)
        view, buffer = owner.data[:2], owner.data
    else:
        view = _view_of(kind, buffer)
    w = Tensor(np.zeros(2), requires_grad=True)
    w.data = view
    forward_values = view.copy()
    del view  # (held only by w: the graph froze it rather than copy it)
    loss = VIEW_USES[use](w)
    buffer[...] = 100.0
    loss.backward()
    np.testing.assert_array_equal(w.grad, 2.0 * forward_values)
    np.testing.assert_array_equal(w.data, [100.0, 100.0])  # the write reached w


def test_a_memmap_given_to_the_data_setter_is_guarded_from_writes_to_its_file(tmp_path):
    buffer = np.memmap(tmp_path / "w.dat", dtype=np.float64, mode="w+", shape=(2,))
    buffer[:] = [1.0, 2.0]
    w = Tensor(np.zeros(2), requires_grad=True)
    w.data = buffer
    loss = (w * w).sum()
    buffer[:] = 100.0
    loss.backward()
    np.testing.assert_array_equal(w.grad, [2.0, 4.0])
    del buffer


@pytest.mark.parametrize("bounds", ["0-d arrays", "NumPy ints in a user op's option"])
def test_a_slices_bounds_changed_after_the_forward_do_not_move_the_gradient(bounds):
    """`y = x[lo:hi]` with lo, hi 0-d arrays, then `lo += 3; hi += 3` before backward: the
    node kept the slice, whose bounds were the caller's arrays, read again in backward: the
    gradient landed on x[3:5] ([0 0 0 1 10 0] for [1 10 0 0 0 0]). Slices keep their values
    now (getitem's as Python ints; a user op's option slices as copies)."""
    x = Tensor(np.arange(6.0), requires_grad=True)
    lo, hi = np.array(0), np.array(2)
    if bounds == "0-d arrays":
        y = x[lo:hi]
    else:
        take = mg.defop("take", lambda a, where: a[where],
                        (lambda g, out, a, where: _placed(g, a.shape, where),),
                        saves="inputs", register=False)
        y = take(x, where=slice(lo, hi))
    loss = (y * np.array([1.0, 10.0])).sum()
    lo += 3
    hi += 3
    loss.backward()
    np.testing.assert_array_equal(x.grad, [1.0, 10.0, 0.0, 0.0, 0.0, 0.0])


def _placed(g, shape, where):
    full = np.zeros(shape)
    full[where] = g
    return full


@pytest.mark.parametrize("write", ["in place", "through .data"])
def test_reading_data_in_one_thread_loses_no_write_of_another(write):
    """`.data` copies an array a graph holds (copy-on-write). A thread that only reads it,
    paused inside that copy while another thread reads it too and writes into its own copy,
    must not then install its copy over the written one: the write would be lost. The pause
    is forced (the reader's copy waits for the writer), so the interleaving is the same on
    every run."""
    w = mg.Tensor(np.zeros(4), requires_grad=True)
    y = (w * w).sum()  # the graph holds w's array: the next .data copies it
    reader_copying, written = threading.Event(), threading.Event()
    reader = []

    class PausingCopy(np.ndarray):
        def copy(self, order="C"):
            copied = np.array(self, order=order)
            if threading.get_ident() in reader:
                reader_copying.set()
                written.wait(timeout=0.3)  # (the writer cannot write while the reader copies)
            return copied

    w._data = w._data.view(PausingCopy)  # (a view: copied on .data, as the graph holds it)

    def read():
        reader.append(threading.get_ident())
        w.data  # noqa: B018 (the read is the point)

    thread = threading.Thread(target=read)
    thread.start()
    assert reader_copying.wait(timeout=5)
    if write == "in place":
        with mg.no_grad():
            w -= 1.0
    else:
        w.data[...] -= 1.0
    written.set()
    thread.join()
    np.testing.assert_array_equal(w.data, -np.ones(4))
    y.backward()
    np.testing.assert_array_equal(w.grad, np.zeros(4))  # the graph kept the array it saved


def test_data_read_again_in_the_thread_that_is_copying_it_does_not_hang(monkeypatch):
    """A signal handler (or a finalizer) that reads `.data` (mg.save, state_dict) runs in
    the thread it interrupts, maybe inside the copy-on-write of that same tensor: the lock
    is re-entrant, so it does not wait for itself for ever; and what the handler wrote
    into the array it got stays the tensor's (the interrupted copy installs nothing over
    it)."""
    import minigrad.tensor as tensor_module

    # (a lock of this test's own: a hung thread would hold it, not the one later tests use)
    monkeypatch.setattr(tensor_module, "_COPY_ON_WRITE", type(tensor_module._COPY_ON_WRITE)())
    w = mg.Tensor(np.zeros(4), requires_grad=True)
    y = (w * w).sum()  # the graph holds w's array: the next .data copies it
    entered, seen = [], []

    class ReadingCopy(np.ndarray):
        def copy(self, order="C"):
            if not entered:  # (as a handler would, between two bytecodes of the copy)
                entered.append(True)
                got = w.data
                seen.append(got.copy())
                got[0] = 5.0
            return np.array(self, order=order)

    w._data = w._data.view(ReadingCopy)
    result = []
    thread = threading.Thread(target=lambda: result.append(w.data), daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive(), "a .data read inside .data's own copy hung"
    np.testing.assert_array_equal(seen[0], np.zeros(4))
    np.testing.assert_array_equal(w.data, [5.0, 0.0, 0.0, 0.0])
    assert result[0] is w.data
    y.backward()
    np.testing.assert_array_equal(w.grad, np.zeros(4))
