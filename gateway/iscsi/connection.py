"""Full feature phase of one target connection: bytes in, events out, bytes to send.

Usage (h11 style)::

    conn = TargetConnection(login_result, ...)
    conn.receive_data(data)            # or get_buffer()/buffer_updated(n)
    while (event := conn.next_event()) is not None:
        ...                             # CommandReady -> run it, then conn.complete(task, result)
    transport.writelines(conn.data_to_send())

The state machine handles NOP, Text (SendTargets), Data-Out/R2T, the CmdSN window, Reject
and the transport side of task management by itself; the events are only what needs the
SCSI layer or the session registry.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from collections.abc import Callable

from gateway.iscsi.constants import (
    F_OVERFLOW,
    F_STATUS,
    F_UNDERFLOW,
    RESERVED_TAG,
    Op,
    RejectReason,
)
from gateway.iscsi.control import ControlRequests
from gateway.iscsi.errors import LocalProtocolError, RemoteProtocolError
from gateway.iscsi.events import CommandReady, Event
from gateway.iscsi.framing import PduReader, frame, pad_of
from gateway.iscsi.login import LoginResult
from gateway.iscsi.pdu import (
    DataIn,
    DataOut,
    Pdu,
    ReadyToTransfer,
    Reject,
    ScsiCommand,
    ScsiResponse,
    decode_lun,
    decode_pdu,
    encode_lun,
)
from gateway.iscsi.states import ALLOWED_OPCODES, ConnState
from gateway.iscsi.task import R2TState, Task, TaskState
from gateway.iscsi.text import CatalogueLookup
from gateway.iscsi.window import CommandWindow

MAX_IMMEDIATE_TASKS = 16
CHECK_CONDITION = 0x02
# ABORTED COMMAND sense (fixed format): DATA PHASE ERROR (4B/00) for a Data-Out sequence
# error, PROTOCOL SERVICE CRC ERROR (47/05, RFC 7143 §11.4.7.2) for a data digest error.
DATA_PHASE_ERROR = bytes([0x70, 0, 0x0B, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x4B, 0x00, 0, 0, 0, 0])
INVALID_FIELD_IN_CDB = bytes([0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0x00, 0, 0, 0, 0])
CRC_ERROR = bytes([0x70, 0, 0x0B, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x47, 0x05, 0, 0, 0, 0])
DEFAULT_WRITE_BUDGET = 64 << 20
MAX_XMIT_CAP = 1 << 20
STATUS_GOOD = 0
# Header layouts of the per-command PDUs, for the fast paths that skip the PDU classes.
_SCSI_CMD_BHS = struct.Struct(">BBHIQIIII16s")
_DATA_IN_BHS = struct.Struct(">BBBBIQIIIIIIII")
_SCSI_RSP_BHS = struct.Struct(">BBBBIQIIIIIIII")
_OP_SCSI_CMD = int(Op.SCSI_CMD)
_OP_DATA_IN = int(Op.DATA_IN)
_OP_SCSI_RSP = int(Op.SCSI_RSP)
_FULL_FEATURE = ConnState.FULL_FEATURE


class TargetConnection(ControlRequests):
    """One logged-in connection (ERL 0, one connection per session)."""

    def __init__(self, login: LoginResult, *, cmdsn_depth: int = 128,
                 catalogue: CatalogueLookup | None = None, write_budget: int = DEFAULT_WRITE_BUDGET,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.login = login
        self.params = p = login.params
        self.discovery = login.discovery
        self.state = ConnState.FULL_FEATURE
        self.reader = PduReader(p.max_recv_data_segment_length)
        self.reader.header_digest = p.header_digest
        self.reader.data_digest = p.data_digest
        self.window = CommandWindow(login.exp_cmdsn, cmdsn_depth)
        self.statsn = login.statsn
        self.tasks: dict[int, Task] = {}
        self.max_xmit = p.max_xmit_data_segment_length
        self._digests = p.header_digest or p.data_digest
        self._catalogue = catalogue or (lambda value: [])
        self._clock = clock
        self._events: deque[Event] = deque()
        self._out: list = []
        self._ttt = 0x1000
        self._ping_ttt: int | None = None
        self._immediate_tasks = 0
        self._write_budget = write_budget
        self._budget_used = 0
        self._r2t_queue: deque[Task] = deque()
        self._dead_itts: deque[int] = deque(maxlen=256)
        self._aborted_cmdsns: set[int] = set()
        self._text_in = bytearray()
        self._text_out = b""
        self._text_ttt = RESERVED_TAG
        self._handlers = {
            Op.SCSI_CMD: self._on_scsi_command, Op.DATA_OUT: self._on_data_out, Op.NOP_OUT: self._on_nop_out,
            Op.TEXT_REQ: self._on_text, Op.TMF_REQ: self._on_tmf, Op.LOGOUT_REQ: self._on_logout,
            Op.SNACK: self._on_snack,
        }

    # ------------------------------------------------------------------ byte interface
    def receive_data(self, data: bytes) -> None:
        self.reader.receive_data(data)

    def get_buffer(self) -> memoryview:
        return self.reader.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.reader.buffer_updated(nbytes)

    def data_to_send(self) -> list:
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        """Process received PDUs until one needs the caller; None when more bytes are needed.

        Raises RemoteProtocolError when the connection must be closed (ERL 0).
        """
        events = self._events
        reader = self.reader
        while not events:
            if self.state is ConnState.CLOSED:
                return None
            try:
                raw = reader.next_raw()
                if raw is None:
                    return None
                bhs, ahs, data = raw
                if bhs[0] & 0x3F == _OP_SCSI_CMD and not ahs and self.state is _FULL_FEATURE \
                        and not self.discovery:
                    # The per-command PDU, decoded here without a PDU object.
                    b0, flags, _, _, lunf, itt, edtl, cmdsn, _, cdb = _SCSI_CMD_BHS.unpack(bhs)
                    first = lunf >> 48
                    self._scsi_command(bool(b0 & 0x40), data, bool(flags & 0x80), bool(flags & 0x40),
                                       bool(flags & 0x20), flags & 7,
                                       first if first < 256 else decode_lun(lunf), itt, edtl, cmdsn,
                                       cdb, 0, bhs)
                else:
                    self._dispatch(decode_pdu(bhs, ahs, data))
            except RemoteProtocolError as e:
                if e.fatal:
                    self.state = ConnState.CLOSED
                    raise
                self._reject(e.reject_reason, e.header)
                self._after_reject(e.header, e.reject_reason)
        return events.popleft()

    def _after_reject(self, header: bytes | None, reason: int = RejectReason.PROTOCOL_ERROR) -> None:
        """After rejecting a PDU, keep sequence state right: a rejected non-immediate request
        still uses its CmdSN; a lost Data-Out ends its command (ERL 0)."""
        if not header or len(header) < 48:
            return
        op = header[0] & 0x3F
        if op == Op.DATA_OUT:
            task = self.tasks.get(int.from_bytes(header[16:20], "big"))
            if task is not None and task.state is TaskState.RECEIVING:
                self._fail_receiving(task, CRC_ERROR if reason == RejectReason.DATA_DIGEST_ERROR
                                     else DATA_PHASE_ERROR)
        elif op in (Op.SCSI_CMD, Op.NOP_OUT, Op.TEXT_REQ, Op.TMF_REQ, Op.LOGOUT_REQ) \
                and not header[0] & 0x40:
            cmdsn = int.from_bytes(header[24:28], "big")
            if self.window.in_window(cmdsn):
                self._consume_cmdsn(cmdsn)

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self, pdu: Pdu) -> None:
        op = pdu.opcode
        if op not in ALLOWED_OPCODES[(self.discovery, self.state)]:
            reason = RejectReason.WAITING_FOR_LOGOUT if self.state is ConnState.LOGOUT_REQUESTED \
                else RejectReason.PROTOCOL_ERROR
            self._reject(reason, pdu.raw)
            self._after_reject(pdu.raw, reason)
            return
        self._handlers[op](pdu)

    def _next_ttt(self) -> int:
        self._ttt = (self._ttt + 1) & 0x7FFFFFFF or 1
        return self._ttt

    def _send(self, pdu: Pdu) -> None:
        self._out.extend(frame(pdu, self.params.header_digest, self.params.data_digest))

    def _next_statsn(self) -> int:
        sn = self.statsn
        self.statsn = (sn + 1) & 0xFFFFFFFF
        return sn

    def _reject(self, reason: int, header: bytes | None) -> None:
        hdr = (header or b"")[:48].ljust(48, b"\0")
        self._send(Reject(data=hdr, reason=reason, statsn=self._next_statsn(),
                          exp_cmdsn=self.window.exp_cmdsn, max_cmdsn=self.window.max_cmdsn,
                          datasn=0))

    def _consume_cmdsn(self, cmdsn: int) -> None:
        """A rejected non-immediate request still uses its CmdSN (keeps the window moving)."""
        for item in self.window.accept(cmdsn, None) or ():
            self._deliver(item)

    # ------------------------------------------------------------------ SCSI commands
    def _on_scsi_command(self, pdu: ScsiCommand) -> None:
        self._scsi_command(pdu.immediate, pdu.data, pdu.final, pdu.read, pdu.write, pdu.attr, pdu.lun,
                           pdu.itt, pdu.edtl, pdu.cmdsn, pdu.cdb, pdu.bidi_read_length, pdu.raw)

    def _scsi_command(self, immediate: bool, data, final: bool, read: bool, write: bool, attr: int,
                      lun: int, itt: int, edtl: int, cmdsn: int, cdb: bytes, bidi_read_length: int,
                      raw: bytes) -> None:
        """A SCSI Command PDU (its fields: the fast path of next_event decodes them itself)."""
        tasks = self.tasks
        params = self.params
        bad = None
        if itt == RESERVED_TAG:
            bad = RejectReason.INVALID_PDU_FIELD
        elif itt in tasks:
            bad = RejectReason.TASK_IN_PROGRESS
        elif data and (not write or not params.immediate_data
                       or len(data) > min(edtl, params.first_burst_length)):
            bad = RejectReason.PROTOCOL_ERROR       # immediate data not allowed or too much
        elif not final and (not write or params.initial_r2t):
            bad = RejectReason.PROTOCOL_ERROR       # unsolicited Data-Out not allowed
        elif immediate and self._immediate_tasks >= MAX_IMMEDIATE_TASKS:
            bad = RejectReason.IMMEDIATE_COMMAND_REJECT
        if bad is not None:
            if not immediate and self.window.in_window(cmdsn):
                self._consume_cmdsn(cmdsn)
            self._reject(bad, raw)
            return
        if write and edtl > self._write_budget:
            # More than this connection may buffer: refuse before allocating anything.
            if immediate or self.window.in_window(cmdsn):
                if not immediate:
                    self._consume_cmdsn(cmdsn)
                self._dead_itts.append(itt)
                self._send_check_condition(itt, INVALID_FIELD_IN_CDB)
            return
        task = Task(itt, lun, cdb, attr, read, write, edtl, bidi_read_length, cmdsn, immediate)
        if write:
            n = len(data)
            if n == edtl:
                task.data_out = data
            elif n:
                task.chunks.append((0, data))
            task.received = n
            task.unsol_next = n
            task.unsolicited_end = n if final else min(edtl, params.first_burst_length)
            task.next_r2t_offset = task.unsolicited_end
            task.last_data = self._clock()
        if immediate:
            tasks[itt] = task
            self._immediate_tasks += 1
            self._deliver(task)
            return
        if self._aborted_cmdsns and cmdsn in self._aborted_cmdsns:
            self._aborted_cmdsns.discard(cmdsn)
            task.aborted = True
        delivered = self.window.accept(cmdsn, task)
        if delivered is None:
            return          # outside the window: silently ignored (RFC 7143 §4.2.2.1)
        if task.aborted:
            self._dead_itts.append(itt)
        else:
            tasks[itt] = task
            if len(delivered) == 1 and (not write or task.data_out is not None):
                # In order, all data here (the usual case): ready now (_deliver + _ready).
                task.ordered = True
                task.state = TaskState.RUNNING
                self._events.append(CommandReady(task))
                return
        for item in delivered:
            self._deliver(item)

    def _deliver(self, item) -> None:
        """A request reached its turn in CmdSN order."""
        if item is None:
            self.window.finish()
            return
        if isinstance(item, Task):
            if item.aborted:
                self.window.finish()
                return
            item.ordered = True
            if item.data_complete:
                self._ready(item)
            elif item.wants_r2t:
                self._r2t_queue.append(item)
                self._pump_r2t()
            return
        self.window.finish()
        item()

    def _ready(self, task: Task) -> None:
        if task.write and task.data_out is None:
            if task.buf is not None:
                task.data_out = memoryview(task.buf)
            else:
                task.data_out = self._join_chunks(task)
        task.state = TaskState.RUNNING
        self._events.append(CommandReady(task))

    @staticmethod
    def _join_chunks(task: Task) -> bytes | memoryview:
        chunks = task.chunks
        if len(chunks) == 1 and chunks[0][0] == 0:
            return chunks[0][1]
        buf = bytearray(task.received)
        for off, piece in chunks:
            buf[off:off + len(piece)] = piece
        task.chunks = []
        return memoryview(buf)

    # ------------------------------------------------------------------ Data-Out / R2T
    def _pump_r2t(self) -> None:
        queue = self._r2t_queue
        max_out = self.params.max_outstanding_r2t
        while queue:
            task = queue[0]
            if task.buf is None:
                if self._budget_used and self._budget_used + task.edtl > self._write_budget:
                    return
                task.buf = bytearray(task.edtl)
                task.reserved = task.edtl
                self._budget_used += task.edtl
                for off, piece in task.chunks:
                    task.buf[off:off + len(piece)] = piece
                task.chunks = []
            while len(task.r2ts) < max_out and task.wants_r2t:
                offset = task.next_r2t_offset
                length = min(self.params.max_burst_length, task.edtl - offset)
                r2t = R2TState(self._next_ttt(), task.r2tsn, offset, length)
                task.r2tsn += 1
                task.r2ts[r2t.ttt] = r2t
                task.next_r2t_offset = offset + length
                self._send(ReadyToTransfer(lun=task.lun, itt=task.itt, ttt=r2t.ttt, statsn=self.statsn,
                                           exp_cmdsn=self.window.exp_cmdsn, max_cmdsn=self.window.max_cmdsn,
                                           r2tsn=r2t.r2tsn, offset=offset, length=length))
            if task.wants_r2t:
                return          # MaxOutstandingR2T reached; more after this burst completes
            queue.popleft()

    def _on_data_out(self, pdu: DataOut) -> None:
        task = self.tasks.get(pdu.itt)
        if task is None or task.state is not TaskState.RECEIVING or not task.write:
            if pdu.itt in self._dead_itts:
                return      # data for an aborted task: discard
            raise RemoteProtocolError(f"Data-Out for unknown task 0x{pdu.itt:x}",
                                      reject_reason=RejectReason.INVALID_PDU_FIELD, header=pdu.raw)
        n = len(pdu.data)
        off = pdu.offset
        if pdu.ttt == RESERVED_TAG:
            if pdu.datasn != task.unsol_datasn or off != task.unsol_next or off + n > task.unsolicited_end:
                self._fail_receiving(task, DATA_PHASE_ERROR)
                return
            task.unsol_datasn += 1
            task.unsol_next = off + n
            r2t = None
        else:
            r2t = task.r2ts.get(pdu.ttt)
            if r2t is None or pdu.datasn != r2t.datasn or off != r2t.next_offset \
                    or off + n > r2t.offset + r2t.length:
                # ERL 0 cannot recover within the command: end it, keep the connection.
                self._fail_receiving(task, DATA_PHASE_ERROR)
                return
            r2t.datasn += 1
            r2t.next_offset = off + n
        if n:
            if task.buf is not None:
                task.buf[off:off + n] = pdu.data
            else:
                task.chunks.append((off, pdu.data))
            task.received += n
        task.last_data = self._clock()
        if r2t is not None and r2t.next_offset == r2t.offset + r2t.length:
            del task.r2ts[r2t.ttt]
            if task.wants_r2t and task not in self._r2t_queue:
                self._r2t_queue.append(task)
            self._pump_r2t()
        if task.ordered and task.data_complete and not task.r2ts:
            self._ready(task)

    def _fail_receiving(self, task: Task, sense: bytes) -> None:
        """End a command whose data went wrong: CHECK CONDITION now, later data discarded."""
        self._send_check_condition(task.itt, sense)
        self._abort_local(task)

    def _send_check_condition(self, itt: int, sense: bytes) -> None:
        self._send(ScsiResponse(data=len(sense).to_bytes(2, "big") + sense, status=CHECK_CONDITION,
                                itt=itt, statsn=self._next_statsn(), exp_cmdsn=self.window.exp_cmdsn,
                                max_cmdsn=self.window.max_cmdsn))

    def oldest_data_wait(self) -> float | None:
        """When the longest-waiting write last received data (for dataout_timeout)."""
        waits = [t.last_data for t in self.tasks.values()
                 if t.state is TaskState.RECEIVING and t.ordered and t.write]
        return min(waits) if waits else None

    # ------------------------------------------------------------------ completion
    def complete(self, task: Task, status: int, data=None, sense: bytes | None = None,
                 transfer_length: int | None = None) -> None:
        """Send the outcome of a command (Data-In with phase collapse, or SCSI Response)."""
        if task.state is TaskState.DONE:
            return              # aborted meanwhile: the initiator expects no response
        if self.tasks.get(task.itt) is not task:
            raise LocalProtocolError(f"complete() for a task that is not running: {task!r}")
        self._release(task)
        if task.aborted or self.state is ConnState.CLOSED:
            return
        if sense is None and not (task.read and task.write) and not self._digests:
            # The common answers, packed without PDU objects: GOOD data in one Data-In with
            # the status, or a SCSI Response without sense data.
            edtl = task.edtl
            ndata = 0 if data is None else len(data)
            if transfer_length is None:
                transfer_length = ndata
            if transfer_length == edtl:
                flags = residual = 0
            elif transfer_length > edtl:
                flags, residual = F_OVERFLOW, transfer_length - edtl
            else:
                flags, residual = F_UNDERFLOW, edtl - transfer_length
            send = (ndata if ndata < edtl else edtl) if task.read else 0
            window = self.window
            if not send:
                sn = self.statsn
                self.statsn = (sn + 1) & 0xFFFFFFFF
                self._out.append(_SCSI_RSP_BHS.pack(_OP_SCSI_RSP, 0x80 | flags, 0, status, 0, 0, task.itt,
                                                    0, sn, window.exp_cmdsn, window.max_cmdsn, 0, 0,
                                                    residual))
                return
            if send <= self.max_xmit and send <= self.params.max_burst_length:
                sn = self.statsn
                self.statsn = (sn + 1) & 0xFFFFFFFF
                lun = task.lun
                out = self._out
                out.append(_DATA_IN_BHS.pack(_OP_DATA_IN, 0x80 | F_STATUS | flags, 0, status, send,
                                             lun << 48 if lun < 256 else encode_lun(lun), task.itt,
                                             RESERVED_TAG, sn, window.exp_cmdsn, window.max_cmdsn, 0, 0,
                                             residual))
                out.append(data if send == ndata else (data if isinstance(data, memoryview)
                                                       else memoryview(data))[:send])
                if send & 3:
                    out.append(pad_of(send))
                return
        bidi = task.read and task.write
        edtl = task.read_edtl if bidi else task.edtl
        ndata = 0 if data is None else len(data)
        if transfer_length is None:
            transfer_length = ndata
        flags = 0
        residual = 0
        if transfer_length > edtl:
            flags, residual = F_OVERFLOW, transfer_length - edtl
        elif transfer_length < edtl:
            flags, residual = F_UNDERFLOW, edtl - transfer_length
        send = min(ndata, edtl) if task.read else 0
        collapse = sense is None and not bidi
        if send:
            self._send_data_in(task, data, send, status, flags, residual, collapse)
            if collapse:
                return
        payload = b"" if sense is None else len(sense).to_bytes(2, "big") + bytes(sense)
        bidi_residual = 0
        if bidi:
            # The read part's residual goes in the bidirectional fields (o/u bits).
            flags, bidi_residual, residual = flags << 2, residual, 0
        self._send(ScsiResponse(data=payload, flags=flags, response=0, status=status,
                                itt=task.itt, statsn=self._next_statsn(), exp_cmdsn=self.window.exp_cmdsn,
                                max_cmdsn=self.window.max_cmdsn, exp_datasn=0,
                                bidi_residual=bidi_residual, residual=residual))

    def _send_data_in(self, task: Task, data, length: int, status: int, flags: int, residual: int,
                      collapse: bool) -> None:
        view = data if isinstance(data, memoryview) else memoryview(data)
        seg = self.max_xmit
        burst = self.params.max_burst_length
        offset = 0
        datasn = 0
        hd, dd = self.params.header_digest, self.params.data_digest
        out = self._out
        while offset < length:
            n = min(seg, length - offset, burst - (offset % burst))
            last = offset + n >= length
            end_of_burst = (offset + n) % burst == 0
            pdu = DataIn(data=view[offset:offset + n], flags=0x80 if (last or end_of_burst) else 0,
                         lun=task.lun, itt=task.itt, datasn=datasn, offset=offset,
                         exp_cmdsn=self.window.exp_cmdsn, max_cmdsn=self.window.max_cmdsn)
            if last and collapse:
                pdu.flags |= F_STATUS | flags
                pdu.status = status
                pdu.residual = residual
                pdu.statsn = self._next_statsn()
            out.extend(frame(pdu, hd, dd))
            offset += n
            datasn += 1

    def _release(self, task: Task, aborted: bool = False) -> None:
        """Forget a task: its window slot, its write budget, its ITT."""
        if self.tasks.get(task.itt) is task:
            del self.tasks[task.itt]
        if task.state is TaskState.DONE:
            return
        if task.immediate:
            self._immediate_tasks -= 1
        elif task.ordered:
            self.window.finish()
        task.state = TaskState.DONE
        if task.reserved:
            self._budget_used -= task.reserved
            task.reserved = 0
            task.buf = None
            if self._r2t_queue:
                self._pump_r2t()
        if aborted:
            task.aborted = True
            self._dead_itts.append(task.itt)
            if task in self._r2t_queue:
                self._r2t_queue.remove(task)

    # ------------------------------------------------------------------ misc
    def running_tasks(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.state is TaskState.RUNNING]

    def set_cmdsn_depth(self, depth: int) -> None:
        self.window.set_depth(depth)

    def close(self) -> None:
        self.state = ConnState.CLOSED
