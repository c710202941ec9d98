"""Adding an op is one entry in minigrad/ops.py and nothing else.

The test appends a `softplus` entry to a copy of ops.py, and in a fresh interpreter checks
that the op is exported and that the table-driven tests (gradient in float64 and float32,
wrong types, no warnings, random compositions) take it up.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SOFTPLUS = '''

softplus = defop("softplus", lambda x: np.logaddexp(0.0, x),
                 (lambda g, out, x: g * _sigmoid(x),), Domain("unary"), saves="inputs")
'''

CHECK_EXPORT = """
import numpy as np
import minigrad as mg
assert mg.softplus is mg.OPS["softplus"].function and "softplus" in mg.__all__
x = mg.Tensor([0.0, 2.0], requires_grad=True)
mg.softplus(x).sum().backward()
np.testing.assert_allclose(x.grad, 1 / (1 + np.exp(-x.data)), rtol=1e-15)
print("exported")
"""


@pytest.fixture(scope="module")
def tree_with_softplus(tmp_path_factory):
    tree = tmp_path_factory.mktemp("added_op")
    shutil.copytree(ROOT / "minigrad", tree / "minigrad",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "tests").mkdir()
    for name in ("conftest.py", "test_ops.py", "test_errors.py", "test_gradients.py"):
        shutil.copy(ROOT / "tests" / name, tree / "tests" / name)
    with open(tree / "minigrad" / "ops.py", "a") as ops:
        ops.write(SOFTPLUS)
    return tree


def _run(tree, *args):
    return subprocess.run([sys.executable, *args], cwd=tree, capture_output=True, text=True,
                          timeout=600)


def test_the_new_op_is_exported(tree_with_softplus):
    done = _run(tree_with_softplus, "-c", CHECK_EXPORT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "exported"


def test_the_table_driven_tests_take_the_new_op_up(tree_with_softplus):
    done = _run(tree_with_softplus, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                "-k", "softplus or random_compositions", "tests")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # test_ops: the gradient in float64 and float32, test_errors: four wrong types and the
    # warnings check, test_gradients: the compositions draw from every unary op.
    passed = int(done.stdout.strip().splitlines()[-1].split(" passed")[0].split()[-1].strip("="))
    assert passed >= 8, done.stdout[-2000:]
    for test in ("test_gradient_matches_numerical[softplus]",
                 "test_float32_in_float32_out[softplus]",
                 "test_no_warnings_on_drawn_inputs[softplus]"):
        assert f"{test} PASSED" in done.stdout, test
