"""Fresh copies of this checkout and fresh virtual environments for the tests that install mm1 the way a
user does (the wheel, the README's Quick start). No download: a new environment also sees this one's
packages (a .pth line), so pip finds mm1's dependencies installed."""
from __future__ import annotations

import importlib.util
import shutil
import site
import subprocess
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL_LEFT_OUT = {".git", ".venv", "runs", "data", "build", ".pytest_cache"}


def copy_checkout(dest: Path) -> Path:
    """The checkout's files (symbolic links kept), without environments, runs and build outputs."""
    def ignore(folder, names):
        left = TOP_LEVEL_LEFT_OUT if Path(folder) == ROOT else set()
        return {n for n in names if n in left or n == "__pycache__" or n.endswith(".egg-info")}

    return Path(shutil.copytree(ROOT, dest, symlinks=True, ignore=ignore))


def builds_offline() -> bool:
    """Whether pip can build mm1 here without build isolation, so with nothing to fetch: setuptools is
    installed (else pip fetches the build backend, as a user's `pip install .` does)."""
    return importlib.util.find_spec("setuptools") is not None


PIP = """#!{python}
import sys
from pip._internal.cli.main import main
sys.exit(main())
"""


def fresh_env(path: Path, with_pip: bool = False) -> Path:
    """A new virtual environment that also sees this environment's packages (a .pth line), not its mm1.
    with_pip: a `bin/pip` of its own, this environment's pip (and setuptools) working on the new one."""
    venv.create(path, with_pip=False)
    env_python = path / "bin" / "python"
    purelib = subprocess.run([str(env_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    ours = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    Path(purelib, "outer-env.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    if with_pip:
        (path / "bin" / "pip").write_text(PIP.format(python=env_python))
        (path / "bin" / "pip").chmod(0o755)
    return env_python
