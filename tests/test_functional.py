"""`grad` and `value_and_grad`: argnums as an int or a tuple, zeros for unused arguments, the
value as a float, a clear error when f does not return a scalar, and no `.grad` touched."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import grad, nn, value_and_grad


def f(x, y):
    return (x * x * y).sum()


X = np.array([1.0, 2.0, 3.0])
Y = np.array([0.5, -1.0, 2.0])


def test_grad_of_the_first_argument_by_default():
    g = grad(f)(X, Y)
    assert isinstance(g, np.ndarray)
    np.testing.assert_array_equal(g, 2 * X * Y)


def test_argnums_int_and_negative():
    np.testing.assert_array_equal(grad(f, argnums=1)(X, Y), X * X)
    np.testing.assert_array_equal(grad(f, argnums=-1)(X, Y), X * X)


def test_argnums_tuple_gives_a_tuple():
    gx, gy = grad(f, argnums=(0, 1))(X, Y)
    np.testing.assert_array_equal(gx, 2 * X * Y)
    np.testing.assert_array_equal(gy, X * X)
    single = grad(f, argnums=(1,))(X, Y)
    assert isinstance(single, tuple) and len(single) == 1
    np.testing.assert_array_equal(single[0], X * X)


def test_unused_argument_gets_zeros():
    g = grad(lambda x, y: (x * 2.0).sum(), argnums=(0, 1))(X, np.ones((2, 2)))
    np.testing.assert_array_equal(g[0], np.full(3, 2.0))
    np.testing.assert_array_equal(g[1], np.zeros((2, 2)))
    # f that uses no argument at all: a constant, every gradient zero
    value, g = value_and_grad(lambda x: mg.sum(np.ones(2)))(X)
    assert value == 2.0
    np.testing.assert_array_equal(g, np.zeros(3))


def test_value_is_a_float():
    value, g = value_and_grad(f)(X, Y)
    assert type(value) is float
    assert value == pytest.approx(float(np.sum(X * X * Y)), rel=1e-15, abs=0)
    np.testing.assert_array_equal(g, 2 * X * Y)
    value32, _ = value_and_grad(f)(X.astype(np.float32), Y.astype(np.float32))
    assert type(value32) is float


def test_arguments_are_not_mutated_and_not_at_argnums_stay_arrays():
    seen = []

    def g(x, y):
        seen.append((type(x).__name__, type(y).__name__))
        return (x * y).sum()

    x, y = X.copy(), Y.copy()
    grad(g, argnums=0)(x, y)
    assert seen == [("Tensor", "ndarray")]
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)


@pytest.mark.parametrize("result, described", [
    (lambda x, y: x * y, r"Tensor of shape \(3,\)"),
    (lambda x, y: np.ones(3), r"ndarray of shape \(3,\)"),
    (lambda x, y: "loss", r"str$"),
    # a number computed outside the graph: named, with what to return instead
    (lambda x, y: 3.0, r"float 3\.0: a number computed outside the graph .* has no gradient"),
    (lambda x, y: np.float64(2.5), r"NumPy float64 2\.5: a number computed outside the graph"),
    (lambda x, y: (x * y).sum().item(), r"float -?\d.*: a number computed outside the graph"),
])
@pytest.mark.parametrize("function, argnums", [
    ("grad", 0), ("grad", 1), ("value_and_grad", 1), ("value_and_grad", (0, 1))])
def test_non_scalar_result_is_an_error(result, described, function, argnums):
    with pytest.raises(TypeError, match=f"^{function}: f must return a scalar Tensor, got "
                                        + described):
        getattr(mg, function)(result, argnums=argnums)(X, Y)


def test_argnums_out_of_range():
    with pytest.raises(ValueError, match=r"^grad: argnums 2 out of range for 2 arguments"):
        grad(f, argnums=2)(X, Y)
    with pytest.raises(ValueError, match=r"^value_and_grad: argnums -3 out of range"):
        mg.value_and_grad(f, argnums=-3)(X, Y)


def _reference(fn, args, positions):
    """The gradients as backward() leaves them in the arguments' .grad (what grad and
    value_and_grad returned before they stopped calling backward)."""
    inputs = [mg.Tensor(a, requires_grad=True) if i in positions else a
              for i, a in enumerate(args)]
    out = fn(*inputs)
    out.backward()
    return out.item(), tuple(inputs[i].grad for i in positions)


@settings(max_examples=40)
@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
       dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2**32 - 1),
       argnums=st.sampled_from([0, 1, (0, 1), (1, 0, 1)]))
def test_grad_leaves_every_dot_grad_alone_and_returns_what_backward_gives(shape, dtype, seed,
                                                                         argnums):
    """A gradient with respect to inputs (saliency) through a model does not fill the
    model's .grad (it did: a following backward() and step applied both gradients, as
    jax.grad has no side effect), nor change one set before; the value and gradients are
    bitwise those backward() leaves in the arguments' .grad."""
    rng = np.random.default_rng(seed)
    n = shape[-1] if shape else 1
    model = nn.Linear(n, 2, rng=rng, dtype=dtype)
    model.bias.grad = rng.normal(size=2).astype(dtype)
    before = model.bias.grad.copy()
    x, y = (rng.normal(size=shape).astype(dtype) for _ in range(2))

    def fn(x, y):  # x used twice: its gradient sums two paths
        return (mg.tanh(model(mg.reshape(x * y, (-1, n)))) ** 2).sum() + (x * x).sum()

    value, grads = value_and_grad(fn, argnums)(x, y)
    only = grad(fn, argnums)(x, y)
    assert model.weight.grad is None
    np.testing.assert_array_equal(model.bias.grad, before)
    positions = (argnums,) if isinstance(argnums, int) else argnums
    want_value, want = _reference(fn, (x, y), positions)  # fills the model's .grad
    assert value == want_value
    for got in (grads, only):
        got = got if isinstance(argnums, tuple) else (got,)
        for g, expected in zip(got, want, strict=True):
            assert g.dtype == expected.dtype == dtype
            np.testing.assert_array_equal(g, expected)


