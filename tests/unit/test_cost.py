"""What a run cost: prices as configuration, GPU time apportioned to requests by their time in
flight (exactly, for any overlap), every attempt booked (retries and rejected outputs too),
and a budget by cost that stops a run with its reason."""

from __future__ import annotations

import asyncio
import json
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from hi_moe.cli import app
from hi_moe.config import Settings
from hi_moe.cost import InFlight, InFlightMeter, Prices, ProviderPrice, apportion
from hi_moe.cost.account import PLANNING, RunCost
from hi_moe.errors import ConfigError, ProviderUnavailable, RequestRejected
from hi_moe.pipeline import Budget, Event, Journal, PipelineSettings, ProgressMonitor
from hi_moe.providers import MockProvider
from hi_moe.types import CompletionRequest, Message, Usage
from tests.unit.pipeline_support import plan_of, scripted

ADAPTERS = ["python-lora", "math-lora"]
CODE = plan_of(("s1", "write it", "python", (), "code"))
THREE = plan_of(
    ("s1", "one part", "math", (), "text"),
    ("s2", "another part", "math", (), "text"),
    ("s3", "put them together", "python", ("s1", "s2"), "code"),
)
# The mock priced as if it were a hosted API: $1 per million input tokens, $2 per million output.
BY_TOKENS = Prices(providers={"mock": ProviderPrice(input=1.0, output=2.0)})


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def monitor(
    provider: MockProvider | dict[str, MockProvider],
    prices: Prices = BY_TOKENS,
    journal: Journal | None = None,
    **settings: object,
) -> tuple[ProgressMonitor, list[Event]]:
    events: list[Event] = []
    chosen = ProgressMonitor(
        provider,
        PipelineSettings.model_validate(settings),
        on_event=events.append,
        prices=prices,
        journal=journal,
    )
    return chosen, events


def requests_of(events: list[Event]) -> list[Event]:
    return [e for e in events if e.kind == "request"]


# -- the meter: GPU time split among the requests in flight ------------------------------------


def test_two_overlapping_requests_split_the_overlap_evenly() -> None:
    clock = FakeClock()
    meter = InFlightMeter(clock)
    a = meter.request()
    first = a.__enter__()
    clock.now = 5.0
    b = meter.request()
    second = b.__enter__()
    clock.now = 10.0
    a.__exit__(None, None, None)
    clock.now = 15.0
    b.__exit__(None, None, None)
    # a: alone for 5 s, then half of 5 s; b: half of 5 s, then alone for 5 s.
    assert first.share_s == pytest.approx(7.5)
    assert second.share_s == pytest.approx(7.5)
    assert meter.busy_s == pytest.approx(15.0)


def test_requests_waiting_for_one_cold_start_each_waited_all_of_it_and_pay_their_share() -> None:
    clock = FakeClock()
    meter = InFlightMeter(clock)
    with meter.request() as first, meter.request() as second:
        clock.now = 60.0  # the container came up
        first.cold_start_over()
        second.cold_start_over()
        clock.now = 62.0
    for flight in (first, second):
        assert flight.cold_wait_s == 60.0  # what each waited, as a person sees it
        assert flight.cold_share_s == pytest.approx(30.0)  # what each is charged for it
        assert flight.share_s == pytest.approx(31.0)


def test_idle_time_between_requests_is_charged_to_nobody() -> None:
    clock = FakeClock()
    meter = InFlightMeter(clock)
    with meter.request() as first:
        clock.now = 2.0
    clock.now = 100.0
    with meter.request() as second:
        clock.now = 103.0
    assert (first.share_s, second.share_s, meter.busy_s) == (2.0, 3.0, 5.0)


