"""Sense data: the CHECK CONDITION vocabulary of the device (SPC-4 4.5).

Handlers raise :class:`CheckCondition`; the device turns it into fixed-format
sense (or descriptor format when the initiator asks for it in REQUEST SENSE).
Field pointers are part of the error because initiators (and libiscsi's tests)
look at them to tell *which* CDB byte was rejected.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Sense keys (SPC-4 table 27).
NO_SENSE = 0x0
RECOVERED_ERROR = 0x1
NOT_READY = 0x2
MEDIUM_ERROR = 0x3
HARDWARE_ERROR = 0x4
ILLEGAL_REQUEST = 0x5
UNIT_ATTENTION = 0x6
DATA_PROTECT = 0x7
COPY_ABORTED = 0xA
ABORTED_COMMAND = 0xB
MISCOMPARE = 0xE


@dataclass(frozen=True, slots=True)
class Asc:
    """An additional sense code / qualifier pair with its sense key."""

    key: int
    asc: int
    ascq: int
    name: str

    def __str__(self) -> str:
        return f"{self.key:X}/{self.asc:02X}/{self.ascq:02X} {self.name}"


# The codes this device reports.
INVALID_COMMAND_OPERATION_CODE = Asc(ILLEGAL_REQUEST, 0x20, 0x00, "INVALID COMMAND OPERATION CODE")
LBA_OUT_OF_RANGE = Asc(ILLEGAL_REQUEST, 0x21, 0x00, "LOGICAL BLOCK ADDRESS OUT OF RANGE")
INVALID_FIELD_IN_CDB = Asc(ILLEGAL_REQUEST, 0x24, 0x00, "INVALID FIELD IN CDB")
LOGICAL_UNIT_NOT_SUPPORTED = Asc(ILLEGAL_REQUEST, 0x25, 0x00, "LOGICAL UNIT NOT SUPPORTED")
INVALID_FIELD_IN_PARAMETER_LIST = Asc(ILLEGAL_REQUEST, 0x26, 0x00, "INVALID FIELD IN PARAMETER LIST")
PARAMETER_LIST_LENGTH_ERROR = Asc(ILLEGAL_REQUEST, 0x1A, 0x00, "PARAMETER LIST LENGTH ERROR")
TOO_MANY_TARGET_DESCRIPTORS = Asc(ILLEGAL_REQUEST, 0x26, 0x06, "TOO MANY TARGET DESCRIPTORS")
UNSUPPORTED_TARGET_DESCRIPTOR_TYPE = Asc(ILLEGAL_REQUEST, 0x26, 0x07,
                                         "UNSUPPORTED TARGET DESCRIPTOR TYPE CODE")
TOO_MANY_SEGMENT_DESCRIPTORS = Asc(ILLEGAL_REQUEST, 0x26, 0x08, "TOO MANY SEGMENT DESCRIPTORS")
UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE = Asc(ILLEGAL_REQUEST, 0x26, 0x09,
                                          "UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE")
INVALID_FIELD_IN_COMMAND_IU = Asc(ILLEGAL_REQUEST, 0x0E, 0x03,
                                  "INVALID FIELD IN COMMAND INFORMATION UNIT")
SAVING_PARAMETERS_NOT_SUPPORTED = Asc(ILLEGAL_REQUEST, 0x39, 0x00, "SAVING PARAMETERS NOT SUPPORTED")
INSUFFICIENT_REGISTRATION_RESOURCES = Asc(ILLEGAL_REQUEST, 0x55, 0x04,
                                          "INSUFFICIENT REGISTRATION RESOURCES")
MISCOMPARE_DURING_VERIFY = Asc(MISCOMPARE, 0x1D, 0x00, "MISCOMPARE DURING VERIFY OPERATION")
WRITE_PROTECTED = Asc(DATA_PROTECT, 0x27, 0x00, "WRITE PROTECTED")
SPACE_ALLOCATION_FAILED = Asc(DATA_PROTECT, 0x27, 0x07, "SPACE ALLOCATION FAILED WRITE PROTECT")
UNRECOVERED_READ_ERROR = Asc(MEDIUM_ERROR, 0x11, 0x00, "UNRECOVERED READ ERROR")
WRITE_ERROR = Asc(MEDIUM_ERROR, 0x0C, 0x00, "WRITE ERROR")
INTERNAL_TARGET_FAILURE = Asc(HARDWARE_ERROR, 0x44, 0x00, "INTERNAL TARGET FAILURE")
NOT_READY_TRANSITIONING = Asc(NOT_READY, 0x04, 0x0A,
                              "LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION")
NOT_READY_STANDBY = Asc(NOT_READY, 0x04, 0x0B, "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE")
NOT_READY_UNAVAILABLE = Asc(NOT_READY, 0x04, 0x0C,
                            "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE")
COPY_TARGET_DEVICE_NOT_REACHABLE = Asc(COPY_ABORTED, 0x0D, 0x02, "COPY TARGET DEVICE NOT REACHABLE")
COPY_ABORTED_NO_SENSE = Asc(COPY_ABORTED, 0x00, 0x00, "COPY ABORTED")
# Unit attentions.
POWER_ON_RESET = Asc(UNIT_ATTENTION, 0x29, 0x00, "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED")
BUS_DEVICE_RESET = Asc(UNIT_ATTENTION, 0x29, 0x03, "BUS DEVICE RESET FUNCTION OCCURRED")
MODE_PARAMETERS_CHANGED = Asc(UNIT_ATTENTION, 0x2A, 0x01, "MODE PARAMETERS CHANGED")
RESERVATIONS_PREEMPTED = Asc(UNIT_ATTENTION, 0x2A, 0x03, "RESERVATIONS PREEMPTED")
RESERVATIONS_RELEASED = Asc(UNIT_ATTENTION, 0x2A, 0x04, "RESERVATIONS RELEASED")
REGISTRATIONS_PREEMPTED = Asc(UNIT_ATTENTION, 0x2A, 0x05, "REGISTRATIONS PREEMPTED")
ASYMMETRIC_ACCESS_STATE_CHANGED = Asc(UNIT_ATTENTION, 0x2A, 0x06, "ASYMMETRIC ACCESS STATE CHANGED")
CAPACITY_DATA_HAS_CHANGED = Asc(UNIT_ATTENTION, 0x2A, 0x09, "CAPACITY DATA HAS CHANGED")
INQUIRY_DATA_HAS_CHANGED = Asc(UNIT_ATTENTION, 0x3F, 0x03, "INQUIRY DATA HAS CHANGED")
REPORTED_LUNS_DATA_HAS_CHANGED = Asc(UNIT_ATTENTION, 0x3F, 0x0E, "REPORTED LUNS DATA HAS CHANGED")
NO_ADDITIONAL_SENSE = Asc(NO_SENSE, 0x00, 0x00, "NO ADDITIONAL SENSE INFORMATION")


class CheckCondition(Exception):  # noqa: N818 - named after the SCSI status it produces
    """A command ends in CHECK CONDITION with this sense.

    ``field`` is the byte offset of the offending field (in the CDB when
    ``in_cdb`` else in the parameter list) and ``bit`` the bit within it,
    reported in the sense-key specific bytes so the initiator knows what it
    got wrong.  ``information`` goes into the INFORMATION field (e.g. the
    offset of the first miscompare of COMPARE AND WRITE).
    """

    __slots__ = ("code", "field", "bit", "in_cdb", "information")

    def __init__(self, code: Asc, *, field: int | None = None, bit: int | None = None,
                 in_cdb: bool = True, information: int | None = None) -> None:
        super().__init__(str(code))
        self.code = code
        self.field = field
        self.bit = bit
        self.in_cdb = in_cdb
        self.information = information

    def sense(self, descriptor: bool = False) -> bytes:
        return build_sense(self.code, field=self.field, bit=self.bit, in_cdb=self.in_cdb,
                           information=self.information, descriptor=descriptor)


def invalid_cdb(field: int, bit: int | None = None) -> CheckCondition:
    """INVALID FIELD IN CDB pointing at ``field`` (and ``bit``)."""
    return CheckCondition(INVALID_FIELD_IN_CDB, field=field, bit=bit)


def invalid_param(field: int, bit: int | None = None) -> CheckCondition:
    """INVALID FIELD IN PARAMETER LIST pointing at ``field`` of the parameter data."""
    return CheckCondition(INVALID_FIELD_IN_PARAMETER_LIST, field=field, bit=bit, in_cdb=False)


def _sense_key_specific(code: Asc, field: int | None, bit: int | None, in_cdb: bool) -> bytes | None:
    if field is None or code.key not in (ILLEGAL_REQUEST, COPY_ABORTED):
        return None
    b0 = 0x80  # SKSV
    if in_cdb:
        b0 |= 0x40  # C/D
    if bit is not None:
        b0 |= 0x08 | (bit & 0x7)  # BPV + bit pointer
    return bytes((b0, (field >> 8) & 0xFF, field & 0xFF))


def build_sense(code: Asc, *, field: int | None = None, bit: int | None = None, in_cdb: bool = True,
                information: int | None = None, descriptor: bool = False) -> bytes:
    """Current-error sense data in fixed (70h) or descriptor (72h) format."""
    sks = _sense_key_specific(code, field, bit, in_cdb)
    if descriptor:
        descs = b""
        if information is not None:
            descs += struct.pack(">BBBBQ", 0x00, 0x0A, 0x80, 0, information)
        if sks is not None:
            descs += bytes((0x02, 0x06, 0, 0)) + sks + b"\x00"
        return bytes((0x72, code.key, code.asc, code.ascq, 0, 0, 0, len(descs))) + descs
    buf = bytearray(18)
    buf[0] = 0x70
    buf[2] = code.key
    if information is not None and information <= 0xFFFFFFFF:
        buf[0] |= 0x80  # VALID
        struct.pack_into(">I", buf, 3, information)
    buf[7] = 10
    buf[12] = code.asc
    buf[13] = code.ascq
    if sks is not None:
        buf[15:18] = sks
    return bytes(buf)


def fixed_to_descriptor(sense: bytes) -> bytes:
    """Re-encode fixed sense in descriptor format (REQUEST SENSE with DESC=1)."""
    if not sense or sense[0] & 0x7F not in (0x70, 0x71):
        return sense
    key, asc, ascq = sense[2] & 0x0F, sense[12], sense[13]
    descs = b""
    if sense[0] & 0x80:
        descs += struct.pack(">BBBBQ", 0x00, 0x0A, 0x80, 0, struct.unpack_from(">I", sense, 3)[0])
    if len(sense) >= 18 and sense[15] & 0x80:
        descs += bytes((0x02, 0x06, 0, 0)) + sense[15:18] + b"\x00"
    fmt = 0x72 if sense[0] & 0x7F == 0x70 else 0x73
    return bytes((fmt, key, asc, ascq, 0, 0, 0, len(descs))) + descs
