"""Gradient checking for users' own ops, models and hand-written backward passes.

`numerical_grad` takes central differences; `gradcheck` compares the engine's gradient with
them, for a function's arguments and a Module's parameters, in float64 whatever the model's
dtype, and raises `GradcheckError` (an AssertionError, so test runners report a failure)
naming the argument or parameter, the output, the worst element, both values and the
tolerance. `check_backward` compares a hand-written backward pass with the engine's gradient
over Hypothesis-drawn inputs, `check_backward_at` at one input. Hypothesis strategies for
drawing inputs live in `minigrad.testing.strategies` (importing this module does not need
Hypothesis; that one does: it is in the test extra, `pip install 'minigrad-rnn[test]'`).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .. import Tensor, enable_grad, gradients, modes, no_grad, tape
from ..functional import argnum_positions
from ..modes import is_anomaly_enabled
from ..nn import Module
from ..tape import Node
from ..tensor import tensor_array
from .handwritten import BackwardMismatch, _check_real, check_backward, check_backward_at

__all__ = [
    "DISTRIBUTION", "BackwardMismatch", "GradcheckError", "UncheckedParametersWarning",
    "VacuousCheckWarning", "check_backward", "check_backward_at", "gradcheck", "numerical_grad",
]

# The name pip knows minigrad by, for messages that say which extra to install.
DISTRIBUTION = "minigrad-rnn"


def without_hypothesis(module: str, missing: ModuleNotFoundError) -> ModuleNotFoundError:
    """What a module of this package that needs Hypothesis raises where it is missing: one
    line naming the extra to install (re-raised as it is if another module is missing)."""
    if missing.name != "hypothesis":
        return missing
    return ModuleNotFoundError(f"minigrad.testing.{module} needs Hypothesis: install the test "
                               f"extra (pip install '{DISTRIBUTION}[test]')", name="hypothesis")

# A scalar output's upstream gradient is drawn with a magnitude in this range: at least 1.5
# so that a VJP which ignores it (computes as if it were 1) is off by at least 50%, at most
# 2.5 so that the tolerances keep their meaning.
SCALAR_UPSTREAM = (1.5, 2.5)

Gradients = list[np.ndarray]  # one per argument or parameter checked

# A gradient whose every element is within this fraction of atol of 0 is taken for a zero
# one (that of an argument f ignores, x^3's at 0), which central differences give up to a
# residue: a check of zeros. One larger but within atol is checked against nothing.
ZERO_RESIDUE = 1e-3


class GradcheckError(AssertionError):
    """The engine's gradient and the numerical one disagree beyond the tolerances."""


def numerical_grad(f: Callable[..., Any], *args: Any, eps: float = 1e-6,
                   argnums: int | Sequence[int] | None = None) -> tuple[np.ndarray, ...]:
    """Central differences (f(x + eps) - f(x - eps)) / (2 eps), element by element.

    `f` takes the arguments as NumPy arrays and returns a scalar (a Tensor or a number).
    Returns one gradient per argument in `argnums`, as a tuple of float64 arrays: the
    arguments differentiated are float64 copies whatever their dtype (in float32 a step of
    1e-6 is below the resolution of numbers near 1: the differences would be noise). By
    default every argument is differentiated but the integer and boolean ones (numbers,
    arrays, lists), which are data, as for `gradcheck`: labels, indices, masks, that a step
    of eps cannot perturb; so `numerical_grad(f, logits, labels)` returns the logits'
    gradient only. Name an integer argument in `argnums` to differentiate it. `eps` must
    be a finite number > 0 (ValueError).
    """
    _check_function(f, "numerical_grad")
    eps = _check_real("numerical_grad", "eps", eps, positive=True)
    positions = (argnum_positions(argnums, len(args), "numerical_grad")
                 if argnums is not None else
                 tuple(i for i, a in enumerate(args) if not _integer_data(a)))
    if not positions:
        raise ValueError("numerical_grad: nothing to differentiate: every argument is integer "
                         "or boolean data (labels, indices, masks); name the ones to "
                         "differentiate in argnums")
    # The others are data (indices, labels, masks), passed on as they are, as by gradcheck.
    arrays = [_checked_array(a, i, "numerical_grad") if i in positions else a
              for i, a in enumerate(args)]
    with no_grad():
        return tuple(_central_differences(lambda: _scalar(f(*arrays)), arrays[i], eps)[0]
                     for i in positions)