@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.integers(1, 30)), min_size=1, max_size=12
    )  # (start, duration) in ticks
)
def test_shares_of_any_overlap_add_up_to_the_busy_time_exactly(
    spans: list[tuple[int, int]],
) -> None:
    clock = FakeClock()
    meter = InFlightMeter(clock)
    changes = sorted(
        [(start, 1, i) for i, (start, _) in enumerate(spans)]
        + [(start + length, 0, i) for i, (start, length) in enumerate(spans)]
    )  # at one instant, ends (0) before starts (1)
    open_: dict[int, AbstractContextManager[InFlight]] = {}
    flights: dict[int, InFlight] = {}
    for at, is_start, i in changes:
        clock.now = float(at)
        if is_start:
            open_[i] = meter.request()
            flights[i] = open_[i].__enter__()
        else:
            open_.pop(i).__exit__(None, None, None)
    busy: set[int] = set()
    for start, length in spans:
        busy.update(range(start, start + length))
    assert sum(f.share_s for f in flights.values()) == pytest.approx(len(busy))
    assert meter.busy_s == pytest.approx(len(busy))
    for i, (_, length) in enumerate(spans):  # nobody pays for more than their own time
        assert 0 < flights[i].share_s <= length + 1e-9
    # Each share is the integral of 1/k over the request's own time, k = requests in flight.
    for i, (start, length) in enumerate(spans):
        expected = 0.0
        for tick in range(start, start + length):
            k = sum(1 for s, n in spans if s <= tick < s + n)
            expected += 1 / k
        assert flights[i].share_s == pytest.approx(expected)


@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 20)).map(lambda s: (s[0], s[0] + s[1])),
        max_size=10,
    )
)
def test_apportioning_after_the_fact_charges_what_the_live_meter_charges(
    spans: list[tuple[int, int]],
) -> None:
    shares = apportion([(float(a), float(b)) for a, b in spans])
    clock = FakeClock()
    meter = InFlightMeter(clock)
    live: dict[int, InFlight] = {}
    opened: dict[int, AbstractContextManager[InFlight]] = {}
    for at, is_start, i in sorted(
        [(a, 1, i) for i, (a, b) in enumerate(spans) if b > a]
        + [(b, 0, i) for i, (a, b) in enumerate(spans) if b > a]
    ):
        clock.now = float(at)
        if is_start:
            opened[i] = meter.request()
            live[i] = opened[i].__enter__()
        else:
            opened.pop(i).__exit__(None, None, None)
    for i, share in enumerate(shares):
        assert share == pytest.approx(live[i].share_s if i in live else 0.0)
    busy = {t for a, b in spans for t in range(a, b)}
    assert sum(shares) == pytest.approx(len(busy))


def test_apportioning_refuses_a_span_that_ends_before_it_starts() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        apportion([(2.0, 1.0)])
    assert apportion([]) == []
    assert apportion([(1.0, 1.0), (0.0, 4.0)]) == [0.0, 4.0]


async def test_a_provider_meters_its_own_calls_and_the_shares_match_its_busy_time() -> None:
    mock = MockProvider(latency_s=0.05)
    request = CompletionRequest(messages=[Message.user("hi")], max_tokens=4)
    completions = await asyncio.gather(*(mock.complete(request) for _ in range(6)))
    assert sum(c.busy_share_s for c in completions) == pytest.approx(mock.meter.busy_s)
    # Six at once: each is charged about a sixth of the time they shared, not all of it.
    assert all(c.busy_share_s < c.latency_s / 2 for c in completions)


async def test_a_stream_is_metered_until_its_last_chunk() -> None:
    mock = MockProvider(latency_s=0.02)
    request = CompletionRequest(messages=[Message.user("hi")], max_tokens=8)

    async def read(stream_of: MockProvider) -> float:
        stream = stream_of.stream(request)
        async for _ in stream:
            pass
        assert stream.completion is not None
        return stream.completion.busy_share_s

    shares = await asyncio.gather(read(mock), read(mock), mock.complete(request))
    total = shares[0] + shares[1] + shares[2].busy_share_s
    assert total == pytest.approx(mock.meter.busy_s)
    assert min(shares[0], shares[1]) > 0


async def test_a_failed_call_carries_the_time_it_occupied() -> None:
    async def slow_then_down(request: CompletionRequest) -> ProviderUnavailable:
        await asyncio.sleep(0.05)
        return ProviderUnavailable("gone")

    mock = MockProvider(respond=slow_then_down)
    with pytest.raises(ProviderUnavailable) as raised:
        await mock.complete(CompletionRequest(messages=[Message.user("hi")]))
    assert raised.value.busy_share_s >= 0.04


