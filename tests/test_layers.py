"""The package's import rules, read from the source (ast), so a wrong-way import fails here, not in review.

- Layers, bottom to top (wan_pipeline/__init__.py, docs/architecture.md): errors -> providers -> planning ->
  money -> outputs -> execution -> assets/resources/definitions -> cli. A module imports only from its own
  layer and the ones below it.
- The emulator is beside the layers, not in them: production code reaches it only through
  ``execution/endpoints.py`` (the ``endpoint: emulator`` transport) and ``cli/`` (the ``emulator`` command), and
  the emulator imports nothing of the client but ``errors``, so its limits are its own (emulator/limits.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wan_pipeline

PACKAGE_DIR = Path(wan_pipeline.__file__).parent
LAYERS: tuple[tuple[str, ...], ...] = (
    # the package root holds the docstring, __version__ and one lazy re-export (REEXPORTS); code_version reads
    # __version__ (and git) for provenance
    ("wan_pipeline", "wan_pipeline.errors", "wan_pipeline.code_version"),
    ("wan_pipeline.providers",),
    ("wan_pipeline.planning",),
    ("wan_pipeline.money",),
    ("wan_pipeline.outputs",),
    ("wan_pipeline.execution",),
    ("wan_pipeline.assets", "wan_pipeline.resources", "wan_pipeline.definitions", "wan_pipeline.component"),
    ("wan_pipeline.cli",),
)
EMULATOR = "wan_pipeline.emulator"
EMULATOR_SEAMS = ("wan_pipeline.execution.endpoints", "wan_pipeline.cli")
#: `dg` names component types by the registry module (the package) and attribute: `wan_pipeline.WanDataset`.
#: The root re-exports it lazily (a module __getattr__), so importing the package never imports Dagster.
REEXPORTS = {("wan_pipeline", "wan_pipeline.component")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, importer: str) -> set[str]:
    """Every wan_pipeline module `source` imports, at any depth (deferred and TYPE_CHECKING imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{importer}: relative import of {node.module}; the rules read absolute names"
            # `from wan_pipeline import errors` imports a module; `from wan_pipeline.x import Name` a name in x.
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if is_module(submodule) else node.module)
    return {name for name in found if name == "wan_pipeline" or name.startswith("wan_pipeline.")}


def is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    return (PACKAGE_DIR / relative).with_suffix(".py").is_file() or (PACKAGE_DIR / relative / "__init__.py").is_file()


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(name: str) -> int | None:
    """Index in LAYERS; None for the emulator. The root package counts only as itself, not as a prefix."""
    if within(name, EMULATOR):
        return None
    for index, prefixes in enumerate(LAYERS):
        if any(name == p or (p != "wan_pipeline" and within(name, p)) for p in prefixes):
            return index
    raise AssertionError(f"{name} is in no layer: add its folder to LAYERS (and to docs/architecture.md)")


def violations(importer: str, imported: set[str]) -> list[str]:
    found: list[str] = []
    for target in sorted(imported):
        if within(importer, EMULATOR):
            if not (within(target, EMULATOR) or target == "wan_pipeline.errors"):
                found.append(f"{importer} imports {target}: the emulator keeps its own data (only errors is shared)")
        elif within(target, EMULATOR):
            if not any(within(importer, seam) for seam in EMULATOR_SEAMS):
                found.append(f"{importer} imports {target}: use execution.endpoints.in_process_emulator")
        elif (importer, target) in REEXPORTS:
            continue
        elif (layer_of(target) or 0) > (layer_of(importer) or 0):
            found.append(f"{importer} imports {target}, a layer above it")
    return found


def package_imports() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path.read_text(), module_name(path)) for path in PACKAGE_DIR.rglob("*.py")}


def test_every_import_points_down_and_the_emulator_sits_behind_its_seams() -> None:
    graph = package_imports()
    # The walk sees the whole package: every layer, the emulator, and a few hundred imports.
    assert {layer_of(name) for name in graph} == {*range(len(LAYERS)), None}
    assert sum(len(targets) for targets in graph.values()) > 200
    problems = [problem for importer, targets in graph.items() for problem in violations(importer, targets)]
    assert problems == []


def test_only_the_seams_import_the_emulator() -> None:
    importers = {name for name, targets in package_imports().items() if any(within(t, EMULATOR) for t in targets)}
    outside = {name for name in importers if not within(name, EMULATOR)}
    assert outside and all(any(within(name, seam) for seam in EMULATOR_SEAMS) for name in outside)
    assert "wan_pipeline.execution.endpoints" in outside


@pytest.mark.parametrize(
    ("importer", "source", "complaint"),
    [
        ("wan_pipeline.emulator.evolink", "from wan_pipeline.providers.evolink import PRESET_SIZES", "own data"),
        ("wan_pipeline.emulator.reapi", "from wan_pipeline.execution.wire import is_loopback_http", "own data"),
        ("wan_pipeline.execution.session", "from wan_pipeline.emulator.app import in_process", "in_process_emulator"),
        ("wan_pipeline.outputs.media", "def f():\n    from wan_pipeline.execution import wire", "a layer above"),
        ("wan_pipeline.providers.base", "from wan_pipeline import planning", "a layer above"),
        ("wan_pipeline.money.ledger", "if TYPE_CHECKING:\n    from wan_pipeline.cli.main import main", "a layer above"),
    ],
)
def test_the_rule_catches_a_wrong_way_import(importer: str, source: str, complaint: str) -> None:
    (problem,) = violations(importer, imports_of(source, importer))
    assert complaint in problem


@pytest.mark.parametrize(
    ("importer", "source"),
    [
        ("wan_pipeline.emulator.dashscope", "from wan_pipeline.emulator.limits import VIDEO_SIZES"),
        ("wan_pipeline.emulator.rivya", "from wan_pipeline.errors import WanPipelineError"),
        ("wan_pipeline.cli.main", "from wan_pipeline.emulator.server import serve"),
        ("wan_pipeline.outputs.lineage", "from wan_pipeline import __version__"),
        ("wan_pipeline.execution.engine", "from wan_pipeline import errors as e"),
    ],
)
def test_the_rule_allows_what_the_layers_allow(importer: str, source: str) -> None:
    assert violations(importer, imports_of(source, importer)) == []
