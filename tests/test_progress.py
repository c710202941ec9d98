"""The progress bar: drawn on a terminal (a pseudo-terminal here), never into a pipe, and not
with --quiet, which also drops the epoch lines. No assertion depends on timing."""

import io
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from minigrad.models.progress import ProgressBar

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-m", "models.cli", "train", "adder"]


def run_in_terminal(argv):
    """Run `argv` with its stdout on a pseudo-terminal; return (exit code, output)."""
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE, cwd=ROOT)
    finally:
        os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 120)
            if not ready:
                process.kill()
                raise AssertionError("no output for 120 s")
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    stderr = process.stderr.read()
    process.stderr.close()
    code = process.wait(timeout=120)
    assert stderr == b"", stderr
    return code, b"".join(chunks).decode()


@pytest.mark.skipif(not hasattr(pty, "openpty"), reason="needs a pseudo-terminal")
def test_a_terminal_shows_the_bar_with_loss_and_steps_per_second():
    code, out = run_in_terminal(COMMAND)
    assert code == 0
    assert "steps/s" in out and "loss " in out
    assert "seed 1 [" in out and "100/100" in out  # drawn at the last step, whatever the speed
    assert "\r\x1b[K" in out  # cleared before each log line and at the end
    assert "epoch 5/5  mean loss" in out
    assert "held-out accuracy: 100.00% of bits" in out


@pytest.mark.skipif(not hasattr(pty, "openpty"), reason="needs a pseudo-terminal")
def test_quiet_on_a_terminal_shows_neither_bar_nor_epochs():
    code, out = run_in_terminal(COMMAND + ["--quiet"])
    assert code == 0
    assert "steps/s" not in out and "\x1b[K" not in out
    assert "epoch" not in out and "Training the" not in out
    assert "held-out accuracy: 100.00% of bits" in out


def test_a_pipe_gets_the_log_but_no_bar():
    result = subprocess.run(COMMAND, capture_output=True, text=True, cwd=ROOT, timeout=120,
                            check=False)
    assert result.returncode == 0 and result.stderr == ""
    assert "steps/s" not in result.stdout and "\r" not in result.stdout
    assert "\x1b" not in result.stdout
    assert "  epoch 1/5  mean loss" in result.stdout
    assert "held-out accuracy: 100.00% of bits" in result.stdout


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_bar_draws_and_clears_on_a_terminal():
    stream = Terminal()
    with ProgressBar(4, "demo", stream=stream, width=8, interval=0.0) as bar:
        bar.update(1, 0.5)
        bar.print("a log line")
        bar.update(4, 0.25)
    text = stream.getvalue()
    assert "\rdemo [##......] 1/4  loss 0.5  " in text
    assert "\rdemo [########] 4/4  loss 0.25  " in text
    assert text.count("steps/s") == 3  # drawn, redrawn under the log line, drawn at the end
    assert "\r\x1b[Ka log line\n" in text  # the bar is cleared before the line
    assert text.endswith("\r\x1b[K")  # and when the block ends


def test_the_last_step_is_drawn_however_soon_it_comes():
    stream = Terminal()
    bar = ProgressBar(3, stream=stream, interval=3600.0)
    bar.update(1, 1.0)  # within the interval: not drawn
    assert stream.getvalue() == ""
    bar.update(3, 0.5)
    assert "3/3" in stream.getvalue()


@pytest.mark.parametrize("stream, quiet", [(io.StringIO(), False), (Terminal(), True)])
def test_no_bar_into_a_file_or_when_quiet(stream, quiet):
    bar = ProgressBar(2, "demo", stream=stream, quiet=quiet, interval=0.0)
    callback = bar.chain()
    with bar:
        callback(type("Progress", (), {"step": 1, "loss": 0.3})())
        bar.print("a log line")
        callback(type("Progress", (), {"step": 2, "loss": 0.1})())
    assert stream.getvalue() == ("" if quiet else "a log line\n")


def test_a_line_printed_by_a_chained_callback_redraws_the_bar_at_its_step():
    # The bar under an epoch line showed the step before (`chain` ran the callback, which
    # printed and redrew, before it moved the bar).
    stream = Terminal()
    bar = ProgressBar(4, "demo", stream=stream, width=4, interval=3600.0)
    callback = bar.chain(lambda p: bar.print(f"epoch at step {p.step}") if p.step == 2 else None)
    for step in (1, 2):
        callback(type("Progress", (), {"step": step, "loss": 0.5})())
    after_the_line = stream.getvalue().split("epoch at step 2\n")[1]
    assert after_the_line.startswith("\rdemo [##..] 2/4  loss 0.5  ")
