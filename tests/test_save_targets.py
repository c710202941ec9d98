"""What `mg.save` does to what is already at its path: a regular file is replaced whole and
keeps its permission bits; anything else (a directory, FIFO, device, socket) is refused
and left as it is; a symbolic link is followed, its target written and the link kept; an
empty path is refused; a file system error names the caller's path, not the temporary file.
"""

import errno
import os
import re
import socket
import stat
import tempfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad.nn import Linear
from minigrad.serialization import read_metadata


def _model(seed=0):
    return Linear(3, 2, rng=np.random.default_rng(seed))


def _weights(module):
    return {name: p.data.copy() for name, p in module.named_parameters()}


def _loads_as(path, seed):
    """Whether `path` holds exactly the parameters of `_model(seed)`."""
    loaded = _model(seed + 100)
    mg.load(loaded, path)
    expected = _weights(_model(seed))
    return all(np.array_equal(p.data, expected[name]) for name, p in loaded.named_parameters())


def _fifo(path):
    os.mkfifo(path)


def _directory(path):
    os.mkdir(path)


def _socket(path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()  # the socket file stays


def _character_device(path):
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is


NODES = [(_fifo, stat.S_ISFIFO, "a FIFO"), (_directory, stat.S_ISDIR, "a directory"),
         (_socket, stat.S_ISSOCK, "a socket"),
         (_character_device, stat.S_ISCHR, "a character device")]


def _listing(directory):
    return sorted((entry.name, entry.stat(follow_symlinks=False).st_ino, entry.is_symlink())
                  for entry in os.scandir(directory))


@pytest.mark.parametrize("make, is_kind, kind", NODES, ids=[n[2] for n in NODES])
@pytest.mark.parametrize("through_a_link", [False, True], ids=["direct", "through a link"])
def test_a_target_that_is_not_a_regular_file_is_refused_and_left_as_it_is(
        tmp_path, make, is_kind, kind, through_a_link):
    node = tmp_path / "node"
    make(node)
    path = node
    if through_a_link:
        path = tmp_path / "link.npz"
        path.symlink_to(node)
    before = _listing(tmp_path)
    with pytest.raises(ValueError) as refusal:
        mg.save(_model(), path)
    assert str(refusal.value) == (f"save: {path} is {kind}, not a regular file; it is left "
                                  f"as it is (give the path of a file)")
    assert is_kind(os.stat(node, follow_symlinks=False).st_mode)
    assert _listing(tmp_path) == before  # nothing replaced, no temporary file left


@given(mode=st.integers(0, 0o777))
def test_a_replaced_file_keeps_its_permission_bits(tmp_path_factory, mode):
    path = tmp_path_factory.mktemp("mode") / "model.npz"
    mg.save(_model(0), path)
    os.chmod(path, mode)
    mg.save(_model(1), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    os.chmod(path, 0o600)  # readable again, whoever runs the test
    assert _loads_as(path, 1)


def test_a_new_file_gets_the_mode_of_a_plain_open(tmp_path):
    umask = os.umask(0o027)
    try:
        mg.save(_model(), tmp_path / "model.npz")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "model.npz").st_mode) == 0o640


def test_through_a_link_the_file_it_points_to_is_written_and_the_link_kept(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "latest").mkdir()
    target = tmp_path / "runs" / "run3.npz"
    mg.save(_model(0), target)
    os.chmod(target, 0o640)
    link = tmp_path / "latest" / "model.npz"
    link.symlink_to(os.path.relpath(target, link.parent))
    mg.save(_model(1), link)
    assert link.is_symlink() and os.readlink(link) == os.path.relpath(target, link.parent)
    assert _loads_as(target, 1)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(tmp_path / "runs") == ["run3.npz"]  # the temporary file went there
    assert os.listdir(tmp_path / "latest") == ["model.npz"]


def test_a_dangling_link_gets_its_target_written(tmp_path):
    link = tmp_path / "model.npz"
    link.symlink_to("saved/run.npz")
    (tmp_path / "saved").mkdir()
    mg.save(_model(2), link)
    assert link.is_symlink() and _loads_as(tmp_path / "saved" / "run.npz", 2)


