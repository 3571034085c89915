"""The CmdSN window (RFC 7143 §4.2.2): ordering of non-immediate requests.

Requests inside [ExpCmdSN, MaxCmdSN] are accepted; those that arrive early wait until the
gap before them is filled, then all are delivered in CmdSN order.  Requests outside the
window are dropped silently (RFC 7143 §4.2.2.1).  MaxCmdSN = ExpCmdSN - 1 + free slots,
where a slot is held from delivery until the command's status is sent, so the window
bounds the commands outstanding on a session -- and never shrinks, as the RFC requires.
"""

from __future__ import annotations

from typing import Any

SERIAL = 1 << 32
HALF = 1 << 31
MASK = SERIAL - 1


def sn_lt(a: int, b: int) -> bool:
    """Serial number arithmetic (RFC 1982) for 32-bit sequence numbers: a < b."""
    return a != b and ((b - a) % SERIAL) < HALF


def sn_le(a: int, b: int) -> bool:
    return a == b or sn_lt(a, b)


class CommandWindow:
    """Orders non-immediate requests and computes ExpCmdSN / MaxCmdSN."""

    def __init__(self, exp_cmdsn: int, depth: int) -> None:
        self.exp_cmdsn = exp_cmdsn & 0xFFFFFFFF
        self.depth = max(1, depth)
        self.active = 0
        self._pending: dict[int, Any] = {}
        self._max = (self.exp_cmdsn + self.depth - 1) & 0xFFFFFFFF

    @property
    def max_cmdsn(self) -> int:
        free = self.depth - self.active
        computed = (self.exp_cmdsn - 1 + (free if free > 0 else 0)) & MASK
        m = self._max
        if computed != m and ((computed - m) & MASK) < HALF:  # sn_lt(m, computed), inlined
            self._max = m = computed
        return m

    def in_window(self, cmdsn: int) -> bool:
        # sn_le(exp_cmdsn, cmdsn) and sn_le(cmdsn, max_cmdsn), inlined (once per command)
        return ((cmdsn - self.exp_cmdsn) & MASK) < HALF and ((self.max_cmdsn - cmdsn) & MASK) < HALF

    def accept(self, cmdsn: int, item: Any) -> list[Any]:
        """Take a non-immediate request; return those now deliverable, in order.

        Returns None if the CmdSN is outside the window or already taken (drop it).
        """
        exp = self.exp_cmdsn
        pending = self._pending
        if cmdsn == exp and not pending:  # the usual case: the next one, nothing waiting
            if ((self.max_cmdsn - cmdsn) & MASK) >= HALF:
                return None
            self.exp_cmdsn = (exp + 1) & MASK
            self.active += 1
            return [item]
        if not self.in_window(cmdsn) or cmdsn in pending:
            return None
        if cmdsn != exp:
            pending[cmdsn] = item
            return []
        out = [item]
        self.exp_cmdsn = (self.exp_cmdsn + 1) & MASK
        while pending and self.exp_cmdsn in pending:
            out.append(pending.pop(self.exp_cmdsn))
            self.exp_cmdsn = (self.exp_cmdsn + 1) & MASK
        self.active += len(out)
        return out

    def finish(self, count: int = 1) -> None:
        """A delivered request is done (its response is being sent): free its slot."""
        self.active -= count
        if self.active < 0:
            self.active = 0

    def pending_items(self) -> list[Any]:
        return list(self._pending.values())

    def set_depth(self, depth: int) -> None:
        """Live change of cmdsn_depth; MaxCmdSN never moves backwards."""
        self.depth = max(1, depth)
