"""minigrad: a tiny reverse-mode autodiff engine on NumPy.

Build a computation from minigrad ops on `Tensor`s, call `backward()` on the result and read
each input's `.grad`. See the README for a tour.
"""

import importlib.machinery as _machinery
import os as _os
import sys as _sys
from typing import TYPE_CHECKING as _TYPE_CHECKING

from . import nn, ops
from .anomaly import AnomalyError
from .compile import CompiledFunction, compile
from .functional import grad, gradients, value_and_grad
from .graph import to_dot
from .modes import (
    TraceError,
    detect_anomaly,
    enable_grad,
    is_anomaly_enabled,
    is_recording,
    no_grad,
)
from .primitive import OPS, Domain, defop
from .scan import scan
from .serialization import load, save
from .tensor import Tensor

if _TYPE_CHECKING:  # type checkers read the ops' names from the module
    from .ops import *  # noqa: F403
else:  # the exports follow from the table: every op of minigrad/ops.py, by its name
    globals().update({name: op.function for name, op in OPS.items()})
    globals().update({name: getattr(ops, name) for name in ops.COMPOSITIONS})  # split

__all__ = [
    "OPS", "AnomalyError", "CompiledFunction", "Domain", "Tensor", "TraceError", "compile",
    "defop", "detect_anomaly", "enable_grad", "grad", "gradients", "is_anomaly_enabled",
    "is_recording", "load", "nn", "no_grad", "ops", "save", "scan", "to_dot", "value_and_grad",
    *OPS, *ops.COMPOSITIONS,
]
__version__ = "0.1.0"


class _SourceCheckout:
    """Finds minigrad.models and minigrad.optim in a source checkout that is not installed:
    there they are the folders models/ and optim/ beside minigrad/ (an install puts them
    inside the package, as pyproject.toml's package-dir says)."""

    root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))

    @classmethod
    def find_spec(cls, name: str, path: object = None,
                  target: object = None) -> _machinery.ModuleSpec | None:
        if name not in ("minigrad.models", "minigrad.optim"):
            return None
        return _machinery.PathFinder.find_spec(name, [cls.root])


# First: minigrad.models and minigrad.optim come from the checkout this minigrad came from,
# even where an editable install of another checkout would map them to its own folders.
if not _os.path.isdir(_os.path.join(_os.path.dirname(__file__), "optim")):
    _sys.meta_path.insert(0, _SourceCheckout)
