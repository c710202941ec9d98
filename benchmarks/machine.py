"""What the numbers were measured on: CPU, cores, Python, NumPy and its BLAS, the BLAS
kernel and thread count actually in use, the OpenBLAS environment, the load, the commit."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from .allocator import describe as describe_malloc
from .threads import blas_threads

__all__ = ["describe", "load_average"]

ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cores() -> str:
    logical = os.cpu_count()
    usable: int | None = logical
    if hasattr(os, "sched_getaffinity"):
        usable = len(os.sched_getaffinity(0))
    return f"{logical} logical" + ("" if usable == logical else f", {usable} usable")


def _numpy_blas() -> str:
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 (older NumPy: no dict mode, or another layout)
        return "unknown"


def _blas_in_use() -> str:
    pools = [p for p in blas_threads() if p.get("user_api") == "blas"]
    if not pools:
        return "threadpoolctl not installed: kernel and threads not read back"
    return "; ".join(f"{p.get('internal_api')} {p.get('version')}, kernel "
                     f"{p.get('architecture', '?')}, {p.get('num_threads')} thread(s)"
                     for p in pools)


def _git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head + (" with uncommitted changes" if dirty else "")


def _minigrad_folder() -> str:
    import minigrad

    folder = Path(minigrad.__file__).resolve().parent
    return "this checkout's minigrad/" if folder == ROOT / "minigrad" else str(folder)


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _environment(name: str) -> str:
    value = os.environ.get(name)
    return "unset" if value is None else value


def describe() -> list[tuple[str, str]]:
    """(what, value) pairs for the report's header."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    return [
        ("date", now.isoformat().replace("+00:00", " UTC")),
        ("CPU", _cpu_model()),
        ("cores", _cores()),
        ("Python", (f"{platform.python_implementation()} {platform.python_version()} "
                   f"({sys.platform})")),
        ("NumPy", f"{np.__version__}, built with {_numpy_blas()}"),
        ("BLAS in use", _blas_in_use()),
        ("OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE",
         f"{_environment('OPENBLAS_CORETYPE')} / {_environment('OPENBLAS_L2_SIZE')}"),
        ("thread variables", (f"OPENBLAS_NUM_THREADS={_environment('OPENBLAS_NUM_THREADS')}, "
                             f"OMP_NUM_THREADS={_environment('OMP_NUM_THREADS')}")),
        ("glibc malloc thresholds", describe_malloc()),
        ("minigrad", f"commit {_git_commit()}, imported from {_minigrad_folder()}"),
        ("load average at start (1, 5, 15 min)", load_average()),
    ]
