"""Ops a user defines with `defop`: a VJP's result of the wrong shape is an error, never
broadcast into wrong numbers; mistakes in the definition (VJPs missing, one VJP where a
tuple was meant, a VJP whose signature does not fit `saves`) are named with the op."""

import re

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import Tensor, defop, no_grad

small_shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)


def _returning(result):
    """An op of one operand (x * 2) whose VJP returns `result`, whatever the cotangent."""
    return defop("returns_fixed", lambda x: x * 2.0, (lambda g, out: result,),
                 saves="nothing", register=False)


def _summed_to(r, shape):
    """The closed form of undoing broadcasting (NumPy's rule, read backwards): r summed over
    the axes it has beyond `shape`, and over those where `shape` has 1 and r more."""
    r = r.sum(axis=tuple(range(r.ndim - len(shape))))
    return r.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1 and r.shape[i] != 1),
                 keepdims=True)


def _broadcasts_to(shape, target):
    try:
        return np.broadcast_shapes(shape, target) == target
    except ValueError:
        return False


def _fills(got, shape):
    """A gradient filled in to the operand's shape: 0-d, or of its axes with 1 on some."""
    return got == () or len(got) == len(shape) and all(
        m in (n, 1) for m, n in zip(got, shape, strict=True))


def _eager(op, x):
    op(x).sum().backward()
    return x.grad


def _gradients(op, x):
    return mg.gradients(op(x).sum(), [x])[0]


def _compiled(op, x):
    mg.compile(lambda: op(x).sum())().backward()
    return x.grad


def _scanned(op, x):
    def body(c, k):
        return c + op(x).sum() * k, None

    mg.scan(body, np.zeros(()), np.ones(2))[0].backward()
    return x.grad / 2


@pytest.mark.parametrize("run", [_eager, _gradients, _compiled, _scanned])
@given(shape=small_shapes, got=small_shapes, data=st.data())
@example(shape=(3, 3), got=(3,), data=None)     # a row sum's VJP returning g, not g[:, None]
@example(shape=(3,), got=(3, 1), data=None)     # an extra axis: broadcast to (3, 3) before
@example(shape=(3, 4), got=(3,), data=None)     # NumPy's bare broadcast error before
@example(shape=(2,), got=(), data=None)         # a full sum's g: filled in
@example(shape=(2, 3), got=(2, 1), data=None)   # a keepdims sum's g: filled in
@example(shape=(2, 1), got=(1, 3), data=None)   # to fill on one axis, sum on another: refused
@example(shape=(1, 3), got=(4, 2, 3), data=None)  # a broadcast operand's: summed back
def test_a_vjp_result_summed_back_or_filled_in_any_other_refused(
        run, shape, got, data):
    values = np.arange(1.0, 1.0 + np.prod(got)).reshape(got) if data is None else data.draw(
        hnp.arrays(np.float64, got, elements=st.floats(-4, 4)), label="result")
    x = Tensor(np.zeros(shape), requires_grad=True)
    op = _returning(values)
    if _broadcasts_to(shape, got):
        np.testing.assert_allclose(run(op, x), _summed_to(values, shape), rtol=1e-12, atol=1e-12)
        return
    if _fills(got, shape):  # (a full sum's 0-d g, a keepdims sum's g: each entry stands for
        # what it summed)
        np.testing.assert_allclose(run(op, x), np.broadcast_to(values, shape), rtol=1e-12)
        return
    # Eager mode names the op and the operand; a compiled program or a scan, the shapes.
    named = "returns_fixed: VJP 0 returned " if run in (_eager, _gradients) else ""
    with pytest.raises(ValueError, match=re.escape(
            f"{named}a gradient of shape {got} for an operand of shape {shape}: a VJP must")):
        run(op, x)
    assert x.grad is None


