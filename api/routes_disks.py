"""Disks (RBD images registered as SCSI disks), their snapshots, and target LUN mappings."""

from __future__ import annotations

import logging
from typing import Any

from flask import request

from api.errors import ApiError
from api.images import parse_clone_source, parse_image_size, parse_qos
from api.routing import answer, ctx, disk_id, disk_param, dry_run, params, route, run_task, target_name
from api.tasks import Task
from gateway.config import allocation, ceph_iscsi, validation
from gateway.config import operations as ops
from gateway.config.errors import NotFound, ValidationError
from gateway.config.model import ClusterConfig

log = logging.getLogger("api.disks")
DISK_MODES = ("create", "resize", "reconfigure", "owner")
CONTROLS_EXAMPLE = '{"qfull_timeout": 10}'
QOS_EXAMPLE = '{"iops_limit": 1000, "bps_limit": "100M"}'


def _target_of(disk: str):
    """The targets whose gateways serve ``disk`` (for ``ctx().change``)."""
    def targets(cfg: ClusterConfig) -> list[str]:
        t = cfg.target_of_disk(disk)
        return [t.iqn] if t else []
    return targets


def _disk_doc(cfg: ClusterConfig, disk: str) -> dict[str, Any]:
    if disk not in cfg.disks:
        raise ApiError(404, f"rbd image {disk} not found in the configuration")
    return ceph_iscsi.export_document(cfg, "redacted")["disks"][disk]


def _image_info(pool: str, image: str) -> dict[str, Any] | None:
    try:
        return ctx().images.info(pool, image)
    except NotFound:
        return None


@route("/api/disks", ["GET"])
def get_disks():
    """Show the disks defined to the gateways
    config=yes gives each disk's definition instead of just its name; details=yes adds the
    image facts (size, features, snapshots, QoS) to each.
    Example: curl --user admin:secret 'http://127.0.0.1:5000/api/disks?config=yes'
    """
    p = params()
    cfg = ctx().load()
    if not (p.flag("config") or p.flag("details")):
        return answer({"disks": sorted(cfg.disks)})
    doc = ceph_iscsi.export_document(cfg, "redacted")["disks"]
    if p.flag("details"):
        for name, entry in doc.items():
            entry["image_info"] = _image_info(*name.split("/", 1))
    return answer({"disks": doc})


@route("/api/disk/<pool>/<image>", ["GET", "PUT", "DELETE"])
def disk(pool: str, image: str):
    """Create/attach, resize, reconfigure, move (PUT), show (GET) or delete (DELETE) a disk
    PUT mode=create: size (e.g. 10G; without it an existing image is attached), count (1-10:
    images <image>1..<image>N), wwn, backstore (user:rbd), controls (JSON), create_image
    (true/false), clone (pool/image@snap), flatten (true: copy the clone's data now),
    data_pool (e.g. an erasure-coded pool), qos (JSON: iops_limit, bps_limit, ...).
    PUT mode=resize: size (larger than now).  PUT mode=reconfigure: controls, qos.
    PUT mode=owner: owner (a gateway of the disk's target becomes its optimized path).
    DELETE: preserve_image=true keeps the RBD image (detach only).
    Long operations answer when done, or 202 with a task after wait=<seconds>.
    Example: curl --user admin:secret -d mode=create -d size=10G
        -X PUT http://127.0.0.1:5000/api/disk/rbd/disk1
    """
    c = ctx()
    name = disk_id(pool, image)
    if request.method == "GET":
        cfg = c.load()
        doc = _disk_doc(cfg, name)
        t = cfg.target_of_disk(name)
        doc["status"] = c.live().disk_status(name, t.portals if t else [])
        doc["image_info"] = _image_info(pool, image)
        return answer(doc)
    if request.method == "DELETE":
        return _delete(pool, image, name)
    p = params()
    mode = p.text("mode", required=True, hint="create, resize, reconfigure or owner")
    if mode not in DISK_MODES:
        raise ApiError(400, f"disk operation mode '{mode[:40]}' is invalid; use {', '.join(DISK_MODES)}")
    if mode == "create":
        return _create(pool, image)
    if mode == "resize":
        return _resize(pool, image, name)
    if mode == "reconfigure":
        return _reconfigure(pool, image, name)
    owner = validation.check_gateway_name(p.text("owner", required=True, hint="a gateway of the target"))
    change = c.change(_move_owner, name, owner, targets=_target_of(name))
    return answer(change.body(f"owner of {name} is now {owner}", owner=owner))