@pytest.mark.parametrize("function", ["grad", "value_and_grad"])
def test_a_function_and_argnums_of_the_wrong_type_are_refused_when_wrapped(function):
    """grad(3)(x) said "'int' object is not callable"; argnums='a' "'<=' not supported",
    argnums=1.0 "'float' object is not iterable", both only once called."""
    with pytest.raises(TypeError, match=rf"^{function}: expected a function, got int$"):
        getattr(mg, function)(3)
    for argnums in ("a", 1.0, True, (0, 1.0), None):
        with pytest.raises(TypeError, match=rf"^{function}: argnums must be an int or a "
                                            rf"sequence of ints \(argument positions\), got "
                                            rf"{re.escape(repr(argnums))}$"):
            getattr(mg, function)(f, argnums=argnums)


@given(st.lists(st.integers(-2, 1), min_size=1, max_size=3))
def test_argnums_as_a_sequence_a_set_or_an_array_name_the_same_arguments(argnums):
    expected = grad(f, argnums=argnums)(X, Y)
    for form in (np.array(argnums), tuple(argnums)):
        for got, want in zip(grad(f, argnums=form)(X, Y), expected, strict=True):
            np.testing.assert_array_equal(got, want)


def test_gradients_refuses_inputs_that_are_no_tensors_nor_a_sequence():
    """gradients(y, None) said "'NoneType' object is not iterable"."""
    x = mg.Tensor(X, requires_grad=True)
    for inputs, kind in ((None, "NoneType"), (3, "int"), ("x", "str")):
        with pytest.raises(TypeError, match=rf"^gradients: inputs must be a Tensor or a "
                                            rf"sequence of Tensors, got {kind}$"):
            mg.gradients((x * x).sum(), inputs)


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=4),
                  elements=st.floats(-3, 3)),
       st.integers(0, 1))
