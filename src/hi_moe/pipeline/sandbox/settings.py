"""`[pipeline.sandbox]`: which backend runs generated code, and its limits."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from hi_moe.pipeline.sandbox.base import Limits

__all__ = ["BackendName", "SandboxSettings"]

BackendName = Literal["auto", "bubblewrap", "process", "modal"]


class SandboxSettings(BaseModel):
    """How generated code is run. `auto` takes bubblewrap when it works on this machine (probed
    once), else the process backend with a warning; `require_isolation` turns that fallback
    into a `ConfigError`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: BackendName = "auto"
    require_isolation: bool = False
    """Refuse to run generated code in a backend that does not isolate it (process)."""
    timeout_s: Annotated[float, Field(gt=0)] = 10.0
    memory_mb: Annotated[int, Field(ge=16)] = 1024
    output_bytes: Annotated[int, Field(ge=1024)] = 1_000_000
    max_processes: Annotated[int, Field(ge=1)] = 64
    file_size_mb: Annotated[int, Field(ge=1)] = 16
    disk_mb: Annotated[int, Field(ge=1)] = 64
    modal_app: str = "hi-moe-sandbox"
    """The Modal app sandboxes are created in (made if missing)."""
    modal_cpu: Annotated[float, Field(gt=0)] = 1.0
    modal_max_concurrency: Annotated[int, Field(ge=1)] = 256

    def limits(self) -> Limits:
        return Limits(
            timeout_s=self.timeout_s,
            memory_mb=self.memory_mb,
            output_bytes=self.output_bytes,
            max_processes=self.max_processes,
            file_size_mb=self.file_size_mb,
            disk_mb=self.disk_mb,
        )
