"""The generic property tests: every op in the table, drawn from its own domain, against
numerical differentiation. An op missing from the table fails `test_every_op_is_in_the_table`."""

import math
import pickle
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad
import minigrad as mg
from minigrad import OPS, Tensor, nn, ops
from minigrad.testing import gradcheck
from minigrad.testing.strategies import FAMILIES, op_cases

# Central differences with eps = 1e-6 in float64 are good to ~1e-9 on these domains; the
# tolerances leave three orders of magnitude of room and still catch any wrong rule.
ATOL, RTOL = 1e-6, 1e-5

OP_NAMES = sorted(OPS)


def test_every_op_is_in_the_table_and_exported():
    public = {name for name, f in vars(ops).items() if callable(f) and not name.startswith("_")
              and getattr(f, "__module__", None) == "minigrad.ops" and not isinstance(f, type)}
    # Besides the table: compositions of its ops (split), exported all the same.
    assert public == set(OPS) | set(ops.COMPOSITIONS), f"not in the op table: {public - set(OPS)}"
    for name in ops.COMPOSITIONS:
        assert getattr(minigrad, name) is getattr(ops, name) and name in minigrad.__all__
    for name, op in OPS.items():
        assert getattr(minigrad, name) is op.function is getattr(ops, name)
        assert name in minigrad.__all__
        assert op.domain.family in FAMILIES, op


# Each Tensor operator and method, and the op of the table it must record.
METHODS = [
    (lambda x, y: x + y, "add"), (lambda x, y: y + x, "add"), (lambda x, y: x - y, "sub"),
    (lambda x, y: y - x, "sub"), (lambda x, y: x * y, "mul"), (lambda x, y: y * x, "mul"),
    (lambda x, y: x / y, "div"), (lambda x, y: y / x, "div"), (lambda x, y: x ** y, "pow"),
    (lambda x, y: y ** x, "pow"), (lambda x, y: x @ y, "matmul"), (lambda x, y: y @ x, "matmul"),
    (lambda x, y: -x, "neg"), (lambda x, y: abs(x), "abs"), (lambda x, y: x.abs(), "abs"),
    (lambda x, y: x[0], "getitem"), (lambda x, y: x.exp(), "exp"), (lambda x, y: x.log(), "log"),
    (lambda x, y: x.relu(), "relu"), (lambda x, y: x.sigmoid(), "sigmoid"),
    (lambda x, y: x.sqrt(), "sqrt"), (lambda x, y: x.tanh(), "tanh"),
    (lambda x, y: x.sum(0), "sum"), (lambda x, y: x.mean(axis=0), "mean"),
    (lambda x, y: x.max(0, True), "max"), (lambda x, y: x.reshape(4), "reshape"),
    (lambda x, y: x.transpose(1, 0), "transpose"), (lambda x, y: x.T, "transpose"),
]


@pytest.mark.parametrize("method, name", METHODS)
def test_tensor_methods_record_the_ops_of_the_table(method, name):
    x = Tensor(np.full((2, 2), 1.5), requires_grad=True)
    y = np.full((2, 2), 0.5)
    assert method(x, y)._node.name == name


@pytest.mark.parametrize("name", OP_NAMES)
@given(data=st.data())
def test_gradient_matches_numerical(name, data):
    case = data.draw(op_cases(name), label="case")
    originals = [x.copy() for x in case.operands]
    gradcheck(case.call, *case.operands, atol=ATOL, rtol=RTOL,
              seed=data.draw(st.integers(0, 2**32 - 1), label="seed"))
    for x, original in zip(case.operands, originals):
        np.testing.assert_array_equal(x, original)  # gradcheck works on copies


@pytest.mark.parametrize("name", OP_NAMES)
@given(data=st.data())
def test_float32_in_float32_out(name, data):
    case = data.draw(op_cases(name, dtype=np.float32), label="case")
    tensors = [Tensor(x, requires_grad=True) for x in case.operands]
    out = case.call(*tensors)
    assert out.dtype == np.float32
    cotangent = np.random.default_rng(0).standard_normal(out.shape).astype(np.float32)
    out.backward(cotangent)
    reference = [Tensor(x.astype(np.float64), requires_grad=True) for x in case.operands]
    case.call(*reference).backward(cotangent.astype(np.float64))
    for t, r in zip(tensors, reference):
        assert t.grad.dtype == np.float32
        np.testing.assert_allclose(t.grad, r.grad, rtol=1e-4, atol=1e-4)