def test_a_second_operand_s_vjp_is_named_by_its_index():
    def scale(s_vjp):
        return defop("scale", lambda x, s: x * s, (lambda g, out, x, s: g * s, s_vjp),
                     register=False)

    x, s = Tensor(np.ones((2, 3)), requires_grad=True), Tensor(np.ones((2, 1)), requires_grad=True)
    # g * x, of shape (2, 3), which s's (2, 1) broadcasts to: summed back. Summed over the
    # wrong axis, (1, 3): refused.
    grads = mg.gradients(scale(lambda g, out, x, s: g * x)(x, s).sum(), [x, s])
    np.testing.assert_array_equal(grads[1], np.full((2, 1), 3.0))
    wrong_axis = scale(lambda g, out, x, s: (g * x).sum(axis=0, keepdims=True))
    with pytest.raises(ValueError, match=re.escape("scale: VJP 1 returned a gradient of shape "
                                                   "(1, 3) for an operand of shape (2, 1)")):
        wrong_axis(x, s).sum().backward()


def test_fewer_vjps_than_operands_are_named_at_the_first_call():
    mul2 = defop("mul2", lambda a, b: a * b, (lambda g, out, a, b: g * b,), register=False)
    a, b = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    message = r"^mul2 takes 1 operand, got 2; defop was given 1 VJP: one per operand"
    with pytest.raises(TypeError, match=message):
        mul2(a, b)
    with pytest.raises(TypeError, match=message), no_grad():  # (no node: found all the same)
        mul2(a, b)
    with pytest.raises(TypeError, match=message):
        mg.compile(lambda: mul2(a, b).sum())()


def test_a_single_vjp_where_a_tuple_was_meant_is_named():
    x = Tensor(np.ones(2), requires_grad=True)
    # One that cannot be a maker of VJPs (it takes two arguments): refused by defop.
    with pytest.raises(TypeError, match=r"neg2: vjps is a single function, which defop takes "
                                        r"for a maker .* cannot take those three arguments\. "
                                        r"For one VJP per operand pass a tuple"):
        defop("neg2", np.negative, lambda g, out: -g, register=False)
    # One that can (g, out, x): named when first recorded, with what it raised.
    sin = defop("my_sin", np.sin, lambda g, out, x: g * np.cos(x), saves="inputs",
                register=False)
    with no_grad():
        np.testing.assert_array_equal(sin(x).data, np.sin(1.0))  # (nothing to make)
    for run in (lambda: sin(x), lambda: mg.compile(lambda: sin(x).sum())()):
        with pytest.raises(TypeError, match=r"my_sin: vjps is a single function.*calling it "
                                            r"raised TypeError: .* vjps=\(vjp,\)"):
            run()
    # One returning something else than one VJP per operand.
    twice = defop("twice", lambda x: x * 2.0, lambda arrays, options, inputs: [],
                  register=False)
    with pytest.raises(TypeError, match=r"twice: .* it returned list \[\], not 1 VJP, one per "
                                        r"operand"):
        twice(x)


def test_a_maker_of_each_call_s_vjps_still_serves_any_number_of_operands():
    def make(arrays, options, inputs):
        return [lambda g, out, i=i: g * np.prod([a for j, a in enumerate(arrays) if j != i], 0)
                for i in range(len(arrays))]

    product = defop("product", lambda *xs: np.prod(xs, axis=0), make, saves="nothing",
                    register=False)
    xs = [Tensor(np.arange(1.0, 4.0) + k, requires_grad=True) for k in range(3)]
    grads = mg.gradients(product(*xs).sum(), xs)
    values = [x.data for x in xs]
    for i, grad in enumerate(grads):
        np.testing.assert_array_equal(grad, np.prod([v for j, v in enumerate(values) if j != i], 0))


def test_a_vjp_whose_signature_does_not_fit_saves_is_named_with_what_saves_passes():
    # Refused by defop where no call can fill the parameter (np.square takes no options)
    with pytest.raises(TypeError, match=r"^defop: 'my_sq' VJP 0 cannot take the arguments the "
                                        r"tape passes it \(no argument for 'x'\): as its saves "
                                        r"has it, a VJP is called as vjp\(g, out\)"):
        defop("my_sq", np.square, (lambda g, out, x: 2 * g * x,), saves="output",
              register=False)
    # Named as it runs where a call's keyword options might have filled it
    sq = defop("my_sq", lambda x, power=2: x ** power, (lambda g, out, x: 2 * g * x,),
               saves="output", register=False)
    x = Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(TypeError, match=r"my_sq: VJP 0 cannot take the arguments the tape passes "
                                        r"it \(.*missing 1 required positional argument: 'x'\): "
                                        r"as its saves has it, a VJP is called as vjp\(g, out\): "
                                        r"g the output's gradient, out the output, no operand"):
        sq(x).sum().backward()
    # A TypeError inside a VJP that takes its arguments is the VJP's own, untouched.
    broken = defop("broken", np.square, (lambda g, out, x: g * "2",), saves="inputs",
                   register=False)
    with pytest.raises(TypeError) as raised:
        broken(Tensor(np.ones(2), requires_grad=True)).sum().backward()
    assert "broken" not in str(raised.value)


