"""Unit attention conditions, one queue per I_T nexus (SAM-5 5.14, SPC-4 4.5.6).

A nexus the logical unit has not seen yet starts with POWER ON, RESET.  The
fast path costs one dict lookup: ``pending(nexus)`` is falsy for a known
nexus with nothing queued.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from .api import Nexus
from .sense import POWER_ON_RESET, Asc

_MAX_QUEUED = 16


class UnitAttentions:
    def __init__(self) -> None:
        self._queues: dict[Nexus, deque[Asc]] = {}

    def pending(self, nexus: Nexus) -> bool:
        q = self._queues.get(nexus)
        if q is None:
            self._queues[nexus] = deque((POWER_ON_RESET,))
            return True
        return bool(q)

    def pop(self, nexus: Nexus) -> Asc | None:
        q = self._queues.get(nexus)
        if q is None:
            self._queues[nexus] = q = deque((POWER_ON_RESET,))
        return q.popleft() if q else None

    def peek(self, nexus: Nexus) -> Asc | None:
        q = self._queues.get(nexus)
        if q is None:
            return POWER_ON_RESET
        return q[0] if q else None

    def establish(self, nexus: Nexus, code: Asc) -> None:
        """Queue ``code`` for a nexus (a nexus not seen yet gets POWER ON first anyway)."""
        q = self._queues.get(nexus)
        if q is None:
            return
        if code in q:
            return
        if code.asc == 0x29:  # a reset supersedes everything queued before it
            q.clear()
        if len(q) >= _MAX_QUEUED:
            q.popleft()
        q.append(code)

    def establish_all(self, code: Asc, *, except_nexus: Nexus | None = None) -> None:
        for nexus in list(self._queues):
            if nexus != except_nexus:
                self.establish(nexus, code)

    def establish_many(self, nexuses: Iterable[Nexus], code: Asc) -> None:
        for nexus in nexuses:
            self.establish(nexus, code)

    def clear(self, nexus: Nexus) -> None:
        q = self._queues.get(nexus)
        if q:
            q.clear()

    def forget(self, nexus: Nexus) -> None:
        """The I_T nexus is gone; a new session starts over with POWER ON."""
        self._queues.pop(nexus, None)

    def known(self) -> list[Nexus]:
        return list(self._queues)
