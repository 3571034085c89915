"""Per-LUN counters from the gateways' Prometheus metrics, and rates between two scrapes.

Metric names are ceph-iscsi's (reference G: ``ceph_iscsi_lun_iops``,
``ceph_iscsi_lun_read_bytes``, ``ceph_iscsi_lun_write_bytes``, ``ceph_iscsi_client_lun``,
``ceph_iscsi_client_login``) plus ours for latency histograms and lock moves.  Every metric
is optional: what a gateway does not export shows as ``-``, a malformed line is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

OPS = ("ceph_iscsi_lun_iops", "ceph_iscsi_lun_ops", "ceph_iscsi_lun_commands")
READ_BYTES = ("ceph_iscsi_lun_read_bytes",)
WRITE_BYTES = ("ceph_iscsi_lun_write_bytes", "ceph_iscsi_lun_written_bytes")
LOCK_MOVES = ("ceph_iscsi_lun_lock_moves", "ceph_iscsi_lun_lock_acquisitions", "ceph_iscsi_lun_lock_acquired",
              "ceph_iscsi_lun_lock_transitions")
CLIENT_LUN = "ceph_iscsi_client_lun"
CLIENT_LOGIN = "ceph_iscsi_client_login"
# Histograms: ceph_iscsi_lun_latency_seconds, ceph_iscsi_lun_read_latency_seconds, ... (_sum/_count)
_LATENCY = re.compile(r"^ceph_iscsi_lun_(?:\w+_)?latency_seconds_(sum|count)$")


@dataclass
class LunCounters:
    """Cumulative counters of one LUN on one gateway (None: not exported)."""

    ops: float | None = None
    read_bytes: float | None = None
    write_bytes: float | None = None
    latency_sum: float | None = None
    latency_count: float | None = None
    lock_moves: float | None = None
    clients: set[str] = field(default_factory=set)


@dataclass
class Scrape:
    """One gateway's metrics at one moment."""

    gateway: str
    time: float
    luns: dict[str, LunCounters] = field(default_factory=dict)
    error: str = ""


def _samples(text: str) -> Iterable:
    try:
        return [s for family in text_string_to_metric_families(text) for s in family.samples]
    except ValueError:
        return list(_samples_by_line(text))


def _samples_by_line(text: str) -> Iterable:
    for line in text.splitlines():  # tolerate a malformed line: parse the rest one by one
        if not line.strip() or line.startswith("#"):
            continue
        try:
            for family in text_string_to_metric_families(line + "\n"):
                yield from family.samples
        except ValueError:
            continue


def lun_key(labels: Mapping[str, str], object_names: Mapping[str, str]) -> str | None:
    """The disk (``pool/image``) a sample is about: ceph-iscsi labels a LUN by its backstore
    object name (``pool.image``); ``pool``/``image`` labels or a ``pool/image`` name work too."""
    name = labels.get("lun_name") or labels.get("lun") or labels.get("disk")
    if name:
        if name in object_names:
            return object_names[name]
        return name
    if labels.get("pool") and labels.get("image"):
        return f"{labels['pool']}/{labels['image']}"
    return None


def _add(current: float | None, value: float) -> float:
    return value if current is None else current + value


def parse(text: str, object_names: Mapping[str, str] | None = None) -> dict[str, LunCounters]:
    """Per-LUN counters of one scrape, summed over clients and operation kinds."""
    object_names = object_names or {}
    luns: dict[str, LunCounters] = {}
    logins: dict[str, float] = {}
    client_luns: list[tuple[str, str]] = []
    for sample in _samples(text):
        name = sample.name[:-6] if sample.name.endswith("_total") else sample.name
        labels = sample.labels
        if name == CLIENT_LOGIN and labels.get("client_iqn"):
            logins[labels["client_iqn"]] = sample.value
            continue
        key = lun_key(labels, object_names)
        if key is None:
            continue
        if name == CLIENT_LUN and labels.get("client_iqn"):
            client_luns.append((key, labels["client_iqn"]))
            luns.setdefault(key, LunCounters())
            continue
        lun = luns.setdefault(key, LunCounters())
        latency = _LATENCY.match(sample.name)
        if name in OPS:
            lun.ops = _add(lun.ops, sample.value)
            if labels.get("client_iqn"):
                lun.clients.add(labels["client_iqn"])
        elif name in READ_BYTES:
            lun.read_bytes = _add(lun.read_bytes, sample.value)
        elif name in WRITE_BYTES:
            lun.write_bytes = _add(lun.write_bytes, sample.value)
        elif name in LOCK_MOVES:
            lun.lock_moves = _add(lun.lock_moves, sample.value)
        elif latency:
            if latency.group(1) == "sum":
                lun.latency_sum = _add(lun.latency_sum, sample.value)
            else:
                lun.latency_count = _add(lun.latency_count, sample.value)
    for key, client in client_luns:
        if logins.get(client, 1.0) >= 1.0:  # logged in (or the gateway does not say)
            luns[key].clients.add(client)
    return luns


@dataclass
class LunRate:
    """One LUN over one interval, summed over the gateways that serve it."""

    disk: str
    iops: float | None = None
    read_bps: float | None = None
    write_bps: float | None = None
    latency: float | None = None  # mean seconds per completed command
    clients: set[str] = field(default_factory=set)
    lock_moves: float | None = None  # total so far
    lock_moves_delta: float | None = None


def _delta(before: float | None, after: float | None) -> float | None:
    if after is None:
        return None
    if before is None or after < before:  # new, or the counter restarted with its gateway
        return after if before is not None else None
    return after - before


def rates(before: Mapping[str, Scrape], after: Mapping[str, Scrape]) -> dict[str, LunRate]:
    """Rates between two scrapes of each gateway (a gateway missing from either is skipped)."""
    out: dict[str, LunRate] = {}
    lat_sum: dict[str, float] = {}
    lat_count: dict[str, float] = {}
    for gateway, now in after.items():
        then = before.get(gateway)
        if now.error or then is None or then.error or now.time <= then.time:
            continue
        seconds = now.time - then.time
        for disk, counters in now.luns.items():
            old = then.luns.get(disk, LunCounters())
            rate = out.setdefault(disk, LunRate(disk))
            rate.clients |= counters.clients
            for attr, target in (("ops", "iops"), ("read_bytes", "read_bps"), ("write_bytes", "write_bps")):
                delta = _delta(getattr(old, attr), getattr(counters, attr))
                if delta is not None:
                    setattr(rate, target, _add(getattr(rate, target), delta / seconds))
            if counters.lock_moves is not None:
                rate.lock_moves = _add(rate.lock_moves, counters.lock_moves)
                rate.lock_moves_delta = _add(rate.lock_moves_delta,
                                             _delta(old.lock_moves, counters.lock_moves) or 0.0)
            d_sum = _delta(old.latency_sum, counters.latency_sum)
            d_count = _delta(old.latency_count, counters.latency_count)
            if d_sum is not None and d_count:
                lat_sum[disk] = lat_sum.get(disk, 0.0) + d_sum
                lat_count[disk] = lat_count.get(disk, 0.0) + d_count
    for disk, count in lat_count.items():  # mean over all gateways, weighted by commands
        out[disk].latency = lat_sum[disk] / count
    return out