def gradcheck(f: Callable[..., Any], *args: Any, eps: float = 1e-6, atol: float = 1e-6,
              rtol: float = 1e-5, argnums: int | Sequence[int] | None = None,
              seed: int = 0, params: Any = None) -> bool:
    """Check the engine's gradient of `f` at `args` against central differences.

    What is checked (perturbed), as in `torch.autograd.gradcheck`: the arguments that are
    Tensors with `requires_grad=True`, and the parameters in `params`: a Module (every
    `named_parameters()` entry) or a mapping name -> Parameter; by default, when `f` is
    itself a Module, its own parameters. The other arguments are data (targets, masks,
    indices), passed to `f` as they are. `argnums` (an int or a sequence of them, negative
    ones counting from the end; not a bool, nor one named twice) names exactly the
    arguments to check instead, whatever they are. When nothing is marked at
    all (no argnums, no argument that requires grad, no parameters), every argument is
    checked but the integer and boolean ones (numbers, arrays, lists), which are data:
    labels, indices, masks, that a step of eps cannot perturb. So `gradcheck(f, x, y)` on
    float arrays checks x and y, and `gradcheck(lambda z, y: mg.cross_entropy(z, y),
    logits, np.array([0, 1, 2]))` the logits only. (Before, plain arrays were always
    checked: a Module's inputs now need `argnums` or `requires_grad` to be.) Then, where f
    reads tensors that require grad (a model's parameters, in a closure), whose gradients
    go unchecked, it warns (UncheckedParametersWarning): pass `params=`. (Only then: where
    `argnums`, `params`, an argument that requires grad or f a Module says what to check,
    tensors f reads besides are taken to be meant as constants.)

    `f` gets each checked argument as a Tensor on both sides (one that requires grad for the
    engine's gradient, one that does not, under no_grad, for the central differences), so
    a function written with Tensor methods (`t.exp()`, `t.relu()`, `t.max(0, True)`)
    works. The check runs in float64, as `torch.autograd.gradcheck` expects: each checked
    argument is a float64 copy, and each parameter holds a float64 copy of its values for
    the time of the check, so a float16 or float32 model's VJP rules are checked (not its
    rounding) at the tolerances of a float64 one. Each parameter gets its own array back
    afterwards, bit for bit, even if `f` raises; `.grad` is not touched.

    `f` returns a Tensor of any shape, or a tuple (or list) of them, such as an LSTM cell's
    (h, c). Each output is checked through its projection <v, output> on an upstream
    gradient v drawn from `seed`, as if it sat inside a larger graph: v is standard normal
    for an output of several elements (testing the whole vector-Jacobian product, not just
    a sum), and a number of magnitude in [1.5, 2.5] for an output of one element. Every
    output is checked with v and with -v (so a VJP that ignores its upstream gradient, or
    its sign, fails, though a v of few elements may have one sign); an output of two or
    more axes is checked with its upstream in Fortran order too, as a transpose downstream
    hands it over (so a VJP that assumes a C array g fails).

    The numerical side projects the outputs' central differences, so an element's
    derivative carries the rounding of the outputs it moves only; a one-element output that
    sums many large terms carries theirs (|f| 2^-52 / 2 eps): loosen `atol` for one. At
    arguments near 1e5 and beyond, a step of eps = 1e-6 moves the outputs by little more
    than their rounding: scale `eps` with the values.
    The forward and backward passes must leave the checked arrays as they were, and a
    second backward on the same graph must give the same gradients, bit for bit, after f
    has run again (under no_grad) with every element of every argument and parameter
    checked moved at once, each by its own step in [eps / 2, eps]: an op whose forward or
    VJP writes into the arrays it is given, or whose VJP reads what the latest forward call
    left (a cache of its input) rather than its own saved values, fails, though its first
    numbers are right, whichever argument or parameter it is applied to.

    Each VJP of the graph (the engine casts a leaf's .grad, which would hide these) must
    leave its upstream gradient g as it was and return its operand's dtype: a VJP writing
    into g, or returning float32 for a float64 operand, fails, naming its op; so does one
    returning float64 for a float32 operand, seen by one more forward and backward pass on
    float32 copies of the arguments and parameters checked (for dtypes only; skipped where
    f cannot run in float32). A float64 gradient whose elements above atol are all exactly
    float32 numbers fails too: the one form of float32 arithmetic caught whatever the
    tolerances, a VJP computing its whole result in float32 and casting it back. One that
    only mixes float32 into float64 work (the cos of a float32 copy of x, a float32
    constant such as np.log(np.float32(10))) is right to ~1e-8 to 1e-7 relative, which the
    default tolerances let through. An op of the graph that makes a lower precision of a float64
    operand (astype to float32 and back inside f) raises TypeError naming it, as a float32
    output does.

    An element passes when |engine - numerical| <= atol + rtol * |numerical|. The defaults
    (atol 1e-6, rtol 1e-5) let through a VJP off by up to about 1e-5 relative (2.00001 x
    for square's 2x passes), or by 1e-6 absolute on small gradients, although the central
    differences are accurate to ~1e-9 relative on well-scaled values (eps = 1e-6, float64):
    they catch a wrong formula, a sign, a factor, a missing term, not a slightly imprecise
    constant. To catch mistakes down to ~1e-7, pass smaller ones (atol=1e-8, rtol=1e-7),
    on values of moderate size (around 1; scale eps with larger ones). Returns True,
    or raises GradcheckError naming the argument (by position) or parameter (by name), the
    output of a tuple, the worst element, both values and the tolerance. Where every
    element of an argument's or parameter's gradient (for every output), the engine's and
    the numerical alike, is within atol of 0 (a sigmoid saturated at x = -20, a term scaled
    by 1e-7), that comparison holds for any VJP, right or wrong: it passes with a
    VacuousCheckWarning naming each such argument and parameter, asking for other inputs,
    a rescaled f or a smaller atol (a warning, so that a property test whose draws saturate
    now and then does not fail; `-W error::...VacuousCheckWarning` makes it one). This is
    decided for each of them: one whose gradient is tiny beside another's large one (a
    weight-decay term's bias beside a loss's weights) is named too. Gradients within
    atol / 1000 of 0 everywhere, the engine's and the numerical alike, are a check of zeros
    (f ignores what is checked, x^3 at 0) and pass silently; the engine's zeros beside a
    numerical gradient above atol / 1000 (a VJP returning zeros, on a term scaled by 1e-7)
    warn, and so may a gradient that is 0 at every input (a bias before a centring) where
    central differences' residue of f's rounding (~|f| 1e-10 per unit of f's rounding)
    is above atol / 1000: pass a larger atol for it, or leave it out (argnums, params).
    `eps` must be a finite number > 0, `atol` and `rtol` finite numbers >= 0 (ValueError;
    TypeError for what is not a real number): a NaN eps or a negative atol would fail every
    gradient, the engine's blamed. `seed` must be an int >= 0 (TypeError, ValueError), and
    every argument and parameter checked finite: a NaN or infinite one is a ValueError
    naming it and the element (its gradients would be NaN on both sides, the engine's
    blamed).
    """
    _check_function(f, "gradcheck")
    eps = _check_real("gradcheck", "eps", eps, positive=True)
    atol = _check_real("gradcheck", "atol", atol)
    rtol = _check_real("gradcheck", "rtol", rtol)
    seed = _check_seed(seed)
    named = _named_parameters(f, params)
    positions = _checked_positions(args, argnums, bool(named))
    unmarked = argnums is None and params is None and not isinstance(f, Module) and not any(
        isinstance(a, Tensor) and a.requires_grad for a in args)
    if not positions and not named:
        raise ValueError(f"gradcheck: nothing to check: no argument to perturb "
                         f"(argnums={argnums!r}) and no parameters (pass params=, or a "
                         f"Module as f; integer and boolean arguments are data unless "
                         f"named in argnums)")
    arrays = [_checked_array(a, i, "gradcheck") if i in positions else a
              for i, a in enumerate(args)]
    parameters = [p for _, p in named]
    labels = [f"argument {i}" for i in positions] + [f"parameter '{name}'" for name, _ in named]
    with _holding(parameters, np.float64):
        _refuse_non_finite(labels, [arrays[i] for i in positions] + [p.data for p in parameters])
        outputs, wrt, upstreams, engine, several = _engine_side(f, arrays, positions,
                                                                parameters, seed, labels)
        if unmarked:
            _warn_unchecked(outputs, wrt, labels)
        numeric = _numerical_side(f, arrays, positions, parameters, upstreams, eps)
        _run_elsewhere(f, arrays, positions, parameters, eps, seed)
        # After f ran at other values of everything checked: a VJP reading what the latest
        # forward call left (a cache of the op's, not its own saved values) gives other bits
        others = _engine_again(outputs, wrt, upstreams, engine, labels)
    for k, v in enumerate(upstreams):
        through = f" through output {k} of {len(upstreams)}" if several else ""
        checks = [(v, engine[k], 1.0), *others[k]]
        for upstream, results, sign in checks:  # (the projection is linear in v)
            for label, computed, numerical in zip(labels, results, numeric):
                _compare(label, through, computed, sign * numerical[k], atol, rtol,
                         _describe(upstream, seed))
        for label, computed, numerical in zip(labels, engine[k], numeric):  # (right
            _refuse_float32_numbers(label, computed, numerical[k], atol)  # numbers: how precise?)
    _refuse_below_atol(labels, engine, numeric, atol)
    _float32_backward(f, arrays, positions, parameters)
    return True


