"""Reservations as a disk enforces them: SPC-3 PERSISTENT RESERVE IN/OUT and
SPC-2 RESERVE/RELEASE(6/10), backed by a :class:`ReservationStore`.

Each gateway keeps the latest state it has seen (pushed by the store on every
change, so a reservation taken through one gateway is enforced by all of them
by the time the PERSISTENT RESERVE OUT completes) and checks commands against
it without I/O.  PERSISTENT RESERVE IN always reads the store.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import uuid
from typing import TYPE_CHECKING

from . import prstate as P
from . import sense as S
from .api import GOOD, Nexus, ScsiCommand, ScsiResult, Status
from .opcodes import PR_ALLOWED, PR_INFO, PR_OUT, PR_READ, OpSpec
from .prstore import ReservationStore

if TYPE_CHECKING:
    from .disk import ScsiDisk

log = logging.getLogger(__name__)


# REPORT CAPABILITIES type mask: WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX | EX_AC_AR
_TYPE_MASK = bytes((0x80 | 0x40 | 0x20 | 0x08 | 0x02, 0x01))
REGISTER, RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT_AND_ABORT, REGISTER_AND_IGNORE = range(7)


def port_of(nexus: Nexus) -> P.Port:
    return (nexus.initiator_port, nexus.target_port)


class Reservations:
    """The reservation view of one disk on this gateway."""

    def __init__(self, disk: ScsiDisk, store: ReservationStore) -> None:
        self.disk = disk
        self.store = store
        self.state = P.ReservationState()
        self.restricts = False
        self.loaded = False
        self._seen_seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        #: names this gateway's view in the events it publishes (it applies them itself)
        self.origin = uuid.uuid4().hex[:16]
        #: state changes started by a nexus loss or reset that have not reached the store yet
        self.settling: set[asyncio.Task] = set()
        self._unsubscribe = store.subscribe(self._changed)

    async def load(self) -> None:
        self._loop = asyncio.get_running_loop()
        state = await self.store.load()
        self.state = state
        self.restricts = state.restricts
        self._seen_seq = state.seq  # events from before this gateway started are history
        self.loaded = True

    def _changed(self, state: P.ReservationState) -> None:
        """Store callback (any thread): take the new state now, apply its events on the loop."""
        if state.seq <= self.state.seq:
            return
        self.state = state
        self.restricts = state.restricts
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._apply_events(state)
        else:
            loop.call_soon_threadsafe(self._apply_events, state)

    def _apply_events(self, state: P.ReservationState) -> None:
        if not self.loaded:
            return
        for ev in state.events:
            if ev.seq <= self._seen_seq or ev.origin == self.origin:
                continue
            wanted = set(ev.ports)
            if P.EVERY_NEXUS in wanted:
                targets = self.disk.ua.known()
            else:
                targets = [nx for nx in self.disk.ua.known()
                           if port_of(nx) in wanted or (nx.initiator_port, P.ALL_PORTS) in wanted]
            if ev.ua is not None:
                code = _ua_code(ev.ua)
                self.disk.ua.establish_many(targets, code)
            if ev.abort:
                self.disk._abort_nexuses(wanted)
        self._seen_seq = max(self._seen_seq, state.seq)

    def conflicts(self, nexus: Nexus, spec: OpSpec, cdb: bytes) -> bool:
        """Would this command from ``nexus`` get RESERVATION CONFLICT?"""
        st = self.state
        port = port_of(nexus)
        if st.spc2 is not None:
            return st.spc2 != port and not spec.spc2_allowed
        if not st.res_type or spec.pr in (PR_ALLOWED, PR_OUT) or st.is_holder(port):
            return False
        registered = st.registration(port) is not None
        rtype = st.res_type
        if spec.pr == PR_READ:
            if rtype in P.WRITE_EXCLUSIVE_TYPES:
                return False
            return rtype == P.EA or not registered
        if spec.pr == PR_INFO:
            return not (rtype in P.WRITE_EXCLUSIVE_TYPES or registered)
        return rtype in (P.WE, P.EA) or not registered

    async def _update(self, mutate):
        state, result = await self.store.update(mutate)
        self._changed(state)
        return result

    def reset(self) -> None:
        """LOGICAL UNIT RESET: release an SPC-2 reservation (persistent ones survive) and
        tell the other gateways, which abort their tasks and raise the unit attention."""
        origin = self.origin
        self._spawn(self._update(lambda st: P.lun_reset(st, origin)))

    def nexus_lost(self, nexus: Nexus) -> None:
        if self.state.spc2 == port_of(nexus):
            port = port_of(nexus)
            self._spawn(self._update(lambda st: P.spc2_release(st, port)))

    async def settle(self) -> None:
        """Wait until the releases started by nexus losses and resets are in the store, so
        a command that follows them (a RESERVE from another initiator after a logout) sees
        their effect.  Bounded by the store's own timeout; failures were logged."""
        while self.settling:
            await asyncio.wait(set(self.settling))

    async def release_spc2_of_ports(self, target_ports: set[str]) -> bool:
        """Drop an SPC-2 reservation held through one of ``target_ports`` -- for the daemon,
        when a gateway is declared dead and cannot release it at nexus loss itself."""
        def drop(state: P.ReservationState) -> bool:
            if state.spc2 is not None and state.spc2[1] in target_ports:
                state.spc2 = None
                return True
            return False
        return await self._update(drop)

    def _spawn(self, coro) -> None:
        loop = self._loop
        if loop is None:
            coro.close()
            return
        task = loop.create_task(coro)
        self.settling.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task) -> None:
        self.settling.discard(task)
        _log_failure(task)

    async def close(self) -> None:
        self._unsubscribe()


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("updating the reservation state after a reset or nexus loss failed: %s",
                  task.exception())


