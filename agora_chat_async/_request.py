"""One API request, described before it is sent: what the pipeline carries from endpoint to wire."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, final
from urllib.parse import urlsplit

import attrs
import httpx

from ._rates import Claim, Priority

__all__ = ["Request", "safe_url"]


@final
@attrs.frozen(kw_only=True)
class Request:
    """One API request, described before it is sent.

    ``json`` is a wire shape encoded by the converter; ``content``, the same already
    encoded (the sender measures the bytes before sending them).
    ``path`` is relative to ``{base_url}/{org}/{app}``, ``params`` its query (never
    logged: ``where`` is the path alone); ``url`` overrides it with
    an absolute address (history files), which gets neither the limiter nor the
    ``Authorization`` header; ``authenticated=False`` (the token endpoint) keeps the
    limiter but sends no token.

    ``idempotent`` has no default: each endpoint declares it, its reason beside it
    (docs/reliability.md). True when a repeat changes nothing (a read, a delete, a
    token): every transient failure is retried. False for a request that changes state:
    its ambiguous failures (a read timeout after sending, a dropped connection, a
    500/502/504) become :class:`OutcomeUnknownError`, retried only with ``retry_unknown``.
    ``retry_refused=False`` raises a rate-limit refusal at once instead of waiting to try
    again (a broadcast: its quotas span half hours and days).
    """

    method: str
    idempotent: bool
    path: str = ""
    params: Mapping[str, str] | None = None
    url: str | None = None
    claims: tuple[Claim, ...] = (("other", 1),)
    json: object = None
    content: bytes | None = None
    files: Mapping[str, Any] | None = None
    data: Mapping[str, str] | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    retry_unknown: bool = False
    retry_refused: bool = True
    authenticated: bool = True
    priority: Priority = "interactive"

    @property
    def where(self) -> str:
        """The path, or the URL without its query, for messages and events."""
        return self.path or safe_url(self.url or "")


def safe_url(url: httpx.URL | str) -> str:
    """*url* without its query and fragment (which may hold a signature): safe to log."""
    parts = urlsplit(str(url))
    return parts._replace(query="", fragment="").geturl()