def _check_function(f: Any, who: str) -> None:
    if not callable(f):
        raise TypeError(f"{who}: expected a function, got {type(f).__name__}")


def _check_seed(seed: Any) -> int:
    """`seed` as an int, refused unless an integer >= 0 (what NumPy's generators take)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"gradcheck: seed must be an int >= 0, got {type(seed).__name__} "
                        f"{seed!r}")
    if seed < 0:
        raise ValueError(f"gradcheck: seed must be an int >= 0, got {seed!r}")
    return int(seed)


def _refuse_non_finite(labels: list[str], values: list[np.ndarray]) -> None:
    """A NaN or an infinity among the values checked makes both gradients NaN there, the
    engine's blamed: refused before anything runs."""
    for label, array in zip(labels, values):
        bad = ~np.isfinite(array)
        if bad.any():
            where = tuple(int(k) for k in np.argwhere(bad)[0])
            raise ValueError(
                f"gradcheck: {label} holds {float(array[where])!r} at index {where} (not "
                f"finite: {int(bad.sum())} of its {array.size} elements): central differences "
                f"need finite values; pass finite ones")


def _engine_side(f: Callable[..., Any], arrays: list[Any], positions: tuple[int, ...],
                 parameters: list[Tensor], seed: int, labels: list[str]
                 ) -> tuple[list[Tensor], list[Tensor], list[np.ndarray], list[Gradients], bool]:
    """f's outputs (their graph kept), the tensors checked, the outputs' upstream
    gradients (drawn from `seed`), the engine's gradient of each output's projection with
    respect to the arguments at `positions` and to `parameters` (one list per output), and
    whether f returned several outputs. The forward and backward passes must leave every
    checked array as it was: a forward or VJP that writes into the arrays it is given (the
    tensors' own, which the graph keeps) gets right numbers the first time, and changes
    the user's weights."""
    # Tensor(a) is a copy in a's layout: a VJP is checked on the layout drawn.
    leaves = {i: Tensor(arrays[i], requires_grad=True) for i in positions}
    wrt = [leaves[i] for i in positions] + parameters
    before = [t._data.copy() for t in wrt]
    start = next(tape._tape_position)
    with enable_grad():  # (inside no_grad too: else every gradient would be 0)
        outputs, several = _as_outputs(f(*(leaves.get(i, a) for i, a in enumerate(arrays))))
    _check_unchanged(wrt, before, labels, "the forward pass")
    _check_outputs(outputs, several)
    nodes = _nodes_above(outputs, start)
    _refuse_down_casts(nodes)
    _watch_vjps(nodes)
    upstreams = _upstreams([out.shape for out in outputs], seed)
    engine = [_engine_gradients(out, v, wrt) for out, v in zip(outputs, upstreams)]
    _check_unchanged(wrt, before, labels, "a backward pass")
    return outputs, wrt, upstreams, engine, several