@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=40),
                  elements=st.floats(-1e6, 1e6)))
def test_a_float64_losss_mean_is_numpys_to_the_bit(x):
    # The losses take their float64 mean without np.mean's Python layers (ops._mean): the
    # seeded training runs and minigrad.compile rely on it giving np.mean's very bits.
    mean = ops._mean(x)
    assert type(mean) is np.float64 and mean.tobytes() == np.mean(x).tobytes()
    y = Tensor(x, requires_grad=True)
    assert minigrad.mse_loss(y, np.zeros_like(x)).item() == np.mean(np.square(x))


@settings(max_examples=10)
@given(lead=st.sampled_from([(), (3,), (2, 3)]), rows=st.integers(1, 5),
       width=st.integers(8, 40), seed=st.integers(0, 2**32 - 1))
def test_a_product_with_a_one_column_matrix_has_the_numerical_gradient(lead, rows, width,
                                                                      seed):
    """x @ w with w of shape (width, 1), an output layer's: its gradient for x is an outer
    product, taken by a multiply from 8 columns up (the op strategies draw sides up to 4)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=lead + (rows, width))
    w = rng.normal(size=(width, 1))
    gradcheck(lambda a, b: a @ b, x, w, atol=ATOL, rtol=RTOL, seed=seed)
    bias = rng.normal(size=1)
    gradcheck(lambda a, b: minigrad.addmm(bias, a, b), x, w, atol=ATOL, rtol=RTOL, seed=seed)


def test_the_logit_losss_backward_pairs_with_its_own_forward():
    """binary_cross_entropy_with_logits's VJP reuses its forward's exp(-|z|), matched by the
    call's output: losses computed in any order, backpropagated in any order, or in other
    threads, each give the gradient of a loss computed alone, to the bit."""
    import threading

    rng = np.random.default_rng(11)
    zs = [rng.normal(size=(6, 5)) * 4 for _ in range(3)]
    t = rng.uniform(size=(6, 5))

    def alone(z):
        x = Tensor(z, requires_grad=True)
        minigrad.binary_cross_entropy_with_logits(x, t).backward()
        return x.grad

    expected = [alone(z) for z in zs]
    tensors = [Tensor(z, requires_grad=True) for z in zs]
    losses = [minigrad.binary_cross_entropy_with_logits(x, t) for x in tensors]
    for k in (1, 0, 2):  # the last forward's entry is not the first loss's
        losses[k].backward()
    for x, g in zip(tensors, expected):
        np.testing.assert_array_equal(x.grad, g)

    wrong = []

    def run(k):
        for _ in range(200):
            if not np.array_equal(alone(zs[k]), expected[k]):
                wrong.append(k)

    threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1, 2, 0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong


@pytest.mark.parametrize("compiled", [False, True])
def test_mse_loss_takes_its_gradient_at_the_targets_of_its_forward(compiled):
    """mse_loss keeps y - t from its forward (not y and t): a target array the caller
    changes in place between forward and backward does not change the gradient."""
    y = Tensor(np.array([1.0, 2.0, 4.0]), requires_grad=True)
    loss_of = minigrad.compile(minigrad.mse_loss) if compiled else minigrad.mse_loss
    for _ in range(4):  # a compiled one traces twice, then replays
        t = np.array([0.5, 2.5, 1.0])
        y.grad = None
        loss = loss_of(y, t)
        t[:] = 100.0
        loss.backward()
        np.testing.assert_array_equal(y.grad, 2.0 * (y.data - [0.5, 2.5, 1.0]) / 3)


INTO_VJPS = [name for name, op in OPS.items() if isinstance(op.vjps, tuple)
             and any(minigrad.primitive.writes_into(vjp) for vjp in op.vjps)]


@pytest.mark.parametrize("name", INTO_VJPS)
@given(data=st.data(), shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
       dtype=st.sampled_from([np.float64, np.float32]), broadcast=st.booleans())
def test_a_vjp_given_into_returns_it_holding_its_own_numbers(name, data, shape, dtype,
                                                             broadcast):
    """A VJP that takes `into` (a loop writes its result into its stacked cotangents)
    returns that very array, holding the bits it returns without it, also where g comes
    in a broadcastable shape (its other path)."""
    values = hnp.arrays(dtype, shape, elements=st.floats(-3, 3, width=32))
    out = data.draw(values, label="out")
    g = data.draw(hnp.arrays(dtype, shape[-1:] if broadcast else shape,
                             elements=st.floats(-3, 3, width=32)), label="g")
    vjp = next(v for v in OPS[name].vjps if minigrad.primitive.writes_into(v))
    want = np.broadcast_to(np.asarray(vjp(g, out)), shape)
    into = np.full(shape, np.nan, dtype)
    got = vjp(g, out, into=into)
    assert got is into
    np.testing.assert_array_equal(got, want, strict=False)


@pytest.mark.parametrize("name, formula", [
    ("tanh", lambda g, out: g * (1.0 - out * out)),
    ("sigmoid", lambda g, out: g * out * (1.0 - out)),
])
@given(data=st.data(), shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
       dtype=st.sampled_from([np.float64, np.float32, np.float16]), into=st.booleans())
def test_an_activation_vjp_gives_the_bits_of_its_formula_in_the_operands_dtype(
        name, formula, data, shape, dtype, into):
    """tanh's and sigmoid's VJPs subtract from a cached 0-d 1 of the operand's dtype (NumPy
    converts a Python float on every call): the dtype and the bits of the formula written
    with Python floats (NEP 50's loop for a float), with or without `into`."""
    values = hnp.arrays(dtype, shape, elements=st.floats(-1, 1, width=16))
    out, g = data.draw(values, label="out"), data.draw(values, label="g")
    want = np.asarray(formula(g, out))
    vjp = OPS[name].vjps[0]
    got = np.asarray(vjp(g, out, into=np.empty(shape, dtype)) if into else vjp(g, out))
    assert got.dtype == want.dtype == dtype
    assert got.tobytes() == want.tobytes()


def test_pow_at_a_zero_base_has_the_gradient_of_its_polynomial():
    """x^0 + x^1 + x^2 + x^3 at x = 0 has derivative 1 (x^0's b a^(b-1) is 0 * inf there,
    and the gradient was NaN); 0^p is constant in p > 0 and at p = 0, where p's gradient
    is 0 (0 * log 0 was NaN). The rest of pow's gradient is unchanged: central differences
    where defined, PyTorch's convention at the kinks."""
    x = Tensor(np.array([0.0, 0.5, -0.0]), requires_grad=True)
    exponents = np.array([0.0, 1.0, 2.0, 3.0])
    with np.errstate(all="raise"):  # no 0 * inf computed and masked afterwards
        (x[:, None] ** exponents).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0 + 2 * 0.5 + 3 * 0.25, 1.0])
    p = Tensor(np.array([2.0, 0.0, 0.5]), requires_grad=True)
    with np.errstate(all="raise"):
        (Tensor(np.zeros(3)) ** p).sum().backward()
    np.testing.assert_array_equal(p.grad, [0.0, 0.0, 0.0])
    base = Tensor(np.array([0.7, 1.3]), requires_grad=True)
    power = Tensor(np.array([0.0, 2.5]), requires_grad=True)
    assert gradcheck(lambda a, b: (a ** b).sum(), base, power)


