"""Imports point down: core <- trainer <- components / pipeline <- serving <- CLI / API.

Every .py file of the project's packages is parsed with `ast` (nothing is
imported), and every import in it, function-local ones included, is mapped
to the layer of the project module it names. An import from a lower layer
into a higher one fails the test, named by file:line. Third-party imports are
not checked; benchmarks/ and tests/ are not part of the layering.

The package `facealign` is the top layer (the CLI and the Python API) and its
subpackage `facealign.core` the bottom one, so the rule has no exceptions.
Within any layer, a module's private names (`_name`) are its own: importing
them from another project module fails as well.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("facealign", "trainer", "components", "pipeline", "serving")
LAYERS = ("core", "trainer", "components/pipeline", "serving", "cli/api")
TOP = len(LAYERS) - 1


def layer_of(module: str) -> int | None:
    """The layer (index into LAYERS) of a dotted project module name; None outside the project."""
    parts = module.split(".")
    root = parts[0]
    if root == "facealign":
        return 0 if len(parts) > 1 and parts[1] == "core" else TOP
    return {"trainer": 1, "components": 2, "pipeline": 2, "serving": 3}.get(root)


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> list[pathlib.Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def _is_module(dotted: str) -> bool:
    path = REPO.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(tree: ast.AST, this_module: str, is_package: bool):
    """(line, module, top_level) for every import in the tree, function-local ones included.

    `from a import b` names a.b when that is a module, else a. Relative imports
    are resolved against this module's package. importlib.import_module("...")
    with a literal name counts as an import as well.
    """
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def top_level(node) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                return False
        return True

    package = this_module if is_package else this_module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, top_level(node)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(part for part in [*anchor, base] if part)
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                yield node.lineno, full if _is_module(full) else base, top_level(node)
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name)
                       and node.func.id in ("import_module", "__import__")))):
            yield node.lineno, node.args[0].value, top_level(node)


def file_layer(path: pathlib.Path) -> int:
    layer = layer_of(module_name(path))
    assert layer is not None, path.relative_to(REPO).as_posix()
    return layer


def violations() -> list[str]:
    found = []
    for path in source_files():
        relative = path.relative_to(REPO).as_posix()
        source_layer = file_layer(path)
        try:
            tree = ast.parse(path.read_text(), filename=relative)
        except SyntaxError as exc:
            found.append(f"{relative}:{exc.lineno}: cannot be parsed ({exc.msg})")
            continue
        for line, module, _ in imported_modules(tree, module_name(path),
                                                        path.name == "__init__.py"):
            target = layer_of(module)
            if target is None:
                continue
            if target > source_layer:
                found.append(f"{relative}:{line}: {LAYERS[source_layer]} imports {module} "
                             f"({LAYERS[target]})")
    return found


def test_every_project_module_has_a_layer():
    files = source_files()
    assert len(files) > 30
    layers = {path.relative_to(REPO).as_posix(): LAYERS[file_layer(path)] for path in files}
    assert layers["facealign/core/metrics.py"] == "core"
    assert layers["facealign/__init__.py"] == "cli/api"
    assert layers["facealign/cli.py"] == "cli/api"
    assert layers["facealign/commands/evaluate.py"] == "cli/api"
    assert layers["trainer/run.py"] == "trainer"
    assert layers["components/landmark_evaluator/executor.py"] == "components/pipeline"
    assert layers["pipeline/pipeline.py"] == "components/pipeline"
    assert layers["serving/server.py"] == "serving"


def test_function_local_and_relative_imports_are_seen():
    tree = ast.parse("import numpy\n"
                     "from facealign.core import metrics\n"
                     "def f():\n"
                     "    from serving import server\n"
                     "    import importlib\n"
                     "    importlib.import_module('facealign.commands.data')\n"
                     "from . import geometry\n")
    found = sorted(imported_modules(tree, "facealign.core.crop", is_package=False))
    assert found == [(1, "numpy", True), (2, "facealign.core.metrics", True),
                     (4, "serving.server", False), (5, "importlib", False),
                     (6, "facealign.commands.data", False), (7, "facealign.core.geometry", True)]


def test_imports_point_down():
    found = violations()
    if found:
        pytest.fail(f"{len(found)} finding(s) against the layering "
                    f"({' <- '.join(LAYERS)}):\n  " + "\n  ".join(found), pytrace=False)


def test_no_module_imports_another_modules_private_names():
    found = []
    for path in source_files():
        relative = path.relative_to(REPO).as_posix()
        try:
            tree = ast.parse(path.read_text(), filename=relative)
        except SyntaxError:
            continue  # reported by test_imports_point_down
        for node in ast.walk(tree):
            if (isinstance(node, ast.ImportFrom) and not node.level and node.module
                    and layer_of(node.module) is not None):
                found += [f"{relative}:{node.lineno}: imports {node.module}.{alias.name}"
                          for alias in node.names
                          if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not found, "private names imported from other modules:\n  " + "\n  ".join(found)
