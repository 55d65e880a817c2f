"""The README's Python examples run as written, so the README stays true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import run_python

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_a_readme_example_runs(block: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("HI_MOE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    run_python(block)


ROOT = README.parent
TOML_BLOCKS = [
    (name, block)
    for name in ("README.md", "deployment/modal/README.md")
    for block in re.findall(r"```toml\n(.*?)```", (ROOT / name).read_text(), flags=re.DOTALL)
]


@pytest.mark.parametrize(
    ("where", "block"), TOML_BLOCKS, ids=[f"{n}:{i}" for i, (n, _) in enumerate(TOML_BLOCKS)]
)
def test_a_documented_configuration_loads(
    where: str, block: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every `hi_moe.toml` the docs show is one `Settings.load` accepts as written."""
    import os

    from hi_moe.config import Settings

    for name in list(os.environ):
        if name.startswith("HI_MOE_"):
            monkeypatch.delenv(name)
    config = tmp_path / "hi_moe.toml"
    config.write_text(block)
    Settings.load(config)


def test_the_docs_show_configurations() -> None:
    assert len(TOML_BLOCKS) >= 4
