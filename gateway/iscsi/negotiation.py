"""Operational parameter negotiation (RFC 7143 §6, §13), generic over the key table.

The target answers each key the initiator offers (result, ``Reject``, ``Irrelevant`` or
``NotUnderstood``), and proposes on its own the keys whose default result would exceed
what the target is configured to accept (e.g. ``ImmediateData=No``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.iscsi.constants import LoginStatus
from gateway.iscsi.errors import RemoteProtocolError
from gateway.iscsi.keys import KEYS, Key, Kind, Phase, Reduce, format_value, parse_bool, parse_number

NOT_UNDERSTOOD = "NotUnderstood"
IRRELEVANT = "Irrelevant"
REJECT = "Reject"

# Keys the login state machine handles itself (identity, security).
LOGIN_HANDLED = frozenset({"InitiatorName", "TargetName", "SessionType", "AuthMethod", "CHAP_A",
                           "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R", "InitiatorAlias"})


@dataclass
class TargetOffers:
    """What this target accepts (from its target controls); defaults follow ceph-iscsi."""

    max_recv_data_segment_length: int = 262144
    max_xmit_data_segment_length: int = 262144
    max_burst_length: int = 524288
    first_burst_length: int = 262144
    immediate_data: bool = True
    initial_r2t: bool = True
    max_outstanding_r2t: int = 1
    header_digests: tuple[str, ...] = ("CRC32C", "None")
    data_digests: tuple[str, ...] = ("CRC32C", "None")
    max_connections: int = 1
    error_recovery_level: int = 0
    default_time2wait: int = 2
    default_time2retain: int = 20

    def value(self, key: str) -> object:
        return {
            "MaxConnections": self.max_connections,
            "InitialR2T": self.initial_r2t,
            "ImmediateData": self.immediate_data,
            "MaxBurstLength": self.max_burst_length,
            "FirstBurstLength": min(self.first_burst_length, self.max_burst_length),
            "DefaultTime2Wait": self.default_time2wait,
            "DefaultTime2Retain": self.default_time2retain,
            "MaxOutstandingR2T": self.max_outstanding_r2t,
            "DataPDUInOrder": True,
            "DataSequenceInOrder": True,
            "ErrorRecoveryLevel": self.error_recovery_level,
            "OFMarker": False,
            "IFMarker": False,
            "RDMAExtensions": False,
            "iSCSIProtocolLevel": 1,
        }.get(key, KEYS[key].default)

    def list_values(self, key: str) -> tuple[str, ...]:
        if key == "HeaderDigest":
            return self.header_digests
        if key == "DataDigest":
            return self.data_digests
        return KEYS[key].values


@dataclass
class SessionParams:
    """The negotiated result (what both sides now use)."""

    header_digest: bool = False
    data_digest: bool = False
    max_connections: int = 1
    initial_r2t: bool = True
    immediate_data: bool = True
    max_burst_length: int = 262144
    first_burst_length: int = 65536
    default_time2wait: int = 2
    default_time2retain: int = 20
    max_outstanding_r2t: int = 1
    error_recovery_level: int = 0
    # What the initiator accepts per PDU (capped by our max_xmit) and what we accept.
    max_xmit_data_segment_length: int = 8192
    max_recv_data_segment_length: int = 8192
    initiator_alias: str = ""


_REDUCERS = {
    Reduce.AND: lambda a, b: a and b,
    Reduce.OR: lambda a, b: a or b,
    Reduce.MIN: min,
    Reduce.MAX: max,
}

_RESULT_FIELDS = {
    "MaxConnections": "max_connections", "InitialR2T": "initial_r2t", "ImmediateData": "immediate_data",
    "MaxBurstLength": "max_burst_length", "FirstBurstLength": "first_burst_length",
    "DefaultTime2Wait": "default_time2wait", "DefaultTime2Retain": "default_time2retain",
    "MaxOutstandingR2T": "max_outstanding_r2t", "ErrorRecoveryLevel": "error_recovery_level",
}


@dataclass
class TargetNegotiation:
    """Target side of the key negotiation of one login (or one Text exchange in FFP)."""

    offers: TargetOffers
    discovery: bool = False
    results: dict[str, object] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    proposed: dict[str, object] = field(default_factory=dict)
    declared_mrdsl: bool = False
    initiator_mrdsl: int = 8192

    def respond(self, pairs: list[tuple[str, str]], stage_is_security: bool = False) -> list[tuple[str, str]]:
        """Answers to the initiator's operational keys (identity/security keys excluded)."""
        out: list[tuple[str, str]] = []
        for name, value in pairs:
            if name in LOGIN_HANDLED:
                continue
            if name in self.proposed:
                self._accept_answer(name, value)
                continue
            if name in self.seen:
                raise RemoteProtocolError(f"key {name} offered twice",
                                          login_status=LoginStatus.INITIATOR_ERROR)
            self.seen.add(name)
            answer = self._answer(name, value)
            if answer is not None:
                out.append((name, answer))
        return out

    def _answer(self, name: str, value: str) -> str | None:
        key = KEYS.get(name)
        if key is None:
            return NOT_UNDERSTOOD
        if key.phase is Phase.SECURITY:
            raise RemoteProtocolError(f"security key {name} outside the security stage",
                                      login_status=LoginStatus.INITIATOR_ERROR)
        if key.phase is Phase.FFP or key.reduce is Reduce.NONE:
            return IRRELEVANT
        if self.discovery and not key.discovery:
            return IRRELEVANT
        if name == "MaxRecvDataSegmentLength":
            n = parse_number(value)
            if n is None or not key.lo <= n <= key.hi:
                return REJECT
            self.initiator_mrdsl = n
            return None
        if key.reduce is Reduce.DECLARATIVE:
            if name in ("TargetAlias", "TargetAddress", "TargetPortalGroupTag"):
                return IRRELEVANT
            self.results[name] = value
            return None
        if key.kind is Kind.LIST:
            ours = self.offers.list_values(name)
            for item in value.split(","):
                if item in ours:
                    self.results[name] = item
                    return item
            return REJECT
        parsed = self._parse(key, value)
        if parsed is None:
            return REJECT
        result = _REDUCERS[key.reduce](parsed, self.offers.value(name))
        self.results[name] = result
        return format_value(key, result)

    @staticmethod
    def _parse(key: Key, value: str) -> object | None:
        if key.kind is Kind.BOOL:
            return parse_bool(value)
        n = parse_number(value)
        if n is None or not key.lo <= n <= key.hi:
            return None
        return n

    def _accept_answer(self, name: str, value: str) -> None:
        """The initiator's answer to a key we proposed."""
        key = KEYS[name]
        ours = self.proposed.pop(name)
        self.seen.add(name)
        parsed = self._parse(key, value)
        if parsed is None:
            # Reject/Irrelevant/garbage: the default stays, which we cannot accept.
            raise RemoteProtocolError(f"initiator refused {name}={format_value(key, ours)}",
                                      login_status=LoginStatus.INITIATOR_ERROR)
        if _REDUCERS[key.reduce](parsed, ours) != parsed:
            raise RemoteProtocolError(f"initiator answered {name}={value}, not a valid result",
                                      login_status=LoginStatus.INITIATOR_ERROR)
        self.results[name] = parsed

    def declarations(self) -> list[tuple[str, str]]:
        """Our MaxRecvDataSegmentLength, once per login."""
        if self.declared_mrdsl:
            return []
        self.declared_mrdsl = True
        return [("MaxRecvDataSegmentLength", str(self.offers.max_recv_data_segment_length))]

    def proposals(self) -> list[tuple[str, str]]:
        """Keys the initiator left at a default that we cannot accept: propose ours."""
        if self.discovery:
            return []
        out = []
        for name in ("ImmediateData", "MaxBurstLength", "FirstBurstLength", "MaxOutstandingR2T"):
            if name in self.seen or name in self.proposed:
                continue
            key = KEYS[name]
            ours = self.offers.value(name)
            if _REDUCERS[key.reduce](key.default, ours) != key.default:
                self.proposed[name] = ours
                out.append((name, format_value(key, ours)))
        return out

    @property
    def waiting_for_answers(self) -> bool:
        return bool(self.proposed)

    def result(self) -> SessionParams:
        p = SessionParams()
        for name, attr in _RESULT_FIELDS.items():
            if name in self.results:
                setattr(p, attr, self.results[name])
        p.header_digest = self.results.get("HeaderDigest") == "CRC32C"
        p.data_digest = self.results.get("DataDigest") == "CRC32C"
        if p.first_burst_length > p.max_burst_length:
            p.first_burst_length = p.max_burst_length
        p.max_recv_data_segment_length = self.offers.max_recv_data_segment_length
        p.max_xmit_data_segment_length = min(self.initiator_mrdsl, self.offers.max_xmit_data_segment_length)
        p.initiator_alias = str(self.results.get("InitiatorAlias", ""))
        return p
