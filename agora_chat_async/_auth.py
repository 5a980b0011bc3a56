"""The three ways to authenticate: a static token, client credentials, an app certificate.

Every provider answers one question, "which bearer token now?", through
:meth:`Auth.get_token`, and hears about rejected tokens through
:meth:`Auth.token_rejected`. The client calls ``get_token`` before each request;
when the service answers 401 it calls ``token_rejected`` and, if the provider
says a new token may help, retries that request once with a fresh token. Never
more than once: wrong credentials fail fast instead of looping.

Providers that fetch or build tokens cache them and renew them before they
expire (``refresh_margin``: 10% of the lifetime, at most 5 minutes).
Concurrent callers on a cold provider share one fetch (single flight). Secrets
are kept out of ``repr``.
"""

from __future__ import annotations

import abc
from typing import Final, Protocol, final

import anyio
import attrs

from ._accesstoken import build_chat_app_token
from ._clock import Clock
from ._converter import TokenRequest, TokenResponse
from ._exceptions import (
    APIError,
    AuthenticationError,
    RateLimitedError,
    ValidationError,
)
from ._request import Request
from ._validate import check_seconds

__all__ = ["AgoraAppToken", "Auth", "ClientCredentials", "StaticToken", "TokenSession"]

#: Default lifetime, in seconds, of tokens built by :class:`AgoraAppToken` (24 hours).
DEFAULT_APP_TOKEN_TTL: Final = 24 * 3600
_MAX_REFRESH_MARGIN: Final = 300.0


def refresh_margin(lifetime: float) -> float:
    """How long before expiry a cached token is renewed: 10% of its life, at most 5 minutes."""
    return min(lifetime * 0.1, _MAX_REFRESH_MARGIN)


class TokenSession(Protocol):
    """What a provider may use from the client: its clock and its request pipeline."""

    @property
    def clock(self) -> Clock:
        """The client's clock."""
        ...

    async def request_as(self, request: Request, shape: type[TokenResponse]) -> TokenResponse:
        """Send *request* through the client's pipeline; its answer read as *shape*."""
        ...


async def request_token(
    session: TokenSession, client_id: str, client_secret: str, ttl: int | None
) -> tuple[str, int]:
    """``POST /{org}/{app}/token`` with the client-credentials grant, without a token.

    Returns the access token and its lifetime in seconds.

    Raises:
        AuthenticationError: the service refused the credentials (any 4xx).
        AgoraChatError: the request failed otherwise.
    """
    request = Request(
        method="POST",
        path="/token",
        idempotent=True,  # a second token is as good as the first; neither is revoked
        authenticated=False,
        json=TokenRequest(
            grant_type="client_credentials",
            client_id=client_id,
            client_secret=client_secret,
            ttl=ttl,
        ),
    )
    try:
        token = await session.request_as(request, TokenResponse)
    except APIError as exc:
        if 400 <= exc.status_code < 500 and not isinstance(exc, RateLimitedError):
            raise AuthenticationError(
                status_code=exc.status_code,
                error=exc.error,
                description=exc.description or "the token request was refused",
                body_excerpt=exc.body_excerpt,
                method=exc.method,
                path=exc.path,
            ) from None
        raise
    return token.access_token, token.expires_in


class Auth(abc.ABC):
    """A source of bearer tokens for the ``Authorization`` header."""

    @abc.abstractmethod
    async def get_token(self, session: TokenSession) -> str:
        """Return a token that is valid now.

        Raises:
            AuthenticationError: the credentials were refused.
            AgoraChatError: the token could not be obtained.
        """

    def token_rejected(self, token: str) -> bool:
        """The service answered 401 to *token*; return True if a new token may help."""
        return False


def _secret(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError("auth", "credentials must be non-empty strings")
    return value


@final
@attrs.define
class StaticToken(Auth):
    """A token you obtained yourself (for example from your own token service).

    It is used as is and never renewed; a 401 is raised as
    :class:`AuthenticationError`.
    """

    token: str = attrs.field(repr=False, converter=_secret)

    async def get_token(self, session: TokenSession) -> str:
        """Return the token given at construction."""
        return self.token


@final
@attrs.define
class ClientCredentials(Auth):
    """Fetch app tokens from ``POST /{org}/{app}/token`` with a client ID and secret.

    The token is cached and renewed before ``expires_in`` runs out; concurrent
    callers share one request. ``ttl`` (seconds) asks the service for a
    lifetime; ``None`` takes the service's default.
    """

    client_id: str = attrs.field(converter=_secret)
    client_secret: str = attrs.field(repr=False, converter=_secret)
    ttl: int | None = attrs.field(default=None)
    _token: str | None = attrs.field(default=None, init=False, repr=False)
    _renew_at: float = attrs.field(default=0.0, init=False, repr=False)
    _lock: anyio.Lock = attrs.field(factory=anyio.Lock, init=False, repr=False)

    @ttl.validator
    def _check_ttl(self, attribute: attrs.Attribute[int | None], value: int | None) -> None:
        if value is not None:
            check_seconds("ttl", value)

    async def get_token(self, session: TokenSession) -> str:
        """Return the cached token, fetching a new one (once for all callers) when due.

        Raises:
            AuthenticationError: the client ID or secret was refused.
            AgoraChatError: the token endpoint failed.
        """
        token = self._token
        if token is not None and session.clock.now() < self._renew_at:
            return token
        async with self._lock:
            token = self._token
            if token is not None and session.clock.now() < self._renew_at:
                return token
            token, expires_in = await request_token(
                session, self.client_id, self.client_secret, self.ttl
            )
            self._token = token
            self._renew_at = session.clock.now() + expires_in - refresh_margin(expires_in)
            return token

    def token_rejected(self, token: str) -> bool:
        """Forget *token* so the next call fetches a new one; a retry may help."""
        if token == self._token:
            self._token = None
        return True


@final
@attrs.define
class AgoraAppToken(Auth):
    """Build AccessToken2 chat app tokens locally from the App ID and App Certificate.

    No request is made for the token: it is signed on this machine with the
    certificate, which never leaves it. Tokens live ``ttl`` seconds and are
    rebuilt before they expire.

    Raises:
        ValidationError: the App ID or certificate is not 32 hex characters, or
            ``ttl`` is not positive.
    """

    app_id: str
    app_certificate: str = attrs.field(repr=False)
    ttl: int = DEFAULT_APP_TOKEN_TTL
    _token: str | None = attrs.field(default=None, init=False, repr=False)
    _renew_at: float = attrs.field(default=0.0, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        check_seconds("ttl", self.ttl)
        # Fail at construction, not at the first request.
        build_chat_app_token(self.app_id, self.app_certificate, expire=self.ttl)

    async def get_token(self, session: TokenSession) -> str:
        """Return the current token, building a new one when it is close to expiry."""
        now = session.clock.now()
        if self._token is None or now >= self._renew_at:
            self._token = build_chat_app_token(self.app_id, self.app_certificate, expire=self.ttl)
            self._renew_at = now + self.ttl - refresh_margin(self.ttl)
        return self._token

    def token_rejected(self, token: str) -> bool:
        """Rebuild on the next call (the old one may have expired by the service's clock)."""
        if token == self._token:
            self._token = None
        return True