def test_an_empty_path_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(ValueError, match="^save: the path is empty; give a file name"):
        mg.save(_model(), "")
    assert os.listdir(tmp_path) == ["work"] and os.listdir(work) == []


@pytest.mark.parametrize("ending", ["/", "/.", "/..", "//"])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
@pytest.mark.parametrize("exists", [False, True], ids=["new", "over a file"])
def test_a_path_naming_a_directory_is_refused_before_anything_is_written(
        tmp_path, ending, as_bytes, exists):
    """Before, realpath dropped the separator: "ckpt/" wrote a file ckpt (replacing one
    there), which mg.load("ckpt/") then could not open. open() refuses such a path too."""
    if exists:
        mg.save(_model(1), tmp_path / "ckpt")
    before = _listing(tmp_path)
    path = str(tmp_path / "ckpt") + ending
    last = "a separator" if ending.endswith("/") else repr(ending.lstrip("/"))
    with pytest.raises(ValueError, match=rf"^save: {re.escape(path)} names a directory \(it "
                                         rf"ends in {re.escape(last)}\), not a file; give a "
                                         rf"file name at its end, such as model.npz$"):
        mg.save(_model(), os.fsencode(path) if as_bytes else path)
    assert _listing(tmp_path) == before
    if exists:
        assert _loads_as(tmp_path / "ckpt", 1)


def test_a_bytes_path_saves_and_loads_as_its_str(tmp_path):
    """Before, save raised TypeError on bytes (str.startswith mixed with bytes) while load
    took them; both take what open() takes now, and name the path decoded."""
    path = tmp_path / "modèle.npz"
    mg.save(_model(3), os.fsencode(path), metadata={"kind": "bytes"})
    assert os.listdir(tmp_path) == ["modèle.npz"]
    assert _loads_as(path, 3)
    assert mg.load(_model(), os.fsencode(path)) == {"kind": "bytes"}
    assert read_metadata(os.fsencode(path)) == {"kind": "bytes"}
    with pytest.raises(ValueError, match=rf"^load: {re.escape(str(path))} does not fit "):
        mg.load(Linear(2, 2), os.fsencode(path))


@given(characters=st.lists(st.sampled_from(["a", "é", "模", "😀"]), min_size=1, max_size=20),
       size=st.integers(1, 251))
def test_any_file_name_up_to_255_bytes_saves_and_loads(characters, size):
    """The temporary file's name was cut from the target's at 100 characters: up to 400
    bytes, over the 255 a name may have, so a valid name of multi-byte characters failed
    with "File name too long". It is cut at a byte count now, by whole characters."""
    # `characters` repeated, cut to `size` bytes (a character cut in two is dropped).
    name = ("".join(characters) * size).encode()[:size].decode(errors="ignore") + ".npz"
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, name)
        mg.save(_model(4), path)
        mg.save(_model(5), path)  # over the first: a temporary file, renamed
        assert os.listdir(directory) == [name]
        assert _loads_as(path, 5)


def _no_space(monkeypatch):
    """The write fails as on a full disk, naming the file it was writing: the temporary."""

    def fsync(handle):
        name = os.readlink(f"/proc/self/fd/{handle}")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_failed_write_names_the_callers_path(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    _no_space(monkeypatch)
    with pytest.raises(OSError) as failure:
        mg.save(_model(), path)
    assert failure.value.errno == errno.ENOSPC and failure.value.filename == str(path)
    assert str(failure.value) == f"[Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}: " \
                                 f"'{path}'"
    assert os.listdir(tmp_path) == []


def test_a_missing_directory_is_named_by_the_callers_path(tmp_path):
    path = tmp_path / "missing" / "model.npz"
    with pytest.raises(FileNotFoundError) as failure:
        mg.save(_model(), path)
    assert failure.value.filename == str(path)
    assert "minigrad-tmp" not in str(failure.value)
