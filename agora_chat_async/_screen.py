"""What a fan-out does with its input's ids, as users give them: one rule for every path.

Real id lists have duplicates and blank lines. A fan-out (``fan_out``,
``durable_fan_out``, ``agora-chat send``) reads its input one id at a time, and:

- sends each id **once**, at its first occurrence: each later occurrence is counted in
  the result's ``duplicates`` (the service refuses a request that names an id twice, and
  would fail the whole batch);
- **fails** an id that cannot be sent (not a string, empty or blank, or so long that it
  could never fit a request) on its own, with a :class:`ValidationError` naming its input
  position, in the result's ``failed`` (keyed by the id, or by its ``repr`` when it is not
  a string), and goes on with the rest.

So every position of the input ends in exactly one outcome: delivered, failed, unknown,
or a duplicate of an earlier position. The ids seen are kept for the fan-out's duration
(memory grows with the distinct ids, about 100 bytes each).
"""

from __future__ import annotations

from typing import final

from ._exceptions import AgoraChatError, ValidationError
from ._models import SendResult
from ._validate import check_id

__all__ = ["Screen"]


@final
class Screen:
    """Screens a fan-out's input, one id at a time (see the module's rule)."""

    __slots__ = ("_duplicates", "_failed", "_seen")

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._failed: dict[str, AgoraChatError] = {}
        self._duplicates: dict[str, int] = {}

    def check(self, recipient: object, position: int) -> str | None:
        """*recipient* if it is to be sent, else ``None`` (it is in the next :meth:`report`)."""
        key = recipient if isinstance(recipient, str) else repr(recipient)
        if key in self._seen:
            self._duplicates[key] = self._duplicates.get(key, 0) + 1
            return None
        self._seen.add(key)
        try:
            return check_id(f"to[{position}]", recipient)
        except ValidationError as error:
            self._failed[key] = error
            return None

    def fail(self, recipient: str, error: ValidationError) -> None:
        """*recipient*, passed by :meth:`check`, cannot be sent after all (too long)."""
        self._failed[recipient] = error

    def report(self) -> SendResult | None:
        """What was screened out since the last report, if anything."""
        if not self._failed and not self._duplicates:
            return None
        result = SendResult(failed=self._failed, duplicates=self._duplicates)
        self._failed, self._duplicates = {}, {}
        return result
