"""The optimizer shell shared by every update rule.

An optimizer works on *parameters*: any object with ``.data``, a writable floating-point
NumPy array that the optimizer updates **in place** (its identity, and any view of it, stay
valid; one replaced since by an array of another shape or dtype, or a read-only one, and
arrays of two parameters that overlap (one update would overwrite the other) are refused
by the step, ValueError, before anything changes), and
``.grad``, an array of the same shape or None (the parameter is then skipped for that step,
as in PyTorch). Optimizers never write to ``.grad``. ``minigrad.nn.Parameter`` and the
hand-coded reference models' parameters both fit, so one optimizer can drive either and
their trajectories can be compared step by step.

Each optimizer is one subclass of :class:`Optimizer` with

- ``bounds``: hyperparameter name -> its check (:class:`Real`, :class:`Boolean`,
  :class:`Pair`), the one place where a value is validated: at construction, on
  ``opt.lr = ...``, ``group["lr"] = ...``, in :meth:`Optimizer.check` and on loading;
- ``__init__`` with the hyperparameters as arguments and their defaults;
- the math, on flat arrays: ``init(h, p) -> state``, ``update(h, t, p, g, state) -> (step,
  new state)`` (the parameter moves to ``p - step``; ``h`` holds the group's
  hyperparameters as attributes, ``t`` counts the parameter's updates from 1) and, for a
  rule that takes the gradient elsewhere than at ``p``, ``look_ahead(h, state)``.
  ``init`` gives a parameter's state when it is first used, at its first step, from the
  hyperparameters then: one that seeds the state (RProp's ``step_init``) may be changed
  until then, as in PyTorch, where a parameter has no state before its first step.

Every rule is elementwise, so the shell lays the parameters of a group that share a dtype
end to end and runs the rule once for all of them: a step costs a few NumPy calls whatever
the number of parameters, plus a small copy per parameter in and out of the flat buffers,
and each element gets exactly the arithmetic it would get alone.

State dict (also what ``minigrad.save(opt, path)`` writes): a flat dict of arrays::

    "groups.<i>.<hyperparameter>"   0-d (or (2,) for betas) array, the group's value
    "groups.<i>.params"             the positions of the group's parameters
    "state.<j>.step"                updates applied to parameter j (0-d int64)
    "state.<j>.<name>"              the rule's state for parameter j, its shape and dtype

A parameter not updated yet (step 0) has no state of its own: its arrays are what ``init``
gives with the current hyperparameters, and loaded ones are checked, then replaced by
``init``'s at its first step.

``state_dict`` returns copies and ``load_state_dict`` stores copies. ``check_finite`` is a
safety switch, not part of the trajectory, and is not saved.
"""

from __future__ import annotations

import abc
import functools
import inspect
import itertools
import math
import numbers
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeAlias

import numpy as np

from minigrad.modes import TRACING, TraceError, current_mode
from minigrad.tensor import plain_array, unpickled_own

# NumPy's module __getattr__ keeps CPython 3.11 from caching `np.ndarray` (some 300
# instructions a lookup): the per-parameter loops of a step use this name.
_ndarray = np.ndarray

__all__ = ["Boolean", "HyperparameterTypeError", "NonFiniteGradientError", "Optimizer", "Pair",
           "ParamGroup", "ParameterLike", "Real", "State"]

Closure: TypeAlias = Callable[[], Any]
#: The state of a run of parameters under a rule: name -> flat array.
State: TypeAlias = dict[str, np.ndarray]


class ParameterLike(Protocol):
    """What an optimizer needs from a parameter."""

    data: np.ndarray
    grad: np.ndarray | None


class HyperparameterTypeError(TypeError, ValueError):
    """A hyperparameter of a wrong type (``lr="0.1"``, ``nesterov=1``): a TypeError, by
    Python's convention, and a ValueError, as every bad hyperparameter was before, so that
    ``except ValueError`` around a configuration still catches it."""


class NonFiniteGradientError(FloatingPointError, ValueError):
    """A gradient holds NaN or infinite values; raised before any parameter is changed.
    Both a FloatingPointError and a ValueError, so either ``except`` catches it."""


# --- the checks of hyperparameters -------------------------------------------------------


