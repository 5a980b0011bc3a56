"""The fan-out engine: one message to any number of recipients, with exact accounting.

Structure (all under one anyio task group, so nothing outlives it)::

    batches: packed() over recipients read lazily (each id validated, packed to the
             cap and 5000 bytes), or batches packed up front (send_*_message)
        -> producer -> unbuffered channel
        -> N workers: limiter -> POST -> per-recipient outcome (413: split and resend halves)
        -> channel of N results
        -> the consumer's ``async for``, in completion order

Memory does not grow with the number of recipients: the producer blocks until a
worker takes its batch, and the workers block until the consumer takes their
results. Leaving the ``async with`` block early (``break``, an exception,
cancellation) cancels the producer and the workers; requests waiting in the
limiter leave its queue having recorded nothing.

Every recipient of every batch ends in exactly one of ``message_ids``,
``failed`` or ``unknown`` of the batch's :class:`SendResult`. After an error
that every later batch would meet too (authentication, 404, the plan's quota),
the remaining batches are reported failed with that error without being sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sized
from contextlib import AsyncExitStack
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Protocol, Self, TypedDict, final

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from ._batching import RECIPIENT_CAPS, Packer, SendEncoding
from ._converter import SendMessageRequest, body_type
from ._events import BatchSplit
from ._exceptions import (
    AgoraChatError,
    AuthenticationError,
    ClientClosedError,
    NotFoundError,
    OutcomeUnknownError,
    PayloadTooLargeError,
    QuotaExhaustedError,
    ValidationError,
    excerpt,
)
from ._flight import InFlight
from ._models import Body, SendResult
from ._permit import Permit
from ._pipeline import Pipeline
from ._rates import Claim, LimitName, Priority, RateLimits, bulk_limit, is_bulk
from ._request import Request
from ._screen import Screen
from ._tasks import task_group
from ._validate import check_id, check_mapping, to_millis

__all__ = [
    "BatchSender",
    "FanOut",
    "MessageOptions",
    "SendObserver",
    "Sender",
    "packed",
]

SEND_PATHS: Final[Mapping[LimitName, str]] = {
    "users": "/messages/users",
    "groups": "/messages/chatgroups",
    "rooms": "/messages/chatrooms",
}
# After one of these, the remaining batches of a send would fail the same way: stop sending.
_FATAL: Final = (AuthenticationError, ClientClosedError, NotFoundError, QuotaExhaustedError)


class MessageOptions(TypedDict, total=False):
    """The options of every send, beside its recipients, body and priority.

    Given as keywords: ``send_user_message(ids, body, sender="bot", ext={...})``.
    """

    sender: str | None
    """The ``from`` user; the service uses ``admin`` when omitted."""
    ext: Mapping[str, Any] | None
    """Extension fields (a JSON object); never sent as ``null``."""
    sync_device: bool
    """Also deliver to the sender's other devices."""
    online_only: bool
    """Deliver only to users online now (``routetype: ROUTE_ONLINE``)."""
    msg_timestamp: datetime | int | None
    """The message time, an aware ``datetime`` or Unix milliseconds."""
    retry_unknown: bool
    """Also retry requests whose outcome is unknown (read timeouts, 500s), accepting
    that a recipient may receive the message twice."""


_OPTIONS: Final = frozenset(MessageOptions.__annotations__)


class SendObserver(Protocol):
    """Told of each request of a batch: its recipients are ``batch[offset:offset + len(part)]``."""

    async def before(self, offset: int, part: list[str]) -> None:
        """The request is about to be sent (raising stops it: nothing is sent)."""

    async def after(self, offset: int, part: list[str], result: SendResult) -> None:
        """The request's outcome, every recipient in one bucket."""


class BatchSender(Protocol):
    """What a :class:`FanOut` sends its batches with (a :class:`Sender`, or one wrapping it)."""

    async def send(self, batch: list[str]) -> SendResult:
        """Send one batch; every recipient ends in exactly one bucket of the result."""
        ...


