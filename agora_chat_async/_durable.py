"""A fan-out that survives its worker: progress recorded in a store, resumable exactly once.

The input must be replayable (a sequence), and is identified by its length and the
SHA-256 of its ids. Every position of it is, in the store:

- *in flight* from just before its request is sent (the record is on disk, or in Redis,
  before the request leaves) until its answer has been recorded;
- then *done* (delivered) or *unknown* (the request may or may not have been
  processed); a failed position is simply no longer in flight: it was certainly not
  delivered.

Started again with the same job and input, the fan-out skips what is done, sends again
what was never sent or failed, and reports what was in flight when the last run stopped
as unknown, with what earlier runs left unknown: never resent, unless the caller
asks (``resend_unknown=True``) after checking. So no recipient is delivered twice by the
library, and none is lost that is not named unknown. The window of uncertainty is the
requests in flight at the crash: at most ``concurrency`` requests' recipients (without it, what
the quota kept in flight: ``InFlight``).
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Literal, Self, final

import anyio
import anyio.lowlevel
import anyio.to_thread

from ._batching import Packer
from ._clock import Clock, SystemClock
from ._exceptions import JobLeaseError, ValidationError
from ._fanout import FanOut, Sender
from ._flight import InFlight
from ._models import SendResult
from ._progress import JobProgress, ProgressStore
from ._screen import Screen
from ._tasks import task_group
from ._validate import check_id

__all__ = ["DurableFanOut", "Job"]


def _fingerprint(ids: Sequence[object]) -> tuple[int, str]:
    digest = hashlib.sha256()
    for recipient in ids:  # what cannot be sent is screened later; it is fingerprinted too
        text = recipient if isinstance(recipient, str) else repr(recipient)
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\n")
    return len(ids), digest.hexdigest()


class _Batch(list[str]):
    """A batch that knows the input positions of its recipients."""

    __slots__ = ("positions",)

    def __init__(self, ids: list[str], positions: list[int]) -> None:
        super().__init__(ids)
        self.positions = positions


@final
class Job:
    """A job's progress, and its one writer: every change is saved before it counts.

    Saves are serialized, and coalesced: a change made while another save runs is written
    by the next one, which also writes every change made until it starts (a store takes
    its snapshot before it awaits). Used by :class:`DurableFanOut` and ``agora-chat
    import`` alike.
    """

    def __init__(
        self,
        store: ProgressStore,
        job: str,
        progress: JobProgress,
        record: Callable[[SendResult], Awaitable[object]] | None = None,
    ) -> None:
        self.store, self.job, self.progress, self.record = store, job, progress, record
        self._lock = anyio.Lock()
        self._changes = self._written = 0

    async def save(self, *, sending: bool = True) -> None:
        """Return once every change made before this call is in the store.

        Raises:
            OSError, JobLeaseError: as the store's ``save`` raises.
        """
        self._changes += 1
        change = self._changes
        async with self._lock:
            if self._written >= change:
                return  # written by a save that started after this change
            if sending:
                self.progress.saved_at = time.time()
            latest = self._changes
            await self.store.save(self.job, self.progress)
            self._written = latest

    async def settle(self, position: int, outcome: Literal["done", "failed", "unknown"]) -> None:
        """One position answered: done, failed (sent again by the next run) or unknown."""
        self.progress.in_flight.discard(position)
        if outcome == "done":
            self.progress.done.add(position)
        elif outcome == "unknown":
            self.progress.unknown.add(position)
        await self.save()

    async def start(self, positions: Sequence[int]) -> None:
        self.progress.in_flight.update(positions)
        await self.save()

    async def finish(self, positions: Sequence[int], part: list[str], result: SendResult) -> None:
        if self.record is not None:
            await self.record(result)  # the caller's record first: it must not lag the store
        progress = self.progress
        for position, recipient in zip(positions, part, strict=True):
            progress.in_flight.discard(position)
            if recipient in result.message_ids:
                progress.done.add(position)
            elif recipient in result.unknown:
                progress.unknown.add(position)
        await self.save()


@final
class _Recording:
    """Records one batch's requests in the job (a :class:`SendObserver`)."""

    __slots__ = ("_job", "_positions")

    def __init__(self, job: Job, positions: list[int]) -> None:
        self._job, self._positions = job, positions

    async def before(self, offset: int, part: list[str]) -> None:
        await self._job.start(self._positions[offset : offset + len(part)])

    async def after(self, offset: int, part: list[str], result: SendResult) -> None:
        await self._job.finish(self._positions[offset : offset + len(part)], part, result)