def _refuse_float32_numbers(label: str, gradient: np.ndarray, numerical: np.ndarray,
                            atol: float) -> None:
    """A float64 gradient whose every element of some size is exactly a float32 number was
    computed in float32 (by a VJP that casts back): right to ~1e-7 only, inside the
    tolerances. A gradient is linear in the upstream one, drawn with all of float64's
    digits, so a right one has such elements by chance only (2^-29 each). Elements whose
    value is 0 up to atol (by the central differences) are not looked at: a gradient that
    cancels to 0 leaves rounding residue of a few bits, a float32 number too."""
    sized = np.abs(np.broadcast_to(numerical, gradient.shape)) > atol  # (as its values are)
    shown = gradient[np.isfinite(gradient) & (gradient != 0) & sized]
    if shown.size and np.array_equal(shown.astype(np.float32), shown):
        raise GradcheckError(
            f"gradcheck: the gradient of {label} holds float32 numbers only (each of its "
            f"{shown.size} nonzero elements is exactly a float32 one, from an upstream "
            f"gradient of float64's full precision): a VJP computes in float32 and casts "
            f"back, giving gradients good to ~1e-7 where float64's are good to ~1e-16")


class UncheckedParametersWarning(UserWarning):
    """gradcheck was told nothing to check, so it checked f's float arguments, while f reads
    tensors that require grad (a model's parameters) whose gradients it did not check."""


def _warn_unchecked(outputs: list[Tensor], wrt: list[Tensor], labels: list[str]) -> None:
    """Warn (UncheckedParametersWarning) where nothing was marked to check and f's outputs
    depend on tensors that require grad besides the arguments checked: a closure's model,
    whose VJPs then go unchecked, however True the result (and the arguments perturbed
    include its targets)."""
    checked = {id(t) for t in wrt}
    stack: list[Any] = [out._node for out in outputs if out._node is not None]
    seen: set[int] = set()
    unchecked: list[Tensor] = []
    while stack:
        vertex = stack.pop()
        if id(vertex) in seen:
            continue
        seen.add(id(vertex))
        if type(vertex) is Node:
            stack.extend(v for v in vertex.inputs or () if v is not None)
        elif id(vertex) not in checked:
            unchecked.append(vertex)
    if unchecked:
        shapes = ", ".join(str(t.shape) for t in unchecked[:4]) + (
            ", ..." if len(unchecked) > 4 else "")
        one = len(unchecked) == 1
        warnings.warn(
            f"gradcheck: nothing was marked to check, so it checked all of f's float "
            f"arguments ({', '.join(labels)}; targets among them, if f takes any); f also "
            f"reads {len(unchecked)} tensor{'' if one else 's'} that require{'s' if one else ''}"
            f" grad (shape{'' if one else 's'} {shapes}), a model's parameters, whose "
            f"gradients were not checked: pass params=model (or f a Module) to check them, "
            f"argnums= to say which arguments", UncheckedParametersWarning, stacklevel=3)


class VacuousCheckWarning(UserWarning):
    """gradcheck compared gradients of an argument or parameter all within atol of 0: any
    VJP would have passed there."""


