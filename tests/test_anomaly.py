"""Anomaly mode: `detect_anomaly()` stops at the first recorded op whose output or gradient is
NaN or infinite, and names the op, its input shapes, the phase and the user's line."""

import os
import re
import threading
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import Tensor

HERE = os.path.basename(__file__)


def _planted_log(x):
    return mg.log(x * 1.0)  # the planted log(0)


def test_a_planted_log_of_zero_is_caught_and_named(capsys):
    x = Tensor([1.0, 0.0, 2.0], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a NumPy RuntimeWarning would fail the test
        with mg.detect_anomaly(), pytest.raises(mg.AnomalyError) as caught:
            _planted_log(x).sum()
    message = str(caught.value)
    assert "'log'" in message
    assert "inputs of shapes (3,)" in message
    assert "-inf" in message and "forward" in message
    line = _planted_log.__code__.co_firstlineno + 1
    assert f"{HERE}:{line} in _planted_log: return mg.log(x * 1.0)" in message
    assert "\n" not in message
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_anomaly_error_is_a_floating_point_error():
    assert issubclass(mg.AnomalyError, FloatingPointError)


def test_nan_in_forward_is_named():
    x = Tensor(0.0, requires_grad=True)
    with mg.detect_anomaly(), pytest.raises(mg.AnomalyError, match=r"'div' \(inputs of shapes "
                                            r"\(\), \(\)\) gave its output holding NaN"):
        x / x


def test_an_infinite_gradient_is_caught_in_backward():
    x = Tensor([0.0, 4.0], requires_grad=True)
    with mg.detect_anomaly():
        y = mg.sqrt(x).sum()  # finite forward; d sqrt / dx = inf at 0
        with pytest.raises(mg.AnomalyError) as caught:
            y.backward()
    message = str(caught.value)
    assert "'sqrt'" in message and "gradient of input 0" in message
    assert "+inf" in message and "backward" in message
    assert f"{HERE}:" in message and "y = mg.sqrt(x).sum()" in message
    assert x.grad is None  # stopped before any leaf was touched


def test_a_graph_built_outside_the_mode_is_still_checked_in_backward():
    x = Tensor([0.0], requires_grad=True)
    y = mg.sqrt(x).sum()
    with mg.detect_anomaly(), pytest.raises(mg.AnomalyError, match="creation site is unknown"):
        y.backward()


def test_a_non_finite_seed_is_refused():
    x = Tensor([1.0], requires_grad=True)
    with mg.detect_anomaly(), pytest.raises(mg.AnomalyError, match="seed"):
        (x * 2.0).backward(np.array([np.nan]))


def test_the_site_is_in_the_callers_code_not_in_the_engine():
    from minigrad.models.counter import Counter

    model = Counter(1.0, 1e200)  # the last state overflows to inf inside Counter.forward
    with mg.detect_anomaly(), pytest.raises(mg.AnomalyError) as caught:
        model.loss(np.ones((2, 5)), np.zeros(2))
    message = str(caught.value)
    assert f"models{os.sep}counter.py" in message and "in forward" in message
    engine_files = [f for f in os.listdir(os.path.dirname(mg.__file__)) if f.endswith(".py")]
    assert not any(f"{os.sep}{name}:" in message for name in engine_files), message


def test_without_the_mode_non_finite_values_pass_through():
    x = Tensor([0.0], requires_grad=True)
    with np.errstate(divide="ignore"):
        y = mg.log(x)
    assert np.isneginf(y.data).all()
    assert not mg.is_anomaly_enabled()


def test_unrecorded_ops_are_not_checked():
    with mg.detect_anomaly():
        y = mg.log(Tensor([0.0]))  # needs no grad: not recorded, not checked
        with mg.no_grad():
            z = mg.log(Tensor([0.0], requires_grad=True))
    assert np.isneginf(y.data).all() and np.isneginf(z.data).all()


@pytest.mark.parametrize("made", [
    lambda: mg.log(Tensor([-1.0, 2.0])),                 # an op needing no gradient
    lambda: np.log(np.array([-1.0, 2.0])),               # NumPy
    lambda: Tensor([np.nan, 2.0]),                       # the data itself
], ids=["unrecorded op", "numpy", "data"])
def test_a_nan_an_op_receives_is_said_to_come_from_its_input(made):
    """mul got a NaN made where anomaly mode checks nothing and was said to give it, as if it
    had made it: the message says which input held it already."""
    w = Tensor([1.0, 3.0], requires_grad=True)
    with np.errstate(invalid="ignore"), mg.detect_anomaly():
        logs = made()
        with pytest.raises(mg.AnomalyError, match=r"'mul' .* holding NaN in forward from "
                                                  r"input 0, which held it already"):
            logs * w
        with pytest.raises(mg.AnomalyError, match=r"from input 1, which held it already"):
            w * logs


def test_a_nan_an_op_makes_of_finite_inputs_is_its_own():
    x = Tensor([0.0, 1.0], requires_grad=True)
    with mg.detect_anomaly(), pytest.raises(mg.AnomalyError) as caught:
        x / np.array([0.0, 1.0])
    assert "held it already" not in str(caught.value)


def test_finite_computations_are_unchanged():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 2))
    x = rng.normal(size=(4, 3))
    grads = []
    for mode in (False, True):
        W = Tensor(w, requires_grad=True)
        with mg.detect_anomaly(mode):
            mg.tanh(x @ W).sum().backward()
        grads.append(W.grad)
    np.testing.assert_array_equal(grads[0], grads[1])


