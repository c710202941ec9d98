"""A caller's NumPy operand of any layout: grad mode computes no_grad()'s numbers, bit for bit.

NumPy's summation order and BLAS path follow an array's layout (a Fortran array's column
sums, a broadcast view's stride 0, a reversed axis). In grad mode a node keeps a copy of a
caller's array (the caller may change theirs before the backward); the op computed on that
copy, whose layout (C or K order) was not always the array's: grad mode and no_grad() were
last bits apart (a float32 product of a broadcast view: 1 ulp), and a compiled program's
snapshot of a captured broadcast constant, laid out as Fortran's, was eager mode's copy's
C order no more. The op now computes on the caller's array itself, as under no_grad(); the
node's copy is for the VJPs, laid out as the array (`primitive.kept_copy`), as are a
program's snapshots of the arrays it captured and a scan's copies of its NumPy operands.
(`tests/test_tensor.py` and `tests/test_scan.py` hold the earlier sum-of-a-layout tests.)
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minigrad as mg

LAYOUTS = ["C", "F", "transposed", "reversed", "strided", "strided rows", "sparse columns",
           "sparse reversed", "broadcast rows", "broadcast columns"]


def laid_out(a: np.ndarray, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """`a`'s values in `layout` (a broadcast view's: its first row's or column's, repeated)
    and the writeable array that holds them, which a caller may change later."""
    if layout == "C":
        owner = a.copy()
        return owner, owner
    if layout == "F":
        owner = np.asfortranarray(a)
        return owner, owner
    if layout == "transposed":  # (the last two axes swapped: for a matrix, Fortran's)
        owner = np.ascontiguousarray(np.swapaxes(a, -1, -2))
        return np.swapaxes(owner, -1, -2), owner
    if layout == "reversed":
        owner = a[::-1, ..., ::-1].copy()
        return owner[::-1, ..., ::-1], owner
    if layout == "strided":  # (every other element of its rows)
        owner = np.repeat(a, 2, axis=-1)
        return owner[..., ::2], owner
    if layout == "strided rows":
        owner = np.repeat(a, 3, axis=-2)
        return owner[..., ::3, :], owner
    if layout == "sparse columns":  # (a view of an eighth of its array: packed, `_packed`)
        owner = np.repeat(a, 8, axis=-1)
        return owner[..., ::8], owner
    if layout == "sparse reversed":
        owner = np.repeat(a[::-1, ..., ::-1], 8, axis=-1)
        return owner[..., ::8][::-1, ..., ::-1], owner
    if layout == "broadcast rows":
        owner = a[..., :1, :].copy()
        return np.broadcast_to(owner, a.shape), owner
    assert layout == "broadcast columns"
    owner = a[..., :1].copy()
    return np.broadcast_to(owner, a.shape), owner


# op -> (its call on a caller's array x and a tensor w, the shapes of x and w for m, k, n)
OPS = {
    "matmul": (lambda x, w: mg.matmul(x, w), lambda m, k, n: ((m, k), (k, n))),
    "matmul from the left": (lambda x, w: mg.matmul(w, x), lambda m, k, n: ((m, k), (n, m))),
    "tensordot": (lambda x, w: mg.tensordot(x, w, axes=1), lambda m, k, n: ((m, k), (k, n))),
    "einsum": (lambda x, w: mg.einsum("ij,jk->ik", x, w), lambda m, k, n: ((m, k), (k, n))),
    "einsum of rows": (lambda x, w: mg.einsum("ij,ij->i", x, w),
                       lambda m, k, n: ((m, k), (m, k))),
    "addmm": (lambda x, w: mg.addmm(w[0], x, w), lambda m, k, n: ((m, k), (k, k))),
    "sum of a product": (lambda x, w: mg.sum(x * w, axis=0), lambda m, k, n: ((m, k), (m, k))),
    "sum of a product, all": (lambda x, w: mg.sum(w * x), lambda m, k, n: ((m, k), (m, k))),
    "where": (lambda x, w: mg.where(x > 0, w, x), lambda m, k, n: ((m, k), (m, k))),
    "where of a condition": (lambda x, w: mg.sum(mg.where(x, w, 0.5) * 3.0, axis=1),
                             lambda m, k, n: ((m, k), (m, k))),
}


def values(rng: np.random.Generator, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Values over several orders of magnitude: a sum of them rounds by its order."""
    a = rng.normal(size=shape) * 10.0 ** rng.integers(-3, 4, size=shape)
    return a.astype(dtype)


def operand(op: str, rng: np.random.Generator, shape: tuple[int, ...], dtype: type,
            layout: str) -> tuple[np.ndarray, np.ndarray]:
    a = values(rng, shape, dtype)
    return laid_out(a > 0 if op == "where of a condition" else a, layout)


