"""The write-ups' figures, drawn from minigrad runs: the counter's loss surface with the
RProp path, the counter's gradient per timestep, and the adder's training curves.

matplotlib is optional (`pip install -e ".[plot]"` in this checkout) and imported only when a
figure is drawn. Figures are made with `matplotlib.figure.Figure` and written by the Agg canvas, so
nothing here needs a display or changes pyplot's backend. Each function writes a PNG and
returns its path.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from minigrad.serialization import temporary_beside

from .counter import Counter
from .diagnostics import counter_loss_surface, state_gradients
from .presets import TrainConfig
from .training import Accuracy

if TYPE_CHECKING:
    from .runs import AdderRun, CounterRun

PLOT_HINT = ("--plot needs matplotlib: pip install matplotlib, or pip install -e \".[plot]\" "
             "in the minigrad checkout")

# The four points of the gradient figure in part 1 of "How to implement an RNN".
GRADIENT_POINTS: tuple[tuple[float, float, str], ...] = (
    (1.0, 2.0, "exploding"),
    (1.0, -2.0, "exploding, alternating"),
    (1.0, 0.5, "vanishing"),
    (1.0, -0.5, "vanishing, alternating"),
)


# The files `counter_figures` and `adder_figure` write into their directory.
COUNTER_FIGURES = ("counter_loss_surface.png", "counter_gradients.png")


def adder_figure_name(preset: str) -> str:
    """The file name of `adder_figure`'s figure of a `preset` run."""
    return f"adder_{preset}_training.png"


class MatplotlibMissing(ImportError):
    """matplotlib is not installed; the message says how to install it."""


def require_matplotlib() -> None:
    """Raise `MatplotlibMissing` (with the install hint) unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MatplotlibMissing(PLOT_HINT) from None


def _figure(**kwargs: Any) -> Any:
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(figure: Any, path: str | os.PathLike) -> str:
    """Write `figure` to `path` as a whole or not at all, as `minigrad.save` writes a model:
    into a temporary file beside it, then renamed over it. An interrupted write (Ctrl-C, a
    full disk) leaves the old file, or none, and removes the temporary one; one left by a
    process killed outright is removed by the next write to `path`. The format is the
    extension's (PNG without)."""
    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    target = os.path.realpath(path)  # through a symbolic link, the file it points to
    extension = os.path.splitext(target)[1][1:].lower()
    try:
        with temporary_beside(target, _mode(target)) as (f, temporary):
            figure.savefig(f, dpi=100, format=extension or "png")
            f.flush()
            os.replace(temporary, target)
    except OSError as error:
        if error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, path) from error  # not the temporary
    return path


