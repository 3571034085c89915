"""A snapshot of everything gwcli shows, read from the API and parsed tolerantly.

The config document (``GET /api/config``, ceph-iscsi's schema 11) drives the tree; per-disk
details, gateway liveness, client sessions and cluster facts come from further calls.  A
call that fails or a field that is missing leaves a value "unknown" instead of failing the
shell: an older or newer API still gets a usable tree.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gwcli.api import GatewayApi
from gwcli.transport import ApiError

log = logging.getLogger(__name__)

GATEWAY_STATES = ("UP", "DOWN", "PARTIAL", "UNAUTHORIZED", "FORBIDDEN", "UNKNOWN")
# librbd feature bits (rbd.RBD_FEATURE_*), named as ceph-iscsi's disk info listed them.
RBD_FEATURES = (
    (1, "RBD_FEATURE_LAYERING"), (2, "RBD_FEATURE_STRIPINGV2"), (4, "RBD_FEATURE_EXCLUSIVE_LOCK"),
    (8, "RBD_FEATURE_OBJECT_MAP"), (16, "RBD_FEATURE_FAST_DIFF"), (32, "RBD_FEATURE_DEEP_FLATTEN"),
    (64, "RBD_FEATURE_JOURNALING"), (128, "RBD_FEATURE_DATA_POOL"), (256, "RBD_FEATURE_OPERATIONS"),
    (512, "RBD_FEATURE_MIGRATING"), (1024, "RBD_FEATURE_NON_PRIMARY"),
)
_SIZE_SUFFIX = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


@dataclass
class DiskView:
    name: str
    pool: str
    image: str
    config: dict[str, Any] = field(default_factory=dict)
    size: int | None = None
    features: list[str] = field(default_factory=list)
    snapshots: list[tuple[str, int | None]] = field(default_factory=list)
    state: str = "Unknown"
    lock_owner: str = "Unknown"
    exists: bool = True
    qos: dict[str, Any] = field(default_factory=dict)
    parent: str = ""
    data_pool: str = ""

    @property
    def owner(self) -> str:
        return str(self.config.get("owner", "") or "")

    @property
    def snapshot_names(self) -> list[str]:
        return [name for name, _ in self.snapshots]


@dataclass
class GatewayView:
    name: str
    state: str = "UNKNOWN"
    iscsi: str = "UNKNOWN"
    applied_version: int | None = None
    health: str = ""
    message: str = ""
    heartbeat_age: float | None = None
    metrics_url: str = ""


@dataclass
class SessionView:
    logged_in: list[str] = field(default_factory=list)
    ip_address: list[str] = field(default_factory=list)
    alias: str = ""


@dataclass
class PoolView:
    name: str
    type: str = "unknown"
    desc: str = "?"
    max_bytes: int | None = None
    used_bytes: int | None = None


@dataclass
class ClusterView:
    name: str
    available: bool = False
    version: str = ""
    health: str = "UNKNOWN"
    checks: list[str] = field(default_factory=list)
    mons: int | None = None
    quorum: list[str] = field(default_factory=list)
    osds: int | None = None
    osds_up: int | None = None
    osds_in: int | None = None
    raw_bytes: int | None = None
    pools: dict[str, PoolView] = field(default_factory=dict)
    conf: str = ""
    client_name: str = ""


@dataclass
class View:
    config: dict[str, Any]
    disks: dict[str, DiskView] = field(default_factory=dict)
    gateways: dict[str, GatewayView] = field(default_factory=dict)
    sessions: dict[tuple[str, str], SessionView] = field(default_factory=dict)
    cluster: ClusterView = field(default_factory=lambda: ClusterView("ceph"))
    status_known: bool = False

    @property
    def targets(self) -> dict[str, dict[str, Any]]:
        return _dict(self.config.get("targets"))

    def down_gateways(self) -> list[str]:
        return sorted(name for name, gw in self.gateways.items() if gw.state != "UP")


# ---- parsing helpers ----------------------------------------------------------------------
def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        text = value.strip().upper().rstrip("B")
        if text.isdigit():
            return int(text)
        if text[:-1].isdigit() and text[-1:] in _SIZE_SUFFIX:
            return int(text[:-1]) * _SIZE_SUFFIX[text[-1]]
    return None


def feature_names(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    bits = _int(value)
    if bits is None:
        return []
    return [name for bit, name in RBD_FEATURES if bits & bit]


def parse_disk(name: str, config: Mapping[str, Any], detail: Mapping[str, Any] | None,
               missing: bool = False) -> DiskView:
    """One disk from its config entry and ``GET /api/disk`` (None when that call failed)."""
    pool, _, image = name.partition("/")
    disk = DiskView(name, str(config.get("pool", pool)), str(config.get("image", image)), dict(config))
    if missing:
        disk.exists = False
        disk.state = "NOT FOUND"
        return disk
    if detail is None:
        return disk
    status = _dict(detail.get("status"))
    disk.state = str(status.get("state") or detail.get("state") or "Unknown")
    disk.lock_owner = str(status.get("lock_owner") or "Unknown")
    if "image_info" in detail:  # the API's image facts; null when the RBD image is gone
        if not isinstance(detail["image_info"], Mapping):
            disk.exists = False
            return disk
        detail = {**detail, **detail["image_info"]}
    disk.size = _int(detail.get("size"))
    disk.features = feature_names(detail.get("features"))
    for snap in detail.get("snapshots") or []:
        if isinstance(snap, Mapping):
            disk.snapshots.append((str(snap.get("name", "")), _int(snap.get("size"))))
        else:
            disk.snapshots.append((str(snap), None))
    if detail.get("exists") is False:
        disk.exists = False
    disk.qos = _dict(detail.get("qos"))
    parent = detail.get("parent")
    if isinstance(parent, Mapping):
        parent = f"{parent.get('pool', '')}/{parent.get('image', '')}@{parent.get('snapshot', '')}"
    disk.parent = str(parent or "")
    disk.data_pool = str(detail.get("data_pool") or "")
    if not disk.config.get("owner") and detail.get("owner"):
        disk.config["owner"] = detail["owner"]
    return disk


def parse_gateway_status(body: Any, names: list[str]) -> dict[str, GatewayView]:
    """Gateway liveness from ``GET /api/status``; a configured gateway with no report is DOWN.

    Each entry may carry a ceph-iscsi ``state`` word (UP, PARTIAL...), the API's apply state
    (``applied``/``pending``: alive, ``down``), or ``alive``; ``health`` (``ok``,
    ``degraded``, ``error``) turns an alive gateway PARTIAL when not ok.
    """
    entries: Any = body.get("gateways", body) if isinstance(body, Mapping) else body
    if isinstance(entries, list):
        entries = {str(e.get("gateway") or e.get("name")): e for e in entries if isinstance(e, Mapping)}
    entries = _dict(entries)
    out = {}
    for name in sorted(set(names)):
        entry = entries.get(name)
        gw = GatewayView(name)
        if not isinstance(entry, Mapping):
            gw.state = "DOWN"
            gw.iscsi = "UNKNOWN"
            gw.message = "never reported"
            out[name] = gw
            continue
        health = str(entry.get("health", "") or "").lower()
        word = str(entry.get("state", "") or "")
        alive = entry.get("alive")
        if word.lower() in ("applied", "pending", "up", "alive"):  # the API's apply states
            alive = True
        elif word.lower() == "down":
            alive = False
        if word.upper() in GATEWAY_STATES and word.upper() != "UP":
            state = word.upper()
        elif alive is False:
            state = "DOWN"
        elif alive is None and not word:
            state = "UNKNOWN" if "health" not in entry else ("UP" if health == "ok" else "PARTIAL")
        else:
            state = "UP" if health in ("", "ok") else "PARTIAL"
        gw.state = state
        gw.iscsi = {"UP": "UP", "PARTIAL": "DOWN" if health == "error" else "DEGRADED"}.get(state, "UNKNOWN")
        gw.applied_version = _int(entry.get("applied_version"))
        gw.health = health
        gw.message = str(entry.get("message", "") or "")
        age = entry.get("heartbeat_age", entry.get("age"))
        gw.heartbeat_age = float(age) if isinstance(age, (int, float)) and not isinstance(age, bool) else None
        gw.metrics_url = str(entry.get("metrics_url", "") or "")
        out[name] = gw
    return out


def parse_session(body: Any) -> SessionView:
    raw = _dict(body)
    state = raw.get("state")
    logged: list[str] = []
    if isinstance(state, Mapping):
        value = state.get("LOGGED_IN") or []
        logged = [value] if isinstance(value, str) else [str(v) for v in value]
    elif isinstance(state, str) and state.upper() == "LOGGED_IN":
        logged = ["?"]
    ips = raw.get("ip_address") or []
    return SessionView(logged, [ips] if isinstance(ips, str) else [str(ip) for ip in ips],
                       str(raw.get("alias", "") or ""))


def parse_cluster(body: Any, default_name: str) -> ClusterView:
    raw = _dict(body)
    if not raw:
        return ClusterView(default_name)
    health = raw.get("health")
    cluster = ClusterView(str(raw.get("name") or default_name), available=True,
                          version=str(raw.get("version", "") or ""))
    if isinstance(health, Mapping):
        cluster.health = str(health.get("status", "UNKNOWN"))
        checks = health.get("checks") or []
        if isinstance(checks, Mapping):
            checks = [c.get("summary", {}).get("message", k) if isinstance(c, Mapping) else str(c)
                      for k, c in checks.items()]
        cluster.checks = [str(c) for c in checks]
    elif isinstance(health, str):
        cluster.health = health
    mons = _dict(raw.get("mons"))
    cluster.mons = _int(mons.get("total"))
    cluster.quorum = [str(q) for q in mons.get("quorum") or []]
    osds = _dict(raw.get("osds"))
    cluster.osds, cluster.osds_up, cluster.osds_in = (_int(osds.get(k)) for k in ("total", "up", "in"))
    cluster.raw_bytes = _int(raw.get("raw_bytes"))
    cluster.conf = str(raw.get("conf", "") or "")
    cluster.client_name = str(raw.get("client_name", "") or "")
    for name, p in _dict(raw.get("pools")).items():
        p = _dict(p)
        kind = str(p.get("type", "unknown"))
        if p.get("desc"):
            desc = str(p["desc"])
        elif kind == "erasure":
            desc = f"{p.get('k', '?')}+{p.get('m', '?')}"
        else:
            desc = f"x{p.get('size', '?')}"
        cluster.pools[name] = PoolView(name, kind, desc, _int(p.get("max_avail", p.get("max_bytes"))),
                                       _int(p.get("used_bytes", p.get("bytes_used"))))
    return cluster


# ---- loading ----------------------------------------------------------------------------
def load(api: GatewayApi, cluster_name: str = "ceph", threads: int = 8) -> View:
    """Read everything the tree shows.  Only ``/api/config`` failing is an error."""
    config = api.config()
    view = View(config)
    disks = _dict(config.get("disks"))
    clients = [(iqn, c) for iqn, t in view.targets.items() for c in _dict(_dict(t).get("clients"))]

    def disk_detail(name: str) -> tuple[dict[str, Any] | None, bool]:
        try:
            return api.disk(name), False
        except ApiError as e:
            if e.status == 404:
                return None, True
            log.debug("disk %s details unavailable: %s", name, e)
            return None, False

    def session(key: tuple[str, str]) -> SessionView:
        try:
            return parse_session(api.client_info(*key))
        except ApiError:
            return SessionView()

    def status() -> Any:
        try:
            return api.gateway_status()
        except ApiError as e:
            log.debug("gateway status unavailable: %s", e)
            return None

    def cluster() -> Any:
        try:
            return api.cluster()
        except ApiError as e:
            log.debug("cluster facts unavailable: %s", e)
            return None

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        disk_futures = {name: pool.submit(disk_detail, name) for name in disks}
        session_futures = {key: pool.submit(session, key) for key in clients}
        status_future = pool.submit(status)
        cluster_future = pool.submit(cluster)
        for name, future in disk_futures.items():
            detail, missing = future.result()
            view.disks[name] = parse_disk(name, _dict(disks[name]), detail, missing)
        for key, future in session_futures.items():
            view.sessions[key] = future.result()
        status_body = status_future.result()
        view.cluster = parse_cluster(cluster_future.result(), cluster_name)
    names = sorted(_dict(config.get("gateways")))
    for target in view.targets.values():
        names += [n for n in _dict(_dict(target).get("portals")) if n not in names]
    if status_body is None:
        view.gateways = {name: GatewayView(name) for name in sorted(names)}
    else:
        view.status_known = True
        view.gateways = parse_gateway_status(status_body, names)
    return view
