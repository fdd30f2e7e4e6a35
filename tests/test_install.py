"""The lock matches pyproject.toml, and the README gives the command that regenerates it.

`scripts/test.sh` installs exactly the lock (`--no-deps`) and runs `pip check`, which fails on a
dependency the lock lacks. These tests catch what `pip check` cannot see: a range in
pyproject.toml that the locked version no longer satisfies, and the two locks disagreeing.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.project import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

LOCKS = {"runtime": ROOT / "requirements" / "lock.txt", "dev": ROOT / "requirements" / "lock-dev.txt"}
PYTHONS = ("3.10", "3.11", "3.12")


def _locked(path: Path) -> list[tuple[str, Version, Marker | None]]:
    """(name, version, marker) of every pin in a lock file written by `uv pip compile`."""
    pins = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, _, marker = line.partition(";")
        name, _, version = spec.strip().partition("==")
        assert version, f"{path.name}: {line!r} is not an exact pin"
        pins.append((canonicalize_name(name), Version(version.strip()), Marker(marker) if marker.strip() else None))
    return pins


def _version_for(pins, name: str, python: str) -> Version | None:
    env = {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
    found = [v for n, v, m in pins if n == name and (m is None or m.evaluate(env))]
    assert len(found) <= 1, f"{name} is pinned twice for Python {python}"
    return found[0] if found else None


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("which", ["runtime", "dev"])
def test_every_dependency_is_locked_within_its_range(which: str, python: str) -> None:
    project = _project()
    wanted = [Requirement(r) for r in project["dependencies"]]
    if which == "dev":
        wanted += [Requirement(r) for r in project["optional-dependencies"]["dev"]]
    pins = _locked(LOCKS[which])
    for req in wanted:
        version = _version_for(pins, canonicalize_name(req.name), python)
        assert version is not None, f"{req.name} is not in {LOCKS[which].name} for Python {python}: run scripts/lock.sh"
        assert req.specifier.contains(version, prereleases=True), (
            f"{LOCKS[which].name} pins {req.name}=={version}, outside pyproject.toml's {req}: run scripts/lock.sh")


def test_the_dev_lock_has_the_runtime_lock_versions() -> None:
    dev = {(n, str(m)): v for n, v, m in _locked(LOCKS["dev"])}
    for name, version, marker in _locked(LOCKS["runtime"]):
        assert dev.get((name, str(marker))) == version, f"{name} ({marker}): lock.txt {version}, lock-dev.txt {dev.get((name, str(marker)))}"


def test_the_lock_takes_the_cpu_build_of_torch() -> None:
    """No CUDA libraries in the lock: a CPU machine installs torch 2.13.0's CPU build."""
    names = {n for n, _, _ in _locked(LOCKS["dev"])}
    assert not {n for n in names if n.startswith(("nvidia-", "cuda-"))}
    assert _version_for(_locked(LOCKS["runtime"]), "torch", "3.11") == Version("2.13.0")


def test_readme_gives_the_lock_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/lock.sh" in readme
    script = (ROOT / "scripts" / "lock.sh").read_text()
    for which in LOCKS.values():
        header = which.read_text().splitlines()[1].strip("# ").strip()
        command = re.sub(r"\s+", " ", header.replace(f"-o requirements/{which.name}", ""))
        flags = [f for f in command.split() if f.startswith("-") and f != "-c"]
        assert all(f in script for f in flags), f"{which.name} was not made by scripts/lock.sh: {header}"


def test_the_docs_have_no_placeholders_left() -> None:
    """Figures in the README and BENCHMARKS.md are measured ones, never a TODO or a FIGURE_TIME token."""
    for doc in ("README.md", "BENCHMARKS.md", "ARCHITECTURE.md"):
        text = (ROOT / doc).read_text()
        left = re.findall(r"\b(?:TODO|TBD|XXX|[A-Z]+_(?:TIME|OUTPUT|FIGURE|RESULT)S?)\b", text)
        assert not left, f"{doc} still has {left}"
