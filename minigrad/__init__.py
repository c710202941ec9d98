"""minigrad: a tiny reverse-mode autodiff engine on NumPy.

Build a computation from minigrad ops on `Tensor`s, call `backward()` on the result and read
each input's `.grad`. See the README for a tour.
"""

from . import nn
from .anomaly import AnomalyError
from .functional import grad, gradients, value_and_grad
from .graph import to_dot
from .modes import detect_anomaly, enable_grad, is_anomaly_enabled, is_recording, no_grad
from .ops import *  # noqa: F403 (every op of the table, by its name)
from .ops import OPS
from .primitive import Domain, defop
from .serialization import load, save
from .tensor import Tensor

__all__ = [
    "OPS", "AnomalyError", "Domain", "Tensor", "defop", "detect_anomaly", "enable_grad", "grad",
    "gradients", "is_anomaly_enabled", "is_recording", "load", "nn", "no_grad", "save",
    "to_dot", "value_and_grad", *OPS,
]
__version__ = "0.1.0"
