"""The package installs the same everywhere: no symbolic links in the repository (a checkout
without them, Windows' default, installs the same files); models/ and optim/ install as
minigrad.models and minigrad.optim, every subpackage included; the MIT license as an SPDX
expression and a LICENSE file; a distribution name of this project's own; the command's
entry point; and, built for real, a wheel that holds the package and installs a working
command, and an sdist without tests it could not run.
"""

import os
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SOURCES = {"minigrad": "minigrad", "minigrad.models": "models", "minigrad.optim": "optim"}


def _tracked_files() -> list[tuple[str, str]]:
    """(git mode, path) of every file in the repository, or of the package folders when this
    is not a git checkout."""
    done = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    if done.returncode == 0 and done.stdout:
        return [(line.split()[0], line.split("\t", 1)[1]) for line in done.stdout.splitlines()]
    return [("120000" if path.is_symlink() else "100644", str(path.relative_to(ROOT)))
            for folder in SOURCES.values() for path in (ROOT / folder).rglob("*")]


def _packages_on_disk() -> set[str]:
    """Every package the source folders hold, by its installed name."""
    found = set()
    for name, folder in SOURCES.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *parts)))
    return found


def test_the_repository_holds_no_symbolic_links():
    links = [path for mode, path in _tracked_files() if mode == "120000"]
    assert links == []


def test_every_package_folder_is_installed_under_its_name():
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"minigrad.models": "models", "minigrad.optim": "optim"}
    assert set(setuptools["packages"]) == _packages_on_disk()
    assert PYPROJECT["project"]["scripts"] == {"minigrad": "minigrad_command:main"}
    assert setuptools["py-modules"] == ["minigrad_command"]


def test_the_license_is_mit_in_spdx_form_with_its_text():
    assert PYPROJECT["project"]["license"] == "MIT"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "WITHOUT WARRANTY OF ANY KIND" in text


def test_the_distribution_name_is_ours_and_the_readme_installs_it():
    name = PYPROJECT["project"]["name"]
    assert name == "minigrad-rnn"  # "minigrad" on the public index is another project
    assert f"`{name}`" in (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The sdist and the wheel, built as `python -m build` builds them (the wheel from the
    sdist)."""
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return next(out.glob("*.tar.gz")), next(out.glob("*.whl"))


def _sources() -> dict[str, str]:
    """{path in the wheel: path in the repository} of every Python file the package has."""
    files = {"minigrad_command.py": "minigrad_command.py"}
    for name, folder in SOURCES.items():
        for path in (ROOT / folder).rglob("*.py"):
            inside = path.relative_to(ROOT / folder).as_posix()
            files[f"{name.replace('.', '/')}/{inside}"] = path.relative_to(ROOT).as_posix()
    return files


@pytest.mark.slow
def test_the_wheel_holds_the_package_and_the_license(built):
    _, wheel = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    python_files = {n for n in names if n.endswith(".py")}
    assert python_files == set(_sources())
    assert "minigrad/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    fields = metadata.decode().splitlines()
    assert "Name: minigrad-rnn" in fields and "License-Expression: MIT" in fields


@pytest.mark.slow
def test_the_sdist_holds_no_tests_it_could_not_run(built):
    sdist, _ = built
    with tarfile.open(sdist) as archive:
        top = {Path(name).parts[1] for name in archive.getnames() if len(Path(name).parts) > 1}
    assert {"minigrad", "models", "optim", "LICENSE", "README.md", "pyproject.toml"} <= top
    assert not top & {"tests", "benchmarks", ".ci"}


@pytest.mark.slow
def test_the_installed_wheel_runs_the_command_from_anywhere(built, tmp_path):
    _, wheel = built
    venv = tmp_path / "venv"
    # (no PYTHONPATH: a checkout on it would be taken for the wheel, by pip and by Python)
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300,
                   env=environment)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    # The wheel's dependencies (NumPy, threadpoolctl) from the environment running the tests,
    # a virtual one or not (--system-site-packages would see only the base interpreter's).
    new_site = subprocess.run([str(python), "-c", "import sysconfig; "
                               "print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True,
                              env=environment).stdout.strip()
    ours = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    Path(new_site, "running_tests.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    str(wheel)], check=True, timeout=300, capture_output=True, env=environment)
    where = subprocess.run([str(python), "-c", "import minigrad.models.cli, minigrad.optim; "
                            "print(minigrad.models.cli.__file__, minigrad.optim.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True,
                           env=environment)
    assert all(str(venv) in path for path in where.stdout.split())
    done = subprocess.run([str(bin_dir / "minigrad"), "train", "counter", "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=environment)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.startswith("w_x = ")
