"""The cold-start server itself, over a real socket: it refuses with 503 while cold, counts
what it refused, warms after `--cold-s`, and after `--idle-s` without requests scales to zero
and goes through a cold start again on the next request."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

import hi_moe.ops.serving
from hi_moe.ops.serving import free_port
from tests.servers.openai_stub import serving

pytestmark = pytest.mark.integration

MODULE = "tests.servers.cold_server"
STARTING = {"error": {"message": "starting", "code": 503}}


def call(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """GET, or POST `body` as JSON; return the status and the parsed answer, 503s included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def chat(url: str, structured_outputs: dict[str, Any]) -> tuple[int, Any]:
    return call(
        f"{url}/v1/chat/completions",
        {
            "model": "a",
            "messages": [{"role": "user", "content": "Answer."}],
            "structured_outputs": structured_outputs,
        },
    )


def stats(url: str) -> dict[str, Any]:
    status, body = call(f"{url}/stats")
    assert status == 200
    assert isinstance(body, dict)
    return body


def wait_warm(url: str, timeout_s: float = 10) -> float:
    """Poll /health until it answers 200; return when it did."""
    deadline = time.monotonic() + timeout_s
    while call(f"{url}/health")[0] != 200:
        assert time.monotonic() < deadline, "the server never warmed"
        time.sleep(0.02)
    return time.monotonic()


def test_it_refuses_while_cold_and_answers_once_warm(monkeypatch: pytest.MonkeyPatch) -> None:
    cold_s = 1.5
    # serving() yields only once /health is 200, i.e. after the cold period; to see the
    # cold period from outside, fix the port it will use and probe from a thread meanwhile.
    port = free_port()
    monkeypatch.setattr(hi_moe.ops.serving, "free_port", lambda: port)
    base = f"http://127.0.0.1:{port}"
    seen: dict[str, Any] = {}

    def probe() -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                seen["warm_before"] = stats(base)["warm"]
                break
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.02)
        seen["health"] = call(f"{base}/health")
        seen["models"] = call(f"{base}/v1/models")
        seen["completion"] = chat(base, {"choice": ["no", "yes"]})
        # Still cold after the probes, so every answer above was given while cold.
        seen["warm_after"] = stats(base)["warm"]

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    started = time.monotonic()
    with serving(MODULE, "--cold-s", str(cold_s), "--adapters", "a,b") as url:
        waited = time.monotonic() - started
        prober.join(timeout=10)
        assert url == base
        assert seen == {
            "warm_before": False,
            "health": (503, STARTING),
            "models": (503, STARTING),
            "completion": (503, STARTING),
            "warm_after": False,
        }
        assert waited >= cold_s

        counted = stats(url)
        # serving()'s own polls were refused too; only its last one was answered.
        assert counted["health_hits_cold"] >= 2
        assert counted["health_hits"] == counted["health_hits_cold"] + 1
        assert counted["models_hits"] == 1
        assert counted["completions_refused"] == 1
        assert counted["completions_ok"] == 0
        assert counted["cold_periods"] == 1
        assert counted["warm"] is True

        status, answer = chat(url, {"choice": ["no", "yes"]})
        assert status == 200
        assert answer["object"] == "chat.completion"
        assert answer["model"] == "a"
        assert answer["choices"][0]["message"] == {"role": "assistant", "content": "no"}
        assert answer["usage"] == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        assert chat(url, {"regex": "[0-9]+"})[1]["choices"][0]["message"]["content"] == "yes"

        assert call(f"{url}/v1/models") == (
            200,
            {
                "object": "list",
                "data": [
                    {"id": "stub-base", "object": "model", "parent": None},
                    {"id": "a", "object": "model", "parent": "stub-base"},
                    {"id": "b", "object": "model", "parent": "stub-base"},
                ],
            },
        )
        counted = stats(url)
        assert counted["completions_ok"] == 2
        assert counted["completions_refused"] == 1
        assert counted["models_hits"] == 2


def test_after_idling_it_goes_cold_on_the_next_request_and_warms_again() -> None:
    cold_s, idle_s = 1.0, 1.0
    with serving(MODULE, "--cold-s", str(cold_s), "--idle-s", str(idle_s)) as url:
        assert stats(url)["cold_periods"] == 1
        # Requests closer together than idle-s keep it warm, however long that goes on.
        for _ in range(2):
            time.sleep(idle_s * 0.6)
            assert call(f"{url}/health")[0] == 200

        time.sleep(idle_s + 0.3)
        idle = stats(url)
        assert idle["warm"] is False
        assert idle["cold_periods"] == 1  # watching /stats does not start a cold period

        woke = time.monotonic()
        assert chat(url, {"choice": ["yes", "no"]}) == (503, STARTING)
        cold = stats(url)
        assert cold["cold_periods"] == 2
        assert cold["warm"] is False
        assert cold["completions_refused"] == idle["completions_refused"] + 1
        assert call(f"{url}/health") == (503, STARTING)
        assert stats(url)["health_hits_cold"] == idle["health_hits_cold"] + 1

        # The new cold period runs from the request that woke it.
        assert wait_warm(url) - woke >= cold_s
        status, answer = chat(url, {"choice": ["yes", "no"]})
        assert status == 200
        assert answer["choices"][0]["message"]["content"] == "yes"
        warm = stats(url)
        assert warm["cold_periods"] == 2
        assert warm["warm"] is True
