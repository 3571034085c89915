"""The RADOS implementation of ``ConfigStore``: omap keys of one object, CAS on ``version``.

* Desired state: omap of ``<pool>/<gateway_conf>`` (see ``codec`` for the keys).  Every
  commit is one write op: ``omap_cmp(version == base)`` + ``set_omap`` + ``remove_omap_keys``,
  so it applies entirely or not at all and a writer killed at any point leaves no lock and no
  partial state.  A lost compare returns ECANCELED -> ``ConflictError``.
* The object's *data* is left alone: it is where ceph-iscsi kept its JSON blob, which
  ``import_legacy`` can import (the blob stays as it was).
* Reads: one read op returns the version and a page of keys; with more pages, each op
  re-reads the version and the read restarts if it moved, so no torn state is ever returned.
* After a commit, ``aio_notify`` (never waits for acks, so a dead watcher cannot stall a
  writer); watchers also re-read on a slow timer (``follow``).
* Gateway status: omap of ``<gateway_conf>.status``, one key per gateway, plain writes.
"""

from __future__ import annotations

import errno
import json
import logging
import threading
from collections.abc import Iterable
from typing import Any

import rados

from gateway.config import ceph_iscsi
from gateway.config.codec import UPDATED_KEY, VERSION_KEY
from gateway.config.crypto import NO_CIPHER, SecretCipher
from gateway.config.errors import ConfigError, ConflictError, StoreError
from gateway.config.status import GatewayStatus
from gateway.config.store import Committed, ConfigStore, Subscription, WatchCallback

log = logging.getLogger(__name__)

PAGE_SIZE = 512  # below osd_max_omap_entries_per_request (1024 by default)
# Written with every commit; sorts after every other key, so a reader knows it has read to
# the end even when the OSD returns shorter pages than asked (a lower per-request limit).
END_KEY = "~end"
STATUS_PREFIX = "gateway/"
_NOT_ENTITIES = (VERSION_KEY, UPDATED_KEY, END_KEY)


def _rados_errno(e: Exception) -> int | None:
    return getattr(e, "errno", None)


class _RadosSubscription:
    """A watch that re-establishes itself when ``check()`` finds it broken."""

    def __init__(self, store: RadosConfigStore, obj: str, callback: WatchCallback,
                 parse_version: bool = True) -> None:
        self._store, self._obj, self._callback = store, obj, callback
        self._parse = parse_version
        self._lock = threading.Lock()
        self._watch: Any = None
        self._broken = False
        self._closed = False
        self._establish()

    def _on_notify(self, notify_id: int, notifier_id: int, watch_id: int, data: bytes) -> None:
        version: int | None = None
        if self._parse:
            try:
                version = int(data)
            except (TypeError, ValueError):
                version = None
        self._deliver(version)

    def _deliver(self, version: int | None) -> None:
        try:
            self._callback(version)
        except Exception:  # a librados thread: never let a callback's bug escape into it
            log.exception("config watch callback failed")

    def _on_error(self, _watch_id: int, err: int) -> None:  # librados passes the watch id first
        log.warning("watch on %s broke (error %s); will re-establish", self._obj, err)
        self._broken = True
        self._deliver(None)

    def _establish(self) -> None:
        self._store.ensure_object(self._obj)
        self._watch = self._store.ioctx.watch(self._obj, self._on_notify, self._on_error)
        self._broken = False

    def check(self) -> bool:
        with self._lock:
            if self._closed:
                return False
            if not self._broken:
                try:
                    self._watch.check()
                    return True
                except rados.Error:
                    self._broken = True
            try:
                if self._watch is not None:
                    try:
                        self._watch.close()
                    except rados.Error:
                        pass
                self._establish()
            except (rados.Error, StoreError) as e:
                log.warning("cannot re-establish the watch on %s: %s", self._obj, e)
                return False
        self._deliver(None)  # changes may have been missed meanwhile
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._watch is not None:
                try:
                    self._watch.close()
                except rados.Error:
                    pass
                self._watch = None


