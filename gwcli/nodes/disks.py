"""``/disks``: RBD images registered as SCSI disks, grouped by pool."""

from __future__ import annotations

from typing import Any

from gateway.config import validation
from gateway.settings import DISK_CONTROLS, Setting
from gwcli import args
from gwcli.args import CommandError
from gwcli.format import human_size
from gwcli.nodes.base import UIGroup, UINode
from gwcli.view import DiskView

CREATE_USAGE = ("create pool=<pool> image=<image> size=<N[M|G|T]> [count=<n>] [wwn=<serial>] "
                "[clone=<pool>/<image>@<snap> [flatten=true]] [data_pool=<ec pool>], "
                "or create <pool>/<image> <size> [<count>]")
ATTACH_USAGE = "attach pool=<pool> image=<image> [wwn=<serial>], or attach <pool>/<image>"


def control_values(table: dict[str, Setting], controls: dict[str, Any], defaults: dict[str, Any]) -> dict:
    """Every control with its effective value; non-default ones marked ``(override)``."""
    out = {}
    for name, setting in table.items():
        default = setting.format(defaults.get(name, setting.default))
        value = controls.get(name)
        if value is None or setting.format(value) == default:
            out[name] = default
        else:
            out[name] = f"{setting.format(value)} (override)"
    return out


def find_disk(node, name: str) -> DiskView:
    name = args.disk_name(name)
    disk = node.view.disks.get(name)
    if disk is None:
        raise CommandError(f"Disk '{name}' is not defined to the configuration")
    return disk


def check_pool(node, pool: str, data_pool: str | None) -> None:
    """With the cluster's pool list at hand, refuse what ceph-iscsi refused (unknown or EC pool)."""
    cluster = node.view.cluster
    if not cluster.available:
        return
    known = cluster.pools.get(pool)
    if known is None or known.type == "erasure":
        raise CommandError(f"Invalid pool ({pool}). Must already exist and be replicated (an erasure "
                           "coded pool can hold the data: data_pool=<pool>)")
    if data_pool and data_pool not in cluster.pools:
        raise CommandError(f"Invalid data_pool ({data_pool}). Must already exist")


def resize_disk(node, disk: DiskView, size_text: str) -> None:
    size = args.size(size_text)
    if disk.size is not None and validation.parse_size(size) <= disk.size:
        raise CommandError(f"resize value must be larger than the current size ({human_size(disk.size)}); "
                           "shrinking is not supported")
    node.change(lambda: node.api.resize_disk(disk.name, size, node.progress))


def reconfigure_disk(node, disk: DiskView, attribute: str, value: Any) -> None:
    controls = args.disk_control(attribute, value)
    node.change(lambda: node.api.reconfigure_disk(disk.name, controls))


def qos_disk(node, disk: DiskView, limits: dict[str, Any]) -> None:
    if not limits:
        current = {k: v for k, v in disk.qos.items() if v}
        text = ", ".join(f"{k}={v}" for k, v in sorted(current.items())) or "no limits"
        node.gw_shell.out(f"{disk.name} QoS: {text}")
        return
    node.change(lambda: node.api.set_qos(disk.name, args.qos_limits(limits)))


