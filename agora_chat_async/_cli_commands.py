"""The ``agora-chat`` commands that talk to a service (see ``_cli.py`` for their settings)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio import AsyncFile
from anyio.streams.memory import MemoryObjectReceiveStream

from ._checkpoint import Checkpoint
from ._cli import CliError, make_client
from ._converter import BODY_TYPES, converter, structure_body
from ._events import Event, RateLimited, Retrying
from ._exceptions import AgoraChatError, OutcomeUnknownError
from ._models import Body, SendResult, TextBody, UnknownBody

__all__ = ["delete_conversation", "download", "history", "import_", "recall", "send", "upload"]


# -- input ------------------------------------------------------------------------------------


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(
            f"cannot read {what} {path!r}: {getattr(exc, 'strerror', None) or exc}"
        ) from None


def _json_object(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise CliError(f"{where}: not a JSON object")
    return value


def _body(data: Mapping[str, Any], where: str) -> Body:
    body = structure_body(data)
    if isinstance(body, UnknownBody):
        raise CliError(
            f"{where}: unknown body type {body.type!r} or fields that do not match it "
            f"(types: {', '.join(BODY_TYPES)})"
        )
    return body


def _recipients(args: argparse.Namespace) -> list[str]:
    if args.recipients:
        lines = list(args.recipients)
    elif args.file:
        lines = _read_text(args.file, "the recipients file").splitlines()
    else:
        lines = sys.stdin.read().splitlines()
    recipients = [line.strip() for line in lines if line.strip()]
    if not recipients:
        raise CliError("no recipients: give ids, --file FILE, or ids on stdin, one a line")
    return recipients


async def _open_for_writing(path: str) -> AsyncFile[str]:
    try:
        return await anyio.open_file(path, "w", encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {path!r}: {exc.strerror}") from None


# -- progress ---------------------------------------------------------------------------------


class _Counter:
    """Counts the refusals and retries the client reports, for the progress bar."""

    def __init__(self) -> None:
        self.refusals = 0
        self.retries = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, RateLimited):
            self.refusals += 1
        elif isinstance(event, Retrying):
            self.retries += 1


@contextmanager
def _progress(
    description: str, total: int, counter: _Counter, *, enabled: bool
) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr; yields ``show(done)``, which also shows the rate, the
    time left, and the refusals and retries *counter* saw."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7.0f}/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("429s {task.fields[refusals]}  retries {task.fields[retries]}"),
        console=Console(stderr=True),
        disable=not enabled,
    ) as progress:
        task = progress.add_task(description, total=total, rate=0.0, refusals=0, retries=0)
        started = anyio.current_time()

        def show(done: int) -> None:
            progress.update(
                task,
                completed=done,
                rate=done / max(anyio.current_time() - started, 1e-9),
                refusals=counter.refusals,
                retries=counter.retries,
            )

        yield show


# -- send -------------------------------------------------------------------------------------


def _outcomes(result: SendResult) -> Iterator[dict[str, Any]]:
    for recipient, message_id in result.message_ids.items():
        yield {"recipient": recipient, "status": "delivered", "message_id": message_id}
    for recipient, error in result.failed.items():
        yield {"recipient": recipient, "status": "failed", "error": str(error)}
    for recipient, unknown in result.unknown.items():
        yield {"recipient": recipient, "status": "unknown", "error": str(unknown)}


async def send(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``agora-chat send users|groups|rooms``: exit status 1 if any recipient is not delivered."""
    recipients = _recipients(args)
    if args.text is not None:
        body: Body = TextBody(msg=args.text)
    else:
        body = _body(_json_object(_read_text(args.body, "the body file"), args.body), args.body)
    ext = _json_object(args.ext, "--ext") if args.ext else None
    counter = _Counter()
    totals = {"delivered": 0, "failed": 0, "unknown": 0}
    async with AsyncExitStack() as files:
        results: AsyncFile[str] | None = None
        if args.results:
            results = await files.enter_async_context(await _open_for_writing(args.results))
        client = make_client(args, env, on_event=counter)
        async with client:
            with _progress(
                args.target, len(recipients), counter, enabled=not args.no_progress
            ) as show:
                async with client.fan_out(
                    recipients, body, target=args.target, sender=args.sender, ext=ext
                ) as batches:
                    async for result in batches:
                        totals["delivered"] += len(result.message_ids)
                        totals["failed"] += len(result.failed)
                        totals["unknown"] += len(result.unknown)
                        if results is not None:
                            await results.write(
                                "".join(
                                    json.dumps(line, ensure_ascii=False) + "\n"
                                    for line in _outcomes(result)
                                )
                            )
                        show(sum(totals.values()))
    sys.stdout.write(
        f"{totals['delivered']} delivered, {totals['failed']} failed, {totals['unknown']} unknown\n"
    )
    return 0 if totals["failed"] == totals["unknown"] == 0 else 1