def test_relu_and_max_pass_an_infinite_gradient_on_only_where_it_belongs():
    """Their VJPs multiplied the cotangent by a 0/1 mask: sqrt's infinite gradient at 0
    times 0 was NaN where the gradient is 0 (PyTorch selects: 0)."""
    x = mg.Tensor(np.array([-1.0, 4.0]), requires_grad=True)
    with np.errstate(divide="ignore"):  # (sqrt's gradient at 0)
        mg.sqrt(mg.relu(x)).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.25])
    m = mg.Tensor(np.array([[-1.0, 0.0, -2.0], [1.0, 4.0, 2.0]]), requires_grad=True)
    with np.errstate(divide="ignore"):
        mg.sqrt(m.max(axis=1)).sum().backward()
    np.testing.assert_array_equal(m.grad, [[0.0, np.inf, 0.0], [0.0, 0.25, 0.0]])


def test_a_scalar_weights_float32_gradient_is_summed_pairwise():
    """The 0-d factor's shortcut, one dot product, adds in float32 in sequence in BLAS:
    1e-5 relative off at 1e6 elements, where the pairwise sum is within 1e-7."""
    rng = np.random.default_rng(0)
    X = rng.uniform(0.5, 1.5, size=1_000_000).astype(np.float32)
    w = mg.Tensor(np.array(0.5, np.float32), requires_grad=True)
    (w * X).sum().backward()
    exact = X.astype(np.float64).sum()
    assert w.grad.dtype == np.float32
    assert abs(float(w.grad) - exact) / exact < 1e-6


