"""The client's metrics through OpenTelemetry: ``pip install 'agora-chat-async[otel]'``.

This is public API, but ``import agora_chat_async`` does not load it (nor OpenTelemetry)::

    from agora_chat_async.otel import ClientMetrics

    metrics = ClientMetrics()  # the global MeterProvider, as the SDK configured it
    async with AgoraChatClient(..., on_event=metrics) as client:
        ...

See :class:`ClientMetrics` for the instruments and their attributes.
"""

try:
    import opentelemetry.metrics  # noqa: F401 - only to say what is missing
except ImportError as exc:  # pragma: no cover - the extra's own test installs it
    raise ImportError(
        "agora_chat_async.otel needs the OpenTelemetry API: pip install 'agora-chat-async[otel]'"
    ) from exc

from ._metrics import ClientMetrics as ClientMetrics

__all__ = ["ClientMetrics"]

ClientMetrics.__module__ = "agora_chat_async.otel"
