"""Checkpoints: `train ... --save`, `minigrad add A B --model`, `minigrad eval adder --model`,
and the refusals (another preset, another model, a missing or broken file), each one line
with exit code 2."""

import numpy as np
import pytest

import minigrad as mg
from minigrad.serialization import read_metadata
from models import checkpoints
from models.adder import Adder
from models.cli import main
from models.counter import Counter
from models.data import encode_sum, format_sample
from models.presets import AdderConfig, get_preset


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
                   "on 500 fresh sums (operands below 64, seed 7)\n")


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
