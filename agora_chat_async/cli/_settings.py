"""The service settings of every ``agora-chat`` command, declared once with their variables."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, NamedTuple

from .._auth import AgoraAppToken, Auth, ClientCredentials, StaticToken
from .._exceptions import ValidationError
from .._rates import Rate, RateLimits

if TYPE_CHECKING:
    from .._client import AgoraChatClient
    from .._events import EventHook
    from .._limits import Limiter

__all__ = ["SETTINGS", "CliError", "make_client", "parse_rate_limits", "settings_parser"]


class CliError(Exception):
    """A user mistake: printed as one line, exit status 2."""


class Setting(NamedTuple):
    """One setting: its flag, the environment variable it falls back to, and its help."""

    name: str
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def variable(self) -> str:
        return "AGORA_CHAT_" + self.name.upper()

    def value(self, args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
        """The flag's value, else the variable's, else ``None`` (empty counts as unset)."""
        given: str | None = getattr(args, self.name, None)
        return given or env.get(self.variable) or None


SETTINGS: Final = (
    Setting("base_url", "REST host, e.g. https://a1.easemob.com"),
    Setting("org", "org name"),
    Setting("app", "app name"),
    Setting("token", "an app token (prefer the variable: flags show in ps)"),
    Setting("client_id", "client ID for client-credentials tokens"),
    Setting("client_secret", "client secret (prefer the variable)"),
    Setting("app_id", "App ID for locally built app tokens"),
    Setting("app_certificate", "App certificate (prefer the variable)"),
    Setting(
        "rate_limits",
        "the app's quotas, e.g. users=6000/60,groups=20/1,rooms=100/1,other=100/1 "
        "(any subset; the rest keep the documented defaults)",
    ),
    Setting("redis_url", "share the quota with other workers through this Redis"),
    Setting(
        "cold_start_wait",
        "with --redis-url: 'off' sends at once when Redis has no record of this app, instead "
        "of waiting one window (60 s for user sends); only if nothing was sent in that time",
    ),
)
_BY_NAME: Final = {setting.name: setting for setting in SETTINGS}


def settings_parser() -> argparse.ArgumentParser:
    """A parent parser holding the settings, shared by every service command."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group(
        "service", "each flag falls back to its AGORA_CHAT_* environment variable"
    )
    for setting in SETTINGS:
        group.add_argument(
            setting.flag, dest=setting.name, help=f"{setting.help} [{setting.variable}]"
        )
    return parent


_LIMIT_NAMES: Final = ("users", "groups", "rooms", "other", "send_calls")


def _rate(text: str) -> Rate | None:
    limit, _, per = text.partition("/")
    try:
        return Rate(int(limit), per=float(per))
    except (ValueError, ValidationError):
        return None


def parse_rate_limits(text: str) -> RateLimits:
    """``users=6000/60,groups=20/1`` as :class:`RateLimits` (unnamed limits keep their defaults).

    Raises:
        CliError: the text is not comma-separated ``NAME=LIMIT/SECONDS`` items.
    """
    rates: dict[str, Rate] = {}
    for item in (part.strip() for part in text.split(",")):
        name, _, value = (part.strip() for part in item.partition("="))
        rate = _rate(value) if name in _LIMIT_NAMES and name not in rates else None
        if rate is None:
            raise CliError(
                f"--rate-limits / AGORA_CHAT_RATE_LIMITS: {item!r} is not NAME=LIMIT/SECONDS "
                f"with NAME one of {', '.join(_LIMIT_NAMES)} (for example users=6000/60)"
            )
        rates[name] = rate
    return RateLimits(**rates)  # type: ignore[arg-type]


def _cold_start_wait(text: str | None) -> bool:
    """``--cold-start-wait on|off`` (on when unset)."""
    if text is None or text.lower() in ("on", "yes", "true", "1"):
        return True
    if text.lower() in ("off", "no", "false", "0"):
        return False
    raise CliError(f"--cold-start-wait / AGORA_CHAT_COLD_START_WAIT: {text!r} is not on or off")


@asynccontextmanager
async def make_client(
    args: argparse.Namespace, env: Mapping[str, str], *, on_event: EventHook | None = None
) -> AsyncIterator[AgoraChatClient]:
    """The client the flags and environment describe, open; closed at the block's end with
    the Redis limiter made for it (a client closes what it made, never what it was given).

    Raises:
        CliError: a setting is missing.
    """
    from .._client import AgoraChatClient

    def value(name: str) -> str | None:
        return _BY_NAME[name].value(args, env)

    required = [_BY_NAME[name] for name in ("base_url", "org", "app")]
    missing = [f"{s.flag} or {s.variable}" for s in required if not s.value(args, env)]
    if missing:
        raise CliError("missing " + ", ".join(missing))
    token, client_id, secret = value("token"), value("client_id"), value("client_secret")
    app_id, certificate = value("app_id"), value("app_certificate")
    auth: Auth
    if token:
        auth = StaticToken(token)
    elif client_id and secret:
        auth = ClientCredentials(client_id, secret)
    elif app_id and certificate:
        auth = AgoraAppToken(app_id, certificate)
    else:
        raise CliError(
            "missing credentials: set AGORA_CHAT_TOKEN, or AGORA_CHAT_CLIENT_ID and "
            "AGORA_CHAT_CLIENT_SECRET, or AGORA_CHAT_APP_ID and AGORA_CHAT_APP_CERTIFICATE"
        )
    limits = parse_rate_limits(quotas) if (quotas := value("rate_limits")) else None
    limiter: Limiter | None = None
    cold_start_wait = _cold_start_wait(value("cold_start_wait"))
    if url := value("redis_url"):
        try:
            from .._redis_limiter import RedisLimiter

            limiter = RedisLimiter.from_url(
                url, rate_limits=limits, cold_start_wait=cold_start_wait
            )
        except ImportError:
            raise CliError(
                "--redis-url needs redis-py: pip install 'agora-chat-async[cli,redis]'"
            ) from None
        except ValidationError as exc:
            raise CliError(f"--redis-url / AGORA_CHAT_REDIS_URL: {exc}") from None
        limits = None
    try:
        async with AgoraChatClient(
            str(value("base_url")),
            str(value("org")),
            str(value("app")),
            auth=auth,
            on_event=on_event,
            rate_limits=limits,
            limiter=limiter,
        ) as client:
            yield client
    finally:
        if limiter is not None:
            await limiter.aclose()
