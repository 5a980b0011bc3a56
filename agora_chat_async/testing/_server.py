"""Serving the emulator on a real local socket, in a background thread (needs uvicorn)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any, Self, final

from ._emulator import Emulator

__all__ = ["EmulatorServer", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on *host* a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@final
class EmulatorServer:
    """Run an :class:`Emulator` with uvicorn on ``127.0.0.1`` in a daemon thread.

    Use as a context manager; ``url`` is the base URL to give the client::

        with EmulatorServer(Emulator()) as server:
            client = AgoraChatClient(server.url, "test-org", "test-app", auth=...)

    Raises:
        RuntimeError: uvicorn is not installed (``pip install agora-chat-async[testing]``)
            or the server did not start within 10 seconds.
    """

    def __init__(self, emulator: Emulator, *, host: str = "127.0.0.1", port: int = 0) -> None:
        try:
            import uvicorn
        except ImportError:
            raise RuntimeError(
                "serving the emulator on a socket needs uvicorn: "
                "pip install 'agora-chat-async[testing]'"
            ) from None
        self.emulator = emulator
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(
            emulator,
            host=host,
            port=self.port,
            log_level="critical",
            lifespan="on",
            access_log=False,
        )
        self._server: Any = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, daemon=True, name=f"agora-chat-emulator:{self.port}"
        )

    @property
    def url(self) -> str:
        """The base URL, for example ``http://127.0.0.1:53211``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Start serving and wait until the socket accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the emulator did not start on {self.url}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        self._server.should_exit = True
        self._thread.join(timeout=10)

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
