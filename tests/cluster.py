"""A real Redis Cluster of three masters on local ports, for the tests that need one."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from types import TracebackType
from typing import Self

from agora_chat_async.testing import RedisServer
from agora_chat_async.testing._server import free_port

#: redis-cli, installed beside redis-server (Debian's redis-tools, a dependency of it).
REDIS_CLI = shutil.which("redis-cli") or "redis-cli"


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class RedisCluster:
    """Three ``redis-server --cluster-enabled yes`` on free ports of 127.0.0.1, joined by
    ``redis-cli --cluster create`` (no replicas), stopped on exit."""

    def __init__(self, masters: int = 3) -> None:
        self.nodes = []
        for _ in range(masters):
            node = RedisServer(
                options=["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]
            )
            # A node also listens on its port + 10000 (the cluster bus): both must be free.
            while node.port > 55535 or not _free(node.port + 10000):
                node.port = free_port()
            self.nodes.append(node)

    @property
    def url(self) -> str:
        """A URL of one node, for ``redis.asyncio.RedisCluster.from_url``."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(  # noqa: S603 - redis-cli from the same install as redis-server
            [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 30
        while not all(self._ok(node.port) for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not come up")
            time.sleep(0.1)

    @staticmethod
    def _ok(port: int) -> bool:
        info = subprocess.run(  # noqa: S603
            [REDIS_CLI, "-p", str(port), "cluster", "info"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
        return "cluster_state:ok" in info

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for node in self.nodes:
            node.__exit__(None, None, None)