# -- prices -----------------------------------------------------------------------------------


def test_a_model_is_priced_by_the_longest_table_key_it_starts_with() -> None:
    prices = Prices()
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)
    mini = prices.cost("openai", model="gpt-4.1-mini-2025-04-14", usage=usage)
    assert mini.basis == "tokens"
    assert mini.usd == pytest.approx(0.40 + 1.60)
    tuned = prices.cost("openai", model="ft:gpt-4.1-mini:acme::abc123", usage=usage)
    assert tuned.usd == pytest.approx(2.00)  # a fine-tune of a listed model, at its price
    assert prices.cost("openai", model="gpt-4.10", usage=usage).basis == "unpriced"


def test_an_unknown_model_is_unpriced_never_guessed_but_no_tokens_cost_nothing() -> None:
    prices = Prices()
    spent = Usage(prompt_tokens=10, completion_tokens=5)
    assert prices.cost("acme", model="llama-70b", usage=spent).basis == "unpriced"
    assert prices.cost("acme", model="llama-70b", usage=Usage()).priced  # a refused call
    assert prices.cost("mock", model="mock-1", usage=spent).basis == "free"


def test_gpu_time_is_priced_per_second_and_cold_starts_as_configured() -> None:
    charged = Prices(providers={"vllm": ProviderPrice(gpu="H100", gpu_count=2)})
    cost = charged.cost("vllm", model="m", usage=Usage(), busy_share_s=10.0, cold_share_s=4.0)
    assert cost.basis == "gpu_time"
    assert cost.gpu_s == pytest.approx(20.0)
    assert cost.usd == pytest.approx(10.0 * 0.001097 * 2)
    free = Prices(providers={"vllm": ProviderPrice(usd_per_s=0.01, cold_start="free")})
    cost = free.cost("vllm", model="m", usage=Usage(), busy_share_s=10.0, cold_share_s=4.0)
    assert cost.usd == pytest.approx(0.06)  # the 4 s spent waiting for the cold start are free


def test_a_price_says_one_thing_and_names_a_known_gpu() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        ProviderPrice(gpu="H100", input=1.0, output=1.0)
    with pytest.raises(ValidationError, match="both input and output"):
        ProviderPrice(input=1.0)
    with pytest.raises(ValidationError, match="unknown GPU type 'H1000'"):
        Prices(providers={"vllm": ProviderPrice(gpu="H1000")})
    assert Prices(gpus={"H1000": 0.01}, providers={"vllm": ProviderPrice(gpu="H1000")})


def test_prices_come_from_the_config_file_and_a_bad_one_is_a_config_error(
    tmp_path: Path,
) -> None:
    config = tmp_path / "hi_moe.toml"
    config.write_text('[prices.providers.vllm]\ngpu = "A100-80GB"\ncold_start = "free"\n')
    settings = Settings.load(config)
    assert settings.prices.providers["vllm"].gpu == "A100-80GB"
    assert settings.prices.providers["mock"].free  # the defaults stay
    config.write_text('[prices.providers.vllm]\ngpu = "A100-80GB"\ninput = 1\noutput = 1\n')
    with pytest.raises(ConfigError, match="prices"):
        Settings.load(config)


# -- a run's account ----------------------------------------------------------------------------


