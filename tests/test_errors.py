"""Errors as documented, whatever the size of the job: nothing public raises an exception group.

One table: every public coroutine and context manager that sends (sends, fan-outs, durable
fan-outs, imports, uploads, downloads, history), each failure kind (the caller's input, the
limiter, the progress store, the transport, cancellation), at 1 and at 1,500 recipients
where it takes recipients. A task group's ``ExceptionGroup`` reaching the caller fails it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from agora_chat_async import (
    AgoraChatClient,
    ConnectError,
    FileProgressStore,
    JobProgress,
    LimiterStoreError,
    Permit,
    Priority,
    RetryPolicy,
    SendResult,
    SlidingWindowLimiter,
    StaticToken,
    TextBody,
)
from agora_chat_async.testing import Emulator

from .conftest import NO_LIMITS

BODY = TextBody(msg="errors")
NO_RETRY = RetryPolicy(attempts=0, rate_limit_budget=0)


class InputError(ValueError):
    """The caller's own input failed while the library read it."""


class StoreDownError(OSError):
    """The progress store cannot save."""


def ids(count: int) -> list[str]:
    return [f"user-{index:04d}" for index in range(count)]


def failing_input(count: int) -> Iterator[str]:
    """*count* ids, then the caller's generator fails (after every id was read)."""
    yield from ids(count)
    raise InputError("the caller's generator failed")


class FailingSequence(Sequence[str]):
    """A durable job's input whose reading fails at its last id."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            raise InputError("no slices")
        if index >= self.count:
            raise IndexError(index)
        if index == self.count - 1:
            raise InputError("the caller's sequence failed")
        return f"user-{index:04d}"


class FailingLimiter(SlidingWindowLimiter):
    """A limiter whose store refuses every admission after the first *good* ones; or, with
    *cancel*, one that cancels the caller's scope at that admission instead."""

    def __init__(self, good: int, cancel: anyio.CancelScope | None = None) -> None:
        super().__init__(NO_LIMITS)
        self.good, self.cancel = good, cancel

    async def acquire(
        self, claims: Any, *, min_units: int | None = None, priority: Priority = "interactive"
    ) -> Permit:
        if self.good <= 0:
            if self.cancel is None:
                raise LimiterStoreError("the store refused the admission (test)")
            self.cancel.cancel()
            await anyio.sleep(1)  # cancelled here, mid-job
        self.good -= 1
        return await super().acquire(claims, min_units=min_units, priority=priority)


class FailingStore(FileProgressStore):
    """A file store whose saves fail after the first *good* ones."""

    def __init__(self, path: Path, good: int) -> None:
        super().__init__(path)
        self.good = good

    async def save(self, job: str, progress: JobProgress) -> None:
        if self.good <= 0:
            raise StoreDownError("no space left on the device (test)")
        self.good -= 1
        await super().save(job, progress)


def refusing_transport() -> httpx.AsyncClient:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused (test)", request=request)

    return httpx.AsyncClient(transport=httpx.MockTransport(refuse))


async def fan_out(client: AgoraChatClient, to: Any) -> list[SendResult]:
    async with client.fan_out(to, BODY) as results:
        return [result async for result in results]


async def durable(client: AgoraChatClient, to: Any, store: FileProgressStore) -> list[SendResult]:
    async with client.durable_fan_out(to, BODY, job="errors", store=store) as results:
        return [result async for result in results]


def all_accounted(count: int) -> Callable[[object], None]:
    """A send whose requests fail does not raise: every recipient is in its results."""

    def check(returned: object) -> None:
        results = returned if isinstance(returned, list) else [returned]
        assert isinstance(results[0], SendResult)
        assert sum(len(result.failed) + len(result.unknown) for result in results) == count

    return check


Operation = Callable[[AgoraChatClient, int, str, Path], Awaitable[object]]


def recipients_for(kind: str, count: int) -> Any:
    return failing_input(count) if kind == "input" else ids(count)


OPERATIONS: dict[str, Operation] = {
    "send_user_message": lambda client, count, kind, tmp: client.send_user_message(
        recipients_for(kind, count), BODY
    ),
    "fan_out": lambda client, count, kind, tmp: fan_out(client, recipients_for(kind, count)),
    "durable_fan_out": lambda client, count, kind, tmp: durable(
        client,
        FailingSequence(count) if kind == "input" else ids(count),
        FailingStore(tmp / "progress.json", good=1)
        if kind == "store"
        else FileProgressStore(tmp / "progress.json"),
    ),
}
#: Operations on one message or file: no recipients to count.
SINGLE: dict[str, Operation] = {
    "import_user_message": lambda client, count, kind, tmp: client.import_user_message(
        "alice", "bob", BODY
    ),
    "upload_file": lambda client, count, kind, tmp: client.upload_file(b"x" * 100, filename="a"),
    "download_file": lambda client, count, kind, tmp: client.download_file(
        "0a1b2c3d-0000-0000-0000-000000000000", tmp / "out"
    ),
    "get_history_file": lambda client, count, kind, tmp: client.get_history_file("2026120100"),
}


def expected(operation: str, kind: str, count: int) -> type[BaseException] | Callable[..., None]:
    if kind == "input":
        return InputError
    if kind == "limiter":
        return LimiterStoreError
    if kind == "store":
        return StoreDownError
    if kind == "transport":
        return all_accounted(count) if operation in OPERATIONS else ConnectError
    raise AssertionError(kind)


CASES = [
    pytest.param(operation, kind, count, id=f"{operation}-{kind}-{count}")
    for operation in OPERATIONS
    for kind in ("input", "limiter", "transport", "cancellation")
    for count in (1, 1500)
] + [
    pytest.param("durable_fan_out", "store", count, id=f"durable_fan_out-store-{count}")
    for count in (1, 1500)
]
SINGLE_CASES = [
    pytest.param(operation, kind, 1, id=f"{operation}-{kind}")
    for operation in SINGLE
    for kind in ("limiter", "transport", "cancellation")
]


@pytest.mark.parametrize(("operation", "kind", "count"), CASES + SINGLE_CASES)
async def test_every_failure_reaches_the_caller_as_its_documented_type(
    operation: str, kind: str, count: int, tmp_path: Path
) -> None:
    run = {**OPERATIONS, **SINGLE}[operation]
    emulator = Emulator()
    scope = anyio.CancelScope()
    # The limiter fails (or cancels) after a few admissions: mid-job when there are many.
    limiter = FailingLimiter(
        good=0 if count == 1 else 2, cancel=scope if kind == "cancellation" else None
    )
    if kind == "transport":
        client = AgoraChatClient(
            "http://127.0.0.1:9",
            "org",
            "app",
            auth=StaticToken("token"),
            http_client=refusing_transport(),
            retry=NO_RETRY,
            rate_limits=NO_LIMITS,
        )
    elif kind in ("limiter", "cancellation"):
        client = emulator.client(limiter=limiter, retry=NO_RETRY)
    else:
        client = emulator.client(rate_limits=NO_LIMITS, retry=NO_RETRY)
    raised: BaseException | None = None
    returned: object = None
    async with client:
        with scope:
            try:
                returned = await run(client, count, kind, tmp_path)
            except Exception as error:
                raised = error
    assert not isinstance(raised, BaseExceptionGroup), f"grouped: {raised!r}"
    if kind == "cancellation":
        assert scope.cancelled_caught, "the cancellation reached the caller's scope"
        assert raised is None
        return
    want = expected(operation, kind, count)
    if isinstance(want, type):
        assert isinstance(raised, want), f"{raised!r} is not a {want.__name__}"
    else:
        assert raised is None, f"raised {raised!r}"
        want(returned)
