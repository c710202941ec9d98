"""Learning-rate schedules: each sets every parameter group's ``lr`` from the epoch count.

A schedule remembers each group's learning rate when it is made (``base_lrs``); every
``schedule.step()`` counts one epoch and sets ``group["lr"] = lr_at(base, epoch)``::

    opt = optim.SGD(model.parameters(), lr=0.1)
    schedule = optim.CosineAnnealingLR(opt, total=100)
    for epoch in range(100):
        train_one_epoch(opt)
        schedule.step()

Its ``state_dict`` saves and loads with ``minigrad.save`` / ``minigrad.load`` like an
optimizer's: the epoch count and the base rates, and the schedule's own settings under its
kind's name (``"StepLR.step_size"``, ``"StepLR.gamma"``), so that a state loads only into
a schedule of the same kind and settings (another is refused, naming both).
"""

from __future__ import annotations

import abc
import math
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from .optimizer import (
    NONNEGATIVE,
    HyperparameterTypeError,
    Optimizer,
    Real,
    refuse_masked,
    saved_count,
)

__all__ = ["CosineAnnealingLR", "ExponentialLR", "Schedule", "StepLR"]

_POSITIVE_FACTOR = Real(low=0.0, low_open=True)


def _positive_int(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):  # (as a rate's)
        raise HyperparameterTypeError(f"{owner}: invalid {name}={value!r}: must be an integer "
                                      f">= 1")
    if value < 1:
        raise ValueError(f"{owner}: invalid {name}={value!r}: must be an integer >= 1")
    return int(value)