@dataclass(frozen=True)
class Real:
    """A finite real number in an interval; returns it as a float.

    ``Real(low=0.0)`` is ``>= 0``; ``low_open`` / ``high_open`` make a bound strict. A value
    that is no real number (a string, None, a bool, a tensor) raises TypeError (also a
    ValueError: :class:`HyperparameterTypeError`); one outside
    the interval, or NaN or infinite, ValueError. A 0-d NumPy array of a number is taken as
    that number.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __call__(self, owner: str, name: str, value: Any) -> float:
        if type(value) is np.ndarray and value.shape == () and value.dtype.kind in "iuf":
            value = value.item()
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise HyperparameterTypeError(f"{owner}: invalid {name}={value!r}: must be a real "
                                          f"number, got {type(value).__name__}")
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"{owner}: invalid {name}={value!r}: must be finite")
        if (self.low is not None and (v <= self.low if self.low_open else v < self.low)) or (
                self.high is not None and (v >= self.high if self.high_open else v > self.high)):
            raise ValueError(f"{owner}: invalid {name}={value!r}: must be {self}")
        return v

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}" if self.high is not None \
            else "a real number"


class Boolean:
    """True or False (NumPy's bools too); anything else, 1 included, is refused
    (:class:`HyperparameterTypeError`, a TypeError and a ValueError)."""

    def __call__(self, owner: str, name: str, value: Any) -> bool:
        if not isinstance(value, (bool, np.bool_)):
            raise HyperparameterTypeError(f"{owner}: invalid {name}={value!r}: must be True or "
                                          f"False, got {type(value).__name__}")
        return bool(value)


@dataclass(frozen=True)
class Pair:
    """Two numbers, each checked by ``each`` (Adam's betas); returns a tuple of floats. A
    value that is no tuple, list or 1-d array raises :class:`HyperparameterTypeError`; one
    of another length, ValueError."""

    each: Real

    def __call__(self, owner: str, name: str, value: Any) -> tuple[float, float]:
        if isinstance(value, np.ndarray):
            value = tuple(value.tolist()) if value.ndim == 1 else value
        if not isinstance(value, (tuple, list)):
            raise HyperparameterTypeError(f"{owner}: invalid {name}={value!r}: must be a pair, "
                                          f"got {type(value).__name__}")
        if len(value) != 2:
            raise ValueError(f"{owner}: invalid {name}={value!r}: must be a pair")
        first, second = (self.each(owner, f"{name}[{k}]", v) for k, v in enumerate(value))
        return first, second


LEARNING_RATE = Real(low=0.0)
FRACTION = Real(low=0.0, high=1.0, high_open=True)  # momentum, decay, betas
POSITIVE = Real(low=0.0, low_open=True)
NONNEGATIVE = Real(low=0.0)


def guard_in(owner: str, eps: float, dtype: np.dtype, name: str = "eps",
             why: str = "a zero gradient would give a NaN step") -> None:
    """Refuse `eps`, a denominator's guard (or another positive bound, `name`), where it
    rounds to 0 in the parameters' dtype (1e-8 in float16): an element whose gradients were
    all 0 would step by 0/0 = NaN (`why`)."""
    if _rounds_to_zero(eps, dtype):
        raise ValueError(f"{owner}: {name}={eps!r} is 0 in {dtype}, so {why}; use a value of "
                         f"at least {np.finfo(dtype).smallest_subnormal} (in practice far more: "
                         f"1e-4 for float16)")


def refuse_overflow(owner: str, what: str, squares: np.ndarray, before: np.ndarray,
                    g: np.ndarray) -> None:
    """OverflowError if a running mean of squared gradients (`what`, `before` this step)
    overflowed this step where the gradient is finite: in float16 (past 256) or float32 it
    would then be inf for good, every later step m / inf = 0, the element frozen. (float64
    needs gradients past 1e154; an element already inf or NaN, after a non-finite gradient
    let through with check_finite=False, is as that documents.) Raised while the step is
    computed, so no parameter changes."""
    if squares.dtype.itemsize >= 8 or math.isfinite(squares.max(initial=0.0)):
        return  # (squares >= 0: one max tells, NaN included)
    if (~np.isfinite(squares) & np.isfinite(before) & np.isfinite(g)).any():
        wider = "float32 (or float64)" if squares.dtype.itemsize < 4 else "float64"
        raise OverflowError(
            f"{owner}: {what}, the running mean of squared gradients, overflows "
            f"{squares.dtype} (gradients past {np.sqrt(np.finfo(squares.dtype).max):.3g}): "
            f"its elements would stop for good. Keep such parameters in {wider}, or scale "
            f"the loss down; no parameter was changed")


@functools.lru_cache(maxsize=256)
def _rounds_to_zero(eps: float, dtype: np.dtype) -> bool:
    # (Cached: a rule asks at every step, and a NumPy scalar costs more than the lookup.)
    return bool(dtype.type(eps) == 0)


# --- parameter groups ------------------------------------------------------------------


#: What a ParamGroup holds in its instance dict besides its hyperparameters.
_GROUP_ATTRIBUTES = frozenset({"_optimizer", "params", "_values"})


class ParamGroup:
    """Some of an optimizer's parameters and their hyperparameters, as in ``torch.optim``.

    ``group["lr"]`` or ``group.lr`` reads a hyperparameter; ``group["lr"] = 0.01`` sets it,
    checked by the optimizer's bounds (a bad or unknown name raises and changes nothing).
    ``group["params"]`` is the tuple of its parameters. As a dict: ``"lr" in group``,
    iteration over the keys (``"params"``, then the hyperparameters), ``keys()``,
    ``items()``, ``get(name, default)`` and ``dict(group)``.
    """

    def __init__(self, optimizer: Optimizer, params: tuple[Any, ...],
                 hyperparameters: dict[str, Any]) -> None:
        self.__dict__.update(_optimizer=optimizer, params=params)
        self._keep(hyperparameters)

    def _keep(self, values: dict[str, Any]) -> None:
        """Hold ``values``, each also as an instance attribute unless the group's own
        attributes take its name: a rule reads ``h.lr`` at every step, and an instance
        attribute is found at once, where ``__getattr__`` comes after a failed lookup."""
        attributes = self.__dict__
        for name in [name for name in attributes if name not in _GROUP_ATTRIBUTES]:
            del attributes[name]
        attributes["_values"] = values
        attributes.update((name, value) for name, value in values.items()
                          if name not in _GROUP_ATTRIBUTES and not hasattr(ParamGroup, name))

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no hyperparameter {name!r}") \
                from None

    def __getitem__(self, name: str) -> Any:
        return self.params if name == "params" else getattr(self, name)

    def __setitem__(self, name: str, value: Any) -> None:
        self._keep(self._optimizer.check(**{**self._values, name: value}))

    __setattr__ = __setitem__  # type: ignore[assignment]

    def keys(self) -> list[str]:
        return ["params", *self._values]

    def __contains__(self, name: object) -> bool:
        return name == "params" or name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def get(self, name: str, default: Any = None) -> Any:
        """``group[name]``, or ``default`` if the group has no such key."""
        return self.params if name == "params" else self._values.get(name, default)

    def items(self) -> list[tuple[str, Any]]:
        return [(name, self[name]) for name in self.keys()]

    def hyperparameters(self) -> dict[str, Any]:
        """Name -> value (a new dict)."""
        return dict(self._values)

    def __repr__(self) -> str:
        values = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"ParamGroup({len(self.params)} parameters, {values})"


# --- the shell -------------------------------------------------------------------------


class Optimizer(abc.ABC):
    """The PyTorch-style shell: parameter groups, ``zero_grad``, ``step(closure)``, the
    gradient checks, ``state_dict`` / ``load_state_dict``. Subclasses give the math.

    ``params`` is an iterable of parameters (a generator is fine: it is consumed once; a
    tensor computed by ops, not a leaf, is refused, ValueError, as in PyTorch: backward
    gives it no ``.grad``) or of dicts ``{"params": [...], "lr": ..., ...}``, one per
    group, whose other keys
    override the constructor's hyperparameters for that group. ``opt.lr = x`` sets a
    hyperparameter in every group (checked; it takes effect at the next step); reading
    ``opt.lr`` gives the groups' common value. With ``check_finite`` (the default) ``step``
    raises :class:`NonFiniteGradientError` before touching anything if a gradient holds
    NaN or inf; without it such values go through the arithmetic as IEEE-754 says.
    """

    #: Name in the registry (``minigrad.optim.create``).
    name: ClassVar[str] = ""
    #: Hyperparameter -> its check.
    bounds: ClassVar[dict[str, Callable[[str, str, Any], Any]]] = {}
    #: Whether ``update`` may return ``g`` or ``p`` (or a view of either) in its new state,
    #: or write ``g``: it then gets copies of the shell's flat buffers. A rule whose step and
    #: state are new arrays says False, which saves the two copies at every step.
    keeps_inputs: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A rule whose ``update`` or ``look_ahead`` is not that of the class that declared
        its ``keeps_inputs`` (or of a base of it) keeps its inputs: a False inherited from
        the rule it extends (SGD's, say), with an update of its own or of a mixin, would
        hand that update the shell's buffers, which the next step overwrites under a state
        that kept ``g``."""
        super().__init_subclass__(**kwargs)
        declared = next(c for c in cls.__mro__ if "keeps_inputs" in vars(c))
        for name in ("update", "look_ahead"):
            owner = next(c for c in cls.__mro__ if name in vars(c))
            if not issubclass(declared, owner):
                cls.keeps_inputs = True

    def __init__(self, params: Iterable[Any], defaults: Mapping[str, Any], *,
                 check_finite: bool = True) -> None:
        owner = type(self).__name__
        object.__setattr__(self, "check_finite", Boolean()(owner, "check_finite", check_finite))
        defaults = self.check(**defaults)
        self.param_groups = [ParamGroup(self, ps, self.check(**{**defaults, **extra}))
                             for ps, extra in _split_groups(params, owner)]
        self._buckets = [_Bucket(self, group, positions)
                         for group, positions in _positions(self.param_groups)]
        self._checked: list[np.ndarray] = []  # the views `_refuse_overlaps` last passed

    # ---- hyperparameters --------------------------------------------------------------

    @classmethod
    def check(cls, **hyperparameters: Any) -> dict[str, Any]:
        """The hyperparameters, each checked by its bound and normalised (``1`` -> ``1.0``);
        ValueError names a bad value, TypeError a value of a wrong type or an unknown name.
        Missing ones are checked at their defaults where they bound each other (RProp's step
        sizes)."""
        unknown = sorted(set(hyperparameters) - set(cls.bounds))
        if unknown:
            raise TypeError(f"{cls.__name__} ({cls.name!r}) has no hyperparameter "
                            f"{', '.join(unknown)}; accepted: {', '.join(cls.bounds)}")
        values = {name: cls.bounds[name](cls.__name__, name, value)
                  for name, value in hyperparameters.items()}
        defaults = {name: p.default for name, p in inspect.signature(cls).parameters.items()
                    if name in cls.bounds and p.default is not p.empty}
        cls.check_together({**defaults, **values})
        return values

    @classmethod
    def check_together(cls, values: dict[str, Any]) -> None:
        """Checks that involve several hyperparameters, given them all (or all but those
        without a default); none by default."""
        return None

    def __getattr__(self, name: str) -> Any:
        if name in type(self).bounds:
            values = {repr(group[name]) for group in self.param_groups}
            if len(values) == 1:
                return self.param_groups[0][name]
            raise AttributeError(f"{type(self).__name__}.{name} differs between the "
                                 f"parameter groups ({', '.join(sorted(values))}); read "
                                 f"opt.param_groups[i][{name!r}]")
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self).bounds:
            checked = [self.check(**{**g.hyperparameters(), name: value})
                       for g in self.param_groups]  # all checked before any is set
            for group, values in zip(self.param_groups, checked, strict=True):
                group._keep(values)
        elif name.startswith("_") or name in ("param_groups",):
            object.__setattr__(self, name, value)
        elif name == "check_finite":
            object.__setattr__(self, name, Boolean()(type(self).__name__, name, value))
        else:
            raise AttributeError(f"{type(self).__name__} has no hyperparameter {name!r}; "
                                 f"its hyperparameters: {', '.join(type(self).bounds)}")

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The first group's hyperparameters (all of them when there is one group)."""
        return self.param_groups[0].hyperparameters()

    @property
    def parameters(self) -> tuple[Any, ...]:
        """All parameters, group after group: the positions of the state dict."""
        return tuple(p for group in self.param_groups for p in group.params)

    # ---- the math (subclasses) ----------------------------------------------------------

    @abc.abstractmethod
    def init(self, h: ParamGroup, p: np.ndarray) -> State:
        """The state of parameters not updated yet, arrays shaped like ``p`` (whose values
        are not given); called at their first step, with the hyperparameters then."""

    @abc.abstractmethod
    def update(self, h: ParamGroup, t: int, p: np.ndarray, g: np.ndarray,
               state: State) -> tuple[np.ndarray, State]:
        """The t-th update from the gradient ``g`` at ``p``: ``(step, new state)``, the
        parameters moving to ``p - step``. New arrays only: ``p`` and ``state`` must not be
        written; ``g`` may be written, or kept in the state, only if ``keeps_inputs`` (the
        default) makes it the rule's own copy."""

    def look_ahead(self, h: ParamGroup, state: State) -> np.ndarray | None:
        """The move to where the gradient is taken, or None (at ``p``). A rule that moves
        needs a closure in ``step``; ``update`` then receives the moved point as ``p``."""
        return None

    def state_problem(self, h: ParamGroup, state: State) -> str | None:
        """What makes a loaded ``state`` impossible (e.g. a negative mean square)."""
        return None

    # ---- public API -------------------------------------------------------------------

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to None (the next backward pass starts afresh).
        Inside a traced function (minigrad.compile, minigrad.scan) it raises TraceError, as
        ``Module.zero_grad`` does: it would run only when traced, not on the replays, and
        the gradients would add up across them."""
        if current_mode() >= TRACING:
            raise TraceError(f"{type(self).__name__}.zero_grad() inside a traced function "
                             "(minigrad.compile, minigrad.scan) would run only when it is "
                             "traced, not on its replays; call it outside the function")
        for bucket in self._buckets:
            for p in bucket.params:
                p.grad = None

    def step(self, closure: Closure | None = None) -> Any:
        """Update every parameter that has a gradient; return the closure's loss.

        With a ``closure`` (zero the grads, compute the loss, call backward, return the
        loss) it is called exactly once, before the update; without one the current
        ``.grad`` values are used and the result is None. A rule with a look-ahead point
        needs the closure: the parameters sit at that point while it runs.

        Nothing changes unless the whole step succeeds: every gradient is checked (shape;
        finiteness unless ``check_finite=False``), every parameter's array too (its shape
        and dtype, those it had when the optimizer was made, that it is writable and that
        no other parameter's array overlaps it, as the closure leaves them: ``.data`` is
        read anew), and every update computed before any parameter is written; if the
        closure or a check raises, the parameters are moved back from the look-ahead point
        (whose move checks the arrays first).
        """
        if closure is not None and not callable(closure):
            raise TypeError(f"{type(self).__name__}.step: closure must be callable, got "
                            f"{type(closure).__name__}")
        # (Loops, not comprehensions, over the buckets: there is usually one, and a
        # comprehension's own call costs as much as a bucket's bookkeeping.)
        if type(self).look_ahead is Optimizer.look_ahead:  # no move: nothing to move back
            loss = None if closure is None else closure()
            commits = []
            for bucket in self._buckets:
                commits.append(bucket.compute(None))
            self._refuse_overlaps()
        else:
            loss, commits = self._step_from_look_ahead(closure)
        for commit in commits:
            commit()
        return loss

    def _step_from_look_ahead(self, closure: Closure | None) -> tuple[Any, list[Callable]]:
        """The closure's loss and the commits, the gradient taken at the look-ahead point;
        the parameters are back where they were if anything raises."""
        buckets, moves, read = self._buckets, [], []
        for bucket in buckets:
            moves.append(self.look_ahead(bucket.group, bucket.current_state()))
        if closure is None and any(move is not None for move in moves):
            raise TypeError(
                f"{type(self).__name__}.step needs a closure: the gradient is taken at the "
                f"look-ahead point, which exists only inside step. Pass a function that zeroes "
                f"the grads, computes the loss, calls backward and returns the loss.")
        for bucket in buckets:  # every shape checked before any move
            read.append(bucket.read_into_buffer())
        # (Overlapping arrays are refused after the closure: moved back, overlapping ones
        # get their shared values again, which were one.)
        real: list[np.ndarray | None] = [None] * len(buckets)  # where moved buckets were
        try:
            for i, move in enumerate(moves):
                if move is not None:
                    real[i] = buckets[i].move(*read[i], move)
            # (No array kept past the move: a graph the closure records shares each one
            # with no copy, and `.data` hands it back with none once the graph is freed.)
            del read
            loss = None if closure is None else closure()
            commits = []
            for bucket, point in zip(buckets, real, strict=True):
                commits.append(bucket.compute(point))
            self._refuse_overlaps()
        except BaseException:
            for bucket, point in zip(buckets, real):
                if point is not None:
                    bucket.move_back(point)
            raise
        return loss, commits

    def _refuse_overlaps(self) -> None:
        """ValueError naming two parameters whose arrays overlap (``b.data = a.data``, views
        of one buffer), raised before any is written: each update would be computed from
        the old values and the last write would win, losing the other. Only arrays of one
        owner (``_owner``) are compared, and only where some array is a view or one array
        is listed twice: the usual step (each parameter's own array, a new copy after each
        forward pass) asks only that. A masked array is refused here too (TypeError): its
        mask would be ignored, then lost when the update is written. The arrays: those
        each bucket's ``compute`` read."""
        buckets = self._buckets
        arrays = buckets[0].arrays if len(buckets) == 1 else [
            a for bucket in buckets for a in bucket.arrays]
        for a in arrays:  # (a loop: a generator for all() costs twice this, every step)
            if type(a) is not _ndarray or a.base is not None:
                break
        else:
            if len(set(map(id, arrays))) == len(arrays):
                return
        checked = self._checked  # (views of one buffer, the same each step: checked once)
        if len(checked) == len(arrays) and all(map(operator.is_, checked, arrays)):
            return
        positions = [j for bucket in self._buckets for j in bucket.positions]
        owner = type(self).__name__
        by_owner: dict[int, list[int]] = {}
        for k, array in enumerate(arrays):
            if type(array) is not np.ndarray:
                plain_array(array, f"{owner}.step: parameter {positions[k]}'s .data")
            by_owner.setdefault(id(_owner(array)), []).append(k)
        unknown = by_owner.pop(id(_UNKNOWN_OWNER), [])  # (compared with every array)
        pairs = [pair for same in by_owner.values() for pair in itertools.combinations(same, 2)]
        pairs += [(u, k) for n, u in enumerate(unknown) for k in range(len(arrays))
                  if k not in unknown[:n + 1]]
        for k, m in pairs:
            if np.shares_memory(arrays[k], arrays[m]):
                i, j = sorted((positions[k], positions[m]))
                raise ValueError(
                    f"{owner}.step: parameters {i} and {j} share memory (one array, or "
                    f"overlapping views of one buffer): each update would be computed "
                    f"from the old values and the last write would undo the other; no "
                    f"parameter was changed. Give each its own array (.data = "
                    f"array.copy()), or pass a tied parameter once")
        self._checked = list(arrays)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to resume the run exactly, as copies (see the module doc)."""
        out: dict[str, np.ndarray] = {}
        for i, group in enumerate(self.param_groups):
            for name, value in group.hyperparameters().items():
                out[f"groups.{i}.{name}"] = np.array(value)
            out[f"groups.{i}.params"] = np.array(self._group_positions(i), dtype=np.int64)
        for bucket in self._buckets:
            for j, entry in bucket.entries():
                out.update({f"state.{j}.{k}": v for k, v in entry.items()})
        return dict(sorted(out.items(), key=lambda item: _order(item[0])))

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyperparameters and state from :meth:`state_dict` output.

        Everything is validated before anything changes: the names (exactly those of this
        optimizer's state dict), each group's parameters and hyperparameters (by the
        bounds), each step count (an integer in [0, 2**63 - 1], an int64) and each state
        array (real numbers, the parameter's shape, finite once cast to its dtype, inside
        the rule's domain). Any defect raises a one-line ValueError naming it; a masked
        array, TypeError, as minigrad's ops refuse one (its values would be loaded, its mask
        ignored). The state arrays of a parameter at step 0 are checked but not used: its
        first step starts from ``init``'s.
        """
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {type(state_dict).__name__}")  # noqa: TRY004
        refuse_masked(where, state_dict)
        mine = self.state_dict()
        missing = [k for k in mine if k not in state_dict]
        extra = [str(k) for k in state_dict if k not in mine]
        if missing or extra:
            problems = ([f"missing {_shown(missing)}"] if missing else []) + (
                [f"unexpected {_shown(extra)}"] if extra else [])
            raise ValueError(f"{where}: the state dict does not fit this optimizer: "
                             + "; ".join(problems))
        groups = []
        for i, group in enumerate(self.param_groups):
            positions = state_dict[f"groups.{i}.params"]
            if not np.array_equal(np.asarray(positions), mine[f"groups.{i}.params"]):
                raise ValueError(f"{where}: group {i} holds the parameters {positions!s}, "
                                 f"this optimizer's group {i} {mine[f'groups.{i}.params']!s}")
            values = {name: _value(state_dict[f"groups.{i}.{name}"])
                      for name in group.hyperparameters()}
            try:
                checked = self.check(**values)
            except TypeError as error:  # (a defect of the file: ValueError, as any other)
                raise ValueError(f"{where}: group {i}: {error}") from None
            groups.append(ParamGroup(self, group.params, checked))
        loaded = [b.load(where, state_dict, groups[self.param_groups.index(b.group)])
                  for b in self._buckets]
        for group, new in zip(self.param_groups, groups, strict=True):
            group._keep(new.hyperparameters())
        for commit in loaded:
            commit()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.param_groups))})"

    def _group_positions(self, index: int) -> list[int]:
        start = sum(len(g.params) for g in self.param_groups[:index])
        return list(range(start, start + len(self.param_groups[index].params)))


