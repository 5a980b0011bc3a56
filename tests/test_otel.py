"""agora_chat_async.otel: the client's events as OpenTelemetry metrics, read back through
the SDK's in-memory reader."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from agora_chat_async import (
    BatchSplit,
    LimiterWait,
    Rate,
    RateLimits,
    RecipientsSettled,
    RetryPolicy,
    SendResult,
    TextBody,
)
from agora_chat_async.otel import ClientMetrics
from agora_chat_async.testing import Emulator, Faults, MockClock

TEXT = TextBody(msg="hello")
#: Every attribute key the metrics may carry: none can hold an id, a body or a secret.
ATTRIBUTE_KEYS = {
    "agora_chat.family",
    "agora_chat.outcome",
    "agora_chat.limit",
    "agora_chat.priority",
    "agora_chat.retry.reason",
    "http.response.status_code",
}


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Metric name -> its data points, from one collection."""
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "agora_chat_async"
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def total(found: dict[str, list[Any]], name: str, **attributes: object) -> int:
    """The sum of *name*'s points with *attributes* (``family=`` is ``agora_chat.family``)."""
    wanted = {f"agora_chat.{key.replace('_', '.')}": value for key, value in attributes.items()}
    return sum(
        point.value
        for point in found.get(name, [])
        if all(point.attributes.get(key) == value for key, value in wanted.items())
    )


def gauge(found: dict[str, list[Any]], name: str) -> dict[str, float]:
    """Limit name -> the gauge's value."""
    return {point.attributes["agora_chat.limit"]: point.value for point in found[name]}


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> MeterProvider:
    return MeterProvider(metric_readers=[reader])


async def test_a_fan_out_under_injected_refusals_counts_what_its_results_say(reader, provider):
    # The emulator enforces the documented 20 groups a second; the client is configured
    # for 30, so the service refuses it until the limiter adapts. 503s and 500s are
    # injected too, and only one attempt is allowed for a 503: some groups fail for
    # certain, some have an unknown outcome, the rest are delivered.
    emulator = Emulator(
        clock=MockClock(start=0.0),
        faults={"groups": Faults(refuse_503=0.1, process_then_500=0.05)},
        seed=7,
    )
    metrics = ClientMetrics(meter_provider=provider)
    async with emulator.client(
        rate_limits=RateLimits(groups=Rate(30, per=1)),
        retry=RetryPolicy(attempts=0),
        on_event=metrics,
    ) as client:
        results: list[SendResult] = []
        async with client.fan_out((f"g{i}" for i in range(600)), TEXT, target="groups") as stream:
            results.extend([result async for result in stream])
        single = await client.send_user_message("alice", TEXT)
        await metrics.record_limits(client.limiter)
    found = points(reader)

    delivered = sum(len(r.message_ids) for r in results)
    failed = sum(len(r.failed) for r in results)
    unknown = sum(len(r.unknown) for r in results)
    assert delivered + failed + unknown == 600
    # every outcome is exercised
    assert delivered > 0
    assert failed > 0
    assert unknown > 0
    name = "agora_chat.client.recipients"
    assert total(found, name, family="groups", outcome="delivered") == delivered
    assert total(found, name, family="groups", outcome="failed") == failed
    assert total(found, name, family="groups", outcome="unknown") == unknown
    assert total(found, name, family="users") == len(single.message_ids) == 1

    refused = sum(n for reason, n in emulator.refused.items() if reason.startswith("limit:"))
    assert refused > 0
    assert total(found, "agora_chat.client.refusals") == refused
    assert total(found, "agora_chat.client.refusals", limit="groups") == refused
    # The limiter lowered the groups limit after the refusals: the gauge says so.
    configured = gauge(found, "agora_chat.client.limiter.limit")["groups"]
    effective = gauge(found, "agora_chat.client.limiter.effective_limit")["groups"]
    assert configured == 30
    assert effective < configured
    # The fan-out waited for the limiter, as bulk work.
    waits = [
        p
        for p in found["agora_chat.client.limiter.wait"]
        if p.attributes["agora_chat.priority"] == "bulk"
    ]
    assert sum(p.count for p in waits) > 0
    for point in (p for ps in found.values() for p in ps):
        assert set(point.attributes) <= ATTRIBUTE_KEYS
        values = [str(value) for value in point.attributes.values()]
        assert not [value for value in values if re.fullmatch(r"g\d+|alice", value)]


