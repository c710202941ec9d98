"""The `minigrad` command, end to end through `minigrad.models.cli.main` in this process (and once
through the installed console script): each command exits 0 and prints what it promises;
bad option values and paths give a one-line error in the options' words and exit code 2,
before any training; a run that did not learn says so in a warning line; `--quiet` prints
only the results; the sums it prints are right in the layout of
`minigrad.models.data.format_sample`.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from threadpoolctl import threadpool_info, threadpool_limits

import minigrad
from minigrad.models import checkpoints, cli, commands, plots, runs
from minigrad.models.adder import Adder
from minigrad.models.cli import build_parser, main
from minigrad.models.comparison import ENGINE_NAMES
from minigrad.models.counter import Counter
from minigrad.models.data import counting_data
from minigrad.models.presets import PRESET_DESCRIPTIONS, PRESETS, CounterTraining
from minigrad.models.training import Accuracy, percent

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # seconds; only a guard against a hang, never an assertion on speed


def console_script(*args: str, script: str) -> subprocess.CompletedProcess:
    """Run the console script at `script` in a subprocess."""
    return subprocess.run([script, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=TIMEOUT, check=False)


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(capsys):
    """`run(*args)`: `minigrad.models.cli.main(args)` in this process; its exit code and output
    (argparse's own exits, help and errors, included)."""

    def call(*args: str) -> Result:
        try:
            code = main(list(args))
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return call


def succeeded(result: Result) -> list[str]:
    """The stdout lines of a run that must have exited 0 with nothing on stderr."""
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "\r" not in result.stdout  # no progress bar when stdout is not a terminal
    return result.stdout.splitlines()


def one_line_error(result: Result) -> str:
    """The one stderr line of a run that must have failed with exit code 2, printing nothing
    else."""
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("minigrad") and "error: " in lines[0]
    return lines[0]


def warned(result: Result) -> tuple[list[str], str]:
    """The stdout lines and the one warning line of a run that exited 0 with a warning."""
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("minigrad: warning: ")
    return result.stdout.splitlines(), lines[0]


# --- the printed sums -----------------------------------------------------------------------


def parse_sums(lines: list[str]) -> list[dict[str, tuple[str, int]]]:
    """Every sum printed in `format_sample`'s layout, as {label: (bits, value)}, after
    checking the layout: a 4-character label, the sign, a space, the bits, three spaces and
    the right-aligned value; the separator is six spaces and a dash per bit."""
    sums = []
    for i, line in enumerate(lines):
        if not line.startswith("x1:"):
            continue
        block = lines[i:i + 5]
        n_bits = len(block[0][6:].split(" ")[0])
        assert block[2] == " " * 6 + "-" * n_bits
        rows = {}
        for row, (label, sign) in zip([block[0], block[1], block[3], block[4]],
                                      [("x1:", " "), ("x2:", "+"), ("t:", "="), ("y:", " ")]):
            assert row[:4] == f"{label:<4}" and row[4] == sign and row[5] == " ", row
            bits, gap, value = row[6:6 + n_bits], row[6 + n_bits:9 + n_bits], row[9 + n_bits:]
            assert set(bits) <= {"0", "1"} and len(bits) == n_bits and gap == "   ", row
            assert re.fullmatch(r" *\d+", value), row
            rows[label[:-1]] = (bits, int(value))
        widths = {len(row) for row in (block[0], block[1], block[3], block[4])}
        assert len(widths) == 1  # the values are right-aligned in one column
        sums.append(rows)
    return sums


def check_sums(lines: list[str], n_bits: int, count: int = 5, all_right: bool = True) -> None:
    sums = parse_sums(lines)
    assert len(sums) == count
    for rows in sums:
        for bits, value in rows.values():
            assert len(bits) == n_bits
            # Least significant bit first: bit k is worth 2**k.
            assert value == sum(2**k for k, bit in enumerate(bits) if bit == "1")
        assert rows["x1"][1] + rows["x2"][1] == rows["t"][1]
        if all_right:
            assert rows["y"] == rows["t"]


HELD_OUT = re.compile(r"held-out accuracy: (\d+\.\d\d)% of bits, (\d+\.\d\d)% of whole sums "
                      r"\((\d+) sums, seed (\d+)\)")


def held_out(lines: list[str]) -> tuple[float, float, int, int]:
    matches = [HELD_OUT.fullmatch(line) for line in lines]
    found = [m for m in matches if m]
    assert len(found) == 1
    bits, sums, count, seed = found[0].groups()
    return float(bits), float(sums), int(count), int(seed)


# --- train counter --------------------------------------------------------------------------


def test_train_counter(run):
    lines = succeeded(run("train", "counter"))
    assert lines[0].startswith("Training the counter: RProp, full batch of 20 sequences of 10, "
                               "500 iterations from w_x = -1.5, w_rec = 2.0")
    iterations = [line for line in lines if line.lstrip().startswith("iteration")]
    assert len(iterations) == 10 and iterations[-1].lstrip().startswith("iteration   500/500")
    w_x, w_rec = map(float, re.fullmatch(r"w_x = (\S+), w_rec = (\S+)", lines[-2]).groups())
    assert abs(w_x - 1) < 0.01 and abs(w_rec - 1) < 0.01
    sequence, count, true = re.fullmatch(r"count of ([01]+): (\S+) \(true: (\d+)\)",
                                         lines[-1]).groups()
    assert int(true) == sequence.count("1") == 5
    assert round(float(count)) == 5


def test_train_counter_quiet_prints_only_the_results(run):
    lines = succeeded(run("train", "counter", "--quiet"))
    assert len(lines) == 2
    assert lines[0].startswith("w_x = ") and lines[1].startswith("count of ")


def test_a_counter_that_did_not_learn_says_so(run):
    # From w_rec = 50 RProp ends far from (1, 1) and miscounts.
    lines, warning = warned(run("train", "counter", "--quiet", "--w-rec", "50"))
    count, true = re.fullmatch(r"count of [01]+: (\S+) \(true: (\d+)\)", lines[-1]).groups()
    assert round(float(count)) != int(true)
    assert "the counter did not learn to count" in warning
    assert "--iterations" in warning and "--w-rec" in warning


def test_a_saved_counter_can_be_evaluated(run, tmp_path):
    path = tmp_path / "counter.npz"
    succeeded(run("train", "counter", "--quiet", "--save", str(path)))
    lines = succeeded(run("eval", "counter", "--model", str(path), "--samples", "300",
                          "--length", "12", "--seed", "3"))
    model = checkpoints.load_counter(path)
    expected = runs.evaluate_counter(model, 300, 12, runs.held_out_seed(3))
    assert expected.right == 1.0  # the trained counter counts every sequence right
    assert lines == [f"counter from {path} (w_x = {model.w_x.item():.4f}, w_rec = "
                     f"{model.w_rec.item():.4f}): {expected} on 300 fresh sequences of 12 "
                     f"(seed 3)"]


# --- train adder ----------------------------------------------------------------------------


def test_train_adder_small_by_default(run):
    lines = succeeded(run("train", "adder"))
    assert lines[0].startswith("Training the small adder: ")
    for fact in ["7 bits", "3 tanh states", "2000 samples", "minibatches of 100", "5 epoch(s)",
                 "rmsprop_nesterov lr 0.05"]:
        assert fact in lines[0]
    epochs = [re.fullmatch(r"  epoch (\d)/5  mean loss (\S+)", line) for line in lines]
    losses = [float(m.group(2)) for m in epochs if m]
    assert len(losses) == 5 and losses[-1] < losses[0] / 100
    assert "seed 1: 100.00% of bits, 100.00% of whole sums on 1000 held-out sums" in lines
    check_sums(lines, n_bits=7)
    assert held_out(lines) == (100.0, 100.0, 1000, 1)


def test_train_adder_quiet_prints_only_the_results(run):
    lines = succeeded(run("train", "adder", "--quiet", "--test-samples", "200"))
    check_sums(lines, n_bits=7)
    assert held_out(lines) == (100.0, 100.0, 200, 1)
    # Five sums of five lines with a blank line after each, then the accuracy: nothing else.
    assert len(lines) == 5 * 6 + 1
    assert not any(line.startswith(("Training", "seed", "  epoch")) for line in lines)


def test_train_adder_keras_shortened(run):
    # 3000 of the preset's 100,000 steps: too few to learn, but every part of the command
    # runs (its loss is reported every 10,000 steps and at the last).
    lines, warning = warned(run("train", "adder", "--preset", "keras", "--samples", "3000"))
    assert lines[0].startswith("Training the keras adder: ")
    for fact in ["8 bits", "16 sigmoid states", "3000 samples", "minibatches of 1", "sgd lr 0.1"]:
        assert fact in lines[0]
    step = [re.fullmatch(r"  step 3000/3000  mean loss (\S+)", line) for line in lines]
    assert sum(m is not None for m in step) == 1
    loss = float(next(m for m in step if m).group(1))
    assert 0 < loss < 1  # about log 2 this early
    check_sums(lines, n_bits=8, all_right=False)
    bits, sums, count, seed = held_out(lines)
    assert (count, seed) == (1000, 0) and 0 <= sums <= bits <= 100
    assert sums < 100 and f"({sums:.2f}% of held-out sums right)" in warning


def test_an_adder_that_did_not_learn_says_so(run):
    # A learning rate of a million wrecks the run: it ends near chance, and says so.
    lines, warning = warned(run("train", "adder", "--quiet", "--lr", "1e6"))
    bits, sums, _, _ = held_out(lines)
    assert sums < 100
    assert warning.startswith("minigrad: warning: the adder did not learn to add "
                              f"({sums:.2f}% of held-out sums right)")
    assert "--lr" in warning and "--restarts" in warning


def test_train_adder_restarts_from_a_fresh_initialisation(run):
    # Seed 0 ends below 100% (the tutorial warns that not every start converges); the
    # restart, seed 1, does.
    lines = succeeded(run("train", "adder", "--seed", "0", "--restarts", "2"))
    assert lines.count("below 100%: restarting from a fresh initialisation") == 1
    assert [line.split(":")[0] for line in lines if line.startswith("seed ")] == ["seed 0",
                                                                                  "seed 1"]
    check_sums(lines, n_bits=7)
    assert held_out(lines) == (100.0, 100.0, 1000, 1)


# --- percentages: never rounded to all or nothing ---------------------------------------


@given(st.floats(0, 1))
def test_a_percentage_is_100_or_0_only_when_exact(fraction):
    shown = float(percent(fraction).removesuffix("%"))
    assert (shown == 100) == (fraction == 1) and (shown == 0) == (fraction == 0)
    assert abs(shown - 100 * fraction) <= 0.01 + 1e-9  # two decimals, at most a step off


NEARLY_ALL = Accuracy(bits=1 - 1e-6, sums=99_999 / 100_000)  # one sum of 100,000 wrong


def test_an_adder_one_sum_short_of_all_is_not_shown_as_100_percent(run, monkeypatch, tmp_path):
    # 99,999 of 100,000 printed "100.00% of whole sums", then "did not learn to add
    # (100.00% ...)" and "100.00% ... below 100%: restarting".
    monkeypatch.setattr(runs, "evaluate_adder", lambda *args, **kwargs: NEARLY_ALL)
    path = tmp_path / "adder.npz"
    lines, warning = warned(run("train", "adder", "--restarts", "1", "--save", str(path)))
    assert lines.count("seed 1: 99.99% of bits, 99.99% of whole sums on 1000 held-out "
                       "sums") == 1
    assert lines.count("below 100%: restarting from a fresh initialisation") == 1
    assert held_out(lines)[:2] == (99.99, 99.99)
    assert "(99.99% of held-out sums right)" in warning
    evaluated = succeeded(run("eval", "adder", "--model", str(path)))
    assert "99.99% of bits, 99.99% of whole sums on 1000 held-out sums" in evaluated[0]


def test_a_counter_one_count_short_of_all_is_not_shown_as_100_percent(run, monkeypatch,
                                                                      tmp_path):
    path = tmp_path / "counter.npz"
    succeeded(run("train", "counter", "--quiet", "--save", str(path)))
    monkeypatch.setattr(runs, "evaluate_counter",
                        lambda *args, **kwargs: runs.CountAccuracy(1 - 1e-5, 1e-7))
    lines = succeeded(run("eval", "counter", "--model", str(path)))
    assert ": 99.99% of counts right, mean error 1e-07 on 1000 fresh" in lines[0]


def test_console_script():
    script = shutil.which("minigrad")
    if script is None:
        pytest.skip("the minigrad console script is not installed (pip install -e .)")
    result = console_script("train", "adder", "--quiet", script=script)
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    check_sums(lines, n_bits=7)
    assert held_out(lines)[:2] == (100.0, 100.0)


# --- standard output that cannot be written --------------------------------------------


def command(*args: str, **popen) -> subprocess.Popen:
    """`minigrad args` from this checkout in a subprocess."""
    return subprocess.Popen([sys.executable, str(ROOT / "minigrad_command.py"), *args],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.parametrize("lines_read", [0, 1])
@pytest.mark.parametrize("model", ["counter", "adder"])
def test_a_pipe_closed_early_does_not_cancel_training(tmp_path, lines_read, model):
    # `minigrad train ... --save x | head -1`: the reader goes, the run finishes, saves
    # and exits 0 without a word on stderr.
    path = tmp_path / "model.npz"
    if lines_read == 0:  # closed before the command writes anything
        reader, writer = os.pipe()
        os.close(reader)
        process = command("train", model, "--save", str(path), stdout=writer)
        os.close(writer)
    else:
        process = command("train", model, "--save", str(path), stdout=subprocess.PIPE)
        assert process.stdout.readline().startswith("Training the ")
        process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=TIMEOUT) == 0, err
    assert err == ""
    load = checkpoints.load_counter if model == "counter" else checkpoints.load_adder
    load(path)


def test_a_full_standard_output_says_so_after_saving(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    path = tmp_path / "model.npz"
    with open("/dev/full", "w") as full:
        process = command("train", "counter", "--save", str(path), stdout=full)
        err = process.stderr.read()
        assert process.wait(timeout=TIMEOUT) == 2
    assert err == ("minigrad: error: cannot write to standard output (No space left on "
                   "device): the rest of the output was dropped; the command ran to the end: "
                   f"the model was saved to {path}\n")
    assert isinstance(checkpoints.load_counter(path), Counter)


def closed(*args: str, streams: str = ">&-", **popen) -> subprocess.Popen:
    """`minigrad args` started with standard output (or error: "2>&-") closed, as a shell
    does; Python then sets sys.stdout (sys.stderr) to None."""
    return subprocess.Popen(["sh", "-c", f'exec "$0" "$@" {streams}', sys.executable,
                             str(ROOT / "minigrad_command.py"), *args],
                            cwd=ROOT, text=True, **popen)


@pytest.mark.parametrize("model", ["counter", "adder"])
@pytest.mark.parametrize("quiet", [[], ["--quiet"]])
def test_a_closed_standard_output_says_so_after_saving(tmp_path, model, quiet):
    # `minigrad train adder --save x >&-` ended in a traceback (sys.stdout is None), exit 1,
    # and the model was not saved.
    path = tmp_path / "model.npz"
    process = closed("train", model, *quiet, "--save", str(path), stderr=subprocess.PIPE)
    err = process.stderr.read()
    assert process.wait(timeout=TIMEOUT) == 2
    assert err == ("minigrad: error: cannot write to standard output (it is closed): the rest "
                   "of the output was dropped; the command ran to the end: the model was "
                   f"saved to {path}\n")
    load = checkpoints.load_counter if model == "counter" else checkpoints.load_adder
    load(path)


@pytest.mark.parametrize("args", [["--help"], ["eval", "adder"], ["add", "3", "4"]])
def test_other_commands_with_a_closed_standard_output_say_so(saved_adder, args):
    model = ["--model", str(saved_adder)] if len(args) > 1 else []
    process = closed(*args, *model, stderr=subprocess.PIPE)
    err = process.stderr.read()
    assert process.wait(timeout=TIMEOUT) == 2
    assert err == ("minigrad: error: cannot write to standard output (it is closed): the rest "
                   "of the output was dropped\n")


@pytest.mark.parametrize("args, code", [
    (["train", "adder", "--lr", "0", "--quiet"], 0),  # ends with a warning
    (["eval", "adder", "--model", "missing.npz"], 2),  # an error
])
def test_a_closed_standard_error_keeps_the_exit_status(tmp_path, args, code):
    path = tmp_path / "model.npz"
    save = ["--save", str(path)] if args[0] == "train" else []
    process = closed(*args, *save, streams="2>&-", stdout=subprocess.PIPE)
    out = process.stdout.read()
    assert process.wait(timeout=TIMEOUT) == code
    assert "minigrad: " not in out  # (print's file=None is stdout: a warning went there)
    if save:
        assert f"saved the small adder to {path}" in out
        checkpoints.load_adder(path)


@pytest.mark.parametrize("lines_read", [0, 1])
def test_a_warning_into_a_reader_that_stopped_early_exits_0(tmp_path, lines_read):
    # `minigrad train adder --lr 0 --save x 2>&1 | head -1` exited 1: the warning met the
    # closed pipe, and so did the error line about it.
    path = tmp_path / "model.npz"
    args = [sys.executable, str(ROOT / "minigrad_command.py"), "train", "adder", "--lr", "0",
            "--save", str(path)]
    if lines_read == 0:
        reader, writer = os.pipe()
        os.close(reader)
        process = subprocess.Popen(args, cwd=ROOT, stdout=writer, stderr=writer)
        os.close(writer)
    else:
        process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        assert process.stdout.readline().startswith("Training the ")
        process.stdout.close()
    assert process.wait(timeout=TIMEOUT) == 0
    checkpoints.load_adder(path)


def test_a_broken_standard_error_keeps_an_errors_exit_status(tmp_path):
    reader, writer = os.pipe()
    os.close(reader)
    process = subprocess.Popen([sys.executable, str(ROOT / "minigrad_command.py"), "eval",
                                "adder", "--model", str(tmp_path / "missing.npz")],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=writer)
    os.close(writer)
    assert process.wait(timeout=TIMEOUT) == 2


def test_what_the_output_encoding_cannot_hold_is_escaped_and_the_run_goes_on(tmp_path):
    # PYTHONIOENCODING=ascii: "saved the counter to ü.npz" ended the command with exit 2
    # and a codec's message, after saving and before drawing the figures.
    pytest.importorskip("matplotlib")
    path, figures = tmp_path / "ü.npz", tmp_path / "figures"
    process = command("train", "counter", "--quiet", "--save", str(path), "--plot",
                      str(figures), stdout=subprocess.PIPE,
                      env={**os.environ, "PYTHONIOENCODING": "ascii"})
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0 and err == ""
    escaped = str(path).encode("ascii", "backslashreplace").decode("ascii")
    assert f"saved the counter to {escaped}" in out.splitlines()
    assert sorted(p.name for p in figures.iterdir()) == ["counter_gradients.png",
                                                         "counter_loss_surface.png"]
    assert isinstance(checkpoints.load_counter(path), Counter)


# A real SIGTERM, delivered while the command writes a figure (its first, the counter's loss
# surface), after part of it is written.
TERMINATED_WHILE_DRAWING = """
import os, signal, sys
from matplotlib.figure import Figure
def savefig(self, file, **kwargs):
    file.write(b"part of a figure")
    os.kill(os.getpid(), signal.SIGTERM)
Figure.savefig = savefig
from minigrad.models.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_while_drawing_removes_the_half_written_figure_and_exits_143(tmp_path):
    # SIGTERM ended the command at once (exit 143 without a word), and left the figure's
    # hidden temporary file behind.
    pytest.importorskip("matplotlib")
    figure = tmp_path / plots.COUNTER_FIGURES[0]
    figure.write_bytes(b"a figure drawn earlier")
    model = tmp_path / "counter.npz"
    done = subprocess.run([sys.executable, "-c", TERMINATED_WHILE_DRAWING, "train", "counter",
                           "--quiet", "--plot", str(tmp_path), "--save", str(model)],
                          capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT,
                          check=False)
    assert (done.returncode, done.stderr) == (
        143, f"minigrad: terminated (the model was saved to {model})\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [model.name, figure.name]
    assert figure.read_bytes() == b"a figure drawn earlier"


@pytest.mark.parametrize("when", ["after the rename", "while training"])
def test_an_interrupt_says_whether_the_model_was_saved(run, tmp_path, monkeypatch, when):
    # Ctrl-C after the save renamed the new model into place, before "saved the counter
    # to ..." was printed, said only "interrupted".
    path = tmp_path / "counter.npz"
    path.write_bytes(b"an older model")
    save = checkpoints.save_counter

    def interrupted(*args, **kwargs):
        if when == "after the rename":
            save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints, "save_counter", interrupted)
    if when == "while training":
        monkeypatch.setattr(runs, "train_counter", interrupted)
    result = run("train", "counter", "--quiet", "--save", str(path))
    assert result.returncode == 130
    if when == "after the rename":
        assert result.stderr == f"minigrad: interrupted (the model was saved to {path})\n"
        assert isinstance(checkpoints.load_counter(path), Counter)
    else:
        assert result.stderr == "minigrad: interrupted\n"
        assert path.read_bytes() == b"an older model"


# --- output paths are checked before training -----------------------------------------------


@pytest.fixture
def no_training(monkeypatch):
    """Training fails the test if it starts."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(runs, "train_counter", refuse)
    monkeypatch.setattr(runs, "train_adder_once", refuse)


@pytest.mark.parametrize("model", ["counter", "adder"])
@pytest.mark.parametrize("where, problem", [
    ("missing/model.npz", "does not exist"),
    (".", "is a directory"),
    ("a_file/model.npz", "a_file is not a directory"),
])
def test_a_save_path_that_cannot_be_written_is_refused_before_training(
        run, tmp_path, no_training, model, where, problem):
    (tmp_path / "a_file").write_text("not a directory")
    before = sorted(tmp_path.rglob("*"))
    path = str(tmp_path / where)
    error = one_line_error(run("train", model, "--save", path))
    assert error.startswith(f"minigrad: error: --save {path}: ") and problem in error
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def _entries(folder):
    """What a folder holds, each entry's kind, identity, size and modification times: not
    its access time, which following a symbolic link may move (a flaky comparison when the
    clock crossed a second between making the link and the command)."""
    def kept(p):
        s = os.lstat(p)
        return s.st_mode, s.st_ino, s.st_dev, s.st_size, s.st_mtime_ns, s.st_ctime_ns
    return {p.name: kept(p) for p in folder.iterdir()}


def _fifo(path):
    os.mkfifo(path)


def _device(path):
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is


def _link_to_fifo(path):
    os.mkfifo(f"{path}.fifo")
    os.symlink(f"{path}.fifo", path)


@pytest.mark.parametrize("model", ["counter", "adder"])
@pytest.mark.parametrize("make, kind", [(_fifo, "a FIFO"), (_device, "a character device"),
                                        (_link_to_fifo, "a FIFO")],
                         ids=["fifo", "device", "link to a fifo"])
def test_a_save_target_that_is_not_a_regular_file_is_refused_before_training(
        run, tmp_path, no_training, model, make, kind):
    path = tmp_path / "node"
    make(path)
    before = _entries(tmp_path)
    error = one_line_error(run("train", model, "--save", str(path)))
    assert error == (f"minigrad: error: --save {path}: cannot write a file there: it is "
                     f"{kind}, not a regular file (left as it is)")
    assert _entries(tmp_path) == before


@pytest.mark.parametrize("model", ["counter", "adder"])
@pytest.mark.parametrize("option, what", [("--save", "a file name"), ("--plot", "a directory")])
def test_an_empty_path_is_refused_before_training(run, tmp_path, monkeypatch, no_training,
                                                  model, option, what):
    monkeypatch.chdir(tmp_path)
    error = one_line_error(run("train", model, option, ""))
    assert error.startswith(f"minigrad: error: {option}: the path is empty; give {what}")
    assert list(tmp_path.iterdir()) == []


LONG = "n" * 300  # over the 255-byte limit of a name on most file systems


def _loop(path):
    os.symlink(f"{path}.other", path)
    os.symlink(path, f"{path}.other")
    return path


@pytest.mark.parametrize("model", ["counter", "adder"])
@pytest.mark.parametrize("option, where, problem", [
    ("--save", "results/", "it ends in a separator, so it names a directory"),
    ("--save", "a.npz/", "it ends in a separator, so it names a directory"),
    ("--save", f"{LONG}.npz", "a name in it is 304 bytes long, over the file system's limit"),
    ("--plot", LONG, "a name in it is 300 bytes long, over the file system's limit"),
    ("--plot", f"new/{LONG}/figures", "a name in it is 300 bytes long"),
    ("--save", "loop", "cannot use the path: Too many levels of symbolic links"),
    ("--plot", "loop", "cannot use the path: Too many levels of symbolic links"),
], ids=["save-dir/", "save-file/", "save-long-name", "plot-long-name", "plot-long-inside",
        "save-link-loop", "plot-link-loop"])
def test_a_path_that_would_fail_after_training_is_refused_before(
        run, tmp_path, no_training, model, option, where, problem):
    if where == "loop":
        _loop(tmp_path / "loop")
    before = _entries(tmp_path)
    path = str(tmp_path / where) + ("/" if where.endswith("/") else "")
    error = one_line_error(run("train", model, option, path))
    assert error.startswith(f"minigrad: error: {option} {path}: {problem}"), error
    assert _entries(tmp_path) == before  # nothing written


@pytest.mark.parametrize("model", ["counter", "adder"])
@pytest.mark.parametrize("plot", ["same", "same/figures"])
def test_a_plot_directory_where_the_model_goes_is_refused_before_training(
        run, tmp_path, no_training, model, plot):
    save, figures = tmp_path / "same", tmp_path / plot
    error = one_line_error(run("train", model, "--save", str(save), "--plot", str(figures)))
    assert error == (f"minigrad: error: --plot {figures}: the figures' directory would be "
                     f"where --save {save} writes the model's file; give them different paths")
    assert list(tmp_path.iterdir()) == []


FIGURES = [("counter", name) for name in plots.COUNTER_FIGURES] + [
    ("adder", plots.adder_figure_name("small"))]


@pytest.mark.parametrize("model, name", FIGURES)
@pytest.mark.parametrize("spelling", ["same", "through a link"])
def test_a_save_path_that_is_a_figure_is_refused_before_training(
        run, tmp_path, no_training, model, name, spelling):
    # `train counter --save fx/counter_gradients.png --plot fx` saved the model, then drew
    # the figure over it (exit 0, "saved the counter to ...").
    pytest.importorskip("matplotlib")
    figures = tmp_path / "figures"
    figures.mkdir()
    folder = figures
    if spelling == "through a link":
        folder = tmp_path / "link"
        folder.symlink_to(figures)
    save = folder / name
    before = sorted(tmp_path.rglob("*"))
    error = one_line_error(run("train", model, "--save", str(save), "--plot", str(figures)))
    assert error == (f"minigrad: error: --save {save}: it is the figure {figures / name} that "
                     f"--plot {figures} draws, which would replace the model; give the model "
                     f"another name")
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def _read_only(path, monkeypatch, whose):
    """A file at `path` that no one may write (mode 444: root, whom os.access lets write it,
    too), or that another user's mode bits let only that user write (os.access says no)."""
    path.write_bytes(b"an old file")
    if whose == "no one's":
        path.chmod(0o444)
        return
    path.chmod(0o644)
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kwargs: (
        not mode & os.W_OK and access(p, mode)) if os.fspath(p) == str(path)
        else access(p, mode, **kwargs))


@pytest.mark.parametrize("model", ["counter", "adder"])
@pytest.mark.parametrize("whose", ["no one's", "another user's"])
def test_a_read_only_save_target_is_refused_before_training(
        run, tmp_path, monkeypatch, no_training, model, whose):
    # Root replaced a file of mode 444: os.access lets root write any file.
    path = tmp_path / "model.npz"
    _read_only(path, monkeypatch, whose)
    before = _entries(tmp_path)
    error = one_line_error(run("train", model, "--save", str(path)))
    assert error == f"minigrad: error: --save {path}: cannot write the file: it is read-only"
    assert _entries(tmp_path) == before
    assert path.read_bytes() == b"an old file"


@pytest.mark.parametrize("model, name", FIGURES)
def test_a_figure_linked_into_a_missing_directory_is_refused_before_training(
        run, tmp_path, no_training, model, name):
    """A figure's name that is a symbolic link into a directory that does not exist: refused
    before training, where the run trained, drew the first figure and then failed (found by
    this stop's second review); a new figure in a new --plot directory is no such case."""
    pytest.importorskip("matplotlib")
    figure = tmp_path / name
    figure.symlink_to(tmp_path / "nowhere" / "x.png")
    before = _entries(tmp_path)
    error = one_line_error(run("train", model, "--plot", str(tmp_path)))
    assert error == (f"minigrad: error: --plot {tmp_path}: cannot replace the figure {figure}: "
                     f"it is a symbolic link to {tmp_path / 'nowhere' / 'x.png'}, in a "
                     "directory that does not exist (left as it is)")
    assert _entries(tmp_path) == before


@pytest.mark.parametrize("model, name", FIGURES)
@pytest.mark.parametrize("kind", ["no one's", "another user's", "a directory"])
def test_a_figure_that_cannot_be_replaced_is_refused_before_training(
        run, tmp_path, monkeypatch, no_training, model, name, kind):
    # --save refused a read-only model before training; --plot replaced a read-only figure
    # (and as root, one of mode 444).
    pytest.importorskip("matplotlib")
    figure = tmp_path / name
    if kind == "a directory":
        figure.mkdir()
    else:
        _read_only(figure, monkeypatch, kind)
    before = _entries(tmp_path)
    error = one_line_error(run("train", model, "--plot", str(tmp_path)))
    problem = "it is a directory, not a regular file" if kind == "a directory" else \
        "it is read-only"
    assert error == (f"minigrad: error: --plot {tmp_path}: cannot replace the figure {figure}: "
                     f"{problem} (left as it is)")
    assert _entries(tmp_path) == before


def test_a_directory_a_file_system_refuses_is_refused_before_training(run, no_training):
    # /sys refuses new directories even to root, whom os.access lets write anywhere.
    if not os.path.isdir("/sys/kernel") or os.path.exists("/sys/figures"):
        pytest.skip("needs Linux's /sys")
    error = one_line_error(run("train", "counter", "--plot", "/sys/figures"))
    assert error.startswith("minigrad: error: --plot /sys/figures: cannot ")
    assert not os.path.exists("/sys/figures")


@pytest.mark.parametrize("option, value", [("--save", "model.npz"), ("--plot", "figures")])
def test_the_check_tries_to_create(run, tmp_path, monkeypatch, no_training, option, value):
    # Where the permission bits say yes but the file system says no (a read-only mount
    # seen by root), the check's own attempt finds it out, and creates nothing.
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(cli.commands.tempfile, "TemporaryFile", refuse)
    monkeypatch.setattr(cli.commands.tempfile, "mkdtemp", refuse)
    path = tmp_path / value
    error = one_line_error(run("train", "counter", option, str(path)))
    assert error.startswith(f"minigrad: error: {option} {path}: cannot ")
    assert error.endswith(f"{os.strerror(errno.EROFS)})" if option == "--plot"
                          else os.strerror(errno.EROFS))
    assert list(tmp_path.iterdir()) == []


def test_a_save_that_fails_after_training_names_the_option(run, tmp_path, monkeypatch):
    def full(module, path, metadata=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))

    monkeypatch.setattr(checkpoints.mg, "save", full)
    path = tmp_path / "model.npz"
    result = run("train", "counter", "--quiet", "--save", str(path))
    assert result.returncode == 2
    assert result.stderr == (f"minigrad: error: --save {path}: cannot write {path}: "
                             f"{os.strerror(errno.ENOSPC)}\n")


