"""The optimizer shell shared by every update rule.

An optimizer works on *parameters*: any object with

- ``.data``: a floating-point NumPy array. The optimizer updates it **in place**, so the
  object's identity, and any view of the array held elsewhere, stay valid;
- ``.grad``: a NumPy array of the same shape, or ``None`` (the parameter is then skipped
  for that step, as in PyTorch). Optimizers never write to ``.grad``.

``minigrad.nn.Parameter`` and the hand-coded reference models' parameters both fit, so one
optimizer object can drive either and their trajectories can be compared step by step.

Each optimizer is two classes:

- an :class:`UpdateRule`: a frozen dataclass whose fields are the hyperparameters (validated once,
  in ``__post_init__``) and whose methods are the math, on plain arrays:
  ``init(p) -> state`` and ``update(t, p, g, state) -> (step, new state)``: the
  parameter moves to ``p - step``; ``state`` is a dict of arrays shaped like ``p``; ``t``
  counts this parameter's updates (1 on the first). A rule that takes the gradient
  somewhere else than at ``p`` (RMSProp-Nesterov) also defines ``look_ahead(state)``, the
  move to that point;
- an :class:`Optimizer` subclass naming its rule: the shell that keeps the parameters and
  their state and does everything that is not the math (``zero_grad``, ``step(closure)``,
  the gradient checks, ``state_dict`` / ``load_state_dict``). Its constructor takes the
  rule's fields as keyword (or positional) arguments.

State dict format (the same for every optimizer)::

    {
        "optimizer": "Adam",                        # class name, checked on load
        "hyperparameters": {"lr": 0.001, ...},      # the rule's fields
        "state": [                                  # one dict per parameter, by position
            {"step": 3, "exp_avg": ndarray, ...},
            ...
        ],
    }

``"step"`` (a Python int, present for every optimizer) counts the updates applied to that
parameter; the other entries are the rule's state arrays, with the parameter's shape and
dtype. ``state_dict`` returns copies and ``load_state_dict`` stores copies, so neither side
can change the other later. ``check_finite`` is a safety switch, not part of the trajectory,
and is not saved.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, TypeAlias

import numpy as np

__all__ = [
    "NonFiniteGradientError",
    "Optimizer",
    "ParameterLike",
        "State",
    "StateDict",
    "UpdateRule",
    "check_bool",
    "check_real",
]

Closure: TypeAlias = Callable[[], Any]
StateDict: TypeAlias = dict[str, Any]
#: One parameter's state under a rule: name -> array shaped like the parameter.
State: TypeAlias = dict[str, np.ndarray]


class ParameterLike(Protocol):
    """What an optimizer needs from a parameter."""

    data: np.ndarray
    grad: np.ndarray | None


class NonFiniteGradientError(FloatingPointError, ValueError):
    """A gradient holds NaN or infinite values; raised before any parameter is changed.

    It is both a :class:`FloatingPointError` and a :class:`ValueError`, so either
    ``except`` clause catches it.
    """


# --------------------------------------------------------------------------------------
# Hyperparameter validation helpers (used by every rule's __post_init__)
# --------------------------------------------------------------------------------------


def check_real(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite float inside the given interval, else raise ValueError.

    The message names the optimizer, the hyperparameter and the offending value, e.g.
    ``"SGD: invalid lr=-0.1: must be >= 0"``. Booleans, NaN and infinities are rejected.
    """
    # ValueError even for a wrong type: every bad hyperparameter raises ValueError.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{owner}: invalid {name}={value!r}: must be a real number")  # noqa: TRY004
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{owner}: invalid {name}={value!r}: must be finite")
    too_low = low is not None and (v <= low if low_open else v < low)
    too_high = high is not None and (v >= high if high_open else v > high)
    if too_low or too_high:
        if low is not None and high is not None:
            rule = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            rule = f"{'>' if low_open else '>='} {low:g}"
        else:
            rule = f"{'<' if high_open else '<='} {high:g}"
        raise ValueError(f"{owner}: invalid {name}={value!r}: must be {rule}")
    return v