async def test_retries_and_batch_splits_are_counted(reader, provider):
    # A service that takes 2,000 bytes a request (the client packs up to 5,000): 413s.
    emulator = Emulator(
        clock=MockClock(start=0.0),
        faults={"users": Faults(refuse_503=0.3)},
        seed=3,
        max_request_bytes=2000,
    )
    seen: list[object] = []
    metrics = ClientMetrics(meter_provider=provider, on_event=seen.append)
    async with emulator.client(on_event=metrics) as client:
        result = await client.send_user_message([f"u{i}" for i in range(2000)], TEXT)
    assert result.ok
    found = points(reader)
    retried = emulator.refused["fault:503"]
    assert retried > 0
    assert total(found, "agora_chat.client.retries") == retried
    assert total(found, "agora_chat.client.retries", retry_reason="ServerError") == retried
    assert total(found, "agora_chat.client.recipients", outcome="delivered") == 2000
    splits = [event for event in seen if isinstance(event, BatchSplit)]
    assert splits
    assert total(found, "agora_chat.client.batch_splits", family="users") == len(splits)


async def test_its_own_hook_is_called_after_recording(reader, provider):
    seen = []
    metrics = ClientMetrics(meter_provider=provider, on_event=seen.append)
    metrics(RecipientsSettled(family="rooms", delivered=3, failed=0, unknown=1))
    metrics(LimiterWait(path="/messages/chatrooms", claims=(("rooms", 4),), waited=0.25))
    assert [type(e) for e in seen] == [RecipientsSettled, LimiterWait]
    found = points(reader)
    assert total(found, "agora_chat.client.recipients", outcome="unknown") == 1
    [wait] = found["agora_chat.client.limiter.wait"]
    assert wait.attributes == {"agora_chat.priority": "interactive", "agora_chat.limit": "rooms"}
    assert wait.sum == 0.25
    assert "ClientMetrics" in repr(metrics)


async def test_watch_limits_records_until_cancelled(reader, provider):
    emulator = Emulator(clock=MockClock(start=0.0))
    metrics = ClientMetrics(meter_provider=provider)
    async with emulator.client() as client:
        with pytest.raises(ValueError, match="interval"):
            await metrics.watch_limits(client.limiter, interval=0)
        with anyio.move_on_after(0.05):
            await metrics.watch_limits(client.limiter, interval=0.01)
    found = points(reader)
    assert gauge(found, "agora_chat.client.limiter.limit") == {
        "users": 6000,
        "groups": 20,
        "rooms": 100,
        "send_calls": 100,
        "other": 100,
    }


def test_without_the_extra_the_import_says_what_to_install():
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "import agora_chat_async\n"
        "try:\n"
        "    import agora_chat_async.otel\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    run = subprocess.run(  # noqa: S603 - our own interpreter, a fixed script
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "pip install 'agora-chat-async[otel]'" in run.stdout


def test_the_metric_names_follow_one_vocabulary(reader, provider):
    metrics = ClientMetrics(meter_provider=provider)
    metrics(RecipientsSettled(family="users", delivered=1, failed=0, unknown=0))
    names = Counter(points(reader))
    assert all(name.startswith("agora_chat.client.") for name in names)


def test_the_module_exports_its_one_class_under_its_public_name():
    import agora_chat_async.otel

    assert agora_chat_async.otel.__all__ == ["ClientMetrics"]
    assert ClientMetrics.__module__ == "agora_chat_async.otel"
