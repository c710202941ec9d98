"""The figures: each `--plot` command writes PNGs that are not blank (headless), a missing
matplotlib is one line and exit 2, and the numbers behind the figures are right."""

import builtins
import dataclasses

import numpy as np
import pytest

from minigrad.models.cli import main
from minigrad.models.data import counting_data
from minigrad.models.diagnostics import counter_loss_surface
from minigrad.models.plots import PLOT_HINT
from minigrad.models.reference import ReferenceCounter


@pytest.fixture
def matplotlib():
    return pytest.importorskip("matplotlib")


def assert_not_blank(path):
    from matplotlib.image import imread

    assert path.stat().st_size > 10_000
    image = imread(str(path))
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    pixels = image[..., :3].reshape(-1, 3)
    colours = len(np.unique(np.round(pixels * 255).astype(np.uint8), axis=0))
    # A blank image has one colour and no variance; a figure with a colour map, lines and
    # text has hundreds of colours and clearly varying pixels.
    assert colours > 100, colours
    assert pixels.std() > 0.1
    # Not mostly one colour either (an empty axes is about 90% white).
    white = np.all(pixels > 0.98, axis=1).mean()
    return white


def test_train_counter_plot_writes_both_figures(matplotlib, tmp_path, capsys):
    assert main(["train", "counter", "--quiet", "--plot", str(tmp_path / "figures")]) == 0
    out = capsys.readouterr().out
    for name in ("counter_loss_surface.png", "counter_gradients.png"):
        path = tmp_path / "figures" / name
        assert f"wrote {path}" in out
        assert_not_blank(path)
    # The loss surface fills its axes with colour: little of the image is white.
    assert assert_not_blank(tmp_path / "figures" / "counter_loss_surface.png") < 0.5


def test_train_adder_plot_writes_the_training_curves(matplotlib, tmp_path, capsys):
    assert main(["train", "adder", "--quiet", "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    path = tmp_path / "adder_small_training.png"
    assert f"wrote {path}" in out
    assert_not_blank(path)
    assert "held-out accuracy: 100.00% of bits" in out  # training output is unchanged


def test_the_plot_functions_from_python(matplotlib, tmp_path):
    from minigrad.models import plots

    X, t = counting_data(np.random.default_rng(0), 20, 10)
    path = [(-1.5, 2.0), (-1.0, 1.5), (1.0, 1.0)]
    written = plots.plot_counter_loss_surface(X, t, path, tmp_path / "a" / "surface.png",
                                              resolution=30)
    assert written == str(tmp_path / "a" / "surface.png")
    assert_not_blank(tmp_path / "a" / "surface.png")
    plots.plot_counter_gradients(X, t, tmp_path / "gradients.png")
    assert_not_blank(tmp_path / "gradients.png")


def test_missing_matplotlib_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    for command in (["train", "counter"], ["train", "adder"]):
        assert main(command + ["--plot", str(tmp_path)]) == 2
        captured = capsys.readouterr()
        assert captured.err == f"minigrad: error: {PLOT_HINT}\n"
        assert captured.out == ""  # refused before training
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_plot_directory_is_one_line(matplotlib, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["train", "counter", "--quiet", "--plot", str(blocker / "figures")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minigrad: error: ") and err.count("\n") == 1


def test_the_loss_surface_is_the_counters_loss():
    X, t = counting_data(np.random.default_rng(1), 20, 10)
    w_x = np.array([-1.5, 0.0, 1.0, 2.25])
    w_rec = np.array([-2.0, 0.5, 1.0])
    surface = counter_loss_surface(X, t, w_x, w_rec)
    assert surface.shape == (3, 4)
    for i, r in enumerate(w_rec):
        for j, x in enumerate(w_x):
            assert surface[i, j] == pytest.approx(ReferenceCounter(x, r).loss(X, t), rel=1e-12)
    assert counter_loss_surface(X, t, [1.0], [1.0])[0, 0] == 0.0


def test_the_accuracy_curve_does_not_change_training():
    from minigrad.models.presets import get_preset
    from minigrad.models.runs import train_adder_once

    config, settings = get_preset("small")
    settings = dataclasses.replace(settings, n_samples=300, batch_size=50, epochs=2)
    plain = train_adder_once(config, settings, 1, test_samples=200)
    watched = train_adder_once(config, settings, 1, test_samples=200, accuracy_every=5)
    assert plain.history.losses == watched.history.losses
    assert plain.accuracy_curve == []
    assert [step for step, _ in watched.accuracy_curve] == [0, 5, 10, 12]
    assert watched.accuracy_curve[-1][1] == watched.accuracy == plain.accuracy
