"""Speed and memory benchmarks of minigrad against hand-written NumPy.

Run `python -m benchmarks` from the repository root (see `benchmarks/__main__.py` for the
options; the last full run is in `benchmarks/RESULTS.md`). Every ratio is to the
hand-written step of `handwritten` (the fastest plain NumPy we know to write); the
tutorial-style step of `minigrad.models.reference` is a second column. Modules: `configs` (what is
measured, how often, the targets), `handwritten` (the baseline), `steps` (one training
step, built alike for every implementation), `timing` (the alternating median timer),
`memory` (tracemalloc peaks), `ops` (the overhead per op), `others` (PyTorch, JAX,
autograd), `suite` (the measurements, and `ENGINE_VARIANTS`, the engine's modes: one
entry per row), `report` (the markdown), `machine` (what it ran on), `threads` (one BLAS
thread), `allocator` (glibc malloc's pinned thresholds), `profiling` (where a step's time
goes).

This package imports nothing at import time, so `__main__` can fix the BLAS thread count
before NumPy is loaded.
"""
