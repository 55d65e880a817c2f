"""`load_backend`: the sandbox backend the settings ask for, never a silent downgrade."""

from __future__ import annotations

import logging
import threading

from hi_moe.errors import ConfigError
from hi_moe.pipeline.sandbox.base import SandboxBackend
from hi_moe.pipeline.sandbox.settings import SandboxSettings

__all__ = ["load_backend"]

log = logging.getLogger("hi_moe.pipeline.sandbox")
SETTING = "HI_MOE_PIPELINE__SANDBOX__BACKEND"
_lock = threading.Lock()


def load_backend(settings: SandboxSettings | None = None) -> SandboxBackend:
    """Build the configured backend. `auto` probes bubblewrap once per process (a real program
    run in it, about 0.1 s). A backend that does not isolate, when isolation is required, and
    an explicit backend that cannot work here, raise `ConfigError` saying why."""
    settings = settings or SandboxSettings()
    chosen = settings.backend
    if chosen in ("auto", "bubblewrap"):
        from hi_moe.pipeline.sandbox.bubblewrap import BubblewrapBackend, bubblewrap_problem

        with _lock:
            problem = bubblewrap_problem()
        if problem is None:
            return BubblewrapBackend()
        if chosen == "bubblewrap":
            raise ConfigError(f"sandbox backend bubblewrap does not work here: {problem}",
                              setting=SETTING)  # fmt: skip
        if settings.require_isolation:
            raise ConfigError(
                "require_isolation is set and no isolating sandbox works here (bubblewrap: "
                f"{problem}); install bubblewrap (apt-get install bubblewrap) or set "
                "[pipeline.sandbox] backend = 'modal'",
                setting="HI_MOE_PIPELINE__SANDBOX__REQUIRE_ISOLATION",
            )
        log.info("bubblewrap is not usable (%s): falling back to the process backend", problem)
        chosen = "process"
    if chosen == "modal":
        from hi_moe.pipeline.sandbox.modal_sandbox import ModalSandboxBackend

        return ModalSandboxBackend(
            app_name=settings.modal_app,
            cpu=settings.modal_cpu,
            max_concurrency=settings.modal_max_concurrency,
        )
    from hi_moe.pipeline.sandbox.process import ProcessBackend

    if settings.require_isolation:
        missing = ", ".join(sorted(ProcessBackend.never_isolates))
        raise ConfigError(
            f"require_isolation is set, and the process backend does not isolate {missing}; "
            "use backend = 'bubblewrap' or 'modal'",
            setting="HI_MOE_PIPELINE__SANDBOX__REQUIRE_ISOLATION",
        )
    return ProcessBackend()
