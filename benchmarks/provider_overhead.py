"""What a client layer costs per request, side by side against an instant server.

    python benchmarks/provider_overhead.py [--requests 2000] [--concurrency 64] [--rounds 3]

A minimal OpenAI-compatible server on 127.0.0.1 answers every chat completion at once, so
the time measured is the clients'. Three clients send the same requests at the same
concurrency, each in a fresh process, interleaved round by round so machine noise hits them
alike:

  (a) raw    the openai SDK's `AsyncOpenAI`, as a hand-written client would use it
  (b) hi_moe `ModalVLLMProvider.complete` (validation, retry policy, output check included)
  (c) litellm LiteLLM's `acompletion` with `hosted_vllm/`, from a venv of its own: LiteLLM
             caps `openai<3`, so beside hi_moe it would downgrade the SDK we run on

Prints requests/s and p50/p99 latency per client (medians over rounds) and the ratios
b/a (target ≥ 0.95: our layer costs under 5% over the SDK) and b/c (target ≥ 1.6).
This file imports only the standard library at the top: the LiteLLM venv runs it too.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

MODEL = "bench-base"
REPLY = "42"
LITELLM_PIN = "litellm==1.106.0"  # later releases need a certifi newer than PyPI's mirror has
LITELLM_VENV = Path.home() / ".cache" / "hi_moe-bench" / "litellm"
TARGETS = {"hi_moe / raw": 0.95, "hi_moe / litellm": 1.6}

# -- the instant server -----------------------------------------------------------------------


def _response(status: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


COMPLETION = _response(
    "200 OK",
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
    },
)
MODELS = _response("200 OK", {"object": "list", "data": [{"id": MODEL, "parent": None}]})
HEALTH = _response("200 OK", {})
NOT_FOUND = _response("404 Not Found", {"detail": "Not Found"})


class InstantServer(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, parsed just enough to answer; precomputed bodies."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return  # the body is still on its way
            self.buffer = self.buffer[end + 4 + length :]
            method, path = head.split(" ", 2)[:2]
            if method == "POST" and path.endswith("/chat/completions"):
                self.transport.write(COMPLETION)
            elif path.endswith("/models"):
                self.transport.write(MODELS)
            elif path == "/health":
                self.transport.write(HEALTH)
            else:
                self.transport.write(NOT_FOUND)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(InstantServer, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


# -- the clients ------------------------------------------------------------------------------

MESSAGES = [
    {"role": "system", "content": "You are a careful assistant."},
    {"role": "user", "content": "What is six times seven? Answer with the number only."},
]


async def raw_client(url: str) -> tuple[Callable[[], Awaitable[str]], str]:
    import openai

    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0)

    async def call() -> str:
        response = await client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_completion_tokens=16,
            temperature=0.0,
        )
        return response.choices[0].message.content or ""

    return call, f"openai {openai.__version__}"


async def hi_moe_client(url: str) -> tuple[Callable[[], Awaitable[str]], str]:
    import hi_moe
    from hi_moe import CompletionRequest, Message
    from hi_moe.providers import ModalVLLMProvider

    provider = ModalVLLMProvider(url, base_model=MODEL)
    request = CompletionRequest(
        messages=[Message(**m) for m in MESSAGES], max_tokens=16, temperature=0.0
    )

    async def call() -> str:
        return (await provider.complete(request)).text

    return call, f"hi_moe {hi_moe.__version__}"


async def litellm_client(url: str) -> tuple[Callable[[], Awaitable[str]], str]:
    import litellm

    litellm.suppress_debug_info = True

    async def call() -> str:
        response = await litellm.acompletion(
            model=f"hosted_vllm/{MODEL}",
            api_base=f"{url}/v1",
            api_key="bench",
            messages=MESSAGES,
            max_tokens=16,
            temperature=0.0,
        )
        return str(response.choices[0].message.content)

    from importlib.metadata import version

    return call, f"litellm {version('litellm')}"


CLIENTS = {"raw": raw_client, "hi_moe": hi_moe_client, "litellm": litellm_client}


async def drive(leg: str, url: str, requests: int, concurrency: int) -> dict[str, Any]:
    call, label = await CLIENTS[leg](url)
    for reply in await asyncio.gather(*(call() for _ in range(concurrency))):  # warm the pool
        assert reply == REPLY, f"{leg} got {reply!r}"
    latencies: list[float] = []
    issued = itertools.count()

    async def worker() -> None:
        while next(issued) < requests:
            started = time.perf_counter()
            reply = await call()
            latencies.append(time.perf_counter() - started)
            assert reply == REPLY, f"{leg} got {reply!r}"

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "leg": leg,
        "label": label,
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
    }


# -- the orchestration ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the benchmark server exited at start")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the benchmark server did not start within 30 s")


def litellm_python(path: str | None) -> Path:
    """The LiteLLM venv's interpreter, created (pinned) on first use."""
    python = Path(path) if path else LITELLM_VENV / "bin" / "python"
    if python.exists():
        return python
    if path:
        raise SystemExit(f"no interpreter at {python}")
    print(f"creating {LITELLM_VENV} with {LITELLM_PIN} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", LITELLM_PIN], check=True)
    return python


def run_leg(python: Path, leg: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    # LiteLLM fetches a price list at import unless told to use its bundled copy; offline
    # that costs seconds of retries (facts.md), which would not be a client cost.
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    command = [str(python), __file__, "--leg", leg, "--url", url]
    command += ["--requests", str(args.requests), "--concurrency", str(args.concurrency)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"the {leg} leg failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM leg")
    parser.add_argument("--litellm-python", help="an interpreter with litellm installed")
    parser.add_argument("--leg", choices=sorted(CLIENTS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return
    if args.leg is not None:
        print(json.dumps(asyncio.run(drive(args.leg, args.url, args.requests, args.concurrency))))
        return

    pythons = {"raw": Path(sys.executable), "hi_moe": Path(sys.executable)}
    if not args.no_litellm:
        pythons["litellm"] = litellm_python(args.litellm_python)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        wait_healthy(url, server)
        runs: dict[str, list[dict[str, Any]]] = {leg: [] for leg in pythons}
        legs = list(pythons)
        for round_ in range(args.rounds):
            order = legs[round_ % len(legs) :] + legs[: round_ % len(legs)]  # rotate
            for leg in order:
                runs[leg].append(run_leg(pythons[leg], leg, url, args))
    finally:
        server.terminate()
        server.wait(timeout=10)

    def median(leg: str, key: str) -> float:
        return float(statistics.median(run[key] for run in runs[leg]))

    print(
        f"{args.requests} requests at concurrency {args.concurrency}, medians over "
        f"{args.rounds} rounds, each client in a fresh process (python {sys.version.split()[0]})"
    )
    print(f"  {'client':<8} {'version':<16} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for leg in runs:
        label = runs[leg][0]["label"].split()[-1]
        print(
            f"  {leg:<8} {label:<16} {median(leg, 'rps'):8.0f} "
            f"{median(leg, 'p50_ms'):8.1f} {median(leg, 'p99_ms'):8.1f}"
        )
    ratios = {"hi_moe / raw": median("hi_moe", "rps") / median("raw", "rps")}
    if "litellm" in runs:
        ratios["hi_moe / litellm"] = median("hi_moe", "rps") / median("litellm", "rps")
    for name, ratio in ratios.items():
        verdict = "meets" if ratio >= TARGETS[name] else "MISSES"
        print(f"{name} (req/s) = {ratio:.3f}: {verdict} the ≥ {TARGETS[name]} target")


if __name__ == "__main__":
    main()
