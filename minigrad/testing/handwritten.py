"""Check a hand-written backward pass against the engine's gradient.

Tutorials write every gradient by hand; the engine computes the same gradient from the
forward pass alone. `check_backward_at` compares the two at one input (use it inside your
own `@given` test); `check_backward` draws the inputs from a Hypothesis strategy itself,
and on a mismatch raises for the smallest input Hypothesis can shrink it to.

Two forms of `engine_fn`:

- a model (the default, `argnums=None`): `engine_fn(*args)` returns `(loss, module)`, the
  loss a scalar Tensor, and the gradients are with respect to every entry of
  `module.named_parameters()` that requires grad (a frozen one gets none, and is left
  out); `handwritten_fn(*args)` returns a mapping parameter name -> array for those;
- a function of arrays (`argnums` given): `engine_fn(*args)` returns a scalar Tensor, and
  the gradients are with respect to the arguments at `argnums` (they arrive as Tensors that
  require grad, as in `value_and_grad`); `handwritten_fn(*args)` returns them as one array
  (an int `argnums`) or a tuple of arrays in the order of `argnums`. A negative position
  counts from the end; one named twice is refused.

`handwritten_fn` always gets NumPy copies of the array arguments (other arguments, lists
and dicts among them, as they are).
"""

from __future__ import annotations

import decimal
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .. import Tensor, gradients
from ..functional import argnum_positions
from ..nn import Module

__all__ = ["BackwardMismatch", "check_backward", "check_backward_at"]

# The gradients of one computation done in two operation orders differ by rounding, a few
# units in the last place per operation; the defaults, by the engine gradient's dtype,
# leave room for thousands of operations and still catch any wrong rule (which is off by
# much more). Float32's eps is 1.2e-7: its defaults are float64's rtol and atol far apart.
TOLERANCES = {np.dtype(np.float64): (1e-9, 1e-7), np.dtype(np.float32): (1e-6, 1e-4),
              np.dtype(np.float16): (1e-3, 1e-2)}
ATOL, RTOL = TOLERANCES[np.dtype(np.float64)]


class BackwardMismatch(AssertionError):
    """A hand-written gradient differs from the engine's beyond the tolerances."""


def check_backward(engine_fn: Callable[..., Any], handwritten_fn: Callable[..., Any],
                   inputs: Any, *, argnums: int | Sequence[int] | None = None,
                   atol: float | None = None, rtol: float | None = None,
                   settings: Any = None) -> None:
    """Run `check_backward_at` on inputs drawn from `inputs` by Hypothesis.

    `inputs` is a strategy of argument tuples (a strategy of anything else gives a single
    argument), or a tuple of strategies, one per argument (as `st.tuples`). Hypothesis's
    active settings profile applies unless `settings` (a `hypothesis.settings`) is given.
    On a mismatch, Hypothesis shrinks the input and `BackwardMismatch` is raised for the
    smallest one found, naming the gradient, the element, both values and the inputs.
    Call it from a plain test function, not inside `@given` (use `check_backward_at` there,
    and for fixed inputs: `inputs` that are no strategy are a TypeError saying so).
    """
    from hypothesis import given
    from hypothesis import strategies as st

    if not (isinstance(inputs, st.SearchStrategy) or isinstance(inputs, tuple) and all(
            isinstance(x, st.SearchStrategy) for x in inputs)):
        raise TypeError(f"check_backward: inputs must be a Hypothesis strategy (of argument "
                        f"tuples) or a tuple of strategies, one per argument, got "
                        f"{_kind(inputs)}; for fixed inputs call check_backward_at(engine_fn, "
                        f"handwritten_fn, *args)")
    strategy = st.tuples(*inputs) if isinstance(inputs, tuple) else inputs

    @given(strategy)
    def check(drawn: Any) -> None:
        args = drawn if isinstance(drawn, tuple) else (drawn,)
        check_backward_at(engine_fn, handwritten_fn, *args, argnums=argnums, atol=atol,
                          rtol=rtol)

    if settings is not None:
        check = settings(check)
    check()


