"""Reservation state in RADOS, shared by every gateway that exports the image.

One object per image (by default ``gateway.pr.<image id>`` in the image's
pool) holds the JSON of :class:`~tcmu_handler.prstate.ReservationState`.
Updates are compare-and-set on the object version (``assert_version`` in the
same write op), retried on a lost race, so concurrent PERSISTENT RESERVE OUT
commands through different gateways serialise without a lock that a dead
gateway could leave behind.  After a successful write the writer notifies the
object with the new state as payload and waits for the watchers (the other
gateways) to acknowledge: by the time the command completes every gateway
enforces the new reservation.  A gateway that misses a notify (watch error)
re-reads the object.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TypeVar

import rados

from .prstate import ReservationState
from .prstore import StoreError, Subscriber

__all__ = ["RadosReservationStore", "StoreError", "object_name"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_MAX_RETRIES = 64
_MAX_OBJECT = 1 << 20
_executor: ThreadPoolExecutor | None = None


def object_name(image_id: str) -> str:
    """The reservation object of an image (by its stable image id)."""
    return f"gateway.pr.{image_id}"


def _shared_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="prstore")
    return _executor


class RadosReservationStore:
    def __init__(self, ioctx: rados.Ioctx, oid: str, *, executor: Executor | None = None,
                 timeout: float = 30.0) -> None:
        self.ioctx = ioctx
        self.oid = oid
        self.executor = executor or _shared_executor()
        self.timeout = timeout
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []
        self._watch = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    async def open(cls, ioctx: rados.Ioctx, oid: str, **kw) -> RadosReservationStore:
        store = cls(ioctx, oid, **kw)
        await store._call(store._create_and_watch)
        return store

    async def _call(self, fn, *args):
        self._loop = asyncio.get_running_loop()
        fut = self._loop.run_in_executor(self.executor, fn, *args)
        try:
            return await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            raise StoreError(f"{self.oid}: no answer from RADOS in {self.timeout:g}s") from None
        except rados.Error as e:
            raise StoreError(f"{self.oid}: {e}") from e

    def _create_and_watch(self) -> None:
        op = self.ioctx.create_write_op()
        try:
            op.new(rados.LIBRADOS_CREATE_IDEMPOTENT)
            self.ioctx.operate_write_op(op, self.oid)
        finally:
            self.ioctx.release_write_op(op)
        self._watch = self.ioctx.watch(self.oid, self._notified, self._watch_error)

    # -- reading and writing ------------------------------------------------------------
    def _read(self) -> tuple[ReservationState, int]:
        with self._lock:
            raw = self.ioctx.read(self.oid, _MAX_OBJECT)
            version = self.ioctx.get_last_version()
        return ReservationState.from_json(raw), version

    def _write(self, state: ReservationState, version: int) -> bool:
        op = self.ioctx.create_write_op()
        try:
            op.assert_version(version)
            op.write_full(state.to_json())
            with self._lock:
                self.ioctx.operate_write_op(op, self.oid)
            return True
        except rados.Error as e:
            if getattr(e, "errno", None) in (errno.ERANGE, errno.EOVERFLOW, errno.ECANCELED):
                return False  # someone else wrote first
            raise
        finally:
            self.ioctx.release_write_op(op)

    def _notify(self, state: ReservationState) -> None:
        try:
            self.ioctx.notify(self.oid, state.to_json().decode(), int(self.timeout * 1000 / 2))
        except rados.Error as e:  # a gateway that did not answer re-reads on its own
            log.warning("%s: notify incomplete: %s", self.oid, e)

    async def load(self) -> ReservationState:
        state, _version = await self._call(self._read)
        return state

    async def update(self, mutate: Callable[[ReservationState], T]) -> tuple[ReservationState, T]:
        for _ in range(_MAX_RETRIES):
            state, version = await self._call(self._read)
            before = state.to_json()
            result = mutate(state)
            if state.to_json() == before:
                return state, result
            state.seq += 1
            if await self._call(self._write, state, version):
                self._deliver(state)
                await self._call(self._notify, state)
                return state, result
        raise StoreError(f"{self.oid}: gave up after {_MAX_RETRIES} conflicting updates")

    # -- change notification ------------------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def _deliver(self, state: ReservationState) -> None:
        for cb in list(self._subscribers):
            try:
                cb(state)
            except Exception:
                log.exception("%s: reservation subscriber failed", self.oid)

    def _notified(self, notify_id: int, notifier_id: str, watch_id: int, data: bytes) -> None:
        """RADOS watch thread: another gateway (or this one) changed the state."""
        try:
            state = ReservationState.from_json(data)
        except ValueError:
            log.error("%s: unreadable reservation notify", self.oid)
            return
        self._deliver(state)

    def _watch_error(self, err: int) -> None:
        """The watch broke (e.g. a network blip): re-read, and watch again."""
        log.warning("%s: watch error %d; re-reading", self.oid, err)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: loop.create_task(self._recover()))

    async def _recover(self) -> None:
        try:
            await self._call(self._rewatch)
            self._deliver(await self.load())
        except StoreError as e:
            log.error("%s: could not re-establish the watch: %s", self.oid, e)

    def _rewatch(self) -> None:
        old, self._watch = self._watch, None
        if old is not None:
            try:
                old.close()
            except rados.Error:
                pass
        self._watch = self.ioctx.watch(self.oid, self._notified, self._watch_error)

    async def close(self) -> None:
        self._subscribers.clear()
        watch, self._watch = self._watch, None
        if watch is not None:
            await self._call(watch.close)

    async def remove(self) -> None:
        """Delete the reservation object (when the disk itself is deleted)."""
        await self.close()
        try:
            await self._call(self.ioctx.remove_object, self.oid)
        except StoreError as e:
            if "ENOENT" not in str(e) and "No such file" not in str(e):
                raise
