"""RBD image work for the API: create (plain, clone, data pool), resize, snapshots, delete,
QoS, and the facts the API reports about an image.

Images get ceph-iscsi's features (layering, exclusive-lock, object-map, fast-diff,
deep-flatten); an image attached from elsewhere must have exclusive-lock (failover relies
on it).  Per-disk QoS is librbd's own throttle: ``rbd_qos_*`` image settings, stored by
librbd as ``conf_rbd_qos_*`` image metadata, so every gateway that opens the image applies
the same limits, and a change reaches open images through librbd's header watch.

librbd errors become config-layer errors (``NotFound`` 404, ``AlreadyExists`` 409,
``ValidationError`` 400, ``StoreError`` 503) with messages about the request.
"""

from __future__ import annotations

import errno
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import rados
import rbd

from api.errors import ApiError
from gateway.config import image_identity
from gateway.config.errors import AlreadyExists, NotFound, StoreError, ValidationError
from gateway.config.validation import (
    SIZE_UNITS,
    check_image_name,
    check_pool_name,
    check_snapshot_name,
    parse_size,
)

log = logging.getLogger("api.images")

FEATURES = (rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK | rbd.RBD_FEATURE_OBJECT_MAP
            | rbd.RBD_FEATURE_FAST_DIFF | rbd.RBD_FEATURE_DEEP_FLATTEN)
REQUIRED_FEATURES = rbd.RBD_FEATURE_EXCLUSIVE_LOCK
FEATURE_NAMES = {
    rbd.RBD_FEATURE_LAYERING: "layering", rbd.RBD_FEATURE_STRIPINGV2: "striping",
    rbd.RBD_FEATURE_EXCLUSIVE_LOCK: "exclusive-lock", rbd.RBD_FEATURE_OBJECT_MAP: "object-map",
    rbd.RBD_FEATURE_FAST_DIFF: "fast-diff", rbd.RBD_FEATURE_DEEP_FLATTEN: "deep-flatten",
    rbd.RBD_FEATURE_JOURNALING: "journaling", rbd.RBD_FEATURE_DATA_POOL: "data-pool",
    rbd.RBD_FEATURE_OPERATIONS: "operations", rbd.RBD_FEATURE_MIGRATING: "migrating",
    rbd.RBD_FEATURE_NON_PRIMARY: "non-primary",
}
# librbd's object map covers at most 256 million objects: 976 TiB with 4 MiB objects.
MAX_IMAGE_SIZE = 256_000_000 * (4 << 20)

# rbd_qos_<name> settings of Ceph 16 (Pacific), exposed per disk as <name>.
QOS_RATES = ("iops", "read_iops", "write_iops", "bps", "read_bps", "write_bps")
QOS_KEYS = tuple(f"{rate}_{kind}" for rate in QOS_RATES for kind in ("limit", "burst", "burst_seconds"))
QOS_MAX = (1 << 63) - 1
_BYTES = re.compile(r"^(\d+)([KMGT]?)$", re.IGNORECASE)
_BYTE_UNITS = {"": 1, "K": 1 << 10, **SIZE_UNITS}
ProgressFn = Callable[[float | None, str], None]


def _errno(e: Exception) -> int | None:
    return getattr(e, "errno", None)


def _unreachable(e: Exception) -> bool:
    # Ceph reports a blocklisted client as ESHUTDOWN.
    return isinstance(e, (rbd.ConnectionShutdown, rbd.Timeout, rados.ConnectionShutdown, rados.TimedOut)) \
        or _errno(e) in (errno.ESHUTDOWN, errno.ETIMEDOUT, errno.ENOTCONN)


def rbd_failure(e: Exception, what: str) -> Exception:
    """A librbd/librados error as the config-layer error the API maps to a status."""
    if _unreachable(e):
        return StoreError(f"{what}: {e}")
    if isinstance(e, (rbd.ImageNotFound, rbd.ObjectNotFound, rados.ObjectNotFound)):
        return NotFound(f"{what}: not found")
    if isinstance(e, (rbd.ImageExists, rbd.ObjectExists, rados.ObjectExists)):
        return AlreadyExists(f"{what}: already exists")
    if isinstance(e, rbd.ImageBusy):
        return ApiError(409, f"{what}: the image is busy (open by a client, or a protected snapshot)")
    if isinstance(e, rbd.ImageHasSnapshots):
        return ApiError(409, f"{what}: the image has snapshots; delete them first")
    if isinstance(e, (rbd.PermissionError, rados.PermissionError)):
        return ApiError(409, f"{what}: permission denied for this gateway's CephX user")
    if isinstance(e, (rbd.NoSpace, rbd.DiskQuotaExceeded)):
        return ApiError(409, f"{what}: no space left (pool full or quota reached)")
    return ValidationError(f"{what}: {e}")