class Schedule(abc.ABC):
    """The common part: the optimizer, the base rates, the epoch count."""

    def __init__(self, optimizer: Optimizer) -> None:
        owner = type(self).__name__
        if not isinstance(optimizer, Optimizer) or "lr" not in type(optimizer).bounds:
            raise TypeError(f"{owner}: needs an optimizer with a learning rate, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self.epoch = 0

    @abc.abstractmethod
    def settings(self) -> dict[str, int | float]:
        """The schedule's own settings, name -> value (what its formula reads)."""

    @abc.abstractmethod
    def lr_at(self, base: float, epoch: int) -> float:
        """The learning rate of a group whose base rate is ``base`` after ``epoch`` steps."""

    def step(self) -> None:
        """Count one epoch and set every group's learning rate. Every new rate is computed
        and checked first: one that is not finite (grown past the largest float) raises
        ValueError naming the schedule and the step, one the optimizer's bounds refuse
        ValueError naming the optimizer; either changes no group and no count."""
        epoch, groups = self.epoch + 1, self.optimizer.param_groups
        checked = [self.optimizer.check(**{**group.hyperparameters(),
                                           "lr": self._finite_lr(i, base, epoch)})
                   for i, (group, base) in enumerate(zip(groups, self.base_lrs, strict=True))]
        for group, values in zip(groups, checked):
            group._keep(values)
        self.epoch = epoch

    def _finite_lr(self, group: int, base: float, epoch: int) -> float:
        """`lr_at(base, epoch)` for `group`, ValueError unless it is finite."""
        try:
            lr = self.lr_at(base, epoch)
        except OverflowError:  # (a float's ** overflows so; its * gives inf)
            lr = math.inf
        if not math.isfinite(lr):
            raise ValueError(f"{self!r}: step {epoch} gives group {group} (base rate {base!r}) "
                             f"the learning rate {lr}, past the largest float; no rate and "
                             "not the step count changed")
        return lr

    def state_dict(self) -> dict[str, np.ndarray]:
        """``epoch``, ``base_lrs`` and ``<kind>.<setting>`` for each setting (arrays)."""
        kind = type(self).__name__
        return {"epoch": np.array(self.epoch, dtype=np.int64),
                "base_lrs": np.array(self.base_lrs, dtype=np.float64),
                **{f"{kind}.{name}": np.array(value)
                   for name, value in self.settings().items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the epoch count (an integer from 0 to 2**63 - 1) and the base rates (one
        per group, finite, >= 0) from :meth:`state_dict` output of a schedule of this kind
        and settings; anything else raises ValueError naming both (a masked array TypeError:
        its mask would be ignored), and changes nothing."""
        owner = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, Mapping):
            raise ValueError(f"{owner}: expected a mapping, got {type(state).__name__}")  # noqa: TRY004
        refuse_masked(owner, state)
        saved = _saved_schedule(state)
        if saved != repr(self):
            raise ValueError(f"{owner}: the state is of {saved}, this schedule is {self!r}")
        mine = self.state_dict()
        if set(state) != set(mine):
            raise ValueError(f"{owner}: the state dict does not fit: missing "
                             f"{sorted(set(mine) - set(state))}, unexpected "
                             f"{sorted(map(str, set(state) - set(mine)))}")
        epoch = saved_count(owner, "epoch", state["epoch"])
        base = np.asarray(state["base_lrs"])
        if base.dtype.kind not in "iuf" or base.shape != (len(self.base_lrs),) \
                or not (np.isfinite(base) & (base >= 0)).all():
            n = len(self.base_lrs)
            raise ValueError(f"{owner}: expected {n} base rate{'s' if n != 1 else ''} (one per "
                             f"group), finite and >= 0, got {state['base_lrs']!r}")
        self.epoch, self.base_lrs = epoch, base.astype(np.float64).tolist()

    def __repr__(self) -> str:
        return _schedule_text(type(self).__name__, self.settings())


def _schedule_text(kind: str, settings: Mapping[str, Any]) -> str:
    return f"{kind}({', '.join(f'{name}={value!r}' for name, value in settings.items())})"


def _saved_schedule(state: Mapping[str, Any]) -> str:
    """The schedule a state dict was saved by, as its repr (``StepLR(step_size=2, ...)``),
    from its ``<kind>.<setting>`` entries."""
    kinds: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        kind, dot, name = str(key).partition(".")
        if dot:
            kinds.setdefault(kind, {})[name] = _setting(value)
    if not kinds:
        return "a schedule of unknown kind (no <kind>.<setting> entries)"
    return " and ".join(_schedule_text(kind, settings) for kind, settings in kinds.items())


def _setting(value: Any) -> Any:
    """A saved setting as the Python number it was (a 0-d array's item)."""
    array = np.asarray(value)
    return array.item() if array.shape == () and array.dtype.kind in "iuf" else value


def _scaled(base: float, gamma: float, n: int) -> float:
    """``base * gamma ** n``, where ``gamma ** n`` alone would overflow or fall below the
    normal floats though the product need not (1e-300 * 1e100 ** 4): then from logarithms,
    within a few ulps of the exact product (or inf or 0 where the product is)."""
    try:
        power = gamma**n
    except OverflowError:  # (a float's ** raises where * gives inf)
        power = math.inf
    if power == math.inf or 0 <= power < _SMALLEST_NORMAL and n > 0:
        if base == 0:
            return 0.0
        try:
            return math.exp(math.log(base) + n * math.log(gamma))
        except OverflowError:
            return math.inf
    return base * power


_SMALLEST_NORMAL = sys.float_info.min


class StepLR(Schedule):
    """``lr = base * gamma ** (epoch // step_size)``: divided by 1/gamma every step_size
    epochs (step_size an integer >= 1, gamma > 0)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = _positive_int("StepLR", "step_size", step_size)
        self.gamma = _POSITIVE_FACTOR("StepLR", "gamma", gamma)
        super().__init__(optimizer)

    def settings(self) -> dict[str, int | float]:
        return {"step_size": self.step_size, "gamma": self.gamma}

    def lr_at(self, base: float, epoch: int) -> float:
        return _scaled(base, self.gamma, epoch // self.step_size)


class ExponentialLR(Schedule):
    """``lr = base * gamma ** epoch`` (gamma > 0)."""

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        self.gamma = _POSITIVE_FACTOR("ExponentialLR", "gamma", gamma)
        super().__init__(optimizer)

    def settings(self) -> dict[str, int | float]:
        return {"gamma": self.gamma}

    def lr_at(self, base: float, epoch: int) -> float:
        return _scaled(base, self.gamma, epoch)


class CosineAnnealingLR(Schedule):
    """``lr = lr_min + (base - lr_min) * (1 + cos(pi * epoch / total)) / 2``: from base
    down to ``lr_min`` (>= 0) over ``total`` epochs (an integer >= 1) along half a cosine,
    then back up along the other half, as PyTorch's closed form (no restarts)."""

    def __init__(self, optimizer: Optimizer, total: int, lr_min: float = 0.0) -> None:
        self.total = _positive_int("CosineAnnealingLR", "total", total)
        self.lr_min = NONNEGATIVE("CosineAnnealingLR", "lr_min", lr_min)
        super().__init__(optimizer)

    def settings(self) -> dict[str, int | float]:
        return {"total": self.total, "lr_min": self.lr_min}

    def lr_at(self, base: float, epoch: int) -> float:
        return self.lr_min + (base - self.lr_min) * (1 + math.cos(math.pi * epoch / self.total)) / 2
