"""What produced a run: library versions and the git commit of mm1, when there is one."""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("mm1", "torch", "transformers", "open_clip_torch", "webdataset", "accelerate")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance() -> dict:
    return {
        "versions": {name: _version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "git_commit": git_commit(),
    }