def _refuse_below_atol(labels: list[str], engine: list[Gradients], numeric: list[np.ndarray],
                       atol: float) -> None:
    """Warn (VacuousCheckWarning), naming them, about the arguments and parameters whose
    gradients, the engine's and the numerical alike for every output, are all within atol
    of 0 but not all within ZERO_RESIDUE atol of it: |engine - numerical| <= atol + rtol
    |numerical| held for them whatever the VJPs computed (a sign flipped, a factor of 3,
    zeros), so nothing of theirs was checked, however large the others' gradients. (A
    warning, not a failure: a property test drawing a saturated input now and then checked
    nothing there, which is no mistake of the VJP's. Gradients all within ZERO_RESIDUE atol
    are a check of zeros: central differences leave a residue of ~eps^2 (x^3 at 0) or of
    f's rounding. Where that residue is larger, beside the engine's zeros, this warns: a
    VJP returning zeros on a term scaled by 1e-7 looks the same, and a wrong gradient must
    not pass silently.)"""
    vacuous = []
    zero = ZERO_RESIDUE * atol
    for j, label in enumerate(labels):
        sides = [("engine's", gradients_k[j]) for gradients_k in engine]
        sides.append(("numerical", numeric[j]))
        found = [(float(np.max(np.abs(values), initial=0.0)), side) for side, values in sides]
        largest, side = max(found)
        if largest <= zero:
            continue  # a check of zeros
        if largest <= atol:
            vacuous.append((label, largest, side))
    if not vacuous:
        return
    names = ", ".join(label for label, _, _ in vacuous)
    sizes = "; ".join(f"{value:.3g} in the {side} gradient of {label}"
                      for label, value, side in vacuous)
    smallest = min(value for _, value, _ in vacuous)
    warnings.warn(
        f"gradcheck: every element of the gradient{'s' if len(vacuous) > 1 else ''} of "
        f"{names} is within atol {atol} of 0, "
        f"the engine's and the numerical alike (the largest: {sizes}), so the comparison "
        f"|engine - numerical| <= atol + rtol |numerical| checked nothing there: a wrong VJP "
        f"passes. Pick inputs where the gradient is not tiny (not where a function "
        f"saturates), rescale f (a loss scaled by 1e-7), or pass an atol well below "
        f"{smallest:.3g}", VacuousCheckWarning, stacklevel=3)


def _engine_again(outputs: list[Tensor], wrt: list[Tensor], upstreams: list[np.ndarray],
                  engine: list[Gradients], labels: list[str]
                  ) -> list[list[tuple[np.ndarray, Gradients, float]]]:
    """A second backward on the same graph and upstreams must give the same gradients, bit
    for bit (torch's reentrancy check); then, per output, the other upstreams checked with
    the engine's gradients for them and the projection's sign: every output's negated one
    (a VJP that drops g's sign, or takes its logarithm, is right for one sign only, and a
    standard normal v of few elements may have one sign), and for an output of two or
    more axes its upstream in Fortran order, as a transpose downstream gives it (a VJP
    that assumes a C array g, writing through reshape(-1) of an array like it, is right
    for one layout only)."""
    for out, v, first in zip(outputs, upstreams, engine):
        for label, a, b in zip(labels, first, _engine_gradients(out, v, wrt)):
            if not np.array_equal(a, b, equal_nan=True):
                raise GradcheckError(
                    f"gradcheck: two backward passes on the same graph and upstream gradient "
                    f"gave two gradients of {label}: a VJP writes into an array it is given "
                    f"(an operand or output the graph keeps), reads what a later forward "
                    f"call changed (a cache of the op's own), or computes at random")
    others: list[list[tuple[np.ndarray, Gradients, float]]] = []
    for out, v in zip(outputs, upstreams):
        mirrored = [(-v, _engine_gradients(out, -v, wrt), -1.0)]
        if v.ndim >= 2:
            fortran = np.asfortranarray(v)
            mirrored.append((fortran, _engine_gradients(out, fortran, wrt), 1.0))
        others.append(mirrored)
    return others


def _run_elsewhere(f: Callable[..., Any], arrays: list[Any], positions: tuple[int, ...],
                   parameters: list[Tensor], eps: float, seed: int) -> None:
    """f once more, under no_grad, with every element of every argument and parameter
    checked moved at once, each by its own step in [eps / 2, eps] (drawn from `seed`), then
    the parameters' arrays back: the numerical side's last call moves one array only, so an
    op's cache of an earlier argument would still hold the values the graph was recorded at,
    and a VJP reading it (not its own saved values) would pass; and one step for all would
    leave what f computes of differences (x - max(x), x - y) as it was, bit for bit."""
    rng = np.random.default_rng(seed)

    def moved(a: np.ndarray) -> np.ndarray:
        return a + eps * rng.uniform(0.5, 1.0, np.shape(a))

    held = [p.data for p in parameters]
    try:
        for p, array in zip(parameters, held):
            p.data = moved(array)
        with no_grad():
            f(*(Tensor(moved(a)) if i in positions else a for i, a in enumerate(arrays)))
    finally:
        for p, array in zip(parameters, held):
            p.data = array


def _check_unchanged(wrt: list[Tensor], before: list[np.ndarray], labels: list[str],
                     what: str) -> None:
    for t, array, label in zip(wrt, before, labels):
        if not np.array_equal(t._data, array, equal_nan=True):
            raise GradcheckError(
                f"gradcheck: {what} changed the values of {label}: an op's forward or VJP "
                f"writes into an array it is given (the tensor's own), which changes the "
                f"caller's tensor and the gradients computed from it")


