"""``ConfigStore``: the desired state with compare-and-set, change notification and status.

The protocol is the same for every implementation; only five primitives differ (read a
consistent snapshot, write a CAS-guarded batch, announce, watch, and the status registry):

* ``load()`` returns a ``ClusterConfig`` at one ``version``.
* ``update(fn)`` loads, lets ``fn`` mutate a copy, writes the difference in one
  compare-and-set on the version, and on conflict re-reads and calls ``fn`` again.  ``fn``
  must therefore be a pure function of the state it gets (no side effects it cannot repeat);
  its return value comes back in ``Committed.result``.  Raising ``ValidationError`` in ``fn``
  aborts without writing.  A change that would add a ``validation.violations`` entry is
  refused the same way.
* ``watch(cb)`` calls ``cb(version_or_None)`` on a library thread after each commit.
* Gateways ``report_status``; the API ``wait_applied`` for a version on some gateways.
"""

from __future__ import annotations

import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.config import codec
from gateway.config.crypto import NO_CIPHER, SecretCipher
from gateway.config.errors import AlreadyExists, ConflictError, RetriesExhausted, ValidationError
from gateway.config.model import ClusterConfig, timestamp
from gateway.config.status import ApplyReport, GatewayStatus, classify
from gateway.config.validation import violations

WatchCallback = Callable[[int | None], None]


class Subscription(Protocol):
    def check(self) -> bool:
        """Re-establish the watch if it broke; True when it is healthy now."""

    def close(self) -> None: ...


@dataclass
class Committed:
    """Outcome of ``update``/``commit``."""

    version: int  # the version that holds the change (the current one when nothing changed)
    changed: bool
    config: ClusterConfig
    result: Any = None  # what ``fn`` returned
    conflicts: int = 0  # compare-and-set losses before success
    keys: list[str] = field(default_factory=list)  # keys written or removed


