"""What produced a run: library versions, the git commit of mm1 (when there is one) and the data it read."""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from mm1.config.schema import Config
from mm1.data.synth.write import VERSION as SYNTH_VERSION

PACKAGES = ("mm1", "torch", "transformers", "open_clip_torch", "webdataset", "accelerate")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    """Output of a git command in mm1's own checkout; None outside one (an installed wheel) or without git."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit() -> str | None:
    return _git("rev-parse", "HEAD") or None


RESULT_PATHS = ("mm1", "recipes", "ablations", "eval", "pyproject.toml")  # what a run's results depend on


def git_dirty() -> bool | None:
    """True when tracked code or configs differ from the commit: the run's code is not exactly `git_commit`
    (changes to docs or tests do not count)."""
    status = _git("status", "--porcelain", "--untracked-files=no", "--", *RESULT_PATHS)
    return None if status is None else bool(status)


def data_provenance(cfg: Config) -> dict:
    """The data folder, and for the embedded corpus the version of the generator that wrote it (a result on
    the synthetic benchmark is only comparable with results on the same version)."""
    out: dict = {"root": str(cfg.data.root)}
    if cfg.data.synth is not None:
        out["synthetic_version"] = SYNTH_VERSION
    return out


def provenance(cfg: Config) -> dict:
    return {
        "versions": {name: _version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "data": data_provenance(cfg),
    }