def check_bool(owner: str, name: str, value: Any) -> bool:
    """Return ``value`` as a bool; anything but True/False raises ValueError naming it."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}: invalid {name}={value!r}: must be True or False")  # noqa: TRY004
    return bool(value)


# --------------------------------------------------------------------------------------
# The rule: hyperparameters and math
# --------------------------------------------------------------------------------------


class UpdateRule(abc.ABC):
    """An update rule. Subclasses are frozen dataclasses whose fields are the hyperparameters.

    ``__post_init__`` validates the fields (with :meth:`real` / :meth:`boolean`, which also
    store them normalised, e.g. ``1`` as ``1.0``); the methods below are pure: they read
    arrays and return new ones, and never write to their arguments.
    """

    #: The optimizer's name in error messages ("Adam").
    optimizer: ClassVar[str]

    @abc.abstractmethod
    def init(self, p: np.ndarray) -> State:
        """The state of a parameter that has not been updated yet."""

    @abc.abstractmethod
    def update(
        self, t: int, p: np.ndarray, g: np.ndarray, state: State
    ) -> tuple[np.ndarray, State]:
        """The t-th update (t = 1, 2, ...) from the gradient ``g`` at ``p``: ``(step, new
        state)``, the parameter moving to ``p - step``.

        ``g`` may be the caller's ``.grad`` array: a rule must not put it in the state
        uncopied. ``g`` has ``p``'s dtype, so the results have it too.
        """

    def look_ahead(self, state: State) -> np.ndarray | None:
        """The move to the point where the gradient must be taken, or None (the default):
        at ``p`` itself.

        An optimizer whose rule moves needs a closure in ``step``: the parameters sit at
        ``p + move`` while the closure runs, and ``update`` then receives that point as
        ``p``.
        """
        return None

    def state_problem(self, state: State) -> str | None:
        """What makes ``state`` impossible under this rule (e.g. a negative second moment),
        as ``"<key> <problem>"``, or None. Shapes and finiteness are checked already."""
        return None

    # ---- validation helpers for __post_init__ ------------------------------------------

    def real(self, name: str, **interval: Any) -> None:
        """Check field ``name`` with :func:`check_real` and store it as a float."""
        value = check_real(self.optimizer, name, getattr(self, name), **interval)
        object.__setattr__(self, name, value)  # the dataclass is frozen

    def boolean(self, name: str) -> None:
        """Check field ``name`` with :func:`check_bool` and store it as a bool."""
        object.__setattr__(self, name, check_bool(self.optimizer, name, getattr(self, name)))

    def hyperparameters(self) -> dict[str, Any]:
        """The fields, name -> value, in declaration order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# The shell
# --------------------------------------------------------------------------------------


def _materialise(params: Iterable[ParameterLike], owner: str) -> tuple[ParameterLike, ...]:
    if hasattr(params, "data") and hasattr(params, "grad"):
        raise TypeError(
            f"{owner}: params must be an iterable of parameters (e.g. model.parameters()), "
            f"got a single parameter {type(params).__name__}; wrap it in a list"
        )
    try:
        plist = tuple(params)
    except TypeError:
        raise TypeError(
            f"{owner}: params must be an iterable of parameters, got {type(params).__name__}"
        ) from None
    if not plist:
        raise ValueError(f"{owner}: got an empty parameter list; nothing to optimize")
    seen: set[int] = set()
    for i, p in enumerate(plist):
        data = getattr(p, "data", None)
        if not hasattr(p, "grad") or not isinstance(data, np.ndarray):
            raise TypeError(
                f"{owner}: parameter {i} ({type(p).__name__}) needs a NumPy array .data "
                f"and a .grad attribute"
            )
        if not np.issubdtype(data.dtype, np.floating):
            raise TypeError(
                f"{owner}: parameter {i} has dtype {data.dtype}; it must be a floating-point "
                f"array to be updated in place"
            )
        if not data.flags.writeable:
            raise ValueError(f"{owner}: parameter {i}'s .data is read-only")
        if id(p) in seen:
            raise ValueError(
                f"{owner}: parameter {i} appears more than once; it would be updated twice"
            )
        seen.add(id(p))
    return plist