#: Up to this many gradient values, check_finite sums them in Python (faster below ~100).
_SUMMED_IN_PYTHON = 64


class _Bucket:
    """The parameters of one group that share a dtype, laid end to end: flat state arrays,
    and flat buffers through which the parameters are read and written and the gradients
    read, each parameter's part of them a view of its shape (so that laying an array in is
    one small copy; ``np.concatenate`` costs more)."""

    def __init__(self, optimizer: Optimizer, group: ParamGroup,
                 positions: list[tuple[int, Any]]) -> None:
        self.optimizer, self.group = optimizer, group
        self.positions = [j for j, _ in positions]
        self.params = [p for _, p in positions]
        self.shapes = [p.data.shape for p in self.params]
        ends = np.cumsum([0] + [p.data.size for p in self.params]).tolist()
        self.slices = [slice(a, b) for a, b in zip(ends, ends[1:], strict=False)]
        self.dtype = self.params[0].data.dtype
        self.buffer = np.empty(ends[-1], self.dtype)
        self.gradients = np.empty(ends[-1], self.dtype)  # laid out as the buffer
        self.views, self.gradient_views = self.views_of(self.buffer), self.views_of(self.gradients)
        self.steps = [0] * len(self.params)
        self.arrays: list[np.ndarray] = []  # the parameters' arrays, as `compute` last read them
        self.computed: tuple[State, int] = ({}, 0)  # the new state and step count to commit
        self.state = optimizer.init(group, self.buffer)  # its names and layout; see below
        self.started = False  # every parameter updated at least once

    def views_of(self, flat: np.ndarray) -> list[np.ndarray]:
        """Each parameter's part of ``flat`` (the buffer, the gradients), a view of its shape."""
        return [flat[s].reshape(shape) for s, shape in zip(self.slices, self.shapes, strict=True)]

    def __getstate__(self) -> dict[str, Any]:
        """What pickle and ``copy.deepcopy`` copy: all but the views into the buffers (a
        view's copy is an array of its own, which the copy's steps would fill and read
        instead of its buffers), and the arrays of a step under way."""
        state = dict(self.__dict__)
        del state["views"], state["gradient_views"]
        state["arrays"], state["computed"] = [], ({}, 0)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """The views rebuilt into the copied buffers, each buffer an array of its own (one
        unpickled from out-of-band buffers would be the original's), and the dtype the
        buffer's: after a deep copy NumPy's own object, which a step's usual path tells by
        identity. (Unpickled arrays hold equal copies of NumPy's dtype objects, so an
        unpickled optimizer's steps take the general path: the same numbers, a few
        microseconds more.)"""
        self.__dict__.update(state)
        self.buffer, self.gradients = unpickled_own(self.buffer), unpickled_own(self.gradients)
        self.dtype = self.buffer.dtype
        self.views, self.gradient_views = self.views_of(self.buffer), self.views_of(self.gradients)

    def current_state(self) -> State:
        """The rule's state, with that of the parameters not updated yet given by ``init``
        now: a hyperparameter that seeds the state takes effect at each parameter's first
        step, whenever it was set before."""
        if self.started:
            return self.state
        fresh = self.optimizer.init(self.group, self.buffer)
        if not any(self.steps):
            return fresh
        state = {k: v.copy() for k, v in self.state.items()}
        for s, t in zip(self.slices, self.steps, strict=True):
            if t == 0:
                for k, v in state.items():
                    v[s] = fresh[k][s]
        return state

    @property
    def owner(self) -> str:
        return type(self.optimizer).__name__

    def read(self) -> list[np.ndarray]:
        """The parameters' arrays, each checked (``check_array``). Read once per use: a
        parameter's ``.data`` may hand out a new array after a forward pass (a Tensor copies
        on write)."""
        arrays, dtype = [p.data for p in self.params], self.dtype
        for j, data, shape in zip(self.positions, arrays, self.shapes, strict=True):
            if data.dtype is not dtype or data.shape != shape or not data.flags.writeable:
                self.check_array(j, data, shape)  # (the usual case asks no more)
        return arrays

    def check_array(self, j: int, data: np.ndarray, shape: tuple[int, ...]) -> None:
        """ValueError naming parameter ``j`` unless ``data`` can take its update in place:
        checked before any parameter is written, so that no write fails halfway."""
        problem = self.array_problem(data, shape)
        if problem is not None:
            raise ValueError(f"{self.owner}.step: parameter {j} {problem}; no parameter was "
                             f"changed")

    def array_problem(self, data: np.ndarray, shape: tuple[int, ...]) -> str | None:
        """What keeps ``data`` (a parameter's array, read anew: it may have been replaced
        since the optimizer was made) from taking an update of the bucket's shape and dtype,
        or None. Another floating dtype would round the update silently."""
        if data.shape != shape:
            return f"has shape {data.shape}, expected {shape}"
        if data.dtype.type is not self.dtype.type:  # (byte order aside)
            return (f"has dtype {data.dtype}, expected {self.dtype}, its dtype when the "
                    f"optimizer was made (make a new optimizer for the new dtype)")
        if not data.flags.writeable:
            return "has a read-only .data (the optimizer updates it in place)"
        return None

    def read_into_buffer(self) -> tuple[list[np.ndarray], bool]:
        """``read()``, and whether the arrays were also copied into the buffer: yes if each
        has the bucket's dtype (one small copy each, cheaper than a concatenation)."""
        arrays, dtype, laid = [], self.dtype, True
        for j, p, shape, view in zip(self.positions, self.params, self.shapes, self.views,
                                     strict=True):
            data = p.data
            if data.dtype is dtype and data.shape == shape and data.flags.writeable:
                if laid:  # (the usual case asks no more)
                    view[...] = data
            else:
                self.check_array(j, data, shape)  # passed: a dtype not the bucket's object
                laid = False
            arrays.append(data)
        return arrays, laid

    def move(self, arrays: list[np.ndarray], laid: bool, move: np.ndarray) -> np.ndarray:
        """Move the parameters (their ``arrays``) by ``move`` to the look-ahead point;
        return where they were, end to end. ``laid``: the buffer holds the arrays already."""
        if laid:
            point = self.buffer.copy()
            np.add(point, move, out=self.buffer)
            self.write(arrays)
        else:
            point = np.concatenate(arrays, axis=None)
            self.scatter(arrays, point + move)
        return point

    def write(self, arrays: list[np.ndarray]) -> None:
        """Copy the buffer into ``arrays``, each of the bucket's dtype (``scatter`` in
        general)."""
        for data, view in zip(arrays, self.views, strict=True):
            data[...] = view

    def scatter(self, arrays: list[np.ndarray], flat: np.ndarray) -> None:
        if flat is not self.buffer:
            np.copyto(self.buffer, flat)
        for data, view in zip(arrays, self.views, strict=True):
            data[...] = view  # (checked: of the bucket's dtype, up to byte order)

    def move_back(self, point: np.ndarray) -> None:
        """Write ``point``, where the parameters were before their move, into their arrays
        read anew (the closure may have replaced them), but into none that cannot take it
        (``array_problem``): the error that brought us here is the one to report."""
        arrays = [p.data for p in self.params]
        kept = [k for k, (data, shape) in enumerate(zip(arrays, self.shapes, strict=True))
                if self.array_problem(data, shape) is None]
        if len(kept) == len(arrays):
            self.scatter(arrays, point)
        else:  # rare: a scatter of the others
            np.copyto(self.buffer, point)
            for k in kept:
                np.copyto(arrays[k], self.views[k])

    def compute(self, real: np.ndarray | None) -> Callable[[], None]:
        """Check the gradients and compute the update; return what writes it. ``real``:
        where the parameters were before a move to the look-ahead point, if they moved."""
        arrays = self.lay_gradients_and_arrays()
        steps = self.steps
        if arrays is None or steps.count(steps[0]) != len(steps):
            return self.compute_apart(real)
        self.arrays = arrays  # (for the optimizer's check of overlaps)
        optimizer, g, p = self.optimizer, self.gradients, self.buffer
        if optimizer.check_finite:
            self.check_finite(g)
        if optimizer.keeps_inputs:  # the rule's own: it may keep them in its state
            g, p = g.copy(), p.copy()
        t = steps[0] + 1
        step, state = optimizer.update(self.group, t, p, g, self.current_state())
        np.subtract(p, step, out=self.buffer)  # the buffer: scatter writes it
        self.computed = state, t  # (kept here: a closure costs more to make)
        return self.commit

    def commit(self) -> None:
        """Write what ``compute`` computed in the usual case: the buffer into the arrays."""
        self.write(self.arrays)
        (self.state, t), self.computed = self.computed, ({}, 0)
        self.steps, self.started = [t] * len(self.steps), True
        self.arrays = []  # (kept, they would make the next forward pass copy them)

    def lay_gradients_and_arrays(self) -> list[np.ndarray] | None:
        """The usual case in one pass: copy each parameter's gradient into
        ``self.gradients`` and its array (read anew: the closure may have replaced it) into
        the buffer, and return the arrays; None if a gradient is not an array, a gradient
        or array has another dtype or shape than the bucket's, or an array is read-only
        (``compute_apart`` then, which sorts out what is allowed and what is refused)."""
        dtype, arrays = self.dtype, []
        for p, shape, g_view, view in zip(self.params, self.shapes, self.gradient_views,
                                          self.views, strict=True):
            g = p.grad
            if type(g) is not _ndarray or g.dtype is not dtype or g.shape != shape:
                return None
            g_view[...] = g
            data = p.data
            if data.dtype is not dtype or data.shape != shape or not data.flags.writeable:
                return None
            view[...] = data
            arrays.append(data)
        return arrays

    def compute_apart(self, real: np.ndarray | None) -> Callable[[], None]:
        """``compute`` in general: a gradient missing, of another type or dtype (cast as
        by ``np.concatenate``), or of a wrong shape (ValueError), an array of another dtype
        or shape or read-only (ValueError, from ``read``), or step counts that differ (runs
        of parameters updated apart)."""
        grads = [p.grad for p in self.params]
        present = [g is not None for g in grads]
        flat = []
        for j, g, shape, here in zip(self.positions, grads, self.shapes, present, strict=True):
            if not here:
                g = np.zeros(shape, self.dtype)
            elif type(g) is not np.ndarray:
                given = g
                g = plain_array(g, f"{self.owner}.step: gradient of parameter {j}")
                self.check_gradient_type(j, g, given)
            if g.shape != shape:
                self.check_gradient_type(j, g, g)
                raise ValueError(f"{self.owner}.step: parameter {j} has shape {shape} and "
                                 f"gradient shape {g.shape}; expected both {shape}")
            flat.append(g)
        try:
            with np.errstate(over="ignore"):  # (check_finite names a finite value too large)
                g = np.concatenate(flat, axis=None, dtype=self.dtype, casting="same_kind")
        except TypeError:  # (NumPy's "Cannot cast array data ...": which one, and why)
            for j, g in zip(self.positions, flat, strict=True):
                self.check_gradient_type(j, g, g)
            raise
        if self.optimizer.check_finite:
            self.check_finite(g, flat)
        arrays = self.arrays = self.read()  # anew: the closure may have replaced them
        p = np.concatenate(arrays, axis=None)
        steps, current = self.steps, self.current_state()
        if all(present) and steps.count(steps[0]) == len(steps):
            step, state = self.optimizer.update(self.group, steps[0] + 1, p, g, current)
            new_p = np.subtract(p, step, out=self.buffer)  # the buffer: scatter's first copy
            steps = [steps[0] + 1] * len(steps)
        else:  # runs of parameters with a gradient and one step count, each apart
            new_p = (p if real is None else real).copy()
            state = {k: v.copy() for k, v in current.items()}
            for (t, run) in self.runs(present):
                part, new = self.optimizer.update(self.group, t, p[run], g[run],
                                                  {k: v[run] for k, v in current.items()})
                new_p[run] = p[run] - part
                for k, v in new.items():
                    state[k][run] = v
            steps = [t + here for t, here in zip(steps, present, strict=True)]

        def commit() -> None:
            self.scatter(arrays, new_p)
            self.state, self.steps, self.started = state, steps, 0 not in steps
            self.arrays = []

        return commit

    def check_gradient_type(self, j: int, g: np.ndarray, given: Any) -> None:
        """TypeError naming parameter ``j`` unless its gradient ``g`` (``given`` as set, an
        array or not) holds real numbers, which cast to the parameters' floating dtype:
        a complex one would lose its imaginary part. (On the error paths only.)"""
        if g.dtype.kind not in "biuf":
            what = "" if type(given) is np.ndarray else f"a {type(given).__name__} "
            raise TypeError(f"{self.owner}.step: the gradient of parameter {j} is {what}of "
                            f"dtype {g.dtype}, not real numbers; no parameter was changed")

    def runs(self, present: list[bool]) -> list[tuple[int, slice]]:
        """(t, slice) for each run of neighbours with a gradient and the same step count."""
        found: list[tuple[int, slice]] = []
        for s, t, here in zip(self.slices, self.steps, present, strict=True):
            if not here:
                continue
            if found and found[-1][0] == t + 1 and found[-1][1].stop == s.start:
                found[-1] = (t + 1, slice(found[-1][1].start, s.stop))
            else:
                found.append((t + 1, s))
        return found

    def check_finite(self, g: np.ndarray, given: Sequence[np.ndarray] | None = None) -> None:
        # `given`: the gradients before their cast to the parameters' dtype, if any (a
        # finite gradient can overflow a narrower dtype: that is said as such).
        # One sum: any NaN or inf makes it non-finite (so can an overflow of large finite
        # values: only then are the bad values looked for). A few values are summed as
        # Python floats, which raise no NumPy warning: setting NumPy's error state would
        # cost more than their sum.
        if g.size <= _SUMMED_IN_PYTHON:
            if math.isfinite(sum(g.tolist())):
                return
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                if math.isfinite(g.sum()):
                    return
        for i, (j, s, shape) in enumerate(zip(self.positions, self.slices, self.shapes,
                                              strict=True)):
            bad = g[s].size - int(np.count_nonzero(np.isfinite(g[s])))
            before = None if given is None else given[i]
            if bad and before is not None and before.dtype != g.dtype \
                    and np.isfinite(before).all():
                raise NonFiniteGradientError(
                    f"{self.owner}.step: gradient of parameter {j} (shape {shape}, "
                    f"{before.dtype}) has {bad} finite value{'s' if bad != 1 else ''} beyond "
                    f"the range of {g.dtype}, the parameter's dtype; no parameter was changed")
            if bad:
                raise NonFiniteGradientError(
                    f"{self.owner}.step: gradient of parameter {j} (shape {shape}) has {bad} "
                    f"non-finite value{'s' if bad != 1 else ''}; no parameter was changed "
                    f"(check_finite=False disables this check)")

    def entries(self) -> Iterable[tuple[int, dict[str, np.ndarray]]]:
        state = self.current_state()
        for j, s, shape, t in zip(self.positions, self.slices, self.shapes, self.steps,
                                  strict=True):
            yield j, {"step": np.array(t, dtype=np.int64),
                      **{k: v[s].reshape(shape).copy() for k, v in state.items()}}

    def load(self, where: str, state_dict: Mapping[str, Any],
             group: ParamGroup) -> Callable[[], None]:
        steps, parts = [], []
        for j, shape in zip(self.positions, self.shapes, strict=True):
            steps.append(saved_count(where, f"state.{j}.step", state_dict[f"state.{j}.step"]))
            parts.append({k: _load_array(f"{where}: state of parameter {j}", k,
                                         state_dict[f"state.{j}.{k}"], shape, self.dtype)
                          for k in self.state})
            problem = self.optimizer.state_problem(group, parts[-1])
            if problem is not None:
                raise ValueError(f"{where}: state of parameter {j}: {problem}")
        state = {k: np.concatenate([part[k].reshape(-1) for part in parts]) if parts
                 else v for k, v in self.state.items()}

        def commit() -> None:
            self.steps, self.state, self.started = steps, state, 0 not in steps

        return commit


