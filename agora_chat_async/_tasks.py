"""Task groups whose failure reaches the caller as one exception, of the documented type.

An anyio task group raises an :class:`ExceptionGroup` when a task fails, even when only
one did. A caller of a fan-out cannot know that the library runs tasks, and the docs name
plain types (``TransportError``, ``OSError``, the caller's own ``ValueError``): so every
task group behind a public call is opened with :func:`task_group`, which raises the first
exception of the group itself. The others, when there are several, are named in its notes
(``add_note``), so nothing is lost from a traceback. Cancellation is never a "first
exception": it propagates as the runtime's own, as a task group does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskGroup

__all__ = ["first_exception", "task_group"]


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exception in group.exceptions:
        if isinstance(exception, BaseExceptionGroup):
            leaves.extend(_leaves(exception))
        else:
            leaves.append(exception)
    return leaves


def first_exception(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception to raise for *group*: its first leaf that is not a cancellation (the
    first cancellation if all are), with the other failures named in its notes."""
    cancelled = anyio.get_cancelled_exc_class()
    leaves = _leaves(group)
    failures = [leaf for leaf in leaves if not isinstance(leaf, cancelled)]
    first = failures[0] if failures else leaves[0]
    others = [leaf for leaf in failures if leaf is not first]
    if others:
        first.add_note(
            f"{len(others)} other task(s) of the same job failed too: "
            + "; ".join(f"{type(other).__name__}: {other}" for other in others[:5])
            + (" ..." if len(others) > 5 else "")
        )
    return first


@asynccontextmanager
async def task_group() -> AsyncIterator[TaskGroup]:
    """:func:`anyio.create_task_group`, raising the first failure of its tasks (or of its
    body) itself, never an exception group (:func:`first_exception`)."""
    try:
        async with anyio.create_task_group() as group:
            yield group
    except BaseExceptionGroup as grouped:
        first = first_exception(grouped)
        context = first.__context__
        try:
            raise first  # the group is not its cause: its own context is put back
        finally:
            first.__context__ = context