def test_max_sends_the_gradient_to_a_nan_maximum():
    """As PyTorch: nothing equals a NaN maximum, so the select gave the whole row 0."""
    x = mg.Tensor(np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]]), requires_grad=True)
    mg.max(x, axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("loss", ["mean", "binary_cross_entropy", "bce_with_logits",
                                  "cross_entropy", "mse_loss", "bias"])
def test_float16_gradients_over_many_elements_are_the_float64_ones_rounded(loss):
    """float16 means over more than 65,504 elements had gradients of exactly 0 (NumPy turned
    the count into float16: inf), a mean-squared error's scale was a subnormal of few bits
    (10% off at 1e7), and a bias's gradient summed 20,000 rows in float16 came out half the
    right one: the scales and broadcast sums are taken in float32, as PyTorch does."""
    rng = np.random.default_rng(0)
    n = 100_000
    x = rng.uniform(0.1, 0.9, size=(n // 10, 10))
    t = (rng.uniform(size=x.shape) > 0.5).astype(float)
    labels = rng.integers(0, 10, size=n // 10)

    def value(v):
        if loss == "mean":
            return v.mean()
        if loss == "binary_cross_entropy":
            return minigrad.binary_cross_entropy(v, t)
        if loss == "bce_with_logits":
            return minigrad.binary_cross_entropy_with_logits(v, t)
        if loss == "cross_entropy":
            return minigrad.cross_entropy(v, labels)
        if loss == "mse_loss":
            return minigrad.mse_loss(v, t)
        return (v * np.ones((20_000, 1)).astype(v.dtype) if v.ndim == 1 else v).sum()

    grads = {}
    for dtype in (np.float16, np.float64):
        v = Tensor((x[0] if loss == "bias" else x).astype(dtype), requires_grad=True)
        value(v).backward()
        grads[dtype] = v.grad
    expected = grads[np.float64].astype(np.float16).astype(np.float64)
    assert grads[np.float16].dtype == np.float16
    # (one subnormal step apart at most: a gradient of 1/n is near float16's subnormals)
    np.testing.assert_allclose(grads[np.float16], expected, rtol=3e-3,
                               atol=np.finfo(np.float16).smallest_subnormal)


@pytest.mark.parametrize("rows", [4096, 10_000])  # (float16 numbers: 2049 is not)
def test_an_unpickled_float16_layers_bias_gradient_sums_in_float32(rows):
    """An unpickled array's dtype is a float16 of its own (equal to NumPy's, not it): its
    gradients took NumPy's float16 row-by-row sum, which stops growing at 2048."""
    layer = pickle.loads(pickle.dumps(nn.Linear(3, 2, rng=np.random.default_rng(0),
                                                dtype=np.float16)))
    assert layer.bias.dtype == np.float16 and layer.bias.dtype is not np.dtype(np.float16)
    mg.tanh(layer(np.zeros((rows, 3), np.float16))).sum().backward()
    np.testing.assert_array_equal(layer.bias.grad, np.full(2, np.float16(rows)))


@pytest.mark.parametrize("op", ["sum", "var", "einsum", "einsum VJP", "einsum broadcast VJP"])
@settings(max_examples=10, deadline=None)
@given(rows=st.integers(2049, 6000), columns=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_float16_sums_across_rows_are_the_float64_ones_rounded(op, rows, columns, seed):
    """float16 sums along an axis of more than 2048 rows: NumPy adds float16 rows one by one
    in float16, where past 2048 like terms a term rounds away, so sum(x, 0), var(x, 0) and
    einsum('ij->j') of ones gave 2048 for 4096 (0.5 for a variance of 1) and einsum's
    gradient summed so too, where mean, matmul and tensordot (the same sums) were right;
    PyTorch sums half precision in float32. Summed in float32 now and rounded once: the
    float64 result rounded to float16, within a rounding of float16."""
    rng = np.random.default_rng(seed)
    # (values of float16, so that float64 computes on the same numbers)
    x = rng.uniform(0.5, 1.5, size=(rows, columns)).astype(np.float16).astype(np.float64)
    v = rng.uniform(0.5, 1.5, size=columns).astype(np.float16).astype(np.float64)

    def value(a, w, dtype):
        a, w = a.astype(dtype), Tensor(w.astype(dtype), requires_grad=True)
        if op == "sum":
            return minigrad.sum(a, 0).data
        if op == "var":
            return minigrad.var(a, 0).data
        if op == "einsum":
            return minigrad.einsum("ij->j", a).data
        if op == "einsum VJP":  # w's gradient sums its rows' g * a
            minigrad.einsum("ij,j->i", a, w).backward(np.ones(rows, dtype))
        else:  # w (1, columns) broadcast against a's rows: summed back by _fit_broadcast
            w = Tensor(w.data[None], requires_grad=True)
            minigrad.einsum("ij,ij->ij", a, w).backward(np.ones((rows, columns), dtype))
        return w.grad

    half, exact = value(x, v, np.float16), value(x, v, np.float64)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float64).ravel(), exact.ravel(), rtol=1e-3)


@settings(max_examples=10, deadline=None)
@given(repeats=st.integers(2049, 6000), seed=st.integers(0, 2**31 - 1))
def test_float16_gradients_of_a_repeated_index_sum_in_float32(repeats, seed):
    """x[index] with an index repeating positions: its VJP's np.add.at added each repeat's
    gradient in float16 (x[[0] * 5000].sum() gave x 2048, not 5000), and a second such
    slice's into the first's in float16 again. Summed in float32 now and rounded once
    (as `sum`): the float64 gradient rounded to float16, within a rounding of float16."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, 3, size=repeats)
    g = rng.uniform(0.5, 1.5, size=repeats).astype(np.float16).astype(np.float64)

    def grad(dtype):
        x = Tensor(np.zeros(3, dtype), requires_grad=True)
        # two slices: the first's gradient densified, the second's added into it
        (x[index] * g.astype(dtype)).sum().backward()
        x[index[::-1]].backward(g[::-1].astype(dtype))
        return x.grad

    half, exact = grad(np.float16), grad(np.float64)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float64), exact, rtol=1e-3)


@pytest.mark.parametrize("number", [2.0, 2, -0.5])
def test_an_einsum_of_float16_and_a_python_number_is_numpys(number):
    """einsum of a float16 tensor and a Python number is np.einsum's (the number a float64
    operand, the result float64) and its gradient float16; the float32 sum of float16
    operands took the number for float16 and raised NumPy's cast error (found by this
    stop's review)."""
    x = np.random.default_rng(0).normal(size=5).astype(np.float16)
    t = Tensor(x, requires_grad=True)
    y = mg.einsum("i,->i", t, number)
    want = np.einsum("i,->i", x, number)
    assert y.dtype == want.dtype and np.array_equal(y.data, want)
    y.sum().backward()
    assert t.grad.dtype == np.float16
    np.testing.assert_array_equal(t.grad, np.full(5, number, np.float16))


@pytest.mark.parametrize("other", [np.float16(1.0), True, np.ones((), np.float16)],
                         ids=["float16 scalar", "bool", "0-d float16 array"])
def test_an_einsum_of_float16_and_a_float16_scalar_sums_in_float32(other):
    """A NumPy float16 scalar or a bool leaves einsum's result float16: summed in float32,
    as of two float16 arrays (a check of the operands' types for arrays sent them to NumPy's
    float16 sum: 5000 ones gave 2048; found by this stop's second review)."""
    x = mg.Tensor(np.ones((5000, 3), np.float16))
    for run in (lambda x: mg.einsum("ij,->j", x, other), mg.compile(
            lambda x: mg.einsum("ij,->j", x, other))):
        y = run(x)
        assert y.dtype == np.float16
        np.testing.assert_array_equal(y.data, np.full(3, 5000, np.float16))


@pytest.mark.parametrize("op", ["sum", "var", "einsum"])
def test_a_byte_swapped_float16_sums_in_float32_too(op):
    """A big-endian float16 array ('>f2', as a file may hold it) is summed in float32 as a
    native one: the float16 test was `dtype is float16`, which a byte-swapped dtype is not
    (5000 ones gave 2048; found by this stop's third review)."""
    x = np.tile(np.array([[0.0], [2.0]], ">f2"), (2500, 2))
    got = {"sum": lambda: mg.sum(x, 0), "var": lambda: mg.var(x, 0),
           "einsum": lambda: mg.einsum("ij->j", x)}[op]().data
    want = {"sum": 5000.0, "var": 1.0, "einsum": 5000.0}[op]
    np.testing.assert_array_equal(got.astype(np.float64), np.full(2, want))


def test_a_float32_loss_with_float64_targets_gives_the_gradients_it_gave():
    """The float16 scales' rounding (a version of this stop) was applied to float32 too: a
    float64 target's gradient was rounded to the float32 prediction's dtype, and a float32
    model's gradient bits changed. Only a float16 cotangent's path is rounded now."""
    rng = np.random.default_rng(0)
    z32 = rng.normal(size=(4, 3)).astype(np.float32)
    t64 = rng.uniform(0.1, 0.9, size=(4, 3))
    z = Tensor(z32, requires_grad=True)
    t = Tensor(t64, requires_grad=True)
    minigrad.binary_cross_entropy_with_logits(z, t).backward()
    assert t.grad.dtype == np.float64
    np.testing.assert_array_equal(t.grad, z32 * -(np.ones((), np.float64) / 12))


_LOW = st.sampled_from([np.float16, np.float32, np.uint8, np.int8, np.int16])


@given(dtype=_LOW, data=st.data())
def test_pow_gradients_are_computed_in_the_outputs_dtype(dtype, data):
    """pow's VJPs computed `b - 1` and `log(a)` in the operand's own dtype where NumPy's
    forward promoted it: a float64 leaf got float16 rounding (3e-4 off for 2 ** t with a
    float16 2), and an int8 exponent of -128 wrapped to 127 (-2.3e7 for -5.9e-4)."""
    info = np.finfo(dtype) if np.dtype(dtype).kind == "f" else np.iinfo(dtype)
    n = data.draw(st.integers(1, 4))
    low = data.draw(hnp.arrays(dtype, n, elements=st.integers(
        1 if np.dtype(dtype).kind == "u" else max(int(info.min), -128), min(int(info.max), 200))))
    x = data.draw(hnp.arrays(np.float64, n, elements=st.floats(0.5, 2.0)))
    exact = low.astype(np.float64)
    positive = np.where(exact > 0, exact, 1.0).astype(dtype)  # (a base: log needs a > 0)
    t = mg.Tensor(x, requires_grad=True)
    (positive ** t).sum().backward()
    expected = np.float64(positive) ** x * np.log(np.float64(positive))
    np.testing.assert_allclose(t.grad, expected, rtol=1e-13)
    t = mg.Tensor(x, requires_grad=True)
    (t ** low).sum().backward()
    np.testing.assert_allclose(t.grad, exact * x ** (exact - 1), rtol=1e-13)


def test_python_number_operands_work_through_backward():
    """Valid calls with Python-number operands failed with errors naming no op:
    `stack([1.0, t], axis=-1)` and `tensordot(2.0, t, 0)`'s backward read `.ndim` of a float,
    `(10**30) ** t`'s backward took np.log of a Python int, and `clip(t, 0, 10**400)`
    raised a bare OverflowError."""
    s = Tensor(np.array(0.5), requires_grad=True)
    (mg.stack([1.0, s], axis=-1) * np.array([3.0, 4.0])).sum().backward()
    assert s.grad == 4.0
    t = Tensor(np.array([0.5, -2.0]), requires_grad=True)
    mg.tensordot(2.0, t, 0).sum().backward()
    np.testing.assert_array_equal(t.grad, [2.0, 2.0])
    t.grad = None
    ((10**30) ** t).sum().backward()
    np.testing.assert_allclose(t.grad, 1e30 ** t.data * np.log(1e30), rtol=1e-14)
    t.grad = None
    mg.clip(t, -(10**400), 10**400).sum().backward()
    np.testing.assert_array_equal(t.grad, [1.0, 1.0])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_an_int_base_of_pow_gives_a_float_bases_gradient(dtype):
    """`2 ** x` took log(2) rounded to x's dtype (float16: 1.7 ulp off at worst, where
    `2.0 ** x` is 1.1): an int base is taken as the float it equals."""
    x = np.linspace(-2.0, 2.0, 41).astype(dtype)
    grads = []
    for base in (2, 2.0):
        t = Tensor(x, requires_grad=True)
        (base ** t).sum().backward()
        grads.append(t.grad)
    np.testing.assert_array_equal(grads[0], grads[1])


def _assert_logit_loss_is_exact_to_a_few_roundings(z, t):
    """The loss of logits `z` against targets `t` within (n + 8) roundings of the exact one,
    taken in long double (64 bits of mantissa: its own error is 2^-11 of float64's)."""
    loss = mg.binary_cross_entropy_with_logits(Tensor(z), t)
    wide, target = z.astype(np.longdouble), t.astype(np.longdouble)
    exact = np.mean(np.where(wide > 0, wide * (1 - target), -wide * target)
                    + np.log1p(np.exp(-np.abs(wide))))
    assert loss.dtype == z.dtype
    assert abs(np.longdouble(loss.item()) - exact) <= (z.size + 8) * np.finfo(z.dtype).eps * exact


_WIDE_LONG_DOUBLE = pytest.mark.skipif(
    np.finfo(np.longdouble).eps > np.finfo(np.float64).eps / 1000,
    reason="the oracle needs a long double wider than float64")


@_WIDE_LONG_DOUBLE
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(n=st.integers(1, 8), scale=st.integers(-10, 6), gap=st.integers(1, 40),
       positive=st.floats(0, 1), near_one=st.floats(0, 1), seed=st.integers(0, 2**32 - 1))
def test_the_logit_loss_is_exact_to_a_few_roundings(dtype, n, scale, gap, positive, near_one,
                                                    seed):
    """binary_cross_entropy_with_logits took max(z, 0) - z t, which cancels for z > 0 and a
    target near 1 (float32 z = 10, t = 1 - 2^-24: 0.78% off; float64 likewise). Now
    z (1 - t) where z > 0, -z t elsewhere, plus log1p(exp(-|z|)): terms >= 0, so the mean
    is within a few roundings of the exact one. Logits of magnitudes up to 2^scale, a
    share `positive` of them positive, and targets of which a share `near_one` lie within
    2^-gap of 1, of full mantissas (drawn from `seed`: Hypothesis's floats favour short
    ones, whose products are exact)."""
    rng = np.random.default_rng(seed)
    sign = np.where(rng.uniform(size=n) < positive, 1.0, -1.0)
    z = (sign * rng.uniform(0.0, 1.0, n) * 2.0**scale).astype(dtype)
    t = np.where(rng.uniform(size=n) < near_one, 1.0 - rng.uniform(0.5, 1.0, n) * 2.0**-gap,
                 rng.uniform(size=n))
    _assert_logit_loss_is_exact_to_a_few_roundings(z, np.clip(t.astype(dtype), 0, 1))


@_WIDE_LONG_DOUBLE
def test_the_logit_loss_of_a_confident_near_right_answer_is_exact():
    """The finding's case: float32 z = 10, t = 1 - 2^-24 gave 4.635e-5 for 4.599e-5."""
    _assert_logit_loss_is_exact_to_a_few_roundings(np.array([10.0], np.float32),
                                                   np.array([1.0 - 2.0**-24], np.float32))


def _normal_floats(dtype: type) -> st.SearchStrategy[float]:
    info = np.finfo(dtype)
    magnitudes = st.floats(float(info.tiny), float(info.max), width=info.bits)
    return st.tuples(magnitudes, st.sampled_from([1.0, -1.0])).map(lambda m: m[0] * m[1])


@settings(max_examples=100)
@example(data=None, dtype=np.float64, abg=(1e-3, 1e-2, 1e307))  # g / b would overflow
@example(data=None, dtype=np.float64, abg=(1.0, 1e-160, 1e-20))  # g (out / b) would
@example(data=None, dtype=np.float16, abg=(6e4, 10.0, 1e-4))  # g / b and g out in float16:
@example(data=None, dtype=np.float16, abg=(0.001, 0.01, 1000.0))  # under-, overflows
@given(data=st.data(), dtype=st.sampled_from([np.float64, np.float32, np.float16]),
       abg=st.none())
def test_a_quotients_divisor_gradient_is_within_its_roundings(data, dtype, abg):
    """div's VJP for b, -g a / b^2 = -g out / b: in float64 within two roundings of the exact
    (fractions) one, besides out's own (1.5 ulp: rtol 4 eps), where g out and the result are
    normal floats; in float32 and float16 computed in float64 and rounded once, so within
    out's rounding and that one (rtol 3 eps of the dtype) wherever the result is a normal
    number of the dtype, whatever g out or g / b are: one of them overflowed (g = 1000
    over b = 0.01 in float16) or underflowed (g = 1e-4 under a = 6e4) in the dtype."""
    if abg is None:
        abg = tuple(data.draw(_normal_floats(dtype)) for _ in range(3))
    a, b, g = (float(dtype(v)) for v in abg)
    with np.errstate(over="ignore"):  # (a quotient beyond the dtype: no out to test)
        quotient = float(dtype(a) / dtype(b))
    assume(math.isfinite(quotient) and quotient != 0)
    info = np.finfo(dtype)
    exact = -Fraction(g) * Fraction(a) / Fraction(b) ** 2
    out = Fraction(quotient)
    needed = [out, exact] + ([Fraction(g) * out] if dtype is np.float64 else [])
    for value in needed:
        assume(float(info.tiny) <= abs(value) <= float(info.max))
    tb = Tensor(np.array(b, dtype), requires_grad=True)  # (a a constant: its gradient g / b
    with np.errstate(all="raise"):                       # may overflow where b's does not)
        (np.array(a, dtype) / tb).backward(np.array(g, dtype))
    assert tb.grad.dtype == dtype
    rtol = 4 * np.finfo(np.float64).eps if dtype is np.float64 else 3 * float(info.eps)
    assert abs(Fraction(float(tb.grad)) - exact) <= rtol * abs(exact)


def test_a_float16_divisors_gradient_is_finite_where_the_exact_one_is():
    """Loss scaling in float16 (g = 1000) over a small divisor: (g / b) out overflowed in
    g / b (1e5 > 65504) for an exact -1.0004e4, and gave NaN (inf * 0) where a = 0: computed
    in float64 and rounded once, with |out| above 1 too."""
    a = np.array([0.001, 0.0, 50.0], np.float16)
    b = Tensor(np.array([0.01, 0.01, 0.5], np.float16), requires_grad=True)
    with np.errstate(all="raise"):
        (a / b).backward(np.array([1000.0, 1000.0, 2.0], np.float16))
    exact = -np.array([1000.0, 1000.0, 2.0]) * a.astype(np.float64) / b.data.astype(np.float64) ** 2
    np.testing.assert_allclose(b.grad.astype(np.float64), exact, rtol=4e-3, atol=0)
    assert b.grad.dtype == np.float16


def test_softmaxes_of_a_byte_swapped_float16_stay_float16_summed_in_float32():
    """'>f2' is a float16 that is not NumPy's own dtype object: softmax returned float32."""
    x = Tensor(np.zeros((2, 5000), ">f2"))
    for op in (mg.softmax, mg.log_softmax):
        assert op(x).dtype.type is np.float16
    np.testing.assert_allclose(mg.softmax(x).data.astype(np.float64).sum(axis=1), 1.0,
                               rtol=1e-2)


def test_an_ops_help_names_its_operands_as_its_forward_does():
    """help(mg.addmm) showed (a, b, c) over a docstring saying c + a @ b: a user following
    it got a + b @ c. The names now come from the forward where it is a Python function."""
    import inspect

    assert list(inspect.signature(mg.addmm).parameters) == ["c", "a", "b"]
    checked = 0
    for name, op in OPS.items():
        shown = inspect.signature(op.function).parameters.values()
        if not shown or any(p.kind is not p.POSITIONAL_ONLY for p in shown):
            continue  # (a public signature of its own: prepare's)
        if inspect.isfunction(op.forward):
            own = [p.name for p in inspect.signature(op.forward).parameters.values()]
            assert [p.name for p in shown] == own[:len(shown)], name
            checked += 1
    assert checked >= 3


@given(a=st.floats(0.5, 3), sign=st.sampled_from([-1.0, 1.0]), b=st.floats(0.1, 3),
       shape=st.sampled_from([(), (2,), (2, 3)]))
def test_a_quotients_gradients_at_a_negative_divisor(a, sign, b, shape):
    """div's domain drew positive divisors only: a numerator VJP of g / |b| passed every
    test (found by the mutants hunter)."""
    x, y = np.full(shape, sign * a), np.full(shape, -b)
    assert gradcheck(mg.div, x, y)
