"""The pipeline depends on the provider interface only, never on a concrete provider. The
fallback provider is part of that interface: a composite of any providers, no backend."""

from __future__ import annotations

import ast
from pathlib import Path

import hi_moe.pipeline
from tests.support import run_python

PIPELINE = Path(hi_moe.pipeline.__file__).parent
CONCRETE = (
    "hi_moe.providers.mock",
    "hi_moe.providers.modal_vllm",
    "hi_moe.providers.openai_json",
    "hi_moe.providers.openai_compat",
    "hi_moe.config",
    "openai",
    "modal",
    "vllm",
)


INTERFACE = ("hi_moe.providers.base", "hi_moe.providers.fallback")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_stage_imports_a_concrete_provider() -> None:
    files = sorted(PIPELINE.glob("*.py"))
    assert {f.name for f in files} >= {"monitor.py", "architect.py", "dispatcher.py", "fleet.py"}
    for path in files:
        for module in imported_modules(path):
            assert not module.startswith(CONCRETE), f"{path.name} imports {module}"
            if module.startswith("hi_moe.providers"):
                assert module.startswith(INTERFACE), f"{path.name}: {module}"


def test_running_the_pipeline_loads_no_concrete_provider() -> None:
    # Only what is loaded is asserted on, not an exact list: the interface may grow modules
    # (the fallback provider's helpers, say) without the pipeline depending on a backend.
    loaded = run_python(
        """
        import sys
        from hi_moe.pipeline import ProgressMonitor, Journal, MetricsLog, Task
        print("\\n".join(sorted(sys.modules)))
        """
    ).split()
    assert "hi_moe.providers.base" in loaded
    assert [m for m in loaded if m.startswith(CONCRETE)] == []