def _move_owner(cfg: ClusterConfig, disk: str, owner: str):
    ops.get_disk(cfg, disk)
    t = cfg.target_of_disk(disk)
    if t is None:
        raise ValidationError(f"disk {disk} is not mapped to a target; map it first "
                              "(PUT /api/targetlun/<target>)", "disk")
    return ops.set_lun_owner(cfg, t.iqn, disk, owner)


def _split_controls(controls: dict[str, Any] | None, qos: dict[str, Any] | None):
    """TCMU controls for the config, and QoS settings for librbd (``qos_*`` controls too)."""
    controls = dict(controls or {})
    qos_raw = dict(qos or {})
    for key in [k for k in controls if k.startswith("qos_")]:
        qos_raw[key] = controls.pop(key)
    validation.check_disk_controls(controls)
    return controls, parse_qos(qos_raw)


def _add_disks(cfg: ClusterConfig, pool: str, specs: list[tuple[str, str | None]], **kwargs) -> list[str]:
    for image, wwn in specs:
        ops.add_disk(cfg, pool, image, wwn, **kwargs)
    return [f"{pool}/{image}" for image, _ in specs]


def _create(pool: str, image: str):
    c, p = ctx(), params()
    count = p.integer("count", 1, 1, 10)
    backstore = validation.check_backstore(p.text("backstore", "user:rbd") or "user:rbd")
    wwn = p.text("wwn") or None
    if wwn and count > 1:
        raise ApiError(400, "WWN cannot be specified when count > 1")
    size_text = p.text("size")
    size = parse_image_size(size_text) if size_text else None
    create_image = p.flag("create_image", True)
    controls, qos = _split_controls(p.obj("controls", CONTROLS_EXAMPLE), p.obj("qos", QOS_EXAMPLE))
    clone_text = p.text("clone")
    source = parse_clone_source(clone_text) if clone_text else None
    flatten = p.flag("flatten")
    data_pool = p.text("data_pool") or None
    if data_pool:
        validation.check_pool_name(data_pool)
    if source is None and flatten:
        raise ApiError(400, "flatten applies to clones only: give clone=pool/image@snapshot")
    if source and not create_image:
        raise ApiError(400, "clone creates a new image: it cannot be combined with create_image=false")
    names = [image] if count == 1 else [f"{image}{i}" for i in range(1, count + 1)]
    for n in names:
        validation.check_image_name(n)
    kwargs = dict(allocating_host=c.gateway_name, backstore=backstore, controls=controls,
                  defaults=c.settings.disk_defaults)
    dry_run(_add_disks, pool, [(n, wwn) for n in names], **kwargs)
    c.images.check_metadata_pool(pool)
    if data_pool:
        c.images.check_data_pool(data_pool)
    kwargs["pool_id"] = c.images.pool_id(pool)

    def work(task: Task) -> tuple[int, dict[str, Any]]:
        created: list[str] = []
        notes: list[str] = []
        try:
            specs = []
            for i, n in enumerate(names):
                task.report(i / len(names), f"preparing {pool}/{n}")
                _prepare_image(pool, n, size, create_image, source, data_pool, flatten, created, notes, task)
                specs.append((n, _identity(pool, n, wwn, notes)))
            change = c.change(_add_disks, pool, specs, **kwargs)
        except Exception:
            for n in created:
                try:
                    c.images.remove(pool, n, lambda *_: None)
                except Exception as e:  # keep the original error; say what was left behind
                    log.error("could not remove image %s/%s created by a failed request: %s", pool, n, e)
            raise
        for n in names:
            c.images.set_qos(pool, n, qos)
        return 200, change.body("disk create/update successful", disks=change.done.result, notes=notes)

    return run_task("disk create", f"{pool}/{image}", work)


