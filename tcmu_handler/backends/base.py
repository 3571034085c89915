"""The storage interface under a SCSI disk: byte-addressed, asynchronous.

Both backends (``memory`` for tests and benchmarks, ``rbd`` through librbd)
implement :class:`Backend`.  Offsets and lengths are bytes; the SCSI layer has
already checked them against the capacity and never passes a zero length.
Failures raise :class:`BackendError` carrying a positive errno, which the
device maps to sense data (and the lock policy inspects for fencing).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# librbd reports a fenced (blocklisted) client as -ESHUTDOWN (Ceph's EBLOCKLISTED).
EBLOCKLISTED = errno.ESHUTDOWN
# Errors that mean "this client lost the exclusive lock / was fenced".
LOCK_LOST_ERRNOS = frozenset({errno.ESHUTDOWN, errno.EROFS})


class BackendError(Exception):
    """An I/O or control operation failed; ``errno`` is positive."""

    def __init__(self, err: int, op: str, detail: str = "") -> None:
        self.errno = err
        self.op = op
        name = errno.errorcode.get(err, str(err))
        super().__init__(f"{op}: {name}{': ' + detail if detail else ''}")

    @property
    def fenced(self) -> bool:
        return self.errno in LOCK_LOST_ERRNOS


class BackendTimeout(BackendError):
    """An operation did not complete within ``osd_op_timeout``."""

    def __init__(self, op: str, seconds: float) -> None:
        super().__init__(errno.ETIMEDOUT, op, f"no completion after {seconds:g}s")


@dataclass(frozen=True, slots=True)
class Extent:
    """A byte range and whether it is allocated (may hold data) in the backend."""

    offset: int
    length: int
    allocated: bool


class LockListener(Protocol):
    """What the exclusive-lock policy of a disk hears from its backend (on the event loop)."""

    def release_requested(self, asker: str) -> bool:
        """Another gateway (client ``asker``) asks this client, the holder, for the lock.
        Returns True when this client releases it (it stops admitting writes at once and
        releases once its writes in flight have completed)."""
        ...

    def fenced(self, err: BackendError) -> None:
        """This client was found fenced (blocklisted, or its lock broken): it holds no lock,
        and its writes in flight fail."""
        ...


class Backend(Protocol):
    """What a SCSI disk needs from its storage."""

    #: current size in bytes (updated before resize listeners run)
    size: int
    #: allocation unit (RBD object size): UNMAP granularity and alignment hint
    object_size: int
    #: True when the backend has a volatile write cache (WCE in the caching mode page)
    write_cache: bool
    #: True when lock_* operations are meaningful (RBD exclusive-lock feature)
    supports_lock: bool
    #: None: writes are not gated (no lock policy); False: writes fail with EROFS at once,
    #: before reaching the cluster; True: this client holds the lock, writes go through.
    #: The lock policy sets it, so a write admitted under a lock that was since lost can
    #: never land through a later one.
    lock_writes: bool | None

    async def read(self, offset: int, length: int) -> memoryview:
        """Exactly ``length`` bytes (a short read is an error)."""
        ...

    async def write(self, offset: int, data: memoryview | bytes, fua: bool = False) -> None: ...

    async def writesame(self, offset: int, length: int, pattern: bytes) -> None:
        """Fill ``length`` bytes with ``pattern`` repeated (``length`` is a multiple of it)."""
        ...

    async def write_zeroes(self, offset: int, length: int) -> None:
        """Zero the range, deallocating whole allocation units; reads return zeros after."""
        ...

    async def discard(self, offset: int, length: int) -> None:
        """Hint that the range is unused; partial units may be left untouched."""
        ...

    async def compare_and_write(self, offset: int, compare: memoryview | bytes,
                                data: memoryview | bytes) -> int | None:
        """Atomically write ``data`` if the range equals ``compare``.

        Returns None on success, else the byte offset (within the range) of the
        first difference; nothing is written then.
        """
        ...

    async def flush(self) -> None: ...

    async def extents(self, offset: int, length: int) -> list[Extent]:
        """Allocation map of the range; unallocated extents read as zeros."""
        ...

    def add_resize_listener(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(new_size)`` on the event loop when the size changes."""
        ...

    # Exclusive lock (failover).  Only called when ``supports_lock``.
    async def lock_acquire(self) -> None:
        """Become the exclusive-lock owner, breaking (fencing) any other owner."""
        ...

    async def lock_owners(self) -> list[str]:
        """Clients holding the lock, by the address ``lock_request_release`` takes."""
        ...

    async def lock_break(self, owner: str) -> None:
        """Break ``owner``'s lock; Ceph blocklists (fences) that client."""
        ...

    def set_lock_listener(self, listener: LockListener | None) -> None:
        """Who hears lock requests from other gateways and this client's fencing."""
        ...

    async def lock_request_release(self, owner: str, timeout: float) -> bool:
        """Ask the holder ``owner`` (another gateway) to hand the lock over; True when it
        promised to within ``timeout`` seconds, False when it did not answer (dead, frozen,
        cut off, or a client that does not take part: only then may it be fenced)."""
        ...

    async def is_lock_owner(self) -> bool: ...

    async def lock_try_acquire(self) -> bool:
        """Take the lock only if nobody holds it (fences no one); True if owner now."""
        ...

    async def lock_release(self) -> None:
        """Give the lock up if held (a planned owner move)."""
        ...

    async def close(self) -> None: ...
