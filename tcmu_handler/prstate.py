"""Reservation state and the rules that change it (SPC-4 5.13, 6.15, 6.16; SPC-2 7.21).

Pure data and functions: no I/O, so every rule is unit-tested directly and
the same code runs whether the state lives in memory or in RADOS.  An I_T
nexus is named by its (initiator port, target port) pair, which is unique
cluster-wide (the target port carries the gateway's TPG tag); a registration
made with ALL_TG_PT covers every target port (target ``"*"``).

Changes that other I_T nexuses must learn about (preemptions, releases,
clears) are recorded as :class:`Event` entries; every gateway turns the events
it has not seen into unit attentions (and aborts, for PREEMPT AND ABORT) for
the nexuses it serves.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from . import sense as S

WE, EA, WERO, EARO, WEAR, EAAR = 0x1, 0x3, 0x5, 0x6, 0x7, 0x8
VALID_TYPES = frozenset({WE, EA, WERO, EARO, WEAR, EAAR})
WRITE_EXCLUSIVE_TYPES = frozenset({WE, WERO, WEAR})
REGISTRANTS_ONLY = frozenset({WERO, EARO})
ALL_REGISTRANTS = frozenset({WEAR, EAAR})
ALL_PORTS = "*"
MAX_REGISTRATIONS = 512
MAX_EVENTS = 32
SCHEMA = 1

Port = tuple[str, str]  # (initiator port name, target port name)


class ReservationConflict(Exception):  # noqa: N818 - named after the SCSI status
    """The command ends with RESERVATION CONFLICT status."""


@dataclass
class Registration:
    initiator: str
    target: str
    key: int
    rel_port: int = 0

    def matches(self, port: Port) -> bool:
        return self.initiator == port[0] and self.target in (port[1], ALL_PORTS)

    @property
    def ident(self) -> Port:
        return (self.initiator, self.target)


@dataclass
class Event:
    seq: int
    ua: tuple[int, int, int] | None
    ports: list[Port]          # (ALL_PORTS, ALL_PORTS): every nexus of the logical unit
    abort: bool = False
    origin: str = ""           # the gateway that already applied it locally (skips it)


@dataclass
class ReservationState:
    generation: int = 0
    registrations: list[Registration] = field(default_factory=list)
    res_type: int = 0
    holder: Port | None = None  # registration ident of the holder (None for *AR types)
    aptpl: bool = False
    spc2: Port | None = None
    seq: int = 0
    events: list[Event] = field(default_factory=list)

    # -- queries -------------------------------------------------------------------------
    def registration(self, port: Port) -> Registration | None:
        for reg in self.registrations:
            if reg.matches(port):
                return reg
        return None

    @property
    def reserved(self) -> bool:
        return self.res_type != 0

    def is_holder(self, port: Port) -> bool:
        if not self.res_type:
            return False
        reg = self.registration(port)
        if reg is None:
            return False
        return self.res_type in ALL_REGISTRANTS or reg.ident == self.holder

    def holder_key(self) -> int:
        """RESERVATION KEY reported by READ RESERVATION (zero for all-registrants types)."""
        if not self.res_type or self.res_type in ALL_REGISTRANTS:
            return 0
        for reg in self.registrations:
            if reg.ident == self.holder:
                return reg.key
        return 0

    @property
    def restricts(self) -> bool:
        return bool(self.res_type or self.spc2)

    # -- persistence -----------------------------------------------------------------------
    def to_json(self) -> bytes:
        d = asdict(self)
        d["schema"] = SCHEMA
        return json.dumps(d, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> ReservationState:
        if not raw:
            return cls()
        d = json.loads(raw)
        if d.get("schema", SCHEMA) != SCHEMA:
            raise ValueError(f"unknown reservation state schema {d.get('schema')}")
        return cls(
            generation=d["generation"],
            registrations=[Registration(**r) for r in d["registrations"]],
            res_type=d["res_type"],
            holder=tuple(d["holder"]) if d["holder"] else None,
            aptpl=d["aptpl"],
            spc2=tuple(d["spc2"]) if d["spc2"] else None,
            seq=d["seq"],
            events=[Event(e["seq"], tuple(e["ua"]) if e["ua"] else None,
                          [tuple(p) for p in e["ports"]], e["abort"], e.get("origin", ""))
                    for e in d["events"]],
        )

    def copy(self) -> ReservationState:
        return ReservationState.from_json(self.to_json())

    # -- change bookkeeping ------------------------------------------------------------------
    def _bump_generation(self) -> None:
        self.generation = (self.generation + 1) & 0xFFFFFFFF

    def _event(self, code: S.Asc | None, ports: list[Port], abort: bool = False, origin: str = "") -> None:
        if not ports:
            return
        self.events.append(Event(self.seq + 1, (code.key, code.asc, code.ascq) if code else None,
                                 ports, abort, origin))
        del self.events[:-MAX_EVENTS]

    def _release(self, by: Port | None, notify: bool) -> None:
        """Drop the reservation; RO/AR types tell the other registrants."""
        if notify and self.res_type in REGISTRANTS_ONLY | ALL_REGISTRANTS:
            self._event(S.RESERVATIONS_RELEASED,
                        [r.ident for r in self.registrations if by is None or not r.matches(by)])
        self.res_type = 0
        self.holder = None

    def _unregister(self, reg: Registration) -> None:
        self.registrations.remove(reg)
        if not self.res_type:
            return
        if self.res_type in ALL_REGISTRANTS:
            if not self.registrations:
                self._release(None, False)
        elif self.holder == reg.ident:
            self._release(reg.ident, True)


# -- PERSISTENT RESERVE OUT service actions ---------------------------------------------------
def register(state: ReservationState, port: Port, rel_port: int, key: int, sark: int,
             ignore_key: bool, all_tg_pt: bool, aptpl: bool) -> None:
    """REGISTER (ignore_key False) and REGISTER AND IGNORE EXISTING KEY."""
    reg = state.registration(port)
    if reg is None:
        if not ignore_key and key != 0:
            raise ReservationConflict
        if sark == 0:
            return
        if len(state.registrations) >= MAX_REGISTRATIONS:
            raise S.CheckCondition(S.INSUFFICIENT_REGISTRATION_RESOURCES)
        state.registrations.append(
            Registration(port[0], ALL_PORTS if all_tg_pt else port[1], sark, rel_port))
    else:
        if not ignore_key and key != reg.key:
            raise ReservationConflict
        if sark == 0:
            state._unregister(reg)
        else:
            reg.key = sark
    state.aptpl = aptpl
    state._bump_generation()


def reserve(state: ReservationState, port: Port, key: int, res_type: int) -> None:
    reg = state.registration(port)
    if reg is None or reg.key != key:
        raise ReservationConflict
    if state.res_type:
        if state.is_holder(port) and state.res_type == res_type:
            return
        raise ReservationConflict
    state.res_type = res_type
    state.holder = None if res_type in ALL_REGISTRANTS else reg.ident


def release(state: ReservationState, port: Port, key: int, res_type: int) -> None:
    reg = state.registration(port)
    if reg is None or reg.key != key:
        raise ReservationConflict
    if not state.res_type or not state.is_holder(port):
        return
    if state.res_type != res_type:
        raise S.CheckCondition(S.Asc(S.ILLEGAL_REQUEST, 0x26, 0x04,
                                     "INVALID RELEASE OF PERSISTENT RESERVATION"))
    state._release(port, True)


def clear(state: ReservationState, port: Port, key: int) -> None:
    reg = state.registration(port)
    if reg is None or reg.key != key:
        raise ReservationConflict
    others = [r.ident for r in state.registrations if not r.matches(port)]
    state.registrations.clear()
    state.res_type, state.holder = 0, None
    state._event(S.RESERVATIONS_PREEMPTED, others)
    state._bump_generation()


def preempt(state: ReservationState, port: Port, key: int, sark: int, res_type: int,
            abort: bool) -> None:
    """PREEMPT and PREEMPT AND ABORT."""
    reg = state.registration(port)
    if reg is None or reg.key != key:
        raise ReservationConflict
    if not state.res_type:
        if sark == 0:
            raise S.invalid_param(8)
        _remove_keys(state, port, lambda r: r.key == sark, abort, required=True)
    elif state.res_type in ALL_REGISTRANTS:
        if sark == 0:
            _remove_keys(state, port, lambda r: not r.matches(port), abort, required=False)
            state.res_type = res_type
            state.holder = None if res_type in ALL_REGISTRANTS else reg.ident
        else:
            _remove_keys(state, port, lambda r: r.key == sark, abort, required=True)
    elif sark == state.holder_key():
        old_type = state.res_type
        _remove_keys(state, port, lambda r: r.key == sark and not r.matches(port), abort, required=False)
        state.res_type = res_type
        state.holder = None if res_type in ALL_REGISTRANTS else reg.ident
        if old_type != res_type:
            state._event(S.RESERVATIONS_RELEASED,
                         [r.ident for r in state.registrations if not r.matches(port)])
    else:
        if sark == 0:
            raise S.invalid_param(8)
        _remove_keys(state, port, lambda r: r.key == sark, abort, required=True)
    state._bump_generation()


def _remove_keys(state: ReservationState, port: Port, victim, abort: bool, required: bool) -> None:
    removed = [r for r in state.registrations if victim(r)]
    if required and not removed:
        raise ReservationConflict
    for r in removed:
        state.registrations.remove(r)
    if state.res_type and state.holder is not None and state.registration(state.holder) is None:
        state.res_type, state.holder = 0, None
    state._event(S.REGISTRATIONS_PREEMPTED, [r.ident for r in removed if not r.matches(port)], abort)


# -- task management ------------------------------------------------------------------------
EVERY_NEXUS: Port = (ALL_PORTS, ALL_PORTS)


def lun_reset(state: ReservationState, origin: str) -> None:
    """LOGICAL UNIT RESET (SAM-5 6.3.3) of a logical unit served by several gateways: the
    SPC-2 reservation goes, and every gateway but ``origin`` (which did it already) aborts
    its tasks and raises BUS DEVICE RESET FUNCTION OCCURRED for every nexus it serves.
    Persistent reservations survive."""
    state.spc2 = None
    state._event(S.BUS_DEVICE_RESET, [EVERY_NEXUS], abort=True, origin=origin)


# -- SPC-2 RESERVE / RELEASE ----------------------------------------------------------------
def spc2_reserve(state: ReservationState, port: Port) -> None:
    if state.registrations or state.res_type:
        raise ReservationConflict
    if state.spc2 is not None and state.spc2 != port:
        raise ReservationConflict
    state.spc2 = port


def spc2_release(state: ReservationState, port: Port) -> bool:
    """True when a reservation held by ``port`` was released."""
    if state.spc2 == port:
        state.spc2 = None
        return True
    return False
