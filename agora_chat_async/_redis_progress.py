"""Durable fan-out progress in Redis: a job begun by one worker can be finished by another.

Each job has two keys, ``agora-chat:job:{<job>}:progress`` and ``...:lease`` (one hash tag,
so Redis Cluster keeps them on one node; the prefix first, as ACL key patterns and ``SCAN
MATCH`` expect): its progress (the JSON of :class:`JobProgress`) and its *lease*, the id
of the worker running it, which expires unless renewed. A worker takes the lease before it
loads the job, renews it every ``lease / 3`` seconds while it runs, and gives it back when
it stops; every save is fenced by it (a Lua script writes only while the lease is still
this worker's), so two workers never run one job at once, and a worker that lost its lease
(paused past it, or cut off from Redis) stops at its next save instead of sending on. A
worker that dies (``kill -9``, the OOM killer) keeps its lease until it expires; then
another takes the job over and resumes it by the same rules as a file store.

A finished job's progress expires ``keep`` seconds after its last save (a week by default),
so that a job run again within that time returns at once, and the keys of old jobs go by
themselves; :meth:`RedisProgressStore.delete` forgets a job at once.
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
#: Renew the lease (and, with a value, save the progress, for ARGV[4] ms if not 0) only
#: while it is ours: 1, else 0.
_FENCED: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then
  if ARGV[4] ~= '0' then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
  else redis.call('SET', KEYS[2], ARGV[3]) end
end
return 1
"""
#: Forget the job unless another worker holds it: -1, else the milliseconds left of its lease.
_DELETE: Final = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return math.max(redis.call('PTTL', KEYS[1]), 0) end
redis.call('DEL', KEYS[1], KEYS[2])
return -1
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
        prefix: the first part of the keys (``<prefix>:job:{<job>}:...``).
        worker: this worker's name in the lease (host, process and a random part by
            default).
        keep: seconds a finished job's progress is kept after its last save (a run of it
            within that time returns at once; after it, the job starts over); ``None``
            keeps it until :meth:`delete`.

    Raises:
        ValidationError: ``lease`` or ``keep`` is not a positive number of seconds.
    """

    __slots__ = (
        "_acquire",
        "_delete",
        "_fenced",
        "_keep_ms",
        "_lease_ms",
        "_prefix",
        "_redis",
        "_release",
        "worker",
    )

    def __init__(
        self,
        redis: Redis,
        *,
        lease: float = 30.0,
        prefix: str = "agora-chat",
        worker: str | None = None,
        keep: float | None = 7 * 24 * 3600.0,
    ) -> None:
        for name, value in (("lease", lease), ("keep", 1.0 if keep is None else keep)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValidationError(name, f"must be a positive number of seconds, got {value!r}")
        self._redis, self._prefix = redis, prefix
        self._lease_ms = max(1, round(lease * 1000))
        self._keep_ms = 0 if keep is None else max(1, round(keep * 1000))
        self.heartbeat = lease / 3
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._acquire = redis.register_script(_ACQUIRE)
        self._fenced = redis.register_script(_FENCED)
        self._release = redis.register_script(_RELEASE)
        self._delete = redis.register_script(_DELETE)

    def __repr__(self) -> str:
        return f"RedisProgressStore(worker={self.worker!r})"

    def _keys(self, job: str) -> list[str]:
        tag = f"{self._prefix}:job:{{{job}}}"
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
        """Write *progress*, only while this worker holds the job (and renew its lease); a
        finished job's progress expires ``keep`` seconds later.

        Raises:
            JobLeaseError: another worker took the job over; nothing was written.
        """
        value = json.dumps(progress.to_json(), separators=(",", ":"))
        await self._fence(job, value, self._keep_ms if progress.finished else 0)

    async def delete(self, job: str) -> None:
        """Forget *job* (its progress and lease): a run under its name starts over.

        Raises:
            JobLeaseError: another worker is running it; nothing was deleted.
        """
        left = int(await self._delete(keys=self._keys(job), args=[self.worker]))
        if left >= 0:
            raise JobLeaseError(
                f"job {job!r} is being run by another worker (its lease ends in "
                f"{left / 1000:.1f} s unless renewed); delete it once that worker is done"
            )

    async def _fence(self, job: str, value: str, keep_ms: int = 0) -> None:
        args: list[str | int] = [self.worker, self._lease_ms, value, keep_ms]
        ours = await self._fenced(keys=self._keys(job), args=args)
        if not int(ours):
            raise JobLeaseError(
                f"job {job!r} is no longer this worker's ({self.worker!r}): its lease expired "
                "and another worker may have taken it over; this worker stops sending"
            )
