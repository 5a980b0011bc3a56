"""Where a durable fan-out keeps its progress, so that a job outlives the worker running it.

A job's progress is three sets of input positions (:class:`~agora_chat_async._ranges.Ranges`):
*done* (delivered), *in flight* (sent, no answer yet) and *unknown* (may or may not have
been delivered), and the fingerprint of its input. Positions, not ids, so a store stays
small however large the fan-out. Failed positions are not kept: they were certainly not
delivered, and a resumed job sends them again.
"""

from __future__ import annotations

import abc
import json
from pathlib import Path
from typing import Any, Final, final

import anyio.to_thread
import attrs

from ._atomic import write_atomically
from ._exceptions import ValidationError
from ._ranges import Ranges

__all__ = ["FileProgressStore", "JobProgress", "ProgressStore"]

_VERSION: Final = 1


@final
@attrs.define(eq=False)
class JobProgress:
    """The progress of one job over one input (``count`` ids with content hash ``sha256``)."""

    count: int
    sha256: str
    done: Ranges = attrs.field(factory=Ranges)
    in_flight: Ranges = attrs.field(factory=Ranges)
    unknown: Ranges = attrs.field(factory=Ranges)
    #: When a worker last recorded a send (Unix seconds): a worker resuming the job within a
    #: window of it waits for that window, which the server still counts.
    saved_at: float | None = None
    #: The SHA-256 of the job's message (``Sender.message_sha256``); ``None`` in progress
    #: saved before jobs were bound to their message (taken as this run's).
    message: str | None = None

    @property
    def finished(self) -> bool:
        """Nothing is left to send: every position delivered or unknown, none in flight
        (a failed recipient is sent again by the next run)."""
        return not self.in_flight and len(self.done) + len(self.unknown) >= self.count

    def to_json(self) -> dict[str, Any]:
        """The progress as a JSON object (the stores' format)."""
        return {
            "version": _VERSION,
            "input": {"count": self.count, "sha256": self.sha256},
            "done": self.done.pairs(),
            "in_flight": self.in_flight.pairs(),
            "unknown": self.unknown.pairs(),
            "saved_at": self.saved_at,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: object, where: str) -> JobProgress:
        """The progress a store holds; *where* names the store in errors.

        Raises:
            ValidationError: the data is not a job's progress.
        """
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            raise ValidationError("store", f"{where} holds no fan-out progress")
        try:
            source = data["input"]
            return cls(
                count=int(source["count"]),
                sha256=str(source["sha256"]),
                done=Ranges((int(a), int(b)) for a, b in data["done"]),
                in_flight=Ranges((int(a), int(b)) for a, b in data["in_flight"]),
                # "uncertain" in progress saved before 0.2: the same positions.
                unknown=Ranges(
                    (int(a), int(b))
                    for a, b in data["unknown" if "unknown" in data else "uncertain"]
                ),
                saved_at=None if data.get("saved_at") is None else float(data["saved_at"]),
                message=None if data.get("message") is None else str(data["message"]),
            )
        except (KeyError, TypeError, ValueError):
            raise ValidationError("store", f"{where} holds no fan-out progress") from None


class ProgressStore(abc.ABC):
    """Keeps jobs' progress. Implementations must be safe to call from many tasks."""

    @abc.abstractmethod
    async def load(self, job: str) -> JobProgress | None:
        """The progress of *job*, or ``None`` if the store has none.

        Raises:
            ValidationError: what the store holds for *job* is not a job's progress.
        """

    @abc.abstractmethod
    async def save(self, job: str, progress: JobProgress) -> None:
        """Persist *progress*; when this returns, a crash can no longer lose it.

        Raises:
            OSError: the store cannot be written (the fan-out stops: sending on without
                a record would break the exactly-once rules).
            JobLeaseError: a shared store: this worker no longer holds the job.
        """

    #: Seconds between two renewals of the job's lease while it runs; ``None``: no lease.
    heartbeat: float | None = None

    async def acquire(self, job: str) -> None:  # noqa: B027 - optional: a shared store's lease
        """Take *job* for this worker before it is loaded.

        Raises:
            JobLeaseError: another worker holds it.
        """

    async def renew(self, job: str) -> None:  # noqa: B027 - optional
        """Keep *job* (every :attr:`heartbeat` seconds while it runs).

        Raises:
            JobLeaseError: another worker took it over.
        """

    async def release(self, job: str) -> None:  # noqa: B027 - optional
        """Let another worker take *job* at once (it ended, or this worker stops)."""

    async def delete(self, job: str) -> None:
        """Forget *job*: a run under its name starts over.

        Raises:
            NotImplementedError: this store cannot delete a job.
            JobLeaseError: a shared store: another worker is running it.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot delete a job")


@final
class FileProgressStore(ProgressStore):
    """A job's progress in one local file, replaced atomically (write, ``fsync``, rename)
    on every change, like ``agora-chat import``'s checkpoint.

    One file holds one job; its name is the job's identity on disk, and the file records
    the job name too, so that a file is never applied to another job.
    """

    __slots__ = ("path",)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"FileProgressStore({str(self.path)!r})"

    async def load(self, job: str) -> JobProgress | None:
        """The progress in the file, or ``None`` if there is no file yet.

        Raises:
            ValidationError: the file is not a fan-out's progress, or another job's.
        """
        try:
            text = await anyio.to_thread.run_sync(self.path.read_text, "utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationError("store", f"cannot read {str(self.path)!r}: {exc}") from None
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("job") != job:
            raise ValidationError(
                "job",
                f"{str(self.path)!r} holds the progress of job {data.get('job')!r}, not "
                f"{job!r}; use another file for another job",
            )
        return JobProgress.from_json(data, repr(str(self.path)))

    async def delete(self, job: str) -> None:
        """Remove the file (nothing happens if there is none).

        Raises:
            ValidationError: the file holds another job's progress (it is kept).
            OSError: the file cannot be removed.
        """
        await self.load(job)  # refuses another job's file
        await anyio.to_thread.run_sync(lambda: self.path.unlink(missing_ok=True))

    async def save(self, job: str, progress: JobProgress) -> None:
        """Replace the file with *progress*, atomically; returns once it is on disk."""
        data = json.dumps({"job": job, **progress.to_json()}, separators=(",", ":"))
        await anyio.to_thread.run_sync(write_atomically, self.path, data.encode("utf-8"))
