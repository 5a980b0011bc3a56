"""The emulator's check of an AccessToken2 app token: the service's side of ``_accesstoken``.

The emulator verifies tokens with its own reader, not with the client's builder, so a
mistake in one is caught by the other (the tests check the reader against the published
vector).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import zlib
from typing import NamedTuple

from .._accesstoken import SERVICE_CHAT, VERSION

__all__ = ["ParsedToken", "parse_token"]


class ParsedToken(NamedTuple):
    """The signed fields of an AccessToken2, as read back by :func:`parse_token`."""

    app_id: str
    issue_ts: int
    expire: int
    salt: int
    services: dict[int, dict[int, int]]
    """Service type -> privilege -> privilege expiry."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            raise ValueError("the token is truncated")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def u16(self) -> int:
        value: int = struct.unpack("<H", self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack("<I", self.take(4))[0]
        return value

    def string(self) -> bytes:
        return self.take(self.u16())


def parse_token(token: str, app_certificate: str) -> ParsedToken:
    """Read an AccessToken2 and check its signature against *app_certificate*.

    Used by the bundled emulator to verify app tokens the way the service does.

    Raises:
        ValueError: the token is malformed or its signature does not match.
    """
    if not token.startswith(VERSION):
        raise ValueError("not an AccessToken2 (version 007) token")
    try:
        packed = zlib.decompress(base64.b64decode(token[len(VERSION) :], validate=True))
    except (ValueError, zlib.error) as exc:
        raise ValueError("the token is not valid base64/zlib") from exc
    reader = _Reader(packed)
    signature = reader.string()
    signing_info = packed[reader.offset :]
    app_id = reader.string().decode("ascii", "replace")
    issue_ts, expire, salt = reader.u32(), reader.u32(), reader.u32()
    services: dict[int, dict[int, int]] = {}
    for _ in range(reader.u16()):
        service_type = reader.u16()
        privileges = {reader.u16(): reader.u32() for _ in range(reader.u16())}
        if service_type != SERVICE_CHAT:
            raise ValueError(f"unsupported service type {service_type}")
        reader.string()  # the chat service's user id
        services[service_type] = privileges
    certificate = app_certificate.encode("ascii")  # the hex text itself is the HMAC key
    signing = hmac.new(struct.pack("<I", issue_ts), certificate, hashlib.sha256).digest()
    signing = hmac.new(struct.pack("<I", salt), signing, hashlib.sha256).digest()
    expected = hmac.new(signing, signing_info, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise ValueError("the token's signature does not match the app certificate")
    return ParsedToken(app_id, issue_ts, expire, salt, services)