def test_the_mode_nests_and_restores_even_after_an_error():
    assert not mg.is_anomaly_enabled()
    with mg.detect_anomaly():
        assert mg.is_anomaly_enabled()
        with mg.detect_anomaly(False):
            assert not mg.is_anomaly_enabled()
        assert mg.is_anomaly_enabled()
        with pytest.raises(mg.AnomalyError), mg.detect_anomaly():
            mg.log(Tensor([0.0], requires_grad=True))
        assert mg.is_anomaly_enabled()
    assert not mg.is_anomaly_enabled()
    # NumPy's warnings are back outside the block.
    with pytest.warns(RuntimeWarning):
        np.log(np.zeros(1))


def test_input_shapes_a_node_did_not_keep_are_not_invented():
    x = Tensor([0.0, 1.0], requires_grad=True)
    y = mg.sqrt(x + 0.0).sum()  # built outside the mode: nodes keep only what VJPs read
    with mg.detect_anomaly(), pytest.raises(mg.AnomalyError) as caught:
        y.backward()
    message = str(caught.value)
    assert "'sqrt'" in message and "gradient of input 0" in message
    assert re.search(r"inputs of shapes (\(2,\)|\?)\)", message), message


def test_a_backward_in_the_mode_leaves_no_check_behind():
    """A graph recorded outside the mode and swept once inside it is not checked by a later
    backward outside it, in this thread or another: the mode is the thread's at backward
    time (the wrapped VJPs stayed on the nodes, and a later backward raised AnomalyError
    100 times in 100 from a thread never in the mode)."""
    x = mg.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x * 3.0
    with mg.detect_anomaly():
        y.backward(np.ones(2), retain_graph=True)
    x.grad = None
    y.backward(np.array([np.inf, 1.0]), retain_graph=True)
    np.testing.assert_array_equal(x.grad, [np.inf, 3.0])
    with mg.detect_anomaly(), pytest.raises(mg.AnomalyError):
        y.backward(np.array([np.inf, 1.0]), retain_graph=True)
    found = []
    thread = threading.Thread(target=lambda: found.append(
        mg.gradients(y, [x], grad=np.array([np.nan, 1.0]), retain_graph=True)[0]))
    thread.start()
    thread.join()
    np.testing.assert_array_equal(found[0], [np.nan, 3.0])


def test_a_leafs_gradient_that_overflows_when_its_contributions_are_added_is_caught():
    """Two finite contributions whose sum is infinite: each VJP's result passed the check,
    and the leaf's gradient was inf without an error."""
    v = Tensor(np.array([1e-10]), requires_grad=True)
    with mg.detect_anomaly():
        y = (v * 1e308).sum() + (v * 1e308).sum()
        with pytest.raises(mg.AnomalyError, match=r"shape \(1,\).*contributions.*overflowed"):
            y.backward()
    assert v.grad is None  # nothing accumulated


def test_an_intermediate_whose_gradient_overflows_when_added_up_is_named():
    """The op whose output's gradient (the sum of its consumers' contributions) is not
    finite is named, not an op below it."""
    v = Tensor(np.array([1e-10]), requires_grad=True)
    with mg.detect_anomaly():
        h = v * 1.0
        y = (mg.tanh(h) * 1e308).sum() + (h * 1e308).sum()
        with pytest.raises(mg.AnomalyError,
                           match=r"'mul' .* got its output's gradient \(the sum .*\+inf"):
            y.backward()


def test_a_vjp_returning_a_list_or_a_number_is_checked_as_outside_the_mode():
    """Accepted outside anomaly mode, such a VJP's result raised AttributeError ('list' has
    no dtype) inside it. (A number for a 0-d operand: for one of more elements it would be
    broadcast, which the tape refuses, as it refuses any gradient of the wrong shape.)"""
    for result, value in ((lambda g: list(g * 2.0), [1.0, 2.0]), (lambda g: float(g) * 2.0, 1.0)):
        op = mg.defop("loose_vjp", lambda x: x * 2.0, (lambda g, out, r=result: r(g),),
                      saves="nothing", register=False)
        x = Tensor(np.array(value), requires_grad=True)
        with mg.detect_anomaly():
            op(x).sum().backward()
        np.testing.assert_array_equal(x.grad, np.full(np.shape(value), 2.0))


