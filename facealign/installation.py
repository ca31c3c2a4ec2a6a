"""The project's other top-level packages, checked to be this project's own.

`pip install` puts `trainer`, `serving`, `components` and `pipeline` beside
`facealign` in site-packages (README, "Layout": why they keep those names).
Another distribution with a package of one of those names would be imported
in their place, and fail far from the cause; this says so at the start.
"""
from __future__ import annotations

import importlib.util
import pathlib

PROJECT_PACKAGES = ("trainer", "serving", "components", "pipeline")


def _folder(name: str) -> pathlib.Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(list(spec.submodule_search_locations)[0]).resolve()


def foreign_packages() -> list[str]:
    """'name (found at FOLDER)' for each project package missing or found outside the folder
    that holds `facealign` (an install or a checkout keeps them side by side)."""
    home = pathlib.Path(__file__).resolve().parent.parent
    problems = []
    for name in PROJECT_PACKAGES:
        folder = _folder(name)
        if folder is None or folder.parent != home:
            problems.append(f"{name} (found at {folder or 'nowhere'}; expected {home / name})")
    return problems


def check_packages() -> None:
    """ImportError naming every project package that another distribution shadows."""
    problems = foreign_packages()
    if problems:
        raise ImportError("facealign's own packages are shadowed or missing: "
                          + "; ".join(problems) + ". Another installed distribution or a "
                          "folder on PYTHONPATH uses the same top-level name; install "
                          "facealign in an environment of its own")