def test_saving_over_a_private_model_keeps_it_private(run, tmp_path):
    path = tmp_path / "counter.npz"
    path.write_bytes(b"an older model")
    path.chmod(0o600)
    succeeded(run("train", "counter", "--quiet", "--save", str(path)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert isinstance(checkpoints.load_counter(path), Counter)


@pytest.mark.parametrize("model", ["counter", "adder"])
@pytest.mark.parametrize("where, problem", [
    ("a_file", "is a file, not a directory"),
    ("a_file/figures", "which is a file, not a directory"),
])
def test_a_plot_directory_that_cannot_be_made_is_refused_before_training(
        run, tmp_path, no_training, model, where, problem):
    (tmp_path / "a_file").write_text("not a directory")
    path = str(tmp_path / where)
    error = one_line_error(run("train", model, "--plot", path))
    assert error.startswith(f"minigrad: error: --plot {path}: ") and problem in error


def test_a_missing_plot_directory_is_created(run, tmp_path):
    pytest.importorskip("matplotlib")
    directory = tmp_path / "new" / "figures"
    lines = succeeded(run("train", "counter", "--quiet", "--iterations", "500", "--plot",
                          str(directory)))
    assert sorted(p.name for p in directory.iterdir()) == ["counter_gradients.png",
                                                            "counter_loss_surface.png"]
    assert lines[-1] == f"wrote {directory / 'counter_gradients.png'}"


# --- eval draws what train holds out ----------------------------------------------------


def test_eval_adder_seed_n_draws_the_held_out_sums_of_train_seed_n(run, tmp_path):
    # One epoch on 200 sums: a model that gets some sums wrong, so that other sums would
    # give other numbers.
    path = tmp_path / "adder.npz"
    lines, _ = warned(run("train", "adder", "--quiet", "--epochs", "1", "--samples", "200",
                          "--test-samples", "500", "--seed", "3", "--save", str(path)))
    bits, sums, count, seed = held_out(lines)
    assert sums < 100 and (count, seed) == (500, 3)
    lines = succeeded(run("eval", "adder", "--model", str(path), "--samples", "500",
                          "--seed", "3"))
    assert lines == [f"small adder from {path}: {bits:.2f}% of bits, {sums:.2f}% of whole "
                     f"sums on 500 held-out sums (operands below 64, seed 3)"]


def test_eval_without_a_seed_measures_on_the_held_out_sums_of_the_saved_run(run, tmp_path):
    """The checkpoint holds its run's seed: `eval` measured on seed 0 by default, while
    `train adder` reported the preset's seed (1 for small) or --seed's, other sums."""
    path = tmp_path / "adder.npz"
    lines, _ = warned(run("train", "adder", "--quiet", "--epochs", "1", "--samples", "200",
                          "--test-samples", "500", "--seed", "3", "--save", str(path)))
    bits, sums, _, _ = held_out(lines)
    assert checkpoints.saved_seed(path, "adder") == 3
    lines = succeeded(run("eval", "adder", "--model", str(path), "--samples", "500"))
    assert lines == [f"small adder from {path}: {bits:.2f}% of bits, {sums:.2f}% of whole "
                     f"sums on 500 held-out sums (operands below 64, seed 3)"]
    counter = tmp_path / "counter.npz"
    warned(run("train", "counter", "--quiet", "--iterations", "5", "--seed", "7",
               "--save", str(counter)))  # (5 iterations do not learn to count: a warning)
    assert checkpoints.saved_seed(counter, "counter") == 7
    assert "(seed 7)" in succeeded(run("eval", "counter", "--model", str(counter)))[-1]


def test_a_saved_seed_that_is_not_a_count_is_refused(tmp_path):
    path = tmp_path / "adder.npz"
    model = Adder(rng=np.random.default_rng(0))
    minigrad.save(model, path, metadata={"model": "adder", "seed": "-1"})
    with pytest.raises(ValueError, match=r"the saved run has seed='-1', not an integer"):
        checkpoints.saved_seed(path, "adder")


@pytest.mark.parametrize("seed", [None, "5"])
def test_eval_counter_does_not_draw_the_training_sequences(run, tmp_path, monkeypatch, seed):
    path = tmp_path / "counter.npz"
    checkpoints.save_counter(Counter(1.0, 1.0), path)
    drawn = []
    count_accuracy = runs.count_accuracy

    def recording(model, X, t):
        drawn.append(X)
        return count_accuracy(model, X, t)

    monkeypatch.setattr(runs, "count_accuracy", recording)
    option = [] if seed is None else ["--seed", seed]
    succeeded(run("eval", "counter", "--model", str(path), "--samples", "20", *option))
    number = 0 if seed is None else int(seed)
    training = runs.train_counter(CounterTraining(iterations=1, seed=number)).X
    assert drawn[0].shape == training.shape
    assert not np.array_equal(drawn[0], training)
    held_out_stream = np.random.default_rng(runs.held_out_seed(number))
    assert np.array_equal(drawn[0], counting_data(held_out_stream, 20, 10)[0])


def test_eval_help_says_which_sums_a_seed_draws(run):
    text = " ".join(" ".join(succeeded(run("eval", "--help"))).split())
    assert "the held-out sums `train adder --seed N` reports its accuracy on" in text
    assert "sequences apart from the training ones of `train counter --seed N`" in text


# --- eval: bounded memory -------------------------------------------------------------------


@pytest.fixture
def saved_adder(tmp_path):
    """An untrained small adder on disk: its accuracy does not matter here."""
    path = tmp_path / "adder.npz"
    checkpoints.save_adder(Adder(PRESETS["small"][0], rng=np.random.default_rng(0)), path)
    return path


def test_eval_adder_runs_in_batches_of_at_most_10000(run, saved_adder, monkeypatch):
    batches = []
    predict = Adder.predict_bits

    def recording(self, X):
        batches.append(len(X))
        return predict(self, X)

    monkeypatch.setattr(Adder, "predict_bits", recording)
    lines = succeeded(run("eval", "adder", "--model", str(saved_adder), "--samples", "25000"))
    assert batches == [10_000, 10_000, 5000]
    model, _ = checkpoints.load_adder(saved_adder)
    assert lines == [f"small adder from {saved_adder}: {runs.evaluate_adder(model, 25000, [0, 1])} "
                     f"on 25000 held-out sums (operands below 64, seed 0)"]


def test_held_out_sums_are_evaluated_in_batches_too(run, monkeypatch):
    batches = []
    predict = Adder.predict_bits

    def recording(self, X):
        batches.append(len(X))
        return predict(self, X)

    monkeypatch.setattr(Adder, "predict_bits", recording)
    lines, _ = warned(run("train", "adder", "--quiet", "--epochs", "1", "--samples", "200",
                          "--test-samples", "25000"))
    assert held_out(lines)[2] == 25000
    assert batches == [10_000, 10_000, 5000, 5]  # the held-out sums, then the five shown


# --- errors in the user's words -------------------------------------------------------------


@pytest.mark.parametrize(
    "args, option",
    [
        (["train", "adder", "--lr", "-1"], "--lr"),
        (["train", "adder", "--lr", "nan"], "--lr"),
        (["train", "adder", "--decay", "1"], "--decay"),
        (["train", "adder", "--momentum", "x"], "--momentum"),
        (["train", "adder", "--preset", "big"], "--preset"),
        (["train", "adder", "--epochs", "0"], "--epochs"),
        (["train", "adder", "--seed", "x"], "--seed"),
        (["train", "adder", "--restarts", "-1"], "--restarts"),
        (["train", "adder", "--restarts", "1.5"], "--restarts"),
        # (a restart takes the next seed: past 2**63 - 1 it was saved, then refused by eval)
        (["train", "adder", "--seed", str(2**63 - 1), "--restarts", "1"], "--restarts"),
        (["train", "adder", "--preset", "keras", "--decay", "0.5"], "--decay"),
        (["train", "adder", "--samples", "50", "--batch-size", "100"], "--batch-size"),
        (["train", "counter", "--seed", "x"], "--seed"),
        (["train", "counter", "--iterations", "-5"], "--iterations"),
        (["train", "counter", "--eta-plus", "0.5"], "--eta-plus"),
        (["train", "counter", "--step-init", "0"], "--step-init"),
        (["compare", "adder", "--preset", "big"], "--preset"),
        (["compare", "tensor"], "MODEL"),
        (["eval", "tensor", "--model", "m.npz"], "MODEL"),
        (["eval", "counter", "--model", "m.npz", "--preset", "small"], "--preset"),
        (["eval", "adder", "--model", "m.npz", "--length", "3"], "--length"),
        (["graph", "adder", "--steps", "100"], "--steps"),
        (["compare", "counter", "--preset", "large"], "--preset"),
        (["compare", "counter", "--batch-size", "5"], "--batch-size"),
        (["graph", "counter", "--preset", "keras"], "--preset"),
        (["train", "counter", "--step-init", "1000"], "--step-init"),
        (["add", "1", "-2", "--model", "m.npz"], "B"),
        (["train"], "MODEL"),
    ],
)
def test_bad_values_give_one_line_in_the_options_words(run, args, option):
    error = one_line_error(run(*args))
    assert option in error
    # No function, class or module name of the implementation leaks into the message.
    assert not re.search(r"\b_\w+|Config|addition_data|np\.|numpy|allow_pickle", error), error


def test_a_bad_combination_names_both_options(run):
    error = one_line_error(run("train", "adder", "--samples", "50", "--batch-size", "100"))
    assert error == ("minigrad: error: argument --batch-size: 100 is more than the 50 "
                     "training sums (--samples 50)")


@pytest.mark.parametrize("args", [["compare", "counter", "--preset", "large"],
                                  ["compare", "counter", "--batch-size", "5"],
                                  ["graph", "counter", "--preset", "keras"]])
def test_an_adder_only_option_given_for_the_counter_is_refused(run, args):
    option = args[2]
    assert one_line_error(run(*args)) == (f"minigrad: error: argument {option}: applies to "
                                          f"the adder only ({args[0]} adder), not to the "
                                          f"counter")


def test_the_first_steps_bounds_are_in_the_options_words(run):
    error = one_line_error(run("train", "counter", "--step-init", "1000"))
    assert error == ("minigrad train counter: error: argument --step-init: must be in "
                     "[1e-06, 50], RProp's smallest and largest step, got 1000")
    help_text = " ".join(" ".join(succeeded(run("train", "counter", "--help"))).split())
    assert "RProp's first step size, in [1e-06, 50]" in help_text
    for bound in ("1e-06", "50"):  # a bound itself is accepted
        assert cli.build_parser().parse_args(
            ["train", "counter", "--step-init", bound]).step_init == float(bound)


def test_a_file_that_is_not_a_checkpoint_is_one_line(run, tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("these are notes, not a model\n")
    for args in (["add", "1", "2", "--model", str(path)], ["eval", "adder", "--model", str(path)],
                 ["eval", "counter", "--model", str(path)]):
        error = one_line_error(run(*args))
        assert str(path) in error


def test_an_overflowing_graph_suggests_what_graph_has(run):
    # The counter starts at w_rec = 2: 2**k overflows float64 past 1024 steps.
    error = one_line_error(run("graph", "counter", "--steps", "2000"))
    assert "diverged" in error and "--steps" in error
    assert "learning rate" not in error and "--lr" not in error


def test_graph_help_states_the_counters_limit_of_steps(run):
    help_text = " ".join(" ".join(succeeded(run("graph", "--help"))).split())
    limit = int(re.search(r"for the counter about (\d+), as its state doubles every step",
                          help_text).group(1))
    assert succeeded(run("graph", "counter", "--steps", str(limit)))[0].startswith("digraph")
    error = one_line_error(run("graph", "counter", "--steps", str(limit + 20)))
    assert "diverged" in error and "--steps" in error


# --- help -----------------------------------------------------------------------------------


def test_bare_minigrad_prints_usage_and_the_commands(run):
    lines = succeeded(run())
    assert lines[0].startswith("usage: minigrad")
    text = "\n".join(lines)
    for command in ("train", "compare", "add", "eval", "graph"):
        assert re.search(rf"^    {command} ", text, re.M), command


def test_version(run):
    assert succeeded(run("--version")) == [f"minigrad {minigrad.__version__}"]


def subparsers(parser):
    """Every parser reachable from `parser`, itself included, with its command words."""
    found = [((), parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += [((name, *words), p) for words, p in subparsers(child)]
    return found


def test_every_option_states_its_default():
    for words, parser in subparsers(build_parser()):
        for action in parser._actions:
            if not action.option_strings or action.dest in ("help", "version"):
                continue
            stated = "(required)" if action.required else "default"
            assert stated in (action.help or ""), (words, action.option_strings)


def test_no_help_text_cites_a_document_that_is_not_here(run):
    for words, _ in subparsers(build_parser()):
        text = succeeded(run(*words, "--help"))
        assert not any("SPEC" in line for line in text), words


def test_add_help_explains_the_bit_layout(run):
    text = " ".join(" ".join(succeeded(run("add", "--help"))).split())
    assert "least significant bit first" in text
    assert "t: the true sum" in text and "y: the adder's answer" in text


@pytest.mark.parametrize("args, options", [
    (["train", "counter"], ["--iterations", "--w-x", "--w-rec", "--seed", "--quiet"]),
    (["train", "adder"], ["--preset", "--epochs", "--batch-size", "--samples", "--lr",
                          "--restarts", "--test-samples", "--seed", "--quiet"]),
    (["compare"], ["--preset", "--batch-size", "--repeats", "--seed"]),
    (["eval"], ["--model", "--samples", "--length", "--seed"]),
])
def test_help_lists_the_options(run, args, options):
    text = "\n".join(succeeded(run(*args, "--help")))
    for option in options:
        assert option in text


@pytest.mark.parametrize("model", ["counter", "adder"])
def test_train_help_says_save_and_plot_overwrite(run, model):
    """--save and --plot replace an existing file of the names they write, without asking:
    the help says so."""
    text = " ".join(" ".join(succeeded(run("train", model, "--help"))).split())
    assert "PATH (.npz), overwriting a file there" in text
    assert "overwriting figures of the same names there" in text


@pytest.mark.parametrize("model", ["counter", "adder"])
def test_threads_help_says_the_count_can_change_the_trained_model(run, model):
    """The large adder's default seed trains other weights at --threads 2 than at 1 (BLAS
    sums in an order that depends on the count): the help said only that it was slower."""
    text = " ".join(" ".join(succeeded(run("train", model, "--help"))).split())
    assert ("a seed trains the same model only at the same count and kernel; the default "
            "seeds are checked at 1 (default: 1)") in text
    assert build_parser().parse_args(["train", model]).threads == 1


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_presets_description_states_its_operands_and_sums_widths(preset):
    """The small preset was "6-bit sums in 7 bits": its operands have 6 bits, its sums 7."""
    config = PRESETS[preset][0]
    largest = config.operand_limit - 1
    text = PRESET_DESCRIPTIONS[preset]
    assert text.startswith(f"{largest.bit_length()}-bit operands")
    assert f", sums of {(2 * largest).bit_length()} bits, {config.n_states} " in text
    assert (2 * largest).bit_length() == config.n_bits  # (the adder's sequence length)


def test_help_that_cannot_be_written_is_an_error(tmp_path):
    """`minigrad --help > /dev/full` exited 0: argparse printed, the write failed unseen."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    for args in (["--help"], ["train", "adder", "--help"], ["--version"]):
        with open("/dev/full", "w") as full:
            process = command(*args, stdout=full)
            err = process.stderr.read()
            assert process.wait(timeout=TIMEOUT) == 2, args
        assert err == ("minigrad: error: cannot write to standard output (No space left on "
                       "device): the rest of the output was dropped\n")


def test_train_help_lists_every_models_options(run):
    text = "\n".join(succeeded(run("train", "--help")))
    for model in ("counter", "adder"):
        parser = dict(subparsers(build_parser()))[("train", model)]
        for action in parser._actions:
            for option in action.option_strings:
                assert option in text, (model, option)
        assert parser.description.split(":")[0] in " ".join(text.split())


# --- BLAS threads ---------------------------------------------------------------------------


def _blas_threads():
    return {info["filepath"]: info["num_threads"] for info in threadpool_info()
            if info["user_api"] == "blas"}


@pytest.mark.parametrize("args", [["train", "counter"], ["train", "adder"], ["compare", "adder"],
                                  ["graph", "counter"]])
@pytest.mark.parametrize("threads, wanted", [(None, 1), ("1", 1), ("3", 3), ("0", 2)])
def test_commands_run_blas_on_the_threads_asked_for(run, monkeypatch, args, threads, wanted):
    """One thread by default, N with --threads N, and with --threads 0 whatever the BLAS
    had before the command (two threads here)."""
    seen = []

    def command(*args, **kwargs):
        seen.append(_blas_threads())
        return 0

    for name in ("train_counter", "train_adder", "compare", "print_graph"):
        monkeypatch.setattr(cli.commands, name, command)
    option = [] if threads is None else ["--threads", threads]
    with threadpool_limits(2, user_api="blas"):
        outside = _blas_threads()
        if not outside:
            pytest.skip("threadpoolctl sees no BLAS library in this NumPy")
        succeeded(run(*args, *option))
        assert seen == [dict.fromkeys(outside, wanted)]
        assert _blas_threads() == outside  # restored after the command


@pytest.mark.parametrize("args, wanted", [
    (["--threads", "3", "train", "counter"], 3),
    (["--threads", "3", "graph", "counter"], 3),
    (["--threads", "3", "train", "counter", "--threads", "2"], 2),  # the command's own wins
])
def test_threads_may_come_before_the_command(run, monkeypatch, args, wanted):
    seen = []

    def command(*args, **kwargs):
        seen.append(set(_blas_threads().values()))
        return 0

    for name in ("train_counter", "print_graph"):
        monkeypatch.setattr(cli.commands, name, command)
    if not _blas_threads():
        pytest.skip("threadpoolctl sees no BLAS library in this NumPy")
    succeeded(run(*args))
    assert seen == [{wanted}]
    assert "--threads" in "\n".join(succeeded(run("--help")))


# --- compare --------------------------------------------------------------------------------


def check_compare(lines: list[str], title: str, names: list[str]) -> None:
    assert lines[0] == f"{title}: forward + backward on the same parameters and data"
    engine, hand = map(float, re.fullmatch(r"  loss       engine (\S+)   hand-coded (\S+)",
                                           lines[1]).groups())
    assert engine == pytest.approx(hand, rel=1e-10, abs=0)
    assert len(lines) == 4 + len(names)
    assert lines[-2] == ("  agree      every difference within 1e-09 of its largest |grad| "
                         "(of max(1, |loss|), for the losses)")
    for name, line in zip(names, lines[2:-2]):
        match = re.fullmatch(rf"  {re.escape(name)} +max \|grad difference\| (\S+)  "
                             rf"\(largest \|grad\| (\S+)\)", line)
        assert match, line
        difference, largest = map(float, match.groups())
        assert largest > 0 and difference <= 1e-10 * largest
    match = re.fullmatch(r"  time/step  engine (\S+) us   hand-coded (\S+) us   ratio (\S+) "
                         r"\(median of 20, alternating\)", lines[-1])
    assert match, lines[-1]
    assert all(float(value) > 0 for value in match.groups())


def test_compare_says_differ_and_fails_where_a_gradient_is_wrong(run):
    """A VJP of the engine made wrong (a mutant of mul's, the counter's product) makes
    compare name the parameters whose gradients differ, and exit 1: a verdict, not only
    numbers to read."""
    from minigrad.testing import mutants as mm

    doubled = next(m for m in mm.mutants("mul") if m.mutation.name == "doubled")
    with mm.installed(doubled):
        result = run("compare", "counter", "--repeats", "2")
    assert result.returncode == 1, result
    verdict = [line for line in result.stdout.splitlines() if line.startswith("  DIFFER")]
    assert len(verdict) == 1 and "w_x" in verdict[0] and "w_rec" in verdict[0]


def test_compare_counter(run):
    lines = succeeded(run("compare", "counter", "--repeats", "20"))
    check_compare(lines, "counter, 20 sequences of 10", ["w_x", "w_rec"])


@pytest.mark.parametrize("preset", ["small", "keras"])
def test_compare_adder(run, preset):
    lines = succeeded(run("compare", "adder", "--preset", preset, "--repeats", "20",
                          "--batch-size", "50"))
    engine_name = {engine: reference for reference, engine in ENGINE_NAMES.items()}
    names = [f"{name} = {engine_name[name]}" for name in PRESETS[preset][0].parameter_shapes()]
    check_compare(lines, f"{preset} adder, batch of 50", names)


def test_printed_sums_match_format_sample():
    # The parser above reads exactly what models.data.format_sample writes.
    from minigrad.models.data import encode_sum, format_sample

    X, T = encode_sum(np.array([37, 1]), np.array([43, 63]), 7)
    text = "\n\n".join(format_sample(x, t, t) for x, t in zip(X, T)).splitlines()
    assert [{k: v[1] for k, v in rows.items()} for rows in parse_sums(text)] == [
        {"x1": 37, "x2": 43, "t": 80, "y": 80}, {"x1": 1, "x2": 63, "t": 64, "y": 64}]
    check_sums(text, n_bits=7, count=2)


def test_running_out_of_memory_is_one_line(run, monkeypatch):
    """Sizes the options allow but the machine cannot hold (`eval counter --length 200000`
    on a small machine) ended in a MemoryError traceback (found by this stop's CLI hunter):
    one line and exit 2, as other failures."""
    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(commands, "train_counter", out_of_memory)
    error = one_line_error(run("train", "counter"))
    assert "out of memory" in error and "--samples" in error


def test_eval_adder_that_diverges_does_not_advise_an_option_only_the_counter_takes(run, tmp_path):
    """`eval adder` of weights that overflow advised "try shorter sequences (--length)",
    which `eval adder` refuses (found by this stop's CLI hunter)."""
    model = Adder(rng=np.random.default_rng(0))
    for p in model.parameters():
        p.data[...] = 1e308
    path = tmp_path / "huge.npz"
    checkpoints.save_adder(model, path, seed=0)
    error = one_line_error(run("eval", "adder", "--model", str(path)))
    assert "diverged" in error and "--length" not in error
