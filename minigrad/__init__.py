"""minigrad: a tiny reverse-mode autodiff engine on NumPy.

Build a computation from minigrad ops on `Tensor`s, call `backward()` on the result and read
each input's `.grad`. See the README for a tour.
"""

from . import nn
from .functional import grad, value_and_grad
from .ops import (
    abs, add, binary_cross_entropy, binary_cross_entropy_with_logits, concatenate, div, einsum,
    exp, getitem, log, matmul, max, mean, mse_loss, mul, neg, pow, relu, reshape, sigmoid, sqrt,
    stack, sub, sum, tanh, tensordot, transpose,
)
from .serialization import load, save
from .tape import no_grad, is_recording
from .tensor import OPS, Tensor

__all__ = [
    "OPS", "Tensor", "abs", "add", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "concatenate", "div", "einsum", "exp", "getitem", "grad", "is_recording", "load", "log",
    "matmul", "max", "mean", "mse_loss", "mul", "neg", "nn", "no_grad", "pow", "relu",
    "reshape", "save", "sigmoid", "sqrt", "stack", "sub", "sum", "tanh", "tensordot",
    "transpose", "value_and_grad",
]
__version__ = "0.1.0"
