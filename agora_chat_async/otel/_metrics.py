"""The client's events as OpenTelemetry metrics.

:class:`ClientMetrics` is an ``on_event`` hook: each :mod:`event <agora_chat_async._events>`
becomes a counter's or a histogram's measurement, named in OpenTelemetry's
semantic-convention style (``agora_chat.client.*``, UCUM units, attributes from a small
closed vocabulary). An attribute never holds a recipient, a message id, a path with an
id in it, a body or a secret: only endpoint families, limit names, priorities, outcomes,
retry reasons (an error's class name) and HTTP status codes.

The limiter's effective limits are read, not told: :meth:`ClientMetrics.record_limits`
reads them once (a shared limiter reads them from Redis), :meth:`ClientMetrics.watch_limits`
every *interval* seconds until cancelled, in the caller's task group.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, NoReturn, final

import anyio
from opentelemetry import metrics

from .._events import (
    BatchSplit,
    Event,
    EventHook,
    LimiterWait,
    RateLimited,
    RecipientsSettled,
    Retrying,
)
from .._fanout import SEND_PATHS
from .._rates import LIMIT_NAMES
from .._version import __version__

if TYPE_CHECKING:
    from .._limits import Limiter

__all__ = ["ClientMetrics"]

#: The instrumentation scope's name.
METER_NAME: Final = "agora_chat_async"
#: Limiter waits, in seconds: a few milliseconds (a request's turn) to a users window.
WAIT_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_FAMILY_OF_PATH: Final[Mapping[str, str]] = {path: kind for kind, path in SEND_PATHS.items()}


@final
class ClientMetrics:
    """Records an :class:`~agora_chat_async.AgoraChatClient`'s events as OpenTelemetry
    metrics; pass it as ``on_event=``.

    Instruments (all on the meter ``agora_chat_async``):

    - ``agora_chat.client.recipients`` (counter, ``{recipient}``): every recipient a send
      settled, by ``agora_chat.family`` (``users``, ``groups``, ``rooms``,
      ``group_members``, ``room_members``) and ``agora_chat.outcome`` (``delivered``,
      ``failed``, ``unknown``): the counts of the sends' :class:`SendResult` buckets.
    - ``agora_chat.client.refusals`` (counter, ``{refusal}``): rate-limit refusals by the
      service, by ``agora_chat.limit`` and ``http.response.status_code``.
    - ``agora_chat.client.limiter.wait`` (histogram, ``s``): how long requests waited for
      the limiter, by ``agora_chat.priority`` and ``agora_chat.limit`` (the request's first
      claim); a request that did not wait records nothing.
    - ``agora_chat.client.retries`` (counter, ``{retry}``): by ``agora_chat.retry.reason``
      (the error's class name).
    - ``agora_chat.client.batch_splits`` (counter, ``{split}``): batches answered 413 and
      split in two, by ``agora_chat.family``.
    - ``agora_chat.client.limiter.limit`` and ``agora_chat.client.limiter.effective_limit``
      (gauges, ``{unit}``): each limit's configured units per window and the units in
      force after refusals, by ``agora_chat.limit``, recorded by :meth:`record_limits`.

    Args:
        meter_provider: where the instruments are made; the global one (set by the
            OpenTelemetry SDK's configuration) when ``None``.
        on_event: a hook to call too, after recording (a hook of your own).

    The hook is cheap (a dictionary lookup and one measurement an event) and never
    raises for an event it does not know; the client logs and drops a hook's exception
    in any case.
    """

    __slots__ = (
        "_batch_splits",
        "_effective",
        "_limit",
        "_next",
        "_recipients",
        "_refusals",
        "_retries",
        "_waits",
    )

    def __init__(
        self,
        *,
        meter_provider: metrics.MeterProvider | None = None,
        on_event: EventHook | None = None,
    ) -> None:
        provider = meter_provider or metrics.get_meter_provider()
        meter = provider.get_meter(METER_NAME, __version__)
        self._recipients = meter.create_counter(
            "agora_chat.client.recipients",
            unit="{recipient}",
            description="Recipients settled by sends, by outcome.",
        )
        self._refusals = meter.create_counter(
            "agora_chat.client.refusals",
            unit="{refusal}",
            description="Requests the service refused for a rate limit.",
        )
        self._waits = meter.create_histogram(
            "agora_chat.client.limiter.wait",
            unit="s",
            description="Time requests waited for the rate limiter.",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS,
        )
        self._retries = meter.create_counter(
            "agora_chat.client.retries",
            unit="{retry}",
            description="Requests retried, by reason.",
        )
        self._batch_splits = meter.create_counter(
            "agora_chat.client.batch_splits",
            unit="{split}",
            description="Batches the service answered 413 and the client split in two.",
        )
        self._limit = meter.create_gauge(
            "agora_chat.client.limiter.limit",
            unit="{unit}",
            description="A limit's configured units per window.",
        )
        self._effective = meter.create_gauge(
            "agora_chat.client.limiter.effective_limit",
            unit="{unit}",
            description="A limit's units per window in force (lower after refusals).",
        )
        self._next = on_event

    def __repr__(self) -> str:
        return f"ClientMetrics(meter={METER_NAME!r})"

    def __call__(self, event: Event) -> None:
        """Record *event* (the ``on_event`` hook)."""
        if isinstance(event, RecipientsSettled):
            family = event.family
            for outcome, count in (
                ("delivered", event.delivered),
                ("failed", event.failed),
                ("unknown", event.unknown),
            ):
                if count:
                    self._recipients.add(
                        count, {"agora_chat.family": family, "agora_chat.outcome": outcome}
                    )
        elif isinstance(event, LimiterWait):
            limit = event.claims[0][0] if event.claims else "none"
            self._waits.record(
                event.waited, {"agora_chat.priority": event.priority, "agora_chat.limit": limit}
            )
        elif isinstance(event, RateLimited):
            self._refusals.add(
                1,
                {
                    "agora_chat.limit": event.limits[0] if event.limits else "unknown",
                    "http.response.status_code": event.status_code,
                },
            )
        elif isinstance(event, Retrying):
            self._retries.add(1, {"agora_chat.retry.reason": event.reason})
        elif isinstance(event, BatchSplit):
            family = _FAMILY_OF_PATH.get(event.path, "other")
            self._batch_splits.add(1, {"agora_chat.family": family})
        if self._next is not None:
            self._next(event)

    async def record_limits(self, limiter: Limiter) -> None:
        """Record each limit's configured and effective units per window, now.

        Pass the client's limiter (``client.limiter``).

        Raises:
            LimiterUnavailableError: a shared limiter's store cannot be read.
        """
        limits = limiter.rate_limits
        for name in LIMIT_NAMES:
            rate = limits.rate(name)
            if rate is None:
                continue
            effective = await limiter.effective_limit(name)
            attributes = {"agora_chat.limit": name}
            self._limit.set(rate.limit, attributes)
            if effective is not None:
                self._effective.set(effective, attributes)

    async def watch_limits(self, limiter: Limiter, *, interval: float = 15.0) -> NoReturn:
        """Record the limits (:meth:`record_limits`) every *interval* seconds of real time,
        until cancelled: start it in your task group beside the work.

        Raises:
            ValueError: *interval* is not positive.
            LimiterUnavailableError: a shared limiter's store cannot be read.
        """
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        while True:
            await self.record_limits(limiter)
            await anyio.sleep(interval)