class RadosConfigStore(ConfigStore):
    """The config in ``<pool>/<object_name>`` (omap) and ``<object_name>.status``.

    Thread-safe: one store (one ioctx) can serve every thread of a process.
    """

    def __init__(self, ioctx: Any, object_name: str = "gateway.conf", *, cipher: SecretCipher = NO_CIPHER,
                 page_size: int = PAGE_SIZE, notify_timeout_ms: int = 2000, cluster: Any = None) -> None:
        super().__init__(cipher)
        self.ioctx = ioctx
        self.object_name = object_name
        self.status_object = f"{object_name}.status"
        self.page_size = page_size
        self.notify_timeout_ms = notify_timeout_ms
        self._cluster = cluster  # closed by close() when the store opened it
        self._status_cond = threading.Condition()
        self._status_serial = 0
        self._status_watch: _RadosSubscription | None = None
        self._notifies: set[Any] = set()
        self._notifies_cond = threading.Condition()

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def connect(cls, *, conffile: str, pool: str = "rbd", object_name: str = "gateway.conf",
                name: str = "client.admin", keyring: str | None = None,
                cipher: SecretCipher = NO_CIPHER, timeout: int = 10, **kw: Any) -> RadosConfigStore:
        """Open a store on its own cluster connection (closed by ``close()``)."""
        conf = {"keyring": keyring} if keyring else {}
        cluster = rados.Rados(conffile=conffile, name=name, conf=conf)
        try:
            cluster.connect(timeout=timeout)
            ioctx = cluster.open_ioctx(pool)
        except rados.ObjectNotFound:
            cluster.shutdown()
            raise StoreError(f"pool {pool!r} does not exist; create it or set 'pool' in "
                             "iscsi-gateway.cfg") from None
        except rados.Error as e:
            cluster.shutdown()
            raise StoreError(f"cannot connect to the cluster with {conffile} as {name}: {e}") from None
        return cls(ioctx, object_name, cipher=cipher, cluster=cluster, **kw)

    @classmethod
    def from_settings(cls, settings: Any, *, cipher: SecretCipher | None = None,
                      **kw: Any) -> RadosConfigStore:
        """The store ``iscsi-gateway.cfg`` describes (pool, gateway_conf, keys, CephX user)."""
        from gateway.config.crypto import cipher_from_settings

        return cls.connect(conffile=settings.ceph_conf, pool=settings.pool,
                           object_name=settings.gateway_conf, name=settings.cluster_client_name,
                           cipher=cipher if cipher is not None else cipher_from_settings(settings), **kw)

    def close(self) -> None:
        if self._status_watch is not None:
            self._status_watch.close()
            self._status_watch = None
        self.drain_notifies()
        if self._cluster is not None:
            self.ioctx.close()
            self._cluster.shutdown()
            self._cluster = None

    def ensure_object(self, obj: str | None = None) -> None:
        """Create the object if missing (never truncates: a legacy blob stays)."""
        with rados.WriteOpCtx() as op:
            op.new(rados.LIBRADOS_CREATE_IDEMPOTENT)
            self._operate_write(op, obj or self.object_name)

    # ---- primitives ---------------------------------------------------------------------
    def _operate_write(self, op: Any, obj: str) -> None:
        try:
            self.ioctx.operate_write_op(op, obj)
        except rados.Error as e:
            if _rados_errno(e) == errno.ECANCELED:
                raise
            raise StoreError(f"writing {obj}: {e}") from None

    def _read_page(self, obj: str, start: str, head_keys: tuple[str, ...]) -> tuple[dict, list] | None:
        with rados.ReadOpCtx() as op:
            head_it, _ = self.ioctx.get_omap_vals_by_keys(op, head_keys)
            page_it, _ = self.ioctx.get_omap_vals(op, start, "", self.page_size)
            try:
                self.ioctx.operate_read_op(op, obj)
            except rados.ObjectNotFound:
                return None
            except rados.Error as e:
                raise StoreError(f"reading {obj}: {e}") from None
            return dict(head_it), list(page_it)

    def _read(self) -> tuple[int, str, dict[str, bytes]]:
        for _ in range(100):
            values: dict[str, bytes] = {}
            version: int | None = None
            updated, start, seen_end = "", "", False
            while True:
                got = self._read_page(self.object_name, start, (VERSION_KEY, UPDATED_KEY, END_KEY))
                if got is None:
                    return 0, "", {}
                head, page = got
                now = int(head.get(VERSION_KEY) or 0)
                if version is None:
                    version, updated = now, (head.get(UPDATED_KEY) or b"").decode()
                elif now != version:
                    break  # a commit landed between two pages: read again
                # The binding returns None for an empty value.
                values.update((k, v or b"") for k, v in page if k not in _NOT_ENTITIES)
                seen_end = seen_end or END_KEY not in head or any(k == END_KEY for k, _ in page)
                if not page or (len(page) < self.page_size and seen_end):
                    return version, updated, values
                start = page[-1][0]
        raise StoreError(f"{self.object_name} kept changing while being read (100 attempts)")

    def _write(self, base: int, version: int, updated: str, sets: dict[str, bytes],
               removes: Iterable[str]) -> None:
        keys = (*sets, VERSION_KEY, UPDATED_KEY, END_KEY)
        values = (*sets.values(), str(version).encode(), updated.encode(), b"1")
        removes = tuple(removes)
        with rados.WriteOpCtx() as op:
            op.new(rados.LIBRADOS_CREATE_IDEMPOTENT)
            # A missing key compares as "": version 0 is "no version key yet".
            op.omap_cmp(VERSION_KEY, str(base) if base else "", rados.LIBRADOS_CMPXATTR_OP_EQ)
            self.ioctx.set_omap(op, keys, values)
            if removes:
                self.ioctx.remove_omap_keys(op, removes)
            try:
                self._operate_write(op, self.object_name)
            except rados.Error as e:  # only ECANCELED gets here
                raise ConflictError(base) from e

    def _notify(self, obj: str, msg: str) -> None:
        # The completion must outlive the notify: librados calls back into it, and shutting
        # the cluster down under a pending notify crashes.  ``close`` waits for these.
        def done(completion: Any, *_: Any) -> None:
            with self._notifies_cond:
                self._notifies.discard(completion)
                self._notifies_cond.notify_all()

        with self._notifies_cond:
            try:
                completion = self.ioctx.aio_notify(obj, done, msg=msg, timeout_ms=self.notify_timeout_ms)
            except rados.Error as e:
                log.warning("notify on %s failed (watchers will catch up by polling): %s", obj, e)
                return
            if not completion.is_complete():
                self._notifies.add(completion)

    def drain_notifies(self, timeout: float | None = None) -> bool:
        """Wait for pending notifies (they end after ``notify_timeout_ms`` at the latest)."""
        limit = self.notify_timeout_ms / 1000 + 2 if timeout is None else timeout
        with self._notifies_cond:
            return self._notifies_cond.wait_for(lambda: not self._notifies, limit)

    def _announce(self, version: int) -> None:
        self._notify(self.object_name, str(version))

    def read_version(self) -> int:
        got = self._read_page(self.object_name, "", (VERSION_KEY,))
        return 0 if got is None else int(got[0].get(VERSION_KEY) or 0)

    def watch(self, callback: WatchCallback) -> Subscription:
        try:
            return _RadosSubscription(self, self.object_name, callback)
        except rados.Error as e:  # StoreError passes through as it is
            raise StoreError(f"cannot watch {self.object_name}: {e}") from None

    # ---- gateway status -----------------------------------------------------------------
    def report_status(self, status: GatewayStatus, announce: bool = False) -> None:
        with rados.WriteOpCtx() as op:
            self.ioctx.set_omap(op, (STATUS_PREFIX + status.gateway,), (status.to_json(),))
            self._operate_write(op, self.status_object)
        if announce:
            self._notify(self.status_object, str(status.applied_version))

    def read_statuses(self) -> dict[str, GatewayStatus]:
        out: dict[str, GatewayStatus] = {}
        start = ""
        while True:
            got = self._read_page(self.status_object, start, ())
            if got is None:
                return out
            page = got[1]
            if not page:  # read until an empty page: pages may be shorter than asked
                return out
            for key, blob in page:
                if key.startswith(STATUS_PREFIX):
                    try:
                        status = GatewayStatus.from_json(blob)
                    except (ValueError, KeyError, TypeError):
                        log.warning("unreadable status key %s ignored", key)
                        continue
                    out[status.gateway] = status
            start = page[-1][0]

    def remove_status(self, gateway: str) -> None:
        with rados.WriteOpCtx() as op:
            self.ioctx.remove_omap_keys(op, (STATUS_PREFIX + gateway,))
            try:
                self.ioctx.operate_write_op(op, self.status_object)
            except rados.ObjectNotFound:
                pass
            except rados.Error as e:
                raise StoreError(f"writing {self.status_object}: {e}") from None

    def _status_announced(self, _version: int | None) -> None:
        with self._status_cond:
            self._status_serial += 1
            self._status_cond.notify_all()

    def _status_token(self) -> int:
        if self._status_watch is None:
            try:
                self._status_watch = _RadosSubscription(self, self.status_object, self._status_announced,
                                                        parse_version=False)
            except (rados.Error, StoreError) as e:
                log.warning("cannot watch %s, polling only: %s", self.status_object, e)
        with self._status_cond:
            return self._status_serial

    def _wait_status_event(self, token: int, timeout: float) -> None:
        with self._status_cond:
            self._status_cond.wait_for(lambda: self._status_serial != token, timeout)

    # ---- migration from ceph-iscsi ------------------------------------------------------
    def read_legacy_blob(self) -> bytes | None:
        """The object's data (ceph-iscsi's JSON config), or None when empty/missing."""
        try:
            size, _ = self.ioctx.stat(self.object_name)
            if size == 0:
                return None
            return self.ioctx.read(self.object_name, length=size)
        except rados.ObjectNotFound:
            return None
        except rados.Error as e:
            raise StoreError(f"reading {self.object_name}: {e}") from None

    def import_legacy(self, *, force: bool = False) -> tuple[Committed, list[str]]:
        """Import the ceph-iscsi blob held in the object's data; the blob is not modified.

        Returns the commit and the problems found in the imported state (imported anyway,
        so that nothing is lost; fix them with the API).
        """
        blob = self.read_legacy_blob()
        if blob is None:
            raise ConfigError(f"{self.object_name} holds no ceph-iscsi configuration (its data is empty)")
        try:
            doc = json.loads(blob)
        except ValueError:
            raise ConfigError(f"the data of {self.object_name} ({len(blob)} bytes) is not JSON") from None
        cfg, problems = ceph_iscsi.import_document(doc, self.cipher)
        return self.import_config(cfg, force=force), problems

    def open(self, *, auto_import: bool = True) -> str:
        """Prepare the store for a daemon: create the object, and import a ceph-iscsi blob
        once when the omap was never written.  Returns what happened, for the log."""
        self.ensure_object()
        if not auto_import or self.read_version() != 0 or self.read_legacy_blob() is None:
            return "ready"
        try:
            done, problems = self.import_legacy()
        except ConfigError as e:
            if self.read_version() != 0:  # another gateway imported first
                return "ready (imported by another gateway)"
            raise ConfigError(f"automatic import of the ceph-iscsi configuration failed: {e}") from None
        for p in problems:
            log.warning("imported configuration: %s", p)
        return f"imported the ceph-iscsi configuration as version {done.version}"
