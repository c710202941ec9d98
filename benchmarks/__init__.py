"""Speed and memory benchmarks of minigrad against the hand-coded references.

Run `python -m benchmarks` from the repository root (see `benchmarks/__main__.py` for the
options; the last full run is in `benchmarks/RESULTS.md`). Modules: `configs` (what is
measured, how often), `steps` (one training step, built alike for engine and reference),
`timing` (the alternating median timer), `memory` (tracemalloc peaks), `ops` (the overhead
per op), `others` (PyTorch, JAX, autograd), `suite` (the measurements), `report` (the
markdown), `machine` (what it ran on), `threads` (one BLAS thread).

This package imports nothing at import time, so `__main__` can fix the BLAS thread count
before NumPy is loaded.
"""
