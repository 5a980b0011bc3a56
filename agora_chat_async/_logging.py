"""Logging: what this library logs, and keeping credentials out of every log line.

The library logs to the ``agora_chat_async`` logger: one DEBUG line per request
(method, URL without its query, status, duration) and INFO lines for token
renewals. It never logs headers or bodies.

httpx logs every request's full URL at INFO on the ``httpx`` logger, which for
history downloads includes a signed query string (``Signature``,
``OSSAccessKeyId``). :func:`install_redaction` adds a filter to that logger
that rewrites such records with the credentials replaced by ``[redacted]``.
"""

from __future__ import annotations

import logging
from typing import Final, final

from ._exceptions import redact

__all__ = ["RedactingFilter", "install_redaction", "logger"]

logger: Final = logging.getLogger("agora_chat_async")


@final
class RedactingFilter(logging.Filter):
    """Rewrites a record whose message contains a credential; lets every record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the formatted message in place; never drops a record."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_FILTER: Final = RedactingFilter()


def install_redaction() -> None:
    """Attach the redacting filter to the ``httpx`` and library loggers (once)."""
    for name in ("httpx", "agora_chat_async"):
        target = logging.getLogger(name)
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
