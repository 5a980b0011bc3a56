"""The one progress display of the ``agora-chat`` commands (rich, on stderr)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .._events import Event, RateLimited, Retrying

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Counter", "Update", "progress_bars"]

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


class _Bars:
    def __init__(self, progress: Any, counter: Counter | None) -> None:
        self._progress, self._counter = progress, counter

    def add(self, description: str, total: int | None) -> Update:
        """A new bar; returns its update function."""
        task = self._progress.add_task(description, total=total, refusals=0, retries=0)

        def update(done: int, total: int | None = None) -> None:
            fields: dict[str, Any] = {"completed": done}
            if total is not None:
                fields["total"] = total
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
    console: Console | None = None,
) -> Iterator[_Bars]:
    """Progress bars on stderr (or *console*); yields an object whose ``add`` makes one.

    Each bar shows done / total, the rate (rich's estimate over the last seconds, times
    *rate_factor*, labelled *rate_unit*), the time elapsed and left, and with *counter*
    the refusals and retries the client saw. *transfer* shows bytes and their speed.
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
    if counter is not None:
        columns.append(TextColumn("429s {task.fields[refusals]}  retries {task.fields[retries]}"))
    with Progress(
        *columns, console=console or Console(stderr=True), disable=not enabled
    ) as progress:
        yield _Bars(progress, counter)