def test_has_aux_returns_aux_as_is_beside_the_gradient_of_the_loss(x, argnum):
    """As in JAX: f returns (loss, aux); only the loss is differentiated, and the gradient is
    the one without aux (checked against central differences too)."""
    w = np.linspace(-1.0, 1.0, x.size).reshape(x.shape)
    aux_seen = []

    def loss_and_aux(a, b):
        loss = (mg.tanh(a) * b).sum()
        aux = {"outputs": mg.tanh(a), "n": a.size}
        aux_seen.append(aux)
        return loss, aux

    def loss_only(a, b):
        return loss_and_aux(a, b)[0]

    (value, aux), g = value_and_grad(loss_and_aux, argnums=argnum, has_aux=True)(x, w)
    assert aux is aux_seen[-1]
    want_value, want_g = value_and_grad(loss_only, argnums=argnum)(x, w)
    assert value == want_value
    np.testing.assert_array_equal(g, want_g)
    g2, aux2 = grad(loss_and_aux, argnums=argnum, has_aux=True)(x, w)
    np.testing.assert_array_equal(g2, want_g)
    assert aux2 is aux_seen[-1]
    args = [x, w]
    eps = 1e-6
    numerical = np.zeros_like(args[argnum])
    for i in np.ndindex(args[argnum].shape):
        up, down = [a.copy() for a in args], [a.copy() for a in args]
        up[argnum][i] += eps
        down[argnum][i] -= eps
        numerical[i] = (loss_only(*up).item() - loss_only(*down).item()) / (2 * eps)
    np.testing.assert_allclose(g, numerical, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("returned", [mg.Tensor(1.0), (mg.Tensor(1.0),), [mg.Tensor(1.0), 2],
                                      (mg.Tensor([1.0, 2.0]), 0)])
def test_has_aux_refuses_anything_but_a_pair_with_a_scalar_loss(returned):
    for make in (value_and_grad, grad):
        with pytest.raises(TypeError, match=make.__name__ + ":"):
            make(lambda x: returned, has_aux=True)(X)


def test_has_aux_must_be_a_bool():
    for make in (value_and_grad, grad):
        with pytest.raises(TypeError, match="has_aux must be True or False"):
            make(f, has_aux=1)


def _cube(x):
    return (x * x * x).sum()


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=3),
                  elements=st.floats(-3, 3)),
       st.sampled_from(["grad", "value_and_grad"]), st.sampled_from(["grad", "value_and_grad"]))
def test_a_grad_inside_a_grad_on_its_tensors_is_an_error_not_a_first_derivative(
        x, outer, inner):
    """minigrad has no higher-order gradients: grad(h) for h(x) = sum(x * grad(f)(x)) gave
    f'(x), the inner gradient taken for a constant, where the answer is f' + x f''. An inner
    grad given (at a differentiated position or not) or reading (a closure) a tensor of the
    enclosing computation is refused; on a detached one it is a constant, as asked."""
    def inner_gradient(g, *args, argnums=0):
        result = getattr(mg, inner)(g, argnums)(*args)
        return result if inner == "grad" else result[1]

    nested = {
        "argument": lambda x: (x * inner_gradient(_cube, x)).sum(),
        "grad of grad": lambda x: inner_gradient(_cube, x),
        "not differentiated": lambda x: (x * inner_gradient(
            lambda c, y: (c * y).sum(), np.ones(x.shape), x)).sum(),
        "computed from it": lambda x: (x * inner_gradient(_cube, x * 2.0)).sum(),
    }
    for h in nested.values():  # (keyed by what each passes)
        with pytest.raises(TypeError, match=rf"^{inner}: argument \d is a tensor of an "
                                            r"enclosing grad's computation: minigrad computes "
                                            r"first-order gradients only .* t\.detach\(\)"):
            getattr(mg, outer)(h)(x)
    closure = lambda x: (x * inner_gradient(lambda y: (y * x).sum(), np.ones(x.shape))).sum()
    with pytest.raises(TypeError, match=rf"^{inner}: f reads a tensor of an enclosing grad's "
                                        r"computation \(a closure\): minigrad computes "
                                        r"first-order"):
        getattr(mg, outer)(closure)(x)
    # Detached: a constant, as asked (the error leaves no enclosing state behind)
    got = grad(lambda x: (x * inner_gradient(_cube, x.detach())).sum())(x)
    np.testing.assert_array_equal(got, grad(_cube)(x))
    # A tensor of no enclosing computation (a model's parameter) may be passed, its .grad
    # and flag left alone, as at top level
    w = mg.Tensor(np.full(x.shape, 1.5), requires_grad=True)
    got = grad(lambda x: (x * inner_gradient(lambda v: (v * w).sum(), w)).sum())(x)
    np.testing.assert_array_equal(got, w.data)
    assert w.grad is None and w.requires_grad
    assert grad(lambda v: (v * w).sum())(w) is not None and w.grad is None


