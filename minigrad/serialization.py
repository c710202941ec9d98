"""`save` and `load` a Module's parameters, without pickle, safely against hostile files.

The file format is NumPy's `.npz`: a zip archive holding one `.npy` member per parameter,
named `<parameter name>.npy` and stored uncompressed, so `numpy.load(path)[name]` reads any
parameter back. The metadata (string keys and values) is JSON in the zip archive's comment,
after the marker `minigrad-checkpoint`, so it never collides with a parameter's name, with
its CRC-32 beside it: zip checks its members' bytes, not its comment's, and a damaged seed
or preset must be refused, not read.
Files written by `numpy.savez` (and by earlier minigrad versions, whose metadata sat in
`__meta__.<key>` members) load too.

`load` reads in three passes, each checked before the next: the zip directory (names,
declared sizes: nothing is inflated yet), the `.npy` headers (shapes, dtypes: no data read
yet), then the data (finite, in range of each parameter's dtype). So a file costs time and
memory in proportion to the module it fills, and a refused file changes nothing.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy

from .nn import Module
from .tensor import Tensor, plain_array

if sys.platform != "win32":
    import fcntl

__all__ = ["load", "read_metadata", "save", "temporary_beside"]

_MARKER = "minigrad-checkpoint"
_FORMAT_VERSION = 2  # 2: the metadata's CRC-32 beside it; 1 (read too): without
_LEGACY_META = "__meta__."
_MAX_COMMENT = 65535  # the zip format's limit
_MAX_HEADER = 10_000  # numpy's own bound on a .npy header (numpy.load's max_header_size)
_HEADER_ROOM = 12 + _MAX_HEADER  # magic, version and length fields, then the header
_MAX_ITEMSIZE = 16  # the widest numeric scalar a file may hold (longdouble, complex128)
_MEMBER_ROOM = 1024  # zip headers of one member, beside its name (twice) and its data
_FILE_ROOM = 256 * 1024  # end records, the comment, legacy metadata members
_MAX_LEGACY_VALUE = 64 * 1024
_MAX_METADATA_DIRECTORY = 1024 * 1024  # zip directory read to find legacy metadata
_SHOWN_NAMES = 5  # names listed in an error before "... (N more)"
_TEMP_SUFFIX = ".minigrad-tmp"
_NAMED_BYTES = 200  # of the target's name in its temporary file's (see `_temp_prefix`)


class _Refused(Exception):
    """Why a file is refused, in the user's words; `load` adds the path."""


def save(module: Module | Any, path: str | bytes | os.PathLike,
         metadata: Mapping[str, Any] | None = None) -> None:
    """Write the module's parameters (and `metadata`, its keys and values stored as their
    `str`: `load` gives back strings) to `path`, atomically.

    `module` may also be any object whose `state_dict()` is a flat dict of name -> NumPy
    array and which has `load_state_dict` (an optimizer, a learning-rate schedule): its
    state dict is saved, and `load` reads it back the same way. Or a state dict itself, a
    mapping of name -> array or tensor (`save(model.state_dict(), path)`, PyTorch's habit;
    `dict(model.named_parameters())`): the same file as `save(model, path)`, which
    `load(model, path)` reads back.

    The archive is written to a temporary file beside `path`, synced, then renamed over
    it: `path` always holds either the old file or the new one, whole. A save killed
    midway leaves its temporary file behind; the next save to the same path removes it.
    A file replaced keeps its permission bits (a new one gets those of a plain `open`);
    through a symbolic link, the file it points to is written and the link kept.
    Any parameter name round-trips except one holding a NUL character (zip cannot store
    it) or a lone surrogate (nor can UTF-8). `path` is a str, bytes or os.PathLike, as for
    `open`. Refused with ValueError, before anything is written: an empty path, a path
    that names a directory (ending in a separator, "." or ".."), a path that exists and is
    not a regular file (a directory, FIFO, device or socket: left as it is), non-finite
    parameters, two parameters with one name, a name zip cannot store, metadata over
    64 kB; a masked array in a state dict (TypeError: its mask would be lost), metadata
    that is not a mapping, a path that is not a str, bytes or os.PathLike (TypeError). A file
    system error is the OSError, naming `path` (not the temporary file).
    """
    arrays = _arrays_to_save(module)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"save: metadata must be a mapping (key -> value) or None, got "
                        f"{type(metadata).__name__}")
    comment = _comment(metadata or {})
    path = os.fsdecode(_checked_path(path, "save"))  # str, bytes or os.PathLike, as open() takes
    try:
        target, mode = _target(path)
        directory = os.path.dirname(target)
        with temporary_beside(target, mode) as (f, temporary):
            _write_archive(f, arrays, comment)
            f.flush()
            os.fsync(f.fileno())
            os.replace(temporary, target)
    except OSError as error:
        if error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, path) from error
    _sync_directory(directory)


