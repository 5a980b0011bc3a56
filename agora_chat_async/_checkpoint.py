"""A progress file for resumable bulk work: which lines of an input are done, which in flight.

``agora-chat import`` sends one request per line of a JSON-lines file. An import is not
idempotent, so a run stopped at any moment (Ctrl-C, kill, a crash, a power cut) must
restart without importing any line twice and without skipping any. The checkpoint makes
that hold for every line except those whose request was on the wire when the process
died:

- before a line's request is sent, it is recorded *in flight*;
- when its answer arrives, it is recorded *done* (or *failed*: refused, not imported);
- every record replaces the file atomically (write, ``fsync``, rename), so a crash leaves
  either the old state or the new one, never a torn file.

On restart, done lines are skipped and the rest are sent, failed ones included (they
were certainly not imported). A line still in flight may or may not have been imported:
nothing can tell (the import API has no idempotency key). It is not sent again by
default; it is reported as uncertain, by line number, and ``--resend-uncertain`` sends it
again for a caller who checked. The window is one request per worker: at most
``concurrency`` lines can be uncertain.

The file also records the input's size and the hash of its first 64 KB, so a checkpoint
is never applied to another file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Final, final

from ._atomic import write_atomically
from ._exceptions import ValidationError

__all__ = ["Checkpoint"]

_HEAD_BYTES: Final = 64 * 1024
_VERSION: Final = 1


def _fingerprint(path: Path) -> dict[str, Any]:
    with path.open("rb") as file:
        head = file.read(_HEAD_BYTES)
    return {"size": path.stat().st_size, "head_sha256": hashlib.sha256(head).hexdigest()}


@final
class Checkpoint:
    """The progress of one input file, persisted to ``path`` after every change."""

    def __init__(self, path: Path, source: Path) -> None:
        self.path = path
        self._source = _fingerprint(source)
        #: Every line below this one is done, failed or uncertain (so the file stays small).
        self.prefix = 0
        #: Done lines at or above the prefix.
        self.done: set[int] = set()
        self.failed: set[int] = set()
        self.in_flight: set[int] = set()
        #: Lines that were in flight when an earlier run stopped.
        self.uncertain: set[int] = set()
        #: Uncertain lines to send again (:meth:`resend_uncertain`).
        self.resending: set[int] = set()

    @classmethod
    def open(cls, path: Path, source: Path) -> Checkpoint:
        """The checkpoint at *path* for *source*, empty if there is none yet.

        Raises:
            ValidationError: the file is not a checkpoint, or belongs to another input.
        """
        checkpoint = cls(path, source)
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return checkpoint
        except (OSError, ValueError) as exc:
            raise ValidationError("checkpoint", f"cannot read {str(path)!r}: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            raise ValidationError("checkpoint", f"{str(path)!r} is not an agora-chat checkpoint")
        if data.get("source") != checkpoint._source:
            raise ValidationError(
                "checkpoint",
                f"{str(path)!r} records another input file (its size or first bytes differ); "
                "use another --checkpoint or delete it to start over",
            )
        checkpoint.prefix = int(data.get("prefix", 0))
        checkpoint.done = set(data.get("done", []))
        checkpoint.failed = set(data.get("failed", []))
        checkpoint.uncertain = set(data.get("in_flight", [])) | set(data.get("uncertain", []))
        return checkpoint

    def resend_uncertain(self) -> list[int]:
        """Send the uncertain lines again (the caller checked they were not imported)."""
        self.resending |= self.uncertain
        self.uncertain.clear()
        return sorted(self.resending)

    def finished(self, line: int) -> bool:
        """Whether *line* needs no sending: done, or uncertain.

        Failed lines are sent again: they were certainly not imported.
        """
        if line in self.resending or line in self.failed:
            return False
        return line < self.prefix or line in self.done or line in self.uncertain

    def start(self, line: int) -> None:
        """Record *line* in flight, before its request is sent."""
        self.uncertain.discard(line)
        self.resending.discard(line)
        self.failed.discard(line)
        self.in_flight.add(line)
        self._save()

    def finish(self, line: int, *, ok: bool) -> None:
        """Record *line* done (imported) or failed (refused, not imported)."""
        self.in_flight.discard(line)
        if not ok:
            self.failed.add(line)
        elif line >= self.prefix:
            self.done.add(line)
        self._advance()
        self._save()

    def leave_uncertain(self, line: int) -> None:
        """Record that *line*'s request may or may not have been processed."""
        self.in_flight.discard(line)
        self.uncertain.add(line)
        self._advance()
        self._save()

    def _advance(self) -> None:
        while (
            self.prefix in self.done or self.prefix in self.failed or self.prefix in self.uncertain
        ):
            self.done.discard(self.prefix)
            self.prefix += 1

    def _save(self) -> None:
        data = {
            "version": _VERSION,
            "source": self._source,
            "prefix": self.prefix,
            "done": sorted(self.done),
            "failed": sorted(self.failed),
            "in_flight": sorted(self.in_flight),
            # Lines being resent stay uncertain until they start.
            "uncertain": sorted(self.uncertain | self.resending),
        }
        write_atomically(self.path, json.dumps(data, separators=(",", ":")).encode("utf-8"))
