"""mm1's cache folder: `$MM1_CACHE`, else `$XDG_CACHE_HOME/mm1`, else `~/.cache/mm1`.

What mm1 derives once and reuses across runs (the embedded corpus, warm-started encoders) lives here,
like the Hugging Face and open_clip caches: never in a user's data folder, never in the current folder,
so a command gives the same result wherever it runs.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    if os.environ.get("MM1_CACHE"):
        return Path(os.environ["MM1_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mm1"
