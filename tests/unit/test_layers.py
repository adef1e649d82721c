"""The layer rules (CONTRIBUTING.md), checked by reading every module's imports with `ast`.

Every import counts, at module level or inside a function: a lazy import crosses a layer as
surely as one at the top. Tests, benchmarks and scripts are exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]

# package -> the project packages it may import (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "broker": frozenset({"core"}),
    "simulator": frozenset({"core"}),
    "models": frozenset({"core"}),
    "streaming": frozenset({"core", "models"}),
    "apps": frozenset({"core", "broker", "simulator", "models", "streaming"}),
}
EXEMPT = {"tests", "benchmarks", "scripts", "docker"}


def project_packages(root: Path = REPO) -> set[str]:
    """Top-level folders of the checkout that are Python packages."""
    return {p.parent.name for p in root.glob("*/__init__.py")}


def imported_modules(path: Path, root: Path = REPO) -> set[str]:
    """Every module `path` imports, anywhere in it; relative imports resolved."""
    package = list(path.relative_to(root).parent.parts)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            found.add(".".join([*base, *([node.module] if node.module else [])]))
    return found


def layer_violations(package: str, root: Path = REPO) -> list[str]:
    """`file: imports module` for each import of a project package `package` may not use."""
    projects = project_packages(root)
    allowed = ALLOWED[package] | {package}
    problems = []
    for path in sorted((root / package).rglob("*.py")):
        for name in sorted(imported_modules(path, root)):
            top = name.split(".")[0]
            if top in projects and top not in allowed:
                problems.append(f"{path.relative_to(root)}: imports {name}")
    return problems


def test_every_package_has_a_layer() -> None:
    unknown = project_packages() - set(ALLOWED) - EXEMPT
    assert not unknown, f"give {sorted(unknown)} a row in ALLOWED (and CONTRIBUTING.md)"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below_it(package: str) -> None:
    assert layer_violations(package) == []


def test_lazy_and_relative_imports_count(tmp_path: Path) -> None:
    for name in ("streaming", "streaming/battery", "simulator", "models"):
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "streaming" / "battery" / "flow.py").write_text(
        "import os\n"
        "from ..parsing import parse_messages\n"
        "from . import history\n"
        "from models.features import windows_from_days\n"
        "def start():\n"
        "    from simulator.run import run_simulation\n",
        encoding="utf-8",
    )
    flow = tmp_path / "streaming" / "battery" / "flow.py"
    assert imported_modules(flow, tmp_path) == {
        "os",
        "streaming.parsing",
        "streaming.battery",
        "models.features",
        "simulator.run",
    }
    assert layer_violations("streaming", tmp_path) == [
        "streaming/battery/flow.py: imports simulator.run"
    ]
