"""The smallest thing an optimizer can update."""

from __future__ import annotations

import numpy as np

__all__ = ["Param", "Parameters"]


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


class Parameters:
    """What a hand-coded model shares with an engine Module's parameter bookkeeping: its
    `Param`s by name in `_params`, in order."""

    _params: dict[str, Param]

    def named_parameters(self) -> list[tuple[str, Param]]:
        """``(name, Param)`` pairs, in order."""
        return list(self._params.items())

    def parameters(self) -> list[Param]:
        """The parameters in the order of `named_parameters`."""
        return list(self._params.values())

    def zero_grad(self) -> None:
        """Forget accumulated gradients (sets every ``.grad`` to None)."""
        for param in self._params.values():
            param.grad = None
