"""Smoke test of the benchmark command: `python -m benchmarks --quick` runs, exits 0 and
prints the report's tables with the expected rows. No timing is asserted: the numbers of a
quick run mean nothing."""

import subprocess
import sys
from pathlib import Path

import minigrad

ROOT = Path(__file__).resolve().parent.parent


def run_benchmarks(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=300, check=False)


def rows_of(report: str, first_cell: str) -> list[str]:
    return [line for line in report.splitlines() if line.startswith(f"| {first_cell} |")]


def test_quick_run_prints_every_table():
    result = run_benchmarks("--quick")
    assert result.returncode == 0, result.stderr
    report = result.stdout
    for case in ("A", "B", "C", "D"):
        implementations = [row.split(" | ")[3] for row in rows_of(report, case)]
        assert implementations.count("hand-coded") == 2, case  # float64 and float32
        assert implementations.count("minigrad") == 2, case
    counter = rows_of(report, "counter")
    assert [row.split(" | ")[3] for row in counter] == ["hand-coded", "minigrad"]
    for heading in ("## One training step", "## Peak memory of one step",
                    "## Scaling with the sequence length T", "## Scaling with the batch",
                    "## Scaling with the state size", "## Overhead per op", "## Targets",
                    "## Machine and method"):
        assert heading in report
    for op in minigrad.OPS:
        assert len(rows_of(report, op)) == 1, op
    assert "≤ 2 " in report and "≤ 1.2 " in report and "≤ 2.5 " in report
    assert "CPU" in report and "NumPy" in report


def test_only_and_output(tmp_path):
    output = tmp_path / "results" / "quick.md"
    result = run_benchmarks("--quick", "--only", "a,ops", "--repeats", "2",
                            "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert output.read_text(encoding="utf-8") == result.stdout
    assert rows_of(result.stdout, "A") and not rows_of(result.stdout, "B")
    assert "## Overhead per op" in result.stdout
    assert "## Peak memory" not in result.stdout
    assert list(output.parent.iterdir()) == [output]  # no temporary file left behind


def test_unknown_section_is_refused():
    result = run_benchmarks("--quick", "--only", "Z")
    assert result.returncode == 2
    assert "unknown section" in result.stderr


def test_profiling_helper_runs():
    result = subprocess.run([sys.executable, "-m", "benchmarks.profiling", "A", "--steps", "3",
                             "--top", "5"], cwd=ROOT, text=True, capture_output=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "minigrad, 3 steps" in result.stdout and "tottime" in result.stdout
    result = subprocess.run([sys.executable, "-m", "benchmarks.profiling", "A", "--phases",
                             "--steps", "3"], cwd=ROOT, text=True, capture_output=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "| minigrad |" in result.stdout and "| hand-coded |" in result.stdout
