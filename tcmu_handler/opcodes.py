"""The opcode table: every command the disk implements, in one place.

Each entry names the handler, the CDB usage data (which bits of the CDB the
device understands), how the command interacts with reservations and unit
attentions, and what kind of I/O it is.  The same table drives dispatch,
reserved-bit checking (a bit outside the usage data is an INVALID FIELD IN
CDB with its field pointer) and REPORT SUPPORTED OPERATION CODES, so the
report cannot claim a command the dispatcher does not run, or vice versa.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .sense import invalid_cdb

if TYPE_CHECKING:
    from .api import ScsiCommand, ScsiResult
    from .disk import ScsiDisk

Handler = Callable[["ScsiDisk", "ScsiCommand"], Awaitable["ScsiResult"]]

# I/O kind: statistics, exclusive-lock gating, read-only rejection.
OTHER, READ, WRITE = 0, 1, 2

# Behaviour under a persistent reservation held by another I_T nexus
# (SPC-4 table 45, SBC-3 table 13).
PR_ALLOWED = 0     # always allowed (INQUIRY, REPORT LUNS, TEST UNIT READY, ...)
PR_READ = 1        # allowed for Write Exclusive types, conflicts for Exclusive Access types
PR_WRITE = 2       # conflicts unless the nexus is registered for a *RO/*AR type
PR_INFO = 3        # like PR_READ but also allowed for any registered nexus
PR_OUT = 4         # PERSISTENT RESERVE OUT: checked by its own rules

# CDB sizes by group code (bits 7-5 of the opcode).
_GROUP_CDB_LEN = {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}


@dataclass(frozen=True, slots=True)
class OpSpec:
    opcode: int
    sa: int | None
    name: str
    usage: bytes
    handler: Handler
    kind: int = OTHER
    pr: int = PR_WRITE
    #: allowed from another nexus while an SPC-2 RESERVE is held
    spc2_allowed: bool = False
    #: does not report (or clear) a pending unit attention
    ua_exempt: bool = False
    #: accessing the medium: refused on a standby/unavailable ALUA path
    medium: bool = True
    #: bits of CDB bytes 1..end that are not in the usage data (NACA included), as one integer
    reserved: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        forbidden = bytes(~b & 0xFF for b in self.usage[1:-1]) + b"\x04"
        object.__setattr__(self, "reserved", int.from_bytes(forbidden, "big"))

    @property
    def cdb_len(self) -> int:
        return len(self.usage)

    def check_reserved(self, cdb: bytes) -> None:
        """INVALID FIELD IN CDB at the first bit set outside the usage data."""
        n = len(self.usage)
        if len(cdb) < n:
            raise invalid_cdb(len(cdb))
        if not int.from_bytes(cdb[1:n], "big") & self.reserved:
            return
        usage = self.usage
        for i in range(1, n - 1):
            extra = cdb[i] & ~usage[i]
            if extra:
                raise invalid_cdb(i, extra.bit_length() - 1)
        raise invalid_cdb(n - 1, 2)  # NACA: auto contingent allegiance is not supported


def usage(opcode: int, *fields: int, sa: int | None = None) -> bytes:
    """CDB usage data: the opcode, then one mask per remaining byte (control byte last)."""
    data = bytes((opcode, *fields))
    expected = _GROUP_CDB_LEN.get(opcode >> 5)
    if expected is not None and len(data) != expected:
        raise ValueError(f"usage of {opcode:#04x} has {len(data)} bytes, CDB has {expected}")
    if sa is not None and data[1] & 0x1F != 0x1F:
        raise ValueError("service action bits must be in the usage data")
    return data


class OpTable:
    """Dispatch by opcode (and service action); the source of RSOC data."""

    def __init__(self, specs: Iterable[OpSpec]) -> None:
        self.plain: list[OpSpec | None] = [None] * 256
        self.by_sa: dict[int, dict[int, OpSpec]] = {}
        self.specs: list[OpSpec] = []
        for spec in specs:
            if spec.sa is None:
                if self.plain[spec.opcode] is not None or spec.opcode in self.by_sa:
                    raise ValueError(f"duplicate opcode {spec.opcode:#04x}")
                self.plain[spec.opcode] = spec
            else:
                if self.plain[spec.opcode] is not None:
                    raise ValueError(f"opcode {spec.opcode:#04x} both with and without SA")
                self.by_sa.setdefault(spec.opcode, {})[spec.sa] = spec
            self.specs.append(spec)
        self.specs.sort(key=lambda s: (s.opcode, s.sa or 0))

    def lookup(self, opcode: int, sa: int) -> OpSpec | None:
        spec = self.plain[opcode]
        if spec is not None:
            return spec
        sas = self.by_sa.get(opcode)
        return None if sas is None else sas.get(sa)

    def has_service_actions(self, opcode: int) -> bool:
        return opcode in self.by_sa

    # -- REPORT SUPPORTED OPERATION CODES (SPC-4 6.35) --------------------------
    def report_all(self, rctd: bool, timeout: int) -> bytes:
        body = bytearray()
        for spec in self.specs:
            flags = (0x02 if rctd else 0) | (0x01 if spec.sa is not None else 0)
            body += struct.pack(">BBHBBH", spec.opcode, 0, spec.sa or 0, 0, flags, spec.cdb_len)
            if rctd:
                body += _timeout_descriptor(timeout)
        return struct.pack(">I", len(body)) + bytes(body)

    def report_one(self, spec: OpSpec | None, rctd: bool, timeout: int) -> bytes:
        if spec is None:
            return bytes((0, 0x01, 0, 0))  # SUPPORT 001b: not supported
        data = bytes((0, (0x80 if rctd else 0) | 0x03)) + struct.pack(">H", spec.cdb_len) + spec.usage
        if rctd:
            data += _timeout_descriptor(timeout)
        return data


def _timeout_descriptor(recommended: int) -> bytes:
    # length 0x0A, nominal processing timeout unknown (0), recommended = osd_op_timeout
    return struct.pack(">HBBII", 0x0A, 0, 0, 0, recommended)
