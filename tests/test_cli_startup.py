"""How the `minigrad` command and the package start: Ctrl-C while the command is still
importing ends it as it does later; the engine does not import threadpoolctl (only the
command does); in a checkout that is not installed, minigrad.models and minigrad.optim are
the folders models/ and optim/ beside minigrad/.
"""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120  # seconds; only a guard against a hang

# A real SIGINT, delivered while NumPy is being imported by the command's first import.
INTERRUPTED_IMPORT = """
import os, signal, sys

class InterruptNumpy:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "numpy":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, InterruptNumpy)
import minigrad_command
sys.argv = ["minigrad", "train", "counter"]
sys.exit(minigrad_command.main())
"""

# The checkout's folders, not an editable install's finder (CI installs one).
FROM_THE_CHECKOUT = """
import sys
sys.meta_path[:] = [finder for finder in sys.meta_path
                    if not getattr(finder, "__module__", "").startswith("__editable__")]
import minigrad.models.cli, minigrad.models.reference, minigrad.optim
print(minigrad.models.cli.__file__, minigrad.models.reference.__file__, minigrad.optim.__file__)
"""


def _python(code: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=cwd, timeout=TIMEOUT, check=False)


def test_ctrl_c_while_the_command_imports_exits_130_with_one_line():
    done = _python(INTERRUPTED_IMPORT)
    assert (done.returncode, done.stdout, done.stderr) == (130, "", "minigrad: interrupted\n")


def test_the_command_runs_from_its_entry_point():
    done = _python("import minigrad_command, sys; sys.argv = ['minigrad', '--version']; "
                   "sys.exit(minigrad_command.main())")
    assert done.returncode == 0 and done.stdout.startswith("minigrad ")


def test_the_engine_does_not_import_threadpoolctl():
    done = _python("import sys, minigrad as mg; mg.Tensor([1.0], requires_grad=True).sum()"
                   ".backward(); print(sorted(m for m in sys.modules if 'threadpool' in m))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_uninstalled_checkout_finds_models_and_optim_beside_minigrad():
    done = _python(FROM_THE_CHECKOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(ROOT / "models" / "cli.py"),
                                   str(ROOT / "models" / "reference" / "__init__.py"),
                                   str(ROOT / "optim" / "__init__.py")]



# A training step at the benchmark's case B (arrays of 665 kB) after the command started.
FAULTS_PER_STEP = """
import contextlib, io, resource
import numpy as np
from minigrad.models import cli
from minigrad.models.adder import Adder
from minigrad.models.presets import AdderConfig

with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):
    cli.main(["--help"])  # the command starts: what it does to the process is done
rng = np.random.default_rng(0)
model = Adder(AdderConfig(n_bits=13, n_states=32), rng=rng)
X = rng.integers(0, 2, size=(200, 13, 2)).astype(float)
T = rng.integers(0, 2, size=(200, 13, 1)).astype(float)
def step():
    model.zero_grad()
    model.loss(X, T).backward()
for _ in range(10):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc thresholds")
def test_the_command_keeps_a_training_step_from_faulting_its_memory_in_again(monkeypatch):
    """Under glibc's adaptive malloc thresholds every step at B gave its 665 kB arrays back
    to the kernel and faulted them in again (some 470 minor page faults a step); the
    command fixes the thresholds, as the benchmarks run, and a step reuses its memory."""
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    done = _python(FAULTS_PER_STEP)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 5