def load(module: Module | Any, path: str | bytes | os.PathLike) -> dict[str, str]:
    """Read parameters written by `save` (or `numpy.savez`) into `module`, in place;
    return the metadata saved with them.

    Refused with a one-line ValueError, leaving `module` as it was: a file that is not a
    `.npz` archive or is damaged, larger than a checkpoint of `module` can be, with names,
    shapes or dtypes other than the module's (a dtype must cast to the parameter's as
    `numpy.can_cast(..., casting="same_kind")` allows), or with a value that is NaN,
    infinite, or out of the range of the parameter's dtype (1e300 for a float32). Whatever
    the caller's `numpy.errstate`. A path that is not a str, bytes or os.PathLike is a
    TypeError. A file that cannot be opened raises the OSError
    (FileNotFoundError, PermissionError) as `open` does.
    `module` is what the file is checked against and read into: a Module, or an object
    with `state_dict()` and `load_state_dict` (an optimizer, a schedule); not a dict, which
    has no names, shapes and dtypes to check a file against (TypeError): pass the model,
    whether the file was saved from it or from its `state_dict()`.
    """
    expected = dict(_named_arrays(module, "load"))
    owner = type(module).__name__
    _checked_path(path, "load")
    try:
        with _open_regular(path) as f:
            _check_file_size(f, _file_ceiling(expected), owner)
            _end_record(f)
            with _zip(f) as archive:
                metadata, members = _directory(archive, expected, owner)
                headers = {name: _member_header(archive, info, expected[name], owner)
                           for name, info in members.items()}
                values = {name: _member_values(archive, members[name], header,
                                               expected[name].dtype, name)
                          for name, header in headers.items()}
    except _Refused as refusal:
        raise ValueError(f"load: {os.fsdecode(path)} {refusal}") from None
    # Names, shapes and dtypes are the module's; an optimizer may still refuse a value
    # (a hyperparameter out of its bounds), changing nothing.
    module.load_state_dict(values)
    return metadata


def read_metadata(path: str | bytes | os.PathLike) -> dict[str, str]:
    """The metadata saved with a model, without loading it (and without reading the
    parameters: only the end of the file, or for older files the zip directory)."""
    _checked_path(path, "read_metadata")
    try:
        with _open_regular(path) as f:
            comment, directory_size = _end_record(f)
            metadata = _parse_comment(comment)
            if metadata is not None:
                return metadata
            if directory_size > _MAX_METADATA_DIRECTORY:
                raise _Refused(f"has a zip directory of {_size(directory_size)}, more than a "
                               f"checkpoint's (at most {_size(_MAX_METADATA_DIRECTORY)})")
            with _zip(f) as archive:
                return _legacy_metadata(archive, archive.infolist())
    except _Refused as refusal:
        raise ValueError(f"read_metadata: {os.fsdecode(path)} {refusal}") from None


