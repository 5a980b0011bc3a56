"""Why recipients were not delivered, grouped for the summary a user reads first."""

from __future__ import annotations

from typing import Final, final

from .._exceptions import (
    AgoraChatError,
    AuthenticationError,
    ConnectError,
    ForbiddenError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    ValidationError,
)

__all__ = ["Reasons", "hint"]

#: Recipients named under each reason.
SHOWN: Final = 3


_NOT_FOUND: Final = "no such org or app at this address: check --org, --app and --base-url"

#: What to do, by the error's type (the first that matches).
_HINTS: Final[tuple[tuple[type[AgoraChatError], str], ...]] = (
    (NotFoundError, _NOT_FOUND),
    (RateLimitedError, "the service refused for a rate limit: rerun later, or lower --rate-limits"),
    (ForbiddenError, "the service refused this app the call: check the app's plan and features"),
    (ConnectError, "the service could not be reached: check --base-url and the network"),
    (OutcomeUnknownError, "may or may not have been delivered: check before sending again"),
)


def hint(error: AgoraChatError) -> str:
    """What to do about *error*, fitted to its reason ('' when the message says it all)."""
    if isinstance(error, AuthenticationError):
        if error.status_code == 404:  # POST /token of an org/app not there
            return _NOT_FOUND
        text = str(error).lower()
        if "expired" in text:
            return "the token has expired: give a new --token, or use --client-id/--client-secret"
        if "/token" in text or "credentials" in text or "secret" in text:
            return "the credentials were refused: check --client-id and --client-secret"
        return "the token was refused: check --token (or the credentials) and --org/--app"
    return next((advice for kind, advice in _HINTS if isinstance(error, kind)), "")


def _reason(error: AgoraChatError) -> str:
    """The part of *error*'s message that is the same for every recipient it failed."""
    if isinstance(error, ValidationError):
        return f"{type(error).__name__}: {str(error).removeprefix(f'{error.field}: ')}"
    return f"{type(error).__name__}: {error}"


@final
class Reasons:
    """The recipients not delivered, by reason, in the order the reasons were met."""

    __slots__ = ("_by_reason",)

    def __init__(self) -> None:
        self._by_reason: dict[str, tuple[AgoraChatError, list[str]]] = {}

    def add(self, recipient: str, error: AgoraChatError) -> None:
        """One recipient not delivered, and why."""
        key = _reason(error)
        entry = self._by_reason.get(key)
        if entry is None:
            self._by_reason[key] = (error, [recipient])
        else:
            entry[1].append(recipient)

    def lines(self) -> list[str]:
        """One line a reason: how many, the first few recipients, and a hint."""
        out = []
        for reason, (error, recipients) in self._by_reason.items():
            named = ", ".join(repr(r) for r in recipients[:SHOWN])
            more = f" and {len(recipients) - SHOWN} more" if len(recipients) > SHOWN else ""
            advice = hint(error)
            out.append(
                f"  {len(recipients)} x {reason}\n    ({named}{more})"
                + (f"\n    hint: {advice}" if advice else "")
            )
        return out