class Disks(UIGroup):
    help_intro = """
                 The RBD images registered as disks, by pool.  The size shown is the
                 image's logical size, not the space it uses in RADOS.  A disk is created
                 here, then mapped to a target (<target>/disks add) and given to hosts.
                 """

    def __init__(self, parent) -> None:
        super().__init__("disks", parent)
        for pool in sorted({d.pool for d in self.view.disks.values()}):
            DiskPool(self, pool)

    def summary(self):
        disks = self.view.disks.values()
        return f"{human_size(sum(d.size or 0 for d in disks))}, Disks: {len(disks)}", None

    def ui_command_create(self, pool=None, image=None, size=None, backstore=None, wwn=None, count=None,
                          clone=None, flatten=None, data_pool=None) -> None:
        """
        Create an RBD image and register it as a disk (a clone of a snapshot with clone=).

        Long format  : create pool=<name> image=<name> size=<size> [count=<n>]
        Short format : create <pool>/<image> <size> [<count>]

        size ...... a whole number with an M, G or T suffix, e.g. 100G
        count ..... 1-10: create <image>1..<image>N of that size
        wwn ....... unit serial to use instead of a generated one
        clone ..... <pool>/<image>@<snapshot>: the new image is a clone of that snapshot
                    (size optional, at least the snapshot's)
        flatten ... true: copy the clone's data now, so it no longer depends on the snapshot
        data_pool . an erasure coded pool for the image's data (the image stays in pool)
        """
        request = args.disk_request(pool, image, size, count, clone, usage=CREATE_USAGE)
        flat = args.parse_bool(flatten, "flatten")
        if flat and not request.clone:
            raise CommandError("flatten applies to clones only: give clone=<pool>/<image>@<snapshot>")
        if wwn:
            args._check(validation.check_wwn, wwn)
            if request.count > 1:
                raise CommandError("wwn cannot be combined with count > 1 (each disk needs its own)")
        if backstore:
            args._check(validation.check_backstore, backstore)
        if data_pool:
            args._check(validation.check_pool_name, data_pool)
        for name in request.names:
            if name in self.view.disks:
                raise CommandError(f"Disk '{name}' is already defined")
        check_pool(self, request.pool, data_pool)
        self.change(lambda: self.api.create_disk(request.pool, request.image, size=request.size,
                                                 count=request.count, backstore=backstore, wwn=wwn,
                                                 clone=request.clone, flatten=flat, data_pool=data_pool,
                                                 progress=self.progress))

    def ui_command_attach(self, pool=None, image=None, backstore=None, wwn=None) -> None:
        """
        Register an existing RBD image as a disk (its data is kept).

        Long format  : attach pool=<name> image=<name> [wwn=<serial>]
        Short format : attach <pool>/<image>
        """
        request = args.disk_request(pool, image, None, None, need_size=False, allow_count=False,
                                    usage=ATTACH_USAGE)
        if request.size:
            raise CommandError(f"attach registers an existing image with its own size; give no size. "
                               f"Usage: {ATTACH_USAGE}")
        if wwn:
            args._check(validation.check_wwn, wwn)
        if backstore:
            args._check(validation.check_backstore, backstore)
        if request.names[0] in self.view.disks:
            raise CommandError(f"Disk '{request.names[0]}' is already defined")
        self.change(lambda: self.api.create_disk(request.pool, request.image, backstore=backstore,
                                                 wwn=wwn, create_image=False))

    def ui_command_detach(self, image_id) -> None:
        """
        Remove a disk from the configuration but keep its RBD image (and its data).
        The image keeps its WWN in its metadata: attaching it again restores it.

        e.g. detach rbd/disk_1
        """
        disk = find_disk(self, image_id)
        self.change(lambda: self.api.delete_disk(disk.name, True))

    def ui_command_delete(self, image_id) -> None:
        """
        Remove a disk from the configuration AND delete its RBD image.  This destroys its
        data: check the name.

        e.g. delete rbd/disk_1
        """
        disk = find_disk(self, image_id)
        self.change(lambda: self.api.delete_disk(disk.name, False, self.progress))

    def ui_command_resize(self, image_id, size) -> None:
        """
        Grow a disk (shrinking is refused).  Initiators see CAPACITY DATA HAS CHANGED.

        e.g. resize rbd/disk_1 200G
        """
        resize_disk(self, find_disk(self, image_id), size)

    def ui_command_reconfigure(self, image_id, attribute, value) -> None:
        """
        Set a disk control; an empty value (value=) resets it to the default.

        attributes: hw_max_sectors (1-8192), max_data_area_mb (1-2048),
                    osd_op_timeout (0-600), qfull_timeout (0-600)
        e.g. reconfigure rbd/disk_1 max_data_area_mb 128
        """
        reconfigure_disk(self, find_disk(self, image_id), attribute, value)

    def ui_command_qos(self, image_id, **limits) -> None:
        """
        Show or set a disk's QoS (librbd rbd_qos_*, applied by every gateway); an empty
        value (or 0) removes a setting.

        iops, read_iops, write_iops ... limits in operations/s
        bps, read_bps, write_bps ...... limits in bytes/s (K, M, G, T suffixes)
        <rate>_burst, <rate>_burst_seconds: bursts above the limit, and for how long
        e.g. qos rbd/disk_1 iops=5000 bps=200M iops_burst=8000
        """
        qos_disk(self, find_disk(self, image_id), limits)

    def ui_command_info(self, image_id=None) -> None:
        """
        Show a disk's details (RBD image and gateway side); without a disk, a summary.

        e.g. info rbd/disk_1
        """
        if image_id is None:
            super().ui_command_info()
            return
        disk = find_disk(self, image_id)
        self.get_node(f"{disk.pool}/{disk.image}").ui_command_info()


class DiskPool(UIGroup):
    help_intro = """
                 The disks of one pool; the size is the sum of their logical sizes.
                 """

    def __init__(self, parent, pool: str) -> None:
        super().__init__(pool, parent)
        for disk in self.view.disks.values():
            if disk.pool == pool:
                Disk(self, disk)

    def summary(self):
        total = sum(d.size or 0 for d in self.view.disks.values() if d.pool == self.name)
        return f"{self.name} ({human_size(total)})", None


