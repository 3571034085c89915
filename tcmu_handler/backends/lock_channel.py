"""The lock-handoff channel of one RBD client: RADOS watch/notify on ``gateway.lock.<image id>``.

Every gateway serving an image watches that object (in the image's pool and namespace)
with the same RADOS client that holds -- or may take -- the image's exclusive lock.  A
gateway that needs the lock notifies the object with a request addressed to the holder,
by the holder's client address as ``rbd_lock_get_owners`` reports it::

    {"v": 1, "op": "release", "owner": "<holder address>", "from": "<asker address>"}

Each watcher acknowledges with ``{"v": 1, "addr": "<its address>", "releasing": bool}``:
``true`` only from the holder, once its event loop has stopped admitting writes (the
release itself follows when its writes in flight have completed).  Other watchers answer
``false`` at once, from librados' thread.  The asker reads the acknowledgements from the
notify reply (``rados_aio_notify``); no acknowledgement from the holder within the timeout
means the holder is dead, frozen or cut off, and only then is it fenced.

ctypes, not python3-rados: its ``Watch`` acknowledges from inside the callback (the holder
must answer from its event loop) and its ``notify`` returns no replies.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import json
import logging
import math
import struct
import threading
from collections.abc import Callable
from ctypes import CFUNCTYPE, POINTER, byref, c_char_p, c_int, c_size_t, c_uint64, c_void_p

from . import librbd as L

log = logging.getLogger(__name__)

WATCH_CALLBACK = CFUNCTYPE(None, c_void_p, c_uint64, c_uint64, c_uint64, c_void_p, c_size_t)
WATCH_ERROR_CALLBACK = CFUNCTYPE(None, c_void_p, c_uint64, c_int)
RADOS_CALLBACK = CFUNCTYPE(None, c_void_p, c_void_p)

for _name, _res, _args in (
    ("rados_watch2", c_int, (c_void_p, c_char_p, POINTER(c_uint64), WATCH_CALLBACK, WATCH_ERROR_CALLBACK,
                             c_void_p)),
    ("rados_unwatch2", c_int, (c_void_p, c_uint64)),
    ("rados_watch_flush", c_int, (c_void_p,)),
    ("rados_notify_ack", c_int, (c_void_p, c_char_p, c_uint64, c_uint64, c_char_p, c_int)),
    ("rados_aio_notify", c_int, (c_void_p, c_char_p, c_void_p, c_char_p, c_int, c_uint64,
                                 POINTER(c_void_p), POINTER(c_size_t))),
    ("rados_aio_create_completion2", c_int, (c_void_p, RADOS_CALLBACK, POINTER(c_void_p))),
    ("rados_aio_get_return_value", c_int, (c_void_p,)),
    ("rados_aio_release", None, (c_void_p,)),
    ("rados_buffer_free", None, (c_void_p,)),
    ("rados_create_write_op", c_void_p, ()),
    ("rados_write_op_create", None, (c_void_p, c_int, c_char_p)),
    ("rados_write_op_operate", c_int, (c_void_p, c_void_p, c_char_p, c_void_p, c_int)),
    ("rados_release_write_op", None, (c_void_p,)),
    ("rados_ioctx_get_cluster", c_void_p, (c_void_p,)),
):
    L._declare(L.rados, _name, _res, *_args)

_CREATE_IDEMPOTENT = 0


def object_name(image_id: str) -> str:
    """The handoff object of an image (by its stable image id)."""
    return f"gateway.lock.{image_id}"


def parse_replies(raw: bytes) -> tuple[list[tuple[int, bytes]], list[int]]:
    """A notify reply buffer: ([(gid, payload) of each ack], [gid of each watcher that timed out])."""
    (n,) = struct.unpack_from("<I", raw, 0)
    pos, acks = 4, []
    for _ in range(n):
        gid, _cookie, length = struct.unpack_from("<QQI", raw, pos)
        pos += 20
        acks.append((gid, raw[pos:pos + length]))
        pos += length
    (m,) = struct.unpack_from("<I", raw, pos)
    pos += 4
    timeouts = [struct.unpack_from("<Q", raw, pos + 16 * i)[0] for i in range(m)]
    return acks, timeouts


def holder_promised(raw: bytes, owner: str) -> bool:
    """True when the reply holds the acknowledgement of ``owner`` saying it is releasing."""
    acks, _timeouts = parse_replies(raw)
    for _gid, payload in acks:
        try:
            msg = json.loads(payload)
        except ValueError:
            continue
        if isinstance(msg, dict) and msg.get("addr") == owner and msg.get("releasing") is True:
            return True
    return False


class _Request:
    __slots__ = ("comp", "reply", "reply_len", "fut", "owner")

    def __init__(self, fut: asyncio.Future, owner: str) -> None:
        self.comp = c_void_p()
        self.reply = c_void_p()
        self.reply_len = c_size_t()
        self.fut = fut
        self.owner = owner


class HandoffChannel:
    """Watch/notify on the handoff object with one client's ioctx.

    ``on_request(asker)`` runs on the event loop when a request names this client; it
    returns whether this client releases (the acknowledgement's ``releasing``).
    ``on_error(err)`` runs on the loop when the watch breaks (e.g. the client was
    blocklisted).  Blocking methods (``open``, ``close``) run on an executor thread.
    """

    def __init__(self, ioctx: int, address: str, oid: str, loop: asyncio.AbstractEventLoop,
                 on_request: Callable[[str], bool], on_error: Callable[[int], None]) -> None:
        self.ioctx = ioctx
        self.address = address
        self.oid = oid.encode()
        self.loop = loop
        self.on_request = on_request
        self.on_error = on_error
        self._handle = c_uint64()
        self._watch_cb = WATCH_CALLBACK(self._notified)
        self._error_cb = WATCH_ERROR_CALLBACK(self._watch_error)
        self._done_cb = RADOS_CALLBACK(self._request_done)
        # Guards the ioctx against close while an acknowledgement or request is being submitted
        # (re-entrant: librados may complete a request inside the submitting call).
        self._guard = threading.RLock()
        self._pending: dict[int, _Request] = {}
        self._next = 0
        self._idle = threading.Condition(self._guard)
        self.closed = False

    # -- blocking (executor) -------------------------------------------------------------
    def create(self) -> None:
        """Create the handoff object if it does not exist (a notify needs it)."""
        op = L.rados.rados_create_write_op()
        try:
            L.rados.rados_write_op_create(op, _CREATE_IDEMPOTENT, None)
            L.check("create " + self.oid.decode(),
                    L.rados.rados_write_op_operate(op, self.ioctx, self.oid, None, 0))
        finally:
            L.rados.rados_release_write_op(op)

    def watch(self) -> None:
        """(Re-)establish the watch (after a watch error).  Runs on the executor, serialised
        with ``close`` by the caller (the backend's image lock)."""
        if self.closed:
            return
        old, self._handle = self._handle, c_uint64()
        if old.value:
            L.rados.rados_unwatch2(self.ioctx, old.value)
        L.check("rados_watch2 " + self.oid.decode(), L.rados.rados_watch2(
            self.ioctx, self.oid, byref(self._handle), self._watch_cb, self._error_cb, None))

    def close(self, wait: float) -> None:
        """Stop watching; wait (up to ``wait`` s) for requests in flight; no callback runs
        after this returns, so the ioctx may be destroyed."""
        with self._guard:
            self.closed = True
            self._idle.wait_for(lambda: not self._pending, wait)
        handle, self._handle = self._handle, c_uint64()
        if handle.value:
            L.rados.rados_unwatch2(self.ioctx, handle.value)
        L.rados.rados_watch_flush(L.rados.rados_ioctx_get_cluster(self.ioctx))

    # -- asking the holder (loop) ----------------------------------------------------------
    def request(self, owner: str, timeout: float) -> asyncio.Future:
        """Ask ``owner`` to release the lock; the future says whether it promised to within
        ``timeout`` seconds (RADOS counts whole seconds: at least one)."""
        fut = self.loop.create_future()
        msg = json.dumps({"v": 1, "op": "release", "owner": owner, "from": self.address}).encode()
        req = _Request(fut, owner)
        with self._guard:
            if self.closed:
                raise L.LibError("rados_aio_notify", -errno.ESHUTDOWN)
            self._next += 1
            token = self._next
            L.check("rados_aio_create_completion2", L.rados.rados_aio_create_completion2(
                c_void_p(token), self._done_cb, byref(req.comp)))
            self._pending[token] = req
            ret = L.rados.rados_aio_notify(self.ioctx, self.oid, req.comp, msg, len(msg),
                                           max(1, math.ceil(timeout)) * 1000, byref(req.reply),
                                           byref(req.reply_len))
            if ret < 0:
                if self._pending.pop(token, None) is not None:
                    L.rados.rados_aio_release(req.comp)
                raise L.LibError("rados_aio_notify", ret)
        return fut

    def _request_done(self, comp, arg) -> None:
        """librados thread: a request's notify completed (all acknowledged, or timed out)."""
        token = arg or 0
        with self._guard:
            req = self._pending.pop(token, None)
            if req is None:
                return
            ret = L.rados.rados_aio_get_return_value(comp)
            raw = ctypes.string_at(req.reply, req.reply_len.value) if req.reply.value else b""
            if req.reply.value:
                L.rados.rados_buffer_free(req.reply)
            L.rados.rados_aio_release(comp)
            if not self._pending:
                self._idle.notify_all()
        try:
            promised = holder_promised(raw, req.owner) if raw else False
        except struct.error:
            promised = False
        if ret < 0 and ret != -errno.ETIMEDOUT and not promised:
            log.info("%s: lock request to %s: notify failed (%s)", self.oid.decode(), req.owner,
                     errno.errorcode.get(-ret, ret))
        self._to_loop(_resolve, req.fut, promised, ret)

    # -- being asked (librados thread -> loop) ------------------------------------------------
    def _notified(self, _arg, notify_id, cookie, _notifier, data, length) -> None:
        try:
            msg = json.loads(ctypes.string_at(data, length)) if data and length else {}
        except ValueError:
            msg = {}
        if (not isinstance(msg, dict) or msg.get("op") != "release" or msg.get("owner") != self.address
                or msg.get("from") == self.address):
            # Not for this client (or its own request: the cluster lists it as the holder while
            # librbd says it is not -- no promise, so the stale record is broken): answer at once.
            self.ack(notify_id, cookie, False)
            return
        self._to_loop(self._deliver, notify_id, cookie, str(msg.get("from", "")))

    def _deliver(self, notify_id: int, cookie: int, asker: str) -> None:
        try:
            releasing = bool(self.on_request(asker))
        except Exception:
            log.exception("%s: handling a lock request failed", self.oid.decode())
            releasing = False
        self.ack(notify_id, cookie, releasing)

    def ack(self, notify_id: int, cookie: int, releasing: bool) -> None:
        payload = json.dumps({"v": 1, "addr": self.address, "releasing": releasing}).encode()
        with self._guard:
            if not self.closed:
                L.rados.rados_notify_ack(self.ioctx, self.oid, notify_id, cookie, payload, len(payload))

    def _watch_error(self, _arg, _cookie, err) -> None:
        self._to_loop(self.on_error, err)

    def _to_loop(self, fn, *args) -> None:
        loop = self.loop
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop closed meanwhile
                pass


def _resolve(fut: asyncio.Future, promised: bool, ret: int) -> None:
    if not fut.done():
        fut.set_result(promised)