def test_grad_of_grad_and_empty_argnums_say_what_is_wrong():
    """grad(grad(f))(x) said only that f returns an ndarray; grad(f, ()) blamed f for a number
    computed outside the graph."""
    with pytest.raises(TypeError, match=r"^grad: argument 0 is a tensor of an enclosing "
                                        r"grad's computation: minigrad computes first-order"):
        grad(grad(_cube))(2.0)
    with pytest.raises(TypeError, match=r"^grad: f must return a scalar Tensor, got ndarray of "
                                        r"shape \(\): a NumPy array holds no gradient; grad and "
                                        r"value_and_grad return NumPy arrays, as minigrad "
                                        r"computes first-order gradients only \(no grad of "
                                        r"grad\)"):
        grad(lambda x: grad(_cube)(x.detach()))(2.0)
    for function in ("grad", "value_and_grad"):
        for argnums in ((), [], np.array([], dtype=int)):
            with pytest.raises(ValueError, match=rf"^{function}: argnums .* names no argument "
                                                 r"to differentiate with respect to$"):
                getattr(mg, function)(_cube, argnums)


@pytest.mark.parametrize("inner", ["gradients", "backward"])
def test_a_gradient_taken_inside_a_grads_f_on_its_tensors_is_refused(inner):
    """mg.gradients or backward() inside f on what f computed from its input: the result
    would be a constant to the enclosing gradient (first order only), a TypeError, not the
    first derivative (h(x) = x . dy/dx with y = x.x gave 2x for 4x)."""
    def h(x):
        y = (x * x).sum()
        if inner == "gradients":
            (g,) = mg.gradients(y, [x], retain_graph=True)
        else:
            y.backward(retain_graph=True)
            g = x.grad
        return (x * mg.Tensor(g)).sum()

    with pytest.raises(TypeError, match=f"{inner}: inside the f of a grad"):
        grad(h)(np.array([3.0, 4.0]))
    unrelated = mg.Tensor(np.array([1.0, 2.0]), requires_grad=True)

    def k(x):  # (a gradient of something else inside f is a constant indeed: allowed)
        (g,) = mg.gradients((unrelated * unrelated).sum(), [unrelated])
        return (x * mg.Tensor(g)).sum()

    np.testing.assert_array_equal(grad(k)(np.array([3.0, 4.0])), [2.0, 4.0])


def test_a_compiled_value_and_backward_inside_a_grads_f_is_refused_warm_or_cold():
    """compile's value_and_backward adds to .grad by its own path once traced: inside a
    grad's f on that grad's tensor it must refuse as backward() does (it gave 3w^2 as a
    constant: [3, 12] where the gradient is [9, 36]), whether traced before or not."""
    step = mg.compile(lambda w: (w ** 3).sum())
    step.value_and_backward(mg.Tensor(np.array([1.0, 2.0]), requires_grad=True))  # warm

    def f(w):
        w.grad = None
        step.value_and_backward(w)
        return (w * mg.Tensor(w.grad)).sum()

    with pytest.raises(TypeError, match="backward: inside the f of a grad"):
        grad(f)(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="backward: inside the f of a grad"):
        grad(lambda w: f(w) + 0.0)(np.array([3.0, 4.0, 5.0]))  # (a new signature: cold)


