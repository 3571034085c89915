"""Write-triggered exclusive-lock failover (tcmu-runner's implicit ALUA policy).

The gateway that owns a disk holds its RBD exclusive lock.  When a write
arrives through a gateway that does not hold it (the initiator failed over to
an Active/Non-optimized path), this gateway takes the lock -- breaking the old
owner's lock, which makes Ceph blocklist (fence) the old owner.  The write waits
for the lock (up to :attr:`ExclusiveLockPolicy.write_wait` seconds) and then
runs; only when the lock does not arrive in that time is it answered BUSY, so
the initiator retries.  Reads never take the lock.  A command that fails with
-ESHUTDOWN/-EROFS means this gateway has been fenced: the lock is marked lost; a
read is retried once on a new client, but a write that was in flight is never
retried here (it may be older than writes made through the new owner): its
connection is dropped so the initiator re-issues it -- see ``ScsiDisk._fenced_write``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time

from .backends.base import Backend, BackendError
from .metrics import LunStats

log = logging.getLogger(__name__)


class LockState(enum.Enum):
    UNLOCKED = "unlocked"
    ACQUIRING = "acquiring"
    LOCKED = "locked"


class ExclusiveLockPolicy:
    """The lock state machine of one disk on one gateway."""

    #: seconds to wait after a failed acquisition before the next write may retry
    retry_delay = 1.0
    #: seconds a write waits for the lock to arrive before it is answered BUSY.  A move
    #: (break, blocklist, acquire) takes well under a second on a healthy cluster; Linux
    #: retries BUSY, but Windows' class driver gives up after a few retries and libiscsi
    #: never retries, so waiting is what keeps a failover invisible to them.
    write_wait = 5.0

    def __init__(self, backend: Backend, stats: LunStats, timeout: float, name: str = "") -> None:
        self.backend = backend
        self.stats = stats
        self.timeout = timeout if timeout > 0 else None
        self.name = name
        self.state = LockState.UNLOCKED
        self._task: asyncio.Task | None = None
        self._not_before = 0.0

    def writable(self) -> bool:
        """True when a write may go to the backend now; else start taking the lock."""
        if self.state is LockState.LOCKED:
            return True
        if self.state is LockState.UNLOCKED and time.monotonic() >= self._not_before:
            self.state = LockState.ACQUIRING
            self._task = asyncio.get_running_loop().create_task(self._acquire())
        return False

    async def wait_writable(self) -> bool:
        """After :meth:`writable` said no: wait (up to :attr:`write_wait`) for the
        acquisition it started; True when the lock is here."""
        if self.state is LockState.LOCKED:
            return True
        task = self._task
        if self.state is not LockState.ACQUIRING or task is None:
            return False  # a recent attempt failed: BUSY until retry_delay has passed
        try:
            await asyncio.wait_for(asyncio.shield(task), self.write_wait)
        except TimeoutError:
            return False
        return self.state is LockState.LOCKED

    async def acquire(self) -> bool:
        """Take the lock now (used by the daemon when it assigns ownership)."""
        if self.state is LockState.LOCKED:
            return True
        if self.state is not LockState.ACQUIRING:
            self._not_before = 0.0
            self.writable()
        task = self._task
        if task is not None:
            await asyncio.shield(task)
        return self.state is LockState.LOCKED

    async def try_acquire(self) -> bool:
        """Take the lock if it is free, fencing no one (the daemon, when this gateway becomes
        a disk's owner: a live holder keeps it until a write here needs it)."""
        if self.state is LockState.LOCKED:
            return True
        if self.state is LockState.ACQUIRING:
            return False
        try:
            got = await self.backend.lock_try_acquire()
        except BackendError as e:
            log.info("%s: lock not taken: %s", self.name, e)
            return False
        if got and self.state is LockState.UNLOCKED:
            self.state = LockState.LOCKED
            self.stats.lock_acquired += 1
            log.info("%s: exclusive lock acquired (it was free)", self.name)
        return self.state is LockState.LOCKED

    async def release(self) -> bool:
        """Give the lock up (this gateway stopped owning the disk); True if it was released.

        Not while a write here is taking it: that write is the initiator's choice of path."""
        if self.state is not LockState.LOCKED:
            return False
        try:
            await self.backend.lock_release()
        except BackendError as e:
            log.warning("%s: releasing the exclusive lock failed: %s", self.name, e)
            return False
        if self.state is LockState.LOCKED:
            self.state = LockState.UNLOCKED
            log.info("%s: exclusive lock released", self.name)
        return True

    def lost(self, err: BackendError) -> None:
        """A write failed because this client was fenced or lost the lock."""
        if self.state is LockState.LOCKED:
            self.state = LockState.UNLOCKED
            self.stats.lock_lost += 1
            log.warning("%s: exclusive lock lost (%s)", self.name, err)

    async def verify(self) -> bool:
        """Re-check ownership with the cluster (detects a silent loss); True if owner."""
        try:
            owner = await self.backend.is_lock_owner()
        except BackendError:
            owner = False
        if not owner and self.state is LockState.LOCKED:
            self.state = LockState.UNLOCKED
            self.stats.lock_lost += 1
        return owner

    async def owners(self) -> list[str]:
        return await self.backend.lock_owners()

    async def break_lock(self, owner: str) -> None:
        await self.backend.lock_break(owner)

    async def _acquire(self) -> None:
        try:
            await asyncio.wait_for(self._take(), self.timeout)
        except (TimeoutError, BackendError) as e:
            self.stats.lock_acquire_failures += 1
            self.state = LockState.UNLOCKED
            self._not_before = time.monotonic() + self.retry_delay
            log.warning("%s: taking the exclusive lock failed: %s", self.name, e or "timeout")
            return
        except asyncio.CancelledError:
            self.state = LockState.UNLOCKED
            raise
        self.state = LockState.LOCKED
        self.stats.lock_acquired += 1
        log.info("%s: exclusive lock acquired", self.name)

    async def _take(self) -> None:
        try:
            if await self.backend.is_lock_owner():
                return
            await self.backend.lock_acquire()
        except BackendError as e:
            reopen = getattr(self.backend, "reopen", None)
            if not e.fenced or reopen is None:
                raise
            # Fenced earlier: a blocklisted client can never write again; start a new one.
            await reopen()
            await self.backend.lock_acquire()

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
