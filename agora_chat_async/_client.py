"""AgoraChatClient: the public entry point, one thin coroutine per documented endpoint.

Each endpoint validates its arguments, describes its request with the wire
shapes of ``_converter.py``, hands it to the pipeline (``_pipeline.py``) and
turns the answer into a public ``attrs`` class. None of them touches httpx.

It is the one module over 600 lines, on purpose: it is the public API's surface, one
method per endpoint of the reference pages, and most of its lines are the docstrings
the API reference is generated from. What the endpoints share lives elsewhere (the
pipeline, the fan-out, the files, the converter), so each method stays thin.
"""

from __future__ import annotations

import enum
import mimetypes
import os
import random
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, Final, Literal, Self, Unpack, final
from urllib.parse import quote

import anyio
import anyio.to_thread
import attrs
import httpx

from ._auth import Auth
from ._batching import check_content_size, pack_recipients
from ._broadcasts import Broadcasts
from ._clock import Clock, SystemClock
from ._converter import (
    DeleteConversationRequest,
    DeleteConversationResponse,
    HistoryLinkResponse,
    ImportMessageRequest,
    ImportResponse,
    RecallRequest,
    RecallResponse,
    UploadResponse,
    body_type,
    dumps,
)
from ._durable import DurableFanOut
from ._events import EventHook
from ._exceptions import (
    AgoraChatError,
    OutcomeUnknownError,
    ValidationError,
)
from ._fanout import FanOut, MessageOptions, Sender, packed
from ._files import FileSource, open_upload, save
from ._flight import MAX_IN_FLIGHT, InFlight
from ._history import MAX_LINE_BYTES, HistoryStream
from ._limits import Limiter, SlidingWindowLimiter
from ._manage import MessageManagement
from ._members import MemberSends
from ._models import (
    Body,
    ChatType,
    HistoryFile,
    ImageSize,
    ImportedMessage,
    RecallResult,
    RoomMessageLevel,
    SendResult,
    UploadedFile,
)
from ._pipeline import Pipeline
from ._pool import pooled_transport
from ._progress import ProgressStore
from ._rates import LIMIT_NAMES, LimitName, Priority, RateLimits
from ._request import Request
from ._responses import ResponseBody, unreadable
from ._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from ._transport import HTTPTransport
from ._validate import check_aware, check_choice, check_id, recipients, to_millis
from ._version import __version__

__all__ = ["DEFAULT_TIMEOUT", "AgoraChatClient"]

#: Connect within 5 s; every other phase (read, write, pool) within 30 s.
DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=5.0)


class _Default(enum.Enum):
    """The default of a keyword whose absence differs from every value it can be given."""

    TIMEOUT = "DEFAULT_TIMEOUT"

    def __repr__(self) -> str:
        return self.value


#: The documented maximum size of an uploaded file (10 MB, read as 10,000,000 bytes).
USER_AGENT: Final = f"agora-chat-async/{__version__} httpx/{httpx.__version__}"

_LEVELS: Final = ("high", "normal", "low")
_CHAT_TYPES: Final = ("chat", "groupchat", "chatroom")


def _check_base_url(value: str) -> str:
    url = httpx.URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValidationError(
            "base_url", f"must be an http(s) URL such as 'https://a1.easemob.com', got {value!r}"
        )
    return str(url).rstrip("/")


def _check_name(field: str, value: str) -> str:
    check_id(field, value)
    if "/" in value:
        raise ValidationError(field, f"must not contain '/', got {value!r}")
    return value


