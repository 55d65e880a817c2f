"""No backend skips the checks: `complete`, `stream` and `prepare` are final, and the
constraint kinds are told apart in one place (`ConstraintVisitor.visit`)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import textwrap
from pathlib import Path

import pytest

import hi_moe
import hi_moe.providers
from hi_moe.providers.base import InferenceProvider
from hi_moe.types import ConstraintVisitor, JsonSchema

SRC = Path(hi_moe.__file__).parent
ROOT = SRC.parent.parent
RULE_KEEPERS = ("complete", "stream", "prepare")
KINDS = {"JsonSchema", "Grammar", "Regex", "Choice"}


def provider_classes() -> list[type[InferenceProvider]]:
    for info in pkgutil.walk_packages(hi_moe.providers.__path__, "hi_moe.providers."):
        try:
            importlib.import_module(info.name)
        except ImportError:  # an extra that is not installed: its classes cannot be checked
            continue
    found: list[type[InferenceProvider]] = []
    pending: list[type[InferenceProvider]] = [InferenceProvider]  # type: ignore[type-abstract]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("hi_moe."):
                found.append(sub)
            pending.append(sub)
    return found


def test_no_provider_in_the_package_defines_the_methods_that_keep_the_rules() -> None:
    classes = provider_classes()
    names = {cls.__name__ for cls in classes}
    assert {"MockProvider", "FallbackProvider", "OpenAICompatibleProvider"} <= names
    for cls in classes:
        overridden = [name for name in RULE_KEEPERS if name in vars(cls)]
        assert not overridden, f"{cls.__module__}.{cls.__name__} defines {overridden}"


def test_mypy_refuses_a_backend_that_overrides_complete_and_an_engine_that_forgets_a_kind(
    tmp_path: Path,
) -> None:
    api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from hi_moe.providers.base import CompletionStream, InferenceProvider
            from hi_moe.types import Completion, CompletionRequest, ConstraintVisitor, JsonSchema


            class Skips(InferenceProvider):
                async def complete(self, request: CompletionRequest) -> Completion:
                    return await self._complete(request)

                def stream(self, request: CompletionRequest) -> CompletionStream:
                    raise NotImplementedError

                def prepare(self, request: CompletionRequest) -> None:
                    pass


            class Forgets(ConstraintVisitor[str]):
                def json_schema(self, constraint: JsonSchema) -> str:
                    return ""


            Forgets()
            """
        )
    )
    # The repository's own cache: warm wherever mypy has run, so this takes seconds, not 40.
    out, err, status = api.run(
        [
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            str(snippet),
        ]
    )
    assert status == 1, out + err
    for name in RULE_KEEPERS:
        assert f'Cannot override final attribute "{name}"' in out, out
    assert 'Cannot instantiate abstract class "Forgets"' in out, out
    assert out.count("error:") == 4, out


def test_an_engine_that_forgets_a_kind_cannot_be_built() -> None:
    class Forgets(ConstraintVisitor[str]):
        def json_schema(self, constraint: JsonSchema) -> str:
            return ""

    with pytest.raises(TypeError, match="abstract"):
        Forgets()  # type: ignore[abstract]


def test_the_kinds_are_told_apart_only_by_the_visitor() -> None:
    # A `match` on the constraint classes, or an isinstance on a kind other than JSON (which the
    # JSON-only backend asks of its one kind), anywhere else would be a second switch.
    switches: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            where = f"{path.relative_to(SRC)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.MatchClass) and ast.unparse(node.cls) in KINDS:
                switches.append(where)
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) == "isinstance"
                and len(node.args) == 2
                and set(ast.unparse(node.args[1]).strip("()").replace(" ", "").split(","))
                & (KINDS - {"JsonSchema"})
            ):
                switches.append(where)
    visit = inspect.getsourcelines(ConstraintVisitor.visit)
    visit_lines = range(visit[1], visit[1] + len(visit[0]))
    allowed = {f"types.py:{line}" for line in visit_lines}
    assert [where for where in switches if where not in allowed] == []
    assert len(switches) == len(KINDS)  # the visitor's own four cases
