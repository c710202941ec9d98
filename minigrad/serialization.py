"""`save` and `load` a Module's parameters as .npz, without pickle."""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Mapping

import numpy as np

from .nn import Module

_META = "__meta__."


def save(module: Module, path: str | os.PathLike,
         metadata: Mapping[str, str] | None = None) -> None:
    """Write the module's parameters (and optional string metadata) to `path` atomically: the
    file is written beside it and moved over it, so a crash leaves the old file whole."""
    arrays = dict(module.state_dict())
    for key, value in (metadata or {}).items():
        arrays[_META + key] = np.array(str(value))
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".minigrad-", suffix=".npz")
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        with os.fdopen(handle, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def load(module: Module, path: str | os.PathLike) -> dict[str, str]:
    """Read parameters saved by `save` into `module`; returns the metadata saved with them.

    A file whose names or shapes do not match the module is refused, and the module is left
    as it was.
    """
    arrays, metadata = _read(path)
    try:
        module.load_state_dict(arrays)
    except ValueError as error:
        raise ValueError(f"load: {os.fspath(path)} does not fit {type(module).__name__}: "
                         f"{str(error).split(': ', 2)[-1]}") from None
    return metadata


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata saved with a model, without loading it."""
    return _read(path)[1]


def _read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    try:
        loaded = np.load(os.fspath(path), allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy holds one unnamed array
            raise ValueError("it holds a single array, not named arrays")
        with loaded as npz:
            contents = {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"load: {os.fspath(path)} is not a minigrad .npz file ({error})") from None
    arrays = {k: v for k, v in contents.items() if not k.startswith(_META)}
    metadata = {k[len(_META):]: str(v) for k, v in contents.items() if k.startswith(_META)}
    return arrays, metadata
