"""Durable fan-out progress in Redis: a job begun by one worker can be finished by another.

Each job has two keys under one hash tag (``{agora-chat-job:<job>}``, so Redis Cluster keeps
them on one node): its progress (the JSON of :class:`JobProgress`) and its *lease*, the id
of the worker running it, which expires unless renewed. A worker takes the lease before it
loads the job, renews it every ``lease / 3`` seconds while it runs, and gives it back when
it stops; every save is fenced by it (a Lua script writes only while the lease is still
this worker's), so two workers never run one job at once, and a worker that lost its lease
(paused past it, or cut off from Redis) stops at its next save instead of sending on. A
worker that dies (``kill -9``, the OOM killer) keeps its lease until it expires; then
another takes the job over and resumes it by the same rules as a file store.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from typing import TYPE_CHECKING, Any, Final, final

from ._exceptions import JobLeaseError, ValidationError
from ._progress import JobProgress, ProgressStore

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisProgressStore"]

#: Take the lease, or keep it: 1; else the milliseconds left of another worker's lease.
_ACQUIRE: Final = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return -1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return -1
end
return math.max(redis.call('PTTL', KEYS[1]), 0)
"""
#: Renew the lease (and, with a value, save the progress) only while it is ours: 1, else 0.
_FENCED: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3]) end
return 1
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


@final
class RedisProgressStore(ProgressStore):
    """Jobs' progress in Redis, shared by a pool of workers, one worker per job at a time.

    Args:
        redis: a ``redis.asyncio.Redis`` client; you close it.
        lease: seconds a worker's hold on a job lasts unless renewed (renewed every
            ``lease / 3`` seconds while the job runs); a dead worker's job can be taken
            over that long after it died.
        prefix: the first part of the keys.
        worker: this worker's name in the lease (host, process and a random part by
            default).

    Raises:
        ValidationError: ``lease`` is not a positive number of seconds.
    """

    __slots__ = ("_acquire", "_fenced", "_lease_ms", "_prefix", "_redis", "_release", "worker")

    def __init__(
        self,
        redis: Redis,
        *,
        lease: float = 30.0,
        prefix: str = "agora-chat-job",
        worker: str | None = None,
    ) -> None:
        if isinstance(lease, bool) or not isinstance(lease, int | float) or not lease > 0:
            raise ValidationError("lease", f"must be a positive number of seconds, got {lease!r}")
        self._redis, self._prefix = redis, prefix
        self._lease_ms = max(1, round(lease * 1000))
        self.heartbeat = lease / 3
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._acquire = redis.register_script(_ACQUIRE)
        self._fenced = redis.register_script(_FENCED)
        self._release = redis.register_script(_RELEASE)

    def __repr__(self) -> str:
        return f"RedisProgressStore(worker={self.worker!r})"

    def _keys(self, job: str) -> list[str]:
        tag = f"{{{self._prefix}:{job}}}"
        return [f"{tag}:lease", f"{tag}:progress"]

    async def acquire(self, job: str) -> None:
        """Take *job*'s lease (or keep it, if this worker holds it).

        Raises:
            JobLeaseError: another worker holds it; its lease ends in the time named.
        """
        left = int(
            await self._acquire(keys=self._keys(job)[:1], args=[self.worker, self._lease_ms])
        )
        if left >= 0:
            holder = await self._redis.get(self._keys(job)[0])
            name = holder.decode() if isinstance(holder, bytes) else holder
            raise JobLeaseError(
                f"job {job!r} is being run by worker {name!r} (its lease ends in "
                f"{left / 1000:.1f} s unless renewed); run it once that worker is done, or "
                "after its lease has expired if it died"
            )

    async def renew(self, job: str) -> None:
        """Keep *job*'s lease.

        Raises:
            JobLeaseError: the lease is no longer this worker's.
        """
        await self._fence(job, "")

    async def release(self, job: str) -> None:
        """Give *job*'s lease back, if this worker still holds it."""
        await self._release(keys=self._keys(job)[:1], args=[self.worker])

    async def load(self, job: str) -> JobProgress | None:
        """*job*'s progress, or ``None`` if it has none yet.

        Raises:
            ValidationError: the key holds no fan-out progress.
        """
        raw: Any = await self._redis.get(self._keys(job)[1])
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        return JobProgress.from_json(data, f"Redis key {self._keys(job)[1]!r}")

    async def save(self, job: str, progress: JobProgress) -> None:
        """Write *progress*, only while this worker holds the job (and renew its lease).

        Raises:
            JobLeaseError: another worker took the job over; nothing was written.
        """
        await self._fence(job, json.dumps(progress.to_json(), separators=(",", ":")))

    async def _fence(self, job: str, value: str) -> None:
        ours = await self._fenced(keys=self._keys(job), args=[self.worker, self._lease_ms, value])
        if not int(ours):
            raise JobLeaseError(
                f"job {job!r} is no longer this worker's ({self.worker!r}): its lease expired "
                "and another worker may have taken it over; this worker stops sending"
            )