def parse_image_size(text: str) -> int:
    size = parse_size(text)
    if size > MAX_IMAGE_SIZE:
        raise ValidationError(f"size {text} is too large; RBD images with an object map hold at most "
                              f"{MAX_IMAGE_SIZE >> 40}T", "size")
    return size


def parse_qos(raw: dict[str, Any]) -> dict[str, int | None]:
    """QoS settings: ``{name: value}``; None, "" or 0 (limits, bursts) resets to unlimited."""
    out: dict[str, int | None] = {}
    for key, value in raw.items():
        name = key[4:] if key.startswith("qos_") else key
        name = name[8:] if name.startswith("rbd_qos_") else name
        if name not in QOS_KEYS:
            raise ValidationError(f"unknown QoS setting {key!r}; valid: {', '.join(QOS_KEYS)}", "qos")
        if value is None or value == "":
            out[name] = None
            continue
        if isinstance(value, bool):
            raise ValidationError(f"QoS {name} must be a whole number, got {value!r}", "qos")
        m = _BYTES.match(str(value).strip())
        if not m or (m.group(2) and "bps" not in name):
            unit = " (bytes/s; K, M, G, T suffixes allowed)" if "bps" in name else ""
            raise ValidationError(f"QoS {name} must be a whole number{unit}, got {str(value)[:40]!r}", "qos")
        number = int(m.group(1)) * _BYTE_UNITS[m.group(2).upper()]
        if number > QOS_MAX:
            raise ValidationError(f"QoS {name} is too large", "qos")
        if name.endswith("burst_seconds"):
            if number < 1:
                raise ValidationError(f"QoS {name} must be at least 1 second", "qos")
        elif number == 0:
            number = None  # 0 is librbd's "unlimited": drop the override
        out[name] = number
    return out


def parse_clone_source(text: str) -> tuple[str, str, str]:
    """``pool/image@snap`` -> its parts, each checked."""
    spec, at, snap = text.partition("@")
    pool, slash, image = spec.partition("/")
    if not at or not slash:
        raise ValidationError(f"clone source {text[:80]!r} must be written pool/image@snapshot", "clone")
    return check_pool_name(pool), check_image_name(image), check_snapshot_name(snap)