def _split_groups(params: Iterable[Any], owner: str) -> list[tuple[tuple[Any, ...], dict]]:
    """(parameters, hyperparameter overrides) per group, every parameter checked."""
    if hasattr(params, "data") and hasattr(params, "grad"):
        raise TypeError(f"{owner}: params must be an iterable of parameters (e.g. "
                        f"model.parameters()), got a single parameter {type(params).__name__}; "
                        f"wrap it in a list")
    try:
        items = list(params)
    except TypeError:
        raise TypeError(f"{owner}: params must be an iterable of parameters, got "
                        f"{type(params).__name__}") from None
    if not items:
        raise ValueError(f"{owner}: got an empty parameter list; nothing to optimize")
    if not all(isinstance(item, Mapping) for item in items):
        if any(isinstance(item, Mapping) for item in items):
            raise TypeError(f"{owner}: params mixes parameters and group dicts; give either")
        items = [{"params": items}]
    groups: list[tuple[tuple[Any, ...], dict]] = []
    seen: set[int] = set()
    for k, item in enumerate(items):
        if "params" not in item:
            raise TypeError(f"{owner}: parameter group {k} has no 'params'")
        extra = {key: value for key, value in item.items() if key != "params"}
        ps = item["params"]
        ps = tuple([ps] if hasattr(ps, "data") else ps)
        if not ps:
            raise ValueError(f"{owner}: parameter group {k} is empty")
        for p in ps:
            j = len(seen)
            data = getattr(p, "data", None)
            if not hasattr(p, "grad") or not isinstance(data, np.ndarray):
                raise TypeError(f"{owner}: parameter {j} ({type(p).__name__}) needs a NumPy "
                                f"array .data and a .grad attribute")
            if getattr(p, "is_leaf", True) is False:  # (as PyTorch refuses one)
                raise ValueError(f"{owner}: parameter {j} is not a leaf: a tensor computed by "
                                 f"ops (shape {data.shape}), which backward gives no .grad and "
                                 f"whose values the next forward pass computes anew; optimize "
                                 f"the leaves it is computed from (model.parameters())")
            plain_array(data, f"{owner}: parameter {j}'s .data")  # (masked: refused)
            if not np.issubdtype(data.dtype, np.floating):
                raise TypeError(f"{owner}: parameter {j} has dtype {data.dtype}; it must be a "
                                f"floating-point array to be updated in place")
            if not data.flags.writeable:
                raise ValueError(f"{owner}: parameter {j}'s .data is read-only")
            if id(p) in seen:
                raise ValueError(f"{owner}: parameter {j} appears more than once; it would be "
                                 f"updated twice")
            seen.add(id(p))
        groups.append((ps, extra))
    return groups