async def test_a_run_costs_the_sum_of_its_attempts_retries_and_rejected_outputs_included() -> None:
    mock = MockProvider(
        respond=scripted(CODE, {"s1": [lambda r: "unfenced", "print(2)"]}), adapters=ADAPTERS
    )
    run, events = monitor(mock)
    result = await run.run("t")
    assert result.status == "succeeded", result.reason
    made = requests_of(events)
    assert [e.data["error"] for e in made if e.step_id == "s1"] == ["ConstraintViolation", None]
    for event in made:  # each request priced from its own tokens
        expected = (event.data["prompt_tokens"] + 2 * event.data["completion_tokens"]) / 1e6
        assert event.data["cost_usd"] == pytest.approx(expected)
    assert result.cost.usd == pytest.approx(sum(e.data["cost_usd"] for e in made))
    assert result.cost.requests == len(made)
    rejected = next(e for e in made if e.data["error"] == "ConstraintViolation")
    assert result.cost.retry_usd == pytest.approx(rejected.data["cost_usd"])
    assert result.steps["s1"].cost_usd == pytest.approx(
        sum(e.data["cost_usd"] for e in made if e.step_id == "s1")
    )
    assert result.cost.by_step[PLANNING] + result.cost.by_step["s1"] == pytest.approx(
        result.cost.usd
    )
    assert result.cost.by_provider == {"mock": pytest.approx(result.cost.usd)}
    assert result.summary()["cost"]["usd"] == pytest.approx(result.cost.usd)


async def test_a_fallen_back_call_is_booked_to_the_provider_that_made_it() -> None:
    down = MockProvider(respond=scripted(CODE, {"s1": ProviderUnavailable("gone")}))
    backup = MockProvider(respond=scripted(CODE, {"s1": "print(1)"}))
    prices = Prices(
        providers={
            "primary": ProviderPrice(input=1.0, output=1.0),
            "backup": ProviderPrice(input=3.0, output=3.0),
        }
    )
    run, events = monitor({"primary": down, "backup": backup}, prices, fallbacks=["backup"])
    result = await run.run("t")
    assert result.status == "succeeded"
    by_provider: dict[str, float] = {}
    for e in requests_of(events):
        by_provider[e.data["provider"]] = by_provider.get(e.data["provider"], 0.0) + (
            e.data["cost_usd"] or 0.0
        )
    assert result.cost.by_provider == pytest.approx(by_provider)
    assert result.cost.usd == pytest.approx(sum(by_provider.values()))


async def test_a_call_that_ends_the_step_is_booked_once_and_one_refused_unsent_is_not() -> None:
    rejected = MockProvider(respond=scripted(CODE, {"s1": RequestRejected("no", status_code=400)}))
    run, events = monitor(rejected, budget=Budget(step_attempts=3, max_replans=0))
    result = await run.run("t")
    assert result.status == "failed"
    made = [e for e in requests_of(events) if e.step_id == "s1"]
    assert [e.data["error"] for e in made] == ["RequestRejected"]  # sent once, booked once
    assert result.cost.requests == len(requests_of(events))

    down = MockProvider(respond=scripted(CODE, {"s1": ProviderUnavailable("gone")}))
    backup = MockProvider(respond=scripted(CODE, {"s1": "print(1)"}))
    run, events = monitor({"primary": down, "backup": backup}, fallbacks=["backup"])
    result = await run.run("t")
    made = [e for e in requests_of(events) if e.step_id == "s1"]
    assert [(e.data["provider"], e.data["error"]) for e in made] == [
        ("primary", "ProviderUnavailable"),
        ("backup", None),
    ]  # the hop is booked once, as a hop


async def test_planning_that_fails_for_good_still_books_what_it_sent() -> None:
    def down(request: CompletionRequest) -> RequestRejected:
        return RequestRejected("the server refused it", status_code=400)

    rejecting = MockProvider(respond=down)
    run, events = monitor(rejecting)
    result = await run.run("t")
    assert result.status == "failed"
    assert result.reason.startswith("RequestRejected")
    made = requests_of(events)
    assert [(e.data["domain"], e.data["error"]) for e in made] == [("plan", "RequestRejected")]
    assert result.cost.requests == 1


async def test_a_plan_rejected_then_answered_elsewhere_is_booked_once_per_request() -> None:
    def broken(request: CompletionRequest) -> str:
        return "not a plan"  # breaks the plan schema

    rejecting = MockProvider(respond=broken)
    backup = MockProvider(respond=scripted(CODE, {"s1": "print(1)"}))
    run, events = monitor(
        {"primary": rejecting, "backup": backup}, fallbacks=["backup"], fallback_on_rejected=True
    )
    result = await run.run("t")
    assert result.status == "succeeded", result.reason
    plans = [
        (e.data["provider"], e.data["error"]) for e in requests_of(events) if e.step_id is None
    ]
    assert plans == [("primary", "ConstraintViolation"), ("backup", None)]
    assert result.cost.requests == len(requests_of(events))