class Disk(UINode):
    help_intro = """
                 One disk: 'info' shows the RBD image and its gateway settings; resize,
                 reconfigure, snapshot and qos change it.
                 """

    display_attributes = ("image", "ceph_cluster", "pool", "wwn", "size_h", "feature_list", "snapshots",
                          "owner", "lock_owner", "state", "backstore", "backstore_object_name",
                          "control_values", "qos", "clone_source", "data_pool")

    def __init__(self, parent, disk: DiskView) -> None:
        super().__init__(disk.image, parent)
        self.image_id = disk.name

    @property
    def disk(self) -> DiskView:
        disk = self.view.disks.get(self.image_id)
        if disk is None:  # removed by a refresh under our feet
            raise CommandError(f"Disk '{self.image_id}' is no longer defined")
        return disk

    # info attributes
    @property
    def image(self) -> str:
        return self.disk.image

    @property
    def ceph_cluster(self) -> str:
        return self.view.cluster.name

    @property
    def pool(self) -> str:
        return self.disk.pool

    @property
    def wwn(self) -> str:
        return str(self.disk.config.get("wwn", ""))

    @property
    def size_h(self) -> str:
        return human_size(self.disk.size)

    @property
    def feature_list(self) -> list[str]:
        return self.disk.features

    @property
    def snapshots(self) -> list[str]:
        return [f"{name} ({human_size(size)})" for name, size in self.disk.snapshots]

    @property
    def owner(self) -> str:
        return self.disk.owner

    @property
    def lock_owner(self) -> str:
        return self.disk.lock_owner

    @property
    def state(self) -> str:
        return self.disk.state

    @property
    def backstore(self) -> str:
        return str(self.disk.config.get("backstore", ""))

    @property
    def backstore_object_name(self) -> str:
        return str(self.disk.config.get("backstore_object_name", ""))

    @property
    def control_values(self) -> dict:
        return control_values(DISK_CONTROLS, dict(self.disk.config.get("controls") or {}),
                              self.ui_root.settings.disk_defaults)

    @property
    def qos(self) -> dict:
        return {k: v for k, v in self.disk.qos.items() if v}

    @property
    def clone_source(self) -> str:
        return self.disk.parent

    @property
    def data_pool(self) -> str:
        return self.disk.data_pool

    def summary(self):
        disk = self.disk
        if not disk.exists:
            return "NOT FOUND", False
        healthy = None if disk.state == "Unmapped" else disk.state == "Online"
        return f"{disk.name} ({disk.state}, {human_size(disk.size)})", healthy

    def ui_command_resize(self, size) -> None:
        """
        Grow this disk (shrinking is refused).  Initiators see CAPACITY DATA HAS CHANGED.

        e.g. resize 200G
        """
        resize_disk(self, self.disk, size)

    def ui_command_reconfigure(self, attribute, value) -> None:
        """
        Set a disk control; an empty value (value=) resets it to the default.

        attributes: hw_max_sectors (1-8192), max_data_area_mb (1-2048),
                    osd_op_timeout (0-600), qfull_timeout (0-600)
        e.g. reconfigure max_data_area_mb 128
        """
        reconfigure_disk(self, self.disk, attribute, value)

    def ui_command_qos(self, **limits) -> None:
        """
        Show or set this disk's QoS (librbd rbd_qos_*, applied by every gateway); an empty
        value (or 0) removes a setting.

        iops, read_iops, write_iops ... limits in operations/s
        bps, read_bps, write_bps ...... limits in bytes/s (K, M, G, T suffixes)
        <rate>_burst, <rate>_burst_seconds: bursts above the limit, and for how long
        e.g. qos iops=5000 bps=200M iops_burst=8000
        """
        qos_disk(self, self.disk, limits)

    def ui_command_snapshot(self, action, name) -> None:
        """
        Create, delete or roll back to a snapshot of this disk's image.  A rollback
        rewrites the whole image: stop the hosts' I/O first.

        e.g.
        snapshot create snap1
        snapshot delete snap1
        snapshot rollback snap1
        """
        action = args.one_of(action, ("create", "delete", "rollback"),
                             "snapshot create|delete|rollback <name>")
        name = args.snapshot_name(name)
        disk = self.disk
        if action == "create" and name in disk.snapshot_names:
            raise CommandError(f"Snapshot {name} already exists")
        if action != "create" and name not in disk.snapshot_names:
            raise CommandError(f"Snapshot {name} does not exist")
        if action == "rollback":
            self.gw_shell.warn("Please be patient, rollback might take time")
        self.change(lambda: self.api.snapshot(disk.name, name, action, self.progress))
