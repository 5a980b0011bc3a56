"""Agora AccessToken2 (version ``007``) chat app tokens, built locally.

An app token is the string ``"007" + base64(zlib(pack(signature) + signing_info))``
where, with all integers little-endian and strings/maps prefixed by a ``uint16``
length::

    signing_info = str(app_id) + u32(issue_ts) + u32(expire) + u32(salt)
                   + u16(service count)
                   + u16(5)                    # the chat service
                   + u16(1) + u16(2) + u32(expire)   # one privilege: chat app (2)
                   + str("")                   # the chat service's user id: none for an app token
    signing      = HMAC-SHA256(key=u32(salt), HMAC-SHA256(key=u32(issue_ts), app_certificate))
    signature    = HMAC-SHA256(key=signing, signing_info)

``expire`` is a lifetime in seconds counted from ``issue_ts``. The published test
vector (app id ``970CA35de60c44645bbae8a215061b33``, certificate
``5CFd2fd1755d40ecb72977518be15d3b``, issue_ts 1111111, salt 1, expire 600)
is reproduced exactly by ``tests/test_accesstoken.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
import zlib
from typing import Final

from ._exceptions import ValidationError

__all__ = ["PRIVILEGE_CHAT_APP", "SERVICE_CHAT", "VERSION", "build_chat_app_token"]

VERSION: Final = "007"
SERVICE_CHAT: Final = 5
PRIVILEGE_CHAT_APP: Final = 2
_MAX_U32: Final = 0xFFFFFFFF


def _u16(value: int) -> bytes:
    return struct.pack("<H", value)


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _string(value: bytes) -> bytes:
    return _u16(len(value)) + value


def _check_hex32(field: str, value: str) -> bytes:
    if not isinstance(value, str) or len(value) != 32:
        raise ValidationError(field, "must be the 32-character hex string shown in Agora Console")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise ValidationError(
            field, "must be the 32-character hex string shown in Agora Console"
        ) from None
    return value.encode("ascii")


def build_chat_app_token(
    app_id: str,
    app_certificate: str,
    *,
    expire: int,
    issue_ts: int | None = None,
    salt: int | None = None,
) -> str:
    """Build an Agora Chat app token (AccessToken2, chat service, app privilege).

    Args:
        app_id: the project's App ID (32 hex characters).
        app_certificate: the project's primary certificate (32 hex characters).
        expire: lifetime in seconds from ``issue_ts``.
        issue_ts: Unix time of issue; defaults to now.
        salt: random salt in ``1..99999999``; defaults to a random one.

    Raises:
        ValidationError: an argument is malformed. The message never repeats the certificate.
    """
    app_id_bytes = _check_hex32("app_id", app_id)
    certificate = _check_hex32("app_certificate", app_certificate)
    if issue_ts is None:
        issue_ts = int(time.time())
    if salt is None:
        salt = secrets.randbelow(99_999_999) + 1
    for name, value in (("expire", expire), ("issue_ts", issue_ts), ("salt", salt)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_U32:
            raise ValidationError(name, f"must be an integer from 0 to {_MAX_U32}, got {value!r}")

    service = _u16(SERVICE_CHAT) + _u16(1) + _u16(PRIVILEGE_CHAT_APP) + _u32(expire) + _string(b"")
    signing_info = (
        _string(app_id_bytes) + _u32(issue_ts) + _u32(expire) + _u32(salt) + _u16(1) + service
    )
    signing = hmac.new(_u32(issue_ts), certificate, hashlib.sha256).digest()
    signing = hmac.new(_u32(salt), signing, hashlib.sha256).digest()
    signature = hmac.new(signing, signing_info, hashlib.sha256).digest()
    packed = zlib.compress(_string(signature) + signing_info)
    return VERSION + base64.b64encode(packed).decode("ascii")
