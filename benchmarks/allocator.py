"""Pin glibc malloc's thresholds for the benchmark process, so no ratio is an allocator
artefact.

glibc serves a block of at least `M_MMAP_THRESHOLD` bytes (128 KiB at start) with its own
mmap, and gives it back to the kernel on free, so the next step's block of the same size
faults its pages in again. The threshold is adaptive: freeing an mmapped block raises it
to that block's size (up to 32 MiB), after which such blocks come from the heap, whose
free top is trimmed back to the kernel beyond `M_TRIM_THRESHOLD`. When that switch happens
depends on the sequence of allocations before it, so the same step can cost page faults in
one run or one process and none in another: at B (200 × 13 × 32, arrays of 665 kB) this
moves the step times by tens of percent, differently for the implementations that allocate
per step (the engine, the tutorial-style step) and the one that does not (the hand-written
step reuses its buffers).

`PINNED` fixes both thresholds through glibc's environment variables, which malloc reads
once, when the process starts: blocks below 32 MiB (every array of cases A-D; the
largest, at D and C, are 26.6 and 25.6 MB) always come from the heap, and the heap is
trimmed only beyond 512 MiB, so a step reuses memory already faulted in, whatever ran
before it. Setting the variables fixes the thresholds (no adaptation). `python -m
benchmarks` re-executes itself with them (`reexec_with`) unless `--adaptive-malloc` asks
for glibc's defaults, and the report says which setting it ran under.
"""

from __future__ import annotations

import os
import platform
import sys

__all__ = ["PINNED", "describe", "is_glibc", "reexec_with"]

PINNED = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(512 * 2**20)}


def is_glibc() -> bool:
    return platform.libc_ver()[0] == "glibc"


def _current() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in PINNED}


def reexec_with(pinned: bool) -> None:
    """Replace this process by the same command with the thresholds pinned (`pinned`) or
    unset (glibc's adaptive defaults), unless the environment already says so. Returns
    only when nothing needed changing (or on a C library other than glibc)."""
    wanted: dict[str, str | None] = dict(PINNED) if pinned else dict.fromkeys(PINNED)
    if not is_glibc() or _current() == wanted:
        return
    for name, value in wanted.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    sys.stdout.flush()
    sys.stderr.flush()
    # sys.orig_argv keeps the interpreter's own options (-X, -W, ...) as well as ours.
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def describe() -> str:
    """The malloc setting this process runs under, for the report."""
    if not is_glibc():
        return f"not glibc ({platform.libc_ver()[0] or 'unknown C library'}): not pinned"
    current = _current()
    settings = ", ".join(f"{name}={value if value is not None else 'unset'}"
                         for name, value in current.items())
    if current == PINNED:
        return f"pinned: {settings} (32 MiB, 512 MiB)"
    if all(value is None for value in current.values()):
        return f"glibc's adaptive defaults: {settings}"
    return f"set by the caller: {settings}"