@final
class Sender:
    """Sends the batches of one message, and remembers an error that ends the fan-out."""

    __slots__ = (
        "_encoding",
        "_fatal",
        "_pipeline",
        "_priority",
        "_retry_unknown",
        "kind",
    )

    def __init__(
        self,
        pipeline: Pipeline,
        kind: LimitName,
        template: SendMessageRequest,
        *,
        retry_unknown: bool = False,
        priority: Priority = "interactive",
    ) -> None:
        self._pipeline, self.kind, self._priority = pipeline, kind, priority
        self._retry_unknown = retry_unknown
        self._fatal: AgoraChatError | None = None
        self._encoding = SendEncoding(template)

    @classmethod
    def for_message(
        cls,
        pipeline: Pipeline,
        kind: LimitName,
        body: Body,
        options: MessageOptions,
        *,
        level: str | None = None,
        priority: Priority = "interactive",
    ) -> Sender:
        """The sender of *body* with *options* to recipients of *kind*.

        Raises:
            ValidationError: an unknown option, or an invalid body or option.
        """
        if not _OPTIONS.issuperset(options):
            unknown = sorted(set(options) - _OPTIONS)
            raise ValidationError(
                unknown[0],
                f"is not a message option; the options are {', '.join(sorted(_OPTIONS))}",
            )
        sender, ext = options.get("sender"), options.get("ext")
        timestamp = options.get("msg_timestamp")
        template = SendMessageRequest(
            to=[],
            type=body_type(body),
            body=body,
            sender=check_id("sender", sender) if sender is not None else None,
            sync_device=True if options.get("sync_device") else None,
            routetype="ROUTE_ONLINE" if options.get("online_only") else None,
            ext=check_mapping("ext", ext) if ext is not None else None,
            msg_timestamp=to_millis("msg_timestamp", timestamp) if timestamp is not None else None,
            chatroom_msg_level=level,
        )
        return cls(
            pipeline,
            kind,
            template,
            retry_unknown=bool(options.get("retry_unknown", False)),
            priority=priority,
        )

    @property
    def message_sha256(self) -> str:
        """The SHA-256 of what this sender sends to every batch: the recipients' kind, the
        body and every option, as encoded (a durable job is bound to it)."""
        digest = hashlib.sha256(self.kind.encode())
        digest.update(b"\n" + self._encoding.message)
        return digest.hexdigest()

    def packer(self, rate_limits: RateLimits) -> Packer:
        """A packer for this message: the documented cap, the rate's limit, 5000 bytes,
        and batches that tile the windows this priority may fill (bulk leaves the
        headroom free)."""
        cap = RECIPIENT_CAPS[self.kind]
        rate = rate_limits.rate(self.kind)
        window = None
        if rate is not None:
            cap = min(cap, rate.limit)
            window = rate.limit
            if is_bulk(self._priority):
                window = bulk_limit(rate.limit, rate_limits.bulk_headroom)
        return Packer(cap=cap, base_size=self._encoding.base_size, window=window)

    async def send(self, batch: list[str], observer: SendObserver | None = None) -> SendResult:
        """Send one batch; every recipient ends in exactly one bucket of the result.

        The limiter may grant fewer recipients than the batch holds when its window
        has room for only a part of it: that part is sent at once and the rest in the
        next request, so every window fills exactly. *observer* is told of each request:
        before it is sent (and may refuse, by raising, to send it) and after its answer.
        """
        path = SEND_PATHS[self.kind]
        result = SendResult()
        offset = 0
        while batch:
            if self._fatal is not None:
                rest = SendResult(failed=dict.fromkeys(batch, self._fatal))
                return result.merge(self._pipeline.settled(self.kind, rest))
            permit = await self._pipeline.acquire(
                self._claims(len(batch)), where=path, min_units=1, priority=self._priority
            )
            part, batch = batch[: permit.units], batch[permit.units :]
            if observer is not None:
                try:
                    await observer.before(offset, part)
                except BaseException:
                    permit.refund()  # never sent
                    raise
            sent = self._pipeline.settled(self.kind, await self._send(part, permit))
            if observer is not None:
                await observer.after(offset, part, sent)
            result = result.merge(sent)
            offset += len(part)
        return result

    def _claims(self, recipients: int) -> tuple[Claim, ...]:
        return ((self.kind, recipients), ("send_calls", 1))

    async def _send(self, batch: list[str], permit: Permit | None = None) -> SendResult:
        if self._fatal is not None:
            return SendResult(failed=dict.fromkeys(batch, self._fatal))
        content = self._encoding.encode(batch)
        try:
            data = await self._pipeline.request(
                Request(
                    method="POST",
                    path=SEND_PATHS[self.kind],
                    claims=self._claims(len(batch)),
                    content=content,
                    idempotent=False,
                    retry_unknown=self._retry_unknown,
                    priority=self._priority,
                ),
                permit=permit,
            )
        except OutcomeUnknownError as exc:
            return SendResult(unknown=dict.fromkeys(batch, exc))
        except PayloadTooLargeError as exc:
            if len(batch) == 1:
                return SendResult(failed={batch[0]: exc})
            self._pipeline.emit(BatchSplit(path=SEND_PATHS[self.kind], size=len(batch)))
            half = len(batch) // 2
            first = await self._send(batch[:half])
            return first.merge(await self._send(batch[half:]))
        except ValidationError:
            raise
        except AgoraChatError as exc:
            if isinstance(exc, _FATAL):
                self._fatal = exc
            return SendResult(failed=dict.fromkeys(batch, exc))
        return _outcome(batch, data)


def _outcome(batch: list[str], data: Mapping[str, object]) -> SendResult:
    ids = data.get("data")
    if not isinstance(ids, Mapping):
        unknown = OutcomeUnknownError(
            "the service accepted the send (HTTP 200) but its answer has no 'data' "
            f"mapping of message ids: {excerpt(str(data))}"
        )
        return SendResult(unknown=dict.fromkeys(batch, unknown))
    delivered: dict[str, str] = {}
    missing: dict[str, OutcomeUnknownError] = {}
    for recipient in batch:
        message_id = ids.get(recipient)
        if isinstance(message_id, str | int) and not isinstance(message_id, bool):
            delivered[recipient] = str(message_id)
        else:
            missing[recipient] = OutcomeUnknownError(
                f"the service accepted the send but returned no message id for {recipient!r}"
            )
    return SendResult(message_ids=delivered, unknown=missing)