class ConfigStore(ABC):
    """Interface and shared protocol; see the module docstring."""

    max_attempts = 100
    status_poll_interval = 0.25  # wait_applied re-reads at least this often (heartbeats age)

    def __init__(self, cipher: SecretCipher = NO_CIPHER) -> None:
        self.cipher = cipher

    # ---- primitives -----------------------------------------------------------------
    @abstractmethod
    def _read(self) -> tuple[int, str, dict[str, bytes]]:
        """(version, updated, entity keys) of one consistent snapshot."""

    @abstractmethod
    def _write(self, base: int, version: int, updated: str, sets: dict[str, bytes],
               removes: Iterable[str]) -> None:
        """Apply atomically iff the stored version is ``base``; else raise ConflictError."""

    @abstractmethod
    def _announce(self, version: int) -> None:
        """Tell watchers (best effort, must not block on slow or dead watchers)."""

    @abstractmethod
    def read_version(self) -> int:
        """The current version only (cheap; for "did anything change" polls)."""

    @abstractmethod
    def watch(self, callback: WatchCallback) -> Subscription:
        """Call ``callback`` on a library thread after commits; ``None`` = "re-read, may have missed"."""

    @abstractmethod
    def report_status(self, status: GatewayStatus, announce: bool = False) -> None:
        """Write this gateway's status; ``announce`` wakes ``wait_applied`` callers (use it when
        ``applied_version`` changed, not for every heartbeat)."""

    @abstractmethod
    def read_statuses(self) -> dict[str, GatewayStatus]: ...

    @abstractmethod
    def remove_status(self, gateway: str) -> None: ...

    @abstractmethod
    def _status_token(self) -> int:
        """A counter of status announcements seen so far (take it *before* reading statuses)."""

    @abstractmethod
    def _wait_status_event(self, token: int, timeout: float) -> None:
        """Sleep up to ``timeout``, returning early once an announcement after ``token`` arrived."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (watches, connections the store owns)."""

    # ---- shared protocol ----------------------------------------------------------------
    def load(self) -> ClusterConfig:
        version, updated, values = self._read()
        return codec.decode(values, version, updated, self.cipher)

    def commit(self, base: ClusterConfig, new: ClusterConfig, *, check: bool = True) -> Committed:
        """Write ``new`` if the store is still at ``base.version``; else raise ConflictError."""
        changed, removed = codec.diff(base, new)
        if not changed and not removed:
            return Committed(base.version, False, new)
        if check:
            added = set(violations(new)) - set(violations(base))
            if added:
                raise ValidationError("; ".join(sorted(added)))
        when = timestamp()
        if not new.created:  # the first write creates the config
            new.created = when
            changed.add(codec.META_KEY)
        codec.stamp(new, changed, when)
        sets = codec.encode(new, self.cipher, changed)
        version = base.version + 1
        self._write(base.version, version, when, sets, removed)
        new.version, new.updated = version, when
        self._announce(version)
        return Committed(version, True, new, keys=sorted(changed | removed))

    def update(self, fn: Callable[..., Any], *args: Any, max_attempts: int | None = None,
               **kwargs: Any) -> Committed:
        """Run ``fn(copy, *args, **kwargs)`` and commit its changes, retrying after conflicts.

        A ``ValidationError`` is raised only if it holds for the latest state (when the state
        moved while ``fn`` ran, ``fn`` runs again on the new one).

        ``store.update(ops.map_lun, iqn, "rbd/disk1", lun_id=3)`` works as well as a lambda.
        """
        attempts = max_attempts or self.max_attempts
        for attempt in range(attempts):
            version, updated, values = self._read()
            base = codec.decode(values, version, updated, self.cipher)
            work = codec.decode(values, version, updated, self.cipher)  # cheaper than deepcopy
            try:
                result = fn(work, *args, **kwargs)
                done = self.commit(base, work)
            except ValidationError:
                # Judge a request by the latest state: if it moved meanwhile, try again on it.
                if self.read_version() != version:
                    continue
                raise
            except ConflictError:
                # Jittered, growing pause so that two busy writers stop colliding.
                time.sleep(random.uniform(0, min(0.05, 0.0005 * (2 ** min(attempt, 8)))))
                continue
            done.result, done.conflicts = result, attempt
            return done
        raise RetriesExhausted(f"gave up after {attempts} conflicting attempts; the config is "
                               "changing too fast, try again")

    def import_config(self, cfg: ClusterConfig, *, force: bool = False) -> Committed:
        """Write a whole state (an imported ceph-iscsi config) in one compare-and-set.

        Refused unless the store was never written (version 0) or ``force``.  The version
        becomes ``max(current + 1, cfg.version)``, so an imported epoch carries over and
        versions never go back.
        """
        current, _, values = self._read()
        if current and not force:
            raise AlreadyExists(f"the store already holds configuration version {current}; "
                                "import with force to replace it")
        sets = codec.encode(cfg, self.cipher)
        version = max(current + 1, cfg.version)
        updated = cfg.updated or timestamp()
        self._write(current, version, updated, sets, set(values) - set(sets))
        self._announce(version)
        out = cfg.copy()
        out.version, out.updated = version, updated
        return Committed(version, True, out, keys=sorted(set(sets) | (set(values) - set(sets))))

    def reseal(self) -> Committed:
        """Rewrite every entity in one commit, so that secrets stored in clear (before the key
        pair existed) get encrypted.  Secrets this node cannot decrypt stay as they are."""
        for _ in range(self.max_attempts):
            base = self.load()
            sets = codec.encode(base, self.cipher)
            when = timestamp()
            try:
                self._write(base.version, base.version + 1, when, sets, ())
            except ConflictError:
                continue
            self._announce(base.version + 1)
            base.version, base.updated = base.version + 1, when
            return Committed(base.version, True, base, keys=sorted(sets))
        raise RetriesExhausted("gave up rewriting the config: it keeps changing")

    def wait_applied(self, version: int, gateways: Iterable[str], timeout: float,
                     dead_after: float = 10.0) -> ApplyReport:
        """Wait (at most ``timeout`` s) until every live gateway of ``gateways`` applied ``version``."""
        names = list(gateways)
        deadline = time.monotonic() + timeout
        while True:
            token = self._status_token()
            report = classify(version, names, self.read_statuses(), time.time(), dead_after)
            remaining = deadline - time.monotonic()
            if report.complete or remaining <= 0:
                return report
            self._wait_status_event(token, min(self.status_poll_interval, remaining))