def _positions(groups: list[ParamGroup]) -> list[tuple[ParamGroup, list[tuple[int, Any]]]]:
    """Per group and dtype, the (position, parameter) pairs: the buckets to build."""
    out, j = [], 0
    for group in groups:
        by_dtype: dict[np.dtype, list[tuple[int, Any]]] = {}
        for p in group.params:
            by_dtype.setdefault(p.data.dtype, []).append((j, p))
            j += 1
        out += [(group, members) for members in by_dtype.values()]
    return out


# The owner of arrays whose bases lead round (or on for ever): such an array is compared
# with every other, by `np.shares_memory` as views of one owner are.
_UNKNOWN_OWNER = object()


def _owner(array: np.ndarray) -> Any:
    """What holds the memory `array` views: the array at the end of its chain of bases (one
    that owns its data, a memmap), or the object under it (the buffer of np.frombuffer, a
    memmap's mmap). Views of one buffer have one owner; memory shared by other means (the
    same file mapped twice) is not seen. (`as_strided`'s views have a wrapper of their own
    as base, which holds the array they view: followed to it.)"""
    chain, seen = [array], {id(array)}  # (the chain kept: the ids seen stay its arrays')
    while True:
        base = array.base
        if not isinstance(base, np.ndarray):
            base = getattr(base, "base", None)
            if not isinstance(base, np.ndarray):
                break
        if id(base) in seen or len(chain) > 10_000:  # bases that lead round, or on and on
            return _UNKNOWN_OWNER
        array = base
        chain.append(array)
        seen.add(id(array))
    base = array.base
    if base is None:
        return array
    return base.obj if isinstance(base, memoryview) else base


