"""What a graph keeps of a call's arguments: an index or an option given in any of the forms
NumPy and Python allow (an array.array, a nested tuple, a namedtuple, an OrderedDict), and
the operands of a user's op whose residual holds them, are the graph's own. The caller's
edits after the call, or an optimizer's step before backward, reach no gradient: eager,
compiled and in a scan's body."""

from __future__ import annotations

import array
from collections import OrderedDict, defaultdict, namedtuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad.primitive import defop

MODES = ["eager", "compiled", "scan"]
VALUES = hnp.arrays(np.float64, 3, elements=st.floats(-2.0, 2.0))


def gradient(loss_of, w: np.ndarray, mode: str, edit) -> np.ndarray:
    """dloss/dw with `edit()` run between the forward and the backward; compiled: after
    two calls (traced and replayed); scan: the loss in a one-step scan's body."""
    x = mg.Tensor(w.copy(), requires_grad=True)
    if mode == "compiled":
        f = mg.compile(loss_of)
        for _ in range(2):
            f(x).backward()
        x.grad = None
        loss = f(x)
    elif mode == "scan":
        total, _ = mg.scan(lambda c, _: (c + loss_of(x), None), 0.0, length=1)
        loss = total
    else:
        loss = loss_of(x)
    edit(x)
    loss.backward()
    return x.grad


residual_sin = defop("residual_sin", lambda x: (np.sin(x), lambda g: g * np.cos(x)),
                     (lambda g, pullback: pullback(g),), saves="nothing", residual=True,
                     register=False)
residual_mul = defop("residual_mul", lambda x, y: (x * y, lambda g: (g * y, g * x)),
                     (lambda g, pullback: pullback(g)[0], lambda g, pullback: pullback(g)[1]),
                     saves="nothing", residual=True, register=False)


@pytest.mark.parametrize("mode", MODES)
@given(w=VALUES)
def test_a_residual_holding_its_operand_sees_the_forwards_values(mode, w):
    # saves="nothing": the VJPs read only the residual, a closure over the operand's array;
    # the parameter stepped in place before backward must not change that array.
    def step(x):
        with mg.no_grad():
            x -= 1.0

    got = gradient(lambda x: residual_sin(x).sum(), w, mode, step)
    np.testing.assert_allclose(got, np.cos(w), rtol=1e-15)


@pytest.mark.parametrize("mode", MODES)
@given(w=VALUES, y=VALUES)
def test_a_residual_holding_a_callers_array_sees_the_forwards_values(mode, w, y):
    b = y.copy()
    got = gradient(lambda x: residual_mul(x, b).sum(), w, mode, lambda x: b.fill(10.0))
    np.testing.assert_array_equal(got, y)


