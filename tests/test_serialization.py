"""save and load: round trips with metadata, refusals that leave the module as it was, an
atomic write, clear errors for files that are not ours, and no pickle."""

import os
import pathlib
import pickle
import zipfile

import numpy as np
import pytest

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


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    mg.save(Model(seed=1), path, metadata={"version": "old"})
    old_bytes = path.read_bytes()
    real_savez = np.savez

    def crash_midway(file, **arrays):
        real_savez(file, **dict(list(arrays.items())[:2]))  # part of the archive is written
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        mg.save(Model(seed=2), path, metadata={"version": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind
    target = Model(seed=3)
    assert mg.load(target, path) == {"version": "old"}
    _assert_state(target, _state(Model(seed=1)))


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    def interrupted(file, **arrays):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mg.save(Model(), tmp_path / "new.npz")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("write", [
    lambda p: p.write_text("not an archive\n"),
    lambda p: p.write_bytes(b""),
    lambda p: np.save(p.open("wb"), np.ones(3)),  # a .npy: one array, not named arrays
    lambda p: p.write_bytes(pickle.dumps({"weight": np.ones(3)})),
    lambda p: p.write_bytes(_truncated_npz()),
])
def test_a_file_that_is_not_an_npz_archive_gives_a_clear_error(tmp_path, write):
    path = tmp_path / "model.npz"
    write(path)
    target = Model()
    before = _state(target)
    with pytest.raises(ValueError, match=rf"^load: {path} is not a minigrad .npz file"):
        mg.load(target, path)
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
    with pytest.raises(ValueError, match=r"^load: .*is not a minigrad .npz file .*allow_pickle"):
        mg.load(target, path)
    assert not trap.exists()
    _assert_state(target, before)
    with zipfile.ZipFile(path) as archive:  # the file really held an object array
        assert b"'descr': '|O'" in archive.read("gain.npy")[:128]


def test_saved_file_holds_plain_arrays(tmp_path):
    path = tmp_path / "model.npz"
    mg.save(Model(), path, metadata={"a": "b"})
    with np.load(path, allow_pickle=False) as npz:
        assert all(npz[key].dtype != object for key in npz.files)
        assert sorted(npz.files) == sorted(["__meta__.a", *Model().state_dict()])


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