def _identity(pool: str, image: str, requested: str | None, notes: list[str]) -> str:
    """The WWN to register: the requested one, else the one the image carries, unless that is
    another disk's (a clone or copy inherits its source's metadata): then a new one."""
    images = ctx().images
    wwn = images.ensure_wwn(pool, image, requested)
    if requested:
        return wwn
    holder = next((d.name for d in ctx().load().disks.values() if d.wwn == wwn), None)
    if holder is None:
        return wwn
    notes.append(f"{pool}/{image} carried the WWN of {holder} (a clone or copy); it got a new one")
    return images.ensure_wwn(pool, image, allocation.new_wwn())


def _prepare_image(pool: str, image: str, size: int | None, create_image: bool, source, data_pool,
                   flatten: bool, created: list[str], notes: list[str], task: Task) -> None:
    images = ctx().images
    if images.exists(pool, image):
        if source:
            raise ApiError(409, f"rbd image {pool}/{image} already exists; a clone needs a new name")
        current = images.check_attachable(pool, image)
        if size is not None and size != current:
            raise ApiError(409, f"rbd image {pool}/{image} exists with a size of {current} bytes; omit size "
                                "to attach it as it is (and resize it afterwards if needed)")
        return
    if not create_image:
        raise ApiError(400, f"Image {pool}/{image} does not exist (create_image=false attaches existing "
                            "images only)")
    if source:
        if images.clone(source, pool, image, data_pool):
            notes.append(f"snapshot {'/'.join(source[:2])}@{source[2]} was protected for cloning")
        created.append(image)
        if size is not None and size > images.check_attachable(pool, image):
            images.resize(pool, image, size)
        if flatten:
            images.flatten(pool, image, task.report)
        return
    if size is None:
        raise ApiError(400, "Size parameter is required when creating a new image")
    images.create(pool, image, size, data_pool)
    created.append(image)


def _resize(pool: str, image: str, name: str):
    c, p = ctx(), params()
    size = parse_image_size(p.text("size", required=True, hint="the new size, e.g. 20G"))
    ops.get_disk(c.load(), name)

    def work(task: Task) -> tuple[int, dict[str, Any]]:
        task.report(None, f"resizing {name}")
        previous = c.images.resize(pool, image, size)
        cfg = c.load()
        t = cfg.target_of_disk(name)
        r = c.wait_sizes(name, t.portals if t else [], size)
        return 200, {"message": "disk create/update successful", "size": size, "previous_size": previous,
                     "version": cfg.version, "applied": r.applied, "pending": r.pending, "down": r.down,
                     "degraded": r.degraded}

    return run_task("disk resize", name, work)


def _reconfigure(pool: str, image: str, name: str):
    c, p = ctx(), params()
    raw_controls, raw_qos = p.obj("controls", CONTROLS_EXAMPLE), p.obj("qos", QOS_EXAMPLE)
    if raw_controls is None and raw_qos is None:
        raise ApiError(400, f"reconfigure needs controls (e.g. {CONTROLS_EXAMPLE}) or qos "
                            f"(e.g. {QOS_EXAMPLE})")
    controls, qos = _split_controls(raw_controls, raw_qos)
    dry_run(ops.set_disk_controls, name, controls, c.settings.disk_defaults)
    c.images.set_qos(pool, image, qos)
    change = c.change(ops.set_disk_controls, name, controls, c.settings.disk_defaults,
                      targets=_target_of(name))
    return answer(change.body("lun reconfigured: successful", controls=change.done.result))


def _delete(pool: str, image: str, name: str):
    c, p = ctx(), params()
    preserve = p.flag("preserve_image")
    dry_run(ops.remove_disk, name)
    if not preserve and c.images.exists(pool, image):
        snaps = c.images.snapshot_count(pool, image)
        if snaps:
            raise ApiError(400, f"rbd image {name} has {snaps} snapshot(s); delete them first, or pass "
                                "preserve_image=true to keep the image")
    if preserve:
        change = c.change(ops.remove_disk, name)
        return answer(change.body("disk map deletion successful", image_deleted=False))

    def work(task: Task) -> tuple[int, dict[str, Any]]:
        change = c.change(ops.remove_disk, name)
        try:
            c.images.remove(pool, image, task.report)
        except Exception as e:
            status, text = (e.status, e.message) if isinstance(e, ApiError) else (409, str(e))
            raise ApiError(status, f"disk {name} was removed from the configuration, but its image could "
                                   f"not be deleted: {text}") from None
        return 200, change.body("disk map deletion successful", image_deleted=True)

    return run_task("disk delete", name, work)


