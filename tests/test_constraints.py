"""constraints.txt pins what CI tested: every install takes it, and it pins every
dependency pyproject.toml names, so a clean clone never installs the day's newest
release of something (a new deprecation warning is an error in these tests)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def pinned() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def requirements() -> list[Requirement]:
    """Every requirement pyproject.toml names, its extras' included (not itself)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        specs.extend(extra)
    own = canonicalize_name(project["name"])
    return [req for req in map(Requirement, specs) if canonicalize_name(req.name) != own]


def test_every_dependency_is_pinned_within_its_requirement() -> None:
    pins = pinned()
    for req in requirements():
        version = pins.get(canonicalize_name(req.name))
        assert version is not None, f"{req.name} is not in constraints.txt (make lock)"
        assert req.specifier.contains(version, prereleases=True), f"{version} does not satisfy {req}"


def test_every_install_takes_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "PIN = -c constraints.txt" in makefile
    installs = [line for line in makefile.splitlines() if "pip install" in line and not line.startswith("#")]
    assert installs
    for line in installs:
        assert "$(PIN)" in line or "--upgrade pip" in line, line
    for dockerfile in sorted(ROOT.glob("services/*/Dockerfile")):
        text = dockerfile.read_text(encoding="utf-8")
        assert "constraints.txt ./" in text, f"{dockerfile} does not copy constraints.txt"
        for line in re.findall(r"pip install [^\n\\]*", text):
            assert "-c constraints.txt" in line or "--index-url" in line, f"{dockerfile}: {line}"