class Optimizer:
    """The PyTorch-style shell around an :class:`UpdateRule`; a subclass only names its rule.

    ``Optimizer(params, *hyperparameters, check_finite=True, **hyperparameters)``: the
    hyperparameters are the fields of the subclass's ``Rule``, by position or keyword.

    Args:
        params: an iterable of parameters (a generator such as ``model.parameters()`` is
            fine; it is consumed once). Empty -> ValueError.
        check_finite: when True (the default) ``step`` checks every gradient before
            touching any parameter and raises :class:`NonFiniteGradientError` if one holds
            NaN or inf. When False no check is made and non-finite values go through the
            update arithmetic as IEEE-754 says (each optimizer's docstring tells what that
            does to the parameters and the state); no error is raised.

    See the module docstring for the parameter protocol and the state dict format.
    """

    #: Name in the registry (``minigrad.optim.create``); set by each subclass.
    name: ClassVar[str] = ""
    #: The update rule, a frozen dataclass; set by each subclass.
    Rule: ClassVar[type[UpdateRule]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Rule" not in cls.__dict__:
            return
        # So that help(Adam) and inspect.signature show the rule's fields as arguments.
        fields = dataclasses.fields(cls.Rule)  # type: ignore[arg-type]
        P = inspect.Parameter
        cls.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [P("params", P.POSITIONAL_OR_KEYWORD)]
            + [P(f.name, P.POSITIONAL_OR_KEYWORD,
                 default=P.empty if f.default is dataclasses.MISSING else f.default)
               for f in fields]
            + [P("check_finite", P.KEYWORD_ONLY, default=True)]
        )

    def __init__(
        self,
        params: Iterable[ParameterLike],
        *hyperparameters: Any,
        check_finite: bool = True,
        **named_hyperparameters: Any,
    ) -> None:
        owner = type(self).__name__
        self._params = _materialise(params, owner)
        self.check_finite = check_bool(owner, "check_finite", check_finite)
        self.rule = self._make_rule(*hyperparameters, **named_hyperparameters)
        self._shapes = [p.data.shape for p in self._params]
        self._steps = [0] * len(self._params)
        self._state = [self.rule.init(p.data) for p in self._params]

    @classmethod
    def _make_rule(cls, *args: Any, **kwargs: Any) -> UpdateRule:
        """The rule from the constructor's hyperparameters; TypeError names a wrong one."""
        fields = dataclasses.fields(cls.Rule)  # type: ignore[arg-type]
        accepted = [f.name for f in fields]
        if len(args) > len(accepted):
            raise TypeError(f"{cls.__name__} takes at most {len(accepted)} hyperparameters "
                            f"after params ({', '.join(accepted)}), got {len(args)}")
        named = dict(zip(accepted, args))
        unknown = sorted(set(kwargs) - set(accepted))
        twice = sorted(set(kwargs) & set(named))
        missing = [f.name for f in fields if f.default is dataclasses.MISSING
                   and f.name not in named and f.name not in kwargs]
        if unknown:
            raise TypeError(f"{cls.__name__} ({cls.name!r}) has no hyperparameter "
                            f"{', '.join(unknown)}; accepted: {', '.join(accepted)}")
        if twice:
            raise TypeError(f"{cls.__name__} got {', '.join(twice)} both by position and by "
                            f"keyword")
        if missing:
            raise TypeError(f"{cls.__name__} needs the hyperparameter {', '.join(missing)}")
        return cls.Rule(**named, **kwargs)

    # ---- public API -------------------------------------------------------------------

    @property
    def parameters(self) -> tuple[ParameterLike, ...]:
        """The parameters, in the order their state is kept."""
        return self._params

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters, name -> value (a new dict; ``self.rule`` holds them)."""
        return self.rule.hyperparameters()

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to None (the next backward pass starts afresh)."""
        for p in self._params:
            p.grad = None

    def step(self, closure: Closure | None = None) -> Any:
        """Update every parameter that has a gradient; return the closure's loss.

        With a ``closure`` (a function that zeroes the grads, computes the loss, calls
        backward and returns the loss) it is called exactly once, before the update, and its
        return value is returned; without one, the current ``.grad`` values are used and the
        result is None. A rule with a look-ahead point needs the closure: the parameters
        sit at that point while it runs.

        Nothing changes unless the whole step succeeds: all gradients are checked (shape,
        and finiteness unless ``check_finite=False``) and all updates computed before any
        parameter is written, and if the closure or a check raises, the parameters are
        moved back from the look-ahead point.
        """
        if closure is not None and not callable(closure):
            raise TypeError(f"{type(self).__name__}.step: closure must be callable, got "
                            f"{type(closure).__name__}")
        self._check_shapes()
        real = self._move_to_look_ahead(needs_closure=closure is None)
        try:
            loss = None if closure is None else closure()
            updates = {i: self.rule.update(self._steps[i] + 1, data, g, self._state[i])
                       for i, data, g in self._gradients()}
        except BaseException:
            self._move_back(real)
            raise
        # A parameter left without a gradient goes back to where it was, state unchanged.
        self._move_back({i: p for i, p in real.items() if i not in updates})
        for i, (step, new_state) in updates.items():
            p = self._params[i].data
            np.subtract(p, step, out=p)
            self._state[i] = new_state
            self._steps[i] += 1
        return loss

    def state_dict(self) -> StateDict:
        """Everything needed to resume the run exactly, as copies (see the module doc)."""
        return {
            "optimizer": type(self).__name__,
            "hyperparameters": self.rule.hyperparameters(),
            "state": [
                # np.array, not .copy(): arithmetic on a 0-d array gives a NumPy scalar.
                {"step": step, **{k: np.array(v) for k, v in state.items()}}
                for step, state in zip(self._steps, self._state)
            ],
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyperparameters and per-parameter state from :meth:`state_dict` output.

        Everything is validated before anything is changed: the optimizer class, the
        hyperparameters (as the constructor checks them) and, per parameter, the keys, the
        step count and each array: real numbers (not complex, strings or objects), the
        parameter's shape, finite once cast to the parameter's dtype, and inside the rule's
        domain (e.g. no negative second moment). Arrays are stored as copies in the
        parameter's dtype. Any defect raises a one-line ValueError naming it.
        """
        where = f"{type(self).__name__}.load_state_dict"
        # Every defect of a state dict, its type included, is a ValueError.
        if not isinstance(state_dict, Mapping):
            raise ValueError(  # noqa: TRY004
                f"{where}: expected a mapping, got {type(state_dict).__name__}"
            )
        _check_keys(where, "the state dict", state_dict, {"optimizer", "hyperparameters",
                                                           "state"})
        if state_dict["optimizer"] != type(self).__name__:
            raise ValueError(f"{where}: the state dict is for {state_dict['optimizer']!r}, "
                             f"not {type(self).__name__!r}")
        hyper = state_dict["hyperparameters"]
        accepted = {f.name for f in dataclasses.fields(self.Rule)}  # type: ignore[arg-type]
        _check_keys(where, "hyperparameters", hyper, accepted)
        rule = self.Rule(**hyper)
        entries = state_dict["state"]
        if not isinstance(entries, Sequence) or len(entries) != len(self._params):
            n = len(entries) if isinstance(entries, Sequence) else type(entries).__name__
            raise ValueError(f"{where}: the state dict has {n} parameter entries, this "
                             f"optimizer has {len(self._params)} parameters")
        # Validate against the *loaded* hyperparameters, then swap everything in at once.
        loaded = [self._load_entry(where, i, rule, entry) for i, entry in enumerate(entries)]
        self.rule = rule
        self._steps = [step for step, _ in loaded]
        self._state = [state for _, state in loaded]

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({len(self._params)} parameters, {hp})"

    # ---- machinery --------------------------------------------------------------------

    def _load_entry(
        self, where: str, index: int, rule: UpdateRule, entry: Any
    ) -> tuple[int, State]:
        where = f"{where}: state of parameter {index}"
        data = self._params[index].data
        names = rule.init(data).keys()
        _check_keys(where, "the entry", entry, {"step", *names})
        step = entry["step"]
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"{where}: step must be a non-negative integer, got {step!r}")
        state = {name: _load_array(where, name, entry[name], data) for name in names}
        problem = rule.state_problem(state)
        if problem is not None:
            raise ValueError(f"{where}: {problem}")
        return int(step), state

    def _move_to_look_ahead(self, *, needs_closure: bool) -> dict[int, np.ndarray]:
        """Move each parameter by its rule's look-ahead; return the moved ones' real points.

        ``needs_closure`` (no closure was given) makes any move a TypeError, raised before
        anything moves.
        """
        moves = {i: move for i, state in enumerate(self._state)
                 if (move := self.rule.look_ahead(state)) is not None}
        if moves and needs_closure:
            raise TypeError(
                f"{type(self).__name__}.step needs a closure: the gradient is taken at the "
                f"look-ahead point, which exists only inside step. Pass a function that zeroes "
                f"the grads, computes the loss, calls backward and returns the loss."
            )
        real = {i: self._params[i].data.copy() for i in moves}
        for i, move in moves.items():
            p = self._params[i].data
            np.add(p, move, out=p)
        return real

    def _move_back(self, real: Mapping[int, np.ndarray]) -> None:
        for i, point in real.items():
            np.copyto(self._params[i].data, point)

    def _check_shapes(self) -> None:
        for i, p in enumerate(self._params):
            if p.data.shape != self._shapes[i]:
                raise ValueError(f"{type(self).__name__}.step: parameter {i} has shape "
                                 f"{p.data.shape}, expected {self._shapes[i]}")

    def _gradients(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """``(position, data, grad)`` for every parameter with a grad, checked.

        Raises before returning, i.e. before any update, if a grad has the wrong shape or
        (with ``check_finite``) holds NaN/inf. The grad is cast to the parameter's dtype
        (no copy when it has it already). The finiteness test is one ``sum`` per grad: any
        NaN or inf makes the sum non-finite; only when the sum is non-finite (which an
        overflow of large finite values can also cause) are the bad values counted.
        """
        items = []
        check = self.check_finite
        # The sum of large finite values may overflow: no warning, the count decides.
        with np.errstate(over="ignore", invalid="ignore"):
            for i, p in enumerate(self._params):
                g = p.grad
                if g is None:
                    continue
                data = p.data
                g = np.asarray(g, dtype=data.dtype)
                if g.shape != data.shape:
                    raise ValueError(
                        f"{type(self).__name__}.step: parameter {i} has shape {data.shape} and "
                        f"gradient shape {g.shape}; expected both {self._shapes[i]}"
                    )
                if check and not math.isfinite(g.sum()):
                    bad = g.size - int(np.count_nonzero(np.isfinite(g)))
                    if bad:
                        raise NonFiniteGradientError(
                            f"{type(self).__name__}.step: gradient of parameter {i} (shape "
                            f"{g.shape}) has {bad} non-finite value{'s' if bad != 1 else ''}; "
                            f"no parameter was changed (check_finite=False disables this check)"
                        )
                items.append((i, data, g))
        return items


def _check_keys(where: str, what: str, mapping: Any, expected: set[str]) -> None:
    """ValueError naming the missing and the unexpected keys of ``mapping``, if any."""
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{where}: {what} must be a mapping with the keys {sorted(expected)}, "
                         f"got {type(mapping).__name__}")
    missing, extra = expected - set(mapping), set(mapping) - expected
    if missing or extra:
        problems = ([f"missing keys {sorted(missing)}"] if missing else []) + (
            [f"unexpected keys {sorted(map(str, extra))}"] if extra else [])
        raise ValueError(f"{where}: {what} must have the keys {sorted(expected)}; "
                         f"{' and '.join(problems)}")


def _load_array(where: str, name: str, value: Any, like: np.ndarray) -> np.ndarray:
    """``value`` as a new array of ``like``'s dtype, or ValueError naming ``name``."""
    if not isinstance(value, np.ndarray):
        raise ValueError(  # noqa: TRY004
            f"{where}: {name} must be a NumPy array, got {type(value).__name__}"
        )
    if value.dtype.kind not in "iuf":
        raise ValueError(f"{where}: {name} has dtype {value.dtype}; it must hold real numbers "
                         f"(integer or floating point)")
    if value.shape != like.shape:
        raise ValueError(f"{where}: {name} has shape {value.shape}, the parameter has shape "
                         f"{like.shape}")
    if not np.isfinite(value).all():
        raise ValueError(f"{where}: {name} holds NaN or infinite values")
    # A value too large for the parameter's dtype becomes inf: refused below, so no
    # warning (or, under np.errstate(over="raise"), no FloatingPointError) on the way.
    with np.errstate(over="ignore"):
        array = np.array(value, dtype=like.dtype, copy=True)
    if not np.isfinite(array).all():
        raise ValueError(f"{where}: {name} has values that overflow the parameter's dtype "
                         f"{like.dtype}")
    return array
