"""A command's failure as data. When MM1_FAILURE_FILE is set, the exception that ends `mm1 ...` (or a
sweep's evaluation stage) is written there as JSON, {"type": ..., "message": ...}, so that a sweep
records why a run failed without parsing its log."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

ENV = "MM1_FAILURE_FILE"


def record(err: BaseException) -> None:
    path = os.environ.get(ENV)
    if isinstance(err, SystemExit) and err.code in (0, None):  # sys.exit(0) is how a command succeeds
        return
    if path:
        Path(path).write_text(json.dumps({"type": type(err).__name__, "message": str(err)}) + "\n")


def read(path: Path) -> Optional[dict]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
