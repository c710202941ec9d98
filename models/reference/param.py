"""The smallest thing an optimizer can update."""

from __future__ import annotations

import numpy as np

__all__ = ["Param"]


class Param:
    """A parameter array and its gradient.

    Optimizers read ``grad`` and update ``data`` (in place or by assignment: the reference
    models read ``data`` afresh on every call). ``grad`` is None until a backward pass
    accumulates into it. The engine's ``Parameter`` has the same two attributes, so one
    optimizer can drive both.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data: np.ndarray, grad: np.ndarray | None = None) -> None:
        self.data: np.ndarray = data
        self.grad: np.ndarray | None = grad

    def __repr__(self) -> str:
        return f"Param(shape={self.data.shape}, dtype={self.data.dtype})"