@final
class _RecordingSender:
    """Sends each batch with a :class:`_Recording` of its positions."""

    __slots__ = ("_job", "_sender")

    def __init__(self, sender: Sender, job: Job) -> None:
        self._sender, self._job = sender, job

    async def send(self, batch: list[str]) -> SendResult:
        assert isinstance(batch, _Batch)  # noqa: S101 - only DurableFanOut makes them
        return await self._sender.send(batch, _Recording(self._job, batch.positions))


@final
class DurableFanOut:
    """A resumable fan-out's results, one :class:`SendResult` per request, in completion order.

    Use it as ``async with client.durable_fan_out(...) as results: async for result in
    results``. After entering, :attr:`unknown` names the recipients that earlier runs
    left unknown (and, with ``resend_unknown=True``, that this run sends again).

    A result is yielded after the store has recorded it, so a per-recipient log written
    from the ``async for`` can lag the store by the results a crash interrupts: give the
    log's writer as ``record`` instead, which is awaited with each result *before* the
    store records it (write, flush and sync there), so that the log never misses a
    recipient the store calls delivered.
    """

    __slots__ = (
        "_clock",
        "_fan_out",
        "_ids",
        "_in_flight",
        "_job",
        "_name",
        "_packer",
        "_progress",
        "_record",
        "_resend",
        "_sender",
        "_stack",
        "_store",
        "_window",
        "delivered_before",
        "remaining",
        "unknown",
    )

    def __init__(
        self,
        sender: Sender,
        packer: Packer,
        ids: Sequence[str],
        *,
        store: ProgressStore,
        job: str,
        resend_unknown: bool = False,
        in_flight: InFlight,
        progress: Callable[[SendResult], object] | None = None,
        record: Callable[[SendResult], Awaitable[object]] | None = None,
        clock: Clock | None = None,
        window: float = 0.0,
    ) -> None:
        if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
            raise ValidationError(
                "to",
                "must be a sequence of ids (a list, or one read from a file): a job "
                "is resumed by position, so its input must be the same when it is read again",
            )
        if not isinstance(store, ProgressStore):
            raise ValidationError("store", "must be a ProgressStore (FileProgressStore, ...)")
        self._sender, self._packer, self._ids = sender, packer, ids
        self._store, self._name = store, check_id("job", job)
        self._resend, self._in_flight, self._progress = resend_unknown, in_flight, progress
        self._record = record
        self._clock: Clock = clock or SystemClock()
        self._window = window
        self._job: Job | None = None
        self._fan_out: FanOut | None = None
        self._stack: AsyncExitStack | None = None
        #: Input positions earlier runs left unknown, with their ids.
        self.unknown: dict[int, str] = {}
        #: How many recipients earlier runs delivered (skipped by this one).
        self.delivered_before = 0
        #: How many input positions this run has to send (after entering): ``0`` when the
        #: job was finished before, in which case it returns at once.
        self.remaining = 0

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("a DurableFanOut can be entered only once")
        stack = self._stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            await self._enter(stack)
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        return self

    async def _enter(self, stack: AsyncExitStack) -> None:
        count, sha256 = await anyio.to_thread.run_sync(_fingerprint, self._ids)
        store, name = self._store, self._name
        await store.acquire(name)
        stack.push_async_callback(self._release)
        if store.heartbeat is not None:
            beats = await stack.enter_async_context(task_group())
            stack.callback(beats.cancel_scope.cancel)  # runs first: before the release
            beats.start_soon(self._beat, store.heartbeat)
        message = self._sender.message_sha256
        progress = await store.load(name)
        if progress is None:
            progress = JobProgress(count=count, sha256=sha256, message=message)
        elif (progress.count, progress.sha256) != (count, sha256):
            raise ValidationError(
                "to",
                f"is not the input job {name!r} was started with (it had "
                f"{progress.count} ids, this has {count}, or their contents differ); "
                "resume a job with the same input, or start another job",
            )
        elif progress.message not in (None, message):
            raise ValidationError(
                "job",
                f"{name!r} was started with another message (its target, body or options "
                "differ): resume it with the message it was started with, or give this "
                "message a job name of its own",
            )
        progress.message = message
        # What was in flight when the last run stopped may or may not have been delivered.
        progress.unknown.update(progress.in_flight)
        progress.in_flight.clear()
        self.unknown = {position: self._ids[position] for position in progress.unknown}
        self.delivered_before = len(progress.done)
        if self._resend:
            progress.unknown.clear()
        job = self._job = Job(store, name, progress, self._record)
        await job.save(sending=False)
        self.remaining = count - len(progress.done) - len(progress.unknown)
        if progress.saved_at is not None and self.remaining:
            # The last worker sent until saved_at: the server still counts that window, which
            # a new limiter knows nothing of. Wait it out instead of meeting refusals.
            await self._clock.sleep(
                min(progress.saved_at + self._window - time.time(), self._window)
            )
        self._fan_out = await stack.enter_async_context(
            FanOut(
                _RecordingSender(self._sender, job),
                self._batches(progress),
                in_flight=self._in_flight,
                progress=self._progress,
            )
        )

    async def _beat(self, interval: float) -> None:
        """Renew the job's lease while it runs; a lost lease stops the next save."""
        while True:
            await anyio.sleep(interval)
            try:
                await self._store.renew(self._name)
            except JobLeaseError:
                return

    async def _release(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._store.release(self._name)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._stack is not None  # noqa: S101 - entered
        return await self._stack.__aexit__(exc_type, exc, tb)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SendResult:
        if self._fan_out is None:
            raise RuntimeError("use `async with client.durable_fan_out(...) as results:` first")
        return await self._fan_out.__anext__()

    async def _reported(self, screen: Screen) -> SendResult | None:
        """The screen's report of duplicates and invalid ids, given to ``record`` first like
        every other result (nothing of it is in the store: a rerun screens them again)."""
        report = screen.report()
        if report is not None and self._record is not None:
            await self._record(report)
        return report

    async def _batches(self, progress: JobProgress) -> AsyncIterator[list[str] | SendResult]:
        """The batches still to send, each knowing its positions; screened as they come
        (``_screen.py``: every position is screened, those done before too, so that a
        later occurrence of an id delivered by an earlier run is still a duplicate)."""
        packer, pending = self._packer, deque[int]()
        done, unknown = progress.done, progress.unknown
        screen = Screen()
        for position, recipient in enumerate(self._ids):
            checked = screen.check(recipient, position)
            if checked is not None and position not in done and position not in unknown:
                try:
                    batches = packer.add(checked, position)
                except ValidationError as error:  # too long to fit any request
                    screen.fail(checked, error)
                else:
                    pending.append(position)
                    if batches:
                        report = await self._reported(screen)
                        if report is not None:
                            yield report
                    for batch in batches:
                        yield _Batch(batch, [pending.popleft() for _ in batch])
            if position % 4096 == 0:
                await anyio.lowlevel.checkpoint()
        report = await self._reported(screen)
        if report is not None:
            yield report
        last = packer.flush()
        if last is not None:
            yield _Batch(last, [pending.popleft() for _ in last])
