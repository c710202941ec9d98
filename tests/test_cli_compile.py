"""`minigrad train adder|counter --compile`: the loss goes through `minigrad.compile`, and the
run prints exactly what the eager run prints (same losses, same parameters, same sums), the
saved model is the same file content; `--help` documents the option.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from minigrad.models import checkpoints, runs
from minigrad.models.cli import main
from minigrad.models.presets import PRESETS, CounterTraining


def output_of(capsys, *args: str) -> str:
    """stdout and stderr of `minigrad ARGS`, which must exit 0."""
    assert main(list(args)) == 0
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_train_counter_compiled_prints_what_eager_prints(capsys, tmp_path):
    eager = output_of(capsys, "train", "counter", "--iterations", "120",
                      "--save", str(tmp_path / "eager.npz"))
    compiled = output_of(capsys, "train", "counter", "--iterations", "120", "--compile",
                         "--save", str(tmp_path / "compiled.npz"))
    assert compiled.replace("compiled.npz", "eager.npz") == eager
    assert "iteration   120/120" in compiled
    eager_model = checkpoints.load_counter(tmp_path / "eager.npz")
    compiled_model = checkpoints.load_counter(tmp_path / "compiled.npz")
    assert eager_model.state_dict().keys() == compiled_model.state_dict().keys()
    for name, value in compiled_model.state_dict().items():
        np.testing.assert_array_equal(value, eager_model.state_dict()[name], strict=True)


def test_train_adder_compiled_prints_what_eager_prints(capsys):
    # 250 sums in minibatches of 100: two batch shapes, so two signatures are traced.
    options = ("train", "adder", "--epochs", "2", "--samples", "250", "--test-samples", "100")
    eager = output_of(capsys, *options)
    compiled = output_of(capsys, *options, "--compile")
    assert compiled == eager
    assert "  epoch 2/2  mean loss" in compiled  # too short to learn: the warning is the same
    assert "did not learn" in compiled


def test_runs_pass_compiled_through_to_the_training_loop():
    settings = CounterTraining(iterations=30)
    eager = runs.train_counter(settings)
    compiled = runs.train_counter(settings, compiled=True)
    assert compiled.history.losses == eager.history.losses
    assert compiled.path == eager.path
    config, train = PRESETS["small"]
    train = dataclasses.replace(train, epochs=1, n_samples=200)
    eager_adder = runs.train_adder_once(config, train, 0, test_samples=50)
    compiled_adder = runs.train_adder_once(config, train, 0, test_samples=50, compiled=True)
    assert compiled_adder.history.losses == eager_adder.history.losses
    assert compiled_adder.accuracy == eager_adder.accuracy


@pytest.mark.parametrize("model", ["adder", "counter"])
def test_the_option_is_documented(capsys, model):
    with pytest.raises(SystemExit) as exit:
        main(["train", model, "--help"])
    assert exit.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--compile compute the loss with minigrad.compile" in text
    assert "default: eager" in text
