"""What a Redis failure means for the shared limiter: wait for it to pass, or fix something.

Transient failures pass by themselves (a connection lost, a timeout, a server loading its
data or running a long script, a replica not yet promoted after a failover, a cluster
re-sharding): the limiter retries them, then falls back or raises
:class:`LimiterUnavailableError`, as for an unreachable Redis. Permanent ones do not pass
without an operator (a user without a permission, a wrong password, a key of another type
under the limiter's names): the limiter raises :class:`LimiterStoreError` at once, with
the fix. Nothing is sent in either case.
"""

from __future__ import annotations

from typing import Literal

from ._exceptions import LimiterStoreError, LimiterUnavailableError

__all__ = ["as_limiter_error", "classify", "fix_for"]

#: Error codes (the first word of Redis's answer) that pass by themselves.
_TRANSIENT_CODES = frozenset(
    {"LOADING", "BUSY", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "OOM"}
)


def _code(exc: BaseException) -> str:
    """The error code Redis answered with (``READONLY``, ``NOPERM``, ...), or ``''``.

    redis-py keeps the code in ``status_code`` (5.1 on) or strips it from the message,
    in which case its class names it (``ReadOnlyError``, ...).
    """
    code = getattr(exc, "status_code", None)
    if isinstance(code, str) and code:
        return code.upper()
    text = str(exc)
    first = text.split(" ", 1)[0]
    return first if first.isupper() and first.isalpha() else ""


def classify(exc: BaseException) -> Literal["transient", "permanent"] | None:
    """Whether *exc* from redis-py passes by itself; ``None`` when it is not Redis's."""
    from redis import exceptions as e

    permanent_classes = tuple(
        cls
        for cls in (
            getattr(e, "AuthenticationError", None),
            getattr(e, "AuthenticationWrongNumberOfArgsError", None),
            getattr(e, "AuthorizationError", None),
            getattr(e, "NoPermissionError", None),
            getattr(e, "NoScriptError", None),
        )
        if cls is not None
    )
    if isinstance(exc, permanent_classes):
        return "permanent"
    transient_classes = tuple(
        cls
        for cls in (
            e.ConnectionError,  # BusyLoadingError (LOADING), MaxClientsReachedError among them
            e.TimeoutError,
            getattr(e, "ReadOnlyError", None),
            getattr(e, "TryAgainError", None),
            getattr(e, "ClusterDownError", None),  # MasterDownError among them
            getattr(e, "OutOfMemoryError", None),
            getattr(e, "RedisClusterException", None),
        )
        if cls is not None
    )
    if isinstance(exc, (OSError, *transient_classes)):
        return "transient"
    if isinstance(exc, e.RedisError):
        return "transient" if _code(exc) in _TRANSIENT_CODES else "permanent"
    return None


def fix_for(exc: BaseException, prefix: str) -> str:
    """What is wrong, and what to do, for a permanent failure *exc* (no secret in it)."""
    from redis import exceptions as e

    code = _code(exc)
    named = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, getattr(e, "NoPermissionError", ())) or code == "NOPERM":
        return (
            f"the Redis user may not do what the shared limiter needs ({named}); grant it "
            f"the key pattern ~{prefix}:* and +evalsha +eval +script|load +hmget +time "
            "(docs/workers.md, 'What the limiter asks of a Redis it shares')"
        )
    if isinstance(exc, e.AuthenticationError) or code in ("WRONGPASS", "NOAUTH"):
        return (
            f"Redis refused the credentials ({type(exc).__name__}); check the user name and "
            "password of the Redis URL (redis://user:password@host:port/db)"
        )
    if isinstance(exc, getattr(e, "NoScriptError", ())) or code == "NOSCRIPT":
        return (
            f"Redis would not keep the limiter's script loaded ({named}); check that scripting "
            "is allowed on this server (a proxy in front of it may not pass SCRIPT LOAD)"
        )
    if code == "WRONGTYPE":
        return (
            f"a key under the limiter's names holds a value of another type ({named}); "
            f"another program uses keys beginning {prefix!r}: give RedisLimiter(prefix=...) "
            "a prefix of its own"
        )
    return f"Redis answered an error that waiting will not mend ({named})"


def as_limiter_error(exc: Exception, prefix: str, unavailable: str) -> Exception:
    """The library's error for a Redis failure *exc* that is not retried (*exc* itself when
    it is not Redis's): *unavailable* says what could not be done."""
    kind = classify(exc)
    if kind == "transient":
        return LimiterUnavailableError(f"{unavailable} ({type(exc).__name__})")
    if kind == "permanent":
        return LimiterStoreError(fix_for(exc, prefix))
    return exc
