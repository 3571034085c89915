"""Non-SCSI requests of the full feature phase: task management, NOP, Text, Logout, SNACK.

A mixin of TargetConnection (connection.py), split off to keep each module readable; it uses
the connection's window, StatSN, task table and output queue.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.iscsi.constants import (
    RESERVED_TAG,
    LogoutReason,
    LogoutResponse,
    RejectReason,
    TmfFunction,
    TmfResponse,
)
from gateway.iscsi.errors import RemoteProtocolError
from gateway.iscsi.events import LogoutRequested, TaskManagement
from gateway.iscsi.keys import MAX_TEXT_BYTES, encode_text, parse_text
from gateway.iscsi.pdu import (
    LogoutRequest,
    NopIn,
    NopOut,
    Pdu,
    TaskManagementRequest,
    TaskManagementResponse,
    TextRequest,
    TextResponse,
)
from gateway.iscsi.pdu import LogoutResponse as LogoutResponsePdu
from gateway.iscsi.states import ConnState
from gateway.iscsi.task import Task, TaskState
from gateway.iscsi.text import ffp_text_answer
from gateway.iscsi.window import sn_le

MAX_XMIT_CAP = 1 << 20


class ControlRequests:
    """TMF, NOP, Text, Logout and SNACK handling of a TargetConnection."""

    # ------------------------------------------------------------------ task management
    def _on_tmf(self, pdu: TaskManagementRequest) -> None:
        if pdu.immediate:
            self._tmf(pdu)
        else:
            self._ordered_other(pdu, lambda: self._tmf(pdu))

    def _ordered_other(self, pdu: Pdu, action: Callable[[], None]) -> None:
        delivered = self.window.accept(pdu.cmdsn, action)
        for item in delivered or ():
            self._deliver(item)

    def _tmf(self, pdu: TaskManagementRequest) -> None:
        fn = pdu.function
        if fn == TmfFunction.ABORT_TASK:
            task = self.tasks.get(pdu.ref_task_tag)
            if task is None:
                # Not received yet (RefCmdSN still ahead of us): make sure it never runs.
                if sn_le(self.window.exp_cmdsn, pdu.ref_cmdsn) and self.window.in_window(pdu.ref_cmdsn):
                    # Forget marks the window has moved past (commands that never came).
                    window = self.window
                    self._aborted_cmdsns = {sn for sn in self._aborted_cmdsns if window.in_window(sn)}
                    self._aborted_cmdsns.add(pdu.ref_cmdsn)
                    self.task_management_response(pdu.itt, TmfResponse.COMPLETE)
                else:
                    self.task_management_response(pdu.itt, TmfResponse.TASK_DOES_NOT_EXIST)
                return
            if task.state is TaskState.RECEIVING:
                self._abort_local(task)
                self.task_management_response(pdu.itt, TmfResponse.COMPLETE)
                return
            self._events.append(TaskManagement(pdu.itt, fn, pdu.lun, pdu.ref_task_tag, [task]))
            return
        if fn in (TmfFunction.ABORT_TASK_SET, TmfFunction.CLEAR_TASK_SET, TmfFunction.LOGICAL_UNIT_RESET,
                  TmfFunction.TARGET_WARM_RESET, TmfFunction.TARGET_COLD_RESET):
            everything = fn in (TmfFunction.TARGET_WARM_RESET, TmfFunction.TARGET_COLD_RESET)
            running = []
            for task in list(self.tasks.values()):
                if everything or task.lun == pdu.lun:
                    if task.state is TaskState.RECEIVING:
                        self._abort_local(task)
                    else:
                        running.append(task)
            for task in self.window.pending_items():
                if isinstance(task, Task) and (everything or task.lun == pdu.lun):
                    task.aborted = True
                    self.tasks.pop(task.itt, None)
                    self._dead_itts.append(task.itt)
            self._events.append(TaskManagement(pdu.itt, fn, pdu.lun, pdu.ref_task_tag, running))
            return
        if fn == TmfFunction.TASK_REASSIGN:
            self.task_management_response(pdu.itt, TmfResponse.REASSIGN_NOT_SUPPORTED)
        else:
            self.task_management_response(pdu.itt, TmfResponse.NOT_SUPPORTED)

    def _abort_local(self, task: Task) -> None:
        if not task.ordered and not task.immediate:
            task.aborted = True         # still waiting in the window: dropped when delivered
            self.tasks.pop(task.itt, None)
            self._dead_itts.append(task.itt)
            return
        self._release(task, aborted=True)

    def abort_running(self, task: Task) -> None:
        """The SCSI layer aborted a running task: it gets no response."""
        self._release(task, aborted=True)

    def task_management_response(self, itt: int, response: int) -> None:
        self._send(TaskManagementResponse(response=response, itt=itt, statsn=self._next_statsn(),
                                          exp_cmdsn=self.window.exp_cmdsn, max_cmdsn=self.window.max_cmdsn))

    # ------------------------------------------------------------------ NOP
    def _on_nop_out(self, pdu: NopOut) -> None:
        if pdu.itt == RESERVED_TAG:
            if not pdu.immediate:
                raise RemoteProtocolError("NOP-Out without response must be immediate",
                                          reject_reason=RejectReason.PROTOCOL_ERROR, header=pdu.raw)
            if self._ping_ttt is not None and pdu.ttt == self._ping_ttt:
                self._ping_ttt = None
            return
        if pdu.ttt != RESERVED_TAG:
            raise RemoteProtocolError("NOP-Out with both ITT and TTT",
                                      reject_reason=RejectReason.PROTOCOL_ERROR, header=pdu.raw)
        if pdu.immediate:
            self._nop_reply(pdu)
        else:
            self._ordered_other(pdu, lambda: self._nop_reply(pdu))

    def _nop_reply(self, pdu: NopOut) -> None:
        echo = pdu.data[:self.max_xmit]
        self._send(NopIn(data=bytes(echo), lun=pdu.lun, itt=pdu.itt, ttt=RESERVED_TAG,
                         statsn=self._next_statsn(), exp_cmdsn=self.window.exp_cmdsn,
                         max_cmdsn=self.window.max_cmdsn))

    @property
    def ping_outstanding(self) -> bool:
        return self._ping_ttt is not None

    def ping(self) -> bool:
        """Send a NOP-In that the initiator must answer; False if one is outstanding."""
        if self._ping_ttt is not None or self.state is ConnState.CLOSED:
            return False
        self._ping_ttt = self._next_ttt()
        self._send(NopIn(lun=0, itt=RESERVED_TAG, ttt=self._ping_ttt, statsn=self.statsn,
                         exp_cmdsn=self.window.exp_cmdsn, max_cmdsn=self.window.max_cmdsn))
        return True

    # ------------------------------------------------------------------ Text
    def _on_text(self, pdu: TextRequest) -> None:
        if pdu.immediate:
            self._text(pdu)
        else:
            self._ordered_other(pdu, lambda: self._text(pdu))

    def _text(self, pdu: TextRequest) -> None:
        if pdu.ttt != RESERVED_TAG:
            if pdu.ttt != self._text_ttt:
                self._reject(RejectReason.INVALID_PDU_FIELD, pdu.raw)
                return
            if self._text_out:
                self._send_text_chunk(pdu)
                return
        self._text_in += pdu.data
        if len(self._text_in) > MAX_TEXT_BYTES:
            self._text_in = bytearray()
            self._reject(RejectReason.PROTOCOL_ERROR, pdu.raw)
            return
        if pdu.cont:
            self._text_ttt = self._next_ttt()
            self._send(TextResponse(final=False, lun=pdu.lun, itt=pdu.itt, ttt=self._text_ttt,
                                    statsn=self._next_statsn(), exp_cmdsn=self.window.exp_cmdsn,
                                    max_cmdsn=self.window.max_cmdsn))
            return
        try:
            pairs = parse_text(self._text_in)
            answer, mrdsl = ffp_text_answer(pairs, self.discovery, self._catalogue)
        except RemoteProtocolError:
            self._text_in = bytearray()
            self._reject(RejectReason.PROTOCOL_ERROR, pdu.raw)
            return
        self._text_in = bytearray()
        if mrdsl is not None:
            self.max_xmit = min(mrdsl, MAX_XMIT_CAP)
        self._text_out = encode_text(answer)
        self._send_text_chunk(pdu)

    def _send_text_chunk(self, pdu: TextRequest) -> None:
        chunk, self._text_out = self._text_out[:self.max_xmit], self._text_out[self.max_xmit:]
        more = bool(self._text_out)
        self._text_ttt = self._next_ttt() if more else RESERVED_TAG
        self._send(TextResponse(data=chunk, final=not more, cont=more, lun=pdu.lun, itt=pdu.itt,
                                ttt=self._text_ttt, statsn=self._next_statsn(),
                                exp_cmdsn=self.window.exp_cmdsn, max_cmdsn=self.window.max_cmdsn))

    # ------------------------------------------------------------------ Logout / SNACK
    def _on_logout(self, pdu: LogoutRequest) -> None:
        if pdu.immediate:
            self._logout(pdu)
        else:
            self._ordered_other(pdu, lambda: self._logout(pdu))

    def _logout(self, pdu: LogoutRequest) -> None:
        if pdu.reason == LogoutReason.REMOVE_FOR_RECOVERY:
            self.logout_response(pdu.itt, LogoutResponse.RECOVERY_NOT_SUPPORTED, close=False)
            return
        if pdu.reason == LogoutReason.CLOSE_CONNECTION and pdu.cid != self.login.cid:
            self.logout_response(pdu.itt, LogoutResponse.CID_NOT_FOUND, close=False)
            return
        self.state = ConnState.LOGOUT_REQUESTED
        self._events.append(LogoutRequested(pdu.itt, pdu.reason, pdu.cid))

    def logout_response(self, itt: int, response: int = LogoutResponse.SUCCESS, close: bool = True) -> None:
        self._send(LogoutResponsePdu(response=response, itt=itt, statsn=self._next_statsn(),
                                     exp_cmdsn=self.window.exp_cmdsn, max_cmdsn=self.window.max_cmdsn,
                                     time2wait=0, time2retain=0))
        if close:
            self.state = ConnState.CLOSED

    def _on_snack(self, pdu: Pdu) -> None:
        raise RemoteProtocolError("SNACK needs ErrorRecoveryLevel > 0",
                                  reject_reason=RejectReason.PROTOCOL_ERROR, header=pdu.raw)