class ImageService:
    """Image operations on one cluster connection (thread-safe: librados handles are)."""

    def __init__(self, cluster: Any, time_out: float = 30.0, loop_delay: float = 1.0) -> None:
        self.cluster = cluster
        self.time_out = time_out
        self.loop_delay = loop_delay
        self._rbd = rbd.RBD()

    # ---- pools and handles ---------------------------------------------------------------
    @contextmanager
    def ioctx(self, pool: str, what: str = "pool") -> Iterator[Any]:
        try:
            io = self.cluster.open_ioctx(pool)
        except rados.ObjectNotFound:
            raise ValidationError(f"{what} {pool!r} does not exist; create it first or name another",
                                  "pool") from None
        except rados.Error as e:
            raise rbd_failure(e, f"opening pool {pool}") from None
        try:
            yield io
        finally:
            io.close()

    @contextmanager
    def image(self, pool: str, image: str, read_only: bool = False) -> Iterator[Any]:
        with self.ioctx(pool) as io:
            try:
                img = rbd.Image(io, image, read_only=read_only)
            except rbd.ImageNotFound:
                raise NotFound(f"rbd image {pool}/{image} does not exist", "image") from None
            except (rbd.Error, rados.Error) as e:
                raise rbd_failure(e, f"opening rbd image {pool}/{image}") from None
            try:
                yield img
            finally:
                img.close()

    def pool_id(self, pool: str) -> int:
        with self.ioctx(pool) as io:
            return io.get_pool_id()

    def exists(self, pool: str, image: str) -> bool:
        with self.ioctx(pool) as io:
            try:
                with rbd.Image(io, image, read_only=True):
                    return True
            except rbd.ImageNotFound:
                return False
            except (rbd.Error, rados.Error) as e:
                raise rbd_failure(e, f"opening rbd image {pool}/{image}") from None

    def check_data_pool(self, pool: str) -> None:
        """A data pool must exist; an erasure-coded one needs overwrites enabled."""
        detail = self._pool_detail(pool)
        if detail is None:
            raise ValidationError(f"data pool {pool!r} does not exist; create it first", "data_pool")
        if detail.get("type") == 3 and "ec_overwrites" not in str(detail.get("flags_names", "")):
            raise ValidationError(f"erasure-coded data pool {pool!r} needs overwrites: run "
                                  f"'ceph osd pool set {pool} allow_ec_overwrites true'", "data_pool")

    def check_metadata_pool(self, pool: str) -> None:
        detail = self._pool_detail(pool)
        if detail is None:
            raise ValidationError(f"pool {pool!r} does not exist; create it first or name another", "pool")
        if detail.get("type") == 3:
            raise ValidationError(f"pool {pool!r} is erasure-coded; images need a replicated pool (pass "
                                  f"the erasure-coded pool as data_pool)", "pool")

    def _mon(self, prefix: str, **args: Any) -> Any:
        import json

        try:
            ret, out, err = self.cluster.mon_command(json.dumps({"prefix": prefix, "format": "json", **args}),
                                                     b"", timeout=30)
        except rados.Error as e:
            raise rbd_failure(e, prefix) from None
        if ret != 0:
            raise StoreError(f"{prefix}: {err or ret}")
        return json.loads(out or b"null")

    def cluster_facts(self) -> dict[str, Any]:
        """What gwcli's /cluster node shows: health, daemons, capacity, pools."""
        status = self._mon("status")
        df = self._mon("df")
        osdmap = status.get("osdmap", {})
        osdmap = osdmap.get("osdmap", osdmap)      # older releases nest it once more
        used = {p["name"]: p.get("stats", {}) for p in df.get("pools", [])}
        pools: dict[str, Any] = {}
        profiles: dict[str, dict[str, Any]] = {}
        for entry in self._mon("osd pool ls", detail="detail"):
            name = entry["pool_name"]
            info = {"type": "erasure" if entry.get("type") == 3 else "replicated", "size": entry.get("size"),
                    "max_avail": used.get(name, {}).get("max_avail"),
                    "used_bytes": used.get(name, {}).get("bytes_used")}
            if info["type"] == "erasure":
                prof = entry.get("erasure_code_profile", "")
                if prof not in profiles:
                    profiles[prof] = self._mon("osd erasure-code-profile get", name=prof) or {}
                info["k"], info["m"] = int(profiles[prof].get("k", 0)), int(profiles[prof].get("m", 0))
            pools[name] = info
        version = self._mon("version")
        return {
            "name": self.cluster.conf_get("cluster") or "ceph",
            "fsid": status.get("fsid"),
            "version": version.get("version", "") if isinstance(version, dict) else str(version),
            "health": {"status": status.get("health", {}).get("status", "UNKNOWN"),
                       "checks": {k: v.get("summary", {}).get("message", "")
                                  for k, v in status.get("health", {}).get("checks", {}).items()}},
            "mons": {"total": status.get("monmap", {}).get("num_mons",
                                                           len(status.get("quorum_names", []))),
                     "quorum": status.get("quorum_names", [])},
            "osds": {"total": osdmap.get("num_osds", 0), "up": osdmap.get("num_up_osds", 0),
                     "in": osdmap.get("num_in_osds", 0)},
            "raw_bytes": df.get("stats", {}).get("total_bytes"),
            "pools": pools,
        }

    def _pool_detail(self, pool: str) -> dict[str, Any] | None:
        import json

        try:
            ret, out, err = self.cluster.mon_command(json.dumps({"prefix": "osd pool ls", "detail": "detail",
                                                                 "format": "json"}), b"", timeout=30)
        except rados.Error as e:
            raise rbd_failure(e, "listing pools") from None
        if ret != 0:
            raise StoreError(f"listing pools: {err or ret}")
        for entry in json.loads(out or b"[]"):
            if entry.get("pool_name") == pool:
                return entry
        return None

    # ---- create, clone, flatten ----------------------------------------------------------
    def create(self, pool: str, image: str, size: int, data_pool: str | None = None) -> None:
        with self.ioctx(pool) as io:
            try:
                self._rbd.create(io, image, size, old_format=False, features=FEATURES, data_pool=data_pool)
            except (rbd.Error, rados.Error) as e:
                raise rbd_failure(e, f"creating rbd image {pool}/{image}") from None

    def clone(self, source: tuple[str, str, str], pool: str, image: str,
              data_pool: str | None = None) -> bool:
        """Clone ``source`` snapshot into pool/image; returns True if the snapshot had to be
        protected first (clone format 1, when the cluster's clients may be older than mimic)."""
        spool, simage, snap = source
        protected = False
        with self.ioctx(spool, "clone source pool") as sio, self.ioctx(pool) as io:
            try:
                with rbd.Image(sio, simage) as parent:
                    if snap not in {s["name"] for s in parent.list_snaps()}:
                        raise NotFound(f"snapshot {spool}/{simage}@{snap} does not exist", "clone")
                    try:
                        self._rbd.clone(sio, simage, snap, io, image, features=FEATURES, data_pool=data_pool)
                        return False
                    except rbd.InvalidArgument:
                        if parent.is_protected_snap(snap):
                            raise
                    parent.protect_snap(snap)
                    protected = True
                self._rbd.clone(sio, simage, snap, io, image, features=FEATURES, data_pool=data_pool)
            except rbd.ImageNotFound:
                raise NotFound(f"clone source image {spool}/{simage} does not exist", "clone") from None
            except (rbd.Error, rados.Error) as e:
                raise rbd_failure(e, f"cloning {spool}/{simage}@{snap} to {pool}/{image}") from None
        return protected

    def flatten(self, pool: str, image: str, progress: ProgressFn) -> None:
        def cb(offset: int, total: int) -> int:
            progress(offset / total if total else None,
                     f"flattening {pool}/{image}: {offset}/{total} objects")
            return 0

        with self.image(pool, image) as img:
            try:
                img.flatten(on_progress=cb)
            except (rbd.Error, rados.Error) as e:
                raise rbd_failure(e, f"flattening {pool}/{image}") from None

    def resize(self, pool: str, image: str, size: int) -> int:
        """Grow an image; returns its previous size.  Shrinking is refused (data loss)."""
        with self.image(pool, image) as img:
            current = img.size()
            if size <= current:
                raise ValidationError(f"resize value must be larger than the current size "
                                      f"({_human(current)}/{current}); shrinking would lose data", "size")
            try:
                img.resize(size, allow_shrink=False)
            except (rbd.Error, rados.Error) as e:
                raise rbd_failure(e, f"resizing {pool}/{image}") from None
            return current

    def check_attachable(self, pool: str, image: str) -> int:
        """An existing image we may export: exclusive-lock is needed for failover.  Its size."""
        with self.image(pool, image, read_only=True) as img:
            features = img.features()
            if features & REQUIRED_FEATURES != REQUIRED_FEATURES:
                raise ValidationError(f"rbd image {pool}/{image} lacks the exclusive-lock feature, which "
                                      "failover between gateways needs: run 'rbd feature enable "
                                      f"{pool}/{image} exclusive-lock'", "image")
            return img.size()

    def ensure_wwn(self, pool: str, image: str, requested: str | None) -> str:
        with self.ioctx(pool) as io:
            try:
                return image_identity.ensure_image_wwn(io, image, requested)
            except (rbd.Error, rados.Error) as e:
                raise rbd_failure(e, f"recording the WWN of {pool}/{image}") from None

    # ---- delete ----------------------------------------------------------------------------
    def snapshot_count(self, pool: str, image: str) -> int:
        with self.image(pool, image, read_only=True) as img:
            return len(list(img.list_snaps()))

    def remove(self, pool: str, image: str, progress: ProgressFn) -> None:
        """Delete an image, retrying while a client still has it open (up to ``time_out``)."""
        def cb(offset: int, total: int) -> int:
            progress(offset / total if total else None, f"deleting {pool}/{image}: {offset}/{total} objects")
            return 0

        deadline = time.monotonic() + self.time_out
        with self.ioctx(pool) as io:
            while True:
                try:
                    self._rbd.remove(io, image, on_progress=cb)
                    return
                except rbd.ImageNotFound:
                    return
                except rbd.ImageBusy as e:
                    if time.monotonic() >= deadline:
                        raise rbd_failure(e, f"deleting {pool}/{image}") from None
                    progress(None, f"{pool}/{image} is still open by a client; retrying")
                    time.sleep(self.loop_delay)
                except (rbd.Error, rados.Error) as e:
                    raise rbd_failure(e, f"deleting {pool}/{image}") from None

    # ---- snapshots ---------------------------------------------------------------------------
    def create_snapshot(self, pool: str, image: str, name: str) -> None:
        with self.image(pool, image) as img:
            try:
                img.create_snap(name)
            except rbd.ImageExists:
                raise AlreadyExists(f"snapshot {name} already exists on {pool}/{image}", "name") from None
            except (rbd.Error, rados.Error) as e:
                raise rbd_failure(e, f"creating snapshot {pool}/{image}@{name}") from None

    def _snapshot(self, img: Any, pool: str, image: str, name: str) -> dict[str, Any]:
        for snap in img.list_snaps():
            if snap["name"] == name:
                return snap
        raise NotFound(f"snapshot {pool}/{image}@{name} does not exist", "name")

    def rollback(self, pool: str, image: str, name: str, progress: ProgressFn) -> None:
        with self.image(pool, image) as img:
            self._snapshot(img, pool, image, name)
            progress(None, f"rolling {pool}/{image} back to {name}")
            try:
                img.rollback_to_snap(name)
            except (rbd.Error, rados.Error) as e:
                raise rbd_failure(e, f"rolling {pool}/{image} back to {name}") from None

    def remove_snapshot(self, pool: str, image: str, name: str) -> None:
        """Delete a snapshot; a protected one is unprotected first when it has no clones."""
        with self.image(pool, image) as img:
            self._snapshot(img, pool, image, name)
            try:
                if img.is_protected_snap(name):
                    img.set_snap(name)
                    children = [f"{c[0]}/{c[1]}" for c in img.list_children()]
                    img.set_snap(None)
                    if children:
                        raise ApiError(409, f"snapshot {pool}/{image}@{name} has clones "
                                            f"({', '.join(children)}); flatten or delete them first")
                    img.unprotect_snap(name)
                img.remove_snap(name)
            except (rbd.Error, rados.Error) as e:
                raise rbd_failure(e, f"deleting snapshot {pool}/{image}@{name}") from None

    # ---- QoS -----------------------------------------------------------------------------------
    def set_qos(self, pool: str, image: str, qos: dict[str, int | None]) -> None:
        if not qos:
            return
        with self.image(pool, image) as img:
            for name, value in qos.items():
                key = f"rbd_qos_{name}"
                try:
                    if value is None:
                        try:
                            img.config_remove(key)
                        except KeyError:
                            pass
                    else:
                        img.config_set(key, str(value))
                except (rbd.Error, rados.Error) as e:
                    raise rbd_failure(e, f"setting QoS {name} on {pool}/{image}") from None

    # ---- facts -----------------------------------------------------------------------------------
    def info(self, pool: str, image: str) -> dict[str, Any]:
        """Size, features, snapshots, parent, data pool and QoS of an image (for GET /api/disk)."""
        with self.image(pool, image, read_only=True) as img:
            try:
                features = img.features()
                out: dict[str, Any] = {
                    "size": img.size(),
                    "size_h": _human(img.size()),
                    "features": img.features(),
                    "feature_list": [n for bit, n in sorted(FEATURE_NAMES.items()) if features & bit],
                    "snapshots": [{"name": s["name"], "size": s["size"],
                                   "protected": bool(img.is_protected_snap(s["name"]))}
                                  for s in img.list_snaps()],
                    "qos": {e["name"][8:]: int(e["value"]) for e in img.config_list()
                            if e["name"].startswith("rbd_qos_") and e["source"] == rbd.RBD_CONFIG_SOURCE_IMAGE
                            and e["name"][8:] in QOS_KEYS},
                    "data_pool": None,
                    "parent": None,
                }
                if features & rbd.RBD_FEATURE_DATA_POOL:
                    out["data_pool"] = self.cluster.pool_reverse_lookup(img.data_pool_id())
                try:
                    parent = img.get_parent_image_spec()
                    out["parent"] = f"{parent['pool_name']}/{parent['image_name']}@{parent['snap_name']}"
                except rbd.ImageNotFound:
                    pass
                return out
            except (rbd.Error, rados.Error) as e:
                raise rbd_failure(e, f"reading rbd image {pool}/{image}") from None


def _human(size: int) -> str:
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return f"{size}B" if size < 1 << 10 else f"{size / (1 << 30):.2f}G"