# --- trees of arrays (as JAX's pytrees) ---------------------------------------------------

Pair = __import__("collections").namedtuple("Pair", "first second")


@st.composite
def trees(draw: st.DrawFn, depth: int = 2):
    """An array, or a dict, list, tuple or namedtuple of trees."""
    kind = draw(st.sampled_from(["array"] * 2 + (["dict", "list", "tuple", "pair"]
                                                  if depth else [])))
    if kind == "array":
        return draw(hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=2,
                                                            max_side=3),
                               elements=st.floats(-3, 3)))
    if kind == "pair":
        return Pair(draw(trees(depth - 1)), draw(trees(depth - 1)))
    parts = draw(st.lists(trees(depth - 1), max_size=3))
    if kind == "dict":
        return {f"k{j}": part for j, part in enumerate(parts)}
    return parts if kind == "list" else tuple(parts)


def _flat(tree):
    if isinstance(tree, dict):
        return [leaf for v in tree.values() for leaf in _flat(v)]
    if isinstance(tree, (list, tuple)):
        return [leaf for v in tree for leaf in _flat(v)]
    return [tree]


def _assert_same_tree(got, expected):
    if isinstance(expected, (dict, list, tuple)):
        assert type(got) is type(expected)
    if isinstance(expected, dict):
        assert list(got) == list(expected)
        for k in expected:
            _assert_same_tree(got[k], expected[k])
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            _assert_same_tree(a, b)
    else:
        assert isinstance(got, np.ndarray) and got.shape == np.shape(expected)
        np.testing.assert_allclose(got, expected, rtol=1e-15, atol=1e-300)  # (subnormals)