# -- import -----------------------------------------------------------------------------------


def _import_args(data: Mapping[str, Any], where: str) -> tuple[str, str, Body, dict[str, Any]]:
    """A line's import arguments, checked before anything is sent.

    Raises:
        CliError: the line is not an import request body.
    """
    try:
        sender, to = data["from"], data["target"]
        body = _body({"type": data["type"], **data["body"]}, where)
    except (KeyError, TypeError):
        raise CliError(
            f"{where}: needs from, target, type and body (the import API's request body)"
        ) from None
    options = {
        "is_ack_read": data.get("is_ack_read"),
        "msg_timestamp": data.get("msg_timestamp"),
        "need_download": data.get("need_download"),
    }
    return sender, to, body, options


_Line = tuple[int, tuple[str, str, Body, dict[str, Any]]]


def _pending(name: str, lines: list[str], checkpoint: Checkpoint) -> list[_Line]:
    """The lines still to send, each checked before any is sent (a typo on line 900,000
    stops the run before it starts, not in the middle).

    Raises:
        CliError: a line is not a JSON import request body.
    """
    pending: list[_Line] = []
    for index, text in enumerate(lines):
        if not text.strip() or checkpoint.finished(index):
            continue
        where = f"{name}:{index + 1}"
        pending.append((index, _import_args(_json_object(text, where), where)))
    return pending


def _report_import(
    pending: int, failures: list[str], uncertain_before: list[int], checkpoint: Checkpoint
) -> int:
    for failure in failures:
        sys.stderr.write(failure + "\n")
    if uncertain_before:
        sys.stderr.write(
            f"lines {', '.join(str(i + 1) for i in uncertain_before)} were being imported when "
            "an earlier run stopped and may or may not be imported; they were not sent again "
            "(check them, then rerun with --resend-uncertain to import them)\n"
        )
    uncertain = len(checkpoint.uncertain)
    sys.stdout.write(
        f"{pending - len(failures)} imported, {len(failures)} not imported or uncertain; "
        f"{uncertain} uncertain in all; progress in {str(checkpoint.path)!r}\n"
    )
    return 0 if not failures and not uncertain else 1


