"""Optimizers by name, for command lines and configuration files."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from .adam import Adam, AdamW
from .optimizer import Optimizer, ParameterLike
from .rmsprop_nesterov import RMSPropNesterov
from .rprop import RProp
from .sgd import SGD

__all__ = ["OPTIMIZERS", "create"]

#: Registry name -> optimizer class ("sgd", "rprop", "rmsprop_nesterov", "adam", "adamw").
OPTIMIZERS: Mapping[str, type[Optimizer]] = MappingProxyType(
    {cls.name: cls for cls in (SGD, RProp, RMSPropNesterov, Adam, AdamW)}
)


def create(name: str, params: Iterable[ParameterLike], **hyperparameters: Any) -> Optimizer:
    """Build the optimizer registered as ``name`` on ``params``.

    ``name`` is matched case-insensitively, with ``-`` read as ``_`` ("RMSProp-Nesterov"
    works). ``hyperparameters`` are the class's keyword arguments (``check_finite``
    included). An unknown name raises ValueError listing the known ones; an unknown
    hyperparameter raises TypeError naming it and the accepted ones.

    >>> create("rprop", params, eta_plus=1.2)          # doctest: +SKIP
    """
    if not isinstance(name, str):
        raise TypeError(f"optimizer name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    cls = OPTIMIZERS.get(key)
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(sorted(OPTIMIZERS))}")
    parameters = inspect.signature(cls).parameters.values()
    accepted = [p.name for p in parameters
                if p.name != "params" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    unknown = sorted(set(hyperparameters) - set(accepted))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in parameters):  # (else the class's)
        raise TypeError(f"{cls.__name__}: unknown hyperparameter{'s' * (len(unknown) > 1)} "
                        f"{', '.join(unknown)}; it takes {', '.join(accepted)}")
    return cls(params, **hyperparameters)
