"""The optimizer shell shared by every update rule.

An optimizer works on *parameters*: any object with

- ``.data``: a floating-point NumPy array. The optimizer updates it **in place**, so the
  object's identity, and any view of the array held elsewhere, stay valid;
- ``.grad``: a NumPy array of the same shape, or ``None`` (the parameter is then skipped
  for that step, as in PyTorch). Optimizers never write to ``.grad``.

``minigrad.nn.Parameter`` and the hand-coded reference models' parameters both fit, so one
optimizer object can drive either and their trajectories can be compared step by step.

:class:`Optimizer` holds everything that is not the update rule itself: the parameter list,
``zero_grad``, ``step(closure)``, the finite-gradient check, ``state_dict`` /
``load_state_dict`` and the hyperparameter validation helpers. A subclass supplies the
hyperparameter validation (:meth:`Optimizer._validate_hyperparameters`), the initial
per-parameter state (:meth:`Optimizer._initial_state`) and the update loop
(:meth:`Optimizer._update`), which calls a pure per-array NumPy rule from its own module.

State dict format (the same for every optimizer)::

    {
        "optimizer": "Adam",                        # class name, checked on load
        "hyperparameters": {"lr": 0.001, ...},      # the constructor's hyperparameters
        "state": [                                  # one dict per parameter, by position
            {"step": 3, "exp_avg": ndarray, ...},
            ...
        ],
    }

``"step"`` (a Python int, present for every optimizer) counts the updates applied to that
parameter; the other entries are NumPy arrays with the parameter's shape. ``state_dict``
returns copies and ``load_state_dict`` stores copies, so neither side can change the other
later. ``check_finite`` is a safety switch, not part of the trajectory, and is not saved.
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, TypeAlias

import numpy as np

__all__ = [
    "NonFiniteGradientError",
    "Optimizer",
    "ParameterLike",
    "StateDict",
    "check_bool",
    "check_real",
]

Closure: TypeAlias = Callable[[], Any]
StateDict: TypeAlias = dict[str, Any]


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
# Hyperparameter validation helpers (used by every optimizer's _validate_hyperparameters)
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


# --------------------------------------------------------------------------------------
# The shell
# --------------------------------------------------------------------------------------


class Optimizer(abc.ABC):
    """Base class: a thin PyTorch-style shell around a pure per-array update rule.

    Subclasses implement ``_validate_hyperparameters``, ``_state_arrays`` (the names of the
    per-parameter array state), ``_initial_state`` and ``_update``, and may override
    ``_configure`` and ``_check_state_values``. See the module docstring for the parameter
    protocol and the state dict format.

    Args:
        params: an iterable of parameters (a generator such as ``model.parameters()`` is
            fine; it is consumed once). Empty -> ValueError.
        hyperparameters: the constructor's hyperparameters, validated by the subclass.
        check_finite: when True (the default) ``step`` checks every gradient before
            touching any parameter and raises :class:`NonFiniteGradientError` if one holds
            NaN or inf. When False no check is made and non-finite values go through the
            update arithmetic as IEEE-754 says (each optimizer's docstring tells what that
            does to the parameters and the state); no error is raised.
    """

    #: Name in the registry (``optim.create``); set by each subclass.
    name: ClassVar[str] = ""

    def __init__(
        self,
        params: Iterable[ParameterLike],
        hyperparameters: Mapping[str, Any],
        *,
        check_finite: bool = True,
    ) -> None:
        owner = type(self).__name__
        self._params = _materialise(params, owner)
        self.check_finite = check_bool(owner, "check_finite", check_finite)
        self._hyper = self._validate_hyperparameters(dict(hyperparameters))
        self._shapes = [p.data.shape for p in self._params]
        self._state: list[dict[str, Any]] = [self._initial_state(p.data) for p in self._params]
        # Work arrays for the update rules, per parameter, allocated on first use. They are
        # scratch space only: never part of the state.
        self._work: list[dict[str, np.ndarray]] = [{} for _ in self._params]
        self._configure()

    # ---- to be provided by subclasses ----------------------------------------------

    @classmethod
    @abc.abstractmethod
    def _validate_hyperparameters(cls, hyper: dict[str, Any]) -> dict[str, Any]:
        """Return the validated, normalised hyperparameters; ValueError on a bad value."""

    @classmethod
    @abc.abstractmethod
    def _state_arrays(cls, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        """Names of the per-parameter array state under the hyperparameters ``hyper``."""

    @abc.abstractmethod
    def _initial_state(self, data: np.ndarray) -> dict[str, Any]:
        """Fresh state for one parameter: ``{"step": 0, <array name>: array, ...}``."""

    @abc.abstractmethod
    def _update(self, items: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        """Apply the rule to every ``(position, data, grad)``; all grads are checked."""

    def _configure(self) -> None:  # noqa: B027 (optional hook, nothing by default)
        """Cache hyperparameters as attributes for the hot path (after init and load)."""

    def _check_state_values(  # noqa: B027 (optional hook, nothing by default)
        self, index: int, state: dict[str, Any], hyper: Mapping[str, Any]
    ) -> None:
        """Extra validation of loaded state values (the shapes are checked already)."""

    # ---- public API -------------------------------------------------------------------

    @property
    def parameters(self) -> tuple[ParameterLike, ...]:
        """The parameters, in the order their state is kept."""
        return self._params

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """A copy of the hyperparameters (set at construction or by load_state_dict)."""
        return dict(self._hyper)

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to None (the next backward pass starts afresh)."""
        for p in self._params:
            p.grad = None

    def step(self, closure: Closure | None = None) -> Any:
        """Update every parameter that has a gradient; return the closure's loss.

        With a ``closure`` (a function that zeroes the grads, computes the loss, calls
        backward and returns the loss) it is called exactly once, before the update, and its
        return value is returned; without one, the current ``.grad`` values are used and the
        result is None. All gradients are checked (shape, and finiteness unless
        ``check_finite=False``) before any parameter changes.
        """
        loss = None
        if closure is not None:
            loss = closure()
        self._update(self._gradients())
        return loss

    def state_dict(self) -> StateDict:
        """Everything needed to resume the run exactly, as copies (see the module doc)."""
        return {
            "optimizer": type(self).__name__,
            "hyperparameters": dict(self._hyper),
            "state": [
                {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                for s in self._state
            ],
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyperparameters and per-parameter state from :meth:`state_dict` output.

        Everything is validated before anything is changed: the optimizer class, the
        hyperparameters (same rules as the constructor), the number of parameter entries and,
        per entry, the keys, the step count and each array's shape. Arrays are copied (and
        cast to the parameter's dtype). Raises ValueError with the reason otherwise.
        """
        owner = type(self).__name__
        # Every defect of a state dict, its type included, is a ValueError.
        if not isinstance(state_dict, Mapping):
            raise ValueError(  # noqa: TRY004
                f"{owner}.load_state_dict: expected a mapping, got {type(state_dict).__name__}"
            )
        missing = {"optimizer", "hyperparameters", "state"} - set(state_dict)
        if missing:
            raise ValueError(f"{owner}.load_state_dict: missing keys {sorted(missing)}")
        if state_dict["optimizer"] != owner:
            raise ValueError(
                f"{owner}.load_state_dict: the state dict is for {state_dict['optimizer']!r}, "
                f"not {owner!r}"
            )
        hyper_in = state_dict["hyperparameters"]
        if not isinstance(hyper_in, Mapping) or set(hyper_in) != set(self._hyper):
            got = sorted(hyper_in) if isinstance(hyper_in, Mapping) else type(hyper_in).__name__
            raise ValueError(
                f"{owner}.load_state_dict: hyperparameters must have the keys "
                f"{sorted(self._hyper)}, got {got}"
            )
        hyper = self._validate_hyperparameters(dict(hyper_in))
        entries = state_dict["state"]
        if not isinstance(entries, Sequence) or len(entries) != len(self._params):
            n = len(entries) if isinstance(entries, Sequence) else type(entries).__name__
            raise ValueError(
                f"{owner}.load_state_dict: the state dict has {n} parameter entries, this "
                f"optimizer has {len(self._params)} parameters"
            )
        # Validate against the *loaded* hyperparameters, then swap everything in at once.
        new_state = [self._convert_entry(i, e, hyper) for i, e in enumerate(entries)]
        self._hyper = hyper
        self._state = new_state
        self._configure()

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self._hyper.items())
        return f"{type(self).__name__}({len(self._params)} parameters, {hp})"

    # ---- machinery --------------------------------------------------------------------

    def _convert_entry(
        self, index: int, entry: Any, hyper: Mapping[str, Any]
    ) -> dict[str, Any]:
        owner = type(self).__name__
        where = f"{owner}.load_state_dict: state of parameter {index}"
        names = self._state_arrays(hyper)
        expected = {"step", *names}
        if not isinstance(entry, Mapping) or set(entry) != expected:
            got = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
            raise ValueError(f"{where} must have the keys {sorted(expected)}, got {got}")
        step = entry["step"]
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"{where}: step must be a non-negative integer, got {step!r}")
        data = self._params[index].data
        out: dict[str, Any] = {"step": int(step)}
        for name in names:
            value = entry[name]
            if not isinstance(value, np.ndarray):
                raise ValueError(  # noqa: TRY004
                    f"{where}: {name} must be a NumPy array, got {type(value).__name__}"
                )
            if value.shape != data.shape:
                raise ValueError(
                    f"{where}: {name} has shape {value.shape}, the parameter has shape "
                    f"{data.shape}"
                )
            out[name] = np.array(value, dtype=data.dtype, copy=True)
        self._check_state_values(index, out, hyper)
        return out

    def _gradients(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Collect ``(position, data, grad)`` for every parameter with a grad, checked.

        Raises before returning, i.e. before any update, if a grad has the wrong shape or
        (with ``check_finite``) holds NaN/inf. The finiteness test is one ``sum`` per grad:
        any NaN or inf makes the sum non-finite; only when the sum is non-finite (which an
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
                if not isinstance(g, np.ndarray):
                    g = np.asarray(g)
                if g.shape != data.shape or data.shape != self._shapes[i]:
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

    def _scratch(self, index: int, name: str, like: np.ndarray, dtype: Any = None) -> np.ndarray:
        """A per-parameter work array, allocated once and reused on every step."""
        work = self._work[index]
        arr = work.get(name)
        if arr is None or arr.shape != like.shape:
            arr = work[name] = np.empty(like.shape, dtype=like.dtype if dtype is None else dtype)
        return arr