def same_bits(actual: mg.Tensor | np.ndarray, expected: mg.Tensor | np.ndarray,
              what: str = "") -> None:
    """The same shape, dtype and bytes (-0.0 is not 0.0), and the same layout."""
    actual = actual.data if isinstance(actual, mg.Tensor) else actual
    expected = expected.data if isinstance(expected, mg.Tensor) else expected
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
    assert actual.tobytes() == expected.tobytes(), (what, np.max(np.abs(
        actual.astype(np.float64) - expected.astype(np.float64)), initial=0.0))


def tensor_of(rng: np.random.Generator, shape: tuple[int, ...], dtype: type,
              fortran: bool) -> mg.Tensor:
    w = values(rng, shape, dtype)
    return mg.Tensor(np.asfortranarray(w) if fortran else w, requires_grad=True)


cases = dict(op=st.sampled_from(sorted(OPS)), layout=st.sampled_from(LAYOUTS),
             fortran=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
             m=st.integers(2, 40), k=st.integers(2, 40), n=st.integers(1, 40),
             seed=st.integers(0, 2**31 - 1))


@settings(max_examples=150, deadline=None)
@given(**cases)
def test_grad_modes_forward_is_no_grads_for_a_caller_array_of_any_layout(
        op, layout, fortran, dtype, m, k, n, seed):
    """The op computes on the caller's array itself in both modes: a float32 product of a
    broadcast view, on grad mode's C copy, was 1 ulp off no_grad()'s (on the view)."""
    rng = np.random.default_rng(seed)
    call, shapes = OPS[op]
    x_shape, w_shape = shapes(m, k, n)
    x, _ = operand(op, rng, x_shape, dtype, layout)
    w = tensor_of(rng, w_shape, dtype, fortran)
    recorded = call(x, w)
    with mg.no_grad():
        plain = call(x, w)
    assert recorded.requires_grad and not plain.requires_grad
    same_bits(recorded, plain, op)
    # The layout (what a later sum adds in): the strides of the axes longer than 1 (an axis
    # of one element has any stride: einsum gave 4 in one mode, 8 in the other, alike)
    assert _layout(recorded.data) == _layout(plain.data)


def _layout(a: np.ndarray) -> list[int]:
    return [stride for stride, length in zip(a.strides, a.shape) if length > 1]


@settings(max_examples=80, deadline=None)
@given(captured=st.booleans(), **cases)
@example(captured=True, op="einsum", layout="broadcast rows", fortran=True, dtype=np.float64,
         m=4, k=10, n=6, seed=526)  # (2.9e-11 apart before)
@example(captured=True, op="matmul", layout="broadcast rows", fortran=False, dtype=np.float32,
         m=8, k=35, n=3, seed=942)  # (0.094 apart: 1 ulp of values near 1e6)
@example(captured=True, op="einsum of rows", layout="sparse columns", fortran=False,
         dtype=np.float32, m=5, k=16, n=3, seed=0)  # (packed with no gap: 1 ulp apart)
def test_a_compiled_function_of_a_caller_array_of_any_layout_is_eager_modes(
        captured, op, layout, fortran, dtype, m, k, n, seed):
    """Values and gradients, over calls with new values: the array an argument (its layout
    part of the signature) or captured (a constant, snapshot when traced). The snapshot of
    a broadcast view was laid out as Fortran's (NumPy's K order), where eager mode's copy
    was a C array, and the program computed on it: last bits apart."""
    rng = np.random.default_rng(seed)
    call, shapes = OPS[op]
    x_shape, w_shape = shapes(m, k, n)
    x0, _ = operand(op, rng, x_shape, dtype, layout)

    def loss(x, w):
        y = call(x, w)
        return y, mg.sum(y * y)

    compiled = mg.compile((lambda w: loss(x0, w)) if captured else loss)
    for call_number in range(3):
        x = x0 if captured else operand(op, rng, x_shape, dtype, layout)[0]
        w_values = values(rng, w_shape, dtype)
        w_values = np.asfortranarray(w_values) if fortran else w_values
        results = []
        for run in (compiled, loss):
            w = mg.Tensor(w_values, requires_grad=True)
            y, total = run(w) if run is compiled and captured else run(x, w)
            total.backward()
            results.append((y, total, w.grad))
        for got, want, what in zip(results[0], results[1], ("y", "loss", "w.grad")):
            same_bits(got, want, f"{op}, call {call_number}: {what}")


