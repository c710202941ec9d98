"""The README is the front door: its Python examples run, and CI runs its test command."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_python_example_in_the_readme_runs():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```\n(python -m pip install[^\n]*)\n```", README)
    assert len(commands) == 2, commands  # install and train; install and test
    train, test = commands
    assert "minigrad train adder" in train
    assert test in (ROOT / ".ci" / "run").read_text()
