"""Asymmetric logical unit access: the model the gateway daemon supplies.

One target port group per gateway (group id = the gateway's TPG tag), each
with the relative target port ids of its portals.  The disk owner's group is
Active/Optimized, the others Active/Non-optimized (implicit ALUA, as
ceph-iscsi).  Every path reports the same REPORT TARGET PORT GROUPS data;
only VPD 0x83 differs per path (it names the port the command came through).
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum


class AccessState(IntEnum):
    ACTIVE_OPTIMIZED = 0x0
    ACTIVE_NON_OPTIMIZED = 0x1
    STANDBY = 0x2
    UNAVAILABLE = 0x3
    LBA_DEPENDENT = 0x4
    OFFLINE = 0xE
    TRANSITIONING = 0xF


# Supported-states bits of an RTPG descriptor (byte 1).
SUPPORT_T, SUPPORT_O, SUPPORT_LBD, SUPPORT_U, SUPPORT_S, SUPPORT_AN, SUPPORT_AO = (
    0x80, 0x40, 0x10, 0x08, 0x04, 0x02, 0x01)
# Status codes (byte 2 of a descriptor).
STATUS_NONE, STATUS_EXPLICIT, STATUS_IMPLICIT = 0x00, 0x01, 0x02


@dataclass(frozen=True, slots=True)
class TargetPortGroup:
    """One gateway's port group as every path reports it."""

    group_id: int
    state: AccessState
    relative_ports: tuple[int, ...]
    preferred: bool = False
    status: int = STATUS_NONE


# Called on SET TARGET PORT GROUPS with {group_id: requested state}; the gateway
# applies the change (e.g. moves the disk owner) and returns the new model.
StpgHandler = Callable[[dict[int, AccessState]], Awaitable["AluaModel"]]


@dataclass(frozen=True)
class AluaModel:
    """The ALUA view of one disk: its port groups and which modes it supports."""

    groups: tuple[TargetPortGroup, ...] = ()
    implicit: bool = True
    explicit: bool = False
    #: IMPLICIT TRANSITION TIME in RTPG's extended header (ceph-iscsi: osd_op_timeout + 15)
    transition_time: int = 45
    supported: int = SUPPORT_T | SUPPORT_AN | SUPPORT_AO
    stpg: StpgHandler | None = field(default=None, compare=False)

    @property
    def tpgs(self) -> int:
        """The TPGS field of standard INQUIRY (bits 5-4 of byte 5)."""
        if not self.groups:
            return 0
        return (1 if self.implicit else 0) | (2 if self.explicit else 0)

    def group_of_port(self, relative_port: int) -> TargetPortGroup | None:
        for g in self.groups:
            if relative_port in g.relative_ports:
                return g
        return None

    def state_of_port(self, relative_port: int) -> AccessState:
        """The access state a command through this port sees (AO when unmodelled)."""
        g = self.group_of_port(relative_port)
        return AccessState.ACTIVE_OPTIMIZED if g is None else g.state

    def rtpg(self, extended: bool) -> bytes:
        """REPORT TARGET PORT GROUPS parameter data (SPC-4 6.36)."""
        body = bytearray()
        for g in self.groups:
            first = (0x80 if g.preferred else 0) | int(g.state)
            body += struct.pack(">BBHBBBB", first, self.supported, g.group_id, 0, g.status, 0,
                                len(g.relative_ports))
            for port in g.relative_ports:
                body += struct.pack(">HH", 0, port)
        if extended:
            header = struct.pack(">IBBH", len(body) + 4, 0x10, self.transition_time & 0xFF, 0)
        else:
            header = struct.pack(">I", len(body))
        return header + bytes(body)


def implicit_model(owner_group: int, groups: dict[int, tuple[int, ...]],
                   transition_time: int = 45) -> AluaModel:
    """ceph-iscsi's layout: the owner's group AO, every other group ANO."""
    tpgs = tuple(
        TargetPortGroup(gid, AccessState.ACTIVE_OPTIMIZED if gid == owner_group
                        else AccessState.ACTIVE_NON_OPTIMIZED, tuple(ports))
        for gid, ports in sorted(groups.items()))
    return AluaModel(tpgs, implicit=True, explicit=False, transition_time=transition_time)
