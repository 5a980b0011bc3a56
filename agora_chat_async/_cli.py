"""The ``agora-chat`` command (``pip install 'agora-chat-async[cli]'``): parsing and settings.

Every command but ``demo`` talks to a real service (or to the emulator served with
``python -m agora_chat_async.testing``), configured from flags or environment variables::

    AGORA_CHAT_BASE_URL, AGORA_CHAT_ORG, AGORA_CHAT_APP, and one of
    AGORA_CHAT_TOKEN | AGORA_CHAT_CLIENT_ID + AGORA_CHAT_CLIENT_SECRET
                     | AGORA_CHAT_APP_ID + AGORA_CHAT_APP_CERTIFICATE

Secrets are never printed. A user's mistake (a missing setting, an unreadable file, a
malformed line) is one line on stderr and exit status 2, never a traceback; a service
refusal is one line and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ._auth import AgoraAppToken, Auth, ClientCredentials, StaticToken
from ._exceptions import AgoraChatError, ValidationError

if TYPE_CHECKING:
    from ._client import AgoraChatClient
    from ._events import EventHook

__all__ = ["CliError", "main"]


class CliError(Exception):
    """A user mistake: printed as one line, exit status 2."""


def _add_settings(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "service", "each flag falls back to its AGORA_CHAT_* environment variable"
    )
    group.add_argument("--base-url", help="REST host, e.g. https://a1.easemob.com")
    group.add_argument("--org", help="org name")
    group.add_argument("--app", help="app name")
    group.add_argument("--token", help="an app token (prefer AGORA_CHAT_TOKEN: flags show in ps)")
    group.add_argument("--client-id", help="client ID for client-credentials tokens")
    group.add_argument("--client-secret", help="client secret (prefer the environment variable)")
    group.add_argument("--app-id", help="App ID for locally built app tokens")
    group.add_argument("--app-certificate", help="App certificate (prefer the environment)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agora-chat", description="Agora Chat from a shell.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="fan a message out through the bundled emulator (no account needed)"
    )
    demo.add_argument("--users", type=int, default=30_000, help="users to reach (30000)")
    demo.add_argument("--groups", type=int, default=300, help="groups to reach (300)")
    demo.add_argument("--rooms", type=int, default=1_000, help="rooms to reach (1000)")
    demo.add_argument(
        "--time-scale",
        type=float,
        default=60.0,
        help="emulated seconds per real second (60: the per-minute quota runs every second)",
    )

    _add_service_commands(commands)
    return parser


def _add_service_commands(commands: Any) -> None:
    send = commands.add_parser("send", help="send one message to users, groups or rooms")
    send.add_argument("target", choices=("users", "groups", "rooms"))
    send.add_argument("recipients", nargs="*", help="ids; else --file; else stdin, one a line")
    send.add_argument("--file", help="a file of ids, one a line")
    body = send.add_mutually_exclusive_group(required=True)
    body.add_argument("--text", help="a text message")
    body.add_argument("--body", metavar="FILE", help='a JSON body: {"type": "img", "url": ...}')
    send.add_argument("--from", dest="sender", help="the sender (admin when omitted)")
    send.add_argument("--ext", metavar="JSON", help="extension fields, a JSON object")
    send.add_argument("--results", metavar="FILE", help="write one JSON line per recipient")
    send.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_settings(send)

    imports = commands.add_parser(
        "import", help="import historical messages from a JSON-lines file, resumably"
    )
    imports.add_argument("target", choices=("users", "groups"))
    imports.add_argument("file", help="one message a line, as the import API's request body")
    imports.add_argument(
        "--checkpoint", metavar="FILE", help="progress file (default: FILE.checkpoint)"
    )
    imports.add_argument("--concurrency", type=int, default=4, help="requests in flight (4)")
    imports.add_argument(
        "--resend-uncertain",
        action="store_true",
        help="import again the lines an earlier run may or may not have imported",
    )
    imports.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_settings(imports)

    history = commands.add_parser("history", help="one hour of message history")
    history.add_argument("hour", help="yyyyMMddHH (UTC)")
    history.add_argument("--output", metavar="FILE", help="write JSON lines here (else stdout)")
    history.add_argument("--table", action="store_true", help="a readable table instead")
    _add_settings(history)

    recall = commands.add_parser("recall", help="recall a message (within its recall window)")
    recall.add_argument("message_id")
    recall.add_argument("to", help="the recipient user, group or room")
    recall.add_argument("chat_type", choices=("chat", "groupchat", "chatroom"))
    recall.add_argument("--from", dest="sender", help="who sent it (admin when omitted)")
    _add_settings(recall)

    delete = commands.add_parser("delete-conversation", help="delete a conversation of a user")
    delete.add_argument("username")
    delete.add_argument("channel", help="the peer user id or the group id")
    delete.add_argument("chat_type", choices=("chat", "groupchat"))
    _add_settings(delete)

    upload = commands.add_parser("upload", help="upload a file; prints its uuid and url")
    upload.add_argument("path")
    upload.add_argument("--restrict", action="store_true", help="restrict access (share-secret)")
    _add_settings(upload)

    download = commands.add_parser("download", help="download a file by uuid")
    download.add_argument("uuid")
    download.add_argument("destination")
    download.add_argument("--share-secret", help="for restricted files")
    download.add_argument("--thumbnail", action="store_true")
    download.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_settings(download)


def _setting(args: argparse.Namespace, name: str, env: Mapping[str, str]) -> str | None:
    value: str | None = getattr(args, name, None)
    return value or env.get(f"AGORA_CHAT_{name.upper()}") or None


def make_client(
    args: argparse.Namespace, env: Mapping[str, str], *, on_event: EventHook | None = None
) -> AgoraChatClient:
    """The client the flags and environment describe.

    Raises:
        CliError: a setting is missing.
    """
    from ._client import AgoraChatClient

    missing = [
        f"--{name.replace('_', '-')} or AGORA_CHAT_{name.upper()}"
        for name in ("base_url", "org", "app")
        if not _setting(args, name, env)
    ]
    if missing:
        raise CliError("missing " + ", ".join(missing))
    token = _setting(args, "token", env)
    client_id, secret = _setting(args, "client_id", env), _setting(args, "client_secret", env)
    app_id, certificate = _setting(args, "app_id", env), _setting(args, "app_certificate", env)
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
    return AgoraChatClient(
        str(_setting(args, "base_url", env)),
        str(_setting(args, "org", env)),
        str(_setting(args, "app", env)),
        auth=auth,
        on_event=on_event,
    )


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the ``agora-chat`` command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        import rich  # noqa: F401
    except ImportError:
        sys.stderr.write("agora-chat needs its extra: pip install 'agora-chat-async[cli]'\n")
        return 2
    if args.command == "demo":
        from ._cli_demo import run_demo

        counts = {"users": args.users, "groups": args.groups, "rooms": args.rooms}
        if any(count < 0 for count in counts.values()) or args.time_scale <= 0:
            sys.stderr.write("agora-chat demo: counts must be >= 0 and --time-scale > 0\n")
            return 2
        return run_demo(counts, args.time_scale)
    from . import _cli_commands

    name = {"import": "import_"}.get(args.command, args.command.replace("-", "_"))
    command = getattr(_cli_commands, name)
    try:
        status: int = anyio.run(command, args, os.environ if env is None else env)
    except (CliError, ValidationError) as exc:
        sys.stderr.write(f"agora-chat {args.command}: {exc}\n")
        return 2
    except AgoraChatError as exc:
        sys.stderr.write(f"agora-chat {args.command}: {exc}\n")
        return 1
    return status
