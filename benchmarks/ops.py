"""The engine's overhead per op: each op of `minigrad.OPS` on tiny arrays, next to NumPy.

For every op the table has one fixed call on small operands (4 × 5, or what the op's
`Domain.family` needs: a (5, 3) right operand for matmul, three operands for stack, ...),
with values inside the op's `Domain` intervals and away from its `avoid` points. Three
things are timed, alternating, each sample the mean of many back-to-back calls:

- NumPy: the bare NumPy forward that the op wraps, on the plain arrays;
- forward: the op on leaf Tensors that require grad (so a tape node is recorded);
- forward + backward: the same, then `backward(grad)` with a fixed upstream gradient of
  the output's shape, the leaves' `.grad` reset to None before each call.

On arrays this small the NumPy work is a few microseconds at most, so "forward - NumPy" is
the engine's fixed cost per recorded op, and "backward" (forward + backward - forward) the
cost of one reverse sweep through it, VJP arithmetic included. An op of the table without
an entry in `NUMPY` or `_FAMILY_INPUTS` (a new family) is listed without numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import minigrad as mg
from minigrad.models.timing import alternate
from minigrad.primitive import Domain

__all__ = ["NUMPY", "OpCase", "OpTiming", "op_cases", "time_ops"]

SHAPE = (4, 5)


@dataclass(frozen=True)
class OpCase:
    """One call of an op: `call(*operands)` on Tensors or arrays; `numpy(*operands)` on arrays."""

    name: str
    family: str
    operands: tuple[np.ndarray, ...]
    call: Callable[..., Any]
    description: str


@dataclass(frozen=True)
class OpTiming:
    case: OpCase | None
    name: str
    numpy: float | None       # seconds per call
    forward: float | None
    forward_backward: float | None
    note: str = ""


def _values(domain: Domain, i: int, shape: tuple[int, ...], rng: np.random.Generator,
            ) -> np.ndarray:
    """Values spread over operand i's interval, kept off the domain's `avoid` points."""
    low, high = domain.interval(i)
    if domain.distinct:  # no ties (max): evenly spaced, shuffled
        size = int(np.prod(shape))
        values = low + (high - low) * (rng.permutation(size) + 0.5) / size
        return values.reshape(shape)
    values = rng.uniform(low, high, size=shape)
    for point in domain.avoid:
        near = np.abs(values - point) < 0.1
        values = np.where(near, point + np.where(values >= point, 0.1, -0.1), values)
    return values


def _family_inputs(family: str, domain: Domain, rng: np.random.Generator,
                   ) -> tuple[tuple[np.ndarray, ...], dict[str, Any], str] | None:
    """(operands, keyword arguments of the op, description) for one call of the family."""
    v = lambda i, shape: _values(domain, i, shape, rng)
    if family in ("unary", "reduction", "reshape", "transpose", "getitem"):
        kwargs: dict[str, dict[str, Any]] = {"reduction": {"axis": 1},
                                             "getitem": {"index": (slice(None), 2)}}
        description = {"reduction": "(4, 5), axis=1", "reshape": "(4, 5) -> (5, 4)",
                       "transpose": "(4, 5) -> (5, 4)", "getitem": "(4, 5)[:, 2]"}
        return (v(0, SHAPE),), kwargs.get(family, {}), description.get(family, "(4, 5)")
    if family in ("binary", "loss"):
        return (v(0, SHAPE), v(1, SHAPE)), {}, "(4, 5) and (4, 5)"
    if family in ("matmul", "tensordot", "einsum"):
        return (v(0, SHAPE), v(1, (5, 3))), {}, "(4, 5) by (5, 3)"
    if family == "stack":
        return (v(0, SHAPE), v(0, SHAPE), v(0, SHAPE)), {}, "three (4, 5), axis=1"
    if family == "concatenate":
        return (v(0, SHAPE), v(0, SHAPE)), {}, "two (4, 5), axis=1"
    return None


def _engine_call(name: str, family: str, function: Callable, kwargs: dict[str, Any],
                 ) -> Callable[..., Any]:
    if family == "tensordot":
        return lambda a, b: function(a, b, axes=1)
    if family == "einsum":
        return lambda a, b: function("ij,jk->ik", a, b)
    if family == "reshape":
        return lambda x: function(x, (5, 4))
    if family == "transpose":
        return lambda x: function(x)
    if family in ("stack", "concatenate"):
        return lambda *xs: function(list(xs), axis=1)
    if family == "getitem":
        return lambda x: function(x, kwargs["index"])
    if kwargs:
        return lambda *xs: function(*xs, **kwargs)
    return function


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


def _bce(p: np.ndarray, t: np.ndarray) -> Any:
    eps = np.finfo(np.result_type(p, np.float32)).eps
    pc = np.clip(p, eps, 1.0 - eps)
    return -np.mean(t * np.log(pc) + (1.0 - t) * np.log1p(-pc))


# The NumPy each op's forward amounts to, on the operands of `_family_inputs`.
NUMPY: dict[str, Callable[..., Any]] = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "neg": np.negative, "pow": np.power, "matmul": np.matmul,
    "tensordot": lambda a, b: np.tensordot(a, b, axes=1),
    "einsum": lambda a, b: np.einsum("ij,jk->ik", a, b),
    "exp": np.exp, "log": np.log, "tanh": np.tanh, "sigmoid": _sigmoid,
    "relu": lambda x: np.maximum(x, 0.0), "abs": np.abs, "sqrt": np.sqrt,
    "sum": lambda x: np.sum(x, axis=1), "mean": lambda x: np.mean(x, axis=1),
    "max": lambda x: np.max(x, axis=1),
    "reshape": lambda x: np.reshape(x, (5, 4)), "transpose": np.transpose,
    "getitem": lambda x: x[:, 2],
    "stack": lambda *xs: np.stack(xs, axis=1),
    "concatenate": lambda *xs: np.concatenate(xs, axis=1),
    "binary_cross_entropy": _bce,
    "binary_cross_entropy_with_logits":
        lambda z, t: np.mean(z * (np.heaviside(z, 0.0) - t) + np.log1p(np.exp(-np.abs(z)))),
    "mse_loss": lambda y, t: np.mean(np.square(np.subtract(y, t))),
}


def op_cases(seed: int = 0) -> tuple[list[OpCase], list[str]]:
    """The cases for every op of `minigrad.OPS` that has inputs and a NumPy forward, and the
    names of those that do not."""
    rng = np.random.default_rng(seed)
    cases, missing = [], []
    for name, info in mg.OPS.items():
        inputs = _family_inputs(info.domain.family, info.domain, rng)
        if inputs is None or name not in NUMPY:
            missing.append(name)
            continue
        operands, kwargs, description = inputs
        call = _engine_call(name, info.domain.family, info.function, kwargs)
        cases.append(OpCase(name, info.domain.family, operands, call, description))
    return cases, missing


def time_ops(*, repeats: int, number: int, dtype: Any = np.float64) -> list[OpTiming]:
    """NumPy forward, engine forward and engine forward + backward of every op."""
    cases, missing = op_cases()
    results = []
    for case in cases:
        arrays = tuple(a.astype(dtype) for a in case.operands)
        leaves = tuple(mg.Tensor(a, requires_grad=True) for a in arrays)
        out = case.call(*leaves)
        seed = np.random.default_rng(1).uniform(0.5, 1.5, size=out.shape).astype(out.dtype)
        numpy_forward = NUMPY[case.name]
        call = case.call

        def numpy_call(arrays=arrays, numpy_forward=numpy_forward) -> None:
            numpy_forward(*arrays)

        def forward(leaves=leaves, call=call) -> None:
            call(*leaves)

        def forward_backward(leaves=leaves, call=call, seed=seed) -> None:
            for leaf in leaves:
                leaf.grad = None
            call(*leaves).backward(seed)

        timings = alternate({"numpy": numpy_call, "forward": forward,
                             "forward_backward": forward_backward},
                            repeats=repeats, warmup=2, number=number)
        results.append(OpTiming(case, case.name, timings["numpy"].median,
                                timings["forward"].median,
                                timings["forward_backward"].median))
    for name in missing:
        results.append(OpTiming(None, name, None, None, None,
                                note="no fixed inputs or NumPy forward for its family"))
    return results
