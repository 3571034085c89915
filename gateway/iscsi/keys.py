"""Every RFC 7143 text key in one declarative table, and the key=value text codec.

A row says what a key is (type, range, default), how two offers reduce to a result, its
scope (connection or session), when it may appear (security stage, operational stage,
full feature phase) and whether it matters in a discovery session.  The negotiation code
(negotiation.py) is generic over this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from gateway.iscsi.errors import RemoteProtocolError

# RFC 7143 §6.1: key names up to 63 bytes, simple values up to 255 bytes; CHAP binary
# values may be long (we allow 2 KiB of text per value, plenty for 1024-byte challenges).
MAX_KEY_LEN = 63
MAX_VALUE_LEN = 255
MAX_BINARY_VALUE_LEN = 2048
# Bound on one negotiation's accumulated text (multi-PDU, C bit).
MAX_TEXT_BYTES = 65536


class Kind(Enum):
    BOOL = "boolean"
    NUMBER = "numerical"
    LIST = "list"          # list of values, responder picks the first it supports
    STRING = "string"      # declarative text (names, addresses)


class Reduce(Enum):
    AND = "and"
    OR = "or"
    MIN = "min"
    MAX = "max"
    LIST = "list"
    DECLARATIVE = "declarative"   # each side states its own value; nothing to agree on
    NONE = "none"                 # not negotiated in the login text (SendTargets, CHAP_*)


class Scope(Enum):
    CONNECTION = "connection"
    SESSION = "session"


class Phase(Enum):
    SECURITY = "security"         # security negotiation stage only
    OPERATIONAL = "operational"   # login (operational stage; also allowed in security stage)
    INITIATE = "initiate"         # leading login request only
    FFP = "ffp"                   # full feature phase (Text requests)
    ALL = "all"                   # login and full feature phase


@dataclass(frozen=True)
class Key:
    name: str
    kind: Kind
    default: object
    reduce: Reduce
    scope: Scope
    phase: Phase
    lo: int = 0
    hi: int = 0
    values: tuple[str, ...] = ()
    discovery: bool = False      # relevant in a discovery session
    doc: str = ""


_C, _S = Scope.CONNECTION, Scope.SESSION
U24 = (1 << 24) - 1

KEYS: dict[str, Key] = {k.name: k for k in (
    Key("HeaderDigest", Kind.LIST, "None", Reduce.LIST, _C, Phase.OPERATIONAL,
        values=("CRC32C", "None"), discovery=True, doc="CRC32C over each PDU header"),
    Key("DataDigest", Kind.LIST, "None", Reduce.LIST, _C, Phase.OPERATIONAL,
        values=("CRC32C", "None"), discovery=True, doc="CRC32C over each data segment"),
    Key("MaxConnections", Kind.NUMBER, 1, Reduce.MIN, _S, Phase.OPERATIONAL, 1, 65535,
        doc="connections per session (we support 1)"),
    Key("SendTargets", Kind.STRING, "", Reduce.NONE, _S, Phase.FFP, discovery=True,
        doc="discovery request (Text in full feature phase)"),
    Key("TargetName", Kind.STRING, "", Reduce.DECLARATIVE, _S, Phase.INITIATE),
    Key("InitiatorName", Kind.STRING, "", Reduce.DECLARATIVE, _S, Phase.INITIATE, discovery=True),
    Key("TargetAlias", Kind.STRING, "", Reduce.DECLARATIVE, _S, Phase.ALL),
    Key("InitiatorAlias", Kind.STRING, "", Reduce.DECLARATIVE, _S, Phase.ALL, discovery=True),
    Key("TargetAddress", Kind.STRING, "", Reduce.DECLARATIVE, _S, Phase.ALL),
    Key("TargetPortalGroupTag", Kind.NUMBER, 1, Reduce.DECLARATIVE, _S, Phase.INITIATE, 0, 65535),
    Key("InitialR2T", Kind.BOOL, True, Reduce.OR, _S, Phase.OPERATIONAL,
        doc="Yes: no unsolicited Data-Out PDUs"),
    Key("ImmediateData", Kind.BOOL, True, Reduce.AND, _S, Phase.OPERATIONAL,
        doc="data in the SCSI Command PDU"),
    Key("MaxRecvDataSegmentLength", Kind.NUMBER, 8192, Reduce.DECLARATIVE, _C, Phase.ALL, 512, U24,
        discovery=True, doc="largest data segment the declaring side receives"),
    Key("MaxBurstLength", Kind.NUMBER, 262144, Reduce.MIN, _S, Phase.OPERATIONAL, 512, U24,
        doc="largest solicited Data-Out sequence / Data-In sequence"),
    Key("FirstBurstLength", Kind.NUMBER, 65536, Reduce.MIN, _S, Phase.OPERATIONAL, 512, U24,
        doc="largest unsolicited data (immediate + unsolicited Data-Out)"),
    # RFC 7143 13.15/13.16/13.20: no "Irrelevant when: SessionType=Discovery" -- open-iscsi
    # refuses a discovery login answered "ErrorRecoveryLevel=Irrelevant".
    Key("DefaultTime2Wait", Kind.NUMBER, 2, Reduce.MAX, _S, Phase.OPERATIONAL, 0, 3600, discovery=True),
    Key("DefaultTime2Retain", Kind.NUMBER, 20, Reduce.MIN, _S, Phase.OPERATIONAL, 0, 3600, discovery=True),
    Key("MaxOutstandingR2T", Kind.NUMBER, 1, Reduce.MIN, _S, Phase.OPERATIONAL, 1, 65535),
    Key("DataPDUInOrder", Kind.BOOL, True, Reduce.OR, _S, Phase.OPERATIONAL),
    Key("DataSequenceInOrder", Kind.BOOL, True, Reduce.OR, _S, Phase.OPERATIONAL),
    Key("ErrorRecoveryLevel", Kind.NUMBER, 0, Reduce.MIN, _S, Phase.OPERATIONAL, 0, 2, discovery=True,
        doc="we implement ERL 0 only"),
    Key("SessionType", Kind.LIST, "Normal", Reduce.DECLARATIVE, _S, Phase.INITIATE,
        values=("Discovery", "Normal"), discovery=True),
    Key("AuthMethod", Kind.LIST, "None", Reduce.LIST, _C, Phase.SECURITY,
        values=("CHAP", "None"), discovery=True),
    Key("CHAP_A", Kind.LIST, "", Reduce.NONE, _C, Phase.SECURITY, discovery=True),
    Key("CHAP_I", Kind.NUMBER, 0, Reduce.NONE, _C, Phase.SECURITY, 0, 255, discovery=True),
    Key("CHAP_C", Kind.STRING, "", Reduce.NONE, _C, Phase.SECURITY, discovery=True),
    Key("CHAP_N", Kind.STRING, "", Reduce.NONE, _C, Phase.SECURITY, discovery=True),
    Key("CHAP_R", Kind.STRING, "", Reduce.NONE, _C, Phase.SECURITY, discovery=True),
    # Obsolete markers (RFC 7143 §13.25): we accept only "No"; intervals are then irrelevant.
    Key("OFMarker", Kind.BOOL, False, Reduce.AND, _C, Phase.OPERATIONAL),
    Key("IFMarker", Kind.BOOL, False, Reduce.AND, _C, Phase.OPERATIONAL),
    Key("OFMarkInt", Kind.NUMBER, 2048, Reduce.NONE, _C, Phase.OPERATIONAL, 1, 65535),
    Key("IFMarkInt", Kind.NUMBER, 2048, Reduce.NONE, _C, Phase.OPERATIONAL, 1, 65535),
    # RFC 7144 / 7145 keys
    Key("TaskReporting", Kind.LIST, "RFC3720", Reduce.LIST, _S, Phase.OPERATIONAL,
        values=("RFC3720",)),
    Key("iSCSIProtocolLevel", Kind.NUMBER, 0, Reduce.MIN, _S, Phase.OPERATIONAL, 0, 31),
    Key("RDMAExtensions", Kind.BOOL, False, Reduce.AND, _S, Phase.OPERATIONAL),
    Key("TargetRecvDataSegmentLength", Kind.NUMBER, 8192, Reduce.NONE, _C, Phase.OPERATIONAL, 512, U24),
    Key("InitiatorRecvDataSegmentLength", Kind.NUMBER, 8192, Reduce.NONE, _C, Phase.OPERATIONAL, 512,
        U24),
)}

# Keys whose value may be long (binary CHAP values, names, addresses).
LONG_VALUE_KEYS = frozenset({"CHAP_C", "CHAP_R", "CHAP_N", "CHAP_I", "CHAP_A"})


def parse_text(data: bytes | bytearray | memoryview) -> list[tuple[str, str]]:
    """Split NUL-terminated key=value pairs; RemoteProtocolError on malformed text.

    Trailing padding NULs are ignored.  Values are decoded as UTF-8 (RFC 7143 §6.1).
    """
    raw = bytes(data)
    if len(raw) > MAX_TEXT_BYTES:
        raise RemoteProtocolError(f"text of {len(raw)} bytes exceeds {MAX_TEXT_BYTES}")
    pairs: list[tuple[str, str]] = []
    for item in raw.split(b"\0"):
        if not item:
            continue
        key, sep, value = item.partition(b"=")
        if not sep or not key:
            raise RemoteProtocolError(f"malformed key=value pair {item[:80]!r}")
        if len(key) > MAX_KEY_LEN:
            raise RemoteProtocolError(f"key name of {len(key)} bytes exceeds {MAX_KEY_LEN}")
        try:
            k, v = key.decode("ascii"), value.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError("text key or value is not valid UTF-8") from None
        limit = MAX_BINARY_VALUE_LEN if k in LONG_VALUE_KEYS else MAX_VALUE_LEN
        if len(value) > limit and k not in ("TargetAddress",):
            raise RemoteProtocolError(f"value of {k} is {len(value)} bytes, more than {limit}")
        pairs.append((k, v))
    return pairs


def encode_text(pairs: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> bytes:
    """key=value\\0 ... (the framer pads)."""
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs)


def format_value(key: Key, value: object) -> str:
    if key.kind is Kind.BOOL:
        return "Yes" if value else "No"
    return str(value)


def parse_bool(text: str) -> bool | None:
    return {"Yes": True, "No": False}.get(text)


def parse_number(text: str) -> int | None:
    """Decimal or 0x-hex numbers (RFC 7143 §6.1 numerical values); None if invalid."""
    try:
        if text.startswith(("0x", "0X")):
            return int(text[2:], 16)
        if text.isdigit() and len(text) <= 20:
            return int(text, 10)
    except ValueError:
        return None
    return None
