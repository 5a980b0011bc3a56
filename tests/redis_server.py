"""A real redis-server on a free local port, for the tests of RedisLimiter.

Started and stopped by the ``redis_server`` fixture. Where ``redis-server`` is not
installed the tests that use it skip, unless ``AGORA_CHAT_REQUIRE_REDIS=1`` (set by
``.ci/run`` after installing it), when they fail instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from agora_chat_async.testing import free_port

INSTALL_HINT = (
    "redis-server is not installed; install it to run the Redis tests "
    "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)"
)


def require_redis_server() -> str:
    """The path of redis-server, or skip (fail when AGORA_CHAT_REQUIRE_REDIS=1)."""
    path = shutil.which("redis-server")
    if path is None:
        if os.environ.get("AGORA_CHAT_REQUIRE_REDIS") == "1":
            pytest.fail(f"AGORA_CHAT_REQUIRE_REDIS=1 but {INSTALL_HINT}")
        pytest.skip(INSTALL_HINT)
    return path


class RedisServer:
    """One redis-server process without persistence, bound to 127.0.0.1."""

    def __init__(self, executable: str, directory: Path) -> None:
        self._executable = executable
        self._directory = directory
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - a fixed local binary
            [
                self._executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._directory),
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
                self._process.kill()
                self._process.wait()
            self._process = None

    def restart(self) -> None:
        """Stop and start again on the same port: every key is gone (no persistence)."""
        self.stop()
        self.start()
