"""The generic property tests: every op in the table, drawn from its own domain, against
numerical differentiation. An op missing from the table fails `test_every_op_is_in_the_table`."""

import inspect

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad
from minigrad import OPS, Tensor, ops
from minigrad.testing import gradcheck
from minigrad.testing.strategies import FAMILIES, op_cases

# Central differences with eps = 1e-6 in float64 are good to ~1e-9 on these domains; the
# tolerances leave three orders of magnitude of room and still catch any wrong rule.
ATOL, RTOL = 1e-6, 1e-5

OP_NAMES = sorted(OPS)


def test_every_op_is_in_the_table():
    mechanism = {"defop", "primitive", "register"}
    defined = {
        name for name, f in vars(ops).items()
        if inspect.isfunction(f) and not name.startswith("_") and name not in mechanism
        and f.__module__ in ("minigrad.ops", "minigrad.tensor")
    }
    assert defined == set(OPS), f"not in the op table: {defined - set(OPS)}"
    assert set(OPS) <= set(minigrad.__all__)
    for info in OPS.values():
        assert info.domain.family in FAMILIES, info


@pytest.mark.parametrize("name", OP_NAMES)
@given(data=st.data())
def test_gradient_matches_numerical(name, data):
    case = data.draw(op_cases(name), label="case")
    originals = [x.copy() for x in case.operands]
    gradcheck(case.call, *case.operands, atol=ATOL, rtol=RTOL,
              seed=data.draw(st.integers(0, 2**32 - 1), label="seed"))
    for x, original in zip(case.operands, originals):
        np.testing.assert_array_equal(x, original)  # inputs are never mutated


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


def test_tensor_declares_every_method_the_table_attaches():
    """The methods are generated from the table; tensor.py declares them for type checkers
    (under TYPE_CHECKING), and the two lists must not drift apart."""
    import ast

    source = inspect.getsource(minigrad.tensor)
    tensor_class = next(node for node in ast.parse(source).body
                        if isinstance(node, ast.ClassDef) and node.name == "Tensor")
    block = next(node for node in tensor_class.body
                 if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    declared = {f.name for f in block.body if isinstance(f, ast.FunctionDef)}
    attached = {method for info in OPS.values() for method in info.methods}
    assert declared == attached