def _numerical_side(f: Callable[..., Any], arrays: list[Any], positions: tuple[int, ...],
                    parameters: list[Tensor], upstreams: list[np.ndarray],
                    eps: float) -> list[np.ndarray]:
    """Central differences of every output's projection <v, output>, for each argument at
    `positions` then each parameter: arrays of shape (outputs,) + the perturbed one's.
    `f` is called under no_grad with the arguments at `positions` as float64 Tensors (that
    do not require grad) and the others as they are."""

    def outputs() -> list[np.ndarray]:
        # f gets Tensors, as on the engine side (so t.exp() works), made anew from the
        # perturbed arrays at each call.
        inputs = [Tensor(a) if i in positions else a for i, a in enumerate(arrays)]
        return [np.asarray(out._data if isinstance(out, Tensor) else out)
                for out in _as_outputs(f(*inputs))[0]]

    def projected(plus: list[np.ndarray], minus: list[np.ndarray]) -> np.ndarray:
        # The outputs' differences, then their projections: an output the element does not
        # move differs by exactly 0, so only the rounding of the outputs it moves counts
        # (a projection's own, |<v, output>| 2^-52 / 2 eps, would land on every element).
        # In NumPy, not the engine: an op's mistake must not cancel in it too.
        return np.array([np.sum((p - m) * v) for p, m, v in zip(plus, minus, upstreams)])

    with no_grad():
        return ([_central_differences(outputs, arrays[i], eps, projected) for i in positions]
                + [_central_differences(outputs, p.data, eps, projected) for p in parameters])


def _checked_positions(args: Sequence[Any], argnums: int | Sequence[int] | None,
                       has_parameters: bool) -> tuple[int, ...]:
    """The arguments gradcheck perturbs: those at `argnums` if given, else the Tensors that
    require grad, else (nothing marked, no parameters either) all but the integer and
    boolean ones."""
    if argnums is not None:
        return argnum_positions(argnums, len(args), "gradcheck")
    marked = tuple(i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad)
    if marked or has_parameters:
        return marked
    return tuple(i for i, a in enumerate(args) if not _integer_data(a))


def _integer_data(a: Any) -> bool:
    """Whether `a` holds integers or booleans (labels, indices, masks): data, not a point
    that a step of eps can move."""
    return not isinstance(a, Tensor) and np.asarray(a).dtype.kind in "biu"


def _float32_backward(f: Callable[..., Any], arrays: list[Any], positions: tuple[int, ...],
                      parameters: list[Tensor]) -> None:
    """f and a backward pass once more, on float32 copies of the checked arguments and
    parameters, for the VJPs' dtypes only (`_watch_vjps`): in float64 a VJP that computes
    in float64 whatever its operands' dtype is right, and the engine casts a leaf's .grad
    to its dtype, so a float32 model's float64 gradients would go unseen. Where f's forward
    cannot run in float32 (a scan's float32 carry meeting float64 data, an op made for
    float64 only), there is nothing to check, and the pass ends."""
    if is_anomaly_enabled():  # off for this pass: float32 values may overflow where float64's
        token = modes._mode.set(modes.current_mode() & ~modes.ANOMALY)  # do not (not what it
        try:  # checks), and anomaly mode would stop it there
            return _float32_backward(f, arrays, positions, parameters)
        finally:
            modes._mode.reset(token)
    arrays = [a.astype(np.float32) if i in positions else a for i, a in enumerate(arrays)]
    leaves = {i: Tensor(arrays[i], requires_grad=True) for i in positions}
    wrt = [leaves[i] for i in positions] + parameters
    # (values of a float64 domain may overflow in float32: only dtypes are checked here)
    start = next(tape._tape_position)
    with _holding(parameters, np.float32), enable_grad(), np.errstate(all="ignore"):
        try:
            result = f(*(leaves.get(i, a) for i, a in enumerate(arrays)))
        except Exception:  # noqa: BLE001 (f made for float64 only: nothing to check here)
            return
        outputs = [out for out in _as_outputs(result)[0]
                   if isinstance(out, Tensor) and out.requires_grad]
        _watch_vjps(_nodes_above(outputs, start), "in a backward pass on float32 copies of "
                    "the arguments and parameters checked, ")
        for out in outputs:  # (a VJP failing on float32 fails for a float32 model: raised)
            gradients(out, wrt, grad=np.ones(out.shape), retain_graph=True)


def _nodes_above(outputs: list[Tensor], start: int) -> list[Node]:
    """The nodes of the graph above `outputs` (that its backward passes sweep) that f
    recorded (tape positions from `start` on), not those of a graph made before it, which
    the caller's own backward still runs."""
    stack: list[Any] = [out._node for out in outputs]
    seen: dict[Node, None] = {}
    while stack:
        node = stack.pop()
        if type(node) is Node and node not in seen and node.vjps is not None \
                and node.position > start:
            seen[node] = None
            stack.extend(node.inputs)
    return list(seen)


def _refuse_down_casts(nodes: list[Node]) -> None:
    """A node whose output has a lower float precision than one of its operands (astype to
    float32 and back, inside f) makes the central differences too coarse: say so, rather
    than that the gradient is wrong."""
    for node in nodes:
        for x in node.inputs:
            if x is not None and x.dtype.kind == node.dtype.kind == "f" \
                    and x.dtype.itemsize > node.dtype.itemsize:
                raise TypeError(
                    f"gradcheck: f casts to a lower precision: '{node.name}' makes {node.dtype} "
                    f"of a {x.dtype} operand, while every argument and parameter checked is "
                    f"float64; central differences through {node.dtype} are too coarse to "
                    f"check a gradient")


def _watch_vjps(nodes: list[Node], where: str = "") -> None:
    """Wrap each VJP of `nodes` (as anomaly mode does) in `_watched`; `where` (a phrase) starts its
    messages. A node whose VJPs are one function (a compiled program's) is left as it is."""
    for node in nodes:
        if type(node.vjps) is tuple:
            node.vjps = tuple(vjp if x is None or vjp is None else
                              _watched(node.name, i, vjp, x.dtype, where)
                              for i, (x, vjp) in enumerate(zip(node.inputs, node.vjps)))


