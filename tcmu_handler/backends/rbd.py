"""The RBD backend: librbd asynchronous I/O reaped in batches on the asyncio loop.

Per open image: its own RADOS client (breaking the exclusive lock blocklists a
whole client, so one image's failover must not fence the others), one
eventfd registered with ``rbd_set_image_notification`` and watched by the
loop; each wake-up drains completions with ``rbd_poll_io_events``.  A
completion carries an integer token indexing a slot that holds the future,
the preallocated iovec and the buffer views (so librbd never sees a freed
buffer, even after a timeout).  Blocking calls -- connect, open, close,
stat, lock operations, diff iteration -- run on an executor thread; the loop
never waits on librbd.  ``rbd_cache`` is always off: a write-back cache in a
gateway that can die would break failover.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from ctypes import addressof, byref, c_uint64, c_void_p

from . import librbd as L
from .base import BackendError, BackendTimeout, Extent
from .rbd_lock import RbdLockMixin

log = logging.getLogger(__name__)

POLL_BATCH = 32
NOT_HOLDER = "this gateway does not hold the exclusive lock"
_SHARED_EXECUTOR: ThreadPoolExecutor | None = None


def default_executor() -> ThreadPoolExecutor:
    """One small pool for every image's blocking calls (lock ops, open/close)."""
    global _SHARED_EXECUTOR
    if _SHARED_EXECUTOR is None:
        _SHARED_EXECUTOR = ThreadPoolExecutor(max_workers=8, thread_name_prefix="librbd")
    return _SHARED_EXECUTOR


class _Slot:
    """An in-flight operation: its future and everything librbd may still touch."""

    __slots__ = ("token", "comp", "comp_addr", "iov", "iov_addr", "views", "view_addrs", "nviews",
                 "mismatch", "mismatch_addr", "fut", "op", "length", "buf", "t0", "expired")

    def __init__(self, token: int) -> None:
        self.token = token
        self.comp = c_void_p()
        self.comp_addr = addressof(self.comp)
        self.iov = L.IoVec()
        self.iov_addr = addressof(self.iov)
        self.views = (L.PyBuffer(), L.PyBuffer())
        self.view_addrs = tuple(addressof(v) for v in self.views)
        self.nviews = 0
        self.mismatch = c_uint64()
        self.mismatch_addr = addressof(self.mismatch)
        self.fut: asyncio.Future | None = None
        self.op = ""
        self.length = 0
        self.buf: bytearray | None = None
        self.t0 = 0.0
        self.expired = False


class RbdImage:
    """Blocking handles of one open image: its RADOS client, ioctx and rbd_image_t."""

    def __init__(self, conf: str | None, name: str, pool: str, image: str, namespace: str,
                 options: dict[str, str]) -> None:
        self.cluster = c_void_p()
        self.ioctx = c_void_p()
        self.image = c_void_p()
        self.channel = None  # the lock handoff channel (rbd_lock.HandoffChannel) of this client
        L.check("rados_create2", L.rados.rados_create2(byref(self.cluster), b"ceph", name.encode(), 0))
        try:
            L.check("rados_conf_read_file", L.rados.rados_conf_read_file(
                self.cluster, conf.encode() if conf else None))
            for key, value in options.items():
                L.check(f"rados_conf_set {key}", L.rados.rados_conf_set(
                    self.cluster, key.encode(), str(value).encode()))
            L.check("rados_connect", L.rados.rados_connect(self.cluster))
            L.check("rados_ioctx_create", L.rados.rados_ioctx_create(
                self.cluster, pool.encode(), byref(self.ioctx)))
            if namespace:
                L.rados.rados_ioctx_set_namespace(self.ioctx, namespace.encode())
            L.check("rbd_open", L.rbd.rbd_open(self.ioctx, image.encode(), byref(self.image), None))
        except Exception:
            self.close()
            raise

    def address(self) -> str:
        addrs = ctypes.c_char_p()
        if L.rados.rados_getaddrs(self.cluster, byref(addrs)) == 0 and addrs.value:
            return addrs.value.decode()
        return ""

    def close(self) -> None:
        if self.channel is not None:
            channel, self.channel = self.channel, None
            channel.close(wait=15.0)
        if self.image:
            L.rbd.rbd_close(self.image)
            self.image = c_void_p()
        if self.ioctx:
            L.rados.rados_ioctx_destroy(self.ioctx)
            self.ioctx = c_void_p()
        if self.cluster:
            L.rados.rados_shutdown(self.cluster)
            self.cluster = c_void_p()