def _ua_code(triple: tuple[int, int, int]) -> S.Asc:
    for code in (S.RESERVATIONS_PREEMPTED, S.RESERVATIONS_RELEASED, S.REGISTRATIONS_PREEMPTED):
        if (code.key, code.asc, code.ascq) == tuple(triple):
            return code
    return S.Asc(triple[0], triple[1], triple[2], "RESERVATION EVENT")


# -- PERSISTENT RESERVE IN ----------------------------------------------------------------------
def _transport_id(initiator_port: str) -> bytes:
    if ",i,0x" in initiator_port:
        name, fmt = initiator_port.encode("utf-8"), 0x40  # format 01b: name + ISID
    else:
        name, fmt = initiator_port.encode("utf-8"), 0x00
    name += b"\x00"
    name += b"\x00" * (-len(name) % 4)
    if len(name) < 20:
        name += bytes(20 - len(name))
    return bytes((fmt | 0x05, 0)) + struct.pack(">H", len(name)) + name


def read_keys(state: P.ReservationState) -> bytes:
    keys = b"".join(struct.pack(">Q", r.key) for r in state.registrations)
    return struct.pack(">II", state.generation, len(keys)) + keys


def read_reservation(state: P.ReservationState) -> bytes:
    if not state.res_type:
        return struct.pack(">II", state.generation, 0)
    return struct.pack(">IIQIBBH", state.generation, 16, state.holder_key(), 0, 0, state.res_type, 0)


def report_capabilities(state: P.ReservationState) -> bytes:
    # CRH, ATP_C, PTPL_C | TMV, PTPL_A
    return bytes((0, 8, 0x10 | 0x04 | 0x01, 0x80 | (0x01 if state.aptpl else 0))) + _TYPE_MASK + b"\0\0"


def read_full_status(state: P.ReservationState) -> bytes:
    body = bytearray()
    for r in state.registrations:
        holder = state.res_type and (state.res_type in P.ALL_REGISTRANTS or r.ident == state.holder)
        tid = _transport_id(r.initiator)
        body += struct.pack(">Q4xBB4xHI", r.key, (0x02 if r.target == P.ALL_PORTS else 0) |
                            (0x01 if holder else 0), state.res_type if holder else 0,
                            r.rel_port & 0xFFFF, len(tid))
        body += tid
    return struct.pack(">II", state.generation, len(body)) + bytes(body)


