"""RFC 7143 numbers: opcodes, flags, status codes, reasons."""

from __future__ import annotations

from enum import IntEnum

BHS_LEN = 48
RESERVED_TAG = 0xFFFFFFFF
DIGEST_LEN = 4
# RFC 7143 §13.12: the largest data segment length that can be negotiated.
MAX_DATA_SEGMENT = (1 << 24) - 1


class Op(IntEnum):
    # initiator -> target
    NOP_OUT = 0x00
    SCSI_CMD = 0x01
    TMF_REQ = 0x02
    LOGIN_REQ = 0x03
    TEXT_REQ = 0x04
    DATA_OUT = 0x05
    LOGOUT_REQ = 0x06
    SNACK = 0x10
    # target -> initiator
    NOP_IN = 0x20
    SCSI_RSP = 0x21
    TMF_RSP = 0x22
    LOGIN_RSP = 0x23
    TEXT_RSP = 0x24
    DATA_IN = 0x25
    LOGOUT_RSP = 0x26
    R2T = 0x31
    ASYNC = 0x32
    REJECT = 0x3F


INITIATOR_OPCODES = frozenset({Op.NOP_OUT, Op.SCSI_CMD, Op.TMF_REQ, Op.LOGIN_REQ, Op.TEXT_REQ,
                               Op.DATA_OUT, Op.LOGOUT_REQ, Op.SNACK})
TARGET_OPCODES = frozenset({Op.NOP_IN, Op.SCSI_RSP, Op.TMF_RSP, Op.LOGIN_RSP, Op.TEXT_RSP,
                            Op.DATA_IN, Op.LOGOUT_RSP, Op.R2T, Op.ASYNC, Op.REJECT})

# Flags (byte 1)
F_FINAL = 0x80
F_READ = 0x40
F_WRITE = 0x20
F_ATTR_MASK = 0x07
F_CONTINUE = 0x40        # Text / Login C bit
F_TRANSIT = 0x80         # Login T bit
F_ACK = 0x40             # Data-In A bit
F_BIDI_OVERFLOW = 0x10
F_BIDI_UNDERFLOW = 0x08
F_OVERFLOW = 0x04
F_UNDERFLOW = 0x02
F_STATUS = 0x01          # Data-In S bit
IMMEDIATE = 0x40         # byte 0


class Stage(IntEnum):
    SECURITY = 0
    OPERATIONAL = 1
    FULL_FEATURE = 3


class RejectReason(IntEnum):
    DATA_DIGEST_ERROR = 0x02
    SNACK_REJECT = 0x03
    PROTOCOL_ERROR = 0x04
    COMMAND_NOT_SUPPORTED = 0x05
    IMMEDIATE_COMMAND_REJECT = 0x06
    TASK_IN_PROGRESS = 0x07
    INVALID_DATA_ACK = 0x08
    INVALID_PDU_FIELD = 0x09
    LONG_OP_REJECT = 0x0A
    WAITING_FOR_LOGOUT = 0x0C


class LoginStatus:
    """(class, detail) pairs of RFC 7143 §11.13.5."""

    SUCCESS = (0x00, 0x00)
    TARGET_MOVED_TEMPORARILY = (0x01, 0x01)
    TARGET_MOVED_PERMANENTLY = (0x01, 0x02)
    INITIATOR_ERROR = (0x02, 0x00)
    AUTHENTICATION_FAILURE = (0x02, 0x01)
    AUTHORIZATION_FAILURE = (0x02, 0x02)
    NOT_FOUND = (0x02, 0x03)
    TARGET_REMOVED = (0x02, 0x04)
    UNSUPPORTED_VERSION = (0x02, 0x05)
    TOO_MANY_CONNECTIONS = (0x02, 0x06)
    MISSING_PARAMETER = (0x02, 0x07)
    CANT_INCLUDE_IN_SESSION = (0x02, 0x08)
    SESSION_TYPE_NOT_SUPPORTED = (0x02, 0x09)
    SESSION_DOES_NOT_EXIST = (0x02, 0x0A)
    INVALID_DURING_LOGIN = (0x02, 0x0B)
    TARGET_ERROR = (0x03, 0x00)
    SERVICE_UNAVAILABLE = (0x03, 0x01)
    OUT_OF_RESOURCES = (0x03, 0x02)


class TmfFunction(IntEnum):
    ABORT_TASK = 1
    ABORT_TASK_SET = 2
    CLEAR_ACA = 3
    CLEAR_TASK_SET = 4
    LOGICAL_UNIT_RESET = 5
    TARGET_WARM_RESET = 6
    TARGET_COLD_RESET = 7
    TASK_REASSIGN = 8


class TmfResponse(IntEnum):
    COMPLETE = 0
    TASK_DOES_NOT_EXIST = 1
    LUN_DOES_NOT_EXIST = 2
    TASK_STILL_ALLEGIANT = 3
    REASSIGN_NOT_SUPPORTED = 4
    NOT_SUPPORTED = 5
    AUTHORIZATION_FAILED = 6
    REJECTED = 255


class LogoutReason(IntEnum):
    CLOSE_SESSION = 0
    CLOSE_CONNECTION = 1
    REMOVE_FOR_RECOVERY = 2


class LogoutResponse(IntEnum):
    SUCCESS = 0
    CID_NOT_FOUND = 1
    RECOVERY_NOT_SUPPORTED = 2
    CLEANUP_FAILED = 3


class AsyncEvent(IntEnum):
    SCSI_EVENT = 0
    LOGOUT_REQUEST = 1
    DROP_CONNECTION = 2
    DROP_ALL_CONNECTIONS = 3
    NEGOTIATION_REQUEST = 4
