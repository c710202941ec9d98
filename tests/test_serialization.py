"""save and load: round trips of any name with metadata, refusals that leave the module as it
was, an atomic write that leaves no debris, clear errors for files that are not ours, and no
pickle. Hostile files: test_hostile_files.py."""

import fcntl
import json
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import Tensor
from minigrad.nn import Linear, Module, Parameter
from minigrad.serialization import read_metadata


class Model(Module):
    def __init__(self, seed=0, hidden=4):
        rng = np.random.default_rng(seed)
        self.encoder = Linear(3, hidden, rng=rng)
        self.decoder = Linear(hidden, 2, rng=rng)
        self.gain = Parameter(np.float64(seed))


def _state(module):
    return {name: p.data.copy() for name, p in module.named_parameters()}


def _assert_state(module, expected):
    state = _state(module)
    assert list(state) == list(expected)
    for name in state:
        np.testing.assert_array_equal(state[name], expected[name], err_msg=name)


def test_round_trip(tmp_path):
    source, target = Model(seed=1), Model(seed=2)
    path = tmp_path / "model.npz"
    mg.save(source, path)
    assert mg.load(target, path) == {}
    _assert_state(target, _state(source))
    x = np.ones((2, 3))
    np.testing.assert_array_equal(target.decoder(target.encoder(x)).data,
                                  source.decoder(source.encoder(x)).data)


def test_round_trip_float32_and_str_path(tmp_path):
    rng = np.random.default_rng(0)
    source = Linear(3, 2, rng=rng, dtype=np.float32)
    target = Linear(3, 2, rng=rng, dtype=np.float32)
    path = str(tmp_path / "small.npz")
    mg.save(source, path)
    mg.load(target, path)
    assert target.weight.dtype == np.float32
    np.testing.assert_array_equal(target.weight.data, source.weight.data)


def test_metadata_round_trip(tmp_path):
    path = tmp_path / "model.npz"
    metadata = {"preset": "counter", "epoch": 12, "note": "ünïcode, spaces: and = signs"}
    mg.save(Model(), path, metadata=metadata)
    expected = {key: str(value) for key, value in metadata.items()}
    assert read_metadata(path) == expected
    assert mg.load(Model(seed=3), path) == expected


def test_overwrite_replaces_the_file(tmp_path):
    path = tmp_path / "model.npz"
    mg.save(Model(seed=1), path, metadata={"version": "1"})
    mg.save(Model(seed=2), path, metadata={"version": "2"})
    target = Model(seed=3)
    assert mg.load(target, path) == {"version": "2"}
    _assert_state(target, _state(Model(seed=2)))
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


@pytest.mark.parametrize("other, named", [
    (lambda: Model(hidden=5), r"'encoder.weight' has shape \(3, 4\), expected \(3, 5\)"),
    (lambda: Linear(3, 4, rng=np.random.default_rng(0)),
     (r"missing \['weight', 'bias'\]; unexpected \['encoder.weight', 'encoder.bias', "
      r"'decoder.weight', 'decoder.bias', 'gain'\]")),
])
def test_mismatched_file_is_refused_and_module_unchanged(tmp_path, other, named):
    path = tmp_path / "model.npz"
    mg.save(Model(seed=1), path)
    target = other()
    before = _state(target)
    with pytest.raises(ValueError, match=rf"^load: {path} does not fit {type(target).__name__}: .*"
                                         + named):
        mg.load(target, path)
    _assert_state(target, before)


def test_file_with_a_missing_and_an_extra_name_is_refused(tmp_path):
    path = tmp_path / "edited.npz"
    state = Model(seed=1).state_dict()
    state["gain_renamed"] = state.pop("gain")
    np.savez(path, **state)
    target = Model(seed=2)
    before = _state(target)
    with pytest.raises(ValueError, match=r"missing \['gain'\]; unexpected \['gain_renamed'\]"):
        mg.load(target, path)
    _assert_state(target, before)


