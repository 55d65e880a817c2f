"""An OpenAI-compatible server on 127.0.0.1 that fails on purpose, run as its own process:

    python -m tests.servers.fault_server --port N --fault-rate 0.25 --seed 0

A chat completion answers "yes" (under any constraint the tests ask for `Choice(["yes",
"no"])`), or, at `--fault-rate`, one of the faults a real deployment shows: 503, 429 with
Retry-After, a reset connection, a truncated body, malformed JSON, a stall past the client's
timeout, or a 200 whose text breaks the constraint. GET /stats reports what was served.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("503", "429", "reset", "truncated", "malformed", "stall", "violation")
STALL_S = 5.0


def completion(text: str, model: str = "stub-base") -> bytes:
    """A chat completion answering `text` (the cold-start server's too)."""
    return json.dumps(
        {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
    ).encode()


def make_handler(fault_rate: float, seed: int) -> type[BaseHTTPRequestHandler]:
    rng = random.Random(seed)
    lock = threading.Lock()
    served: Counter[str] = Counter()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, b"{}")
            elif self.path == "/v1/models":
                self._send(
                    200, json.dumps({"data": [{"id": "stub-base", "parent": None}]}).encode()
                )
            elif self.path == "/stats":
                with lock:
                    self._send(200, json.dumps(dict(served)).encode())
            else:
                self._send(404, b'{"detail": "Not Found"}')

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            with lock:
                fault = rng.choice(FAULTS) if rng.random() < fault_rate else "ok"
                served[fault] += 1
            if fault == "ok":
                self._send(200, completion("yes"))
            elif fault == "503":
                self._send(503, b'{"error": {"message": "overloaded", "code": 503}}')
            elif fault == "429":
                body = b'{"error": {"message": "slow down", "code": 429}}'
                self._send(429, body, {"retry-after-ms": "20"})
            elif fault == "reset":
                # RST instead of FIN: the client sees a reset connection, not an answer.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
            elif fault == "truncated":
                body = completion("yes")
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
            elif fault == "malformed":
                self._send(200, b'{"id": "x", "choices": [{"message": ')
            elif fault == "stall":
                time.sleep(STALL_S)
                self.close_connection = True
            elif fault == "violation":
                self._send(200, completion("maybe, who knows"))

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fault-rate", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.fault_rate, args.seed))
    server.daemon_threads = True
    server.request_queue_size = 256
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