def _mode(path: str) -> int:
    """The permission bits of the file at `path`, or those a plain `open` gives a new one."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def plot_counter_loss_surface(X: np.ndarray, t: np.ndarray,
                              path_points: Sequence[Sequence[float]], out: str | os.PathLike, *,
                              w_x_range: tuple[float, float] = (-2.0, 2.5),
                              w_rec_range: tuple[float, float] = (-2.5, 2.5),
                              resolution: int = 100) -> str:
    """The counter's loss over (w_x, w_rec) on a log colour scale, with the optimizer's path
    (a sequence of (w_x, w_rec), start first) drawn on it and its start and end marked."""
    from matplotlib.colors import LogNorm

    w_x = np.linspace(*w_x_range, resolution)
    w_rec = np.linspace(*w_rec_range, resolution)
    loss = counter_loss_surface(X, t, w_x, w_rec)
    floor = max(float(loss[loss > 0].min()), 1e-8)
    figure = _figure(figsize=(6.4, 5.0), layout="constrained")
    ax = figure.add_subplot()
    mesh = ax.pcolormesh(w_x, w_rec, np.maximum(loss, floor), norm=LogNorm(vmin=floor),
                         cmap="viridis", shading="auto", rasterized=True)
    figure.colorbar(mesh, ax=ax, label="loss (mean squared error, log scale)")
    path = np.asarray(path_points, np.float64)
    if len(path):
        ax.plot(path[:, 0], path[:, 1], "-", color="white", linewidth=1.0, alpha=0.9,
                label=f"RProp, {len(path) - 1} steps")
        ax.plot(*path[0], "o", color="orangered", markersize=7,
                label=f"start ({path[0, 0]:g}, {path[0, 1]:g})")
        ax.plot(*path[-1], "*", color="white", markeredgecolor="black", markersize=13,
                label=f"end ({path[-1, 0]:.3f}, {path[-1, 1]:.3f})")
        ax.legend(loc="lower left", fontsize=8, framealpha=0.8)
    ax.set_xlim(*w_x_range)
    ax.set_ylim(*w_rec_range)
    ax.set_xlabel("w_x")
    ax.set_ylabel("w_rec")
    ax.set_title(f"Counter: loss surface on {len(X)} sequences of {X.shape[1]}")
    return _save(figure, out)


def plot_counter_gradients(X: np.ndarray, t: np.ndarray, out: str | os.PathLike,
                           points: Sequence[tuple[float, float, str]] = GRADIENT_POINTS) -> str:
    """|dL/ds_k| per timestep k on a log axis, at each (w_x, w_rec) of `points` (norm over
    the sequences, from `state_gradients`). A hollow marker means the gradient summed over
    the sequences is negative there, which shows the alternation for w_rec < 0."""
    figure = _figure(figsize=(6.4, 4.4), layout="constrained")
    ax = figure.add_subplot()
    markers = "osD^"
    for (w_x, w_rec, description), marker in zip(points, markers * len(points)):
        grads = state_gradients(Counter(w_x, w_rec), X, t)
        norms = np.array([np.linalg.norm(g) for g in grads])
        signs = np.array([g.sum() for g in grads])
        k = np.arange(1, len(grads) + 1)
        line, = ax.plot(k, norms, "-", linewidth=1.2,
                        label=f"w_x = {w_x:g}, w_rec = {w_rec:g}: {description}")
        color = line.get_color()
        positive = signs >= 0
        ax.plot(k[positive], norms[positive], marker, color=color, linestyle="none")
        ax.plot(k[~positive], norms[~positive], marker, markerfacecolor="white",
                markeredgecolor=color, linestyle="none")
    ax.set_yscale("log")
    ax.set_xlabel("timestep k (state s_k after k inputs)")
    ax.set_ylabel("|dL/ds_k| (norm over the sequences)")
    ax.set_xticks(np.arange(1, X.shape[1] + 1))
    ax.set_title("Counter: gradient reaching each timestep (hollow: negative)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(figure, out)


def plot_adder_training(losses: Sequence[float], accuracy_curve: Sequence[tuple[int, Accuracy]],
                        out: str | os.PathLike, *, steps_per_epoch: int | None = None,
                        title: str = "Adder", accuracy_title: str = "") -> str:
    """The loss of every minibatch (log axis), and the held-out accuracy (per bit and per
    whole sum) at the steps in `accuracy_curve`."""
    figure = _figure(figsize=(6.4, 5.6), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    loss = np.asarray(losses, np.float64)
    steps = np.arange(1, len(loss) + 1)
    top.plot(steps, loss, linewidth=0.6 if len(loss) > 2000 else 1.0,
             label="loss per minibatch")
    if len(loss) > 200:
        window = max(len(loss) // 100, 2)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        top.plot(steps[window - 1:], smooth, color="black", linewidth=1.2,
                 label=f"mean of {window}")
        top.legend(fontsize=8)
    top.set_yscale("log")
    top.set_ylabel("binary cross-entropy")
    top.set_title(title, fontsize=10)
    top.grid(True, which="major", alpha=0.3)
    if accuracy_curve:
        at = np.array([step for step, _ in accuracy_curve])
        bits = np.array([100 * a.bits for _, a in accuracy_curve])
        sums = np.array([100 * a.sums for _, a in accuracy_curve])
        bottom.plot(at, bits, "o-", markersize=3, label="bits right")
        bottom.plot(at, sums, "s-", markersize=3, label="whole sums right")
        bottom.legend(fontsize=8, loc="lower right")
    if accuracy_title:
        bottom.set_title(accuracy_title, fontsize=10)
    bottom.set_ylim(-3, 103)
    bottom.set_ylabel("held-out accuracy (%)")
    bottom.set_xlabel("optimizer step (minibatch)")
    bottom.grid(True, alpha=0.3)
    if steps_per_epoch and 1 < len(loss) // steps_per_epoch <= 50:
        for ax in (top, bottom):
            for boundary in range(steps_per_epoch, len(loss), steps_per_epoch):
                ax.axvline(boundary + 0.5, color="grey", linewidth=0.5, linestyle=":")
    return _save(figure, out)


def counter_figures(run: CounterRun, directory: str | os.PathLike) -> list[str]:
    """The counter's two figures in `directory`: the loss surface with the run's path of
    (w_x, w_rec), and the gradient per timestep at the four points of `GRADIENT_POINTS`."""
    surface, gradients = (os.path.join(directory, name) for name in COUNTER_FIGURES)
    return [plot_counter_loss_surface(run.X, run.t, run.path, surface),
            plot_counter_gradients(run.X, run.t, gradients)]


def adder_figure(run: AdderRun, settings: TrainConfig, preset: str, test_samples: int,
                 directory: str | os.PathLike) -> str:
    """The run's loss per minibatch and held-out accuracy, as `adder_<preset>_training.png`
    in `directory`."""
    title = (f"{preset} adder, seed {run.seed}: loss per minibatch of {settings.batch_size}, "
             f"{settings.optimizer} lr {settings.lr:g}")
    return plot_adder_training(
        run.history.losses, run.accuracy_curve,
        os.path.join(directory, adder_figure_name(preset)),
        steps_per_epoch=settings.steps_per_epoch, title=title,
        accuracy_title=f"accuracy on {test_samples} held-out sums, during training")
