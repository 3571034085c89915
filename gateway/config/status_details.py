"""What a gateway publishes about its live state, in ``GatewayStatus.details``.

The gateway daemon fills a ``GatewayDetails`` and reports ``details.to_dict()`` with every
heartbeat; the API reads it back with ``GatewayDetails.from_dict`` to answer ``_ping``,
``gatewayinfo``, ``targetinfo``, ``clientinfo``, the disk status, and to refuse changes
that would pull a disk from under a logged-in initiator.  Readers are defensive: a field a
gateway does not send (an older or newer daemon) reads as "unknown", a malformed part is
dropped, and a gateway whose heartbeat is older than ``gateway_dead_after`` counts as down
whatever it last said.

The dictionary (schema 1)::

    {
      "schema": 1,
      "software_version": "0.1.0",
      "checkconf": "<settings.checkconf_hash() of the gateway>",
      "ip_addresses": ["192.168.1.10", "fd00::10"],   # host addresses, no loopback/link-local
      "portals": [                                      # iSCSI listeners of this gateway
        {"address": "192.168.1.10", "port": 3260, "listening": true}
      ],
      "targets": {                                      # targets this gateway serves
        "<target iqn>": {
          "sessions": 2,                                # logged-in sessions through this gateway
          "clients": {                                  # initiators logged in (any ACL mode)
            "<initiator name>": {"alias": "host1", "ip_addresses": ["192.168.1.50"], "sessions": 1}
          }
        }
      },
      "disks": {                                        # disks this gateway exposes
        "<pool>/<image>": {
          "size": 10737418240,                          # bytes, as the gateway exposes it now
          "lock_owner": true,                           # holds the image's exclusive lock
          "state": "ok",                                # ok | degraded | error
          "message": "",
          "lock_lost_cnt": 0, "conn_lost_cnt": 0, "cmd_timed_out_cnt": 0
        }
      }
    }

Reporting rules for the daemon: report with ``announce=True`` when ``applied_version``
changes *or* a disk's ``size`` changes (the API waits on both); otherwise heartbeats go
without announce.  On a clean stop, report once more with ``heartbeat=0`` so readers see
the gateway as down at once instead of after ``gateway_dead_after``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

DETAILS_SCHEMA = 1
DISK_STATES = ("ok", "degraded", "error")


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return value


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class PortalState:
    """One iSCSI listener of the gateway."""

    address: str
    port: int = 3260
    listening: bool = False


@dataclass
class ClientSessions:
    """An initiator logged in to a target through this gateway."""

    alias: str = ""
    ip_addresses: list[str] = field(default_factory=list)
    sessions: int = 1


@dataclass
class TargetSessions:
    """Sessions of one target on this gateway."""

    sessions: int = 0
    clients: dict[str, ClientSessions] = field(default_factory=dict)


@dataclass
class DiskState:
    """A disk as this gateway exposes it; ``size`` None = not reported."""

    size: int | None = None
    lock_owner: bool = False
    state: str = "ok"
    message: str = ""
    lock_lost_cnt: int = 0
    conn_lost_cnt: int = 0
    cmd_timed_out_cnt: int = 0


@dataclass
class GatewayDetails:
    """The whole ``details`` dictionary; ``None`` fields were not reported."""

    schema: int = DETAILS_SCHEMA
    software_version: str = ""
    checkconf: str = ""
    ip_addresses: list[str] = field(default_factory=list)
    portals: list[PortalState] | None = None
    targets: dict[str, TargetSessions] | None = None
    disks: dict[str, DiskState] | None = None

    # ---- the daemon's side ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        return {k: v for k, v in out.items() if v is not None}

    # ---- the readers' side ------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: Any) -> GatewayDetails:
        """Parse what a gateway reported; anything malformed is left out, never raised."""
        raw = _mapping(raw)
        portals = None
        if isinstance(raw.get("portals"), list):
            portals = []
            for p in raw["portals"]:
                p = _mapping(p)
                if isinstance(p.get("address"), str):
                    portals.append(PortalState(p["address"], _int(p.get("port"), 3260),
                                               p.get("listening") is True))
        targets = None
        if isinstance(raw.get("targets"), Mapping):
            targets = {}
            for iqn, t in raw["targets"].items():
                if not isinstance(iqn, str) or not isinstance(t, Mapping):
                    continue
                clients = {}
                for name, c in _mapping(t.get("clients")).items():
                    if isinstance(name, str) and isinstance(c, Mapping):
                        clients[name] = ClientSessions(_str(c.get("alias")), _strings(c.get("ip_addresses")),
                                                       max(_int(c.get("sessions"), 1), 0))
                sessions = _int(t.get("sessions"), sum(c.sessions for c in clients.values()))
                targets[iqn] = TargetSessions(max(sessions, 0), clients)
        disks = None
        if isinstance(raw.get("disks"), Mapping):
            disks = {}
            for name, d in raw["disks"].items():
                if not isinstance(name, str) or not isinstance(d, Mapping):
                    continue
                size = d.get("size")
                state = _str(d.get("state"), "ok")
                disks[name] = DiskState(
                    size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
                    d.get("lock_owner") is True, state if state in DISK_STATES else "error",
                    _str(d.get("message")), _int(d.get("lock_lost_cnt")), _int(d.get("conn_lost_cnt")),
                    _int(d.get("cmd_timed_out_cnt")))
        return cls(schema=_int(raw.get("schema"), DETAILS_SCHEMA),
                   software_version=_str(raw.get("software_version")),
                   checkconf=_str(raw.get("checkconf")),
                   ip_addresses=_strings(raw.get("ip_addresses")),
                   portals=portals, targets=targets, disks=disks)

    @property
    def iscsi_listening(self) -> bool | None:
        """True when some portal listens; None when the gateway did not say."""
        if self.portals is None:
            return None
        return any(p.listening for p in self.portals)

    def sessions(self, target: str | None = None) -> int:
        """Logged-in sessions on this gateway (one target, or all)."""
        if not self.targets:
            return 0
        if target is not None:
            t = self.targets.get(target)
            return t.sessions if t else 0
        return sum(t.sessions for t in self.targets.values())

    def logged_in(self, target: str, initiator: str) -> ClientSessions | None:
        t = (self.targets or {}).get(target)
        return t.clients.get(initiator) if t else None

    def initiators(self, target: str) -> list[str]:
        t = (self.targets or {}).get(target)
        return sorted(t.clients) if t else []


def host_addresses() -> list[str]:
    """This host's addresses without loopback and link-local ones (``sysinfo/ip_addresses``,
    and what a gateway reports in ``ip_addresses``)."""
    import ipaddress
    import json
    import socket
    import subprocess

    found: list[str] = []
    try:
        out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, timeout=5, check=True).stdout
        for iface in json.loads(out):
            for info in iface.get("addr_info", []):
                found.append(str(info.get("local", "")))
    except (OSError, ValueError, subprocess.SubprocessError):
        try:
            found = [str(i[4][0]) for i in socket.getaddrinfo(socket.gethostname(), None)]
        except OSError:
            found = []
    out_list: list[str] = []
    for text in found:
        try:
            addr = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        if addr.is_loopback or addr.is_link_local or str(addr) in out_list:
            continue
        out_list.append(str(addr))
    return out_list
