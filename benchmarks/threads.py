"""One BLAS thread for the whole benchmark process, set before NumPy is imported.

The targets are ratios on one thread: with two cores and several BLAS threads, a timing
depends on what else the machine runs more than on the code. `pin_one_thread()` sets the
thread-count variables of OpenBLAS, OpenMP, MKL and BLIS, and XLA's flags for JAX, in this
process's environment; it must run before `numpy` (or torch, or jax) is first imported,
which is why `benchmarks/__main__.py` calls it first. If NumPy was imported already (the
benchmarks called from Python), threadpoolctl, when installed, limits the loaded BLAS
instead. `blas_threads()` reports what the loaded BLAS libraries actually use.

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are left alone: the report records them and the
kernel OpenBLAS chose (see RESULTS.md for the command line that unsets them).
"""

from __future__ import annotations

import os
import sys

__all__ = ["THREAD_VARIABLES", "blas_threads", "pin_one_thread"]

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
_XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

_limiter = None  # keeps a threadpoolctl limit alive for the life of the process


def pin_one_thread() -> None:
    """Ask every BLAS (and XLA) this process may load for a single thread."""
    global _limiter
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {_XLA_ONE_THREAD}".strip()
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return
        _limiter = threadpool_limits(limits=1)


def blas_threads() -> list[dict[str, object]]:
    """threadpoolctl's view of the loaded thread pools (empty if it is not installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return threadpool_info()