def _watched(op: str, i: int, vjp: Callable[..., Any], dtype: np.dtype,
             where: str) -> Callable[..., Any]:
    """`vjp` (operand i's of `op`, of `dtype`), given a copy of its upstream gradient g in
    g's layout (a C copy of a Fortran g would hide a VJP that assumes C order): it
    must leave g as it was (a write into the sweep's g would change what the node's other
    VJPs get, or the caller's seed), and return its operand's dtype (or the one g promotes it
    to), which the engine would hide by casting each leaf's .grad. (The engine's own VJPs
    may return a higher precision: pow takes a Python number's log in float64 on purpose.)"""
    own = getattr(getattr(vjp, "__wrapped__", vjp), "__module__", "").startswith("minigrad.")

    def watched(g: Any, *rest: Any, **options: Any) -> Any:
        if type(g) is not np.ndarray or g.dtype.kind != "f":  # (a scan node's parts)
            return vjp(g, *rest, **options)
        given = g.copy(order="K")
        try:
            result = vjp(given, *rest, **options)
        except GradcheckError:
            raise
        except Exception as error:
            if not where:  # (the check's own pass: the error is the user's to read as is)
                raise
            raise GradcheckError(
                f"gradcheck: {where}the VJP of '{op}' for operand {i} raised "
                f"{type(error).__name__}: {error} (a float32 model's backward would too)"
            ) from error
        if not np.array_equal(given, g, equal_nan=True):
            raise GradcheckError(
                f"gradcheck: {where}the VJP of '{op}' for operand {i} wrote into its upstream "
                f"gradient g: VJPs must not write into g (the sweep hands the same g to "
                f"the node's other VJPs); return a new array")
        if isinstance(result, (np.ndarray, np.generic)) and result.dtype.kind == "f" \
                and result.dtype not in (dtype, np.result_type(dtype, g.dtype)) \
                and not (own and result.dtype.itemsize > dtype.itemsize):
            raise GradcheckError(
                f"gradcheck: {where}the VJP of '{op}' for operand {i} returned {result.dtype} "
                f"for a {dtype} operand (its upstream gradient {g.dtype}): a VJP must return its "
                f"operand's dtype ({dtype}); the engine casts a leaf's .grad, hiding it")
        return result

    return watched


@contextmanager
def _holding(parameters: list[Tensor], dtype: Any) -> Iterator[None]:
    """Each parameter holds a copy of its values in `dtype` inside the block, and its own
    array again afterwards (even if the block raises): the original is never written to."""
    originals = [p.data for p in parameters]
    try:
        for p, array in zip(parameters, originals):
            p.data = array.astype(dtype)  # a copy, also of an array of that dtype
        yield
    finally:
        for p, array in zip(parameters, originals):
            p.data = array


def _as_outputs(out: Any) -> tuple[list[Any], bool]:
    """f's outputs as a list, and whether f returned several (a tuple or a list)."""
    return (list(out), True) if isinstance(out, (tuple, list)) else ([out], False)


def _check_outputs(outputs: list[Any], several: bool) -> None:
    """Outputs the engine can differentiate, in float64 (see `gradcheck`)."""
    if not outputs:
        raise TypeError("gradcheck: f returned an empty sequence; it must return a Tensor or a "
                        "tuple of Tensors")
    for k, out in enumerate(outputs):
        if not isinstance(out, Tensor):
            raise TypeError(
                f"gradcheck: f must return a Tensor when given Tensors, got "
                f"{type(out).__name__}" + (f" as output {k}" if several else ""))
        if out.requires_grad and out.dtype != np.float64:
            name = f"output {k} of f" if several else "f's output"
            raise TypeError(
                f"gradcheck: {name} is {out.dtype} while every argument and parameter checked "
                f"is float64: f casts to a lower precision, where central differences are too "
                f"coarse to check a gradient")


def _engine_gradients(out: Tensor, upstream: np.ndarray,
                      wrt: list[Tensor]) -> list[np.ndarray]:
    """The engine's gradient of <upstream, out> with respect to each of `wrt`: backward from
    `out` seeded with `upstream` itself, through `gradients` (so no `.grad` is touched); the
    graph is kept for the other outputs."""
    if not out.requires_grad:  # out ignores every input: a zero gradient, as numerically
        return [np.zeros_like(t.data) for t in wrt]
    return gradients(out, wrt, grad=upstream, retain_graph=True)


