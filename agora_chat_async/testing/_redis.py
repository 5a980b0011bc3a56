"""A real redis-server on a free local port, for tests and benchmarks of RedisLimiter."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self, final

from ._server import free_port

#: How to install redis-server, for messages.
INSTALL_HINT = (
    "redis-server is not installed; install it to run the Redis tests "
    "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)"
)


@final
class RedisServer:
    """A ``redis-server`` process on a free port of 127.0.0.1, without persistence.

    Use it as a context manager (started on entry, stopped on exit)::

        with RedisServer() as server:
            limiter = RedisLimiter(redis.asyncio.from_url(server.url))

    :meth:`restart` stops it and starts it again on the same port with no data,
    as a Redis without persistence comes back from a crash.

    *options* are more of ``redis-server``'s command-line options, for example
    ``["--enable-debug-command", "local"]`` for a test that runs ``DEBUG SLEEP``.

    Raises:
        FileNotFoundError: ``redis-server`` is not on ``PATH`` (the message says how
            to install it).
    """

    def __init__(self, executable: str | None = None, *, options: Sequence[str] = ()) -> None:
        found = executable or shutil.which("redis-server")
        if found is None:
            raise FileNotFoundError(INSTALL_HINT)
        self._executable = found
        self._options = list(options)
        self._directory = tempfile.TemporaryDirectory(prefix="agora-chat-redis-")
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._directory.cleanup()

    def start(self) -> None:
        """Start the server and wait until it answers ``PING``.

        Raises:
            RuntimeError: it did not answer within 10 seconds.
        """
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
                self._directory.name,
                "--loglevel",
                "warning",
                *self._options,
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
        """Stop the server (its data is gone); a no-op if it is not running."""
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