Option = namedtuple("Option", "scale")
OPTION_FORMS = {
    "namedtuple": (lambda a: Option(a), lambda opt: opt.scale),
    "OrderedDict": (lambda a: OrderedDict(scale=a), lambda opt: opt["scale"]),
    "defaultdict": (lambda a: defaultdict(list, scale=a), lambda opt: opt["scale"]),
    "list subclass": (lambda a: type("Scales", (list,), {})([a]), lambda opt: opt[0]),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", OPTION_FORMS)
@given(w=VALUES, s=VALUES)
def test_an_option_in_a_container_subclass_is_copied(mode, form, w, s):
    make, read = OPTION_FORMS[form]
    scaled = defop("scaled", lambda x, opt: x * read(opt),
                   (lambda g, out, x, opt: g * read(opt),), saves="inputs", register=False)
    a = s.copy()
    option = make(a)
    got = gradient(lambda x: scaled(x, opt=option).sum(), w, mode, lambda x: a.fill(10.0))
    np.testing.assert_array_equal(got, s)


def _index_forms(rows: list[int]) -> dict:
    """Each form of index -> (the index, the mutable sequence of positions inside it)."""
    positions = np.array(rows)
    held = array.array("l", rows)
    return {"array.array": (held, held),
            "nested tuple": (((positions,),), positions),
            "namedtuple": (namedtuple("Rows", "rows")(positions), positions)}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", ["array.array", "nested tuple", "namedtuple"])
@given(rows=st.lists(st.integers(0, 2), min_size=1, max_size=4), w=VALUES)
def test_an_index_in_any_form_numpy_takes_is_copied(mode, form, rows, w):
    index, held = _index_forms(rows)[form]
    shape = np.arange(3)[index].shape
    assert mg.Tensor(w)[index].shape == shape  # as NumPy reads it
    weights = np.arange(1.0, 1.0 + len(rows)).reshape(shape)

    def scramble(x):
        for i in range(len(held)):
            held[i] = 2 - rows[i]

    got = gradient(lambda x: (x[index] * weights).sum(), w, mode, scramble)
    expected = np.zeros(3)
    np.add.at(expected, np.array(rows), weights.reshape(-1))
    np.testing.assert_array_equal(got, expected)


class _Position:
    def __index__(self) -> int:
        return 1


NUMPY_INDEX_FORMS = {
    "__index__": lambda: _Position(), "in a tuple": lambda: (0, _Position()),
    "empty tuple part": lambda: (slice(None), ()), "empty range": lambda: range(0),
    "range part": lambda: (slice(None), range(2)), "bools": lambda: [True, False, True],
    "0-d array": lambda: np.array(1), "np.bool_": lambda: np.bool_(True),
    "Ellipsis, None": lambda: (Ellipsis, None, 1),
    "memoryview": lambda: memoryview(np.array([0, 2])),
}


@pytest.mark.parametrize("form", NUMPY_INDEX_FORMS)
def test_an_index_in_any_form_numpy_takes_selects_what_numpy_does(form):
    a = np.arange(12.0).reshape(3, 4)
    index = NUMPY_INDEX_FORMS[form]()
    np.testing.assert_array_equal(mg.Tensor(a)[index].data, a[index])
    assert mg.Tensor(a)[index].shape == a[index].shape


class Pair(tuple):
    """A tuple subclass whose class is not made from an iterable of its items."""

    def __new__(cls, a, b):
        return super().__new__(cls, (a, b))


class Frozen(dict):
    def __setitem__(self, key, value):
        raise TypeError("frozen")


@pytest.mark.parametrize("mode", MODES)
@given(w=VALUES)
def test_options_holding_no_array_are_kept_as_they_are(mode, w):
    # Beside an array option, a tuple or dict subclass without arrays needs no copy (and
    # these two cannot be copied item by item).
    scaled = defop("scaled", lambda x, s, pair, table: x * s * pair[0] * table["k"],
                   (lambda g, out, x, s, pair, table: g * s * pair[0] * table["k"],),
                   saves="inputs", register=False)
    s = np.array(2.0)
    got = gradient(lambda x: scaled(x, s=s, pair=Pair(3.0, 0), table=Frozen(k=0.5)).sum(),
                   w, mode, lambda x: s.fill(10.0))
    np.testing.assert_array_equal(got, np.full(3, 3.0))


def test_the_engines_own_residual_op_keeps_no_copy_of_its_operands():
    # mse_loss's residual is an array of its own: its operands are not guarded as a user
    # residual op's are (no copy of the target, the prediction not marked shared).
    y = mg.Tensor(np.ones((3, 3)), requires_grad=True) * 1.0
    mg.mse_loss(y, np.zeros((3, 3)))
    assert not y._shared


def test_an_option_holding_arrays_that_cannot_be_copied_is_refused_by_name():
    scaled = defop("scaled", lambda x, pair: x * pair[0],
                   (lambda g, out, x, pair: g * pair[0],), saves="inputs", register=False)
    x = mg.Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(TypeError, match=r"an option of class Pair holds arrays \(or lists, "
                                        r"dicts\), which a node keeps copies of, but cannot be "
                                        r"copied item by item"):
        scaled(x, pair=Pair(np.ones(3), 0))