def _checked_path(path: Any, who: str) -> str | bytes | os.PathLike:
    """`path`, or TypeError unless a str, bytes or os.PathLike (as `open` takes; an int
    would be a file descriptor to `open`, and is no path here)."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"{who}: path must be a str, bytes or os.PathLike, got "
                        f"{type(path).__name__}")
    return path


# --- writing ---------------------------------------------------------------------------


def _named_arrays(module: Module | Any, caller: str) -> list[tuple[str, np.ndarray]]:
    """A module's parameters, or another object's flat state dict (or, to save, a state
    dict itself), as (name, array)."""
    if hasattr(module, "named_parameters"):
        return [(name, p.data) for name, p in module.named_parameters()]
    if caller == "save" and isinstance(module, Mapping):
        for name in module:
            if not isinstance(name, str):
                raise TypeError(f"save: a state dict's names must be strings, got {name!r}")
        # (a tensor's values, as in a dict of a model's named parameters)
        return [(name, value.data if isinstance(value, Tensor) else value)
                for name, value in module.items()]
    if not (callable(getattr(module, "state_dict", None))
            and callable(getattr(module, "load_state_dict", None))):
        accepted = ("a Module, or an object with state_dict() and load_state_dict() (an "
                    "optimizer, a learning-rate schedule)")
        if caller == "save":
            raise TypeError(f"save: expected {accepted}, or a state dict (name -> array or "
                            f"tensor), "
                            f"got {type(module).__name__}")
        dict_note = ("; a dict has no names, shapes and dtypes to check the file against: "
                     "pass the model, load(model, path), also for a file saved from "
                     "model.state_dict()") if isinstance(module, Mapping) else ""
        raise TypeError(f"load: expected {accepted} to read the file into, got "
                        f"{type(module).__name__}{dict_note}")
    return list(module.state_dict().items())


def _arrays_to_save(module: Module | Any) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for name, data in _named_arrays(module, "save"):
        if "\0" in name:
            raise ValueError(f"save: the parameter name {name!r} holds a NUL character, "
                             "which a zip archive cannot store")
        surrogates = [c for c in name if "\ud800" <= c <= "\udfff"]
        if surrogates:  # (from os.fsdecode of a name in another encoding, say)
            raise ValueError(f"save: the parameter name {name!r} holds the lone surrogate "
                             f"{surrogates[0]!r}, which UTF-8, a zip archive's encoding of "
                             "names, cannot store")
        if name in arrays:
            raise ValueError(f"save: two parameters are named {name!r}; the file could "
                             "hold only one")
        data = plain_array(data, f"save: {name!r}")  # (its mask would not be saved)
        problem = _first_nonfinite(data)
        if problem:
            raise ValueError(f"save: {name!r} holds {problem}; a checkpoint holds finite "
                             "parameters only")
        arrays[name] = data
    return arrays


def _comment(metadata: Mapping[str, Any]) -> bytes:
    table = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps({_MARKER: _FORMAT_VERSION, "metadata": table, "crc32": _crc(table)})
    comment = text.encode("utf-8")
    if len(comment) > _MAX_COMMENT:
        raise ValueError(f"save: the metadata takes {_size(len(comment))} as JSON; a "
                         f"checkpoint holds at most {_size(_MAX_COMMENT)}")
    return comment


def _write_archive(f: IO[bytes], arrays: Mapping[str, np.ndarray], comment: bytes) -> None:
    # As numpy.savez writes it, but with any name: savez takes the arrays as keyword
    # arguments, so it cannot take one named `file` or `allow_pickle`.
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                npy.write_array(member, np.asarray(array), allow_pickle=False)
        archive.comment = comment


_FILE_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
               (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
               (stat.S_ISLNK, "a symbolic link"))


def file_kind(mode: int) -> str:
    """What a file of `st_mode` `mode` is, in words: "a regular file", "a FIFO", ..."""
    return next((name for is_kind, name in _FILE_KINDS if is_kind(mode)), "a special file")


def _target(path: str) -> tuple[str, int]:
    """The file that saving to `path` replaces (a symbolic link's target, resolved) and
    the permission bits the new file gets: the old file's, or a plain `open`'s."""
    if not path:
        raise ValueError("save: the path is empty; give a file name, such as model.npz")
    last = os.path.basename(path)
    if last in ("", ".", ".."):  # as open() would: realpath drops a trailing separator
        ending = "a separator" if not last else repr(last)
        raise ValueError(f"save: {path} names a directory (it ends in {ending}), not a file; "
                         f"give a file name at its end, such as model.npz")
    target = os.path.realpath(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return target, 0o666 & ~umask
    if not stat.S_ISREG(mode):
        raise ValueError(f"save: {path} is {file_kind(mode)}, not a regular file; it is "
                         f"left as it is (give the path of a file)")
    return target, stat.S_IMODE(mode)


def _temp_prefix(path: str) -> str:
    """Hidden, named after the target, whose name is cut (by whole characters) to at most
    `_NAMED_BYTES` bytes as the file system encodes it: a file name has at most 255 bytes,
    and a character up to 4 (mkstemp adds 8 and the suffix 13)."""
    name = os.path.basename(path)[:_NAMED_BYTES]  # (a character is at least a byte)
    while len(os.fsencode(name)) > _NAMED_BYTES:
        name = name[:-1]
    return f".{name}."


@contextmanager
def temporary_beside(target: str, mode: int) -> Iterator[tuple[IO[bytes], str]]:
    """A new temporary file beside `target` (hidden, named after it) with permission bits
    `mode`, to write `target` whole and rename over it (`save`'s way, and the figures');
    the temporary files of earlier writes to `target` killed midway are removed first, and
    this one on any error."""
    directory, prefix = os.path.dirname(target), _temp_prefix(target)
    _remove_leftovers(directory, prefix)
    with _locked_temporary(directory, prefix, mode) as written:
        yield written


@contextmanager
def _locked_temporary(directory: str, prefix: str,
                      mode: int) -> Iterator[tuple[IO[bytes], str]]:
    """A new temporary file beside the target, with permission bits `mode`, locked for as
    long as it is written, so that a concurrent save's `_remove_leftovers` leaves it
    alone; removed on any error."""
    while True:
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=_TEMP_SUFFIX)
        if _lock(handle, wait=True) and _still_named(handle, temporary):
            break
        os.close(handle)  # a cleaner removed it between mkstemp and the lock: take another
    try:
        with os.fdopen(handle, "wb") as f:
            os.chmod(temporary, mode)  # mkstemp makes it private (0600)
            yield f, temporary
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise


def _remove_leftovers(directory: str, prefix: str) -> None:
    """Delete the temporary files of earlier saves to this target that were killed midway:
    those no live save holds a lock on."""
    try:
        entries = [e.path for e in os.scandir(directory)
                   if e.name.startswith(prefix) and e.name.endswith(_TEMP_SUFFIX)]
    except OSError:
        return  # the save itself will report an unusable directory
    for leftover in entries:
        try:
            handle = os.open(leftover, os.O_RDONLY)
        except OSError:
            continue
        # A leftover that cannot be locked or removed (another save holds it, a read-only
        # directory) is left for a later save.
        try:
            with suppress(OSError):
                if _lock(handle, wait=False):
                    os.unlink(leftover)
        finally:
            os.close(handle)


def _lock(handle: int, wait: bool) -> bool:
    """An exclusive advisory lock on the open file; False if another process holds it."""
    if sys.platform == "win32":
        return wait  # no advisory locks: leftovers are never taken for dead
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError:  # a file system without locks: write unprotected, never take for dead
        return wait
    return True


def _still_named(handle: int, path: str) -> bool:
    try:
        return os.path.samestat(os.fstat(handle), os.stat(path))
    except FileNotFoundError:
        return False


def _sync_directory(directory: str) -> None:
    # The rename is durable only once the directory itself is on disk.
    if sys.platform == "win32":
        return
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # the rename is done all the same; only its durability is left to the system
    try:
        with suppress(OSError):  # some file systems cannot sync a directory
            os.fsync(handle)
    finally:
        os.close(handle)


# --- reading: the file and the zip directory -------------------------------------------


@contextmanager
def _open_regular(path: str | bytes | os.PathLike) -> Iterator[IO[bytes]]:
    # O_NONBLOCK: a FIFO named like a checkpoint must be refused, not waited on.
    handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    mode = os.fstat(handle).st_mode
    if not stat.S_ISREG(mode):
        os.close(handle)
        raise _Refused("is a directory, not a checkpoint file" if stat.S_ISDIR(mode) else
                       "is not a regular file (a device, a pipe or a socket)")
    with os.fdopen(handle, "rb") as f:
        yield f


def _file_ceiling(expected: Mapping[str, np.ndarray]) -> int:
    """The most bytes an `.npz` of these parameters can take, with any numeric dtype."""
    return _FILE_ROOM + sum(_HEADER_ROOM + _MAX_ITEMSIZE * array.size + _MEMBER_ROOM
                            + 2 * len(name.encode("utf-8", "surrogatepass"))
                            for name, array in expected.items())


def _check_file_size(f: IO[bytes], ceiling: int, owner: str) -> None:
    size = os.fstat(f.fileno()).st_size
    if size > ceiling:
        raise _Refused(f"is {_size(size)}, more than a checkpoint of {owner} can take "
                       f"({_size(ceiling)} at most)")


@contextmanager
def _zip(f: IO[bytes]) -> Iterator[zipfile.ZipFile]:
    """The zip archive in `f`; any damage found while reading it is refused."""
    try:
        with zipfile.ZipFile(f) as archive:
            yield archive
    except zipfile.BadZipFile as error:
        raise _Refused(_not_an_archive(f, error)) from None
    # zipfile's own ways to fail on damage: NotImplementedError is its answer to a member
    # compressed by a method it lacks, a file this loader cannot read either.
    except (EOFError, OSError, ValueError, struct.error, zlib.error, NotImplementedError,
            OverflowError, RuntimeError) as error:
        raise _Refused(f"is a damaged .npz archive ({error})") from None


def _not_an_archive(f: IO[bytes], error: Exception) -> str:
    """What the file is, when it is not a zip archive."""
    f.seek(0)
    start = f.read(512)
    if not start:
        return "is empty, not a .npz archive"
    if start.startswith(b"PK"):
        return f"is a damaged .npz archive ({error})"
    if start.startswith(b"\x93NUMPY"):
        return "is a single .npy array, not a .npz archive of named arrays"
    if start[:1] == b"\x80":
        return "is a Python pickle, not a .npz archive (minigrad never unpickles)"
    try:
        start.decode("utf-8")
    except UnicodeDecodeError:
        return "is not a .npz archive (not a zip file)"
    return "is a text file, not a .npz archive"


def _end_record(f: IO[bytes]) -> tuple[bytes, int]:
    """The archive comment and the zip directory's declared size, read from the end of the
    file as zipfile finds them (the last end-of-directory record)."""
    size = os.fstat(f.fileno()).st_size
    tail_size = min(size, 22 + _MAX_COMMENT)
    f.seek(size - tail_size)
    tail = f.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        raise _Refused(_not_an_archive(f, zipfile.BadZipFile("File is not a zip file")))
    directory_size, _, comment_size = struct.unpack("<LLH", tail[at + 12:at + 22])
    if at + 22 + comment_size != len(tail):  # zipfile would take a cut comment as it is
        raise _Refused("is damaged: it does not end where its zip directory says (truncated, "
                       "or data appended)")
    if at >= 20 and tail[at - 20:at - 16] == b"PK\x06\x07":  # zip64: sizes are elsewhere
        directory_size = size
    return tail[at + 22:at + 22 + comment_size], directory_size


def _crc(metadata: Mapping[str, str]) -> int:
    return zlib.crc32(json.dumps(metadata, sort_keys=True).encode("utf-8"))


def _parse_comment(comment: bytes) -> dict[str, str] | None:
    """The metadata in a minigrad archive comment; None if the comment is not ours."""
    if _MARKER.encode() not in comment:
        if b'"crc32"' in comment:  # ours, its marker damaged
            raise _Refused("is damaged: its metadata's marker is not readable")
        return None
    try:
        content = json.loads(comment.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Refused("is damaged: its metadata is not readable JSON") from None
    version = content.get(_MARKER) if isinstance(content, dict) else None
    if type(version) is not int or version not in (1, _FORMAT_VERSION):
        raise _Refused(f"is in checkpoint format {version!r}; this minigrad reads formats 1 "
                       f"and {_FORMAT_VERSION}")
    metadata = content.get("metadata")
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _Refused("is damaged: its metadata is not a table of strings")
    if version == _FORMAT_VERSION and content.get("crc32") != _crc(metadata):
        raise _Refused("is damaged: its metadata does not match its checksum")
    return metadata


def _directory(archive: zipfile.ZipFile, expected: Mapping[str, np.ndarray],
               owner: str) -> tuple[dict[str, str], dict[str, zipfile.ZipInfo]]:
    """The metadata and the member holding each parameter, checked against `expected`
    from the zip directory alone (nothing is inflated)."""
    metadata = _parse_comment(archive.comment)
    legacy: list[zipfile.ZipInfo] = []
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = info.filename.removesuffix(".npy")  # as numpy.load names them
        if metadata is None and name.startswith(_LEGACY_META):
            legacy.append(info)
        elif name in members:
            raise _Refused(f"is damaged: it holds {name!r} twice")
        else:
            members[name] = info
    missing = [name for name in expected if name not in members]
    unexpected = [name for name in members if name not in expected]
    if missing or unexpected:
        problems = [f"{label} {_names(names)}" for label, names
                    in (("missing", missing), ("unexpected", unexpected)) if names]
        raise _Refused(f"does not fit {owner}: " + "; ".join(problems))
    for name, info in members.items():
        _check_member(info, _HEADER_ROOM + _MAX_ITEMSIZE * expected[name].size, repr(name))
    if metadata is None:
        metadata = _legacy_metadata(archive, legacy)
    return metadata, members


def _check_member(info: zipfile.ZipInfo, ceiling: int, what: str) -> None:
    if info.flag_bits & 0x1:
        raise _Refused(f"holds {what} encrypted; a checkpoint is never encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _Refused(f"holds {what} compressed with zip method {info.compress_type}; "
                       "a .npz is stored or deflated")
    if info.file_size > ceiling:
        raise _Refused(f"is damaged or hostile: {what} declares {_size(info.file_size)}, "
                       f"more than it can hold ({_size(ceiling)} at most)")


def _legacy_metadata(archive: zipfile.ZipFile,
                     infos: list[zipfile.ZipInfo]) -> dict[str, str]:
    """Metadata that earlier versions saved as 0-d string arrays named `__meta__.<key>`."""
    metadata: dict[str, str] = {}
    for info in infos:
        name = info.filename.removesuffix(".npy")
        if not name.startswith(_LEGACY_META):
            continue
        _check_member(info, _HEADER_ROOM + _MAX_LEGACY_VALUE, repr(name))
        with archive.open(info) as member:
            shape, _, dtype = _read_header(member, repr(name))
            if shape != () or dtype.kind != "U":
                raise _Refused(f"is damaged: the metadata {name!r} is not a string")
            raw = _read_exactly(member, dtype.itemsize, info, repr(name))
        metadata[name[len(_LEGACY_META):]] = str(np.frombuffer(raw, dtype)[0])
    return metadata


# --- reading: the .npy headers and the data --------------------------------------------


def _member_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, parameter: np.ndarray,
                   owner: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The member's shape, order and dtype, checked against the parameter's; the member's
    size must be exactly its header and its data."""
    name = info.filename.removesuffix(".npy")
    with archive.open(info) as member:
        shape, fortran_order, dtype = _read_header(member, repr(name))
        header_size = member.tell()
    if shape != parameter.shape:
        raise _Refused(f"does not fit {owner}: {name!r} has shape {shape}, "
                       f"expected {parameter.shape}")
    if dtype.hasobject:
        raise _Refused(f"holds Python objects in {name!r} (dtype object); minigrad never "
                       "unpickles")
    if dtype.kind not in "biufc" or not np.can_cast(dtype, parameter.dtype, "same_kind"):
        raise _Refused(f"does not fit {owner}: {name!r} has dtype {dtype}, which cannot be cast to "
                       f"{parameter.dtype}")
    data_size = dtype.itemsize * parameter.size
    if info.file_size != header_size + data_size:
        raise _Refused(f"is damaged: {name!r} takes {_size(info.file_size)} where shape "
                       f"{shape} of {dtype} needs {_size(header_size + data_size)}")
    return shape, fortran_order, dtype


def _read_header(member: IO[bytes], what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = npy.read_magic(member)
        if version == (1, 0):
            return npy.read_array_header_1_0(member, max_header_size=_MAX_HEADER)
        if version == (2, 0):
            return npy.read_array_header_2_0(member, max_header_size=_MAX_HEADER)
    except (zipfile.BadZipFile, zlib.error) as error:  # a bad checksum, a broken deflate
        raise _Refused(f"is damaged: {what} cannot be read ({error})") from None
    except Exception:  # numpy parses the header with ast and tokenize: any failure is damage
        raise _Refused(f"is damaged: {what} has no readable .npy header") from None
    raise _Refused(f"holds {what} in .npy format {version[0]}.{version[1]}, which a "
                   "checkpoint does not use")


def _member_values(archive: zipfile.ZipFile, info: zipfile.ZipInfo,
                   header: tuple[tuple[int, ...], bool, np.dtype], dtype: np.dtype,
                   name: str) -> np.ndarray:
    """The member's data as the parameter's dtype; refused if a value is NaN, infinite, or
    beyond that dtype's range."""
    shape, fortran_order, stored = header
    with archive.open(info) as member:
        _read_header(member, repr(name))
        raw = _read_exactly(member, stored.itemsize * math.prod(shape), info, repr(name))
    values = np.frombuffer(raw, stored).reshape(shape, order="F" if fortran_order else "C")
    problem = _first_nonfinite(values)
    if problem:
        raise _Refused(f"holds {problem} in {name!r}; parameters must be finite")
    with np.errstate(all="ignore"):  # overflow is checked below, whatever the caller's state
        converted = values.astype(dtype)
    _check_range(values, converted, name)
    return converted


def _read_exactly(member: IO[bytes], size: int, info: zipfile.ZipInfo, what: str) -> bytes:
    try:
        data = member.read(size)
        at_end = member.read(1) == b""
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as error:
        raise _Refused(f"is damaged: {what} cannot be read ({error})") from None
    if len(data) != size or not at_end:
        raise _Refused(f"is damaged: {what} holds {len(data)} bytes of data, not {size}")
    return data


def _first_nonfinite(values: np.ndarray) -> str | None:
    """The first NaN or infinity in `values` and where it is, e.g. "nan at (0, 1)"."""
    if values.dtype.kind not in "fc":
        return None
    bad = ~np.isfinite(values)
    if not bad.any():
        return None
    index = _first_index(bad)
    return f"{values[index]!s}" + (f" at {index}" if index else "")


def _check_range(values: np.ndarray, converted: np.ndarray, name: str) -> None:
    """Refuse values that the cast to the parameter's dtype overflowed (or wrapped)."""
    if converted.dtype.kind in "fc":
        lost = ~np.isfinite(converted)
    elif converted.dtype.kind in "iu":
        info = np.iinfo(converted.dtype)
        lost = (values < info.min) | (values > info.max)
    else:
        return
    if lost.any():
        index = _first_index(lost)
        where = f" at {index}" if index else ""
        raise _Refused(f"holds {values[index]!s}{where} in {name!r}, beyond the range of its "
                       f"dtype {converted.dtype}")


def _first_index(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _names(names: list[str]) -> str:
    # A hostile name may be 64 kB long: the message stays one short line.
    shown = repr([n if len(n) <= 40 else n[:37] + "..." for n in names[:_SHOWN_NAMES]])
    if len(names) > _SHOWN_NAMES:
        shown = shown[:-1] + f", ... ({len(names) - _SHOWN_NAMES} more)]"
    return shown


def _size(n: int) -> str:
    """A byte count as people read it: 812 bytes, 1.6 MB."""
    if n < 1000:
        return f"{n} bytes"
    exponent = min(int(math.log10(n)) // 3, 4)
    return f"{n / 1000**exponent:.1f} {('kB', 'MB', 'GB', 'TB')[exponent - 1]}"