class RbdBackend(RbdLockMixin):
    """:class:`~tcmu_handler.backends.base.Backend` over one RBD image."""

    write_cache = False

    def __init__(self, *, pool: str, image: str, conf: str | None = None, name: str = "client.admin",
                 namespace: str = "", osd_op_timeout: float = 30, keyring: str | None = None,
                 executor: Executor | None = None, extra_options: dict[str, str] | None = None) -> None:
        self.pool, self.image_name, self.namespace = pool, image, namespace
        self.conf, self.client_name = conf, name
        self.timeout = float(osd_op_timeout)
        self.executor = executor or default_executor()
        # rbd_disable_zero_copy_writes: librbd copies write data at submission, so a
        # command that timed out or was aborted never leaves librbd reading a buffer
        # the transport has already reused.
        self.options = {"rbd_cache": "false", "rbd_cache_writethrough_until_flush": "false",
                        "rbd_disable_zero_copy_writes": "true"}
        if osd_op_timeout > 0:
            t = str(int(osd_op_timeout))
            self.options.update(rados_osd_op_timeout=t, rados_mon_op_timeout=t, client_mount_timeout=t)
        if keyring:
            self.options["keyring"] = keyring
        self.options.update(extra_options or {})
        self.size = 0
        self.object_size = 4 << 20
        self.supports_lock = False
        self.lock_writes: bool | None = None
        self.image_id = ""
        self._img: RbdImage | None = None
        self._handle = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._efd = -1
        self._slots: list[_Slot] = []
        self._free: list[_Slot] = []
        self._inflight = 0
        self._comps = (c_void_p * POLL_BATCH)()
        self._comps_addr = addressof(self._comps)
        self._listeners: list[Callable[[int], None]] = []
        self._watch_handle = c_uint64()
        self._watch_cb = L.UPDATE_CALLBACK(self._header_changed)
        # librbd does not route compare-and-write completions to the event socket
        # (the C API submits it as a non-"native async" request), so CAW alone
        # completes through a C callback that hands the result to the loop.
        self._caw_cb = L.COMPLETION_CALLBACK(self._caw_completed)
        self._watchdog: asyncio.TimerHandle | None = None
        # Blocking calls on the image run on executor threads; this lock keeps them from
        # racing with close/reopen (a call on a closed rbd_image_t would crash the process).
        self._image_lock = threading.Lock()
        self._idle: asyncio.Event | None = None
        self._reopening: asyncio.Task | None = None
        self._next_reopen = 0.0
        self.reconnects = 0  # new RADOS clients after being fenced (conn_lost_cnt)
        self.closed = False

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    async def open(cls, **kw) -> RbdBackend:
        backend = cls(**kw)
        await backend._open()
        return backend

    async def _blocking(self, fn, *args, timeout: float | None = None):
        """Run a blocking librbd call on the executor, bounded by osd_op_timeout."""
        fut = asyncio.get_running_loop().run_in_executor(self.executor, self._locked, fn, args)
        limit = timeout if timeout is not None else (self.timeout * 2 if self.timeout else None)
        try:
            return await asyncio.wait_for(fut, limit)
        except TimeoutError:
            raise BackendTimeout(getattr(fn, "__name__", "call"), limit or 0) from None
        except L.LibError as e:
            if e.errno == errno.ESHUTDOWN:
                self._fenced_seen()
            raise BackendError(e.errno, e.call) from None

    def _locked(self, fn, args):
        with self._image_lock:
            return fn(*args)

    def _image(self) -> int:
        """The open image handle, for blocking calls (caller holds the image lock)."""
        if not self._handle:
            raise L.LibError("rbd image", -errno.ESHUTDOWN)
        return self._handle

    async def _open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        img = await self._blocking(RbdImage, self.conf, self.client_name, self.pool, self.image_name,
                                   self.namespace, self.options)
        self._attach(img)
        await self._blocking(self._stat)
        await self._start_channel()

    def _attach(self, img: RbdImage) -> None:
        self._img = img
        self._fence_reported = False
        self._handle = img.image.value
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        L.check("rbd_set_image_notification",
                L.rbd.rbd_set_image_notification(self._handle, self._efd, L.EVENT_TYPE_EVENTFD))
        self._loop.add_reader(self._efd, self._reap)
        if L.rbd.rbd_update_watch(self._handle, byref(self._watch_handle), self._watch_cb, None) < 0:
            log.warning("%s/%s: no header watch; resizes are noticed on the next open",
                        self.pool, self.image_name)
            self._watch_handle = c_uint64()

    def _stat(self) -> None:
        image = self._image()
        info = L.ImageInfo()
        L.check("rbd_stat", L.rbd.rbd_stat(image, byref(info), ctypes.sizeof(info)))
        features = c_uint64()
        L.check("rbd_get_features", L.rbd.rbd_get_features(image, byref(features)))
        ident = ctypes.create_string_buffer(64)
        if L.rbd.rbd_get_id(image, ident, len(ident)) == 0:
            self.image_id = ident.value.decode()
        self.size = info.size
        self.object_size = info.obj_size
        self.supports_lock = bool(features.value & L.RBD_FEATURE_EXCLUSIVE_LOCK)
        if not self.supports_lock:
            log.warning("%s/%s has no exclusive-lock feature: multi-gateway failover is not safe",
                        self.pool, self.image_name)

    async def _drain(self) -> None:
        if self._inflight and self._idle is not None:
            try:
                await asyncio.wait_for(self._idle.wait(), self.timeout * 2 if self.timeout else None)
            except TimeoutError:
                log.error("%s/%s: %d operations did not complete", self.pool, self.image_name,
                          self._inflight)

    def _detach(self) -> RbdImage | None:
        img, self._img = self._img, None
        self._channel = None  # closed with the image
        if self._efd >= 0:
            self._loop.remove_reader(self._efd)
        if img is not None and self._watch_handle.value:
            L.rbd.rbd_update_unwatch(img.image, self._watch_handle.value)
            self._watch_handle = c_uint64()
        self._handle = 0
        return img

    def _close_efd(self) -> None:
        if self._efd >= 0:
            os.close(self._efd)
            self._efd = -1

    async def close(self) -> None:
        """Drain in-flight I/O, stop reaping, close the image, then close the eventfd."""
        if self.closed:
            return
        self.closed = True
        if self._reopening is not None:
            try:
                await self._reopening
            except Exception:
                pass
        await self._drain()
        if self._watchdog is not None:
            self._watchdog.cancel()
        img = self._detach()
        if img is not None:
            await self._blocking(img.close)
        self._close_efd()

    async def reopen(self) -> None:
        """Reconnect with a new RADOS client (a fenced client never reads or writes again).

        Concurrent callers (the lock policy, the automatic recovery after a fenced
        completion) share one reconnection."""
        if self.closed:
            raise BackendError(errno.EBADF, "reopen", "closed")
        if self._reopening is None:
            self._reopening = self._loop.create_task(self._reconnect())
        task = self._reopening
        try:
            await asyncio.shield(task)
        finally:
            if task.done() and self._reopening is task:
                self._reopening = None

    def _fenced_seen(self) -> None:
        """A call said -ESHUTDOWN: this client is blocklisted; tell the lock policy, and get
        a new client in the background so reads work again (writes wait for the policy)."""
        self._report_fenced(errno.ESHUTDOWN)
        if self._reopening is None and not self.closed and time.monotonic() >= self._next_reopen:
            self._next_reopen = time.monotonic() + 1.0
            self._reopening = self._loop.create_task(self._reconnect())
            self._reopening.add_done_callback(self._reconnected)

    def _reconnected(self, task: asyncio.Task) -> None:
        if self._reopening is task:
            self._reopening = None
        if not task.cancelled() and task.exception() is not None:
            log.error("%s/%s: reconnecting after being fenced failed: %s", self.pool, self.image_name,
                      task.exception())

    async def _reconnect(self) -> None:
        log.debug("%s/%s: reconnecting, %d operations in flight: %s", self.pool, self.image_name,
                  self._inflight, [s.op for s in self._slots if s.fut is not None])
        await self._drain()
        img = self._detach()
        self._close_efd()
        if img is not None:
            try:
                await self._blocking(img.close)
            except BackendError as e:
                log.warning("%s/%s: closing the fenced client: %s", self.pool, self.image_name, e)
        new = await self._blocking(RbdImage, self.conf, self.client_name, self.pool, self.image_name,
                                   self.namespace, self.options)
        self._attach(new)
        await self._blocking(self._stat)
        await self._start_channel()
        self.reconnects += 1
        log.info("%s/%s reopened as %s", self.pool, self.image_name, new.address())

    # -- submission ------------------------------------------------------------------------------
    def _slot(self, op: str, length: int, callback=None) -> _Slot:
        if self._handle == 0:
            raise BackendError(errno.ESHUTDOWN if not self.closed else errno.EBADF, op, "image not open")
        slot = self._free.pop() if self._free else None
        if slot is None:
            slot = _Slot(len(self._slots) + 1)
            self._slots.append(slot)
        ret = L.rbd.rbd_aio_create_completion(slot.token, callback, slot.comp_addr)
        if ret < 0:
            self._free.append(slot)
            raise BackendError(-ret, "rbd_aio_create_completion")
        slot.fut = self._loop.create_future()
        slot.op, slot.length, slot.t0, slot.expired = op, length, time.monotonic(), False
        return slot

    def _view(self, slot: _Slot, obj) -> int:
        """Address of a caller's buffer, held (exported) until the operation completes."""
        n = slot.nviews
        if L.capi.PyObject_GetBuffer(obj, slot.view_addrs[n], L.PYBUF_SIMPLE) != 0:
            raise BufferError("buffer is not contiguous")
        slot.nviews = n + 1
        return slot.views[n].buf

    def _release(self, slot: _Slot) -> None:
        n = slot.nviews
        if n:
            release, addrs = L.capi.PyBuffer_Release, slot.view_addrs
            for i in range(n):
                release(addrs[i])
            slot.nviews = 0
        slot.buf = None
        slot.fut = None
        self._free.append(slot)

    def _submitted(self, slot: _Slot, ret: int) -> asyncio.Future:
        if ret < 0:
            L.rbd.rbd_aio_release(slot.comp)
            self._release(slot)
            raise BackendError(-ret, slot.op)
        self._inflight += 1
        self._idle.clear()
        if self._watchdog is None and self.timeout > 0:
            self._watchdog = self._loop.call_later(1.0, self._check_deadlines)
        return slot.fut

    async def read(self, offset: int, length: int) -> memoryview:
        if length <= 0:  # never hand librbd a zero-length I/O
            return memoryview(b"")
        slot = self._slot("read", length)
        buf = bytearray(length)  # ours until returned, never resized: no buffer export needed
        slot.buf = buf
        iov = slot.iov
        iov.iov_base = L.capi.PyByteArray_AsString(buf)
        iov.iov_len = length
        fut = self._submitted(slot, L.rbd.rbd_aio_readv(self._handle, slot.iov_addr, 1, offset,
                                                        slot.comp.value))
        await fut
        return memoryview(buf)

    async def write(self, offset: int, data, fua: bool = False) -> None:
        if not len(data):
            return
        if self.lock_writes is False:
            raise BackendError(errno.EROFS, "write", NOT_HOLDER)
        slot = self._slot("write", len(data))
        iov = slot.iov
        iov.iov_base = self._view(slot, data)
        iov.iov_len = len(data)
        await self._submitted(slot, L.rbd.rbd_aio_writev(self._handle, slot.iov_addr, 1, offset,
                                                         slot.comp.value))

    async def writesame(self, offset: int, length: int, pattern: bytes) -> None:
        if length <= 0:
            return
        if self.lock_writes is False:
            raise BackendError(errno.EROFS, "writesame", NOT_HOLDER)
        slot = self._slot("writesame", length)
        ptr = self._view(slot, pattern)
        await self._submitted(slot, L.rbd.rbd_aio_writesame(self._handle, offset, length, ptr, len(pattern),
                                                            slot.comp.value, 0))

    async def write_zeroes(self, offset: int, length: int) -> None:
        if length <= 0:
            return
        if self.lock_writes is False:
            raise BackendError(errno.EROFS, "write_zeroes", NOT_HOLDER)
        slot = self._slot("write_zeroes", length)
        await self._submitted(slot, L.rbd.rbd_aio_write_zeroes(self._handle, offset, length,
                                                               slot.comp.value, 0, 0))

    async def discard(self, offset: int, length: int) -> None:
        if length <= 0:
            return
        if self.lock_writes is False:
            raise BackendError(errno.EROFS, "discard", NOT_HOLDER)
        slot = self._slot("discard", length)
        await self._submitted(slot, L.rbd.rbd_aio_discard(self._handle, offset, length, slot.comp.value))

    async def compare_and_write(self, offset: int, compare, data) -> int | None:
        if not len(data):
            return None
        if self.lock_writes is False:
            raise BackendError(errno.EROFS, "compare_and_write", NOT_HOLDER)
        slot = self._slot("compare_and_write", len(data), self._caw_cb)
        cmp_ptr = self._view(slot, compare)
        data_ptr = self._view(slot, data)
        slot.mismatch.value = 0
        fut = self._submitted(slot, L.rbd.rbd_aio_compare_and_write(
            self._handle, offset, len(data), cmp_ptr, data_ptr, slot.comp.value, slot.mismatch_addr, 0))
        return await fut

    async def flush(self) -> None:
        slot = self._slot("flush", 0)
        await self._submitted(slot, L.rbd.rbd_aio_flush(self._handle, slot.comp.value))

    # -- completion ------------------------------------------------------------------------------------
    def _reap(self) -> None:
        try:
            os.eventfd_read(self._efd)
        except (BlockingIOError, OSError):
            pass
        comps, poll, lib = self._comps, L.rbd.rbd_poll_io_events, L.rbd
        get_arg, get_ret, release = lib.rbd_aio_get_arg, lib.rbd_aio_get_return_value, lib.rbd_aio_release
        slots = self._slots
        while self._handle:
            n = poll(self._handle, self._comps_addr, POLL_BATCH)
            for i in range(n):
                comp = comps[i]
                token = get_arg(comp)
                ret = get_ret(comp)
                release(comp)
                slot = slots[token - 1]
                try:
                    self._complete(slot, ret)
                except Exception:  # never let the reaper die
                    log.exception("completing %s", slot.op)
                self._release(slot)
                self._inflight -= 1
            if n < POLL_BATCH:
                break
        if not self._inflight:
            self._idle.set()

    def _caw_completed(self, comp, arg) -> None:
        """librbd thread: a compare-and-write finished."""
        ret = L.rbd.rbd_aio_get_return_value(comp)
        L.rbd.rbd_aio_release(comp)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._finish, arg, ret)

    def _finish(self, token: int, ret: int) -> None:
        slot = self._slots[token - 1]
        try:
            self._complete(slot, ret)
        except Exception:
            log.exception("completing %s", slot.op)
        self._release(slot)
        self._inflight -= 1
        if not self._inflight:
            self._idle.set()

    def _complete(self, slot: _Slot, ret: int) -> None:
        fut = slot.fut
        if fut is None or fut.done():
            return  # aborted by the caller, or already failed by the watchdog
        op = slot.op
        if op == "compare_and_write":
            if ret == -errno.EILSEQ:
                fut.set_result(int(slot.mismatch.value))  # offset within the compared range
                return
            if ret < 0:
                self._failed(ret)
                fut.set_exception(BackendError(-ret, op))
            else:
                fut.set_result(None)
            return
        if ret < 0:
            self._failed(ret)
            fut.set_exception(BackendError(-ret, op))
        elif op == "read" and ret != slot.length:
            fut.set_exception(BackendError(errno.EIO, op, f"short read: {ret} of {slot.length} bytes"))
        else:
            fut.set_result(None)

    def _failed(self, ret: int) -> None:
        if ret == -errno.ESHUTDOWN:
            self._fenced_seen()
        elif ret == -errno.EROFS and self.lock_writes:  # our lock was broken under a write
            self._report_fenced(errno.EROFS)

    def _check_deadlines(self) -> None:
        """Fail operations older than osd_op_timeout; their slots stay until librbd completes."""
        self._watchdog = None
        if not self._inflight:
            return
        now = time.monotonic()
        for slot in self._slots:
            fut = slot.fut
            if fut is not None and not fut.done() and now - slot.t0 > self.timeout + 1:
                slot.expired = True
                fut.set_exception(BackendTimeout(slot.op, self.timeout))
        self._watchdog = self._loop.call_later(1.0, self._check_deadlines)

    # -- size, allocation ---------------------------------------------------------------------------------
    def _header_changed(self, _arg) -> None:
        """librbd thread: the image header changed (resize, lock, snapshot...)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._schedule_size_check)

    def _schedule_size_check(self) -> None:
        if not self.closed:
            self._loop.create_task(self._check_size())

    async def _check_size(self) -> None:
        try:
            size = await self._blocking(self._get_size)
        except BackendError as e:
            log.warning("%s/%s: reading the size failed: %s", self.pool, self.image_name, e)
            return
        if size != self.size:
            self.size = size
            for cb in list(self._listeners):
                cb(size)

    def _get_size(self) -> int:
        size = c_uint64()
        L.check("rbd_get_size", L.rbd.rbd_get_size(self._image(), byref(size)))
        return size.value

    def add_resize_listener(self, callback: Callable[[int], None]) -> None:
        self._listeners.append(callback)

    async def extents(self, offset: int, length: int) -> list[Extent]:
        return await self._blocking(self._diff, offset, length)

    def _diff(self, offset: int, length: int) -> list[Extent]:
        found: list[tuple[int, int]] = []

        def cb(off, ln, exists, _arg):
            if exists:
                found.append((off, ln))
            return 0
        callback = L.DIFF_CALLBACK(cb)
        L.check("rbd_diff_iterate2", L.rbd.rbd_diff_iterate2(self._image(), None, offset, length, 1, 0,
                                                            callback, None))
        out: list[Extent] = []
        pos, end = offset, offset + length
        for off, ln in sorted(found):
            off, stop = max(off, pos), min(off + ln, end)
            if stop <= off:
                continue
            if off > pos:
                out.append(Extent(pos, off - pos, False))
            if out and out[-1].allocated and out[-1].offset + out[-1].length == off:
                last = out.pop()
                out.append(Extent(last.offset, stop - last.offset, True))
            else:
                out.append(Extent(off, stop - off, True))
            pos = stop
        if pos < end:
            out.append(Extent(pos, end - pos, False))
        return out