def _crash_after(monkeypatch, count, error):
    """Make the archive writer fail after `count` arrays are written."""
    real = np.lib.format.write_array
    written = []

    def write_array(member, array, **options):
        if len(written) == count:
            raise error
        written.append(array)
        real(member, array, **options)

    monkeypatch.setattr(np.lib.format, "write_array", write_array)


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    mg.save(Model(seed=1), path, metadata={"version": "old"})
    old_bytes = path.read_bytes()
    _crash_after(monkeypatch, 2, OSError("disk full"))  # part of the archive is written
    with pytest.raises(OSError, match="disk full"):
        mg.save(Model(seed=2), path, metadata={"version": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind
    target = Model(seed=3)
    assert mg.load(target, path) == {"version": "old"}
    _assert_state(target, _state(Model(seed=1)))


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    _crash_after(monkeypatch, 0, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        mg.save(Model(), tmp_path / "new.npz")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("write, what", [
    (lambda p: p.write_text("not an archive\n"), "is a text file, not a .npz archive"),
    (lambda p: p.write_bytes(b""), "is empty, not a .npz archive"),
    (lambda p: np.save(p.open("wb"), np.ones(3)),
     "is a single .npy array, not a .npz archive of named arrays"),
    (lambda p: p.write_bytes(pickle.dumps({"weight": np.ones(3)})),
     r"is a Python pickle, not a .npz archive \(minigrad never unpickles\)"),
    (lambda p: p.write_bytes(_truncated_npz()), r"is a damaged .npz archive \("),
])
def test_a_file_that_is_not_an_npz_archive_says_what_it_is(tmp_path, write, what):
    path = tmp_path / "model.npz"
    write(path)
    target = Model()
    before = _state(target)
    with pytest.raises(ValueError, match=rf"^load: {path} {what}") as caught:
        mg.load(target, path)
    assert "allow_pickle" not in str(caught.value)
    _assert_state(target, before)


def _truncated_npz():
    import io
    buffer = io.BytesIO()
    np.savez(buffer, weight=np.ones(100))
    return buffer.getvalue()[:-60]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        mg.load(Model(), tmp_path / "absent.npz")


class _Trap:
    """Unpickling this would run code: the loader must never get that far."""

    def __reduce__(self):
        target = pathlib.Path(os.environ.get("MINIGRAD_TRAP", "/nonexistent"))
        return (pathlib.Path.touch, (target,))


def test_no_pickle(tmp_path, monkeypatch):
    trap = tmp_path / "trap-fired"
    monkeypatch.setenv("MINIGRAD_TRAP", str(trap))
    path = tmp_path / "model.npz"
    state = Model(seed=1).state_dict()
    state["gain"] = np.array(_Trap(), dtype=object)
    np.savez(path, **state)  # np.savez pickles object arrays
    target = Model(seed=2)
    before = _state(target)
    with pytest.raises(ValueError, match=r"^load: .* holds Python objects in 'gain' \(dtype "
                                         r"object\); minigrad never unpickles$"):
        mg.load(target, path)
    assert not trap.exists()
    _assert_state(target, before)
    with zipfile.ZipFile(path) as archive:  # the file really held an object array
        assert b"'descr': '|O'" in archive.read("gain.npy")[:128]


def test_the_file_is_an_npz_that_numpy_reads(tmp_path):
    path = tmp_path / "model.npz"
    module = Model(seed=4)
    mg.save(module, path, metadata={"a": "b"})
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(module.state_dict())
        for name, value in module.state_dict().items():
            np.testing.assert_array_equal(npz[name], value, err_msg=name)
    with zipfile.ZipFile(path) as archive:  # the metadata sits in the archive comment
        assert json.loads(archive.comment)["metadata"] == {"a": "b"}
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}


def test_files_written_by_numpy_and_by_earlier_versions_load(tmp_path):
    source = Model(seed=1)
    state = source.state_dict()
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, **{k: np.asfortranarray(v) if v.ndim == 2 else v
                                       for k, v in state.items()})
    target = Model(seed=2)
    assert mg.load(target, compressed) == {}
    _assert_state(target, state)
    earlier = tmp_path / "earlier.npz"  # metadata as 0-d string arrays named __meta__.<key>
    np.savez(earlier, **state, **{"__meta__.preset": np.array("small"),
                                  "__meta__.note": np.array("ünï")})
    target = Model(seed=3)
    assert mg.load(target, earlier) == {"preset": "small", "note": "ünï"}
    assert read_metadata(earlier) == {"preset": "small", "note": "ünï"}
    _assert_state(target, state)


def test_read_metadata_reads_a_bounded_part_of_a_file(tmp_path):
    path = tmp_path / "wide.npz"
    with zipfile.ZipFile(path, "w") as archive:  # a zip directory of 1.2 MB, no comment
        for i in range(100):
            archive.writestr(f"{i}{'n' * 12_000}.npy", b"")
    with pytest.raises(ValueError, match=r"^read_metadata: .* has a zip directory of 1\.2 MB, "
                                         r"more than a checkpoint's \(at most 1\.0 MB\)$"):
        read_metadata(path)


# --- save: any name, refusals before writing, no debris ---------------------------------


class Named(Module):
    """Parameters of any names (dict keys become names as they are)."""

    def __init__(self, arrays):
        self.p = {}
        for name, array in arrays.items():
            self.p[name] = Parameter(array)

    def named_parameters(self, prefix=""):
        yield from self.p.items()


names = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
                max_size=20)
