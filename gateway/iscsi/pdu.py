"""PDU codec: one small class per opcode, BHS (+AHS) to fields and back.

Decoding never trusts the peer: a malformed header raises RemoteProtocolError.  The data
segment is not part of the BHS; ``data`` holds it (a memoryview into the receive buffer
where possible, so a Data-Out payload is never copied by the codec).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

from gateway.iscsi.constants import BHS_LEN, IMMEDIATE, RESERVED_TAG, Op, RejectReason
from gateway.iscsi.errors import RemoteProtocolError

EMPTY = b""
Buffer = bytes | bytearray | memoryview

_SCSI_CMD = struct.Struct(">BBHIQIIII16s")
_SCSI_RSP = struct.Struct(">BBBBIQIIIIIIII")
_DATA_IN = struct.Struct(">BBBBIQIIIIIIII")
_DATA_OUT = struct.Struct(">BBHIQIIIIIIII")
_R2T = struct.Struct(">BBHIQIIIIIIII")
_NOP_OUT = struct.Struct(">BBHIQIIII16s")
_NOP_IN = struct.Struct(">BBHIQIIIII12s")
_TMF_REQ = struct.Struct(">BBHIQIIIIII8s")
_TMF_RSP = struct.Struct(">BBBBIQIIIII12s")
_LOGIN_REQ = struct.Struct(">BBBBI6sHIHHII16s")
_LOGIN_RSP = struct.Struct(">BBBBI6sHIIIIIBB10s")
_TEXT_REQ = _NOP_OUT
_TEXT_RSP = _NOP_IN
_LOGOUT_REQ = struct.Struct(">BBHIQIHHII16s")
_LOGOUT_RSP = struct.Struct(">BBBBIQIIIII4sHHI")
_REJECT = struct.Struct(">BBBBIQIIIIII8s")
_ASYNC = struct.Struct(">BBHIQIIIIIBBHHHI")
_SNACK = struct.Struct(">BBHIQIIII8sII")
_AHS_HDR = struct.Struct(">HB")
_U32 = struct.Struct(">I")
R0 = b"\0" * 16

AHS_EXTENDED_CDB = 1
AHS_BIDI_READ_LENGTH = 2


def _ahs_dsl(ahs_len: int, dsl: int) -> int:
    return ((ahs_len >> 2) << 24) | dsl


# LUN number given to a LUN field whose addressing method we do not support; no logical
# unit is ever mapped there, so the SCSI layer answers LOGICAL UNIT NOT SUPPORTED.
UNSUPPORTED_LUN = 0xFFFF


def encode_lun(lun: int) -> int:
    """SAM LUN structure as the 64-bit LUN field (peripheral < 256, flat space above)."""
    if 0 <= lun < 256:
        return lun << 48
    return (0x4000 | (lun & 0x3FFF)) << 48


def decode_lun(field64: int) -> int:
    """The LUN number of a 64-bit LUN field (UNSUPPORTED_LUN for other addressing methods)."""
    first = field64 >> 48
    method = first >> 14
    if method == 0:            # peripheral device addressing, bus 0
        return first & 0xFF if (first >> 8) == 0 else UNSUPPORTED_LUN
    if method == 1:            # flat space addressing
        return first & 0x3FFF
    return UNSUPPORTED_LUN


@dataclass(slots=True)
class Pdu:
    """Base: every PDU has an opcode, an immediate bit and a data segment."""

    opcode: ClassVar[int] = -1
    immediate: bool = False
    data: Buffer = EMPTY
    # The BHS as received (decoded PDUs only): what a Reject returns to the initiator.
    raw: bytes = field(default=b"", repr=False, compare=False, kw_only=True)

    def header(self) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError

    @classmethod
    def decode(cls, bhs: Buffer, ahs: Buffer, data: Buffer) -> Pdu:  # pragma: no cover
        raise NotImplementedError


def _b0(pdu: Pdu) -> int:
    return pdu.opcode | (IMMEDIATE if pdu.immediate else 0)


# ---------------------------------------------------------------- initiator -> target

@dataclass(slots=True)
class ScsiCommand(Pdu):
    opcode: ClassVar[int] = Op.SCSI_CMD
    final: bool = True
    read: bool = False
    write: bool = False
    attr: int = 1
    lun: int = 0
    itt: int = 0
    edtl: int = 0
    cmdsn: int = 0
    exp_statsn: int = 0
    cdb: bytes = R0
    bidi_read_length: int = 0

    def header(self) -> bytes:
        flags = (0x80 if self.final else 0) | (0x40 if self.read else 0) | \
            (0x20 if self.write else 0) | (self.attr & 7)
        cdb = bytes(self.cdb)
        ahs = b""
        if len(cdb) > 16:
            ext = cdb[16:]
            ahs_len = len(ext) + 1
            ahs += _AHS_HDR.pack(ahs_len, AHS_EXTENDED_CDB) + b"\0" + ext
            ahs += b"\0" * (-len(ahs) % 4)
        if self.bidi_read_length:
            ahs += _AHS_HDR.pack(5, AHS_BIDI_READ_LENGTH) + b"\0" + _U32.pack(self.bidi_read_length)
        return _SCSI_CMD.pack(_b0(self), flags, 0, _ahs_dsl(len(ahs), len(self.data)),
                              encode_lun(self.lun), self.itt, self.edtl, self.cmdsn,
                              self.exp_statsn, cdb[:16].ljust(16, b"\0")) + ahs

    @classmethod
    def decode(cls, bhs, ahs, data):
        b0, flags, _, _, lunf, itt, edtl, cmdsn, esn, cdb = _SCSI_CMD.unpack_from(bhs)
        bidi = 0
        cdb = bytes(cdb)
        pos = 0
        while pos + 3 <= len(ahs):
            alen, atype = _AHS_HDR.unpack_from(ahs, pos)
            body = bytes(ahs[pos + 3:pos + 3 + alen])
            if alen == 0 or len(body) < alen:
                raise RemoteProtocolError("truncated AHS", reject_reason=RejectReason.INVALID_PDU_FIELD,
                                          header=bytes(bhs))
            if atype == AHS_EXTENDED_CDB:
                cdb += body[1:]
            elif atype == AHS_BIDI_READ_LENGTH and alen == 5:
                bidi = _U32.unpack_from(body, 1)[0]
            else:
                raise RemoteProtocolError(f"unknown AHS type {atype}",
                                          reject_reason=RejectReason.INVALID_PDU_FIELD, header=bytes(bhs))
            pos += 3 + alen + (-(3 + alen) % 4)
        return cls(bool(b0 & IMMEDIATE), data, bool(flags & 0x80), bool(flags & 0x40),
                   bool(flags & 0x20), flags & 7, decode_lun(lunf), itt, edtl, cmdsn, esn, cdb, bidi)


@dataclass(slots=True)
class DataOut(Pdu):
    opcode: ClassVar[int] = Op.DATA_OUT
    final: bool = False
    lun: int = 0
    itt: int = 0
    ttt: int = RESERVED_TAG
    exp_statsn: int = 0
    datasn: int = 0
    offset: int = 0

    def header(self) -> bytes:
        return _DATA_OUT.pack(_b0(self), 0x80 if self.final else 0, 0, _ahs_dsl(0, len(self.data)),
                              encode_lun(self.lun), self.itt, self.ttt, 0, self.exp_statsn, 0,
                              self.datasn, self.offset, 0)

    @classmethod
    def decode(cls, bhs, ahs, data):
        b0, flags, _, _, lunf, itt, ttt, _, esn, _, datasn, offset, _ = _DATA_OUT.unpack_from(bhs)
        return cls(False, data, bool(flags & 0x80), decode_lun(lunf), itt, ttt, esn, datasn, offset)


@dataclass(slots=True)
class NopOut(Pdu):
    opcode: ClassVar[int] = Op.NOP_OUT
    lun: int = 0
    itt: int = RESERVED_TAG
    ttt: int = RESERVED_TAG
    cmdsn: int = 0
    exp_statsn: int = 0

    def header(self) -> bytes:
        return _NOP_OUT.pack(_b0(self), 0x80, 0, _ahs_dsl(0, len(self.data)), encode_lun(self.lun),
                             self.itt, self.ttt, self.cmdsn, self.exp_statsn, R0)

    @classmethod
    def decode(cls, bhs, ahs, data):
        b0, _, _, _, lunf, itt, ttt, cmdsn, esn, _ = _NOP_OUT.unpack_from(bhs)
        return cls(bool(b0 & IMMEDIATE), data, decode_lun(lunf), itt, ttt, cmdsn, esn)


@dataclass(slots=True)
class TaskManagementRequest(Pdu):
    opcode: ClassVar[int] = Op.TMF_REQ
    function: int = 0
    lun: int = 0
    itt: int = 0
    ref_task_tag: int = RESERVED_TAG
    cmdsn: int = 0
    exp_statsn: int = 0
    ref_cmdsn: int = 0
    exp_datasn: int = 0

    def header(self) -> bytes:
        return _TMF_REQ.pack(_b0(self), 0x80 | (self.function & 0x7F), 0, _ahs_dsl(0, len(self.data)),
                             encode_lun(self.lun), self.itt, self.ref_task_tag, self.cmdsn,
                             self.exp_statsn, self.ref_cmdsn, self.exp_datasn, R0[:8])

    @classmethod
    def decode(cls, bhs, ahs, data):
        b0, flags, _, _, lunf, itt, ref, cmdsn, esn, refsn, eds, _ = _TMF_REQ.unpack_from(bhs)
        return cls(bool(b0 & IMMEDIATE), data, flags & 0x7F, decode_lun(lunf), itt, ref, cmdsn, esn,
                   refsn, eds)


@dataclass(slots=True)
class LoginRequest(Pdu):
    opcode: ClassVar[int] = Op.LOGIN_REQ
    immediate: bool = True
    transit: bool = False
    cont: bool = False
    csg: int = 0
    nsg: int = 0
    version_max: int = 0
    version_min: int = 0
    isid: bytes = b"\0" * 6
    tsih: int = 0
    itt: int = 0
    cid: int = 0
    cmdsn: int = 0
    exp_statsn: int = 0

    def header(self) -> bytes:
        flags = (0x80 if self.transit else 0) | (0x40 if self.cont else 0) | \
            ((self.csg & 3) << 2) | (self.nsg & 3)
        return _LOGIN_REQ.pack(_b0(self), flags, self.version_max, self.version_min,
                               _ahs_dsl(0, len(self.data)), bytes(self.isid), self.tsih, self.itt,
                               self.cid, 0, self.cmdsn, self.exp_statsn, R0)

    @classmethod
    def decode(cls, bhs, ahs, data):
        b0, flags, vmax, vmin, _, isid, tsih, itt, cid, _, cmdsn, esn, _ = _LOGIN_REQ.unpack_from(bhs)
        return cls(bool(b0 & IMMEDIATE), data, bool(flags & 0x80), bool(flags & 0x40),
                   (flags >> 2) & 3, flags & 3, vmax, vmin, bytes(isid), tsih, itt, cid, cmdsn, esn)


@dataclass(slots=True)
class TextRequest(Pdu):
    opcode: ClassVar[int] = Op.TEXT_REQ
    final: bool = True
    cont: bool = False
    lun: int = 0
    itt: int = 0
    ttt: int = RESERVED_TAG
    cmdsn: int = 0
    exp_statsn: int = 0

    def header(self) -> bytes:
        flags = (0x80 if self.final else 0) | (0x40 if self.cont else 0)
        return _TEXT_REQ.pack(_b0(self), flags, 0, _ahs_dsl(0, len(self.data)), encode_lun(self.lun),
                              self.itt, self.ttt, self.cmdsn, self.exp_statsn, R0)

    @classmethod
    def decode(cls, bhs, ahs, data):
        b0, flags, _, _, lunf, itt, ttt, cmdsn, esn, _ = _TEXT_REQ.unpack_from(bhs)
        return cls(bool(b0 & IMMEDIATE), data, bool(flags & 0x80), bool(flags & 0x40), decode_lun(lunf),
                   itt, ttt, cmdsn, esn)


@dataclass(slots=True)
class LogoutRequest(Pdu):
    opcode: ClassVar[int] = Op.LOGOUT_REQ
    reason: int = 0
    itt: int = 0
    cid: int = 0
    cmdsn: int = 0
    exp_statsn: int = 0

    def header(self) -> bytes:
        return _LOGOUT_REQ.pack(_b0(self), 0x80 | (self.reason & 0x7F), 0, _ahs_dsl(0, len(self.data)),
                                0, self.itt, self.cid, 0, self.cmdsn, self.exp_statsn, R0)

    @classmethod
    def decode(cls, bhs, ahs, data):
        b0, flags, _, _, _, itt, cid, _, cmdsn, esn, _ = _LOGOUT_REQ.unpack_from(bhs)
        return cls(bool(b0 & IMMEDIATE), data, flags & 0x7F, itt, cid, cmdsn, esn)


@dataclass(slots=True)
class Snack(Pdu):
    opcode: ClassVar[int] = Op.SNACK
    type: int = 0
    lun: int = 0
    itt: int = RESERVED_TAG
    ttt: int = RESERVED_TAG
    exp_statsn: int = 0
    begrun: int = 0
    runlength: int = 0

    def header(self) -> bytes:
        return _SNACK.pack(_b0(self), 0x80 | (self.type & 0xF), 0, _ahs_dsl(0, len(self.data)),
                           encode_lun(self.lun), self.itt, self.ttt, 0, self.exp_statsn, R0[:8],
                           self.begrun, self.runlength)

    @classmethod
    def decode(cls, bhs, ahs, data):
        b0, flags, _, _, lunf, itt, ttt, _, esn, _, beg, run = _SNACK.unpack_from(bhs)
        return cls(False, data, flags & 0xF, decode_lun(lunf), itt, ttt, esn, beg, run)


# ---------------------------------------------------------------- target -> initiator

@dataclass(slots=True)
class ScsiResponse(Pdu):
    opcode: ClassVar[int] = Op.SCSI_RSP
    flags: int = 0x80
    response: int = 0
    status: int = 0
    itt: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    exp_datasn: int = 0
    bidi_residual: int = 0
    residual: int = 0

    def header(self) -> bytes:
        return _SCSI_RSP.pack(self.opcode, 0x80 | self.flags, self.response, self.status,
                              _ahs_dsl(0, len(self.data)), 0, self.itt, 0, self.statsn, self.exp_cmdsn,
                              self.max_cmdsn, self.exp_datasn, self.bidi_residual, self.residual)

    @classmethod
    def decode(cls, bhs, ahs, data):
        (_, flags, resp, status, _, _, itt, _, statsn, ecs, mcs, eds, bidi,
         resid) = _SCSI_RSP.unpack_from(bhs)
        return cls(False, data, flags, resp, status, itt, statsn, ecs, mcs, eds, bidi, resid)

    @property
    def sense(self) -> bytes:
        """The sense data of the data segment (SenseLength-prefixed)."""
        if len(self.data) < 2:
            return b""
        n = int.from_bytes(self.data[:2], "big")
        return bytes(self.data[2:2 + n])


@dataclass(slots=True)
class DataIn(Pdu):
    opcode: ClassVar[int] = Op.DATA_IN
    flags: int = 0
    status: int = 0
    lun: int = 0
    itt: int = 0
    ttt: int = RESERVED_TAG
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    datasn: int = 0
    offset: int = 0
    residual: int = 0

    def header(self) -> bytes:
        return _DATA_IN.pack(self.opcode, self.flags, 0, self.status, _ahs_dsl(0, len(self.data)),
                             encode_lun(self.lun), self.itt, self.ttt, self.statsn, self.exp_cmdsn,
                             self.max_cmdsn, self.datasn, self.offset, self.residual)

    @classmethod
    def decode(cls, bhs, ahs, data):
        (_, flags, _, status, _, lunf, itt, ttt, statsn, ecs, mcs, datasn, off,
         resid) = _DATA_IN.unpack_from(bhs)
        return cls(False, data, flags, status, decode_lun(lunf), itt, ttt, statsn, ecs, mcs, datasn, off,
                   resid)


@dataclass(slots=True)
class ReadyToTransfer(Pdu):
    opcode: ClassVar[int] = Op.R2T
    lun: int = 0
    itt: int = 0
    ttt: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    r2tsn: int = 0
    offset: int = 0
    length: int = 0

    def header(self) -> bytes:
        return _R2T.pack(self.opcode, 0x80, 0, 0, encode_lun(self.lun), self.itt, self.ttt, self.statsn,
                         self.exp_cmdsn, self.max_cmdsn, self.r2tsn, self.offset, self.length)

    @classmethod
    def decode(cls, bhs, ahs, data):
        _, _, _, _, lunf, itt, ttt, statsn, ecs, mcs, r2tsn, off, length = _R2T.unpack_from(bhs)
        return cls(False, data, decode_lun(lunf), itt, ttt, statsn, ecs, mcs, r2tsn, off, length)


@dataclass(slots=True)
class NopIn(Pdu):
    opcode: ClassVar[int] = Op.NOP_IN
    lun: int = 0
    itt: int = RESERVED_TAG
    ttt: int = RESERVED_TAG
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0

    def header(self) -> bytes:
        return _NOP_IN.pack(self.opcode, 0x80, 0, _ahs_dsl(0, len(self.data)), encode_lun(self.lun),
                            self.itt, self.ttt, self.statsn, self.exp_cmdsn, self.max_cmdsn, R0[:12])

    @classmethod
    def decode(cls, bhs, ahs, data):
        _, _, _, _, lunf, itt, ttt, statsn, ecs, mcs, _ = _NOP_IN.unpack_from(bhs)
        return cls(False, data, decode_lun(lunf), itt, ttt, statsn, ecs, mcs)


@dataclass(slots=True)
class TaskManagementResponse(Pdu):
    opcode: ClassVar[int] = Op.TMF_RSP
    response: int = 0
    itt: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0

    def header(self) -> bytes:
        return _TMF_RSP.pack(self.opcode, 0x80, self.response, 0, 0, 0, self.itt, 0, self.statsn,
                             self.exp_cmdsn, self.max_cmdsn, R0[:12])

    @classmethod
    def decode(cls, bhs, ahs, data):
        _, _, resp, _, _, _, itt, _, statsn, ecs, mcs, _ = _TMF_RSP.unpack_from(bhs)
        return cls(False, data, resp, itt, statsn, ecs, mcs)


@dataclass(slots=True)
class LoginResponse(Pdu):
    opcode: ClassVar[int] = Op.LOGIN_RSP
    transit: bool = False
    cont: bool = False
    csg: int = 0
    nsg: int = 0
    version_max: int = 0
    version_active: int = 0
    isid: bytes = b"\0" * 6
    tsih: int = 0
    itt: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    status_class: int = 0
    status_detail: int = 0

    def header(self) -> bytes:
        flags = (0x80 if self.transit else 0) | (0x40 if self.cont else 0) | \
            ((self.csg & 3) << 2) | (self.nsg & 3)
        return _LOGIN_RSP.pack(self.opcode, flags, self.version_max, self.version_active,
                               _ahs_dsl(0, len(self.data)), bytes(self.isid), self.tsih, self.itt, 0,
                               self.statsn, self.exp_cmdsn, self.max_cmdsn, self.status_class,
                               self.status_detail, R0[:10])

    @classmethod
    def decode(cls, bhs, ahs, data):
        (_, flags, vmax, vact, _, isid, tsih, itt, _, statsn, ecs, mcs, scls, sdet,
         _) = _LOGIN_RSP.unpack_from(bhs)
        return cls(False, data, bool(flags & 0x80), bool(flags & 0x40), (flags >> 2) & 3, flags & 3,
                   vmax, vact, bytes(isid), tsih, itt, statsn, ecs, mcs, scls, sdet)


@dataclass(slots=True)
class TextResponse(Pdu):
    opcode: ClassVar[int] = Op.TEXT_RSP
    final: bool = True
    cont: bool = False
    lun: int = 0
    itt: int = 0
    ttt: int = RESERVED_TAG
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0

    def header(self) -> bytes:
        flags = (0x80 if self.final else 0) | (0x40 if self.cont else 0)
        return _TEXT_RSP.pack(self.opcode, flags, 0, _ahs_dsl(0, len(self.data)), encode_lun(self.lun),
                              self.itt, self.ttt, self.statsn, self.exp_cmdsn, self.max_cmdsn, R0[:12])

    @classmethod
    def decode(cls, bhs, ahs, data):
        _, flags, _, _, lunf, itt, ttt, statsn, ecs, mcs, _ = _TEXT_RSP.unpack_from(bhs)
        return cls(False, data, bool(flags & 0x80), bool(flags & 0x40), decode_lun(lunf), itt, ttt,
                   statsn, ecs, mcs)


@dataclass(slots=True)
class LogoutResponse(Pdu):
    opcode: ClassVar[int] = Op.LOGOUT_RSP
    response: int = 0
    itt: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    time2wait: int = 0
    time2retain: int = 0

    def header(self) -> bytes:
        return _LOGOUT_RSP.pack(self.opcode, 0x80, self.response, 0, 0, 0, self.itt, 0, self.statsn,
                                self.exp_cmdsn, self.max_cmdsn, R0[:4], self.time2wait,
                                self.time2retain, 0)

    @classmethod
    def decode(cls, bhs, ahs, data):
        _, _, resp, _, _, _, itt, _, statsn, ecs, mcs, _, t2w, t2r, _ = _LOGOUT_RSP.unpack_from(bhs)
        return cls(False, data, resp, itt, statsn, ecs, mcs, t2w, t2r)


@dataclass(slots=True)
class Reject(Pdu):
    opcode: ClassVar[int] = Op.REJECT
    reason: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    datasn: int = 0

    def header(self) -> bytes:
        return _REJECT.pack(self.opcode, 0x80, self.reason, 0, _ahs_dsl(0, len(self.data)), 0,
                            RESERVED_TAG, 0, self.statsn, self.exp_cmdsn, self.max_cmdsn, self.datasn,
                            R0[:8])

    @classmethod
    def decode(cls, bhs, ahs, data):
        _, _, reason, _, _, _, _, _, statsn, ecs, mcs, datasn, _ = _REJECT.unpack_from(bhs)
        return cls(False, data, reason, statsn, ecs, mcs, datasn)


@dataclass(slots=True)
class AsyncMessage(Pdu):
    opcode: ClassVar[int] = Op.ASYNC
    lun: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    event: int = 0
    vcode: int = 0
    param1: int = 0
    param2: int = 0
    param3: int = 0

    def header(self) -> bytes:
        return _ASYNC.pack(self.opcode, 0x80, 0, _ahs_dsl(0, len(self.data)), encode_lun(self.lun),
                           RESERVED_TAG, 0, self.statsn, self.exp_cmdsn, self.max_cmdsn, self.event,
                           self.vcode, self.param1, self.param2, self.param3, 0)

    @classmethod
    def decode(cls, bhs, ahs, data):
        (_, _, _, _, lunf, _, _, statsn, ecs, mcs, event, vcode, p1, p2,
         p3, _) = _ASYNC.unpack_from(bhs)
        return cls(False, data, decode_lun(lunf), statsn, ecs, mcs, event, vcode, p1, p2, p3)


PDU_CLASSES: dict[int, type[Pdu]] = {c.opcode: c for c in (
    ScsiCommand, DataOut, NopOut, TaskManagementRequest, LoginRequest, TextRequest, LogoutRequest, Snack,
    ScsiResponse, DataIn, ReadyToTransfer, NopIn, TaskManagementResponse, LoginResponse, TextResponse,
    LogoutResponse, Reject, AsyncMessage)}


def decode_pdu(bhs: Buffer, ahs: Buffer = EMPTY, data: Buffer = EMPTY) -> Pdu:
    """Decode one PDU whose framing (lengths, digests) the reader already checked."""
    if len(bhs) < BHS_LEN:
        raise RemoteProtocolError("short basic header segment")
    opcode = bhs[0] & 0x3F
    cls = PDU_CLASSES.get(opcode)
    if cls is None:
        raise RemoteProtocolError(f"unknown opcode 0x{opcode:02x}",
                                  reject_reason=RejectReason.COMMAND_NOT_SUPPORTED, header=bytes(bhs[:48]))
    pdu = cls.decode(bhs, ahs, data)
    pdu.raw = bytes(bhs[:BHS_LEN])
    return pdu


def encode_pdu(pdu: Pdu) -> tuple[bytes, Buffer]:
    """(header with AHS, data segment) of a PDU; the framer adds padding and digests."""
    return pdu.header(), pdu.data