def _check_real(who: str, name: str, value: Any, positive: bool = False) -> float:
    """`value` of parameter `name` as a float, refused unless a finite real number >= 0
    (> 0 if `positive`): the tolerances and steps of gradcheck and check_backward."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{who}: {name} must be a real number, got {type(value).__name__} "
                        f"{value!r}")
    if not math.isfinite(value) or value < 0 or positive and value == 0:
        raise ValueError(f"{who}: {name} must be a finite number {'>' if positive else '>='} 0, "
                         f"got {value!r}")
    return float(value)  # (a Fraction, say: NumPy's comparisons take floats)


def check_backward_at(engine_fn: Callable[..., Any], handwritten_fn: Callable[..., Any],
                      *args: Any, argnums: int | Sequence[int] | None = None,
                      atol: float | None = None, rtol: float | None = None) -> None:
    """Compare `handwritten_fn(*args)` with the engine's gradient of `engine_fn` at `args`.

    See the module docstring for the two forms of `engine_fn`. An element passes when
    |handwritten - engine| <= atol + rtol * |engine|; otherwise `BackwardMismatch` (an
    AssertionError) names the gradient, the worst element, both values, their difference
    and the inputs. By default atol and rtol are `TOLERANCES[dtype]` of the engine's
    gradient: (1e-9, 1e-7) in float64, (1e-6, 1e-4) in float32, (1e-3, 1e-2) in float16.
    A hand-written gradient of another shape than the engine's is a `BackwardMismatch`; one
    that is not real numbers (None, a string, a ragged list) a TypeError naming it.
    """
    atol, rtol = (None if value is None else _check_real("check_backward", name, value)
                  for name, value in (("atol", atol), ("rtol", rtol)))
    engine = _engine_gradients(engine_fn, args, argnums)
    handwritten = handwritten_fn(*(_copy(a) for a in args))
    for name, expected in engine.items():
        _compare(name, _pick(handwritten, name, engine, argnums), expected, atol, rtol, args)


def _engine_gradients(engine_fn: Callable[..., Any], args: tuple,
                      argnums: int | Sequence[int] | None) -> dict[Any, np.ndarray]:
    """Gradient name -> engine gradient: parameter names for a model (`argnums` None),
    argument positions for a function of arrays."""
    positions = () if argnums is None else argnum_positions(argnums, len(args),
                                                                 "check_backward")
    inputs = [Tensor(_copy(a), requires_grad=True) if i in positions else _copy(a)
              for i, a in enumerate(args)]
    result = engine_fn(*inputs)
    if argnums is None:
        if not (isinstance(result, tuple) and len(result) == 2
                and isinstance(result[1], Module)):
            raise TypeError("check_backward: without argnums, engine_fn must return a pair "
                            f"(scalar Tensor, Module), got {_kind(result)}; pass argnums to "
                            "differentiate with respect to arguments instead")
        loss, module = result
        # (a frozen parameter gets no gradient: not compared, as gradcheck skips it)
        named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("check_backward: every parameter of the model is frozen "
                             "(requires_grad False): there is no gradient to compare")
        wrt: list[Tensor] = [p for _, p in named]
        names: list[Any] = [name for name, _ in named]
    else:
        loss, wrt, names = result, [inputs[i] for i in positions], list(positions)
    if not isinstance(loss, Tensor) or loss.size != 1:
        raise TypeError(f"check_backward: engine_fn's loss must be a scalar Tensor, got "
                        f"{_kind(loss)}")
    if not loss.requires_grad:
        return {name: np.zeros_like(t.data) for name, t in zip(names, wrt)}
    return dict(zip(names, gradients(loss, wrt)))


def _pick(handwritten: Any, name: Any, engine: dict,
          argnums: int | Sequence[int] | None) -> Any:
    """The hand-written gradient that corresponds to the engine's gradient `name`."""
    if isinstance(name, str):  # a model's parameter
        if not isinstance(handwritten, Mapping) or set(handwritten) != set(engine):
            got = sorted(handwritten) if isinstance(handwritten, Mapping) else _kind(handwritten)
            raise TypeError(f"check_backward: handwritten_fn must return a mapping with the "
                            f"engine's parameter names {sorted(engine)}, got {got} (a frozen "
                            f"parameter, requires_grad False, has no gradient to compare)")
        return handwritten[name]
    if isinstance(argnums, (int, np.integer)):
        return handwritten
    if not isinstance(handwritten, (tuple, list)) or len(handwritten) != len(engine):
        raise TypeError(f"check_backward: handwritten_fn must return {len(engine)} gradients "
                        f"(one per argnums entry {argnums}), got {_kind(handwritten)}")
    return handwritten[list(engine).index(name)]


