"""An in-memory backend: the reference for unit tests and the protocol benchmark.

It behaves like librbd where the SCSI layer cares: allocation is tracked per
unit (``granularity``) so GET LBA STATUS has something real to report, a
discard below the unit size is a no-op (as in librbd), write_zeroes always
zeroes, and an optional shared :class:`LockDomain` lets two handles on one
"image" model two gateways fighting over the exclusive lock, including the
handoff requests gateways send each other (the RADOS notify of the rbd backend).

Test hooks (``gate``, ``fail``, ``unresponsive``) exist only to drive error and
timing paths in pure-logic unit tests.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
from collections.abc import Callable

from .base import BackendError, Extent, LockListener

_client_ids = itertools.count(1)


class LockDomain:
    """The exclusive lock of one shared image, and who has been fenced."""

    def __init__(self) -> None:
        self.owner: str | None = None
        self.blocklisted: set[str] = set()
        self.requests = 0  # handoff requests sent
        self.breaks = 0    # locks broken (clients fenced)


class MemoryImage:
    """The data of one image, shared by every handle opened on it."""

    def __init__(self, size: int, granularity: int = 64 << 10) -> None:
        self.data = bytearray(size)
        self.granularity = granularity
        self.allocated: set[int] = set()
        self.locks = LockDomain()
        self.handles: list[MemoryBackend] = []

    @property
    def size(self) -> int:
        return len(self.data)

    def resize(self, new_size: int) -> None:
        if new_size < len(self.data):
            del self.data[new_size:]
            g = self.granularity
            self.allocated = {u for u in self.allocated if u * g < new_size}
        else:
            self.data.extend(bytes(new_size - len(self.data)))
        for h in list(self.handles):
            h._size_changed(new_size)


class MemoryBackend:
    """One client's handle on a :class:`MemoryImage`."""

    supports_lock: bool
    write_cache = False

    def __init__(self, size: int | None = None, *, image: MemoryImage | None = None,
                 granularity: int = 64 << 10, object_size: int = 4 << 20,
                 supports_lock: bool = False, instant: bool = False) -> None:
        if image is None:
            if size is None:
                raise ValueError("size or image is required")
            image = MemoryImage(size, granularity)
        self.image = image
        self.object_size = object_size
        self.supports_lock = supports_lock
        self.lock_writes: bool | None = None
        # instant: operations complete without yielding to the loop and keep no op log (the
        # daemon's data_backend = memory and the benchmark); tests keep both for their checks.
        self.instant = instant
        self.client = f"client.{next(_client_ids)}"
        self._listener: LockListener | None = None
        self._fence_reported = False
        self._listeners: list[Callable[[int], None]] = []
        self.size = image.size
        # test hooks
        self.gate: asyncio.Event | None = None
        self.fail: dict[str, int] = {}
        self.ops: list[tuple[str, int, int]] = []
        self.flushes = 0
        self.reopens = 0
        #: a frozen gateway: handoff requests to it are never answered
        self.unresponsive = False
        self._reopening: asyncio.Task | None = None
        self.closed = False
        image.handles.append(self)

    def peer(self) -> MemoryBackend:
        """Another client's handle on the same image (a second gateway)."""
        return MemoryBackend(image=self.image, object_size=self.object_size,
                             supports_lock=self.supports_lock)

    # -- helpers ---------------------------------------------------------------
    async def _enter(self, op: str, offset: int, length: int, writes: bool) -> None:
        if self.gate is not None:
            await self.gate.wait()
        elif not self.instant:
            await asyncio.sleep(0)
        if self.closed:
            raise BackendError(errno.EBADF, op)
        err = self.fail.pop(op, None) or self.fail.get("*")
        if err:
            raise BackendError(err, op)
        if self.supports_lock and self.client in self.image.locks.blocklisted:
            self._fenced_seen()
            raise BackendError(errno.ESHUTDOWN, op, "client is blocklisted")
        if writes and self.lock_writes is False:
            raise BackendError(errno.EROFS, op, "this gateway does not hold the exclusive lock")
        if writes and self.supports_lock:
            locks = self.image.locks
            if locks.owner not in (None, self.client):
                if self.lock_writes:
                    self._report_fenced(errno.EROFS)
                raise BackendError(errno.EROFS, op, "exclusive lock held by another client")
            locks.owner = self.client  # librbd takes a free lock implicitly on write
        if offset + length > len(self.image.data):
            raise BackendError(errno.EINVAL, op, "beyond end of image")
        if not self.instant:
            self.ops.append((op, offset, length))

    def _mark(self, offset: int, length: int) -> None:
        g = self.image.granularity
        self.image.allocated.update(range(offset // g, (offset + length + g - 1) // g))

    def _unmap_units(self, offset: int, length: int) -> None:
        g = self.image.granularity
        first = (offset + g - 1) // g
        last = (offset + length) // g
        data = self.image.data
        for u in range(first, last):
            self.image.allocated.discard(u)
            data[u * g:(u + 1) * g] = bytes(g)

    def _size_changed(self, new_size: int) -> None:
        self.size = new_size
        for cb in list(self._listeners):
            cb(new_size)

    # -- Backend -----------------------------------------------------------------
    async def read(self, offset: int, length: int) -> memoryview:
        await self._enter("read", offset, length, False)
        return memoryview(self.image.data[offset:offset + length])  # the slice is a copy

    async def write(self, offset: int, data, fua: bool = False) -> None:
        await self._enter("write", offset, len(data), True)
        self.image.data[offset:offset + len(data)] = data
        self._mark(offset, len(data))
        if fua:
            self.flushes += 1

    async def writesame(self, offset: int, length: int, pattern: bytes) -> None:
        await self._enter("writesame", offset, length, True)
        self.image.data[offset:offset + length] = bytes(pattern) * (length // len(pattern))
        self._mark(offset, length)

    async def write_zeroes(self, offset: int, length: int) -> None:
        await self._enter("write_zeroes", offset, length, True)
        self.image.data[offset:offset + length] = bytes(length)
        self._unmap_units(offset, length)

    async def discard(self, offset: int, length: int) -> None:
        await self._enter("discard", offset, length, True)
        self._unmap_units(offset, length)

    async def compare_and_write(self, offset: int, compare, data) -> int | None:
        await self._enter("compare_and_write", offset, len(data), True)
        current = self.image.data[offset:offset + len(compare)]
        if current != compare:
            for i, (a, b) in enumerate(zip(current, bytes(compare), strict=True)):
                if a != b:
                    return i
        self.image.data[offset:offset + len(data)] = data
        self._mark(offset, len(data))
        return None

    async def flush(self) -> None:
        await self._enter("flush", 0, 0, False)
        self.flushes += 1

    async def extents(self, offset: int, length: int) -> list[Extent]:
        await self._enter("extents", offset, length, False)
        g = self.image.granularity
        out: list[Extent] = []
        pos, end = offset, offset + length
        while pos < end:
            unit = pos // g
            alloc = unit in self.image.allocated
            stop = min(end, (unit + 1) * g)
            if out and out[-1].allocated == alloc:
                last = out.pop()
                out.append(Extent(last.offset, stop - last.offset, alloc))
            else:
                out.append(Extent(pos, stop - pos, alloc))
            pos = stop
        return out

    def add_resize_listener(self, callback: Callable[[int], None]) -> None:
        self._listeners.append(callback)

    async def lock_acquire(self) -> None:
        await asyncio.sleep(0)
        locks = self.image.locks
        if self.client in locks.blocklisted:
            self._fenced_seen()
            raise BackendError(errno.ESHUTDOWN, "lock_acquire", "client is blocklisted")
        if locks.owner not in (None, self.client):
            locks.blocklisted.add(locks.owner)
            locks.breaks += 1
        locks.owner = self.client

    async def lock_owners(self) -> list[str]:
        await asyncio.sleep(0)
        self._check_blocklisted("lock_owners")
        owner = self.image.locks.owner
        return [owner] if owner else []

    async def lock_break(self, owner: str) -> None:
        await asyncio.sleep(0)
        locks = self.image.locks
        if locks.owner == owner:
            locks.owner = None
            locks.blocklisted.add(owner)
            locks.breaks += 1

    async def is_lock_owner(self) -> bool:
        return self.image.locks.owner == self.client

    async def lock_try_acquire(self) -> bool:
        await asyncio.sleep(0)
        locks = self.image.locks
        if self.client in locks.blocklisted:
            self._fenced_seen()
            raise BackendError(errno.ESHUTDOWN, "lock_acquire", "client is blocklisted")
        if locks.owner in (None, self.client):
            locks.owner = self.client
            return True
        return False

    async def lock_release(self) -> None:
        await asyncio.sleep(0)
        self._check_blocklisted("lock_release")
        if self.image.locks.owner == self.client:
            self.image.locks.owner = None

    def set_lock_listener(self, listener: LockListener | None) -> None:
        self._listener = listener

    async def lock_request_release(self, owner: str, timeout: float) -> bool:
        """The handoff request: the handle of client ``owner`` answers through its listener
        (a blocklisted client no longer watches; an unresponsive one never answers)."""
        await asyncio.sleep(0)
        locks = self.image.locks
        locks.requests += 1
        if self.client in locks.blocklisted:
            self._fenced_seen()
            raise BackendError(errno.ESHUTDOWN, "lock request", "client is blocklisted")
        for h in self.image.handles:
            if h.client == owner and not h.closed and h._listener is not None \
                    and owner not in locks.blocklisted:
                if h.unresponsive:
                    await asyncio.sleep(timeout)
                    return False
                return bool(h._listener.release_requested(self.client))
        return False

    def _check_blocklisted(self, op: str) -> None:
        if self.supports_lock and self.client in self.image.locks.blocklisted:
            self._fenced_seen()
            raise BackendError(errno.ESHUTDOWN, op, "client is blocklisted")

    def _report_fenced(self, err: int) -> None:
        if self.lock_writes:
            self.lock_writes = False
        if not self._fence_reported:
            self._fence_reported = True
            if self._listener is not None:
                self._listener.fenced(BackendError(err, "memory", "this client was fenced"))

    async def reopen(self) -> None:
        """A new client id, as a fenced gateway gets when it reconnects to RADOS."""
        await asyncio.sleep(0)
        if self.client in self.image.locks.blocklisted:
            self.client = f"client.{next(_client_ids)}"
            self.reopens += 1
            self._fence_reported = False

    def _fenced_seen(self) -> None:
        """Like the rbd backend: a blocklisted client tells the lock policy and reconnects
        in the background."""
        self._report_fenced(errno.ESHUTDOWN)
        if self._reopening is None or self._reopening.done():
            self._reopening = asyncio.get_running_loop().create_task(self.reopen())

    async def close(self) -> None:
        self.closed = True
        if self in self.image.handles:
            self.image.handles.remove(self)