def test_compiled_and_scanned_ops_say_so_too():
    w = Tensor([1.0, 3.0], requires_grad=True)
    given = np.array([np.nan, 2.0])
    compiled = mg.compile(lambda x: (x * w).sum())

    def body(c, x):
        return c + x * w, c

    with mg.detect_anomaly():
        with pytest.raises(mg.AnomalyError, match=r"'mul' .* from input 0, which held it"):
            compiled(given)
        with pytest.raises(mg.AnomalyError, match=r"'mul' .* from input 0, which held it "
                                                  r".* \(scan step 1\)"):
            mg.scan(body, np.zeros(2), np.stack([np.ones(2), given]))


@settings(max_examples=20, deadline=None)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=3), rows=st.integers(1, 3),
       w_grad=st.booleans(), retain_graph=st.booleans())
def test_a_compiled_graph_recorded_outside_the_mode_is_named_with_its_inputs_shapes(
        shape, rows, w_grad, retain_graph):
    """Its node's args are the program's own objects: the message took their shapes, "inputs
    of shapes (), (0,)" for an input of shape (3,), and with retain_graph=True np.shape
    raised ValueError instead of AnomalyError."""
    compiled = mg.compile(lambda x, w: (mg.sqrt(x) * w).sum())
    x_values = np.ones(shape)
    x_values.flat[0] = 0.0  # sqrt'(0) is infinite
    x = Tensor(x_values, requires_grad=True)
    w = Tensor(np.ones((rows, *shape)), requires_grad=w_grad)
    value = compiled(x, w)
    with mg.detect_anomaly(), pytest.raises(mg.AnomalyError) as caught, \
            np.errstate(divide="ignore"):
        value.backward(retain_graph=retain_graph)
    shapes = ", ".join(map(str, [x.shape, w.shape] if w_grad else [x.shape]))
    assert re.search(rf"^detect_anomaly: 'compiled <lambda>' \(inputs of shapes "
                     rf"{re.escape(shapes)}\) gave the gradient of input 0 holding \+inf in "
                     r"backward; created outside detect_anomaly\(\)", str(caught.value))


@settings(max_examples=20, deadline=None)
@given(shape=hnp.array_shapes(min_dims=0, max_dims=2, max_side=3))
def test_an_operand_a_node_does_not_keep_is_not_given_the_shape_of_none(shape):
    """A node that keeps only some operands holds None for the others: np.shape(None) said
    () for an input of another shape."""
    divide = mg.defop("divide_keeping_b", lambda a, b: a / b,
                      (lambda g, out, a, b: g / b, lambda g, out, a, b: -g * out / b),
                      saves=(1, "output"), register=False)
    a = Tensor(np.ones(shape), requires_grad=True)
    b = Tensor(np.zeros(shape[-1:]), requires_grad=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = divide(a, b).sum()
    with mg.detect_anomaly(), pytest.raises(mg.AnomalyError) as caught, \
            np.errstate(divide="ignore", invalid="ignore"):
        y.backward()
    assert f"'divide_keeping_b' (inputs of shapes {a.shape}, {b.shape})" in str(caught.value)


def test_a_finite_seed_that_overflows_the_tensors_dtype_is_named_so():
    """backward(1e6) on a float16 result: the seed is finite as given and overflows on its
    cast; the message said it held NaN or infinity."""
    with mg.detect_anomaly(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (NumPy's overflow in the cast)
        y = (mg.Tensor(np.ones(2, np.float16), requires_grad=True) * 2.0).sum()
        with pytest.raises(mg.AnomalyError, match=r"^backward: the seed gradient, finite as "
                                                  r"given, overflows float16"):
            y.backward(1e6)
        y = (mg.Tensor(np.ones(2, np.float16), requires_grad=True) * 2.0).sum()
        with pytest.raises(mg.AnomalyError, match=r"^backward: the seed gradient holds NaN"):
            y.backward(float("nan"))


def test_an_input_made_non_finite_outside_the_mode_names_an_optimizers_step_among_causes():
    w = mg.Tensor(np.ones(2), requires_grad=True)
    with mg.no_grad():
        w -= np.inf  # (as an optimizer's step that overflowed)
    with mg.detect_anomaly(), pytest.raises(mg.AnomalyError, match="by an optimizer's step"):
        w * 2.0