async def packed(
    recipients: Iterable[object] | AsyncIterable[object], packer: Packer
) -> AsyncIterator[list[str] | SendResult]:
    """The batches of an unbounded input, read lazily, each id screened as it comes
    (``_screen.py``): what is screened out (duplicates, ids that cannot be sent) comes as
    a :class:`SendResult` before the batch that follows it, or last."""
    screen = Screen()

    def add(recipient: object, index: int) -> list[list[str]]:
        checked = screen.check(recipient, index)
        if checked is None:
            return []
        try:
            return packer.add(checked, index)
        except ValidationError as error:  # too long to fit any request
            screen.fail(checked, error)
            return []

    async def flushed(batches: list[list[str]]) -> AsyncIterator[list[str] | SendResult]:
        report = screen.report()
        if report is not None:
            yield report
        for batch in batches:
            yield batch

    index = 0
    if isinstance(recipients, AsyncIterable):
        async for recipient in recipients:
            if batches := add(recipient, index):
                async for item in flushed(batches):
                    yield item
            index += 1
    else:
        for recipient in recipients:
            if batches := add(recipient, index):
                async for item in flushed(batches):
                    yield item
            index += 1
    last = packer.flush()
    async for item in flushed([last] if last is not None else []):
        yield item


@final
class FanOut:
    """The results of a fan-out, one :class:`SendResult` per request, in completion order.

    Use it as ``async with client.fan_out(...) as results: async for result in results``.
    Leaving the block early cancels what is still running.
    """

    __slots__ = (
        "_batches",
        "_in_flight",
        "_progress",
        "_results",
        "_sender",
        "_stack",
        "_task_group",
    )

    def __init__(
        self,
        sender: BatchSender,
        batches: Iterable[list[str]] | AsyncIterable[list[str] | SendResult],
        *,
        in_flight: InFlight,
        progress: Callable[[SendResult], object] | None = None,
    ) -> None:
        self._sender, self._batches = sender, batches
        self._in_flight, self._progress = in_flight, progress
        self._stack: AsyncExitStack | None = None
        self._results: ObjectReceiveStream[SendResult | Exception] | None = None
        self._task_group: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("a FanOut can be entered only once")
        stack = self._stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            self._task_group = await stack.enter_async_context(task_group())
            batches_in, batches_out = anyio.create_memory_object_stream[list[str]](0)
            workers = self._in_flight.cap
            if isinstance(self._batches, Sized):  # a known list: no more workers than batches
                workers = max(1, min(workers, len(self._batches)))
            results_in, results_out = anyio.create_memory_object_stream[SendResult | Exception](
                workers
            )
            self._results = results_out
            stack.push_async_callback(results_out.aclose)
            async with batches_in, batches_out, results_in:
                self._task_group.start_soon(self._produce, batches_in.clone(), results_in.clone())
                for _ in range(workers):
                    self._task_group.start_soon(self._work, batches_out.clone(), results_in.clone())
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._stack is not None  # noqa: S101 - entered
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()
        # The body's own exception (or cancellation) is not the task group's business: the
        # workers never raise (their errors travel through the results channel), so the group
        # is closed on its own and the body's exception propagates unwrapped.
        await self._stack.__aexit__(None, None, None)
        return None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SendResult:
        if self._results is None:
            raise RuntimeError("use `async with client.fan_out(...) as results:` first")
        try:
            item = await self._results.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None
        if isinstance(item, Exception):
            raise item
        if self._progress is not None:
            self._progress(item)
        return item

    async def _produce(
        self,
        batches: ObjectSendStream[list[str]],
        results: ObjectSendStream[SendResult | Exception],
    ) -> None:
        async with batches, results:
            try:
                if isinstance(self._batches, AsyncIterable):
                    async for batch in self._batches:
                        if isinstance(batch, SendResult):  # ids screened out, not sent
                            await results.send(batch)
                        else:
                            await batches.send(batch)
                else:
                    for batch in self._batches:
                        await batches.send(batch)
            except Exception as error:  # the input's own failure: to the caller
                await results.send(error)
            finally:
                aclose = getattr(self._batches, "aclose", None)
                if aclose is not None:  # our lazy packer: finish it now, not at shutdown
                    with anyio.CancelScope(shield=True):
                        await aclose()

    async def _work(
        self,
        batches: ObjectReceiveStream[list[str]],
        results: ObjectSendStream[SendResult | Exception],
    ) -> None:
        async with batches, results:
            while True:
                # Past the quota's need (_flight.py), a worker waits before taking a batch.
                async with self._in_flight:
                    try:
                        batch = await batches.receive()
                    except anyio.EndOfStream:
                        return
                    try:
                        result: SendResult | Exception = await self._sender.send(batch)
                    except Exception as error:  # raised to the caller, in order
                        result = error
                await results.send(result)
                if isinstance(result, Exception):
                    return
