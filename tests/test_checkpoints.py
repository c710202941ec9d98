"""Checkpoints: `train ... --save`, `minigrad add A B --model`, `minigrad eval adder --model`,
and the refusals (another preset, another model, a missing or broken file), each one line
with exit code 2."""

import dataclasses
import json
import os
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import minigrad as mg
from minigrad.models import checkpoints
from minigrad.models.adder import Adder
from minigrad.models.cli import main
from minigrad.models.counter import Counter
from minigrad.models.data import encode_sum, format_sample
from minigrad.models.presets import AdderConfig, get_preset
from minigrad.serialization import read_metadata


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """The default `train adder` run (seed 1, reaches 100%), saved once for the module."""
    path = tmp_path_factory.mktemp("checkpoints") / "small.npz"
    assert main(["train", "adder", "--quiet", "--save", str(path)]) == 0
    return path


def one_line_error(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    assert code == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("minigrad") and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err
    return captured.err


def test_save_add_round_trip(small_model, capsys):
    assert main(["add", "37", "43", "--model", str(small_model)]) == 0
    out = capsys.readouterr().out
    X, T = encode_sum(np.int64(37), np.int64(43), 7)
    assert out == format_sample(X[0], T[0], T[0]) + "\n37 + 43 = 80 (right)\n"
    assert "x1:   1010010   37" in out and "y:    0000101   80" in out


def test_the_saved_model_is_the_trained_one(small_model, capsys):
    model, preset = checkpoints.load_adder(small_model)
    assert preset == "small" and model.config == get_preset("small")[0]
    metadata = read_metadata(small_model)
    assert metadata["model"] == "adder" and metadata["preset"] == "small"
    assert metadata["n_bits"] == "7" and metadata["max_operand"] == "None"
    assert metadata["bias"] == "True" and metadata["activation"] == "tanh"
    assert all(isinstance(v, str) for v in metadata.values())
    # The sums `train adder` showed are the ones the loaded model gives.
    a, b = np.arange(64), np.arange(64)[::-1]
    X, T = encode_sum(a, b, 7)
    np.testing.assert_array_equal(model.predict_bits(X), T)


def test_eval_reports_accuracy_on_fresh_sums(small_model, capsys):
    assert main(["eval", "adder", "--model", str(small_model), "--samples", "500",
                 "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert out == (f"small adder from {small_model}: 100.00% of bits, 100.00% of whole sums "
                   "on 500 held-out sums (operands below 64, seed 7)\n")


def test_a_model_saved_with_one_preset_is_refused_as_another(small_model, capsys):
    err = one_line_error(capsys, ["add", "1", "2", "--model", str(small_model),
                                  "--preset", "large"])
    assert "'small'" in err and "'large'" in err
    err = one_line_error(capsys, ["eval", "adder", "--model", str(small_model),
                                  "--preset", "keras"])
    assert "'small'" in err and "'keras'" in err
    with pytest.raises(ValueError, match="'small' preset, not 'keras'"):
        checkpoints.load_adder(small_model, preset="keras")
    assert main(["add", "1", "2", "--model", str(small_model), "--preset", "small"]) == 0


def test_operands_whose_sum_does_not_fit_are_refused(small_model, capsys):
    err = one_line_error(capsys, ["add", "100", "43", "--model", str(small_model)])
    assert "100 + 43 = 143 does not fit in the small adder's 7 bits" in err
    one_line_error(capsys, ["add", "-1", "3", "--model", str(small_model)])
    one_line_error(capsys, ["add", "x", "3", "--model", str(small_model)])


def test_an_operand_outside_the_training_range_is_noted(tmp_path, capsys):
    config, _ = get_preset("keras")
    model = Adder(config, rng=np.random.default_rng(0))  # untrained: the answer may be wrong
    path = tmp_path / "keras.npz"
    checkpoints.save_adder(model, path)
    assert read_metadata(path)["preset"] == "keras"
    assert main(["add", "254", "1", "--model", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "x1:   01111111   254"
    assert out[-2].startswith("254 + 1 = ")
    assert out[-1] == "note: 254 is outside the training range [0, 128)"


def test_a_counter_is_not_an_adder(tmp_path, capsys):
    path = tmp_path / "counter.npz"
    assert main(["train", "counter", "--quiet", "--iterations", "50", "--save", str(path)]) == 0
    assert f"saved the counter to {path}" in capsys.readouterr().out
    counter = checkpoints.load_counter(path)
    assert isinstance(counter, Counter) and counter.w_x.item() != -1.5
    err = one_line_error(capsys, ["add", "1", "2", "--model", str(path)])
    assert "holds a counter model, not an adder" in err
    with pytest.raises(ValueError, match="not a counter"):
        bare = tmp_path / "bare.npz"
        mg.save(counter, bare)  # no metadata
        checkpoints.load_counter(bare)


def test_missing_and_broken_files_are_one_line(tmp_path, capsys):
    err = one_line_error(capsys, ["eval", "adder", "--model", str(tmp_path / "nope.npz")])
    assert "no such file" in err
    broken = tmp_path / "broken.npz"
    broken.write_text("not a zip file")
    err = one_line_error(capsys, ["add", "1", "2", "--model", str(broken)])
    assert "broken.npz is a text file, not a .npz archive" in err
    err = one_line_error(capsys, ["train", "counter", "--quiet", "--iterations", "5",
                                  "--save", str(tmp_path / "no" / "such" / "dir.npz")])
    assert "cannot write" in err


def test_a_custom_config_round_trips(tmp_path):
    config = AdderConfig(n_bits=5, n_states=4, activation="sigmoid", bias=False,
                         learn_initial_state=False, recurrent_init="orthogonal", max_operand=10)
    model = Adder(config, rng=np.random.default_rng(2))
    path = tmp_path / "custom.npz"
    checkpoints.save_adder(model, path)
    loaded, preset = checkpoints.load_adder(path)
    assert preset == "custom" and loaded.config == config
    for (name, p), (_, q) in zip(model.named_parameters(), loaded.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_a_model_loads_in_the_dtype_it_was_saved_in(tmp_path, dtype):
    """Before, the dtype was not saved: a float32 adder or counter came back float64."""
    rng = np.random.default_rng(4)
    adder = Adder(get_preset("small")[0], rng=rng, dtype=dtype)
    counter = Counter(rng.normal(), rng.normal(), dtype=dtype)
    checkpoints.save_adder(adder, tmp_path / "adder.npz")
    checkpoints.save_counter(counter, tmp_path / "counter.npz")
    loaded, _ = checkpoints.load_adder(tmp_path / "adder.npz")
    pairs = [*zip(adder.named_parameters(), loaded.named_parameters(), strict=True),
             *zip(counter.named_parameters(),
                  checkpoints.load_counter(tmp_path / "counter.npz").named_parameters(),
                  strict=True)]
    for (name, p), (_, q) in pairs:
        assert q.dtype == dtype, name
        assert q.data.tobytes() == p.data.tobytes(), name


def test_a_file_saved_without_its_dtype_loads_as_float64(tmp_path):
    """Files written before the dtype was recorded keep loading as they did."""
    adder = Adder(get_preset("small")[0], rng=np.random.default_rng(5), dtype=np.float32)
    counter = Counter(0.25, 0.75, dtype=np.float32)
    metadata = {f.name: str(getattr(adder.config, f.name))
                for f in dataclasses.fields(AdderConfig)}
    mg.save(adder, tmp_path / "adder.npz", metadata={"model": "adder", "preset": "small",
                                                       **metadata})
    mg.save(counter, tmp_path / "counter.npz", metadata={"model": "counter"})
    loaded, _ = checkpoints.load_adder(tmp_path / "adder.npz")
    for (name, p), (_, q) in zip(adder.named_parameters(), loaded.named_parameters(),
                                 strict=True):
        assert q.dtype == np.float64, name
        np.testing.assert_array_equal(q.data, p.data.astype(np.float64), err_msg=name)
    loaded_counter = checkpoints.load_counter(tmp_path / "counter.npz")
    assert loaded_counter.w_x.dtype == np.float64
    assert (loaded_counter.w_x.item(), loaded_counter.w_rec.item()) == (0.25, 0.75)


def test_the_article_of_the_saved_kind_is_its_own(tmp_path):
    """Before: "holds a adder model"."""
    path = tmp_path / "adder.npz"
    checkpoints.save_adder(Adder(get_preset("small")[0], rng=np.random.default_rng(6)), path)
    with pytest.raises(ValueError, match=r"holds an adder model, not a counter \(save one"):
        checkpoints.load_counter(path)


# --- hostile checkpoints: refused in one line, before anything large is built ------------


@pytest.fixture
def untrained(tmp_path):
    """A small adder saved untrained (fast), and its metadata."""
    path = tmp_path / "untrained.npz"
    checkpoints.save_adder(Adder(get_preset("small")[0], rng=np.random.default_rng(3)), path)
    return path, read_metadata(path)


def _with(path, metadata=None, arrays=None):
    """A copy of checkpoint `path` with some metadata and arrays replaced, written as a
    hostile tool would (`mg.save` itself refuses NaN)."""
    copy = path.with_name("edited.npz")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(copy, "w") as target:
        for info in source.infolist():
            name = info.filename.removesuffix(".npy")
            if arrays and name in arrays:
                with target.open(info.filename, "w") as member:
                    np.lib.format.write_array(member, arrays[name])
            else:
                target.writestr(info.filename, source.read(info))
        content = json.loads(source.comment)
        content["metadata"].update(metadata or {})
        content["crc32"] = zlib.crc32(json.dumps(content["metadata"], sort_keys=True).encode())
        target.comment = json.dumps(content).encode()
    return copy


def test_a_config_with_a_huge_n_states_is_refused_before_building(untrained, capsys):
    path, metadata = untrained
    hostile = _with(path, {"n_states": "99999999"})
    tracemalloc.start()
    try:
        err = one_line_error(capsys, ["add", "1", "2", "--model", str(hostile)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err == (f"minigrad: error: {hostile}: the saved adder config has "
                   "n_states='99999999', not an integer in [1, 1024]\n")
    assert peak < 5_000_000  # the 99999999-state model (80 PB) was never built


@pytest.mark.parametrize("field, value, match", [
    ("n_bits", "0", r"has n_bits='0', not an integer in \[1, 62\]$"),
    ("n_bits", "63", r"has n_bits='63', not an integer in \[1, 62\]$"),
    ("n_bits", "7.0", r"has n_bits='7.0', not an integer"),
    ("n_bits", "9" * 60_000, r"has n_bits='9{37}\.\.\.', not an integer"),
    ("n_states", "-3", r"has n_states='-3', not an integer in \[1, 1024\]$"),
    ("max_operand", "65", r"has max_operand='65', not an integer in \[1, 64\]$"),
    ("bias", "yes", r"has bias='yes', not True or False$"),
    ("activation", "relu\nmore", r"has activation='relu\\nmore', not one of tanh, sigmoid$"),
    ("recurrent_init", "zeros", r"has recurrent_init='zeros', not one of glorot, orthogonal$"),
    ("preset", "huge", r"names an unknown preset 'huge'; known: small, large, keras, custom$"),
    ("n_states", "4", r"says preset 'small' but holds another config \(n_bits=7, n_states=4, "),
    ("model", "adder\nor not", r"holds a model of unknown kind, not an adder"),
    ("dtype", "int8", r"has dtype='int8', not one of float16, float32, float64$"),
], ids=lambda value: value[:10] if isinstance(value, str) else None)
def test_every_config_field_is_bounded(untrained, field, value, match):
    path, _ = untrained
    with pytest.raises(ValueError, match=match) as caught:
        checkpoints.load_adder(_with(path, {field: value}))
    assert "\n" not in str(caught.value) and "AdderConfig" not in str(caught.value)


def test_a_config_missing_a_field_is_refused(untrained):
    path, metadata = untrained
    copy = path.with_name("short.npz")
    model, _ = checkpoints.load_adder(path)
    mg.save(model, copy, metadata={k: v for k, v in metadata.items() if k != "bias"})
    with pytest.raises(ValueError, match=r"the saved adder config lacks bias$"):
        checkpoints.load_adder(copy)


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_non_finite_weights_are_refused_by_the_cli(untrained, capsys, bad):
    path, _ = untrained
    weight = np.ones((3, 1))
    weight[1, 0] = bad
    hostile = _with(path, arrays={"output.weight": weight.astype(np.float32)})
    err = one_line_error(capsys, ["add", "1", "2", "--model", str(hostile)])
    assert err == (f"minigrad: error: {hostile} holds {bad} at (1, 0) in 'output.weight'; "
                   "parameters must be finite\n")
    assert capsys.readouterr().out == ""


def test_a_checkpoint_of_an_earlier_version_loads(untrained, capsys):
    path, metadata = untrained
    model, _ = checkpoints.load_adder(path)
    earlier = path.with_name("earlier.npz")  # metadata as __meta__.<key> string arrays
    np.savez(earlier, **model.state_dict(),
             **{f"__meta__.{key}": np.array(value) for key, value in metadata.items()})
    loaded, preset = checkpoints.load_adder(earlier)
    assert preset == "small" and loaded.config == model.config
    for (name, p), (_, q) in zip(model.named_parameters(), loaded.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    assert main(["add", "3", "4", "--model", str(earlier)]) == 0


def test_unreadable_paths_say_what_they_are(tmp_path, untrained, capsys, monkeypatch):
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    err = one_line_error(capsys, ["add", "1", "2", "--model", str(folder)])
    assert err == f"minigrad: error: {folder} is a directory, not a checkpoint file\n"
    path, _ = untrained
    real_open = os.open

    def open_denied(name, *args, **kwargs):  # as a file of mode 000 would be to a non-root user
        if os.fspath(name) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_denied)
    err = one_line_error(capsys, ["eval", "adder", "--model", str(path)])
    assert err == f"minigrad: error: cannot read {path}: Permission denied\n"


def test_a_file_replaced_between_metadata_and_arrays_is_refused(untrained, monkeypatch):
    path, metadata = untrained
    monkeypatch.setattr(checkpoints, "read_metadata",
                        lambda p: {**metadata, "note": "read before the file was replaced"})
    with pytest.raises(ValueError, match=r"changed while it was being loaded; try again$"):
        checkpoints.load_adder(path)