# ---- snapshots ------------------------------------------------------------------------------
@route("/api/disksnap/<pool>/<image>/<name>", ["PUT", "DELETE"])
def disksnap(pool: str, image: str, name: str):
    """Create (PUT mode=create), roll back to (PUT mode=rollback) or delete (DELETE) a snapshot
    Rollback is refused while initiators that see the disk are logged in; it runs as a task.
    Example: curl --user admin:secret -d mode=create -X PUT http://127.0.0.1:5000/api/disksnap/rbd/disk1/snap1
    """
    c = ctx()
    disk_name = disk_id(pool, image)
    validation.check_snapshot_name(name)
    if not name.isprintable() or len(name.encode()) > 255:
        raise ApiError(400, "snapshot name must be at most 255 bytes of printable characters")
    cfg = c.load()
    if disk_name not in cfg.disks:
        raise ApiError(404, f"rbd image {disk_name} not found in the configuration")
    if request.method == "DELETE":
        c.images.remove_snapshot(pool, image, name)
        return answer({"message": "disk snapshot snapshot deleted"})
    mode = params().text("mode", required=True, hint="create or rollback")
    if mode == "create":
        c.images.create_snapshot(pool, image, name)
        return answer({"message": "disk snapshot snapshot created"})
    if mode != "rollback":
        raise ApiError(400, f"mode '{mode[:40]}' is invalid; use create or rollback")
    _refuse_if_in_use(cfg, disk_name)

    def work(task: Task) -> tuple[int, dict[str, Any]]:
        c.images.rollback(pool, image, name, task.report)
        return 200, {"message": "disk snapshot rolled back to snapshot"}

    return run_task("snapshot rollback", f"{disk_name}@{name}", work)


def _refuse_if_in_use(cfg: ClusterConfig, disk: str) -> None:
    t = cfg.target_of_disk(disk)
    if t is None:
        return
    logged_in = ctx().live().logged_in(t.iqn, t.portals)
    seeing = [i for i in logged_in if not t.acl_enabled or disk in getattr(t.clients.get(i), "luns", {})]
    if seeing:
        raise ApiError(409, f"disk {disk} is in use by logged-in initiator(s) {', '.join(sorted(seeing))}; "
                            "log them out (or unmap the disk) first")


# ---- target LUNs ----------------------------------------------------------------------------
@route("/api/targetlun/<target_iqn>", ["PUT", "DELETE"])
def target_disk(target_iqn: str):
    """Map (PUT) or unmap (DELETE) a disk to/from a target
    Parameters: disk (pool/image), lun_id (optional, 0-255), owner (optional gateway; default:
    the target's gateway owning the fewest LUNs).
    Example: curl --user admin:secret -d disk=rbd/disk1
        -X PUT http://127.0.0.1:5000/api/targetlun/iqn.2003-01.com.example:t1
    """
    c, p = ctx(), params()
    iqn = target_name(target_iqn)
    disk_name = disk_param(p)
    if request.method == "DELETE":
        change = c.change(ops.unmap_lun, iqn, disk_name, targets=[iqn])
        return answer(change.body("Target LUN mapping updated successfully"))
    lun_id = p.text("lun_id") or None
    if lun_id is not None:
        validation.check_lun_id(lun_id)
    owner = p.text("owner") or None
    minimum = c.settings.minimum_gateways
    dry_run(ops.map_lun, iqn, disk_name, lun_id, owner, minimum_gateways=minimum)
    pool, image = disk_name.split("/", 1)
    if not c.images.exists(pool, image):
        raise ApiError(400, f"Image {disk_name} not found: its RBD image is gone; delete the disk or "
                            "recreate the image")
    change = c.change(ops.map_lun, iqn, disk_name, lun_id, owner, minimum_gateways=minimum, targets=[iqn])
    lun = change.done.result
    return answer(change.body("Target LUN mapping updated successfully", lun_id=lun.lun_id, owner=lun.owner))
