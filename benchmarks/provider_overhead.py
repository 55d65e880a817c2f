"""What a client layer costs per request, side by side against an instant server.

    python benchmarks/provider_overhead.py [--requests 2000] [--concurrency 64] [--rounds 6]

A minimal OpenAI-compatible server on 127.0.0.1 answers every chat completion at once, so
the time measured is the clients'. Three clients send the same requests at the same
concurrency:

  (a) raw    the openai SDK's `AsyncOpenAI`, as a hand-written client would use it
  (b) hi_moe `ModalVLLMProvider.complete` (validation, retry policy, output check included)
  (c) litellm LiteLLM's `acompletion` with `hosted_vllm/`, from a venv of its own: LiteLLM
             caps `openai<3`, so beside hi_moe it would downgrade the SDK we run on

(a) and (b) share a process and alternate in chunks of requests; (c) runs in its own. Each
round starts fresh processes and flips the order, so machine noise and warm-up hit every client
alike. b/a is the median of the per-round ratios (same process); b/c compares the medians.
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


CHUNKS = 8


async def drive(legs: list[str], url: str, requests: int, concurrency: int) -> list[dict[str, Any]]:
    """Send each leg's `requests` in this process, in chunks that alternate between the legs
    (ABBA...), so that a slow moment of this shared machine hits them alike."""
    clients = {leg: await CLIENTS[leg](url) for leg in legs}
    for leg, (call, _) in clients.items():
        for reply in await asyncio.gather(*(call() for _ in range(concurrency))):  # warm up
            assert reply == REPLY, f"{leg} got {reply!r}"
    latencies: dict[str, list[float]] = {leg: [] for leg in legs}
    elapsed = dict.fromkeys(legs, 0.0)
    for chunk in range(CHUNKS):
        for leg in legs if chunk % 2 == 0 else legs[::-1]:
            call = clients[leg][0]
            seconds = await measure(call, requests // CHUNKS, concurrency, latencies[leg])
            elapsed[leg] += seconds
    results = []
    for leg in legs:
        cuts = statistics.quantiles(latencies[leg], n=100)
        results.append(
            {
                "leg": leg,
                "label": clients[leg][1],
                "requests": len(latencies[leg]),
                "rps": len(latencies[leg]) / elapsed[leg],
                "p50_ms": cuts[49] * 1000,
                "p99_ms": cuts[98] * 1000,
            }
        )
    return results


async def measure(
    call: Callable[[], Awaitable[str]], requests: int, concurrency: int, latencies: list[float]
) -> float:
    """Send `requests` calls, `concurrency` at a time; record each latency; the wall time."""
    issued = itertools.count()

    async def worker() -> None:
        while next(issued) < requests:
            started = time.perf_counter()
            reply = await call()
            latencies.append(time.perf_counter() - started)
            assert reply == REPLY, f"got {reply!r}"

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


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


def run_legs(
    python: Path, legs: list[str], url: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
    # LiteLLM fetches a price list at import unless told to use its bundled copy; offline
    # that costs seconds of retries (facts.md), which would not be a client cost.
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    command = [str(python), __file__, "--legs", ",".join(legs), "--url", url]
    command += ["--requests", str(args.requests), "--concurrency", str(args.concurrency)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"the {'/'.join(legs)} legs failed:\n{out.stderr[-3000:]}")
    results: list[dict[str, Any]] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM leg")
    parser.add_argument("--litellm-python", help="an interpreter with litellm installed")
    parser.add_argument("--legs", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return
    if args.legs is not None:
        legs = args.legs.split(",")
        print(json.dumps(asyncio.run(drive(legs, args.url, args.requests, args.concurrency))))
        return

    # raw and hi_moe share a process, alternating, so they meet the same heap and the same
    # moment of machine noise; LiteLLM needs its own venv, hence its own process.
    processes = [(Path(sys.executable), ["raw", "hi_moe"])]
    if not args.no_litellm:
        processes.append((litellm_python(args.litellm_python), ["litellm"]))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        wait_healthy(url, server)
        for round_ in range(args.rounds):
            flip = round_ % 2 == 1
            for python, legs in reversed(processes) if flip else processes:
                for result in run_legs(python, legs[::-1] if flip else legs, url, args):
                    runs.setdefault(result["leg"], []).append(result)
    finally:
        server.terminate()
        server.wait(timeout=10)

    def median(leg: str, key: str) -> float:
        return float(statistics.median(run[key] for run in runs[leg]))

    print(
        f"{args.requests} requests at concurrency {args.concurrency}, medians over "
        f"{args.rounds} rounds of fresh processes (python {sys.version.split()[0]})"
    )
    print(f"  {'client':<8} {'version':<16} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for leg in runs:
        label = runs[leg][0]["label"].split()[-1]
        print(
            f"  {leg:<8} {label:<16} {median(leg, 'rps'):8.0f} "
            f"{median(leg, 'p50_ms'):8.1f} {median(leg, 'p99_ms'):8.1f}"
        )
    # raw and hi_moe ran in the same processes: compare them round by round.
    paired = [b["rps"] / a["rps"] for a, b in zip(runs["raw"], runs["hi_moe"], strict=True)]
    ratios = {"hi_moe / raw": float(statistics.median(paired))}
    if "litellm" in runs:
        ratios["hi_moe / litellm"] = median("hi_moe", "rps") / median("litellm", "rps")
    for name, ratio in ratios.items():
        verdict = "meets" if ratio >= TARGETS[name] else "MISSES"
        print(f"{name} (req/s) = {ratio:.3f}: {verdict} the ≥ {TARGETS[name]} target")


if __name__ == "__main__":
    main()