async def import_(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``agora-chat import users|groups FILE``: resumable; exit 1 if any line is not imported."""
    if args.concurrency < 1:
        raise CliError("--concurrency must be at least 1")
    source = Path(args.file)
    lines = _read_text(args.file, "the messages file").splitlines()
    checkpoint_path = Path(args.checkpoint or f"{args.file}.checkpoint")
    checkpoint = Checkpoint.open(checkpoint_path, source)
    if args.resend_uncertain:
        checkpoint.resend_uncertain()
    uncertain_before = sorted(checkpoint.uncertain)
    pending = _pending(args.file, lines, checkpoint)
    failures: list[str] = []
    counter = _Counter()
    client = make_client(args, env, on_event=counter)
    importer = client.import_user_message if args.target == "users" else client.import_group_message
    async with client:
        send_stream, receive_stream = anyio.create_memory_object_stream[_Line]()
        with _progress(
            f"import {args.target}", len(pending), counter, enabled=not args.no_progress
        ) as show:
            done = 0

            async def worker(lines_in: MemoryObjectReceiveStream[_Line]) -> None:
                nonlocal done
                async with lines_in:
                    async for index, (sender, to, body, options) in lines_in:
                        where = f"{args.file}:{index + 1}"
                        checkpoint.start(index)
                        try:
                            await importer(sender, to, body, **options)
                        except OutcomeUnknownError as exc:
                            checkpoint.leave_uncertain(index)
                            failures.append(f"{where}: may or may not be imported: {exc}")
                        except AgoraChatError as exc:
                            checkpoint.finish(index, ok=False)
                            failures.append(f"{where}: not imported: {exc}")
                        else:
                            checkpoint.finish(index, ok=True)
                        done += 1
                        show(done)

            async with anyio.create_task_group() as tasks:
                async with receive_stream:
                    for _ in range(args.concurrency):
                        tasks.start_soon(worker, receive_stream.clone())
                async with send_stream:
                    for item in pending:
                        await send_stream.send(item)
    return _report_import(len(pending), failures, uncertain_before, checkpoint)


# -- the rest ---------------------------------------------------------------------------------


async def history(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``agora-chat history HOUR``: JSON lines (or a table) of one hour's messages."""
    if not args.table:
        async with AsyncExitStack() as files:
            output = None
            if args.output:
                output = await files.enter_async_context(await _open_for_writing(args.output))
            client = await files.enter_async_context(make_client(args, env))
            stream = await files.enter_async_context(client.iter_history(args.hour))
            async for record in stream:
                line = json.dumps(converter.unstructure(record), ensure_ascii=False, default=str)
                if output is None:
                    sys.stdout.write(line + "\n")
                else:
                    await output.write(line + "\n")
        return 0
    async with make_client(args, env) as client:
        records = []
        async with client.iter_history(args.hour) as stream:
            async for record in stream:
                records.append(record)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"history {args.hour}")
    for column in ("time", "from", "to", "type", "body"):
        table.add_column(column)
    for record in records:
        body = record.bodies[0] if record.bodies else None
        table.add_row(
            record.timestamp.isoformat(),
            record.sender,
            record.to,
            record.chat_type,
            json.dumps(converter.unstructure(body), ensure_ascii=False) if body else "",
        )
    Console().print(table)
    return 0


async def recall(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``agora-chat recall``: exit status 1 when the service did not recall it."""
    async with make_client(args, env) as client:
        result = await client.recall_message(
            args.message_id, args.to, args.chat_type, sender=args.sender
        )
    if result.recalled:
        sys.stdout.write(f"recalled {result.message_id}\n")
        return 0
    sys.stdout.write(f"not recalled: {result.reason}\n")
    return 1


async def delete_conversation(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``agora-chat delete-conversation``."""
    async with make_client(args, env) as client:
        await client.delete_conversation(args.username, args.channel, args.chat_type)
    sys.stdout.write("deleted\n")
    return 0


async def upload(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``agora-chat upload PATH``: prints uuid, url and share-secret as JSON."""
    async with make_client(args, env) as client:
        uploaded = await client.upload_file(args.path, restrict_access=args.restrict)
    # The share-secret is output the user asked for (it goes in the message body), not a log.
    sys.stdout.write(
        json.dumps(
            {"uuid": uploaded.uuid, "url": uploaded.url, "share_secret": uploaded.share_secret}
        )
        + "\n"
    )
    return 0


async def download(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``agora-chat download UUID DESTINATION``, with a progress bar."""
    from rich.console import Console
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    with Progress(
        *Progress.get_default_columns(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        disable=args.no_progress,
    ) as bar:
        task = bar.add_task(args.uuid, total=None)

        def advance(written: int, total: int | None) -> None:
            bar.update(task, completed=written, total=total)

        async with make_client(args, env) as client:
            size = await client.download_file(
                args.uuid,
                args.destination,
                share_secret=args.share_secret,
                thumbnail=args.thumbnail,
                progress=advance,
            )
    sys.stdout.write(f"{size} bytes written to {args.destination}\n")
    return 0
