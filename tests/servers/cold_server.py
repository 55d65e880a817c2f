"""A vLLM server behind a Modal endpoint, through a cold start and after scale-to-zero, run as
its own process:

    python -m tests.servers.cold_server --port N --cold-s 5.0 [--idle-s X] [--adapters a,b]

It accepts connections at once (Modal's proxy does), but for the first `--cold-s` seconds every
route except /stats answers 503 `starting`, as a container still loading weights does. Warm, it
answers /health, /v1/models (the base model and one entry per `--adapters` name) and chat
completions: the first `structured_outputs.choice` option if there is one, else "yes".

With `--idle-s`, a warm server that has had no request for that long has scaled to zero: the
next request starts a new cold period and is itself refused. GET /stats reports the counters
without touching that state, so a test can watch without keeping the server warm.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers.fault_server import completion

BASE = "stub-base"
STARTING = b'{"error": {"message": "starting", "code": 503}}'


def answer(request: Any) -> str:
    """The text a constrained server would produce: a valid choice, or "yes", which every
    regex the tests send accepts."""
    if isinstance(request, dict):
        structured = request.get("structured_outputs")
        if isinstance(structured, dict):
            choice = structured.get("choice")
            if isinstance(choice, list) and choice:
                return str(choice[0])
    return "yes"


class Lifecycle:
    """Cold/warm state and counters, shared by the handler threads behind one lock.

    Going cold after idling is decided lazily, when the next request arrives: that request is
    the one a real scaled-to-zero endpoint would make start a new container.
    """

    def __init__(self, cold_s: float, idle_s: float | None) -> None:
        self.cold_s = cold_s
        self.idle_s = idle_s
        self.lock = threading.Lock()
        now = time.monotonic()
        self.warm_at = now + cold_s
        self.last_request = now
        self.counts = {
            "health_hits": 0,
            "health_hits_cold": 0,
            "models_hits": 0,
            "completions_ok": 0,
            "completions_refused": 0,
            "cold_periods": 1,
        }

    def _idled_out(self, now: float) -> bool:
        if self.idle_s is None or now < self.warm_at:
            return False
        # Idle time counts from when the server became warm too: a container that has only
        # just finished loading has not been idle, whenever the last (refused) request came.
        return now - max(self.last_request, self.warm_at) >= self.idle_s

    def arrive(self) -> bool:
        """Record a request (any route but /stats); return whether the server is warm for it.
        Callers hold the lock."""
        now = time.monotonic()
        if self._idled_out(now):
            self.warm_at = now + self.cold_s
            self.counts["cold_periods"] += 1
        self.last_request = now
        return now >= self.warm_at

    def stats(self) -> dict[str, Any]:
        with self.lock:
            now = time.monotonic()
            warm = now >= self.warm_at and not self._idled_out(now)
            return {**self.counts, "warm": warm}


def make_handler(lifecycle: Lifecycle, adapters: list[str]) -> type[BaseHTTPRequestHandler]:
    models = json.dumps(
        {
            "object": "list",
            "data": [{"id": BASE, "object": "model", "parent": None}]
            + [{"id": name, "object": "model", "parent": BASE} for name in adapters],
        }
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like vLLM behind Modal's proxy

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/stats":
                self._send(200, json.dumps(lifecycle.stats()).encode())
                return
            with lifecycle.lock:
                warm = lifecycle.arrive()
                if self.path == "/health":
                    lifecycle.counts["health_hits"] += 1
                    if not warm:
                        lifecycle.counts["health_hits_cold"] += 1
                elif self.path == "/v1/models":
                    lifecycle.counts["models_hits"] += 1
            if not warm:
                self._send(503, STARTING)
            elif self.path == "/health":
                self._send(200, b"{}")
            elif self.path == "/v1/models":
                self._send(200, models)
            else:
                self._send(404, b'{"detail": "Not Found"}')

        def do_POST(self) -> None:
            # Read the body whatever the answer, or its bytes would be parsed as the next
            # request on this keep-alive connection.
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            chat = self.path == "/v1/chat/completions"
            with lifecycle.lock:
                warm = lifecycle.arrive()
                if chat:
                    lifecycle.counts["completions_ok" if warm else "completions_refused"] += 1
            if not warm:
                self._send(503, STARTING)
                return
            if not chat:
                self._send(404, b'{"detail": "Not Found"}')
                return
            try:
                request = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, b'{"error": {"message": "invalid JSON", "code": 400}}')
                return
            model = request.get("model", BASE) if isinstance(request, dict) else BASE
            self._send(200, completion(answer(request), str(model)))

    return Handler


class Server(ThreadingHTTPServer):
    # Class attributes, not set after construction: listen() runs inside __init__ and reads
    # request_queue_size there, so a later assignment would leave the backlog at 5.
    daemon_threads = True
    request_queue_size = 256


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cold-s", type=float, required=True)
    parser.add_argument("--idle-s", type=float, default=None)
    parser.add_argument("--adapters", default="")
    args = parser.parse_args()
    adapters = [name for name in args.adapters.split(",") if name]
    lifecycle = Lifecycle(args.cold_s, args.idle_s)
    server = Server(("127.0.0.1", args.port), make_handler(lifecycle, adapters))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
