"""minigrad: a tiny reverse-mode autodiff engine on NumPy.

Build a computation from minigrad ops on `Tensor`s, call `backward()` on the result and read
each input's `.grad`. See the README for a tour.
"""

from . import nn
from .functional import grad, gradients, value_and_grad
from .graph import to_dot
from .ops import (
    abs,
    add,
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    concatenate,
    div,
    einsum,
    exp,
    getitem,
    log,
    matmul,
    max,
    mean,
    mse_loss,
    mul,
    neg,
    pow,
    relu,
    reshape,
    sigmoid,
    sqrt,
    stack,
    sub,
    sum,
    tanh,
    tensordot,
    transpose,
)
from .serialization import load, save
from .tape import AnomalyError, detect_anomaly, is_anomaly_enabled, is_recording, no_grad
from .tensor import OPS, Tensor

__all__ = [
    "OPS", "AnomalyError", "Tensor", "abs", "add", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "concatenate", "detect_anomaly", "div", "einsum", "exp",
    "getitem", "grad", "gradients", "is_anomaly_enabled", "is_recording", "load", "log",
    "matmul", "max", "mean", "mse_loss", "mul", "neg", "nn", "no_grad", "pow", "relu",
    "reshape", "save", "sigmoid", "sqrt", "stack", "sub", "sum", "tanh", "tensordot", "to_dot",
    "transpose", "value_and_grad",
]
__version__ = "0.1.0"
