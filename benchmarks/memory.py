"""Peak memory of one training step, by tracemalloc.

NumPy reports its array buffers to tracemalloc (through `PyTraceMalloc_Track`), so the
traced peak covers the arrays as well as the Python objects (tensors, tape nodes, tuples)
a step creates. Each step is measured alone, after warm-up steps (so that the optimizer's
state and work arrays already exist, as in training): tracing starts just before the step,
and the peak of the traced memory during it is the memory the step needed above what was
already allocated. Blocks allocated before tracing started are not counted, either way:
so a step that keeps buffers between calls (the hand-written one) passes `before_each`
to drop them, and its measured peak then includes allocating them.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

import numpy as np

__all__ = ["step_peak"]


def step_peak(step: Callable[[], object], *, repeats: int = 3, warmup: int = 1,
              before_each: Callable[[], object] | None = None) -> int:
    """The median, over `repeats` measured steps, of the traced peak of one step, in bytes;
    `before_each` runs before each measured step, untraced."""
    for _ in range(warmup):
        step()
    peaks = []
    for _ in range(repeats):
        if before_each is not None:
            before_each()
        gc.collect()
        already = tracemalloc.is_tracing()  # e.g. under python -X tracemalloc
        if not already:
            tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            step()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            if not already:
                tracemalloc.stop()
        peaks.append(peak - before)
    return int(np.median(peaks))