def _scanned(op: str, a_of: str, a: np.ndarray, h0: mg.Tensor, length: int, use_scan: bool):
    """`y = op(a, h)` per step, the carry `h` following it: `a` a step's slice of xs (a
    caller's array) or, captured, the array itself. Returns the final carry and the ys."""
    call = OPS[op][0]

    def body(h, x):
        y = call(x if a_of == "xs" else a, h)
        return mg.tanh(h * 0.9 + mg.sum(y) * 0.001), y

    xs = a if a_of == "xs" else None
    if use_scan:
        return mg.scan(body, h0, xs, length=length)
    h, ys = h0, []
    for k in range(length):
        h, y = body(h, None if xs is None else xs[k])
        ys.append(y)
    return h, mg.stack(ys)


@settings(max_examples=60, deadline=None)
@given(a_of=st.sampled_from(["xs", "captured"]), length=st.integers(1, 4), **cases)
@example(a_of="xs", length=2, op="einsum of rows", layout="sparse columns", fortran=False,
         dtype=np.float32, m=5, k=16, n=3, seed=0)  # (packed with no gap: 1 ulp apart)
@example(a_of="captured", length=2, op="einsum of rows", layout="sparse columns",
         fortran=False, dtype=np.float32, m=5, k=16, n=3, seed=0)
def test_a_scan_of_a_caller_array_of_any_layout_is_the_python_loop(
        a_of, length, op, layout, fortran, dtype, m, k, n, seed):
    """The loop's ops compute on the caller's array (a step's slice of xs, or one the body
    captured); scan's loop on its copies, laid out as the arrays (`kept_copy`), so that they
    add in one order: the values, the carry's gradient bit for bit."""
    rng = np.random.default_rng(seed)
    x_shape, w_shape = OPS[op][1](m, k, n)
    a, _ = operand(op, rng, (length, *x_shape) if a_of == "xs" else x_shape, dtype, layout)
    h00 = values(rng, w_shape, dtype) * 0.001
    h00 = np.asfortranarray(h00) if fortran else h00
    results = []
    for use_scan in (True, False):
        h0 = mg.Tensor(h00, requires_grad=True)
        h, ys = _scanned(op, a_of, a, h0, length, use_scan)
        (mg.sum(h * h) + mg.sum(ys * ys)).backward()
        results.append((h, ys, h0.grad))
    for got, want, what in zip(results[0], results[1], ("carry", "ys", "h0.grad")):
        same_bits(got, want, f"{op} ({a_of}): {what}")


@settings(max_examples=40, deadline=None)
@given(how=st.sampled_from(["eager", "compiled", "scan"]), **cases)
def test_a_caller_changing_their_array_after_the_forward_changes_no_gradient(
        how, op, layout, fortran, dtype, m, k, n, seed):
    """The forward computes on the caller's array; the VJPs read the node's copy of it,
    which the caller's later changes do not reach (in a program, its saved copy; in a scan,
    the loop's)."""
    rng = np.random.default_rng(seed)
    call, shapes = OPS[op]
    x_shape, w_shape = shapes(m, k, n)
    a = values(rng, (2, *x_shape) if how == "scan" else x_shape, dtype)
    if op == "where of a condition":
        a = a > 0
    w_values = values(rng, w_shape, dtype)
    w_values = np.asfortranarray(w_values) if fortran else w_values

    def loss(x, w):
        if how == "scan":
            h, ys = _scanned(op, "xs", x, w, 2, True)
            return mg.sum(h * h) + mg.sum(ys * ys)
        y = call(x, w)
        return mg.sum(y * y)

    run = mg.compile(loss) if how == "compiled" else loss
    grads = []
    for change in (False, True):
        x, owner = laid_out(a, layout)
        w = mg.Tensor(w_values, requires_grad=True)
        total = run(x, w)
        if change:
            owner[...] = ~owner if owner.dtype == bool else 3 * np.flip(owner)  # (in place)
        total.backward()
        grads.append(w.grad)
    same_bits(grads[1], grads[0], op)


def _zero(g, out, x, w):
    return np.zeros_like(w)


# User ops whose forward returns a view of the caller's array, or the array itself.
VIEWS = {
    "reversed": mg.defop("reversed_view", lambda x, w: x[::-1], (None, _zero),
                         register=False),
    "itself": mg.defop("asarray_view", lambda x, w: np.asarray(x), (None, _zero),
                       register=False),
    "transposed": mg.defop("transposed_view", lambda x, w: x.T, (None, _zero),
                           register=False),
}


