"""The shape ARCHITECTURE.md describes, kept: the layers and import rules (the import-linter
contracts in pyproject.toml), small modules and functions, no import-path edits, no references to
documents outside the repository."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.project import ROOT

PACKAGES = ("pipeline", "teacher", "parsers", "schemas", "storage", "jobs")
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


def test_import_contracts_hold() -> None:
    """jobs > pipeline > teacher | parsers > schemas | storage; Ray only in pipeline/runners/;
    stages import no runner; io imports no stage; teacher backends import no other backend."""
    run = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache", "--config",
                          str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert re.search(r"Contracts: \d+ kept, 0 broken", run.stdout), run.stdout[-2000:]


def test_every_package_is_in_the_contracts() -> None:
    """A new top-level package must take its place in the layers, or nothing checks its imports."""
    config = (ROOT / "pyproject.toml").read_text()
    roots = re.search(r"root_packages = \[([^\]]*)\]", config).group(1)
    assert sorted(re.findall(r'"(\w+)"', roots)) == sorted(PACKAGES)


@pytest.mark.parametrize("pattern, why", [
    (r"sys\.path\.(insert|append)", "import-path edits: the package is installed, or Ray's working_dir is on PYTHONPATH"),
    (r"DESIGN\.md|\bissue \d+", "references to documents outside the repository: say it here or in ARCHITECTURE.md"),
])
def test_no_code_points_outside_the_repository(pattern: str, why: str) -> None:
    found = [_rel(p) for p in _modules() + sorted((ROOT / "bench").glob("*.py")) if re.search(pattern, p.read_text())]
    assert not found, f"{why}: {found}"


def test_console_scripts_and_tool_modules_are_the_interface() -> None:
    """Every console script names a callable that exists, and every tool runs as
    `python -m pipeline.tools.X` (a `__main__` guard, or a package's `__main__.py`)."""
    scripts = re.search(r"\[project\.scripts\]\n(.*?)\n\n", (ROOT / "pyproject.toml").read_text(), re.S).group(1)
    for name, target in re.findall(r'^([\w-]+) = "([\w.:]+)"$', scripts, re.M):
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr, None)), f"{name} -> {target}"
    tools = ROOT / "pipeline" / "tools"
    runnable = [p for p in tools.glob("*.py") if 'if __name__ == "__main__":' in p.read_text()]
    runnable += [p for p in tools.glob("*/__main__.py")]
    names = {p.parent.name if p.name == "__main__.py" else p.stem for p in runnable}
    assert {"verify", "inspect_output", "gallery", "export", "evaluate", "sample_shards"} <= names, names
