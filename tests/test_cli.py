"""The `minigrad` command, end to end in a subprocess: each command exits 0 and prints what
it promises; bad option values give a one-line error and exit code 2; `--quiet` prints only
the results; the sums it prints are right in the layout of `models.data.format_sample`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # seconds; only a guard against a hang, never an assertion on speed


def minigrad(*args: str, script: str | None = None) -> subprocess.CompletedProcess:
    """Run `python -m models.cli ARGS` (or the console script at `script`)."""
    command = [script] if script else [sys.executable, "-m", "models.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=TIMEOUT, check=False)


def succeeded(result: subprocess.CompletedProcess) -> list[str]:
    """The stdout lines of a run that must have exited 0 with nothing on stderr."""
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "\r" not in result.stdout  # no progress bar when stdout is not a terminal
    return result.stdout.splitlines()


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


def test_train_counter():
    lines = succeeded(minigrad("train", "counter"))
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


def test_train_counter_quiet_prints_only_the_results():
    lines = succeeded(minigrad("train", "counter", "--quiet"))
    assert len(lines) == 2
    assert lines[0].startswith("w_x = ") and lines[1].startswith("count of ")


# --- train adder ----------------------------------------------------------------------------


def test_train_adder_small_by_default():
    lines = succeeded(minigrad("train", "adder"))
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


def test_train_adder_quiet_prints_only_the_results():
    lines = succeeded(minigrad("train", "adder", "--quiet", "--test-samples", "200"))
    check_sums(lines, n_bits=7)
    assert held_out(lines) == (100.0, 100.0, 200, 1)
    # Five sums of five lines with a blank line after each, then the accuracy: nothing else.
    assert len(lines) == 5 * 6 + 1
    assert not any(line.startswith(("Training", "seed", "  epoch")) for line in lines)


def test_train_adder_keras_shortened():
    # 3000 of the preset's 100,000 steps: too few to learn, but every part of the command
    # runs (its loss is reported every 10,000 steps and at the last).
    lines = succeeded(minigrad("train", "adder", "--preset", "keras", "--samples", "3000"))
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


def test_train_adder_restarts_from_a_fresh_initialisation():
    # Seed 0 ends below 100% (SPEC 2: not every start converges); the restart, seed 1, does.
    lines = succeeded(minigrad("train", "adder", "--seed", "0", "--restarts", "2"))
    assert lines.count("below 100%: restarting from a fresh initialisation") == 1
    assert [line.split(":")[0] for line in lines if line.startswith("seed ")] == ["seed 0",
                                                                                  "seed 1"]
    check_sums(lines, n_bits=7)
    assert held_out(lines) == (100.0, 100.0, 1000, 1)


def test_console_script():
    script = shutil.which("minigrad")
    if script is None:
        pytest.skip("the minigrad console script is not installed (pip install -e .)")
    lines = succeeded(minigrad("train", "adder", "--quiet", script=script))
    check_sums(lines, n_bits=7)
    assert held_out(lines)[:2] == (100.0, 100.0)


# --- compare --------------------------------------------------------------------------------


def check_compare(lines: list[str], title: str, names: list[str]) -> None:
    assert lines[0] == f"{title}: forward + backward on the same parameters and data"
    engine, hand = map(float, re.fullmatch(r"  loss       engine (\S+)   hand-coded (\S+)",
                                           lines[1]).groups())
    assert engine == pytest.approx(hand, rel=1e-10)
    assert len(lines) == 3 + len(names)
    for name, line in zip(names, lines[2:-1]):
        match = re.fullmatch(rf"  {re.escape(name)} +max \|grad difference\| (\S+)  "
                             rf"\(largest \|grad\| (\S+)\)", line)
        assert match, line
        difference, largest = map(float, match.groups())
        assert largest > 0 and difference <= 1e-10 * largest
    match = re.fullmatch(r"  time/step  engine (\S+) us   hand-coded (\S+) us   ratio (\S+) "
                         r"\(median of 20, alternating\)", lines[-1])
    assert match, lines[-1]
    assert all(float(value) > 0 for value in match.groups())


def test_compare_counter():
    lines = succeeded(minigrad("compare", "counter", "--repeats", "20"))
    check_compare(lines, "counter, 20 sequences of 10", ["w_x", "w_rec"])


@pytest.mark.parametrize("preset", ["small", "keras"])
def test_compare_adder(preset):
    lines = succeeded(minigrad("compare", "adder", "--preset", preset, "--repeats", "20",
                               "--batch-size", "50"))
    names = list(PRESETS[preset][0].parameter_shapes())
    check_compare(lines, f"{preset} adder, batch of 50", names)


# --- errors and help ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, option",
    [
        (["train", "adder", "--lr", "-1"], "--lr"),
        (["train", "adder", "--lr", "nan"], "--lr"),
        (["train", "adder", "--preset", "big"], "--preset"),
        (["train", "adder", "--epochs", "0"], "--epochs"),
        (["train", "adder", "--seed", "x"], "--seed"),
        (["train", "counter", "--seed", "x"], "--seed"),
        (["train", "counter", "--iterations", "-5"], "--iterations"),
        (["compare", "adder", "--preset", "big"], "--preset"),
        (["compare", "tensor"], "model"),
        (["train"], "model"),
    ],
)
def test_bad_values_give_one_line_and_exit_code_2(args, option):
    result = minigrad(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("minigrad") and "error:" in lines[0] and option in lines[0]


def test_a_bad_combination_is_one_line_too():
    # Caught after parsing: a batch larger than the data.
    result = minigrad("train", "adder", "--samples", "50", "--batch-size", "100")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "minigrad: error: TrainConfig.batch_size must be in [1, 50], got 100"]


@pytest.mark.parametrize("args, options", [
    (["train", "counter"], ["--iterations", "--w-x", "--w-rec", "--seed", "--quiet"]),
    (["train", "adder"], ["--preset", "--epochs", "--batch-size", "--samples", "--lr",
                          "--restarts", "--test-samples", "--seed", "--quiet"]),
    (["compare"], ["--preset", "--batch-size", "--repeats", "--seed"]),
])
def test_help_lists_the_options(args, options):
    lines = succeeded(minigrad(*args, "--help"))
    text = "\n".join(lines)
    for option in options:
        assert option in text


def test_printed_sums_match_format_sample():
    # The parser above reads exactly what models.data.format_sample writes.
    from models.data import encode_sum, format_sample

    X, T = encode_sum(np.array([37, 1]), np.array([43, 63]), 7)
    text = "\n\n".join(format_sample(x, t, t) for x, t in zip(X, T)).splitlines()
    assert [{k: v[1] for k, v in rows.items()} for rows in parse_sums(text)] == [
        {"x1": 37, "x2": 43, "t": 80, "y": 80}, {"x1": 1, "x2": 63, "t": 64, "y": 64}]
    check_sums(text, n_bits=7, count=2)