async def test_gpu_seconds_of_concurrent_steps_add_up_to_the_server_s_busy_time() -> None:
    gpu = MockProvider(respond=scripted(THREE, {"s1": "one", "s2": "two"}), latency_s=0.05)
    prices = Prices(providers={"gpu": ProviderPrice(usd_per_s=1.0)})  # $1 per busy second
    run, events = monitor({"gpu": gpu}, prices, max_parallel=4)
    result = await run.run("t")
    assert result.status == "succeeded", result.reason
    steps_a_b = [e for e in requests_of(events) if e.step_id in ("s1", "s2")]
    assert len(steps_a_b) == 2
    assert sum(e.data["busy_share_s"] for e in steps_a_b) < sum(
        e.data["latency_s"] for e in steps_a_b
    )  # they overlapped, and the overlap was charged once
    # Only this run used the server: the run paid for exactly the time it was busy.
    assert result.cost.gpu_s == pytest.approx(gpu.meter.busy_s, rel=1e-3)
    assert result.cost.usd == pytest.approx(gpu.meter.busy_s, rel=1e-3)


async def test_runs_sharing_a_server_split_its_gpu_time_and_together_pay_all_of_it() -> None:
    gpu = MockProvider(respond=scripted(THREE, {"s1": "one", "s2": "two"}), latency_s=0.03)
    prices = Prices(providers={"gpu": ProviderPrice(usd_per_s=1.0)})
    runs = [monitor({"gpu": gpu}, prices) for _ in range(3)]  # a batch: one provider object
    results = await asyncio.gather(*(run.run("t") for run, _ in runs))
    assert all(r.status == "succeeded" for r in results)
    assert sum(r.cost.usd for r in results) == pytest.approx(gpu.meter.busy_s, rel=1e-3)
    # Each paid less than its requests' time in flight: the time they overlapped was split.
    for result, (_, events) in zip(results, runs, strict=True):
        in_flight = sum(e.data["latency_s"] for e in requests_of(events))
        assert result.cost.usd < 0.8 * in_flight


async def test_a_cost_budget_stops_the_run_with_its_reason() -> None:
    mock = MockProvider(respond=scripted(THREE, {"s1": "one", "s2": "two"}), adapters=ADAPTERS)
    expensive = Prices(providers={"mock": ProviderPrice(input=1e5, output=1e5)})  # $0.1/token
    run, _ = monitor(mock, expensive, budget=Budget(max_cost=0.5), max_parallel=1)
    result = await run.run("t")
    assert result.status == "failed"
    assert result.reason.startswith("cost budget spent ($")
    assert "of $0.5000" in result.reason
    assert "s3" not in result.steps or not result.steps["s3"].ok  # stopped before the end


async def test_a_cost_budget_that_cannot_be_kept_stops_the_run_instead_of_being_ignored() -> None:
    mock = MockProvider(respond=scripted(THREE, {"s1": "one", "s2": "two"}), adapters=ADAPTERS)
    # The mock labelled as something no price covers, its model in no table.
    unpriced = Prices()
    run, _ = monitor({"local": mock}, unpriced, budget=Budget(max_cost=100.0))
    result = await run.run("t")
    assert result.status == "failed"
    assert "cost budget cannot be kept" in result.reason
    assert "local" in result.reason
    assert result.cost.unpriced_requests >= 1
    assert "unpriced" in result.cost.describe()