@settings(max_examples=40, deadline=None)
@given(view=st.sampled_from(sorted(VIEWS)), how=st.sampled_from(["eager", "compiled",
                                                                 "no_grad"]),
       layout=st.sampled_from([x for x in LAYOUTS if not x.startswith("broadcast")]),
       m=st.integers(1, 6), k=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_an_output_viewing_a_caller_array_is_its_own(view, how, layout, m, k, seed):
    """A forward that returns a view of the caller's array (which it now computes on) gives
    a copy: the caller's later changes do not reach the output, nor its gradient."""
    rng = np.random.default_rng(seed)
    x, owner = laid_out(values(rng, (m, k), np.float64), layout)
    expected = VIEWS[view](x, 0.0).data.copy()  # (no tensor: no node, the same copy)
    w = mg.Tensor(np.ones(3), requires_grad=True)

    def fn(x, w):
        return VIEWS[view](x, w)

    if how == "no_grad":
        with mg.no_grad():
            out = fn(x, w)
    else:
        out = (mg.compile(fn) if how == "compiled" else fn)(x, w)
    assert out.requires_grad == (how != "no_grad")
    assert not np.may_share_memory(out.data, owner)
    owner[...] = -7.0
    np.testing.assert_array_equal(out.data, expected, strict=True)
    if how != "no_grad":
        mg.sum(out * out).backward()
        np.testing.assert_array_equal(w.grad, np.zeros(3), strict=True)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("sparse", [False, True])
def test_a_nodes_copy_is_laid_out_as_the_callers_array(layout, sparse):
    """The same strides: reversed axes reversed, a broadcast axis a stride 0 (which NumPy's K
    order would lay out as Fortran's), a strided slice's gaps; for a view of a small part
    of a larger array (`sparse`: a few columns of a wide one; the sparse layouts), packed:
    the axes in the array's order, reversed and broadcast as they were, each contiguous
    with the one below it where the array's is, else one element apart (a copy that closed
    every gap took NumPy's contiguous loops, which round otherwise: found by review)."""
    x, _ = laid_out(np.arange(60.0).reshape(3, 4, 5), layout)
    if sparse:
        wide = np.zeros((*x.shape[:2], 200))
        wide[..., :5] = x
        x = wide[..., :5] if x.strides[-1] >= 0 else wide[..., 4::-1]
        x = np.broadcast_to(x[:, :1], x.shape) if 0 in laid_out(x, layout)[0].strides else x
    copy = mg.primitive.kept_copy(x)
    np.testing.assert_array_equal(copy, x, strict=True)
    assert not np.may_share_memory(copy, x)
    assert [np.sign(s) for s in copy.strides] == [np.sign(s) for s in x.strides]
    assert np.argsort(np.abs(copy.strides), kind="stable").tolist() == np.argsort(
        np.abs(x.strides), kind="stable").tolist()
    packed = sparse or layout.startswith("sparse")
    assert (copy.strides == x.strides) == (not packed or x.flags.c_contiguous)
    assert copy.flags.writeable == (0 not in x.strides)  # (a broadcast view's: read-only)
    assert _contiguities(copy) == _contiguities(x)
    span = sum(abs(s) * (n - 1) for s, n in zip(copy.strides, copy.shape)) + x.itemsize
    assert span <= (2 if packed else 4) * x.nbytes  # (memory bounded by the elements')


def _contiguities(a: np.ndarray) -> list[bool]:
    """Whether each stepped axis, from the smallest stride up, is contiguous with the one
    below it (the first, with its elements)."""
    steps = sorted((abs(s), n) for s, n in zip(a.strides, a.shape) if s and n > 1)
    below = [a.itemsize] + [s * n for s, n in steps[:-1]]
    return [s == b for (s, _), b in zip(steps, below)]


@settings(max_examples=30, deadline=None)
@given(layout=st.sampled_from(LAYOUTS), dtype=st.sampled_from([np.float32, np.float64]),
       length=st.integers(1, 3), m=st.integers(2, 30), seed=st.integers(0, 2**31 - 1))
def test_a_scan_from_a_caller_array_keeps_its_own_start(layout, dtype, length, m, seed):
    """scan's op computes on its copies of a caller's arrays (its residual, what the backward
    loop reads, may hold views of them: here the first step's carry, which `h @ W`'s VJP
    reads): the loop's numbers, bit for bit, and the caller's later change reaches no
    gradient. (W's gradient, added up over the steps in scan's own order, is compared
    between the scans: `tests/test_scan.py` holds it to the loop's.)"""
    rng = np.random.default_rng(seed)
    h00 = values(rng, (m, m), dtype) * 0.01
    w_values = values(rng, (m, m), dtype) * 0.01

    def body(h, x):
        h = mg.tanh(mg.matmul(h, W))
        return h, h

    results = []
    for how in ("loop", "scan", "scan, changed after"):
        h0, owner = laid_out(h00, layout)
        W = mg.Tensor(w_values, requires_grad=True)
        if how == "loop":
            h = h0
            for _ in range(length):
                h, _ = body(h, None)
        else:
            h, _ = mg.scan(body, h0, length=length)
        if how.endswith("after"):
            owner[...] = 5.0
        mg.sum(h * h).backward()
        results.append((h, W.grad))
    for got in results[1:]:
        same_bits(got[0], results[0][0], "carry")
    same_bits(results[2][1], results[1][1], "W.grad")
