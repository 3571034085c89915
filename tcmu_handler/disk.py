"""A SCSI direct-access logical unit over a storage backend.

:class:`ScsiDisk` implements the transport contract's ``LogicalUnit``: it
dispatches CDBs through the opcode table and applies, in order, the rules
every command is subject to -- unit attentions, reservations, ALUA access
state, read-only, the exclusive-lock write gate, the data-area limit -- before
the command's handler runs.  Handlers live in ``spc``, ``sbc``, ``pr`` and
``xcopy`` and raise :class:`~tcmu_handler.sense.CheckCondition` for errors.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from . import sense as S
from .alua import AccessState, AluaModel
from .api import Nexus, ScsiCommand, ScsiResult, Status
from .backends.base import Backend, BackendError, BackendTimeout
from .commands import build_table
from .config import DiskConfig
from .lock import ExclusiveLockPolicy
from .metrics import LunStats
from .opcodes import READ, WRITE, OpSpec
from .pr import Reservations
from .prstore import MemoryReservationStore, ReservationStore, StoreError
from .ua import UnitAttentions

if TYPE_CHECKING:
    from .xcopy import CopyResults, LunRegistry

log = logging.getLogger(__name__)

def _status(status: Status) -> ScsiResult:
    return ScsiResult(status=status)  # a fresh object: transports may annotate results
_RESTRICTED_STATES = {
    AccessState.STANDBY: S.NOT_READY_STANDBY,
    AccessState.UNAVAILABLE: S.NOT_READY_UNAVAILABLE,
    AccessState.TRANSITIONING: S.NOT_READY_TRANSITIONING,
    AccessState.OFFLINE: S.NOT_READY_UNAVAILABLE,
}


def check_condition(err: S.CheckCondition) -> ScsiResult:
    return ScsiResult(status=Status.CHECK_CONDITION, sense=err.sense())


class ScsiDisk:
    """One logical unit (an RBD image on this gateway), shared by all nexuses that map it."""

    def __init__(self, config: DiskConfig, backend: Backend, *, alua: AluaModel | None = None,
                 reservations: ReservationStore | None = None, registry: LunRegistry | None = None,
                 stats: LunStats | None = None, name: str = "") -> None:
        self.config = config
        self.backend = backend
        self.name = name or config.wwn
        self.stats = stats or LunStats()
        self.block_size = config.block_size
        self._shift = config.block_size.bit_length() - 1
        self.num_blocks = backend.size >> self._shift
        self.alua = alua or AluaModel()
        self._alua_restricted = False
        self.ua = UnitAttentions()
        self.reservations = Reservations(self, reservations or MemoryReservationStore())
        lock_on = config.lock_failover
        if lock_on is None:
            lock_on = backend.supports_lock
        self.lock = (ExclusiveLockPolicy(backend, self.stats, config.osd_op_timeout, self.name,
                                         handoff_timeout=config.lock_handoff_timeout)
                     if lock_on else None)
        # Sessions open when this gateway found itself fenced: their writes may be stale.
        self._stale: set[Nexus] = set()
        if self.lock is not None:
            self.lock.on_fenced = self._fenced
        self.registry = registry
        self.table = build_table(self)
        self._tasks: dict[tuple[Nexus, int], bool] = {}
        self._area_limit = config.data_area_bytes
        self._transfer_limit = config.transfer_limit_blocks
        self._inflight = 0
        self._area_waiters: deque[asyncio.Future] = deque()
        self.copy_results: dict[Nexus, CopyResults] = {}
        if registry is not None:
            registry.add(self)
        backend.add_resize_listener(self._resized)
        self._alua_restricted = any(g.state in _RESTRICTED_STATES for g in self.alua.groups)

    # -- identity and state the handlers use -----------------------------------------
    @property
    def naa(self) -> bytes:
        return self.config.naa

    def set_alua(self, model: AluaModel) -> None:
        """Install a new ALUA model; initiators learn of state changes by unit attention."""
        old = self.alua
        self.alua = model
        self._alua_restricted = any(g.state in _RESTRICTED_STATES for g in model.groups)
        if (old.explicit, old.stpg) != (model.explicit, model.stpg):
            self.table = build_table(self)
        if [(g.group_id, g.state) for g in old.groups] != [(g.group_id, g.state) for g in model.groups]:
            self.ua.establish_all(S.ASYMMETRIC_ACCESS_STATE_CHANGED)
        if old.tpgs != model.tpgs:
            self.ua.establish_all(S.INQUIRY_DATA_HAS_CHANGED)

    async def start(self) -> None:
        """Load the reservation state; called once before the first command."""
        if not self.reservations.loaded:
            await self.reservations.load()

    def _resized(self, new_size: int) -> None:
        blocks = new_size >> self._shift
        if blocks != self.num_blocks:
            log.info("%s: capacity changed from %d to %d blocks", self.name, self.num_blocks, blocks)
            self.num_blocks = blocks
            self.ua.establish_all(S.CAPACITY_DATA_HAS_CHANGED)

    def check_range(self, lba: int, blocks: int) -> None:
        if lba + blocks > self.num_blocks:
            raise S.CheckCondition(S.LBA_OUT_OF_RANGE)

    def check_transfer(self, blocks: int, field: int) -> None:
        """A transfer larger than the data area can never run (see DiskConfig)."""
        if blocks > self._transfer_limit:
            raise S.invalid_cdb(field)

    # -- the LogicalUnit protocol ----------------------------------------------------
    async def execute(self, cmd: ScsiCommand) -> ScsiResult:
        cdb = cmd.cdb
        if not cdb:
            return check_condition(S.CheckCondition(S.INVALID_COMMAND_OPERATION_CODE, field=0))
        spec = self.table.plain[cdb[0]]
        if spec is None:
            spec = self._lookup_sa(cdb)
            if spec.__class__ is ScsiResult:
                return spec
        if not self.reservations.loaded:
            try:
                await self.start()
            except StoreError as e:
                log.warning("%s: reservation state unavailable: %s", self.name, e)
                self.stats.busy += 1
                return _status(Status.BUSY)
        nexus = cmd.nexus
        if not spec.ua_exempt and self.ua.pending(nexus):
            code = self.ua.pop(nexus)
            return ScsiResult(status=Status.CHECK_CONDITION, sense=S.build_sense(code))
        key = (nexus, cmd.task_tag)
        if key in self._tasks:
            return check_condition(S.CheckCondition(S.Asc(S.ABORTED_COMMAND, 0x4E, 0x00,
                                                          "OVERLAPPED COMMANDS ATTEMPTED")))
        stats = self.stats
        t0 = time.monotonic_ns()
        self._tasks[key] = False
        try:
            result = await self._run(spec, cmd, nexus)
        finally:
            aborted = self._tasks.pop(key)
        stats.observe(time.monotonic_ns() - t0)
        kind = spec.kind
        if kind == READ:
            stats.read_ops += 1
        elif kind == WRITE:
            stats.write_ops += 1
        else:
            stats.other_ops += 1
        if aborted:
            stats.aborted += 1
            return _status(Status.TASK_ABORTED)
        return result

    async def _run(self, spec: OpSpec, cmd: ScsiCommand, nexus: Nexus) -> ScsiResult:
        try:
            spec.check_reserved(cmd.cdb)
            res = self.reservations
            if res.settling:
                await res.settle()
            if res.restricts and res.conflicts(nexus, spec, cmd.cdb):
                self.stats.reservation_conflicts += 1
                return _status(Status.RESERVATION_CONFLICT)
            if self._alua_restricted and spec.medium:
                code = _RESTRICTED_STATES.get(self.alua.state_of_port(nexus.relative_port))
                if code is not None:
                    raise S.CheckCondition(code)
            lock = None
            if spec.kind == WRITE:
                if self.config.read_only:
                    raise S.CheckCondition(S.WRITE_PROTECTED)
                lock = self.lock
                # A write runs admitted by the lock (a handoff waits for admitted writes).
                if lock is not None and (self._stale or not lock.enter()):
                    refused = await self._admit_write(lock, cmd, nexus)
                    if refused is not None:
                        return refused
            try:
                return await spec.handler(self, cmd)
            except BackendError as e:
                if not e.fenced:
                    raise
                if spec.kind == WRITE:
                    return self._fenced_write(e)
                if not await self._recover_for_read(cmd):
                    raise
                return await spec.handler(self, cmd)  # a read, once more, on the new client
            finally:
                if lock is not None:
                    lock.leave()
        except S.CheckCondition as e:
            self.stats.check_conditions += 1
            return check_condition(e)
        except BackendError as e:
            return self._backend_failure(spec, e)
        except AreaFull:
            self.stats.task_set_full += 1
            return _status(Status.TASK_SET_FULL)
        except StoreError as e:  # RADOS unreachable for reservation state: let the initiator retry
            log.warning("%s: %s: %s", self.name, spec.name, e)
            self.stats.busy += 1
            return _status(Status.BUSY)
        except Exception:  # a bug must cost one command, not the daemon
            log.exception("%s: %s failed unexpectedly (CDB %s)", self.name, spec.name, cmd.cdb.hex())
            self.stats.check_conditions += 1
            return check_condition(S.CheckCondition(S.INTERNAL_TARGET_FAILURE))

    async def _admit_write(self, lock: ExclusiveLockPolicy, cmd: ScsiCommand,
                           nexus: Nexus) -> ScsiResult | None:
        """The slow path of the write gate: the lock is not here (wait for it, up to
        ``write_wait``), or this gateway was fenced.  None: admitted; else the answer."""
        if nexus in self._stale:
            return self.refuse_stale(nexus)
        if lock.enter():
            return None
        admitted = await lock.wait_enter()
        if nexus in self._stale:  # this gateway found itself fenced meanwhile
            if admitted:
                lock.leave()
            return self.refuse_stale(nexus)
        if not admitted:
            self.stats.busy += 1
            return _status(Status.BUSY)
        if self._tasks.get((nexus, cmd.task_tag)):  # aborted while waiting
            lock.leave()
            return _status(Status.TASK_ABORTED)
        return None

    def _fenced_write(self, err: BackendError) -> ScsiResult:
        """The cluster refused a write: this gateway was fenced, or lost the lock under it.
        It is answered BUSY and never retried here -- it may be older than writes made
        through the new holder (its initiator may have given up on it and written through
        another path); retrying it is the initiator's decision."""
        self.stats.busy += 1
        self.stats.fenced_writes += 1
        log.warning("%s: a write was refused because this gateway no longer holds the exclusive "
                    "lock (%s): BUSY", self.name, err)
        return _status(Status.BUSY)

    def _fenced(self) -> None:
        """This gateway found itself fenced.  Sessions open now may still have stale writes
        queued (in its sockets, or in TCP retransmission after a partition): the next write
        of each is refused by dropping its connection, with everything queued behind it, and
        the initiator logs in again.  Without this, such a write would take the lock back."""
        self._stale.update(self.ua.known())

    def stale(self, nexus: Nexus) -> bool:
        """The session of ``nexus`` was open when this gateway found itself fenced."""
        return nexus in self._stale

    def refuse_stale(self, nexus: Nexus) -> ScsiResult:
        self.stats.stale_session_drops += 1
        log.warning("%s: a write from %s, whose session was open when this gateway was fenced, "
                    "may be stale: dropping the connection", self.name, nexus.initiator_port)
        return ScsiResult(status=Status.BUSY, drop_connection=True)

    async def _recover_for_read(self, cmd: ScsiCommand) -> bool:
        """A read failed because this gateway's client was fenced (a blocklisted client cannot
        even read).  Reconnect and say whether the read may run again (reads are idempotent)."""
        reopen = getattr(self.backend, "reopen", None)
        if reopen is None or self._tasks.get((cmd.nexus, cmd.task_tag)):
            return False
        try:
            await asyncio.wait_for(reopen(), ExclusiveLockPolicy.write_wait)
        except (BackendError, TimeoutError):
            return False
        return not self._tasks.get((cmd.nexus, cmd.task_tag))

    def _lookup_sa(self, cdb: bytes) -> OpSpec | ScsiResult:
        opcode = cdb[0]
        sas = self.table.by_sa.get(opcode)
        if sas is None:
            return check_condition(S.CheckCondition(S.INVALID_COMMAND_OPERATION_CODE, field=0))
        if len(cdb) < 2:
            return check_condition(S.invalid_cdb(1))
        spec = sas.get(cdb[1] & 0x1F)
        if spec is None:
            return check_condition(S.invalid_cdb(1, 4))
        return spec

    def _backend_failure(self, spec: OpSpec, e: BackendError) -> ScsiResult:
        if isinstance(e, BackendTimeout) or e.errno == errno.ETIMEDOUT:
            self.stats.timeouts += 1
            self.stats.busy += 1
            log.warning("%s: %s", self.name, e)
            return _status(Status.BUSY)
        if e.fenced:
            self.stats.busy += 1
            return _status(Status.BUSY)
        self.stats.check_conditions += 1
        log.error("%s: %s failed: %s", self.name, spec.name, e)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            code = S.SPACE_ALLOCATION_FAILED
        elif e.errno == errno.EIO:
            code = S.WRITE_ERROR if spec.kind == WRITE else S.UNRECOVERED_READ_ERROR
        else:
            code = S.INTERNAL_TARGET_FAILURE
        return check_condition(S.CheckCondition(code))

    def abort_task(self, nexus: Nexus, task_tag: int) -> bool:
        """ABORT TASK: the command returns TASK ABORTED once its backend I/O settles."""
        key = (nexus, task_tag)
        if self._tasks.get(key) is False:
            self._tasks[key] = True
            return True
        return False

    def abort_task_set(self, nexus: Nexus) -> int:
        n = 0
        for key, aborted in self._tasks.items():
            if key[0] == nexus and not aborted:
                self._tasks[key] = True
                n += 1
        return n

    def _abort_nexuses(self, nexuses: set[tuple[str, str]]) -> int:
        """PREEMPT AND ABORT (or a LUN reset through another gateway): abort every task of
        the named (initiator, target) ports; ``("*", "*")`` names every nexus."""
        n = 0
        everyone = ("*", "*") in nexuses
        for key, aborted in self._tasks.items():
            nx = key[0]
            if not aborted and (everyone or (nx.initiator_port, nx.target_port) in nexuses
                                or (nx.initiator_port, "*") in nexuses):
                self._tasks[key] = True
                n += 1
        return n

    def lun_reset(self, nexus: Nexus) -> None:
        """LOGICAL UNIT RESET from ``nexus``: abort all tasks, drop the SPC-2 reservation,
        BUS DEVICE RESET FUNCTION OCCURRED for every nexus -- the one that asked included
        (SAM-5 6.3.1; libiscsi's MultipathIO.Reset checks every path) -- on this gateway
        and, through the reservation store, on the others serving the disk."""
        for key in self._tasks:
            self._tasks[key] = True
        self.reservations.reset()
        self.ua.establish_all(S.BUS_DEVICE_RESET)
        self.copy_results.clear()

    async def settle(self) -> None:
        """The reservation store has what lun_reset/nexus_lost started (other gateways too)."""
        await self.reservations.settle()

    def nexus_lost(self, nexus: Nexus) -> None:
        """The session of ``nexus`` ended: abort its tasks, release its SPC-2 reservation."""
        self.abort_task_set(nexus)
        self.reservations.nexus_lost(nexus)
        self.ua.forget(nexus)
        self._stale.discard(nexus)
        self.copy_results.pop(nexus, None)

    # -- data area (max_data_area_mb / qfull_timeout) ---------------------------------
    def try_reserve_area(self, nbytes: int) -> bool:
        """Reserve ``nbytes`` if they fit now (the usual case: no coroutine to wait in)."""
        if self._inflight + nbytes <= self._area_limit or self._inflight == 0:
            self._inflight += nbytes
            return True
        return False

    async def reserve_area(self, nbytes: int) -> None:
        """Wait (up to qfull_timeout) until ``nbytes`` more fit in the data area."""
        if self._inflight + nbytes <= self._area_limit or self._inflight == 0:
            self._inflight += nbytes
            return
        timeout = self.config.qfull_timeout
        if timeout <= 0:
            raise AreaFull
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._inflight + nbytes > self._area_limit and self._inflight:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AreaFull
            fut = loop.create_future()
            self._area_waiters.append(fut)
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                raise AreaFull from None
            finally:
                if fut in self._area_waiters:
                    self._area_waiters.remove(fut)
        self._inflight += nbytes

    def release_area(self, nbytes: int) -> None:
        self._inflight -= nbytes
        if self._area_waiters:
            waiters, self._area_waiters = self._area_waiters, deque()
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def close(self) -> None:
        if self.registry is not None:
            self.registry.remove(self)
        if self.lock is not None:
            # Released, not dropped: a gateway asking for it meanwhile would find no one to
            # answer and fence this one.
            await self.lock.release()
            await self.lock.close()
        await self.reservations.close()


class AreaFull(Exception):  # noqa: N818 - control flow, becomes TASK SET FULL
    """No room in the data area within qfull_timeout."""
