"""The one progress display of the ``agora-chat`` commands (rich, on stderr)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .._events import Event, RateLimited, Retrying

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Bars", "Counter", "Update", "progress_bars"]

#: Moves one bar: ``update(done)``, or ``update(done, total)`` once the total is known.
Update = Callable[..., None]


class Counter:
    """An ``on_event`` hook counting the refusals and retries the client reports."""

    def __init__(self) -> None:
        self.refusals = 0
        self.retries = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, RateLimited):
            self.refusals += 1
        elif isinstance(event, Retrying):
            self.retries += 1


class Bars:
    """The bars of one display: :meth:`add` makes one."""

    def __init__(self, progress: Any, counter: Counter | None) -> None:
        self._progress, self._counter = progress, counter

    def add(self, description: str, total: int | None, *, completed: int = 0) -> Update:
        """A new bar, *completed* already (by an earlier run: not counted in the rate and
        the time left); returns its update function, ``update(done, total=None, *,
        failed=None, unknown=None)``: *done* counts every recipient answered, the failed
        and unknown among them too, which the outcome column shows apart."""
        task = self._progress.add_task(
            description,
            total=total,
            completed=completed,
            refusals=0,
            retries=0,
            failed=0,
            unknown=0,
        )

        def update(
            done: int,
            total: int | None = None,
            *,
            failed: int | None = None,
            unknown: int | None = None,
        ) -> None:
            fields: dict[str, Any] = {"completed": done}
            if total is not None:
                fields["total"] = total
            if failed is not None:
                fields["failed"] = failed
            if unknown is not None:
                fields["unknown"] = unknown
            if self._counter is not None:
                fields.update(refusals=self._counter.refusals, retries=self._counter.retries)
            self._progress.update(task, **fields)

        return update


@contextmanager
def progress_bars(
    *,
    enabled: bool = True,
    counter: Counter | None = None,
    rate_unit: str = "/s",
    rate_factor: float = 1.0,
    transfer: bool = False,
    outcomes: bool = False,
    console: Console | None = None,
    clock: Callable[[], float] | None = None,
) -> Iterator[Bars]:
    """Progress bars on stderr (or *console*); yields an object whose ``add`` makes one.

    Each bar shows done / total, the rate (rich's estimate over the last seconds of this
    run, times *rate_factor*, labelled *rate_unit*), the time elapsed and left, with
    *outcomes* the failed and unknown among the done, and with *counter* the refusals and
    retries the client saw. *transfer* shows bytes and their speed. *clock* (seconds) is
    rich's own monotonic clock unless given (tests give one).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = (task.speed or 0.0) * rate_factor
            return Text(f"{speed:>8,.0f}{rate_unit}")

    columns: list[Any] = [TextColumn("{task.description:>6}"), BarColumn()]
    if transfer:
        columns += [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns += [MofNCompleteColumn(), RateColumn()]
    columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    if outcomes:
        columns.append(TextColumn("failed {task.fields[failed]}  unknown {task.fields[unknown]}"))
    if counter is not None:
        columns.append(TextColumn("429s {task.fields[refusals]}  retries {task.fields[retries]}"))
    with Progress(
        *columns,
        console=console or Console(stderr=True),
        disable=not enabled,
        get_time=clock,
    ) as progress:
        yield Bars(progress, counter)
