"""Text requests in full feature phase: SendTargets and declarative keys.

SendTargets answers list every portal of every gateway with its TPG tag (so one discovery
address finds every path); the caller provides the catalogue as plain data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from gateway.iscsi.constants import RejectReason
from gateway.iscsi.errors import RemoteProtocolError
from gateway.iscsi.keys import KEYS, parse_number
from gateway.iscsi.negotiation import IRRELEVANT, NOT_UNDERSTOOD, REJECT


@dataclass(frozen=True)
class PortalAddress:
    """One portal as announced: address (IPv4 or IPv6), port and TPG tag."""

    address: str
    port: int
    tpgt: int

    def text(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port},{self.tpgt}"


# target name -> its portals (in announcement order)
Catalogue = list[tuple[str, list[PortalAddress]]]
# (value of SendTargets) -> catalogue; value is "All", an iSCSI name or "" (current target)
CatalogueLookup = Callable[[str], Catalogue]

_NAME = re.compile(r"^(iqn\.\d{4}-\d{2}\.[^ ]+|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16,32})$")


def valid_iscsi_name(name: str) -> bool:
    """iqn./eui./naa. names (RFC 7143 §4.2.7), at most 223 bytes."""
    return len(name.encode()) <= 223 and bool(_NAME.match(name))


def send_targets_text(value: str, lookup: CatalogueLookup) -> list[tuple[str, str]]:
    """The answer to SendTargets=<value>; an invalid value is a protocol error (Reject)."""
    if value != "All" and value != "" and not valid_iscsi_name(value):
        raise RemoteProtocolError(f"invalid SendTargets value {value[:64]!r}",
                                  reject_reason=RejectReason.PROTOCOL_ERROR)
    out: list[tuple[str, str]] = []
    for name, portals in lookup(value):
        out.append(("TargetName", name))
        out.extend(("TargetAddress", p.text()) for p in portals)
    return out


def ffp_text_answer(pairs: list[tuple[str, str]], discovery: bool, lookup: CatalogueLookup
                    ) -> tuple[list[tuple[str, str]], int | None]:
    """Answer a full-feature-phase Text request.

    Returns (pairs to send, new MaxRecvDataSegmentLength of the initiator or None).
    """
    out: list[tuple[str, str]] = []
    mrdsl = None
    for name, value in pairs:
        if name == "SendTargets":
            out += send_targets_text(value, lookup)
            continue
        key = KEYS.get(name)
        if key is None:
            if not name.startswith(("X-", "X#")):
                # Not a key of RFC 7143 at all (e.g. a misspelt SendTargets): reject the
                # request so the initiator cannot mistake it for an empty discovery answer.
                raise RemoteProtocolError(f"unknown text key {name[:64]!r}",
                                          reject_reason=RejectReason.PROTOCOL_ERROR)
            out.append((name, NOT_UNDERSTOOD))
        elif name == "MaxRecvDataSegmentLength":
            n = parse_number(value)
            if n is None or not key.lo <= n <= key.hi:
                out.append((name, REJECT))
            else:
                mrdsl = n
        elif name in ("InitiatorAlias",):
            continue
        else:
            # Everything else is login-only (RFC 7143 §13: "LO"/"IO" keys).
            out.append((name, IRRELEVANT if discovery and not key.discovery else REJECT))
    return out, mrdsl