async def test_a_resumed_run_keeps_what_it_spent_before_the_kill(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    paid = asyncio.Event()

    async def hold(request: CompletionRequest) -> str:
        paid.set()  # the plan, s1 and s2 are paid for; s3 never answers: the run is killed
        await asyncio.Event().wait()
        return "never"

    first = MockProvider(respond=scripted(THREE, {"s1": "one", "s2": "two", "s3": hold}))
    run, _ = monitor(first, journal=journal, max_parallel=1)
    task = asyncio.create_task(run.run("t", run_id="r1"))
    await asyncio.wait_for(paid.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    before = sum(r["cost_usd"] for r in journal.requests("r1"))
    assert before > 0

    second = MockProvider(respond=scripted(THREE, {"s3": "print(3)"}))
    again, _ = monitor(second, journal=journal)
    result = await again.resume("r1")
    assert result.status == "succeeded", result.reason
    assert result.cost.usd == pytest.approx(sum(r["cost_usd"] for r in journal.requests("r1")))
    assert result.cost.usd > before
    finished = await again.resume("r1")  # a finished run's journaled result, its cost too
    assert finished.cost.usd == pytest.approx(result.cost.usd)


async def test_a_request_cancelled_in_flight_is_booked_with_the_time_it_held_the_server(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    asked = asyncio.Event()

    async def hang(request: CompletionRequest) -> str:
        asked.set()
        await asyncio.Event().wait()
        return "never"

    gpu = MockProvider(respond=scripted(THREE, {"s1": "one", "s2": "two", "s3": hang}))
    prices = Prices(providers={"gpu": ProviderPrice(usd_per_s=1.0)})
    run, events = monitor({"gpu": gpu}, prices, journal=journal)
    task = asyncio.create_task(run.run("t", run_id="r"))
    await asyncio.wait_for(asked.wait(), 10)
    await asyncio.sleep(0.05)  # s3's request holds the server for a while
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (cancelled,) = [e for e in requests_of(events) if e.data["error"] == "Cancelled"]
    assert cancelled.step_id == "s3"
    assert cancelled.data["busy_share_s"] >= 0.04
    assert cancelled.data["cost_usd"] == pytest.approx(cancelled.data["busy_share_s"], abs=1e-6)
    booked = journal.requests("r")
    assert booked[-1]["error"] == "Cancelled"  # a resumed run carries it over
    assert sum(r["busy_share_s"] for r in booked) == pytest.approx(gpu.meter.busy_s, rel=1e-3)


def test_run_costs_add_up() -> None:
    a = RunCost(usd=1.0, requests=2, by_provider={"x": 1.0}, by_step={"s": 1.0})
    b = RunCost(usd=0.5, requests=1, unpriced_requests=1, by_provider={"x": 0.25, "y": 0.25})
    total = a + b
    assert (total.usd, total.requests, total.unpriced_requests) == (1.5, 3, 1)
    assert total.by_provider == {"x": 1.25, "y": 0.25}
    assert not total.complete


# -- the command line ---------------------------------------------------------------------------


def test_hi_moe_run_reports_the_cost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HI_MOE_PIPELINE__JOURNAL", str(tmp_path / "j.sqlite"))
    monkeypatch.setenv("HI_MOE_PIPELINE__METRICS", str(tmp_path / "m.jsonl"))
    out = CliRunner().invoke(app, ["run", "add two numbers", "--json", "--quiet"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout[out.stdout.index("{") :])
    assert summary["cost"]["usd"] == 0.0  # the mock is free
    assert summary["cost"]["requests"] >= 2
    assert all("cost_usd" in step for step in summary["steps"])
    shown = CliRunner().invoke(app, ["run", "add two numbers"])
    assert shown.exit_code == 0, shown.output
    assert "cost $0.0000" in shown.output
    metrics = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert all("cost_usd" in m for m in metrics if m["kind"] == "request")


def test_an_unpriced_run_says_where_prices_are_set(capsys: pytest.CaptureFixture[str]) -> None:
    from hi_moe.cli.runs import _print_result
    from hi_moe.pipeline import RunResult

    result = RunResult(
        run_id="r",
        status="failed",
        answer=None,
        plan=None,
        steps={},
        usage=Usage(),
        cost=RunCost(requests=4, unpriced_requests=4),
        wall_s=1.0,
        reason="cost budget cannot be kept: 4 requests to vllm have no price (set [prices.x])",
    )
    _print_result(result, result.summary())
    shown = " ".join(capsys.readouterr().err.split())  # unwrapped
    assert "4 of 4 requests unpriced: see [prices] in the README" in shown  # text, not markup
    assert "(set [prices.x])" in shown