@pytest.mark.parametrize("vjps", [np.cos, "g", (lambda g, out: g, 2.0)])
def test_vjps_that_are_not_functions_are_refused_by_defop(vjps):
    message = ("cos_slip: vjps is a single function" if callable(vjps) else
               "defop: 'cos_slip' needs vjps as a tuple of one VJP per operand")
    with pytest.raises(TypeError, match=message):
        defop("cos_slip", np.sin, vjps, register=False)


_SCALED = defop("scaled", lambda a, b: a * np.tanh(b),
                (lambda g, out, a, b: g * np.tanh(b), None), saves="inputs", register=False)


@pytest.mark.parametrize("how", ["eager", "compiled", "scan body"])
def test_an_operand_that_requires_grad_where_the_op_has_no_vjp_is_refused(how):
    """`defop(..., (vjp_a, None))` called on a b that requires grad: b's gradient cannot be
    computed. Eager backward failed with "'NoneType' object is not callable" (no op named);
    compiled and in a scan's body, b's gradient was silently left out. A TypeError naming
    the op and the operand now, in every mode; under no_grad, or with b a constant, the op
    computes as before."""
    a = Tensor(np.ones(3), requires_grad=True)
    b = Tensor(np.full(3, 0.5), requires_grad=True)
    run = {"eager": lambda a, b: _SCALED(a, b),
           "compiled": mg.compile(lambda a, b: _SCALED(a, b)),
           "scan body": lambda a, b: mg.scan(lambda c, x: (c + _SCALED(a, b), None),
                                             np.zeros(3), length=2)[0]}[how]
    with pytest.raises(TypeError, match=r"scaled: operand 1 \(shape \(3,\)\) requires grad, "
                                        r"but the op has no VJP for it"):
        run(a, b).sum().backward()
    assert a.grad is None and b.grad is None
    with no_grad():
        assert np.array_equal(run(a, b).data, (1 if how != "scan body" else 2) * np.tanh(b.data))
    run(a, b.detach()).sum().backward()
    np.testing.assert_array_equal(a.grad, (1 if how != "scan body" else 2) * np.tanh(b.data))


def test_a_carry_that_comes_to_need_a_gradient_where_the_op_has_no_vjp_is_refused():
    """A scan body `y = scaled(x, c)` (no VJP for c) with c = 0 needing no gradient at the
    start and `c + W` after: the loop's second step refuses it; scan, whose body was traced
    before c came to need a gradient, dropped c's gradient silently (found by this stop's
    review). Refused when the carry is marked, as the loop refuses it."""
    W = Tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    xs = Tensor(np.ones((4, 3)), requires_grad=True)

    def body(c, x):
        return c + W, _SCALED(x, c)

    with pytest.raises(TypeError, match="scaled: operand 1 .* has no VJP for it"):
        mg.scan(body, np.zeros(3), xs)


def _vjp(g, out, x):
    return g