_PRIN = {0: read_keys, 1: read_reservation, 2: report_capabilities, 3: read_full_status}


async def persistent_reserve_in(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    build = _PRIN.get(cdb[1] & 0x1F)
    if build is None:
        raise S.invalid_cdb(1, 4)
    state = await disk.reservations.store.load()
    disk.reservations._changed(state)
    return ScsiResult(data=build(state)[:(cdb[7] << 8) | cdb[8]])


# -- PERSISTENT RESERVE OUT ---------------------------------------------------------------------
async def persistent_reserve_out(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    sa = cdb[1] & 0x1F
    scope, rtype = cdb[2] >> 4, cdb[2] & 0x0F
    plen = int.from_bytes(cdb[5:9], "big")
    if sa > REGISTER_AND_IGNORE:
        raise S.invalid_cdb(1, 4)  # REGISTER AND MOVE, REPLACE LOST RESERVATION: not offered
    if plen != 24:
        raise S.CheckCondition(S.PARAMETER_LIST_LENGTH_ERROR)
    data = bytes(cmd.data_out or b"")
    if len(data) < 24:
        raise S.CheckCondition(S.PARAMETER_LIST_LENGTH_ERROR)
    key, sark = struct.unpack_from(">QQ", data, 0)
    flags = data[20]
    if flags & 0x08:
        raise S.invalid_param(20, 3)  # SPEC_I_PT: not offered (SIP_C=0)
    if sa in (RESERVE, RELEASE, PREEMPT, PREEMPT_AND_ABORT):
        if scope != 0:
            raise S.invalid_cdb(2, 7)
        if rtype not in P.VALID_TYPES:
            raise S.invalid_cdb(2, 3)
    if flags & 0x04 and sa not in (REGISTER, REGISTER_AND_IGNORE):
        raise S.invalid_param(20, 2)  # ALL_TG_PT only means something when registering
    port = port_of(cmd.nexus)
    rel = cmd.nexus.relative_port
    if sa == REGISTER:
        def op(st): P.register(st, port, rel, key, sark, False, bool(flags & 0x04), bool(flags & 0x01))
    elif sa == REGISTER_AND_IGNORE:
        def op(st): P.register(st, port, rel, key, sark, True, bool(flags & 0x04), bool(flags & 0x01))
    elif sa == RESERVE:
        def op(st): P.reserve(st, port, key, rtype)
    elif sa == RELEASE:
        def op(st): P.release(st, port, key, rtype)
    elif sa == CLEAR:
        def op(st): P.clear(st, port, key)
    else:
        abort = sa == PREEMPT_AND_ABORT

        def op(st): P.preempt(st, port, key, sark, rtype, abort)
    try:
        await disk.reservations._update(op)
    except P.ReservationConflict:
        disk.stats.reservation_conflicts += 1
        return ScsiResult(status=Status.RESERVATION_CONFLICT)
    return ScsiResult(transfer_length=24)


# -- SPC-2 RESERVE / RELEASE ----------------------------------------------------------------------
async def reserve(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    port = port_of(cmd.nexus)
    try:
        await disk.reservations._update(lambda st: P.spc2_reserve(st, port))
    except P.ReservationConflict:
        disk.stats.reservation_conflicts += 1
        return ScsiResult(status=Status.RESERVATION_CONFLICT)
    return GOOD


async def release(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    port = port_of(cmd.nexus)
    # Releasing another nexus's reservation, nothing, or a persistent reservation
    # (compatible reservation handling) is a GOOD no-op.
    if disk.reservations.state.spc2 == port:
        await disk.reservations._update(lambda st: P.spc2_release(st, port))
    return GOOD
