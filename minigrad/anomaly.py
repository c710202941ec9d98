"""Anomaly mode's checks: a layer the record path puts around a node, not a branch of the sweep.

In `detect_anomaly()` mode a recorded node also keeps where the user's code created it and
its input shapes, its output is checked as it is recorded, and its VJPs are wrapped so that
every gradient they return is checked in backward. Outside that mode none of this runs.
"""

from __future__ import annotations

import functools
import numbers
import os
import sys
import traceback
import types
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .modes import ANOMALY, current_mode
from .tape import Contributions, Cotangent, Node

_ENGINE_DIR = os.path.dirname(os.path.realpath(__file__)) + os.sep


class AnomalyError(FloatingPointError):
    """An op's output or gradient holds NaN or infinity, found in `detect_anomaly()` mode."""


def watch(node: Node, arrays: Sequence[Any], out: np.ndarray) -> None:
    """Record where `node` was created, check its output, and check its VJPs' results."""
    node.site = (_caller_site(), tuple(np.shape(a) for a in arrays))
    check_output(node, arrays, out)
    node.vjps = _checked_vjps(node)


def check_output(node: Any, arrays: Sequence[Any], out: np.ndarray) -> None:
    """Raise if the output of `node` (on operands `arrays`) holds NaN or infinity. A
    multi-output node's (scan's) parts are not checked here: its body's ops checked those
    that need a gradient as they made them, step by step, as a Python loop's are checked;
    the others (a y computed from values that need none) are not checked in a loop either."""
    if out.dtype != object and not np.isfinite(out).all():
        # A recorded operand was checked when it was made: this one was not.
        given = [i for i, a in enumerate(arrays) if not _finite(a)]
        note = (f" from input {given[0]}, which held it already (made where anomaly mode "
                "checks nothing: by ops on tensors that need no gradient, by NumPy, by an "
                "optimizer's step, or before detect_anomaly() was entered)") if given else ""
        raise AnomalyError(_message(node, "forward", "its output", out, note))


def _finite(a: Any) -> bool:
    """Whether operand `a` holds only finite numbers (anything else counts as finite)."""
    values = a if type(a) is np.ndarray else np.asarray(a)
    return values.dtype.kind not in "fc" or bool(np.isfinite(values).all())


def watch_backward(root: Any, seed: np.ndarray, caller: str, given: Any = None) -> None:
    """Before a sweep in anomaly mode: check the seed, and also check the gradients of the
    nodes above `root` that were recorded outside the mode (their creation site unknown)."""
    if not np.isfinite(seed).all():
        if given is not None and _finite(given):  # (cast to the tensor's narrower dtype)
            raise AnomalyError(f"{caller}: the seed gradient, finite as given, overflows "
                               f"{seed.dtype}, the tensor's dtype")
        raise AnomalyError(f"{caller}: the seed gradient holds NaN or infinity")
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if type(node) is not Node or node in seen or node.vjps is None:
            continue
        seen.add(node)
        if getattr(node, "site", None) is None:
            node.site = (None, None)
            node.vjps = _checked_vjps(node)
        stack.extend(node.inputs)


def _checked_vjps(node: Node) -> Any:
    if isinstance(node.vjps, types.FunctionType):  # one for every input: check each result
        joint, shapes = node.vjps, [None if x is None else x.shape for x in node.inputs]

        def checked_joint(*args: Any, **options: Any) -> Any:
            _check_incoming(node, args[0])
            grads = joint(*args, **options)
            for i, (g, shape) in enumerate(zip(grads, shapes)):
                for part in g if isinstance(g, list) else () if g is None else (g,):
                    _check(node, i, part, shape)
            return grads

        return checked_joint
    return tuple(vjp if x is None else _checked(node, i, vjp, x.shape)
                 for i, (x, vjp) in enumerate(zip(node.inputs, node.vjps)))


