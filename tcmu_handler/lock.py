"""The exclusive lock of a disk on one gateway: cooperative handoff, fencing only the unresponsive.

The gateway that owns a disk holds its RBD exclusive lock (librbd's managed mode).  A
write through a gateway that does not hold it (the initiator failed over to an
Active/Non-optimized path, or writes through both) waits while this gateway takes the
lock, up to :attr:`ExclusiveLockPolicy.write_wait`, and is answered BUSY only if the lock
has not arrived by then.  Reads never take the lock.

Taking the lock from a live holder is a *handoff*: this gateway asks the holder (a RADOS
notify on the image's handoff object, see ``backends.lock_channel``); the holder stops
admitting writes at once, acknowledges, waits for the writes it admitted to complete,
releases the lock, and this gateway takes the free lock.  Nobody is blocklisted, and no
write of the holder can land afterwards: they all completed before the release, and its
later writes must take the lock back the same way.  Only a holder that does not
acknowledge within :attr:`handoff_timeout` seconds (dead, frozen, cut off from the
cluster), or that promised but still holds the lock after :attr:`release_wait`, has its
lock broken -- Ceph blocklists (fences) it, so nothing it still has queued ever lands.

A fenced gateway learns it when the cluster refuses its next operation (``fenced``,
from the backend).  A write refused that way is answered BUSY, never retried here: it may
be older than writes made through the new holder (an initiator that gave up on this path,
aborted it and wrote through another).  The disk also refuses the writes of the sessions
that existed then (see ``ScsiDisk``), because more of their stale commands may still be
queued in this gateway's sockets.

Races: a holder asked while it is itself taking the lock releases right after, once the
writes that waited for it have run, so each gateway's waiting writes make progress and a
ping-pong never starves either side; after handing the lock over, a gateway lets the
asker take it (it does not grab the free lock for ``handoff_timeout``), then asks it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import Callable

from .backends.base import Backend, BackendError
from .metrics import LunStats

log = logging.getLogger(__name__)

_POLL_FIRST, _POLL_MAX = 0.002, 0.05


class LockState(enum.Enum):
    UNLOCKED = "unlocked"
    ACQUIRING = "acquiring"
    LOCKED = "locked"
    #: handing the lock over: no new writes are admitted, admitted ones finish
    RELEASING = "releasing"


class ExclusiveLockPolicy:
    """The lock state machine of one disk on one gateway (all on the event loop)."""

    #: seconds to wait after a failed acquisition before trying again
    retry_delay = 1.0
    #: seconds a write waits for the lock to arrive before it is answered BUSY.  A handoff
    #: takes milliseconds, a fencing takeover ``handoff_timeout`` plus about a second;
    #: Linux retries BUSY, but Windows' class driver gives up after a few retries and
    #: libiscsi never retries, so waiting is what keeps a lock move invisible to them.
    write_wait = 5.0

    def __init__(self, backend: Backend, stats: LunStats, timeout: float, name: str = "",
                 handoff_timeout: float = 2.0) -> None:
        self.backend = backend
        self.stats = stats
        self.timeout = timeout if timeout > 0 else None
        self.name = name
        #: seconds the holder has to acknowledge a handoff request before it is fenced
        self.handoff_timeout = handoff_timeout
        #: seconds a holder that acknowledged has to release (its admitted writes are
        #: bounded by osd_op_timeout) before it is fenced after all
        self.release_wait = float(self.timeout or 30)
        self.state = LockState.UNLOCKED
        #: writes admitted under the lock and not finished
        self.writers = 0
        #: called when this gateway finds itself fenced (the disk refuses stale sessions)
        self.on_fenced: Callable[[], None] | None = None
        self._waiters: deque[asyncio.Future] = deque()
        self._drained: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self._release_task: asyncio.Task | None = None
        self._release_asked = False
        self._not_before = 0.0
        self._retry: asyncio.TimerHandle | None = None
        self._courtesy_until = 0.0
        backend.lock_writes = False
        backend.set_lock_listener(self)

    # -- the write gate (per command) --------------------------------------------------
    def enter(self) -> bool:
        """Admit a write now if the lock is here (then call :meth:`leave` when it is done);
        else start taking the lock and return False (then :meth:`wait_enter`)."""
        if self.state is LockState.LOCKED:
            self.writers += 1
            return True
        self._want()
        return False

    async def wait_enter(self) -> bool:
        """Wait (up to :attr:`write_wait`) to be admitted; False: answer BUSY."""
        if self.state is LockState.LOCKED:
            self.writers += 1
            return True
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._waiters.append(fut)
        self._want()
        timer = loop.call_later(self.write_wait, _expire, fut)
        try:
            admitted = await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.result():
                self.leave()
            raise
        finally:
            timer.cancel()
        if not admitted:
            try:
                self._waiters.remove(fut)
            except ValueError:
                pass
        return admitted

    def leave(self) -> None:
        self.writers -= 1
        if not self.writers and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def writable(self) -> bool:
        """True when the lock is here (writes are admitted without waiting)."""
        return self.state is LockState.LOCKED

    # -- taking the lock -------------------------------------------------------------------
    def _want(self) -> None:
        """A write waits for the lock: start taking it unless that is under way."""
        if self.state is not LockState.UNLOCKED:
            return  # taking it already, or releasing (taken again once released)
        loop = asyncio.get_running_loop()
        delay = self._not_before - time.monotonic()
        if delay > 0:
            if self._retry is None:
                self._retry = loop.call_later(delay, self._retry_now)
            return
        self.state = LockState.ACQUIRING
        self._task = loop.create_task(self._acquire())

    def _retry_now(self) -> None:
        self._retry = None
        if any(not f.done() for f in self._waiters):
            self._want()

    async def acquire(self) -> bool:
        """Take the lock now (the daemon assigning ownership, ``open_rbd_disk(owner=True)``):
        asked of a live holder, broken only if the holder does not answer."""
        if self.state is LockState.RELEASING and self._release_task is not None:
            await asyncio.shield(self._release_task)
        if self.state is LockState.UNLOCKED:
            self._not_before = 0.0
            self._want()
        task = self._task
        if self.state is LockState.ACQUIRING and task is not None:
            await asyncio.shield(task)
        return self.state is LockState.LOCKED

    async def try_acquire(self) -> bool:
        """Take the lock if it is free, asking and fencing no one (the daemon, when this
        gateway becomes a disk's owner: a holder keeps it until a write here needs it)."""
        if self.state is not LockState.UNLOCKED:
            return self.state is LockState.LOCKED
        try:
            got = await self.backend.lock_try_acquire()
        except BackendError as e:
            log.info("%s: lock not taken: %s", self.name, e)
            return False
        if got and self.state is LockState.UNLOCKED:
            self._locked("it was free")
        return self.state is LockState.LOCKED

    async def _acquire(self) -> None:
        try:
            how = await asyncio.wait_for(self._take(), self._deadline())
        except asyncio.CancelledError:
            if self.state is LockState.ACQUIRING:
                self.state = LockState.UNLOCKED
            raise
        except (TimeoutError, BackendError) as e:
            self.stats.lock_acquire_failures += 1
            self.state = LockState.UNLOCKED
            self._release_asked = False
            self._not_before = time.monotonic() + self.retry_delay
            log.warning("%s: taking the exclusive lock failed: %s", self.name, e or "timeout")
            if self._waiters:
                self._want()  # again after retry_delay, for the writes still waiting
            return
        self._locked(how)

    def _deadline(self) -> float:
        op = self.timeout or 30.0
        return self.handoff_timeout + self.release_wait + 2 * op

    def _locked(self, how: str) -> None:
        self.state = LockState.LOCKED
        self.backend.lock_writes = True
        self.stats.lock_acquired += 1
        if how.startswith("handed"):
            self.stats.lock_handoffs_in += 1
        elif how.startswith("fenced"):
            self.stats.lock_breaks += 1
        log.info("%s: exclusive lock acquired (%s)", self.name, how)
        self._admit()
        if self._release_asked:  # asked for it while taking it: the waiting writes ran first
            self._release_asked = False
            self._begin_release(handoff=True)

    def _admit(self) -> None:
        waiters, self._waiters = self._waiters, deque()
        for fut in waiters:
            if not fut.done():
                self.writers += 1
                fut.set_result(True)

    async def _take(self) -> str:
        """Become the holder; says how: "it was free", "handed over by X", "fenced X"."""
        be = self.backend
        loop = asyncio.get_running_loop()
        if self.writers:  # admitted under a lock lost by fencing: they fail first
            await self._wait_drained(None)
        how = "it was free"
        asked, promised_until, delay = None, 0.0, _POLL_FIRST
        while True:
            try:
                if await be.is_lock_owner():
                    return how
                owners = await be.lock_owners()
                if not owners:
                    if loop.time() < self._courtesy_until:  # the gateway we handed it to first
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, _POLL_MAX)
                        continue
                    if await be.lock_try_acquire():
                        return how
                    await asyncio.sleep(delay)  # someone was quicker
                    continue
                self._courtesy_until = 0.0  # the gateway we handed the lock to has it
                owner = owners[0]
                if owner == asked and loop.time() < promised_until:
                    await asyncio.sleep(delay)  # it is finishing its writes
                    delay = min(delay * 2, _POLL_MAX)
                    continue
                if owner != asked:
                    if await be.lock_request_release(owner, self.handoff_timeout):
                        asked, promised_until = owner, loop.time() + self.release_wait
                        how, delay = f"handed over by {owner}", _POLL_FIRST
                        continue
                    if owner not in await be.lock_owners():
                        continue  # it let the lock go meanwhile (closing, stopping): no fence
                    why = f"did not answer within {self.handoff_timeout:g} s"
                else:
                    why = f"promised it but still holds it after {self.release_wait:g} s"
                log.warning("%s: the exclusive lock holder %s %s: breaking its lock (Ceph "
                            "blocklists it)", self.name, owner, why)
                await be.lock_break(owner)
                how = f"fenced {owner}"
            except BackendError as e:
                reopen = getattr(be, "reopen", None)
                if not e.fenced or reopen is None:
                    raise
                # This client was fenced: it can never write again; start a new one.
                await reopen()

    # -- giving the lock up ------------------------------------------------------------------
    def release_requested(self, asker: str) -> bool:
        """LockListener: another gateway asks for the lock (on the loop).  Always True: the
        holder releases once the writes it admitted are done."""
        self.stats.lock_requests += 1
        state = self.state
        if state is LockState.LOCKED:
            log.info("%s: %s asks for the exclusive lock: handing it over", self.name, asker)
            self._begin_release(handoff=True)
        elif state is LockState.ACQUIRING:
            self._release_asked = True
        elif state is LockState.UNLOCKED:
            # The cluster may still list this client (a release that failed): release there.
            asyncio.get_running_loop().create_task(self._release_quietly())
        return True

    def _begin_release(self, handoff: bool) -> None:
        self.state = LockState.RELEASING
        self._release_task = asyncio.get_running_loop().create_task(self._release(handoff))

    async def _release(self, handoff: bool) -> None:
        try:
            if self.writers:
                # Writes the lock admitted finish first; stragglers past half the holder's
                # allowance fail (EROFS, BUSY) instead of landing after the release.
                await self._wait_drained(self.release_wait / 2)
            self.backend.lock_writes = False
            await self.backend.lock_release()
            failed = None
        except BackendError as e:
            failed = e
        except asyncio.CancelledError:
            self.backend.lock_writes = False
            if self.state is LockState.RELEASING:
                self.state = LockState.UNLOCKED
            raise
        if self.state is not LockState.RELEASING:
            return  # fenced meanwhile (``fenced`` did the bookkeeping)
        self.state = LockState.UNLOCKED
        self.stats.lock_lost += 1
        if handoff:
            self.stats.lock_handoffs_out += 1
        self._courtesy_until = asyncio.get_running_loop().time() + self.handoff_timeout
        if failed is not None:
            log.warning("%s: releasing the exclusive lock failed: %s", self.name, failed)
        else:
            log.info("%s: exclusive lock %s", self.name, "handed over" if handoff else "released")
        if self._waiters:
            self._want()

    async def _release_quietly(self) -> None:
        try:
            if self.state is LockState.UNLOCKED:
                await self.backend.lock_release()
        except BackendError as e:
            log.info("%s: releasing a stale lock: %s", self.name, e)

    async def release(self) -> bool:
        """Give the lock up (this gateway stopped owning the disk, or closes it); True once
        released.  Not while a write here is taking it: that is the initiator's choice."""
        if self.state is LockState.LOCKED:
            self._begin_release(handoff=False)
        if self.state is LockState.RELEASING and self._release_task is not None:
            await asyncio.shield(self._release_task)
            return self.state is LockState.UNLOCKED
        return False

    async def _wait_drained(self, limit: float | None) -> None:
        if not self.writers:
            return
        if self._drained is None or self._drained.done():
            self._drained = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._drained), limit)
        except TimeoutError:
            log.warning("%s: %d writes still running after %g s; they will fail", self.name,
                        self.writers, limit)

    # -- losing it -----------------------------------------------------------------------------
    def fenced(self, err: BackendError) -> None:
        """LockListener: this gateway's client was fenced (the cluster refused an operation)."""
        self.backend.lock_writes = False
        self.stats.lock_fenced += 1
        if self.state in (LockState.LOCKED, LockState.RELEASING):
            self.state = LockState.UNLOCKED
            self.stats.lock_lost += 1
        log.warning("%s: this gateway was fenced (%s): it no longer holds the exclusive lock, and "
                    "writes of sessions open before are refused", self.name, err)
        if self.on_fenced is not None:
            self.on_fenced()
        # Writes waiting now came from sessions open at the fence: they give up (the disk
        # drops their connections) rather than take the lock back.
        waiters, self._waiters = self._waiters, deque()
        for fut in waiters:
            if not fut.done():
                fut.set_result(False)

    def lost(self, err: BackendError) -> None:
        """A command failed because this client lost the lock (kept for callers that see
        the error before the backend reported it)."""
        if self.state is LockState.LOCKED:
            self.fenced(err)

    async def verify(self) -> bool:
        """Re-check ownership with the cluster (detects a silent loss); True if owner."""
        try:
            owner = await self.backend.is_lock_owner()
        except BackendError:
            owner = False
        if not owner and self.state is LockState.LOCKED:
            self.fenced(BackendError(0, "verify", "the cluster says another client holds the lock"))
        return owner

    async def owners(self) -> list[str]:
        return await self.backend.lock_owners()

    async def break_lock(self, owner: str) -> None:
        await self.backend.lock_break(owner)

    async def close(self) -> None:
        self.backend.set_lock_listener(None)
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for task in (self._task, self._release_task):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(False)
        self._waiters.clear()


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(False)