def _map(tree, fn):
    if isinstance(tree, dict):
        return {k: _map(v, fn) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        parts = [_map(v, fn) for v in tree]
        return tree._make(parts) if hasattr(tree, "_make") else type(tree)(parts)
    return fn(tree)


@given(tree=trees(), scale=st.floats(0.5, 2.0))
def test_a_tree_of_arrays_gets_the_tree_of_its_gradients(tree, scale):
    # f = scale * sum of every leaf's squares: the gradient is 2 scale leaf, in place.
    def f(t):
        total = mg.Tensor(0.0)
        for leaf in _flat(t):
            total = total + (leaf * leaf).sum()
        return total * scale

    value, gradient = value_and_grad(f)(tree)
    _assert_same_tree(gradient, _map(tree, lambda a: 2 * scale * a))
    assert value == pytest.approx(scale * sum(float((a * a).sum()) for a in _flat(tree)))


def test_a_tree_named_twice_gets_arrays_of_its_own_each_time():
    params = {"w": np.ones(2), "b": [np.zeros(1)]}
    first, second = grad(lambda p, x: (p["w"] * x).sum() + p["b"][0].sum(),
                         argnums=(0, 0))(params, np.arange(2.0))
    _assert_same_tree(first, second)
    assert not np.shares_memory(first["w"], second["w"])


def test_a_leaf_that_is_no_array_is_refused_naming_where_it_is():
    with pytest.raises(TypeError, match=r"^grad: argument 0\['layers'\]\[1\] is a str: a "
                                        r"gradient is taken of arrays, or dicts, lists and "
                                        r"tuples of them"):
        grad(lambda p: p["layers"][0].sum())({"layers": [np.ones(2), "relu"]})


def test_a_grad_inside_a_grad_on_a_trees_tensors_is_refused():
    def outer(p):
        inner = grad(lambda q: (q["w"] * p["w"]).sum())({"w": np.ones(2)})
        return (p["w"] * inner["w"]).sum()

    with pytest.raises(TypeError, match="first-order gradients only"):
        grad(outer)({"w": np.ones(2)})


@pytest.mark.parametrize("tree", [lambda w: {"v": w}, lambda w: [w * 1.0]])
def test_a_tensor_of_an_enclosing_grad_inside_a_tree_is_refused(tree):
    """Inside a tree, the enclosing grad's tensor became a new leaf: the inner gradient a
    constant to the outer one ([2, 2] where the derivative is [4, 4])."""
    def outer(w):
        inner = grad(lambda q: (_flat(q)[0] ** 2).sum())(tree(w))
        return (w * mg.Tensor(_flat(inner)[0])).sum()

    with pytest.raises(TypeError, match=r"^grad: argument 0\[.+\] is a tensor of an "
                                        r"enclosing grad's computation"):
        grad(outer)(np.ones(2))


def test_the_gradient_has_the_trees_shape_before_f_ran():
    """f may change the tree it is handed (pop an entry, add one): the gradient is of the
    tree the caller passed."""
    def f(p):
        w = p.pop("w")
        p["extra"] = 3
        return (w * w).sum()

    got = grad(f)({"w": np.ones(2), "b": np.zeros(1)})
    assert list(got) == ["w", "b"]
    np.testing.assert_array_equal(got["w"], [2.0, 2.0])
    np.testing.assert_array_equal(got["b"], [0.0])


def test_none_in_a_tree_is_an_empty_subtree_and_container_classes_are_kept():
    from collections import OrderedDict, defaultdict

    got = grad(lambda p: (p["w"] ** 2).sum())({"w": np.ones(2), "bias": None})
    assert got["bias"] is None
    for tree in (OrderedDict(w=np.ones(2)), defaultdict(list, w=np.ones(2))):
        got = grad(lambda p: (p["w"] ** 2).sum())(tree)
        assert type(got) is type(tree)
        np.testing.assert_array_equal(got["w"], [2.0, 2.0])


@given(x=hnp.arrays(np.float64, 3, elements=st.floats(-2, 2)), scale=st.floats(0.5, 2))
def test_keyword_arguments_reach_f_as_they_are_not_differentiated(x, scale):
    def f(v, *, factor, squared=False):
        return ((v * v) if squared else v).sum() * factor

    np.testing.assert_allclose(grad(f)(x, factor=scale, squared=True), 2 * scale * x,
                               rtol=1e-15, atol=1e-300)
    value, gradient = value_and_grad(f)(x, factor=scale)
    assert value == pytest.approx(float(x.sum()) * scale)
    np.testing.assert_array_equal(gradient, np.full(3, scale))


def test_a_function_reading_the_tensors_it_is_handed_through_a_model_is_refused():
    """grad(f)(dict(model.named_parameters()), X) with f calling the model: grad
    differentiates the copies f is handed, which f never read, so every gradient was 0."""
    layer = nn.Linear(3, 1, rng=np.random.default_rng(0))
    X = np.random.default_rng(1).normal(size=(4, 3))
    with pytest.raises(TypeError, match=r"^grad: f reads a tensor that requires grad which "
                                        r"it is handed at argnums, and not the copy"):
        grad(lambda p, X: mg.mean(layer(X) ** 2))(dict(layer.named_parameters()), X)
    got = grad(lambda p, X: mg.mean((X @ p["weight"] + p["bias"]) ** 2))(
        dict(layer.named_parameters()), X)
    loss = mg.mean(layer(X) ** 2)
    loss.backward()
    np.testing.assert_allclose(got["weight"], layer.weight.grad, rtol=1e-15)


def test_grad_inside_a_traced_function_and_keyword_only_calls_say_what_to_do():
    with pytest.raises(mg.TraceError, match=r"^value_and_grad inside a traced function "
                                            r"\(minigrad.compile, minigrad.scan\): .*value_and_"
                                            r"backward"):
        mg.compile(value_and_grad(lambda w, x: (w * x).sum()))(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match=r"out of range for 0 arguments \(keyword arguments "
                                         r"are passed to f as they are, not differentiated"):
        grad(lambda params, X: (params * X).sum())(params=np.ones(2), X=np.ones(2))