float_arrays = st.sampled_from([np.float16, np.float32, np.float64]).flatmap(
    lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
                             elements=st.floats(-1e4, 1e4, width=np.finfo(dtype).bits)))


@given(arrays=st.dictionaries(names, float_arrays, min_size=1, max_size=5),
       metadata=st.dictionaries(names, names, max_size=4))
def test_any_names_shapes_and_dtypes_round_trip(tmp_path_factory, arrays, metadata):
    path = tmp_path_factory.mktemp("any") / "model.npz"
    mg.save(Named(arrays), path, metadata=metadata)
    target = Named({name: np.zeros_like(a) for name, a in arrays.items()})
    with np.errstate(all="raise"):
        assert mg.load(target, path) == metadata
    assert read_metadata(path) == metadata
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(arrays)
    for name, array in arrays.items():
        assert target.p[name].dtype == array.dtype
        np.testing.assert_array_equal(target.p[name].data, array, err_msg=repr(name))


@given(arrays=st.dictionaries(names, float_arrays, min_size=1, max_size=5))
def test_a_state_dict_saves_as_its_module_would_and_loads_into_the_module(tmp_path_factory,
                                                                          arrays):
    """PyTorch's habit, save(model.state_dict(), path): the file save(model, path) writes."""
    directory = tmp_path_factory.mktemp("state")
    source = Named(arrays)
    mg.save(source.state_dict(), directory / "state.npz")
    mg.save(source, directory / "model.npz")
    mg.save(dict(source.named_parameters()), directory / "tensors.npz")  # (tensors' values)
    assert (directory / "state.npz").read_bytes() == (directory / "model.npz").read_bytes()
    assert (directory / "tensors.npz").read_bytes() == (directory / "model.npz").read_bytes()
    target = Named({name: np.zeros_like(a) for name, a in arrays.items()})
    mg.load(target, directory / "state.npz")
    _assert_state(target, _state(source))


@pytest.mark.parametrize("thing, got", [({}, "dict"), ("model.npz", "str"), (None, "NoneType")])
def test_save_and_load_say_what_they_take(tmp_path, thing, got):
    path = tmp_path / "model.npz"
    mg.save(Model(), path)
    accepted = (r"expected a Module, or an object with state_dict\(\) and load_state_dict\(\) "
                r"\(an optimizer, a learning-rate schedule\)")
    with pytest.raises(TypeError, match=rf"^load: {accepted} to read the file into, got {got}"
                                        + ("; a dict has no names, shapes and dtypes to check"
                                           if got == "dict" else "$")):
        mg.load(thing, path)
    if got != "dict":
        with pytest.raises(TypeError, match=rf"^save: {accepted}, or a state dict \(name -> "
                                            rf"array or tensor\), got {got}$"):
            mg.save(thing, tmp_path / "other.npz")
    with pytest.raises(TypeError, match=r"^save: a state dict's names must be strings, got 1$"):
        mg.save({1: np.ones(2)}, tmp_path / "other.npz")
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


def test_names_that_numpy_savez_cannot_take_round_trip(tmp_path):
    arrays = {"file": np.ones(2), "allow_pickle": np.arange(3.0), "a.b/c\\d": np.zeros(1),
              "x.npy": np.full(2, 7.0), "": np.float64(5), "__meta__.preset": np.ones(1)}
    path = tmp_path / "names.npz"
    mg.save(Named(arrays), path, metadata={"preset": "small"})
    target = Named({name: np.zeros_like(a) for name, a in arrays.items()})
    assert mg.load(target, path) == {"preset": "small"}
    for name, array in arrays.items():
        np.testing.assert_array_equal(target.p[name].data, array, err_msg=repr(name))
    assert sorted(np.load(path).files) == sorted(arrays)


@pytest.mark.parametrize("arrays, metadata, match", [
    ({"a\0b": np.ones(1)}, {}, r"^save: the parameter name 'a\\x00b' holds a NUL character"),
    ({"caf\udce9": np.ones(1)}, {},
     r"^save: the parameter name 'caf\\udce9' holds the lone surrogate '\\udce9', which UTF-8"),
    ({"w": np.array([1.0, np.nan])}, {}, r"^save: 'w' holds nan at \(1,\); a checkpoint holds "
                                          "finite parameters only$"),
    ({"w": np.array([[1.0], [-np.inf]], np.float32)}, {}, r"^save: 'w' holds -inf at \(1, 0\)"),
    ({"w": np.ones(1)}, {"note": "x" * 70_000},
     r"^save: the metadata takes 70\.1 kB as JSON; a checkpoint holds at most 65\.5 kB$"),
])
def test_save_refuses_before_writing_anything(tmp_path, arrays, metadata, match):
    path = tmp_path / "model.npz"
    mg.save(Named({"w": np.ones(1)}), path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=match):
        mg.save(Named(arrays), path, metadata=metadata)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.npz"]


