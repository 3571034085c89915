"""A small sans-IO iSCSI initiator: enough to drive the target byte for byte in tests
and to script protocol scenarios (login with CHAP, SCSI commands with immediate data,
unsolicited Data-Out and R2T, NOP, Text, TMF, Logout).  ERL 0, one connection.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field

from gateway.iscsi.chap import ChapSecret, chap_response, decode_binary, encode_binary
from gateway.iscsi.constants import F_OVERFLOW, F_STATUS, F_UNDERFLOW, RESERVED_TAG, Stage
from gateway.iscsi.framing import PduReader, frame
from gateway.iscsi.keys import encode_text, parse_text
from gateway.iscsi.pdu import (
    DataIn,
    DataOut,
    LoginRequest,
    LoginResponse,
    LogoutRequest,
    LogoutResponse,
    NopIn,
    NopOut,
    Pdu,
    ReadyToTransfer,
    Reject,
    ScsiCommand,
    ScsiResponse,
    TaskManagementRequest,
    TaskManagementResponse,
    TextRequest,
    TextResponse,
)


@dataclass
class CommandResult:
    itt: int
    status: int
    data: bytes
    sense: bytes
    overflow: bool
    underflow: bool
    residual: int


@dataclass
class LoginOutcome:
    status: tuple[int, int]
    keys: dict[str, str]
    tsih: int


@dataclass
class Command:
    itt: int
    write_data: bytes
    edtl: int
    data_in: bytearray = field(default_factory=bytearray)
    datasn: int = 0


class Initiator:
    """Initiator side; ``send_*`` queue bytes (``data_to_send``), events come from ``next_event``."""

    def __init__(self, name: str = "iqn.2024-01.org.example:initiator", target: str | None = None, *,
                 chap: ChapSecret | None = None, mutual: ChapSecret | None = None,
                 chap_algorithms: str = "5", keys: dict[str, str] | None = None,
                 isid: bytes = b"\x80\x12\x34\x56\x00\x00") -> None:
        self.name = name
        self.target = target
        self.chap = chap
        self.mutual = mutual
        self.chap_algorithms = chap_algorithms
        self.isid = isid
        self.keys = {"HeaderDigest": "None", "DataDigest": "None", "MaxRecvDataSegmentLength": "8192",
                     "InitialR2T": "No", "ImmediateData": "Yes", "MaxBurstLength": "262144",
                     "FirstBurstLength": "65536", "MaxOutstandingR2T": "1", "ErrorRecoveryLevel": "0",
                     "DefaultTime2Wait": "0", "DefaultTime2Retain": "0", "MaxConnections": "1",
                     "DataPDUInOrder": "Yes", "DataSequenceInOrder": "Yes"}
        self.keys.update(keys or {})
        self.explicit_keys = tuple(keys or ())  # also offered in discovery sessions
        self.reader = PduReader(1 << 24)
        self.negotiated: dict[str, str] = {}
        self.cmdsn = 1
        self.exp_statsn = 0
        self.max_cmdsn = 1
        self.itt = 0x100
        self.tsih = 0
        self.hd = self.dd = False
        self.commands: dict[int, Command] = {}
        self.events: deque = deque()
        self.out: list = []
        self._stage = Stage.SECURITY
        self._chap_challenge = b""
        self._login_done = False
        self.target_mrdsl = 8192
        self.first_burst = 65536
        self.immediate = True
        self.initial_r2t = False

    # ------------------------------------------------------------------ bytes
    def receive_data(self, data: bytes) -> None:
        self.reader.receive_data(data)
        while (pdu := self.reader.next_pdu()) is not None:
            self._handle(pdu)

    def data_to_send(self) -> bytes:
        out, self.out = self.out, []
        return b"".join(bytes(b) for b in out)

    def next_event(self):
        return self.events.popleft() if self.events else None

    def _send(self, pdu: Pdu, digests: bool = True) -> None:
        self.out.extend(frame(pdu, self.hd and digests, self.dd and digests))

    def _next_itt(self) -> int:
        self.itt += 1
        return self.itt

    # ------------------------------------------------------------------ login
    def start_login(self, discovery: bool = False) -> None:
        self.discovery = discovery
        pairs = [("InitiatorName", self.name), ("SessionType", "Discovery" if discovery else "Normal")]
        if not discovery:
            pairs.append(("TargetName", self.target))
        if self.chap is not None:
            pairs.append(("AuthMethod", "CHAP,None"))
            self._login(pairs, transit=False, csg=Stage.SECURITY, nsg=0)
        else:
            pairs.append(("AuthMethod", "None"))
            self._login(pairs, transit=True, csg=Stage.SECURITY, nsg=Stage.OPERATIONAL)

    def _login(self, pairs, *, transit: bool, csg: int, nsg: int) -> None:
        self._stage = csg
        self._send(LoginRequest(data=encode_text(pairs), transit=transit, csg=csg, nsg=nsg, isid=self.isid,
                                itt=self._next_itt(), cmdsn=self.cmdsn, exp_statsn=self.exp_statsn),
                   digests=False)

    def _on_login(self, rsp: LoginResponse) -> None:
        self.exp_statsn = (rsp.statsn + 1) & 0xFFFFFFFF
        self.max_cmdsn = rsp.max_cmdsn
        keys = dict(parse_text(rsp.data))
        self.negotiated.update(keys)
        if rsp.status_class:
            self.events.append(LoginOutcome((rsp.status_class, rsp.status_detail), keys, 0))
            return
        if rsp.cont:
            self._login([], transit=False, csg=rsp.csg, nsg=0)
            return
        if rsp.transit and rsp.nsg == Stage.FULL_FEATURE:
            self.tsih = rsp.tsih
            self._finish_login()
            self.events.append(LoginOutcome((0, 0), self.negotiated, rsp.tsih))
            return
        if rsp.csg == Stage.SECURITY and not rsp.transit:
            if keys.get("AuthMethod") == "CHAP" and "CHAP_C" not in keys:
                self._login([("CHAP_A", self.chap_algorithms)], transit=False, csg=0, nsg=0)
                return
            if "CHAP_C" in keys:
                alg, ident = int(keys["CHAP_A"]), int(keys["CHAP_I"])
                resp = chap_response(alg, ident, self.chap.password.encode(),
                                     decode_binary(keys["CHAP_C"], "CHAP_C"))
                pairs = [("CHAP_N", self.chap.username), ("CHAP_R", encode_binary(resp))]
                if self.mutual is not None:
                    self._chap_challenge = os.urandom(16)
                    self._mutual_id = 7
                    self._chap_alg = alg
                    pairs += [("CHAP_I", "7"), ("CHAP_C", encode_binary(self._chap_challenge))]
                self._login(pairs, transit=True, csg=0, nsg=Stage.OPERATIONAL)
                return
            self._login([], transit=True, csg=0, nsg=Stage.OPERATIONAL)
            return
        if rsp.csg == Stage.SECURITY and rsp.transit:
            if self.mutual is not None:
                want = chap_response(self._chap_alg, self._mutual_id, self.mutual.password.encode(),
                                     self._chap_challenge)
                if keys.get("CHAP_N") != self.mutual.username or \
                        decode_binary(keys.get("CHAP_R", "0x"), "CHAP_R") != want:
                    self.events.append(LoginOutcome((0xFF, 0xFF), keys, 0))
                    return
            ops = [] if self.discovery else list(self.keys.items())
            if self.discovery:
                names = ("HeaderDigest", "DataDigest", "MaxRecvDataSegmentLength", *self.explicit_keys)
                ops = [(k, self.keys[k]) for k in dict.fromkeys(names)]
            self._login(ops, transit=True, csg=Stage.OPERATIONAL, nsg=Stage.FULL_FEATURE)
            return
        # Operational stage without transit: answer the target's proposals with our agreement.
        answers = [(k, v) for k, v in keys.items() if k in ("ImmediateData", "MaxBurstLength",
                                                             "FirstBurstLength", "MaxOutstandingR2T")]
        self._login(answers, transit=True, csg=Stage.OPERATIONAL, nsg=Stage.FULL_FEATURE)

    def _finish_login(self) -> None:
        n = self.negotiated
        self.hd = n.get("HeaderDigest") == "CRC32C"
        self.dd = n.get("DataDigest") == "CRC32C"
        self.reader.header_digest, self.reader.data_digest = self.hd, self.dd
        self.target_mrdsl = int(n.get("MaxRecvDataSegmentLength", "8192"))
        self.immediate = n.get("ImmediateData", "Yes") == "Yes"
        self.initial_r2t = n.get("InitialR2T", "Yes") == "Yes"
        self.first_burst = int(n.get("FirstBurstLength", "65536"))
        self._login_done = True

    # ------------------------------------------------------------------ full feature phase
    def _take_cmdsn(self, immediate: bool) -> int:
        sn = self.cmdsn
        if not immediate:
            self.cmdsn = (self.cmdsn + 1) & 0xFFFFFFFF
        return sn

    def scsi(self, cdb: bytes, *, lun: int = 0, read_length: int = 0, write: bytes | None = None,
             edtl: int | None = None, immediate: bool = False, cmdsn: int | None = None,
             read: bool | None = None) -> int:
        """Send a SCSI command; returns its ITT.  ``edtl`` overrides the expected length."""
        itt = self._next_itt()
        wdata = write or b""
        length = edtl if edtl is not None else (len(wdata) if write is not None else read_length)
        imm = b""
        if write is not None and self.immediate:
            imm = wdata[:min(self.first_burst, self.target_mrdsl, length)]
        final = True
        unsol_end = len(imm)
        if write is not None and not self.initial_r2t and len(imm) < min(length, self.first_burst):
            final = False
            unsol_end = min(length, self.first_burst, len(wdata))
        sn = self._take_cmdsn(immediate) if cmdsn is None else cmdsn
        self.commands[itt] = Command(itt, wdata, length)
        if read is None:
            read = write is None and length > 0
        self._send(ScsiCommand(immediate=immediate, data=imm, final=final, read=read,
                               write=write is not None, lun=lun, itt=itt, edtl=length, cmdsn=sn,
                               exp_statsn=self.exp_statsn, cdb=cdb))
        if not final:
            self._send_data(itt, len(imm), unsol_end - len(imm), RESERVED_TAG, lun)
        return itt

    def _send_data(self, itt: int, offset: int, length: int, ttt: int, lun: int) -> None:
        cmd = self.commands[itt]
        end = offset + length
        datasn = 0
        while offset < end:
            n = min(self.target_mrdsl, end - offset)
            self._send(DataOut(data=cmd.write_data[offset:offset + n], final=offset + n >= end, lun=lun,
                               itt=itt, ttt=ttt, exp_statsn=self.exp_statsn, datasn=datasn, offset=offset))
            offset += n
            datasn += 1

    def nop(self, data: bytes = b"", immediate: bool = True) -> int:
        itt = self._next_itt()
        self._send(NopOut(immediate=immediate, data=data, itt=itt, cmdsn=self._take_cmdsn(immediate),
                          exp_statsn=self.exp_statsn))
        return itt

    def text(self, pairs, immediate: bool = False) -> int:
        itt = self._next_itt()
        self._text_itt = itt
        self._text_buf = bytearray()
        self._send(TextRequest(immediate=immediate, data=encode_text(pairs), itt=itt,
                               cmdsn=self._take_cmdsn(immediate), exp_statsn=self.exp_statsn))
        return itt

    def tmf(self, function: int, lun: int = 0, ref_itt: int = RESERVED_TAG, ref_cmdsn: int = 0) -> int:
        itt = self._next_itt()
        self._send(TaskManagementRequest(immediate=True, function=function, lun=lun, itt=itt,
                                         ref_task_tag=ref_itt, cmdsn=self.cmdsn, exp_statsn=self.exp_statsn,
                                         ref_cmdsn=ref_cmdsn))
        return itt

    def logout(self, reason: int = 0) -> int:
        itt = self._next_itt()
        self._send(LogoutRequest(immediate=True, reason=reason, itt=itt, cmdsn=self.cmdsn,
                                 exp_statsn=self.exp_statsn))
        return itt

    # ------------------------------------------------------------------ responses
    def _handle(self, pdu: Pdu) -> None:
        if isinstance(pdu, LoginResponse):
            self._on_login(pdu)
            return
        if hasattr(pdu, "max_cmdsn") and pdu.max_cmdsn:
            self.max_cmdsn = pdu.max_cmdsn
        if isinstance(pdu, DataIn):
            cmd = self.commands[pdu.itt]
            assert pdu.datasn == cmd.datasn and pdu.offset == len(cmd.data_in), "Data-In out of order"
            cmd.datasn += 1
            cmd.data_in += pdu.data
            if pdu.flags & F_STATUS:
                self.exp_statsn = (pdu.statsn + 1) & 0xFFFFFFFF
                self._done(pdu.itt, pdu.status, b"", pdu.flags, pdu.residual)
        elif isinstance(pdu, ScsiResponse):
            self.exp_statsn = (pdu.statsn + 1) & 0xFFFFFFFF
            self._done(pdu.itt, pdu.status, pdu.sense, pdu.flags, pdu.residual)
        elif isinstance(pdu, ReadyToTransfer):
            self._send_data(pdu.itt, pdu.offset, pdu.length, pdu.ttt, pdu.lun)
        elif isinstance(pdu, NopIn):
            if pdu.itt == RESERVED_TAG:
                self._send(NopOut(immediate=True, lun=pdu.lun, itt=RESERVED_TAG, ttt=pdu.ttt,
                                  cmdsn=self.cmdsn, exp_statsn=self.exp_statsn))
            else:
                self.exp_statsn = (pdu.statsn + 1) & 0xFFFFFFFF
            self.events.append(pdu)
        elif isinstance(pdu, TextResponse):
            self.exp_statsn = (pdu.statsn + 1) & 0xFFFFFFFF
            self._text_buf += pdu.data
            if pdu.cont or not pdu.final:
                self._send(TextRequest(immediate=True, itt=pdu.itt, ttt=pdu.ttt, cmdsn=self.cmdsn,
                                       exp_statsn=self.exp_statsn))
            else:
                self.events.append(("text", parse_text(self._text_buf)))
        elif isinstance(pdu, TaskManagementResponse | LogoutResponse | Reject):
            self.exp_statsn = (pdu.statsn + 1) & 0xFFFFFFFF
            self.events.append(pdu)
        else:
            self.events.append(pdu)

    def _done(self, itt: int, status: int, sense: bytes, flags: int, residual: int) -> None:
        cmd = self.commands.pop(itt)
        self.events.append(CommandResult(itt, status, bytes(cmd.data_in), sense, bool(flags & F_OVERFLOW),
                                         bool(flags & F_UNDERFLOW), residual))
