"""`minigrad.compile`'s arguments that are not tensors or plain arrays: what is held in the
signature gives eager mode's bits on every call; what fn could read differently on a later
call than when traced (a bound method of a dict or an array, attributes set on a tuple
subclass's instance), or would compute on otherwise than in eager mode (an np.matrix taken
as a plain array), is refused with an error naming compile, the argument and what it is.
"""

from __future__ import annotations

import builtins
import collections
import enum
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg

finite = st.floats(-1e3, 1e3, allow_nan=False, width=64)
vectors = hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=4), elements=finite)


def assert_same_bits(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert actual.tobytes() == expected.tobytes()


def _scaled(x, scale):
    return mg.Tensor(x) * scale()


# A built-in method bound to a mutable object returns what the object holds at the call:
# the first trace baked that in ({"lr": 2.0}.get gave 2.0 after the dict held 5.0).
BOUND_BUILTINS = {
    "dict.get": lambda: (lambda x, get: mg.Tensor(x) * get("lr"), {"lr": 2.0}.get),
    "ndarray.sum": lambda: (_scaled, np.array([1.0, 2.0]).sum),
    "list.copy": lambda: (lambda x, c: mg.Tensor(x) * len(c()), [3.0].copy),
}


@pytest.mark.parametrize("name", sorted(BOUND_BUILTINS))
def test_a_bound_builtin_method_is_refused_as_a_bound_method_is(name):
    fn, method = BOUND_BUILTINS[name]()
    with pytest.raises(TypeError, match=rf"^compile: argument 1 is a bound method "
                                        rf"\({name}\), which cannot be part of a signature"):
        mg.compile(fn)(np.ones(2), method)


@given(vectors)
def test_module_level_builtins_and_ufuncs_stay_signature_values(x):
    """math.sqrt, builtins.abs (whose __self__ is their module) and a ufunc are functions
    held by identity: each gives eager mode's bits, one trace per function."""
    f = mg.compile(lambda x, g: mg.Tensor(np.abs(x)) + g(4.0))
    for g in (math.sqrt, builtins.abs, np.exp, math.sqrt):
        assert_same_bits(f(x, g).data, (mg.Tensor(np.abs(x)) + g(4.0)).data)
    assert f.traces == 3


class _Config(tuple):
    pass


@given(vectors, finite, finite)
def test_a_tuple_subclass_with_attributes_is_refused(x, first, later):
    """Its attributes were not in the key: the first trace's lr was baked in. Without
    attributes it is a tuple of its items, and gives eager mode's bits."""
    f = mg.compile(lambda x, c: mg.Tensor(x) * c[0])
    plain = _Config((first,))
    assert_same_bits(f(x, plain).data, (mg.Tensor(x) * first).data)
    assert_same_bits(f(x, _Config((later,))).data, (mg.Tensor(x) * later).data)
    configured = _Config((first,))
    configured.lr = later
    with pytest.raises(TypeError, match=r"^compile: argument 1 is a _Config with attributes "):
        f(x, configured)
    Pair = collections.namedtuple("Pair", "a b")  # (no instance attributes: __slots__ = ())
    g = mg.compile(lambda x, p: mg.Tensor(x) * p.a)
    assert_same_bits(g(x, Pair(first, later)).data, (mg.Tensor(x) * first).data)


class _Planet(enum.Enum):
    SMALL = (1.0, 2.0)
    LARGE = (3.0, -4.0)

    def __init__(self, mass, radius):
        self.mass = mass
        self.radius = radius


@given(vectors)
def test_an_enum_member_is_held_by_identity_its_attributes_constants(x):
    f = mg.compile(lambda x, p: mg.Tensor(x) * p.mass + p.radius)
    for planet in (_Planet.SMALL, _Planet.LARGE, _Planet.SMALL):
        assert_same_bits(f(x, planet).data, (mg.Tensor(x) * planet.mass + planet.radius).data)
    assert f.traces == 2


class _Doubling(np.ndarray):
    """An ndarray subclass whose `*` is not NumPy's."""

    def __mul__(self, other):
        return np.asarray(self) * np.asarray(other) * 2.0


SUBCLASSES = {
    "numpy.matrix": np.asmatrix,
    f"{__name__}._Doubling": lambda a: a.view(_Doubling),
}


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("name", sorted(SUBCLASSES))
@given(a=hnp.arrays(np.float64, (2, 2), elements=finite),
       b=hnp.arrays(np.float64, (2, 2), elements=finite))
def test_an_ndarray_subclass_that_is_not_a_memmap_is_refused(name, a, b):
    """fn got it as a plain array: np.matrix's `x * y` is a matrix product in eager mode,
    and was an elementwise one compiled (70.0 for 134.0)."""
    x, y = SUBCLASSES[name](a), SUBCLASSES[name](b)

    def f(x, y):
        return mg.Tensor(x * y).sum()

    f(x, y)  # eager mode takes it
    step = mg.compile(f)
    message = (rf"^compile: argument 0 is an array of ndarray subclass {name} \(shape "
               r"\(2, 2\)\), .*pass np.asarray\(x\)")
    with pytest.raises(TypeError, match=message):
        step(x, y)
    with pytest.raises(TypeError, match=message):
        step.value_and_backward(x, y)
    assert_same_bits(step(np.asarray(x), np.asarray(y)).data, f(a, b).data)


class _Labelled(np.ndarray):
    """An ndarray subclass adding an attribute only: it computes as a plain array."""

    def __array_finalize__(self, obj):
        self.label = getattr(obj, "label", None)


@given(a=hnp.arrays(np.float64, (2, 3), elements=finite),
       b=hnp.arrays(np.float64, (2, 3), elements=finite))
def test_an_ndarray_subclass_adding_attributes_only_is_taken_as_a_plain_array(a, b):
    def f(x, y):
        return mg.Tensor(x * y).sum()

    step = mg.compile(f)
    for x, y in ((a.view(_Labelled), b), (a, b.view(_Labelled)), (a, b)):
        assert_same_bits(step(x, y).data, f(x, y).data)
    assert step.traces == 1


@given(vectors)
def test_class_level_builtins_and_numpys_functions_stay_signature_values(x):
    """float.fromhex (its __self__ a class, not an object) and np.sum, np.max (NumPy's
    function type) are functions held by identity: eager mode's bits, one trace each."""
    f = mg.compile(lambda x, g: mg.Tensor(np.abs(x)) + float(g(np.array([0.5, 1.0]))))
    for g in (np.sum, np.max, np.sum):
        want = mg.Tensor(np.abs(x)) + float(g(np.array([0.5, 1.0])))
        assert_same_bits(f(x, g).data, want.data)
    assert f.traces == 2
    h = mg.compile(lambda x, g: mg.Tensor(x) * g("0x1.8p1"))
    assert_same_bits(h(x, float.fromhex).data, (mg.Tensor(x) * 3.0).data)


class _Scale(float):
    pass


@given(vectors, st.floats(0.5, 4.0), st.floats(5.0, 9.0))
def test_a_number_subclass_with_attributes_is_refused(x, first, later):
    """A float (or str) subclass's instance keys the signature by its value alone: an
    attribute it carries (a.scale) was baked in at the first trace, 2.0 for a later
    a.scale of 10.0."""
    f = mg.compile(lambda x, a: mg.Tensor(x) * a.scale)
    a = _Scale(1.0)
    a.scale = first
    with pytest.raises(TypeError, match=r"argument 1 is a _Scale with attributes \(scale\)"):
        f(x, a)
    plain = mg.compile(lambda x, a: mg.Tensor(x) * a)  # (one without attributes: its value)
    assert_same_bits(plain(x, _Scale(later)).data, (mg.Tensor(x) * later).data)


class _Level(enum.IntEnum):
    LOW = 1
    HIGH = 3


@given(vectors)
def test_an_int_enum_member_is_held_by_identity(x):
    f = mg.compile(lambda x, level: mg.Tensor(x) * int(level))
    for level in (_Level.LOW, _Level.HIGH, _Level.LOW):
        assert_same_bits(f(x, level).data, (mg.Tensor(x) * int(level)).data)
    assert f.traces == 2


class _Tagged(float):
    __slots__ = ("tag",)


@given(vectors)
def test_a_number_subclass_with_slots_is_refused(x):
    """Slots are attributes too (set or not): a.tag was baked in as __dict__ ones were."""
    f = mg.compile(lambda x, a: mg.Tensor(x) * a.tag)
    a = _Tagged(1.0)
    a.tag = 3.0
    with pytest.raises(TypeError, match=r"argument 1 is a _Tagged with attributes \(tag\)"):
        f(x, a)
