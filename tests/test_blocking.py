"""No blocking call on the event loop: the hot paths run under asyncio's debug mode.

An audit hook (``sys.addaudithook``) sees every call that waits on something outside
the process: ``open``, a rename or removal, ``time.sleep``, a blocking name lookup, a
subprocess. The test fails on one made on the loop's thread while the loop runs (such work
belongs in a worker thread). Imports are left out: a module's first import opens its files
wherever it happens. The check is exact: it does not depend on how fast the machine is.

How long the loop's longest step is (CPU work between two awaits) is a timing, so it is
measured in ``benchmarks/`` (``--only loop-steps``), not asserted here.

The paths: ``agora-chat import`` (its progress file, written twice a line), a durable
fan-out with a file store, and a 10 MB upload from a path and from a stream that cannot
seek. Each failed before the change that moved its file work off the loop.
"""

from __future__ import annotations

import asyncio
import io
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agora_chat_async import (
    AgoraChatClient,
    FileProgressStore,
    Rate,
    RateLimits,
    StaticToken,
    TextBody,
)
from agora_chat_async.cli._main import _parser
from agora_chat_async.testing import Emulator, EmulatorServer

T = TypeVar("T")
WATCHED = (
    "open",
    "os.rename",
    "os.replace",
    "os.remove",
    "os.unlink",
    "tempfile.mkstemp",
    "time.sleep",  # audited from Python 3.13
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyaddr",
    "subprocess.Popen",
    "os.system",
)
_watch: dict[str, Any] = {"thread": None, "calls": None}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    calls = _watch["calls"]
    if calls is None or event not in WATCHED or threading.get_ident() != _watch["thread"]:
        return
    if asyncio._get_running_loop() is None:
        return
    where = str(args[0]) if args else ""
    if where.endswith((".py", ".pyc", ".so")) or "/__pycache__/" in where:
        return  # an import
    calls.append(f"{event} {where}")


sys.addaudithook(_audit)  # for the rest of the process: inert unless a watch is on


def run_watched(function: Callable[[], Awaitable[T]]) -> T:
    """Run *function* on a new loop; fail on a blocking call made on the loop's thread.

    It runs once unwatched first, on a loop of its own: a first run imports modules and
    builds cattrs' converters (tens of milliseconds, once per process), which is not what
    is looked for here.
    """
    asyncio.run(function())
    calls: list[str] = []

    async def main() -> T:
        _watch.update(thread=threading.get_ident(), calls=calls)
        try:
            return await function()
        finally:
            _watch.update(thread=None, calls=None)

    result = asyncio.run(main())
    assert not calls, f"blocking calls on the event loop: {calls[:5]}"
    return result


def messages(path: Path, count: int) -> Path:
    path.write_text(
        "".join(
            f'{{"from": "s{index}", "target": "t{index}", "type": "txt", '
            f'"body": {{"msg": "m{index}"}}}}\n'
            for index in range(count)
        )
    )
    return path


def test_the_cli_import_keeps_its_progress_off_the_loop(tmp_path: Path) -> None:
    emulator = Emulator(clients={"id": "secret-0123456789"})
    path = messages(tmp_path / "messages.jsonl", 60)
    with EmulatorServer(emulator) as server:
        env = {
            "AGORA_CHAT_BASE_URL": server.url,
            "AGORA_CHAT_ORG": "test-org",
            "AGORA_CHAT_APP": "test-app",
            "AGORA_CHAT_CLIENT_ID": "id",
            "AGORA_CHAT_CLIENT_SECRET": "secret-0123456789",
        }
        from agora_chat_async.cli import _commands

        runs = iter(range(2))

        def import_() -> Awaitable[int]:
            checkpoint = str(tmp_path / f"run-{next(runs)}.checkpoint")
            argv = ["import", "users", str(path), "--no-progress", "--checkpoint", checkpoint]
            return _commands.import_(_parser().parse_args(argv), env)

        assert run_watched(import_) == 0
    assert len(emulator.imports) == 2 * 60


def on_socket(emulator: Emulator, url: str, **options: Any) -> AgoraChatClient:
    """A client of the emulator served on a socket, from another thread: only the library's
    own steps run on the watched loop."""
    return AgoraChatClient(url, "test-org", "test-app", auth=StaticToken("test-token"), **options)


def test_a_durable_fan_out_with_a_file_store_keeps_it_off_the_loop(tmp_path: Path) -> None:
    emulator = Emulator()
    runs = iter(range(2))
    ids = [f"user-{index}" for index in range(3000)]
    limits = RateLimits(users=Rate(10**9, per=1), send_calls=Rate(10**9, per=1), margin=0)

    async def fan_out() -> int:
        store = FileProgressStore(tmp_path / f"progress-{next(runs)}.json")
        async with on_socket(emulator, server.url, rate_limits=limits) as client:
            delivered = 0
            async with client.durable_fan_out(
                ids, TextBody(msg="hi"), job="welcome", store=store
            ) as results:
                async for result in results:
                    delivered += len(result.message_ids)
            return delivered

    with EmulatorServer(emulator) as server:
        assert run_watched(fan_out) == 3000


@pytest.mark.parametrize("source", ["path", "stream"])
def test_a_10_mb_upload_does_its_file_work_off_the_loop(tmp_path: Path, source: str) -> None:
    emulator = Emulator()
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 10_000_000)

    class Pipe(io.RawIOBase):
        """A stream that cannot seek (a pipe, a socket), 10 MB long."""

        def __init__(self) -> None:
            self.left = 10_000_000

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            size = min(len(buffer), self.left)
            buffer[:size] = b"x" * size
            self.left -= size
            return size

    async def upload() -> str:
        async with on_socket(emulator, server.url) as client:
            file: Any = path if source == "path" else io.BufferedReader(Pipe())
            uploaded = await client.upload_file(file, filename="big.bin")
            return uploaded.uuid

    with EmulatorServer(emulator) as server:
        assert run_watched(upload)


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(lambda path: path.write_text("x"), id="open"),
        pytest.param(
            lambda path: __import__("time").sleep(0),
            id="sleep",
            marks=pytest.mark.skipif(
                sys.version_info < (3, 13), reason="time.sleep is audited from Python 3.13"
            ),
        ),
        pytest.param(lambda path: __import__("socket").getaddrinfo("127.0.0.1", 80), id="lookup"),
    ],
)
def test_the_watch_sees_a_blocking_call_on_the_loop(
    tmp_path: Path, block: Callable[[Path], object]
) -> None:
    async def blocks() -> None:
        block(tmp_path / "file")

    async def off_the_loop() -> None:
        await asyncio.to_thread(block, tmp_path / "file")

    run_watched(off_the_loop)
    with pytest.raises(AssertionError, match="blocking calls on the event loop"):
        run_watched(blocks)