def test_two_parameters_with_one_name_are_refused(tmp_path):
    class Clash(Module):
        def __init__(self):
            self.a = {"b": Parameter(np.ones(1))}
            setattr(self, "a.b", Parameter(np.zeros(1)))

    with pytest.raises(ValueError, match=r"^save: two parameters are named 'a\.b'"):
        mg.save(Clash(), tmp_path / "clash.npz")
    assert os.listdir(tmp_path) == []


def _leftover(tmp_path, target="model.npz"):
    return tmp_path / f".{target}.k1ll3d{mg.serialization._TEMP_SUFFIX}"


def test_the_next_save_removes_a_killed_saves_temporary_file(tmp_path):
    path = tmp_path / "model.npz"
    _leftover(tmp_path).write_bytes(b"PK\x03\x04 half an archive")
    other = _leftover(tmp_path, "other.npz")
    other.write_bytes(b"another target's leftover")
    mg.save(Model(seed=1), path)
    assert sorted(os.listdir(tmp_path)) == sorted(["model.npz", other.name])
    mg.load(Model(seed=2), path)


def test_a_live_saves_temporary_file_is_left_alone(tmp_path):
    live = _leftover(tmp_path)
    with live.open("wb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # as a save in progress holds it
        mg.save(Model(seed=1), tmp_path / "model.npz")
        assert live.exists()
    mg.save(Model(seed=1), tmp_path / "model.npz")  # the lock is gone: now it is debris
    assert os.listdir(tmp_path) == ["model.npz"]


_KILLED_SAVE = """
import os, signal, sys
import numpy as np
import minigrad as mg
from minigrad.nn import Linear

real = np.lib.format.write_array
def write_then_wait(member, array, **options):
    real(member, array, **options)
    print("writing", flush=True)
    signal.pause()  # killed here, midway through the archive
np.lib.format.write_array = write_then_wait
mg.save(Linear(3, 2, rng=np.random.default_rng(0)), sys.argv[1])
"""


def test_a_save_killed_midway_leaves_the_target_whole_and_its_debris_is_cleaned(tmp_path):
    path = tmp_path / "model.npz"
    mg.save(Model(seed=1), path)
    before = path.read_bytes()
    root = pathlib.Path(__file__).resolve().parents[1]
    process = subprocess.Popen([sys.executable, "-c", _KILLED_SAVE, str(path)], cwd=root,
                               env={**os.environ, "PYTHONPATH": str(root)},
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "writing\n"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
        process.stdout.close()
    assert path.read_bytes() == before
    assert len(os.listdir(tmp_path)) == 2  # the killed save's temporary file
    mg.save(Model(seed=2), path)
    assert os.listdir(tmp_path) == ["model.npz"]
    target = Model(seed=3)
    mg.load(target, path)
    _assert_state(target, _state(Model(seed=2)))


def test_loaded_model_trains_on(tmp_path):
    """Loading copies into the same Parameter objects, so gradients flow as before."""
    path = tmp_path / "model.npz"
    mg.save(Model(seed=1), path)
    target = Model(seed=2)
    params = list(target.parameters())
    mg.load(target, path)
    assert list(target.parameters()) == params
    out = target.decoder(mg.tanh(target.encoder(Tensor(np.ones(3))))).sum()
    out.backward()
    assert target.encoder.weight.grad is not None


def test_a_saved_file_gets_the_mode_of_a_plain_open(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        path = tmp_path / "m.npz"
        module = Linear(2, 3, rng=np.random.default_rng(0))
        mg.save(module, path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    finally:
        os.umask(umask)


@pytest.mark.parametrize("metadata", [[1], "preset=small", 3])
def test_save_refuses_metadata_that_is_not_a_mapping_before_writing(tmp_path, metadata):
    """metadata=[1] said "'list' object has no attribute 'items'"."""
    with pytest.raises(TypeError, match=rf"^save: metadata must be a mapping \(key -> value\) "
                                        rf"or None, got {type(metadata).__name__}$"):
        mg.save(Model(), tmp_path / "model.npz", metadata=metadata)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("path", [None, 3, 1.5, ["model.npz"]])
def test_save_load_and_read_metadata_refuse_a_path_of_another_type(tmp_path, path):
    """save(model, None) said os.fsdecode's "expected str, bytes or os.PathLike object, not
    NoneType", naming no function."""
    for who, call in (("save", lambda: mg.save(Model(), path)),
                      ("load", lambda: mg.load(Model(), path)),
                      ("read_metadata", lambda: read_metadata(path))):
        with pytest.raises(TypeError, match=rf"^{who}: path must be a str, bytes or "
                                            rf"os.PathLike, got {type(path).__name__}$"):
            call()
