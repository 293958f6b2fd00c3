"""The files mm1 ships beside its code: recipes, eval task specs and ablation grids.

In a checkout they live at the top of the repository (recipes/, eval/, ablations/), where people read and
edit them; recipes/, eval/ and ablations/ here are symbolic links to those folders, and building a wheel
copies the files in as package data (pyproject.toml), so an installed mm1 finds them from any folder.
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
RECIPES = HERE / "recipes"
TASKS = HERE / "eval"
GRIDS = HERE / "ablations"


def shipped_recipe(path: str | Path) -> Path | None:
    """The shipped recipe that `path` names when no such file exists: `tiny`, `tiny.yaml` or
    `recipes/tiny.yaml` (as the README writes it, from any folder); None otherwise."""
    path = Path(path)
    if path.exists() or str(path.parent) not in (".", "recipes"):
        return None
    candidate = RECIPES / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    return candidate if candidate.is_file() else None


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))