def _central_differences(evaluate: Callable[[], Any], x: np.ndarray, eps: float,
                         difference: Callable[[Any, Any], Any] = lambda p, m: p - m
                         ) -> np.ndarray:
    """d evaluate() / dx by central differences, perturbing `x` in place one element at a
    time and putting each element back exactly: `difference(evaluate() at x + eps, at x -
    eps)` over the step taken, k numbers (a number, or an array of shape (k,)); the result
    has shape (k,) + x.shape. The step is the stored x + eps less the stored x - eps: near
    1e6 they are 2 eps apart only to a few parts in 1e4, which divided by 2 eps would be the
    error of every such derivative."""
    g = None
    for j in np.ndindex(x.shape):
        original = x[j]
        x[j] = original + eps
        high = x[j]
        plus = evaluate()
        x[j] = original - eps
        taken = high - x[j]
        if taken == 0:
            x[j] = original
            raise ValueError(f"numerical gradient: eps {eps} is below the spacing of the "
                             f"values near {float(original)!r} (index {j}): x + eps == x - "
                             "eps; scale eps with the values")
        minus = evaluate()
        x[j] = original
        step = np.atleast_1d(difference(plus, minus)) / taken
        if g is None:
            g = np.zeros(step.shape + x.shape)
        g[(slice(None),) + j] = step
    if g is None:  # x has no elements
        value = evaluate()
        g = np.zeros(np.atleast_1d(difference(value, value)).shape + x.shape)
    return g


def _compare(label: str, through: str, engine: np.ndarray, numerical: np.ndarray,
             atol: float, rtol: float, upstream: str) -> None:
    excess = np.abs(engine - numerical) - (atol + rtol * np.abs(numerical))
    excess = np.where(np.isnan(excess), np.inf, excess)
    if excess.size and excess.max() > 0:
        worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
        e, n = engine[worst], numerical[worst]
        raise GradcheckError(
            f"gradcheck: gradient of {label} (shape {engine.shape}){through} is wrong at index "
            f"{tuple(int(k) for k in worst)}: engine {float(e)!r}, numerical {float(n)!r} "
            f"(|difference| {abs(e - n):.3g} > atol {atol} + rtol {rtol} * |numerical|; "
            f"{upstream})"
        )


def _upstreams(shapes: list[tuple[int, ...]], seed: int) -> list[np.ndarray]:
    """The upstream gradient v of each output's projection <v, output> (see `gradcheck`),
    drawn in turn from one generator."""
    rng = np.random.default_rng(seed)
    drawn = []
    for shape in shapes:
        if int(np.prod(shape)) != 1:
            drawn.append(rng.standard_normal(shape))
        else:
            sign = rng.choice([-1.0, 1.0])
            drawn.append(np.full(shape, sign * rng.uniform(*SCALAR_UPSTREAM)))
    return drawn


def _describe(upstream: np.ndarray, seed: int) -> str:
    if upstream.size == 1:
        return f"upstream gradient {float(upstream.reshape(())):.4g}, drawn from seed {seed}"
    layout = " in Fortran order" if not upstream.flags.c_contiguous else ""
    return f"upstream gradient standard normal{layout}, drawn from seed {seed}"


def _named_parameters(f: Any, params: Any) -> list[tuple[str, Tensor]]:
    """(name, tensor) pairs to check: from `params` (a Module or a mapping), or from `f` when
    it is a Module and `params` is None; a Module's frozen ones (requires_grad False) are
    not checked, as they get no gradient."""
    module = f if params is None else params
    if isinstance(module, Module):
        named: list[tuple[str, Tensor]] = [
            (name, p) for name, p in module.named_parameters() if p.requires_grad]
        if params is not None and not named:  # (else the arguments would be checked instead)
            raise ValueError(f"gradcheck: params= ({type(params).__name__}) has no parameter "
                             f"that requires grad (each is frozen, or it has none): nothing "
                             f"of it to check")
        return named
    if params is None:
        return []
    if not isinstance(params, Mapping):
        raise TypeError(f"gradcheck: params must be a Module or a mapping name -> Parameter, "
                        f"got {type(params).__name__}")
    named = [(str(name), p) for name, p in params.items()]
    for name, p in named:
        if not isinstance(p, Tensor) or not p.requires_grad:
            raise ValueError(f"gradcheck: params['{name}'] must be a Tensor that requires "
                             f"grad, got {type(p).__name__}"
                             f"{'' if not isinstance(p, Tensor) else ' with requires_grad=False'}")
    return named


def _checked_array(a: Any, i: int, who: str) -> np.ndarray:
    """Argument `i`, checked, as a float64 array; TypeError naming it (and `who`, the
    function called) if it is none: a dict of arrays, a Module."""
    try:
        return _float_array(a).astype(np.float64, copy=False)
    except (TypeError, ValueError) as error:
        hint = ("; a Module's parameters are checked with params= (or f the Module)"
                if isinstance(a, Module) else "; pass a tree's arrays as arguments of their own"
                if isinstance(a, (dict, list, tuple)) else "")
        raise TypeError(f"{who}: argument {i} ({type(a).__name__}) is not an array it can "
                        f"perturb ({error}){hint}") from None


def _float_array(a: Any) -> np.ndarray:
    """A private copy, with the Tensor constructor's dtype rule (floats kept, else float64)."""
    return tensor_array(a)


def _scalar(value: Any) -> float:
    data = value.data if isinstance(value, Tensor) else np.asarray(value)
    if data.size != 1:
        raise ValueError(f"numerical_grad: f must return a scalar, got shape {data.shape}")
    if data.dtype.kind == "f" and data.dtype.itemsize < 8:  # (a float32 model's, say)
        raise TypeError(f"numerical_grad: f returned {data.dtype} while the arguments "
                        f"differentiated are float64: f casts to a lower precision, where "
                        f"central differences are too coarse to give a gradient")
    return float(data.reshape(()))
