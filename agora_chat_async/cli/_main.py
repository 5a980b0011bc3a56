"""``agora-chat``'s parser and dispatch: each command, its flags, its exit status."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from .._exceptions import AgoraChatError, ValidationError
from ._settings import CliError, settings_parser

__all__ = ["main"]


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
    settings = [settings_parser()]  # every service command takes the same settings
    send = commands.add_parser(
        "send", parents=settings, help="send one message to users, groups or rooms"
    )
    send.add_argument("target", choices=("users", "groups", "rooms"))
    send.add_argument(
        "recipients",
        nargs="*",
        help="ids; else --file; else stdin, one a line (ids given here or on stdin are not "
        "resumable: use --file)",
    )
    send.add_argument(
        "--file",
        help="a file of ids, one a line; resumable: progress in FILE.checkpoint, and the "
        "same command started again skips what was delivered",
    )
    send.add_argument(
        "--checkpoint", metavar="PATH", help="the progress file (default: FILE.checkpoint)"
    )
    send.add_argument(
        "--resend-unknown",
        action="store_true",
        help="send again the recipients an earlier run may or may not have reached",
    )
    body = send.add_mutually_exclusive_group(required=True)
    body.add_argument("--text", help="a text message")
    body.add_argument("--body", metavar="FILE", help='a JSON body: {"type": "img", "url": ...}')
    send.add_argument("--from", dest="sender", help="the sender (admin when omitted)")
    send.add_argument("--ext", metavar="JSON", help="extension fields, a JSON object")
    send.add_argument(
        "--results",
        metavar="FILE",
        help="one JSON line per recipient (with --file: kept across resumes, one final line each)",
    )
    send.add_argument("--no-progress", action="store_true", help="no progress bar")

    imports = commands.add_parser(
        "import",
        parents=settings,
        help="import historical messages from a JSON-lines file, resumably",
    )
    imports.add_argument("target", choices=("users", "groups"))
    imports.add_argument("file", help="one message a line, as the import API's request body")
    imports.add_argument(
        "--checkpoint", metavar="FILE", help="progress file (default: FILE.checkpoint)"
    )
    imports.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="at most this many requests in flight (default: what the quota needs at the "
        "round trip measured)",
    )
    imports.add_argument(
        "--resend-unknown",
        action="store_true",
        help="import again the lines an earlier run may or may not have imported",
    )
    imports.add_argument("--no-progress", action="store_true", help="no progress bar")

    _add_broadcast_and_edit(commands, settings)

    history = commands.add_parser("history", parents=settings, help="one hour of message history")
    history.add_argument("hour", help="yyyyMMddHH (UTC)")
    history.add_argument("--output", metavar="FILE", help="write JSON lines here (else stdout)")
    history.add_argument("--table", action="store_true", help="a readable table instead")

    recall = commands.add_parser(
        "recall", parents=settings, help="recall a message (within its recall window)"
    )
    recall.add_argument("message_id")
    recall.add_argument("to", help="the recipient user, group or room")
    recall.add_argument("chat_type", choices=("chat", "groupchat", "chatroom"))
    recall.add_argument("--from", dest="sender", help="who sent it (admin when omitted)")

    delete = commands.add_parser(
        "delete-conversation", parents=settings, help="delete a conversation of a user"
    )
    delete.add_argument("username")
    delete.add_argument("channel", help="the peer user id or the group id")
    delete.add_argument("chat_type", choices=("chat", "groupchat"))

    upload = commands.add_parser(
        "upload", parents=settings, help="upload a file; prints its uuid and url"
    )
    upload.add_argument("path")
    upload.add_argument("--restrict", action="store_true", help="restrict access (share-secret)")

    download = commands.add_parser("download", parents=settings, help="download a file by uuid")
    download.add_argument("uuid")
    download.add_argument("destination")
    download.add_argument(
        "--share-secret",
        help="for restricted files; write --share-secret=VALUE (a secret may begin with '-')",
    )
    download.add_argument("--thumbnail", action="store_true")
    download.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_broadcast_and_edit(commands: Any, settings: list[argparse.ArgumentParser]) -> None:
    broadcast = commands.add_parser(
        "broadcast",
        parents=settings,
        help="broadcast one message to every user, the online users, or every chat room",
    )
    broadcast.add_argument("to", choices=("users", "online_users", "rooms"))
    message = broadcast.add_mutually_exclusive_group(required=True)
    message.add_argument("--text", help="a text message")
    message.add_argument("--body", metavar="FILE", help='a JSON body: {"type": "img", "url": ...}')
    broadcast.add_argument("--from", dest="sender", help="the sender (admin when omitted)")
    broadcast.add_argument("--ext", metavar="JSON", help="extension fields, a JSON object")
    broadcast.add_argument(
        "--level", choices=("high", "normal", "low"), help="rooms only: the message level"
    )

    edit = commands.add_parser("edit", parents=settings, help="edit a sent message")
    edit.add_argument("message_id")
    new = edit.add_mutually_exclusive_group(required=True)
    new.add_argument("--text", help="a text message's new text")
    new.add_argument("--custom-event", help="a custom message's new event")
    new.add_argument(
        "--type",
        dest="kind",
        choices=("img", "audio", "video", "file", "loc"),
        help="the type of a message whose ext alone changes",
    )
    edit.add_argument("--custom-exts", metavar="JSON", help="with --custom-event: its exts")
    edit.add_argument("--ext", metavar="JSON", help="the new extension fields, a JSON object")
    edit.add_argument(
        "--replace-ext", action="store_true", help="replace the ext instead of merging into it"
    )
    edit.add_argument("--editor", help="the user who edits")


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the ``agora-chat`` command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        import rich  # noqa: F401
    except ImportError:
        sys.stderr.write("agora-chat needs its extra: pip install 'agora-chat-async[cli]'\n")
        return 2
    if args.command == "demo":
        from ._demo import run_demo

        counts = {"users": args.users, "groups": args.groups, "rooms": args.rooms}
        if any(count < 0 for count in counts.values()) or args.time_scale <= 0:
            sys.stderr.write("agora-chat demo: counts must be >= 0 and --time-scale > 0\n")
            return 2
        return run_demo(counts, args.time_scale)
    from . import _commands

    name = {"import": "import_"}.get(args.command, args.command.replace("-", "_"))
    command = getattr(_commands, name)
    try:
        status: int = anyio.run(command, args, os.environ if env is None else env)
    except (CliError, ValidationError) as exc:
        sys.stderr.write(f"agora-chat {args.command}: {exc}\n")
        return 2
    except AgoraChatError as exc:
        sys.stderr.write(f"agora-chat {args.command}: {exc}\n")
        return 1
    return status
