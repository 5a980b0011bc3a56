"""The I/O layer: one :class:`Request` out as an httpx request, its response back.

Like an httpx transport, it knows nothing of limits, tokens or retries (those are the
pipeline's, ``_pipeline.py``). It turns a request into bytes on the wire once, cheaply
(API addresses are parsed once, headers built once per token), and says which of three
things happened: a response arrived (its body unread), nothing was sent
(:class:`ConnectError`, :class:`ClientClosedError`), or the request left and no answer
came back (:func:`~agora_chat_async._responses.ambiguous`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Final, NoReturn, final

import httpx

from ._converter import dumps
from ._exceptions import ClientClosedError, ConnectError
from ._request import Request
from ._responses import ambiguous

__all__ = ["HTTPTransport"]

#: Parsed API addresses kept; paths that name a user or a message make more.
_MAX_CACHED_URLS: Final = 256


def _api_headers(token: str | None) -> tuple[httpx.Headers, httpx.Headers]:
    """The headers of an API request without and with a JSON body."""
    plain = {"Accept": "application/json"}
    if token is not None:
        plain["Authorization"] = f"Bearer {token}"
    return httpx.Headers(plain), httpx.Headers({**plain, "Content-Type": "application/json"})


@final
class _SentAt:
    """An httpcore ``trace`` callback that notes when a request's body began to leave, on
    the client's clock: after any connection was opened and after its headers.

    Not when its headers began to leave: httpcore writes the body separately, after
    yielding to the event loop, so a busy loop holds the body (and the service's count)
    back by however long the other ready tasks take, and a floor sampled from the
    headers would be that much too high. Not when the body's writing completed either:
    that is noted after httpcore yields again, as late as the loop is busy (a floor
    sampled from it is too low: safe, but every claim is charged the loop's delay). A
    body in memory is written at once after this event; a *streamed* one (a file's
    upload) over many writes, so its request says nothing of the network."""

    __slots__ = ("_now", "at", "streamed")

    def __init__(self, now: Callable[[], float], *, streamed: bool) -> None:
        self._now = now
        self.at: float | None = None
        self.streamed = streamed

    async def __call__(self, event: str, info: object) -> None:
        if event.endswith("send_request_body.started"):
            self.at = self._now()


@final
class HTTPTransport:
    """Sends requests over one ``httpx.AsyncClient`` to ``{base_url}/{org}/{app}``."""

    __slots__ = (
        "_base",
        "_closed",
        "_http",
        "_json_headers",
        "_now",
        "_owns_http",
        "_plain_headers",
        "_streams",
        "_token",
        "_urls",
    )

    def __init__(
        self,
        *,
        base: str,
        http: httpx.AsyncClient,
        owns_http: bool,
        now: Callable[[], float] | None = None,
    ) -> None:
        self._base = base
        self._http = http
        self._now = now
        self._owns_http = owns_http
        self._urls: dict[str, httpx.URL] = {}
        self._closed = False
        self._token: str | None = None  # the token of the cached headers
        self._plain_headers, self._json_headers = _api_headers(None)

        #: The connections (httpcore's network streams) that have answered before.
        self._streams: weakref.WeakSet[object] = weakref.WeakSet()

    def new_connection(self, response: httpx.Response) -> bool:
        """Whether *response* is the first answer on its connection. ``False`` when the
        transport does not say (an ASGI or mock transport, which opens none)."""
        stream = response.extensions.get("network_stream")
        if stream is None or stream in self._streams:
            return False
        try:
            self._streams.add(stream)
        except TypeError:  # not weakly referenceable: cannot tell
            return False
        return True

    def sent_at(self, response: httpx.Response) -> float | None:
        """When *response*'s request body began to leave (the clock given as ``now``), or
        ``None`` when the transport does not say (an ASGI or mock transport)."""
        trace = response.request.extensions.get("trace")
        return trace.at if isinstance(trace, _SentAt) else None

    def streamed(self, response: httpx.Response) -> bool:
        """Whether *response*'s request body was streamed in many writes (a file)."""
        trace = response.request.extensions.get("trace")
        return isinstance(trace, _SentAt) and trace.streamed

    @property
    def base(self) -> str:
        """``{base_url}/{org_name}/{app_name}``."""
        return self._base

    async def aclose(self) -> None:
        """Refuse further requests; close the HTTP client if this transport created it."""
        self._closed = True
        if self._owns_http:
            await self._http.aclose()

    async def send(self, request: Request, built: httpx.Request) -> httpx.Response:
        """Send *request*, *built* by :meth:`build`; the response has its body unread
        (close it).

        Raises:
            ClientClosedError: the client is closed; nothing was sent.
            ConnectError: the connection was never established; nothing was sent.
            TransportError: the request left and no answer came (a read).
            OutcomeUnknownError: the same for a request that changes state.
        """
        if self._closed:
            self._refuse_closed(request)
        try:
            return await self._http.send(built, stream=True)
        except RuntimeError:
            if not self._http.is_closed:  # httpx: "the client has been closed"
                raise
            self._refuse_closed(request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ConnectError(
                f"could not connect for {request.method} {request.where}: {type(exc).__name__}; "
                "nothing was sent, the request can be retried"
            ) from None
        except httpx.TransportError as exc:
            raise ambiguous(request, exc) from None

    def build(self, request: Request, token: str | None) -> httpx.Request:
        """*request* with *token* as httpx will send it: its body encoded, its headers and
        address made. Built before the request's permit, so that once the limiter lets it
        start only the write is left (what the client spends between a permit and the
        request's leaving is charged to the window, and a window's requests leave at once).
        """
        content = request.content
        if request.json is not None:
            content = dumps(request.json)
        headers = self._headers(token, content is not None)
        if request.headers:
            headers = httpx.Headers(headers)
            headers.update(request.headers)
        built = self._http.build_request(
            request.method,
            self._url(request),
            headers=headers,
            content=content,
            files=request.files,
            data=request.data,
            params=request.params,
        )
        if self._now is not None:
            built.extensions["trace"] = _SentAt(self._now, streamed=request.files is not None)
        return built

    def _refuse_closed(self, request: Request) -> NoReturn:
        raise ClientClosedError(
            f"{request.method} {request.where} was not sent: the client is closed; "
            "create a new AgoraChatClient to send more"
        )

    def _url(self, request: Request) -> httpx.URL | str:
        """The request's address; API addresses are parsed once (parsing is costly)."""
        if request.url is not None:
            return request.url
        url = self._urls.get(request.path)
        if url is None:
            if len(self._urls) >= _MAX_CACHED_URLS:  # paths naming users or messages
                self._urls.clear()
            url = self._urls[request.path] = httpx.URL(self._base + request.path)
        return url

    def _headers(self, token: str | None, json: bool) -> httpx.Headers:
        """The headers of an API request, built once per token (httpx copies them)."""
        if token != self._token:
            self._token = token
            self._plain_headers, self._json_headers = _api_headers(token)
        return self._json_headers if json else self._plain_headers