def saved_count(where: str, name: str, value: Any) -> int:
    """A count loaded from a state dict (an optimizer's step, a schedule's epoch): an
    integer (0-d integer array) from 0 to 2**63 - 1, the int64 it is saved as; else
    ValueError naming it (a bool or a float is refused, 2.0 too)."""
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iu":
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or not 0 <= int(value) <= _MOST_COUNTED:
        raise ValueError(f"{where}: {name} must be a non-negative integer (at most 2**63 - 1), "
                         f"got {value!r}")
    return int(value)


_MOST_COUNTED = 2**63 - 1  # (int64's largest)


def _order(key: str) -> tuple[bool, int]:
    kind, index, _ = key.split(".", 2)
    return kind != "groups", int(index)


def refuse_masked(where: str, state: Mapping[str, Any]) -> None:
    """TypeError naming the first masked array among the values of ``state``, a state
    dict to load: its values would be loaded and its mask ignored."""
    for key, value in state.items():
        if isinstance(value, np.ndarray) and type(value) is not np.ndarray:
            plain_array(value, f"{where}: {key}")


def _value(array: Any) -> Any:
    """A saved hyperparameter as the Python value the bounds check."""
    if isinstance(array, np.ndarray):
        return array.item() if array.ndim == 0 else array
    return array


def _shown(names: list[str]) -> str:
    return repr(sorted(names)[:5])[:-1] + (f", ... ({len(names) - 5} more)]"
                                           if len(names) > 5 else "]")


def _load_array(where: str, name: str, value: Any, shape: tuple[int, ...],
                dtype: np.dtype) -> np.ndarray:
    """``value`` as a new array of ``dtype``, or ValueError naming ``name``."""
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{where}: {name} must be a NumPy array, got {type(value).__name__}")  # noqa: TRY004
    if value.dtype.kind not in "iuf":
        raise ValueError(f"{where}: {name} has dtype {value.dtype}; it must hold real numbers "
                         f"(integer or floating point)")
    if value.shape != shape:
        raise ValueError(f"{where}: {name} has shape {value.shape}, the parameter has shape "
                         f"{shape}")
    if not np.isfinite(value).all():
        raise ValueError(f"{where}: {name} holds NaN or infinite values")
    with np.errstate(over="ignore"):  # an overflow to inf is refused below
        array = np.array(value, dtype=dtype, copy=True)
    if not np.isfinite(array).all():
        raise ValueError(f"{where}: {name} has values that overflow the parameter's dtype "
                         f"{dtype}")
    return array
