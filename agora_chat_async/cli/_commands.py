"""The ``agora-chat`` commands that talk to a service (their settings: ``_settings``)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.lowlevel
import anyio.to_thread
from anyio import AsyncFile

from .._atomic import write_atomically
from .._converter import converter
from .._durable import Job
from .._exceptions import AgoraChatError, OutcomeUnknownError, ValidationError
from .._models import Body, CustomBody, SendResult, TextBody
from .._progress import FileProgressStore, JobProgress
from .._tasks import task_group
from ._inputs import json_object, message_body, open_for_writing, read_text, recipients
from ._progress import Bars, Counter, Update, progress_bars
from ._reasons import Reasons
from ._settings import CliError, make_client

__all__ = [
    "broadcast",
    "delete_conversation",
    "download",
    "edit",
    "history",
    "import_",
    "recall",
    "send",
    "upload",
]


# -- send -------------------------------------------------------------------------------------


def _outcomes(result: SendResult) -> Iterator[dict[str, Any]]:
    for recipient, message_id in result.message_ids.items():
        yield {"recipient": recipient, "status": "delivered", "message_id": message_id}
    for recipient, error in result.failed.items():
        yield {"recipient": recipient, "status": "failed", "error": str(error)}
    for recipient, unknown in result.unknown.items():
        yield {"recipient": recipient, "status": "unknown", "error": str(unknown)}


def _message(args: argparse.Namespace) -> tuple[Body, dict[str, Any] | None]:
    if args.text is not None:
        body: Body = TextBody(msg=args.text)
    else:
        body = message_body(
            json_object(read_text(args.body, "the body file"), args.body), args.body
        )
    return body, json_object(args.ext, "--ext") if args.ext else None


def _job_name(args: argparse.Namespace, body: Body, ext: dict[str, Any] | None) -> str:
    """The job of a resumable send: its target and a hash of its message, so that a
    checkpoint is never applied to another message."""
    message = {"body": converter.unstructure(body), "ext": ext, "from": args.sender}
    digest = hashlib.sha256(json.dumps(message, sort_keys=True).encode()).hexdigest()
    return f"agora-chat send {args.target} {digest[:16]}"


def _check_job(checkpoint: str, job: str) -> None:
    """Refuse a checkpoint of another send from the same file, saying what differs."""
    try:
        recorded = json.loads(Path(checkpoint).read_text("utf-8")).get("job")
    except (OSError, ValueError, AttributeError):
        return  # none yet, or not ours: the store says so
    if isinstance(recorded, str) and recorded != job:
        target = recorded.split(" ")[2] if recorded.count(" ") >= 3 else "?"
        differs = (
            "target" if target != job.split(" ")[2] else "message (text, body, --ext or --from)"
        )
        raise CliError(
            f"{checkpoint} records a send of this file with another {differs}; to send this "
            "one too, give it its own --checkpoint FILE; to start over, delete the checkpoint"
        )


class _Tally:
    """What a send's recipients came to, as answered: the counts, the progress bar (once
    the earlier runs' count is known) and the reasons of those not delivered."""

    def __init__(self) -> None:
        self.totals = {"delivered": 0, "failed": 0, "unknown": 0}
        self.duplicates = 0
        self.earlier = 0  # delivered by earlier runs of a resumable send
        self.reasons = Reasons()
        self._bar: Update | None = None

    def add(self, result: SendResult) -> None:
        """Count *result* when it is answered (a resumable send: before it is recorded)."""
        totals = self.totals
        totals["delivered"] += len(result.message_ids)
        totals["failed"] += len(result.failed)
        totals["unknown"] += len(result.unknown)
        self.duplicates += sum(result.duplicates.values())
        for recipient, error in (*result.failed.items(), *result.unknown.items()):
            self.reasons.add(recipient, error)
        self._refresh()

    def show(self, bars: Bars, target: str, total: int, *, left_unknown: int) -> None:
        """The bar: what earlier runs answered (or left unknown) is done, not in the rate."""
        self._bar = bars.add(target, total, completed=self.earlier + left_unknown)
        self._refresh()

    def _refresh(self) -> None:
        if self._bar is not None:
            totals = self.totals
            answered = self.earlier + sum(totals.values()) + self.duplicates
            self._bar(answered, failed=totals["failed"], unknown=totals["unknown"])

    @property
    def ok(self) -> bool:
        return self.totals["failed"] == self.totals["unknown"] == 0

    def summary(self) -> None:
        """The counts, then why recipients were not delivered, grouped by reason."""
        totals, earlier = self.totals, self.earlier
        earlier_note = f" ({earlier} in earlier runs)" if earlier else ""
        duplicate_note = (
            f", {self.duplicates} duplicates (each id sent once)" if self.duplicates else ""
        )
        sys.stdout.write(
            f"{totals['delivered'] + earlier} delivered{earlier_note}, {totals['failed']} "
            f"failed, {totals['unknown']} unknown{duplicate_note}\n"
        )
        if lines := self.reasons.lines():
            sys.stdout.write("not delivered, by reason:\n" + "\n".join(lines) + "\n")