@final
class AgoraChatClient(Broadcasts, MemberSends, MessageManagement):
    """An async client for the Agora Chat message REST API of one app.

    The sends, fan-outs, files, history, recall, deletion and imports are defined here;
    broadcasts in ``_broadcasts.py``, messages to selected members in ``_members.py``,
    edits, batch recalls, roaming deletions and offline status in ``_manage.py``.

    Args:
        base_url: the REST host with its scheme, for example ``"https://a1.easemob.com"``.
        org_name: the org name from the console.
        app_name: the app name from the console.
        auth: a :class:`StaticToken`, :class:`ClientCredentials` or :class:`AgoraAppToken`.
        rate_limits: the quotas to stay within; the documented ones by default.
        limiter: a custom :class:`Limiter` (for example one shared between
            processes), which you close yourself (:meth:`aclose` closes only what the
            client made); by default a :class:`SlidingWindowLimiter` over ``rate_limits``.
        http_client: your own ``httpx.AsyncClient``; you then close it yourself. Give
            it ``transport=pooled_transport()`` for a pool that reuses its connections
            under bursts (httpx's own opens new ones: a handshake each).
        timeout: request timeouts for the client this one creates (refused with
            ``http_client``: set them on it).
        clock: where the token providers, the retry backoff and the limiter the client
            makes read time (by default the event loop's, or the given limiter's). A
            ``limiter=`` on another clock is refused: give both the same one.
        on_event: called with every :class:`Event` (requests, waits, refusals,
            retries, splits), for metrics. An exception it raises is logged (logger
            ``agora_chat_async``, with its traceback) and changes nothing else.
        retry: how requests that were certainly not processed (429, 503, refused
            connections) are retried; ``RetryPolicy(attempts=0, rate_limit_budget=0)``
            switches it off.
        rng: the random source of the retries' jitter; give a seeded
            ``random.Random(seed)`` for reproducible tests.

    Use it as an async context manager, or call :meth:`aclose` when done::

        async with AgoraChatClient(
            "https://a1.easemob.com", "org", "app", auth=StaticToken(token)
        ) as client:
            result = await client.send_user_message(["alice", "bob"], TextBody(msg="hi"))
            result.raise_for_failures()

    Raises:
        ValidationError: an argument is malformed, both ``rate_limits`` and
            ``limiter`` were given, ``timeout`` with ``http_client``, ``clock`` with a
            limiter on another clock, or the limiter counts another app's quota.
    """

    def __init__(
        self,
        base_url: str,
        org_name: str,
        app_name: str,
        *,
        auth: Auth,
        rate_limits: RateLimits | None = None,
        limiter: Limiter | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout | float | _Default | None = _Default.TIMEOUT,
        clock: Clock | None = None,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        on_event: EventHook | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(auth, Auth):
            raise ValidationError(
                "auth", "must be a StaticToken, ClientCredentials or AgoraAppToken"
            )
        if limiter is not None and rate_limits is not None:
            raise ValidationError("rate_limits", "give either rate_limits or a limiter, not both")
        if http_client is not None and timeout is not _Default.TIMEOUT:
            raise ValidationError(
                "timeout",
                "applies only to the httpx client this one creates; with http_client=, "
                "set it there: httpx.AsyncClient(timeout=...)",
            )
        self._base_url = _check_base_url(base_url)
        self._org_name = _check_name("org_name", org_name)
        self._app_name = _check_name("app_name", app_name)
        if clock is not None and limiter is not None and limiter.clock not in (None, clock):
            raise ValidationError(
                "clock",
                f"the limiter given waits on its own clock ({limiter.clock!r}), not this one: "
                "give both the same clock (SlidingWindowLimiter(..., clock=clock)), or "
                "leave clock= out",
            )
        if clock is None:
            clock = (limiter.clock if limiter is not None else None) or SystemClock()
        self._limiter = limiter or SlidingWindowLimiter(rate_limits, clock=clock)
        self._owns_limiter = limiter is None
        self._limiter.bind_app(self._org_name, self._app_name)
        owns_http = http_client is None
        if http_client is None:
            http_client = httpx.AsyncClient(
                transport=pooled_transport(),
                timeout=DEFAULT_TIMEOUT if timeout is _Default.TIMEOUT else timeout,
                headers={"User-Agent": USER_AGENT},
                follow_redirects=False,
            )
        transport = HTTPTransport(
            base=f"{self._base_url}/{quote(self._org_name)}/{quote(self._app_name)}",
            http=http_client,
            owns_http=owns_http,
            now=clock.now,
        )
        self._pipeline = Pipeline(
            transport=transport,
            auth=auth,
            limiter=self._limiter,
            clock=clock,
            retry=retry,
            on_event=on_event,
            rng=rng,
        )
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"AgoraChatClient({self._base_url!r}, {self._org_name!r}, {self._app_name!r}, "
            f"limiter={self._limiter!r})"
        )

    @property
    def limiter(self) -> Limiter:
        """The limiter every request of this client passes through."""
        return self._limiter

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close what this client made: its HTTP client and its limiter. What it was given
        (``http_client=``, ``limiter=``) stays open: its owner closes it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._pipeline.aclose()
        finally:
            if self._owns_limiter:
                await self._limiter.aclose()

    # -- sending ---------------------------------------------------------------------------------

    async def send_user_message(
        self,
        to: str | Iterable[str],
        body: Body,
        *,
        priority: Priority = "interactive",
        **options: Unpack[MessageOptions],
    ) -> SendResult:
        """Send one message to users (``POST /messages/users``).

        Recipients are deduplicated, packed into requests of at most 600 users
        and 5000 bytes, and paced by the ``users`` limit (6000 recipients a
        minute by default). Failures of individual requests do not raise: every
        recipient ends up in exactly one of ``message_ids``, ``failed`` or
        ``unknown`` of the result; call ``raise_for_failures()`` to raise.

        Args:
            to: one user id or an iterable of them.
            body: the message: :class:`TextBody`, :class:`ImageBody`, ... .
            priority: ``"interactive"`` (someone is waiting: it never queues behind
                bulk work) or ``"bulk"`` (a campaign: it leaves the interactive
                headroom free, like :meth:`fan_out`).
            **options: the :class:`MessageOptions` (``sender``, ``ext``,
                ``sync_device``, ``online_only``, ``msg_timestamp``, ``retry_unknown``).

        Raises:
            ValidationError: an argument is invalid (nothing was sent), including
                a body plus ext over 3000 bytes.
        """
        return await self._send("users", to, body, None, priority=priority, options=options)

    async def send_group_message(
        self,
        to: str | Iterable[str],
        body: Body,
        *,
        priority: Priority = "interactive",
        **options: Unpack[MessageOptions],
    ) -> SendResult:
        """Send one message to chat groups (``POST /messages/chatgroups``).

        As :meth:`send_user_message`, with at most 3 groups per request and the
        ``groups`` limit (20 groups a second per app by default).

        Raises:
            ValidationError: an argument is invalid; nothing was sent.
        """
        return await self._send("groups", to, body, None, priority=priority, options=options)

    async def send_room_message(
        self,
        to: str | Iterable[str],
        body: Body,
        *,
        level: RoomMessageLevel | None = None,
        priority: Priority = "interactive",
        **options: Unpack[MessageOptions],
    ) -> SendResult:
        """Send one message to chat rooms (``POST /messages/chatrooms``).

        As :meth:`send_user_message` (including ``priority``), with at most 10 rooms
        per request, the ``rooms`` limit (100 rooms a second by default) and an
        optional message ``level`` (``"high"``, ``"normal"`` or ``"low"``; wire
        ``chatroom_msg_level``).

        Raises:
            ValidationError: an argument is invalid; nothing was sent.
        """
        return await self._send("rooms", to, body, level, priority=priority, options=options)

    def fan_out(
        self,
        to: Iterable[str] | AsyncIterable[str],
        body: Body,
        *,
        target: Literal["users", "groups", "rooms"] = "users",
        level: RoomMessageLevel | None = None,
        concurrency: int | None = None,
        progress: Callable[[SendResult], object] | None = None,
        **options: Unpack[MessageOptions],
    ) -> FanOut:
        """Send one message to an unbounded stream of users, groups or rooms.

        Recipients are read lazily from *to* (an iterable or an async iterable),
        packed into batches and sent through the limiter, as bulk work, with as
        many requests in flight as the quota needs at the round trip measured (a
        window's requests at once, more when a round trip is longer than the
        window: :meth:`in_flight`), at most *concurrency* if given; the result is a
        :class:`FanOut`, an async iterator of one :class:`SendResult` per request, in
        completion order. Its input is screened as it comes (docs/endpoints.md, "Input
        as users give it"): an id named twice is sent once and counted in the results'
        ``duplicates``; an id that cannot be sent (empty, blank, not a string, too long)
        fails on its own, in ``failed`` with its input position, and the rest go on. So
        memory grows only with the distinct ids seen (about 100 bytes each)::

            async with client.fan_out(read_ids(), TextBody(msg="hi")) as results:
                async for result in results:
                    record(result.message_ids, result.failed, result.unknown)

        Leaving the block early cancels the requests still waiting or running.
        *progress*, if given, is called with each result as it is yielded.
        *options* are the :class:`MessageOptions`; ``retry_unknown=True`` also
        retries requests whose outcome is unknown (a read timeout, a 500),
        accepting that a recipient may get the message twice.

        Raises:
            ValidationError: an argument is invalid (before anything is sent).
        """
        kind: LimitName = check_choice("target", target, ("users", "groups", "rooms"))
        sending = self._sender(kind, body, level, "bulk", options)
        if isinstance(to, str | bytes):
            raise ValidationError("to", "must be an iterable of ids, not a single string")
        packer = sending.packer(self._limiter.rate_limits)
        gate = self.in_flight(kind, units=packer.cap, concurrency=concurrency)
        return FanOut(sending, packed(to, packer), in_flight=gate, progress=progress)

    def in_flight(
        self, limit: LimitName = "other", *, units: int = 1, concurrency: int | None = None
    ) -> InFlight:
        """A gate for bulk work of your own: as many requests at once as the quota needs.

        Requests of *units* units of *limit* (``"users"``, ..., ``"other"`` for every
        endpoint but the sends) pass ``async with gate:`` while fewer are in flight than
        the quota can use at the round trip this client measures: a whole window's
        requests (up to 20), or the rate times the round trip when that is more, plus
        one; at most *concurrency* (100, the connections the client keeps, by default).
        ``fan_out`` and ``durable_fan_out`` use one; so does ``agora-chat import``::

            gate = client.in_flight("other")

            async def import_one(line):
                async with gate:
                    await client.import_user_message(line.sender, line.target, line.body)

        Raises:
            ValidationError: *concurrency* is not a positive int, or *limit* is unknown.
        """
        if concurrency is not None and (type(concurrency) is not int or concurrency < 1):
            raise ValidationError("concurrency", f"must be a positive int, got {concurrency!r}")
        name: LimitName = check_choice("limit", limit, LIMIT_NAMES)
        rate = self._limiter.rate_limits.rate(name)
        limit_units, per = (MAX_IN_FLIGHT, 1.0) if rate is None else (rate.limit, rate.per)
        return InFlight(
            self._pipeline.round_trips,
            limit=limit_units,
            per=per,
            units=units,
            concurrency=concurrency,
        )

    def durable_fan_out(
        self,
        to: Sequence[str],
        body: Body,
        *,
        job: str,
        store: ProgressStore,
        resend_unknown: bool = False,
        target: Literal["users", "groups", "rooms"] = "users",
        level: RoomMessageLevel | None = None,
        concurrency: int | None = None,
        progress: Callable[[SendResult], object] | None = None,
        record: Callable[[SendResult], Awaitable[object]] | None = None,
        **options: Unpack[MessageOptions],
    ) -> DurableFanOut:
        """:meth:`fan_out`, resumable: a job that survives the worker running it.

        *store* (a :class:`FileProgressStore`, ...) keeps the progress of *job* over *to*,
        a replayable sequence of ids: every request's recipients are recorded in flight
        before it is sent, then delivered or unknown. Started again with the same job
        and input (after a crash, a kill, a redeploy), it skips what was delivered, sends
        again what certainly was not, and names what was in flight at the crash in
        :attr:`DurableFanOut.unknown`, unsent unless ``resend_unknown=True``.
        *record*, if given, is awaited with each result before the store records it: the
        place to write a per-recipient log that must never lag the store. A job resumed
        within a window of its last send first waits for that window to pass (the server
        still counts it; a new limiter cannot know); a finished job returns at once
        (:attr:`DurableFanOut.remaining` is ``0``). Its input is screened like
        :meth:`fan_out`'s, every run: duplicates counted, invalid ids failed alone. A job
        is bound to its message: the same *job* with another target, body or option is
        refused before anything is sent::

            store = FileProgressStore("spring-sale.progress")
            async with client.durable_fan_out(ids, body, job="spring-sale", store=store) as results:
                for position, user in results.unknown.items():
                    print("may or may not have received it:", user)
                async for result in results:
                    record(result)

        Raises:
            ValidationError: an argument is invalid; *to* is not a sequence, or not the
                input *job* was started with (its size or contents differ), or *job* was
                started with another message (field ``"job"``: give this one its own name).
            OSError: the store cannot be written (sending stops: nothing is sent unrecorded).
        """
        kind: LimitName = check_choice("target", target, ("users", "groups", "rooms"))
        sending = self._sender(kind, body, level, "bulk", options)
        limits = self._limiter.rate_limits
        rate = limits.rate(kind)
        packer = sending.packer(limits)
        return DurableFanOut(
            sending,
            packer,
            to,
            store=store,
            job=job,
            resend_unknown=resend_unknown,
            in_flight=self.in_flight(kind, units=packer.cap, concurrency=concurrency),
            progress=progress,
            record=record,
            clock=self._pipeline.clock,
            window=0.0 if rate is None else rate.per + limits.margin,
        )

    def _sender(
        self,
        kind: LimitName,
        body: Body,
        level: str | None,
        priority: Priority,
        options: MessageOptions,
    ) -> Sender:
        if level is not None:
            check_choice("level", level, _LEVELS)
            if kind != "rooms":
                raise ValidationError("level", "applies to chat room messages only")
        return Sender.for_message(
            self._pipeline,
            kind,
            body,
            options,
            level=level,
            priority=priority,
        )

    async def _send(
        self,
        kind: LimitName,
        to: str | Iterable[str],
        body: Body,
        level: str | None,
        *,
        priority: Priority,
        options: MessageOptions,
    ) -> SendResult:
        targets, duplicates = recipients("to", to)
        sending = self._sender(kind, body, level, priority, options)
        # Pack up front: an id that can never fit is refused before anything is sent, and
        # a single request (the web handler's case) skips the fan-out machinery.
        packer = sending.packer(self._limiter.rate_limits)
        batches = list(pack_recipients(targets, packer))
        if len(batches) == 1:
            result = await sending.send(batches[0])
            return attrs.evolve(result, duplicates=duplicates) if duplicates else result
        delivered: dict[str, str] = {}
        failed: dict[str, AgoraChatError] = {}
        unknown: dict[str, OutcomeUnknownError] = {}
        gate = self.in_flight(kind, units=packer.cap)
        async with FanOut(sending, batches, in_flight=gate) as results:
            async for result in results:
                delivered.update(result.message_ids)
                failed.update(result.failed)
                unknown.update(result.unknown)
        return SendResult(
            message_ids=delivered, failed=failed, unknown=unknown, duplicates=duplicates
        )

    # -- files -----------------------------------------------------------------------------------

    async def upload_file(
        self,
        file: FileSource,
        *,
        filename: str | None = None,
        restrict_access: bool = False,
        thumbnail_size: ImageSize | None = None,
    ) -> UploadedFile:
        """Upload a file for an image, audio, video or file message (``POST /chatfiles``).

        Args:
            file: a path (streamed from disk, never read whole), ``bytes``, or a
                binary file object.
            filename: the name to store; defaults to the path's or stream's name.
            restrict_access: require the returned ``share_secret`` to download it.
            thumbnail_size: the thumbnail's size for images over 10 KB (the
                service's default is 170 x 170).

        Returns:
            The stored file's ``uuid``, ``url`` (for a body) and ``share_secret``.

        Raises:
            ValidationError: the path is not a regular file, or the file is
                larger than 10 MB; nothing was sent.
            APIError, TransportError: the upload failed.
        """
        if thumbnail_size is not None and not isinstance(thumbnail_size, ImageSize):
            raise ValidationError("thumbnail_size", "must be an ImageSize(width, height)")
        data: dict[str, str] = {}
        if thumbnail_size is not None:
            data = {
                "thumbnail-width": str(thumbnail_size.width),
                "thumbnail-height": str(thumbnail_size.height),
            }
        headers = {"restrict-access": "true"} if restrict_access else {}
        async with open_upload(file, filename) as (name, stream):
            if not mimetypes.inited:  # the first use reads the system's mime.types files
                await anyio.to_thread.run_sync(mimetypes.init)
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
            answer = await self._pipeline.request_as(
                Request(
                    method="POST",
                    path="/chatfiles",
                    # Each upload stores a new file: after an ambiguous failure, one may be
                    # stored already (docs/reliability.md, "Files"): never repeated here.
                    idempotent=False,
                    files={"file": (name, stream, content_type)},
                    data=data,
                    headers=headers,
                ),
                UploadResponse,
            )
        entity = answer.entities[0]
        return UploadedFile(
            uuid=entity.uuid,
            url=f"{self._pipeline.base}/chatfiles/{entity.uuid}",
            share_secret=entity.share_secret,
            type=entity.type,
        )

    async def download_file(
        self,
        uuid: str,
        destination: str | os.PathLike[str] | IO[bytes],
        *,
        share_secret: str | None = None,
        thumbnail: bool = False,
        progress: Callable[[int, int | None], object] | None = None,
    ) -> int:
        """Download a file, or its thumbnail, to a path or a binary stream.

        A path is written through a temporary file in the same directory and
        renamed only when the download is complete, so a failure leaves no
        partial file. Returns the number of bytes written. *progress*, if given,
        is called after each chunk with the bytes written so far and the total
        the service announced (``None`` when it did not).

        Raises:
            ValidationError: ``uuid`` is empty.
            NotFoundError: no such file; AuthenticationError or ForbiddenError:
                a missing or wrong ``share_secret``.
            TransportError: the download was interrupted.
        """
        check_id("uuid", uuid)
        headers = {"Accept": "application/octet-stream"}
        if share_secret is not None:
            headers["share-secret"] = share_secret
        if thumbnail:
            headers["thumbnail"] = "true"
        request = Request(
            method="GET",
            path=f"/chatfiles/{quote(uuid, safe='')}",
            idempotent=True,  # a read
            headers=headers,
        )
        async with self._pipeline.stream(request) as body:
            return await save(body, destination, progress)

    # -- history ---------------------------------------------------------------------------------

    async def get_history_file(self, hour: datetime | str) -> HistoryFile:
        """Get the download link of one hour of message history (``GET /chatmessages/{time}``).

        Args:
            hour: an aware ``datetime`` (its UTC hour is used) or a ``yyyyMMddHH`` string.

        Raises:
            ValidationError: a naive datetime or a malformed string.
            NotFoundError: no history for that hour; APIError: other refusals.
            UnexpectedResponseError: the answer carries no URL.
        """
        answer = await self._pipeline.request_as(
            Request(method="GET", path=f"/chatmessages/{_history_hour(hour)}", idempotent=True),
            HistoryLinkResponse,
        )
        url = answer.url
        return HistoryFile.from_url(url)

    def iter_history(
        self, hour: datetime | str, *, max_line_bytes: int = MAX_LINE_BYTES
    ) -> HistoryStream:
        """Stream the records of one hour of history, one :class:`HistoryRecord` at a time.

        The file is fetched with :meth:`get_history_file`, downloaded as a
        stream, gunzipped when its first bytes say gzip (a piece at a time, whatever
        its compression ratio) and decoded line by line, so memory does not grow with
        the file: it is bounded by *max_line_bytes* (16 MiB), the longest record read::

            async with client.iter_history("2026112410") as records:
                async for record in records:
                    print(record.sender, record.bodies)

        Raises (while iterating):
            ValidationError: a malformed ``hour``.
            APIError, TransportError: the link or the download failed.
            UnexpectedResponseError: a line is not a valid record (its number is given),
                or is longer than *max_line_bytes*; the gzip data is corrupt.
        """
        hour_text = _history_hour(hour)
        if type(max_line_bytes) is not int or max_line_bytes <= 0:
            raise ValidationError(
                "max_line_bytes", f"must be a positive int, got {max_line_bytes!r}"
            )
        return HistoryStream(
            lambda: self._history_download(hour_text), max_line_bytes=max_line_bytes
        )

    @asynccontextmanager
    async def _history_download(self, hour: str) -> AsyncIterator[ResponseBody]:
        link = await self.get_history_file(hour)
        # The signed link points at the storage service: no token, no limiter (Request.url).
        async with self._pipeline.stream(
            Request(method="GET", url=link.url, idempotent=True, headers={"Accept": "*/*"})
        ) as body:
            yield body

    # -- recall, delete, import ------------------------------------------------------------------

    async def recall_message(
        self,
        message_id: str,
        to: str,
        chat_type: ChatType,
        *,
        sender: str | None = None,
        force: bool = False,
    ) -> RecallResult:
        """Recall a sent message (``POST /messages/msg_recall``); by default within 2 minutes.

        A refusal by the service is not an exception: the result says
        ``recalled=False`` with the documented ``reason``.

        Args:
            message_id: the id returned when the message was sent.
            to: the user, group or room the message was sent to.
            chat_type: ``"chat"``, ``"groupchat"`` or ``"chatroom"``.
            sender: who recalls; the service uses ``admin`` when omitted.
            force: recall even a message past its storage time.

        Raises:
            ValidationError: an argument is invalid.
            OutcomeUnknownError: no trustworthy answer came back.
            APIError: the request was refused.
        """
        request = RecallRequest(
            msg_id=check_id("message_id", message_id),
            to=check_id("to", to),
            chat_type=check_choice("chat_type", chat_type, _CHAT_TYPES),
            force=bool(force),
            sender=check_id("sender", sender) if sender is not None else None,
        )
        recall = Request(method="POST", path="/messages/msg_recall", json=request, idempotent=False)
        answer = await self._pipeline.request_as(recall, RecallResponse)
        data = answer.entry(message_id)
        if data is None:
            raise unreadable(recall, f"{RecallResponse.UNREADABLE} for {message_id!r}", 200, "")
        recalled = data.recalled == "yes"
        return RecallResult(
            message_id=data.message_id,
            recalled=recalled,
            reason=None if recalled else data.recalled,
            sender=data.sender,
            to=data.to,
            chat_type=data.chat_type,
        )

    async def delete_conversation(
        self,
        username: str,
        channel: str,
        chat_type: Literal["chat", "groupchat"],
        *,
        delete_roam: bool = True,
    ) -> None:
        """Delete a conversation for one user only (``DELETE /users/{username}/user_channel``).

        Args:
            username: whose conversation list is changed.
            channel: the peer user id (``chat``) or the group id (``groupchat``).
            chat_type: ``"chat"`` or ``"groupchat"``.
            delete_roam: also delete the server-side (roaming) messages.

        Raises:
            ValidationError: an argument is invalid.
            APIError: the request was refused; UnexpectedResponseError: the
                answer was not ``result: ok``.
        """
        request = DeleteConversationRequest(
            channel=check_id("channel", channel),
            type=check_choice("chat_type", chat_type, ("chat", "groupchat")),
            delete_roam=bool(delete_roam),
        )
        path = f"/users/{quote(check_id('username', username), safe='')}/user_channel"
        await self._pipeline.request_as(
            # Deleting what is deleted changes nothing: a repeat is safe.
            Request(method="DELETE", path=path, json=request, idempotent=True),
            DeleteConversationResponse,
        )

    async def import_user_message(
        self,
        sender: str,
        target: str,
        body: Body,
        *,
        is_ack_read: bool | None = None,
        msg_timestamp: datetime | int | None = None,
        need_download: bool | None = None,
    ) -> ImportedMessage:
        """Import one historical one-to-one message (``POST /messages/users/import``).

        Imported messages are stored, not delivered. An import is not
        idempotent: after :class:`OutcomeUnknownError`, check before importing again.

        Args:
            sender: the ``from`` user.
            target: the receiving user.
            body: the message body.
            is_ack_read: mark the message read.
            msg_timestamp: the message's time, aware ``datetime`` or Unix milliseconds.
            need_download: have the service copy the attachment from its URL.

        Raises:
            ValidationError: an argument is invalid.
            OutcomeUnknownError: the import may or may not have happened.
            APIError: the request was refused.
        """
        return await self._import(
            "/messages/users/import",
            sender,
            target,
            body,
            is_ack_read=is_ack_read,
            msg_timestamp=msg_timestamp,
            need_download=need_download,
        )

    async def import_group_message(
        self,
        sender: str,
        target: str,
        body: Body,
        *,
        is_ack_read: bool | None = None,
        msg_timestamp: datetime | int | None = None,
        need_download: bool | None = None,
    ) -> ImportedMessage:
        """Import one historical group message (``POST /messages/chatgroups/import``).

        As :meth:`import_user_message`, with ``target`` a group id.

        Raises:
            ValidationError: an argument is invalid.
            OutcomeUnknownError: the import may or may not have happened.
            APIError: the request was refused.
        """
        return await self._import(
            "/messages/chatgroups/import",
            sender,
            target,
            body,
            is_ack_read=is_ack_read,
            msg_timestamp=msg_timestamp,
            need_download=need_download,
        )

    async def _import(
        self,
        path: str,
        sender: str,
        target: str,
        body: Body,
        *,
        is_ack_read: bool | None,
        msg_timestamp: datetime | int | None,
        need_download: bool | None,
    ) -> ImportedMessage:
        request = ImportMessageRequest(
            sender=check_id("sender", sender),
            target=check_id("target", target),
            type=body_type(body),
            body=body,
            is_ack_read=is_ack_read,
            msg_timestamp=to_millis("msg_timestamp", msg_timestamp)
            if msg_timestamp is not None
            else None,
            need_download=need_download,
        )
        check_content_size(len(dumps(body)))
        answer = await self._pipeline.request_as(
            Request(method="POST", path=path, json=request, idempotent=False), ImportResponse
        )
        return ImportedMessage(answer.message_id)


def _history_hour(hour: datetime | str) -> str:
    if isinstance(hour, datetime):
        return check_aware("hour", hour).astimezone(UTC).strftime("%Y%m%d%H")
    if isinstance(hour, str) and len(hour) == 10 and hour.isdigit():
        try:
            datetime.strptime(hour, "%Y%m%d%H")
        except ValueError:
            pass
        else:
            return hour
    raise ValidationError(
        "hour", f"must be an aware datetime or a 'yyyyMMddHH' string, got {hour!r}"
    )
