"""The engine's models beside the hand-coded references: the one place where their
parameter names meet.

The engine's `Adder` names its parameters after its layers ("input.weight", ...); the
reference `ReferenceAdder` after the write-up (W_in, ...). `ENGINE_NAMES` maps one to the
other; everything that puts the two side by side (`minigrad compare`, the tests, the
benchmarks) goes through `reference_adder` and `gradient_differences`. The counter's two
parameters are called w_x and w_rec on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .adder import Adder
from .counter import Counter
from .reference import ReferenceAdder, ReferenceCounter

__all__ = ["ENGINE_NAMES", "GradientDifference", "gradient_differences", "reference_adder",
           "reference_counter", "to_engine_names"]

#: Reference (write-up) name -> engine name, for the adder.
ENGINE_NAMES: dict[str, str] = {
    "W_in": "input.weight",
    "b_in": "input.bias",
    "W_rec": "recurrent.weight",
    "b_rec": "recurrent.bias",
    "S_0": "initial_state",
    "W_out": "output.weight",
    "b_out": "output.bias",
}


def to_engine_names(reference_values: dict[str, Any]) -> dict[str, Any]:
    """The same mapping keyed by the engine's names (W_in -> "input.weight", ...)."""
    return {ENGINE_NAMES[name]: value for name, value in reference_values.items()}


def reference_adder(engine: Adder, dtype: DTypeLike | None = None) -> ReferenceAdder:
    """A hand-coded adder with the engine adder's architecture and parameter values
    (copies), in ``dtype`` (default: the engine's)."""
    dtype = engine.output.weight.dtype if dtype is None else dtype
    reference = ReferenceAdder(engine.config, dtype=dtype)
    engine_values = engine.state_dict()
    reference.load_parameters({name: engine_values[ENGINE_NAMES[name]]
                               for name, _ in reference.named_parameters()})
    return reference


def reference_counter(engine: Counter) -> ReferenceCounter:
    """A hand-coded counter at the engine counter's (w_x, w_rec)."""
    return ReferenceCounter(engine.w_x.item(), engine.w_rec.item())


@dataclass(frozen=True)
class GradientDifference:
    """One parameter's gradients side by side: ``max |engine - reference|`` and the
    largest ``|reference|`` (the scale that difference is to be read against)."""

    engine_name: str
    reference_name: str
    difference: float
    scale: float


def gradient_differences(engine: Adder | Counter,
                         reference: ReferenceAdder | ReferenceCounter) -> list[GradientDifference]:
    """Compare the ``.grad`` of every parameter after a backward pass on both models (a
    parameter either lacks, or the other model does not have: ValueError naming it)."""
    engine_grads = {name: p.grad for name, p in engine.named_parameters()}
    names = ENGINE_NAMES if isinstance(reference, ReferenceAdder) else {}
    result = []
    for name, param in reference.named_parameters():
        engine_name = names.get(name, name)
        if engine_name not in engine_grads:
            raise ValueError(f"gradient_differences: the engine's model has no parameter "
                             f"{engine_name!r} (the reference's {name!r}): another preset?")
        for who, grad in (("engine's", engine_grads[engine_name]), ("reference's", param.grad)):
            if grad is None:
                raise ValueError(f"gradient_differences: the {who} parameter {name!r} has no "
                                 f"gradient: run a backward pass on both models first")
        engine_grad: NDArray = np.asarray(engine_grads[engine_name])
        reference_grad: NDArray = np.asarray(param.grad)
        result.append(GradientDifference(
            engine_name, name, float(np.max(np.abs(engine_grad - reference_grad))),
            float(np.max(np.abs(reference_grad)))))
    return result