async def send(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``agora-chat send users|groups|rooms``: exit status 1 if any recipient is not delivered.

    With ``--file`` the send is resumable (``_durable.py``): progress in a checkpoint, and
    the results file keeps one final line per recipient across runs.
    """
    if (args.checkpoint or args.resend_unknown) and not args.file:
        raise CliError("--checkpoint and --resend-unknown need --file (stdin is not resumable)")
    ids = await anyio.to_thread.run_sync(recipients, args)  # a file, or stdin: off the loop
    body, ext = _message(args)
    counter = Counter()
    tally = _Tally()
    resumable = args.file is not None and not args.recipients
    results = _Results(Path(args.results) if args.results else None, keep=resumable)
    await results.open()
    try:
        async with make_client(args, env, on_event=counter) as client:
            with progress_bars(
                enabled=not args.no_progress, counter=counter, outcomes=True
            ) as bars:
                if resumable:
                    checkpoint = args.checkpoint or f"{args.file}.checkpoint"
                    await anyio.to_thread.run_sync(
                        _check_job, checkpoint, _job_name(args, body, ext)
                    )

                    async def record(result: SendResult) -> None:
                        await results.write(_outcomes(result), sync=True)
                        tally.add(result)

                    fan_out: Any = client.durable_fan_out(
                        ids,
                        body,
                        job=_job_name(args, body, ext),
                        store=FileProgressStore(checkpoint),
                        resend_unknown=args.resend_unknown,
                        target=args.target,
                        record=record,
                        sender=args.sender,
                        ext=ext,
                    )
                else:
                    fan_out = client.fan_out(
                        ids, body, target=args.target, sender=args.sender, ext=ext
                    )
                async with fan_out as batches:
                    before = dict(getattr(batches, "unknown", {}))
                    tally.earlier = getattr(batches, "delivered_before", 0)
                    left = len(before) if not args.resend_unknown else 0
                    if left:
                        tally.totals["unknown"] += left
                        await results.write(
                            {"recipient": user, "status": "unknown", "error": _EARLIER}
                            for user in before.values()
                        )
                    tally.show(bars, args.target, len(ids), left_unknown=left)
                    async for result in batches:
                        if not resumable:  # a resumable send's record counted and wrote it
                            tally.add(result)
                            await results.write(_outcomes(result))
    finally:
        await results.close()
    if resumable and before and not args.resend_unknown:
        sys.stderr.write(
            f"{len(before)} recipients were being sent to when an earlier run stopped and "
            "may or may not have received the message; they were not sent again (check "
            "them, then rerun with --resend-unknown to send them)\n"
        )
    tally.summary()
    return 0 if tally.ok else 1


_EARLIER: Final = "an earlier run stopped while sending to it: it may or may not have received it"


class _Results:
    """``--results FILE``: one JSON line per recipient. Kept across the runs of a resumable
    send (appended, then compacted to the last line of each recipient when a run ends), so
    that it ends with one final line per recipient; otherwise written afresh."""

    def __init__(self, path: Path | None, *, keep: bool) -> None:
        self._path, self._keep = path, keep
        self._file: AsyncFile[str] | None = None

    async def open(self) -> None:
        if self._path is not None:
            self._file = await open_for_writing(str(self._path), append=self._keep)

    async def write(self, lines: Iterable[dict[str, Any]], *, sync: bool = False) -> None:
        """Append *lines*; with *sync*, on disk when this returns (before the checkpoint)."""
        if self._file is not None:
            await self._file.write(
                "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
            )
            if sync:
                await self._file.flush()
                await anyio.to_thread.run_sync(os.fsync, self._file.wrapped.fileno())

    async def close(self) -> None:
        if self._file is None:
            return
        await self._file.aclose()
        if self._keep and self._path is not None:
            await anyio.to_thread.run_sync(_compact, self._path)


def _compact(path: Path) -> None:
    """Keep the last line of each recipient, in the order recipients were last written;
    but a ``delivered`` line is never replaced by an ``unknown`` one (a run that stopped
    between the log and the checkpoint left it unknown there, delivered here)."""
    last: dict[str, tuple[str, str]] = {}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                entry = json.loads(line)
                recipient, status = entry["recipient"], entry["status"]
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash: the recipient has another
            kept = last.get(recipient)
            if kept is not None and kept[0] == "delivered" and status == "unknown":
                continue
            last.pop(recipient, None)
            last[recipient] = (status, line if line.endswith("\n") else line + "\n")
    write_atomically(path, "".join(line for _, line in last.values()).encode("utf-8"))


# -- import -----------------------------------------------------------------------------------


def _import_args(data: Mapping[str, Any], where: str) -> tuple[str, str, Body, dict[str, Any]]:
    """A line's import arguments, checked before anything is sent.

    Raises:
        CliError: the line is not an import request body.
    """
    try:
        sender, to = data["from"], data["target"]
        body = message_body({"type": data["type"], **data["body"]}, where)
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


def _pending(name: str, lines: list[str], progress: JobProgress) -> list[_Line]:
    """The lines still to send (not blank, not done, not unknown), each checked before any
    is sent (a typo on line 900,000 stops the run before it starts, not in the middle).

    Raises:
        CliError: a line is not a JSON import request body.
    """
    pending: list[_Line] = []
    for index, text in enumerate(lines):
        if not text.strip() or index in progress.done or index in progress.unknown:
            continue
        where = f"{name}:{index + 1}"
        pending.append((index, _import_args(json_object(text, where), where)))
    return pending


def _report_import(
    pending: int, failures: list[str], unknown_before: list[int], job: Job, path: Path
) -> int:
    for failure in failures:
        sys.stderr.write(failure + "\n")
    if unknown_before:
        sys.stderr.write(
            f"lines {', '.join(str(i + 1) for i in unknown_before)} were being imported when "
            "an earlier run stopped and may or may not be imported; they were not sent again "
            "(check them, then rerun with --resend-unknown to import them)\n"
        )
    unknown = len(job.progress.unknown)
    sys.stdout.write(
        f"{pending - len(failures)} imported, {len(failures)} not imported or unknown; "
        f"{unknown} unknown in all; progress in {str(path)!r}\n"
    )
    return 0 if not failures and not unknown else 1


def _read_input(path: str) -> tuple[list[str], str]:
    """The lines of the messages file, and the SHA-256 of the whole of it."""
    text = read_text(path, "the messages file")
    return text.splitlines(), hashlib.sha256(text.encode("utf-8")).hexdigest()


async def _import_job(args: argparse.Namespace, count: int, sha256: str) -> tuple[Job, Path]:
    """The import's progress (a :class:`FileProgressStore` beside the file by default):
    what an earlier run left in flight becomes unknown, resent only if asked.

    Raises:
        CliError: the progress file is unreadable, or records another input.
    """
    path = Path(args.checkpoint or f"{args.file}.checkpoint")
    store, name = FileProgressStore(path), f"import {args.target}"
    try:
        progress = await store.load(name)
    except ValidationError as exc:
        raise CliError(
            f"--checkpoint {str(path)!r}: {exc}; give this import a file of its own"
        ) from None
    if progress is None:
        progress = JobProgress(count=count, sha256=sha256)
    elif (progress.count, progress.sha256) != (count, sha256):
        raise CliError(
            f"--checkpoint {str(path)!r} records another input file (it had {progress.count} "
            f"lines, this has {count}, or their contents differ): give this file a "
            "--checkpoint of its own, or delete that one to import it from the start"
        )
    progress.unknown.update(progress.in_flight)
    progress.in_flight.clear()
    if args.resend_unknown:
        progress.unknown.clear()
    job = Job(store, name, progress)
    await job.save(sending=False)
    return job, path


async def import_(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``agora-chat import users|groups FILE``: resumable; exit 1 if any line is not imported.

    Built on the durable fan-out's progress (``Job`` over a ``FileProgressStore``): a line
    is recorded in flight before its request leaves, then done, failed or unknown, every
    file write in a worker thread."""
    if args.concurrency is not None and args.concurrency < 1:
        raise CliError("--concurrency must be at least 1")
    lines, sha256 = await anyio.to_thread.run_sync(_read_input, args.file)
    job, path = await _import_job(args, len(lines), sha256)
    unknown_before = list(job.progress.unknown)  # none when resent (_import_job cleared them)
    # Every line is parsed and checked before any is sent: in a worker thread (a large
    # file takes seconds).
    pending = await anyio.to_thread.run_sync(_pending, args.file, lines, job.progress)
    failures: list[str] = []
    counter = Counter()
    async with make_client(args, env, on_event=counter) as client:
        importer = (
            client.import_user_message if args.target == "users" else client.import_group_message
        )
        with progress_bars(enabled=not args.no_progress, counter=counter, outcomes=True) as bars:
            show = bars.add(f"import {args.target}", len(pending))
            done = failed = unknown = 0
            # As many lines in flight as the quota needs (at most --concurrency), counted
            # from before a line is taken: a line waiting for its turn is not started.
            gate = client.in_flight("other", concurrency=args.concurrency)

            async def import_line(line: _Line) -> None:
                nonlocal done, failed, unknown
                index, (sender, to, body, options) = line
                where = f"{args.file}:{index + 1}"
                try:
                    # Started after the run was stopped (a line failed the group): not begun.
                    await anyio.lowlevel.checkpoint_if_cancelled()
                    job.progress.in_flight.add(index)
                    await job.save()
                    try:
                        await importer(sender, to, body, **options)
                    except OutcomeUnknownError as exc:
                        await job.settle(index, "unknown")
                        failures.append(f"{where}: may or may not be imported: {exc}")
                        unknown += 1
                    except AgoraChatError as exc:
                        await job.settle(index, "failed")
                        failures.append(f"{where}: not imported: {exc}")
                        failed += 1
                    else:
                        await job.settle(index, "done")
                    done += 1
                    show(done, failed=failed, unknown=unknown)
                finally:
                    gate.release()

            async with task_group() as tasks:
                for line in pending:
                    await gate.acquire()
                    tasks.start_soon(import_line, line)
    return _report_import(len(pending), failures, unknown_before, job, path)


# -- the rest ---------------------------------------------------------------------------------


async def history(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``agora-chat history HOUR``: JSON lines (or a table) of one hour's messages."""
    if not args.table:
        async with AsyncExitStack() as files:
            output = None
            if args.output:
                output = await files.enter_async_context(await open_for_writing(args.output))
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


async def broadcast(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``agora-chat broadcast``: one JSON line with the broadcast's id.

    A quota with no room now (``LimitReachedError``, which says when) exits 1 and sends
    nothing; so do the service's refusals. An unknown outcome exits 1 too: check before
    broadcasting again.
    """
    body, ext = _message(args)
    async with make_client(args, env) as client:
        sent = await client.broadcast(args.to, body, sender=args.sender, ext=ext, level=args.level)
    sys.stdout.write(json.dumps({"to": sent.to, "broadcast_id": sent.id}) + "\n")
    return 0


async def edit(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``agora-chat edit MESSAGE_ID``: a text's new text, a custom message's new event, or
    (``--type``) only the ext of another type."""
    new: TextBody | CustomBody | str
    if args.text is not None:
        new = TextBody(msg=args.text)
    elif args.custom_event is not None:
        exts = json_object(args.custom_exts, "--custom-exts") if args.custom_exts else None
        new = CustomBody(custom_event=args.custom_event, custom_exts=exts)
    else:
        new = args.kind
    if args.custom_exts and args.custom_event is None:
        raise CliError("--custom-exts goes with --custom-event")
    ext = json_object(args.ext, "--ext") if args.ext else None
    async with make_client(args, env) as client:
        await client.edit_message(
            args.message_id,
            new,  # type: ignore[arg-type]
            ext=ext,
            merge_ext=not args.replace_ext,
            editor=args.editor,
        )
    sys.stdout.write(f"edited {args.message_id}\n")
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
    with progress_bars(enabled=not args.no_progress, transfer=True) as bars:
        advance = bars.add(args.uuid, None)
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