def _check(node: Node, i: int, g: Any, shape: Any) -> None:
    # Checked in the mode of the thread running backward: a node recorded in the mode (or
    # wrapped by an earlier backward in it) is not checked by a backward outside it.
    if g is None or not current_mode() & ANOMALY:  # (None: no gradient reached this input)
        return
    if type(g) is Contributions:  # several, each checked (a scan's to its init)
        for part in g:
            _check(node, i, part, shape)
        return
    values = g.densify(shape, node.dtype) if isinstance(g, Cotangent) else np.asarray(g)
    if values.dtype == object:  # the parts of a multi-output node's cotangent (scan's)
        for part in values:
            if part is not None:
                _check(node, i, part, part.shape)
        return
    if not np.isfinite(values).all():
        raise AnomalyError(_message(node, "backward", f"the gradient of input {i}", values))


def _checked(node: Node, i: int, vjp: Callable, shape: tuple[int, ...]) -> Callable:

    def checked_vjp(*args: Any, **options: Any) -> Any:
        _check_incoming(node, args[0])
        g = vjp(*args, **options)
        _check(node, i, g, shape)
        return g

    return checked_vjp


def _check_incoming(node: Node, g: Any) -> None:
    """The cotangent a node's VJPs get: each contribution to it was checked as it was made,
    so a value that is not finite here came from adding them up."""
    if type(g) is np.ndarray and g.dtype != object and current_mode() & ANOMALY \
            and not np.isfinite(g).all():
        message = _message(node, "backward", "its output's gradient (the sum of its "
                           "consumers' contributions, each finite)", g)
        raise AnomalyError(message.replace(" gave ", " got ", 1))


def check_totals(results: dict[Any, np.ndarray], caller: str) -> None:
    """After a sweep in anomaly mode: each leaf's gradient, the sum of finite contributions,
    is finite too."""
    for g in results.values():
        if g.dtype != object and not np.isfinite(g).all():
            raise AnomalyError(
                f"detect_anomaly: {caller}: the gradient of a tensor of shape {g.shape} holds "
                f"NaN or infinity after its contributions, each finite, were added up (their "
                f"sum overflowed)")


@functools.lru_cache(maxsize=1024)
def _in_engine(filename: str) -> bool:
    # Resolved: minigrad.models and minigrad.optim are links out of the engine's folder.
    return os.path.realpath(filename).startswith(_ENGINE_DIR)


def _caller_site() -> traceback.FrameSummary | None:
    """The innermost frame outside the engine: where the user's code (or a model's) called
    the op."""
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None and _in_engine(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is None:
        return None
    # The source line is read only if the message is ever built.
    return traceback.FrameSummary(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name,
                                  lookup_line=False)


def _recorded_shapes(node: Node) -> list[Any]:
    """The input shapes of a node recorded outside the mode: each operand's array where the
    node keeps it (a node of one VJP per input keeps them in order, None where it keeps
    none), else its vertex's shape, else "?" (a constant it does not keep). A node of one
    VJP for all inputs (a compiled program's) keeps objects of its own in `args`."""
    inputs, args = node.inputs or (), node.args or ()
    if type(node.vjps) is not tuple or len(args) != len(inputs):
        args = (None,) * len(inputs)
    return [a.shape if isinstance(a, np.ndarray) else ()
            if isinstance(a, (numbers.Number, np.generic)) and not isinstance(a, bool)
            else "?" if x is None else x.shape for a, x in zip(args, inputs)]


def _message(node: Node, phase: str, what: str, values: Any, note: str = "") -> str:
    values = np.asarray(values)
    found = [kind for kind, mask in (("NaN", np.isnan(values)), ("+inf", values == np.inf),
                                     ("-inf", values == -np.inf)) if mask.any()]
    site, shapes = node.site
    shapes = ", ".join(map(str, _recorded_shapes(node) if shapes is None else shapes)) or "none"
    message = (f"detect_anomaly: '{node.name}' (inputs of shapes {shapes}) gave {what} "
               f"holding {' and '.join(found)} in {phase}{note}")
    if site is None:
        return message + "; created outside detect_anomaly(), so its creation site is unknown"
    code = f": {site.line}" if site.line else ""
    return message + f"; created at {site.filename}:{site.lineno} in {site.name}{code}"
