"""The layout shows the layers (docs/architecture.md): small modules, imports that only point
down, every imported package declared, and the old module paths still importable."""

from __future__ import annotations

import ast
import importlib
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import hi_moe
from hi_moe._moved import MOVED

SRC = Path(hi_moe.__file__).parent
ROOT = SRC.parent.parent
MAX_LINES = 400


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def imports(path: Path) -> Iterator[tuple[str, bool]]:
    """(module imported, whether only for type checking) for every import in `path`."""
    tree = ast.parse(path.read_text())
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(inner) for inner in ast.walk(node))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in typing_only
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, id(node) in typing_only
            for alias in node.names:  # `from hi_moe import constraints` imports a module
                yield f"{node.module}.{alias.name}", id(node) in typing_only


def test_no_module_is_over_400_lines() -> None:
    long = {
        name: n for name, path in modules() if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines: {long}"


# Each layer and the layers it may import at run time. Type-only imports are free (providers
# name `Settings` in `from_settings`'s signature). The CLI sits on top and may import anything.
SEAM = ("hi_moe._lazy", "hi_moe._moved", "hi_moe.types", "hi_moe.errors", "hi_moe.deadline")
LAYERS: dict[str, tuple[str, ...]] = {
    "seam": (*SEAM, "hi_moe.constraints", "hi_moe.cost"),
    "providers": ("hi_moe.providers",),
    "pipeline": ("hi_moe.pipeline", "hi_moe.bench"),
    "config": ("hi_moe.config",),
    "ops": ("hi_moe.ops",),
    "observe": ("hi_moe.report", "hi_moe.telemetry"),
    "cli": ("hi_moe.cli", "hi_moe.__main__"),
}
MAY_IMPORT = {
    "seam": {"seam"},
    "providers": {"seam", "providers"},
    "pipeline": {"seam", "pipeline", "providers"},  # providers: the interface only (see below)
    "config": {"seam", "config", "pipeline", "providers"},  # settings data, the registry
    "ops": {"seam", "ops", "providers", "pipeline", "config"},
    "observe": {"seam", "pipeline", "observe"},  # readers of a run's journal and events
    "cli": set(LAYERS),
}
# The registry builds providers from settings, loading them when none are given.
EXCEPTIONS = {("hi_moe.providers.registry", "config")}


def layer_of(module: str) -> str | None:
    if module == "hi_moe":
        return "seam"
    for layer, prefixes in LAYERS.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return layer
    return None


def test_imports_only_point_down_the_layers() -> None:
    wrong = []
    for name, path in modules():
        layer = layer_of(name)
        assert layer is not None, f"{name} belongs to no layer: add it to LAYERS"
        for imported, typing_only in imports(path):
            target = layer_of(imported) if imported.startswith("hi_moe") else None
            if target is None or typing_only:
                continue
            if target not in MAY_IMPORT[layer] and (name, target) not in EXCEPTIONS:
                wrong.append(f"{name} ({layer}) imports {imported} ({target})")
    assert not wrong, "\n".join(wrong)


def test_config_is_data_and_the_pipeline_reads_only_settings_data_from_it() -> None:
    config_imports = {m for m, _ in imports(SRC / "config.py") if m.startswith("hi_moe.pipeline")}
    allowed = ("hi_moe.pipeline.settings", "hi_moe.pipeline.specialists", "hi_moe.pipeline.sandbox")
    assert all(m.startswith(allowed) for m in config_imports), config_imports


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        specs.extend(extra)
    return {re.split(r"[\s<>=!~\[;]", spec, maxsplit=1)[0].lower() for spec in specs}


def test_every_imported_package_is_declared() -> None:
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    declared = {name.replace("_", "-") for name in declared_distributions()}
    undeclared: dict[str, str] = {}
    for name, path in modules():
        for imported, _ in imports(path):
            top = imported.split(".")[0]
            if top in sys.stdlib_module_names or top == "hi_moe":
                continue
            dists = {d.lower().replace("_", "-") for d in owners.get(top, [top])}
            if not dists & declared:
                undeclared.setdefault(top, name)
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_paths_are_the_moved_modules(old: str) -> None:
    if old in {"hi_moe.ops.training", "hi_moe.training"}:
        pytest.importorskip("peft", reason="the train extra is not installed")
    assert importlib.import_module(old) is importlib.import_module(MOVED[old])


def test_a_moved_packages_submodules_are_the_same_modules_too() -> None:
    old = importlib.import_module("hi_moe.sandbox.bubblewrap")
    new = importlib.import_module("hi_moe.pipeline.sandbox.bubblewrap")
    assert old is new
    assert old.__spec__ is not None
    assert old.__spec__.name == "hi_moe.pipeline.sandbox.bubblewrap"


def test_the_architecture_page_names_only_modules_that_exist() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`((?:[a-z_]+/)+[a-z_]+(?:\.py|/))", page))
    assert len(named) > 20
    missing = [
        path
        for path in sorted(named)
        if not (SRC / path).exists()
        and not (ROOT / path).exists()
        and not (SRC.parent / path).exists()
    ]
    assert not missing, f"docs/architecture.md names what is not there: {missing}"
    for name, _ in modules():  # and every layer of the package appears on it
        top = name.split(".")[1] if "." in name else ""
        if top and not top.startswith("_") and top != "__main__":
            assert f"{top}" in page, f"docs/architecture.md does not mention {top}"
