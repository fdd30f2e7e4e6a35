"""The shape ARCHITECTURE.md describes, kept: small modules and functions, Ray only in its runner,
no import-path edits, no references to documents outside the repository."""

from __future__ import annotations

import ast
import re

import pytest

from tests.project import ROOT

PACKAGES = ("pipeline", "teacher", "parsers", "schemas", "jobs")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _modules() -> list:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _rel(path) -> str:
    return str(path.relative_to(ROOT))


def test_modules_are_small() -> None:
    big = {_rel(p): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


def test_functions_are_small() -> None:
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{_rel(path)}:{node.name}"] = length
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_ray_is_imported_only_by_the_ray_runner() -> None:
    importers = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "ray" or n.startswith("ray.") for n in names):
                importers.append(_rel(path))
    assert all(re.fullmatch(r"pipeline/runners/ray_\w+\.py", m) for m in importers), importers


@pytest.mark.parametrize("pattern, why", [
    (r"sys\.path\.(insert|append)", "import-path edits: the package is installed, or Ray's working_dir is on PYTHONPATH"),
    (r"DESIGN\.md|\bissue \d+", "references to documents outside the repository: say it here or in ARCHITECTURE.md"),
])
def test_no_code_points_outside_the_repository(pattern: str, why: str) -> None:
    found = [_rel(p) for p in _modules() + sorted((ROOT / "bench").glob("*.py")) if re.search(pattern, p.read_text())]
    assert not found, f"{why}: {found}"