@pytest.mark.parametrize("name, forward, vjps, domain, error, message", [
    ("foo4", 3, (_vjp,), "unary", TypeError, r"^defop: 'foo4' needs a function as its forward, "
                                             r"got int$"),
    ("", np.sin, (_vjp,), "unary", ValueError, r"^defop: the name must be a nonempty string "
                                               r"without spaces .* got ''$"),
    ("a b", np.sin, (_vjp,), "unary", ValueError, r"without spaces.* got 'a b'$"),
    (None, np.sin, (_vjp,), "unary", TypeError, r"^defop: the name must be a string, got "
                                                r"NoneType$"),
    ("foo5", np.sin, (_vjp,), "unry", ValueError, r"^defop: 'foo5' has a Domain of unknown "
                                                  r"family 'unry'; the families are unary, "),
    ("foo6", np.sin, (_vjp,), "untested", ValueError, r"^defop: 'foo6' needs a Domain to join "
                                                      r"the table"),
    ("foo7", np.sin, (lambda g: g,), "unary", TypeError,
     r"^defop: 'foo7' VJP 0 cannot take the arguments the tape passes it \(too many "
     r"positional arguments\): as its saves has it, a VJP is called as vjp\(g, out, "
     r"\*operands\)"),
    ("foo8", np.add, (lambda g, out, a, b: g, lambda g, out, a, b, c: g), "binary", TypeError,
     r"^defop: 'foo8' VJP 1 cannot take the arguments .*\(no argument for 'c'\)"),
    ("foo9", lambda x, scale=1.0: x * scale, (lambda g, out, x, scale, /: g,), "unary",
     TypeError, r"^defop: 'foo9' VJP 0 .*\(no argument for 'scale'\)"),
])
def test_defop_refuses_a_definition_it_could_never_call_leaving_the_table_as_it_was(
        name, forward, vjps, domain, error, message):
    """Each was registered (a forward of 3, a family no test can draw, a name mg.<name>
    cannot spell, a VJP the tape's call cannot bind) and failed only when called or tested,
    or (defop(None, ...)) raised Python's "__name__ must be set to a string object"."""
    before = dict(mg.OPS)
    with pytest.raises(error, match=message):
        defop(name, forward, vjps, mg.Domain(domain))
    assert before == mg.OPS


def test_defop_takes_any_vjp_signature_that_binds_the_tape_s_call():
    """Defaults, *args, **options, keyword options the forward takes, into= for a VJP that
    writes into it, and a builtin without a signature to read: each is defined, and runs."""
    def into_vjp(g, out, x, *, into=None):
        return np.multiply(g, 1.0, out=into)

    into_vjp.into = True
    vjps = [(lambda g, out, x, extra=None: g, {}), (lambda g, out, *rest: g, {}),
            (lambda g, out, x, **options: g, {"scale": 1.0}),
            (lambda g, out, x, scale: g * scale, {"scale": 1.0}), (into_vjp, {})]
    x = Tensor(np.arange(3.0), requires_grad=True)
    for k, (vjp, options) in enumerate(vjps):
        op = defop(f"fine{k}", lambda x, scale=1.0: x * scale, (vjp,), register=False)
        np.testing.assert_array_equal(mg.gradients(op(x, **options).sum(), [x])[0], np.ones(3))
    defop("builtin_vjp", np.sin, (max,), register=False)  # (no signature: the tape decides)


def test_defop_takes_a_namespaced_name_and_any_family_outside_the_table():
    """A library's "mylib.relu6" (PyTorch spells it "mylib::relu6") and a Domain no test
    draws from are fine for an op that stays outside the table (register=False)."""
    x = Tensor(np.arange(3.0), requires_grad=True)
    for name in ("mylib.relu6", "mylib::relu6", "my-op"):
        op = defop(name, np.sin, (lambda g, out, x: g * np.cos(x),), mg.Domain("mine"),
                   register=False)
        np.testing.assert_array_equal(mg.gradients(op(x).sum(), [x])[0], np.cos(x.data))


def test_domain_families_are_the_ones_the_strategies_draw():
    from minigrad.primitive import FAMILIES
    from minigrad.testing import strategies
    assert set(FAMILIES) == set(strategies.FAMILIES)


@pytest.mark.parametrize("call, message", [
    (lambda a: mg.exp(), r"^exp takes 1 operand, got 0$"),
    (lambda a: mg.add(a, a, a), r"^add takes 2 operands, got 3$"),
    (lambda a: mg.compile(lambda: mg.add(a, a, a))(), r"^add takes 2 operands, got 3$"),
])
def test_an_op_called_with_the_wrong_number_of_operands_says_how_many_it_takes(call, message):
    """It said "called with 3 operands, but defop was given 2 VJPs: one per operand", an
    op author's message, to a user of mg.add."""
    with pytest.raises(TypeError, match=message):
        call(Tensor(np.ones(2), requires_grad=True))
