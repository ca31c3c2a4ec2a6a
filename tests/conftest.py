"""Shared test fixtures: where the real data lives, quiet TensorFlow."""
import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DEMO_DATA = REPO / "demo_data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """../shared/data beside the checkout (CI clones main with shared/ beside it)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_data() -> pathlib.Path:
    return DEMO_DATA


def pytest_collection_modifyitems(config, items):
    """Longest first: modules that are all pipeline runs (e2e), then those with a slow test,
    then the rest, each group in file order. `make test` runs pytest-xdist with
    --dist loadfile, which hands whole modules to the two workers in this order: starting
    the longest keeps both busy until the end."""
    modules: dict[str, list] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)

    def rank(module_items) -> int:
        if all(item.get_closest_marker("e2e") for item in module_items):
            return 0
        return 1 if any(item.get_closest_marker("e2e") or item.get_closest_marker("slow")
                        for item in module_items) else 2

    module_rank = {module: rank(module_items) for module, module_items in modules.items()}
    items.sort(key=lambda item: module_rank[item.nodeid.split("::", 1)[0]])