def _compare(name: Any, handwritten: Any, engine: np.ndarray, atol: float | None,
             rtol: float | None, args: tuple) -> None:
    label = f"'{name}'" if isinstance(name, str) else f"argument {name}"
    default_atol, default_rtol = TOLERANCES.get(engine.dtype, (ATOL, RTOL))
    atol = default_atol if atol is None else atol
    rtol = default_rtol if rtol is None else rtol
    hand = _numeric(label, handwritten)
    if hand.shape != engine.shape:
        raise BackwardMismatch(f"check_backward: handwritten gradient of {label} has shape "
                               f"{hand.shape}, the engine's {engine.shape}; inputs "
                               f"{_show(args)}")
    excess = np.abs(hand - engine) - (atol + rtol * np.abs(engine))
    excess = np.where(np.isnan(excess), np.inf, excess)
    if excess.size and excess.max() > 0:
        worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
        h, e = float(hand[worst]), float(engine[worst])
        raise BackwardMismatch(
            f"check_backward: handwritten gradient of {label} (shape {engine.shape}) differs "
            f"from the engine's at index {tuple(int(k) for k in worst)}: handwritten {h!r}, "
            f"engine {e!r} (|difference| {abs(h - e):.3g} > atol {atol} + rtol {rtol} * "
            f"|engine|); inputs {_show(args)}"
        )


def _numeric(label: str, handwritten: Any) -> np.ndarray:
    """The hand-written gradient as a float64 array, refused (TypeError) unless it is real
    numbers of one shape: NumPy would read a string of digits as a number, and refuse a
    ragged list or a word without saying which gradient it was."""
    try:
        hand = np.asarray(handwritten)
    except ValueError:  # (a ragged list)
        raise TypeError(f"check_backward: handwritten gradient of {label} is not an array: "
                        f"its parts have different shapes: {_clip(handwritten)}") from None
    if hand.dtype.kind == "O" and all(isinstance(v, (numbers.Real, decimal.Decimal))
                                      for v in hand.flat):
        try:  # (Fractions, Decimals, bools: real numbers, as floats)
            return hand.astype(np.float64)
        except OverflowError:
            raise ValueError(f"check_backward: handwritten gradient of {label} holds a number "
                             f"beyond float64's range: {_clip(handwritten)}") from None
    if hand.dtype.kind not in "biuf":
        raise TypeError(f"check_backward: handwritten gradient of {label} must be real numbers "
                        f"(an array, a number), got {_kind(handwritten)} of dtype {hand.dtype}: "
                        f"{_clip(handwritten)}")
    return hand.astype(np.float64, copy=False)


def _clip(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _show(args: tuple) -> str:
    """The inputs on one line, each float with the digits that give it back exactly."""
    return "(" + ", ".join(_one_line(a) for a in args) + ")"


def _one_line(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {_one_line(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (np.ndarray, np.generic, float, int)) and not isinstance(value, bool):
        text = np.array2string(np.asarray(value), separator=", ", floatmode="unique",
                               max_line_width=10**6)
        return " ".join(text.split())
    return repr(value)


def _copy(a: Any) -> Any:
    return np.array(a, copy=True) if isinstance(a, np.ndarray) else a


def _kind(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return type(value).__name__ + ("" if shape is None else f" of shape {shape}")
