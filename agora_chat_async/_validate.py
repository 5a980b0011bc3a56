"""Argument checks shared by the endpoints; each failure is a ValidationError naming the field."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import attrs

from ._exceptions import ValidationError

__all__ = [
    "check_aware",
    "check_choice",
    "check_finite",
    "check_id",
    "check_mapping",
    "check_seconds",
    "check_text",
    "fraction",
    "non_negative",
    "non_negative_int",
    "positive",
    "positive_int",
    "recipients",
    "to_millis",
]

T = TypeVar("T")


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def positive(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """An attrs validator: a number greater than zero."""
    if not _is_number(value) or not value > 0:  # type: ignore[operator]
        raise ValidationError(attribute.name, f"must be greater than zero, got {value!r}")


def positive_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """An attrs validator: an int greater than zero."""
    if type(value) is not int:
        raise ValidationError(attribute.name, f"must be an int, got {value!r}")
    positive(instance, attribute, value)


def non_negative(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """An attrs validator: a number, zero or more (not NaN)."""
    if not _is_number(value) or not value >= 0:  # type: ignore[operator]
        raise ValidationError(attribute.name, f"must be a number >= 0, got {value!r}")


def non_negative_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """An attrs validator: an int, zero or more."""
    if type(value) is not int or value < 0:
        raise ValidationError(attribute.name, f"must be an int >= 0, got {value!r}")


def fraction(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """An attrs validator: a number from 0 to 1."""
    if not _is_number(value) or not 0 <= value <= 1:  # type: ignore[operator]
        raise ValidationError(attribute.name, f"must be a fraction from 0 to 1, got {value!r}")


def check_seconds(field: str, value: object) -> int:
    """A lifetime in whole seconds: a positive int."""
    if type(value) is not int or value <= 0:
        raise ValidationError(field, f"must be a positive number of seconds, got {value!r}")
    return value


def check_aware(field: str, value: datetime) -> datetime:
    """A datetime that knows its time zone (a naive one is ambiguous)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            field, "is a naive datetime; pass an aware one (for example tzinfo=UTC)"
        )
    return value


def check_text(field: str, value: str) -> str:
    """A string the service can receive: UTF-8 has no lone surrogate (``'\\ud800'``, what
    a broken decoder or ``surrogateescape`` leaves behind)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            field,
            f"holds {value[exc.start : exc.end]!r} at {exc.start}, a lone surrogate that "
            "UTF-8 cannot carry; decode the text it came from correctly",
        ) from None
    return value


def check_id(field: str, value: object) -> str:
    """A user, group, room or message id: a non-empty string that UTF-8 can carry."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, f"must be a non-empty string, got {value!r}")
    return check_text(field, value)


def check_choice(field: str, value: T, choices: Collection[T]) -> T:
    """One of the documented values."""
    if value not in choices:
        allowed = ", ".join(repr(choice) for choice in choices)
        raise ValidationError(field, f"must be one of {allowed}; got {value!r}")
    return value


def check_mapping(field: str, value: object) -> Mapping[str, Any]:
    """A JSON object; ``None`` is not accepted (the service refuses ``null`` here), nor is
    a number JSON cannot carry anywhere in it (:func:`check_finite`)."""
    if not isinstance(value, Mapping):
        raise ValidationError(field, f"must be a mapping (a JSON object), got {value!r}")
    check_finite(field, value)
    return value


def check_finite(field: str, value: object) -> None:
    """Refuse ``NaN`` and the infinities anywhere in *value* (JSON has no such numbers:
    Python's ``json`` would write ``NaN``, which the service cannot parse), and strings
    (keys too) that UTF-8 cannot carry (:func:`check_text`).

    Raises:
        ValidationError: naming the first such value's place, e.g. ``ext['score']``.
    """
    stack: list[tuple[str, object]] = [(field, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValidationError(
                where, f"is {item!r}, which JSON cannot carry; send a finite number or a string"
            )
        if isinstance(item, str):
            check_text(where, item)
        elif isinstance(item, Mapping):
            for key in item:
                if isinstance(key, str):
                    check_text(f"{where} key {key!r}", key)
            stack.extend((f"{where}[{key!r}]", child) for key, child in item.items())
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}[{index}]", child) for index, child in enumerate(item))


def recipients(field: str, to: str | Iterable[str]) -> tuple[list[str], dict[str, int]]:
    """Recipient ids in order, duplicates removed (a recipient is sent to once), and how
    many more times each duplicated id was named."""
    if isinstance(to, str):
        to = [to]
    if isinstance(to, bytes | Mapping):
        raise ValidationError(field, "must be an id or an iterable of ids")
    result = [check_id(f"{field}[{index}]", item) for index, item in enumerate(to)]
    if not result:
        raise ValidationError(field, "names no recipient")
    unique = list(dict.fromkeys(result))
    duplicates: dict[str, int] = {}
    if len(unique) < len(result):
        for recipient in result:
            duplicates[recipient] = duplicates.get(recipient, -1) + 1
        duplicates = {recipient: more for recipient, more in duplicates.items() if more}
    return unique, duplicates


def to_millis(field: str, value: datetime | int) -> int:
    """A timestamp as Unix milliseconds, from an aware datetime or an int."""
    if isinstance(value, datetime):
        return int(check_aware(field, value).timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(
            field, f"must be an aware datetime or Unix milliseconds, got {value!r}"
        )
    return value
