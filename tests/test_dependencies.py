"""pyproject.toml pins transformers to the versions this suite passes with: the suite runs with one of them."""
from __future__ import annotations

import pytest
import transformers
from packaging.requirements import Requirement

from tests.conftest import ROOT


def test_installed_transformers_is_inside_the_pinned_range():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [Requirement(d) for d in deps if Requirement(d).name == "transformers"]
    assert pin.specifier.contains(transformers.__version__), (pin, transformers.__version__)
