"""The figures: each `--plot` command writes PNGs that are not blank (headless), a missing
matplotlib is one line and exit 2, and the numbers behind the figures are right."""

import builtins
import dataclasses
import errno
import os
import stat

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
            expected = ReferenceCounter(x, r).loss(X, t)
            assert surface[i, j] == pytest.approx(expected, rel=1e-12, abs=0)
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


# --- a figure is written whole or not at all ------------------------------------------------


def _interrupted_savefig(self, fname, *args, **kwargs):
    """Figure.savefig cut short by Ctrl-C after writing part of the PNG."""
    partial = b"\x89PNG\r\n\x1a\n part of a figure"
    if isinstance(fname, (str, os.PathLike)):
        with open(fname, "wb") as f:
            f.write(partial)
    else:
        fname.write(partial)
    raise KeyboardInterrupt


@pytest.mark.parametrize("before", [None, b"a good figure drawn earlier"])
def test_an_interrupted_figure_leaves_the_old_file_and_no_temporary(matplotlib, tmp_path,
                                                                    monkeypatch, before):
    from matplotlib.figure import Figure

    from minigrad.models import plots

    path = tmp_path / "gradients.png"
    if before is not None:
        path.write_bytes(before)
    monkeypatch.setattr(Figure, "savefig", _interrupted_savefig)
    X, t = counting_data(np.random.default_rng(0), 5, 4)
    with pytest.raises(KeyboardInterrupt):
        plots.plot_counter_gradients(X, t, path)
    if before is None:
        assert list(tmp_path.iterdir()) == []
    else:
        assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == before


def test_a_temporary_left_by_a_killed_write_is_removed_by_the_next_write(matplotlib,
                                                                         tmp_path):
    # A process killed outright while it drew a figure (SIGKILL) leaves its hidden
    # temporary: the next figure written to that path removes it, as minigrad.save does
    # for a model's; another file's temporary is left alone.
    from minigrad.models import plots

    path = tmp_path / "gradients.png"
    mine = tmp_path / ".gradients.png.k1ll3d00.minigrad-tmp"
    other = tmp_path / ".surface.png.k1ll3d00.minigrad-tmp"
    for leftover in (mine, other):
        leftover.write_bytes(b"\x89PNG\r\n\x1a\n part of a figure")
    X, t = counting_data(np.random.default_rng(0), 5, 4)
    plots.plot_counter_gradients(X, t, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, path.name]
    assert_not_blank(path)


def test_a_figure_gets_a_plain_files_permissions_and_keeps_a_private_ones(matplotlib,
                                                                         tmp_path):
    from minigrad.models import plots

    X, t = counting_data(np.random.default_rng(0), 5, 4)
    plain = tmp_path / "plain"
    plain.touch()
    new = tmp_path / "new.png"
    plots.plot_counter_gradients(X, t, new)
    assert stat.S_IMODE(new.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    private = tmp_path / "private.png"
    private.write_bytes(b"an older figure")
    private.chmod(0o600)
    plots.plot_counter_gradients(X, t, private)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert_not_blank(private)
    # Through a symbolic link: the file it points to is written, the link kept.
    link = tmp_path / "link.png"
    link.symlink_to(private)
    plots.plot_counter_gradients(X, t, link)
    assert link.is_symlink() and link.resolve() == private
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.png", "new.png", "plain",
                                                          "private.png"]


def test_a_figure_that_cannot_be_written_names_plot_and_the_saved_model(matplotlib, tmp_path,
                                                                        capsys, monkeypatch):
    from matplotlib.figure import Figure

    savefig, drawn = Figure.savefig, []

    def full_disk(self, file, **kwargs):  # the second figure, counter_gradients.png, fails
        # (a file in the way of a figure is refused before training)
        drawn.append(self)
        if len(drawn) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        savefig(self, file, **kwargs)

    monkeypatch.setattr(Figure, "savefig", full_disk)
    figures = tmp_path / "figures"
    model = tmp_path / "counter.npz"
    assert main(["train", "counter", "--quiet", "--plot", str(figures),
                 "--save", str(model)]) == 2
    err = capsys.readouterr().err
    assert err == (f"minigrad: error: --plot {figures}: cannot draw the figures: "
                   f"{os.strerror(errno.ENOSPC)}: {figures / 'counter_gradients.png'} (the "
                   f"model was saved to {model})\n")
    assert model.exists()
    assert not [p for p in figures.iterdir() if p.name.startswith(".")]  # no temporary left
