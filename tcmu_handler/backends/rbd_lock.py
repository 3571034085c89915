"""The exclusive lock of the RBD backend: librbd's managed lock and the handoff channel.

Mixed into :class:`~tcmu_handler.backends.rbd.RbdBackend`.  Every call on the image runs
on the executor through ``_blocking`` (bounded, serialised with close/reopen).  The lock
is librbd's in managed mode (``rbd_lock_acquire``): librbd never moves it by itself, so
it moves only when the lock policy says so -- released on request, or broken (which
blocklists the holder) when the holder does not answer.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
from ctypes import byref, c_int

from . import librbd as L
from .base import BackendError, LockListener
from .lock_channel import HandoffChannel, object_name

log = logging.getLogger(__name__)


class RbdLockMixin:
    """Lock operations and the handoff channel (needs the RbdBackend attributes)."""

    _lock_listener: LockListener | None = None
    _channel: HandoffChannel | None = None
    _fence_reported = False

    # -- ownership ---------------------------------------------------------------------------
    async def is_lock_owner(self) -> bool:
        return await self._blocking(self._is_owner)

    def _is_owner(self) -> bool:
        owner = c_int(0)
        L.check("rbd_is_exclusive_lock_owner", L.rbd.rbd_is_exclusive_lock_owner(self._image(), byref(owner)))
        return bool(owner.value)

    async def lock_owners(self) -> list[str]:
        return await self._blocking(lambda: L.lock_owners(self._image()))

    async def lock_break(self, owner: str) -> None:
        await self._blocking(self._break, owner)

    def _break(self, owner: str) -> None:
        ret = L.rbd.rbd_lock_break(self._image(), L.RBD_LOCK_MODE_EXCLUSIVE, owner.encode())
        if ret not in (0, -errno.ENOENT):
            L.check("rbd_lock_break", ret)

    async def lock_acquire(self) -> None:
        """Break any other owner's lock (Ceph blocklists it) and take the lock."""
        await self._blocking(self._acquire)

    def _acquire(self) -> None:
        if self._is_owner():
            return
        for owner in L.lock_owners(self._image()):
            self._break(owner)
        L.check("rbd_lock_acquire", L.rbd.rbd_lock_acquire(self._image(), L.RBD_LOCK_MODE_EXCLUSIVE))

    async def lock_try_acquire(self) -> bool:
        """Take the lock only if nobody holds it (never fences anyone); True if owner now."""
        return await self._blocking(self._try_acquire)

    def _try_acquire(self) -> bool:
        if self._is_owner():
            return True
        # Asking librbd while another client holds the lock would make it request the lock
        # from that client, which for a dead one waits out its watch (~30 s): look first.
        if L.lock_owners(self._image()):
            return False
        ret = L.rbd.rbd_lock_acquire(self._image(), L.RBD_LOCK_MODE_EXCLUSIVE)
        if ret in (-errno.EROFS, -errno.EBUSY):  # someone was quicker
            return False
        L.check("rbd_lock_acquire", ret)
        return True

    async def lock_release(self) -> None:
        """Give the lock up (librbd lets in-flight writes finish first); a no-op if not owner."""
        await self._blocking(self._release_lock)

    def _release_lock(self) -> None:
        if self._is_owner():
            L.check("rbd_lock_release", L.rbd.rbd_lock_release(self._image()))

    # -- the handoff channel -------------------------------------------------------------------
    def set_lock_listener(self, listener: LockListener | None) -> None:
        self._lock_listener = listener

    async def lock_request_release(self, owner: str, timeout: float) -> bool:
        channel = self._channel
        if channel is None or channel.closed:
            if not self._handle:  # reconnecting: ask again on the new client
                raise BackendError(errno.ESHUTDOWN, "lock request", "client not open")
            return False  # this client cannot ask (no handoff object): the holder is fenced
        try:
            fut = channel.request(owner, timeout)
        except L.LibError as e:
            raise BackendError(e.errno, e.call) from None
        try:  # RADOS answers after its own (whole-second) timeout; this is only a backstop
            return await asyncio.wait_for(fut, math.ceil(timeout) + 10)
        except TimeoutError:
            return False

    def _open_channel(self) -> None:
        """Executor: watch ``gateway.lock.<image id>`` with this client (after open/reopen)."""
        img = self._img
        channel = HandoffChannel(img.ioctx.value, img.address(), object_name(self.image_id), self._loop,
                                 self._lock_requested, self._channel_broken)
        channel.create()
        img.channel = channel
        self._channel = channel
        channel.watch()

    async def _start_channel(self) -> None:
        if not self.supports_lock:
            return
        try:
            await self._blocking(self._open_channel)
        except BackendError as e:  # others will fence this client instead of asking it
            log.warning("%s/%s: no lock handoff channel: %s", self.pool, self.image_name, e)

    def _lock_requested(self, asker: str) -> bool:
        listener = self._lock_listener
        if listener is None or self.closed:
            return False
        return listener.release_requested(asker)

    def _channel_broken(self, err: int) -> None:
        """Loop: the watch broke (network trouble, or this client was blocklisted)."""
        channel = self._channel
        if channel is None or channel.closed or self.closed:
            return
        log.warning("%s/%s: lock handoff watch error %s; watching again", self.pool, self.image_name,
                    errno.errorcode.get(-err, err))
        self._loop.create_task(self._rewatch(channel))

    async def _rewatch(self, channel: HandoffChannel) -> None:
        try:
            await self._blocking(channel.watch)
        except BackendError as e:
            log.warning("%s/%s: lock handoff watch: %s", self.pool, self.image_name, e)

    def _report_fenced(self, err: int) -> None:
        """This client is fenced: tell the lock policy, once per RADOS client."""
        if self.lock_writes:
            self.lock_writes = False
        if self._fence_reported:
            return
        self._fence_reported = True
        listener = self._lock_listener
        if listener is not None:
            listener.fenced(BackendError(err, "rbd", "this gateway's client was fenced"))