# ---- in memory ----------------------------------------------------------------------------
class MemoryBackend:
    """What several ``MemoryConfigStore`` handles share, like processes share a RADOS object."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.version = 0
        self.updated = ""
        self.values: dict[str, bytes] = {}
        self.status: dict[str, bytes] = {}
        self.status_changed = threading.Condition(self.lock)
        self.status_serial = 0
        self.watchers: dict[int, WatchCallback] = {}
        self._next_watch = 0
        self._pending: list[tuple[WatchCallback, int | None]] = []
        self._wake = threading.Condition(self.lock)
        self._thread: threading.Thread | None = None

    def add_watcher(self, callback: WatchCallback) -> int:
        with self.lock:
            self._next_watch += 1
            self.watchers[self._next_watch] = callback
            if self._thread is None:
                self._thread = threading.Thread(target=self._deliver, name="memory-store-notify",
                                                daemon=True)
                self._thread.start()
            return self._next_watch

    def notify(self, version: int) -> None:
        """Queue callbacks for a separate thread, as librados calls them from its own."""
        with self.lock:
            self._pending.extend((cb, version) for cb in self.watchers.values())
            self._wake.notify()

    def _deliver(self) -> None:
        while True:
            with self.lock:
                while not self._pending:
                    self._wake.wait()
                batch, self._pending = self._pending, []
            for callback, version in batch:
                try:
                    callback(version)
                except Exception:  # a watcher's bug must not stop delivery to the others
                    pass


class _MemorySubscription:
    def __init__(self, backend: MemoryBackend, ident: int) -> None:
        self.backend, self.ident = backend, ident

    def check(self) -> bool:
        return self.ident in self.backend.watchers

    def close(self) -> None:
        with self.backend.lock:
            self.backend.watchers.pop(self.ident, None)


class MemoryConfigStore(ConfigStore):
    """In-process store for unit tests; same codec and protocol as the RADOS store."""

    def __init__(self, backend: MemoryBackend | None = None, cipher: SecretCipher = NO_CIPHER) -> None:
        super().__init__(cipher)
        self.backend = backend or MemoryBackend()

    def _read(self) -> tuple[int, str, dict[str, bytes]]:
        b = self.backend
        with b.lock:
            return b.version, b.updated, dict(b.values)

    def _write(self, base: int, version: int, updated: str, sets: dict[str, bytes],
               removes: Iterable[str]) -> None:
        b = self.backend
        with b.lock:
            if b.version != base:
                raise ConflictError(base)
            b.values.update(sets)
            for key in removes:
                b.values.pop(key, None)
            b.version, b.updated = version, updated

    def _announce(self, version: int) -> None:
        self.backend.notify(version)

    def read_version(self) -> int:
        with self.backend.lock:
            return self.backend.version

    def watch(self, callback: WatchCallback) -> Subscription:
        return _MemorySubscription(self.backend, self.backend.add_watcher(callback))

    def report_status(self, status: GatewayStatus, announce: bool = False) -> None:
        b = self.backend
        with b.lock:
            b.status[status.gateway] = status.to_json()
            if announce:
                b.status_serial += 1
                b.status_changed.notify_all()

    def read_statuses(self) -> dict[str, GatewayStatus]:
        with self.backend.lock:
            return {name: GatewayStatus.from_json(blob) for name, blob in self.backend.status.items()}

    def remove_status(self, gateway: str) -> None:
        with self.backend.lock:
            self.backend.status.pop(gateway, None)

    def _status_token(self) -> int:
        with self.backend.lock:
            return self.backend.status_serial

    def _wait_status_event(self, token: int, timeout: float) -> None:
        b = self.backend
        with b.lock:
            b.status_changed.wait_for(lambda: b.status_serial != token, timeout)
