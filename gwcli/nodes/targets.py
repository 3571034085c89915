"""``/iscsi-targets`` and one target: its disks (LUNs); gateways, hosts and groups elsewhere."""

from __future__ import annotations

from typing import Any

from gateway.settings import TARGET_CONTROLS
from gwcli import args, top
from gwcli.args import CommandError
from gwcli.nodes.base import UIGroup, UINode
from gwcli.nodes.disks import control_values
from gwcli.nodes.gateways import GatewayGroup, drain
from gwcli.nodes.hostgroups import HostGroups
from gwcli.nodes.hosts import Clients
from gwcli.view import _dict

CHAP_USAGE = ("username=<user> password=<password> [mutual_username=<user> mutual_password=<password>] "
              "or nochap")


class ISCSITargets(UIGroup):
    help_intro = """
                 The iSCSI targets, each served by 2-4 gateways (its portals).  An
                 initiator discovers a target through any of its gateways and sees one
                 path per gateway.
                 """

    def __init__(self, parent) -> None:
        super().__init__("iscsi-targets", parent)
        for iqn in self.view.targets:
            Target(self, iqn)

    def summary(self):
        mode = args.chap_mode(self.view.config.get("discovery_auth"))
        return f"DiscoveryAuth: {mode}, Targets: {len(self.children)}", None

    def ui_command_create(self, target_iqn) -> None:
        """
        Create an iSCSI target.  Then add its gateways (<target>/gateways create),
        disks and hosts.

        e.g. create iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw
        """
        iqn = args.target_iqn(target_iqn)
        if iqn in self.view.targets:
            raise CommandError(f"Target {iqn} already exists")
        self.change(lambda: self.api.create_target(iqn))

    def ui_command_delete(self, target_iqn) -> None:
        """
        Delete an iSCSI target; its hosts and disks must have been removed first.

        e.g. delete iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw
        """
        iqn = args.target_iqn(target_iqn)
        if iqn not in self.view.targets:
            raise CommandError(f"Target {iqn} does not exist")
        self.change(lambda: self.api.delete_target(iqn))

    def ui_command_clearconfig(self, confirm=None) -> None:
        """
        Return the configuration to an unused state: every target (and so every
        gateway's portal) is deleted.  All hosts and disks must have been removed first.

        e.g. clearconfig confirm=true
        """
        if not args.parse_bool(confirm, "confirm"):
            raise CommandError("To clear the configuration you must specify confirm=true")
        for iqn, target in self.view.targets.items():
            clients = _dict(_dict(target).get("clients"))
            if clients:
                raise CommandError(f"{iqn} - Clients({len(clients)}) must be removed first before "
                                   "clearing the gateway configuration")
        disks = self.view.disks
        if disks:
            raise CommandError(f"Disks({len(disks)}) must be removed first before clearing the gateway "
                               "configuration")
        for iqn in list(self.view.targets):
            self.change(lambda iqn=iqn: self.api.delete_target(iqn), f"Delete of {iqn} failed: ",
                        refresh=False, quiet=True)
        bookmarks = self.shell.prefs["bookmarks"] or {}
        for name in ("gateways", "hosts", "host-groups"):
            bookmarks.pop(name, None)
        self.shell.prefs.save()
        self.ui_root.refresh()
        self.gw_shell.ok("ok")

    def ui_command_discovery_auth(self, username=None, password=None, mutual_username=None,
                                  mutual_password=None) -> None:
        """
        Set CHAP for discovery sessions (SendTargets), or remove it with nochap.

        e.g.
        discovery_auth username=<user> password=<pass> [mutual_username=<u> mutual_password=<p>]
        discovery_auth nochap
        """
        credentials = args.chap(username, password, mutual_username, mutual_password, CHAP_USAGE)
        self.change(lambda: self.api.discovery_auth(credentials))

    def ui_command_drain(self, gateway_name) -> None:
        """
        Before maintenance of a gateway: move every LUN it owns, in every target it
        serves, to the other gateways.  Its paths stay up (non-optimized).

        e.g. drain ceph-gw-1
        """
        name = args.gateway_name(gateway_name)
        served = [iqn for iqn, t in self.view.targets.items() if name in _dict(_dict(t).get("portals"))]
        if not served:
            raise CommandError(f"Gateway {name} serves no target")
        for iqn in served:
            drain(self.get_child(iqn).get_child("gateways"), name)


class Target(UINode):
    help_intro = """
                 An iSCSI target: the name initiators log in to.  Its gateways are its
                 portals (one path each); its disks are its LUNs; hosts are the initiators
                 allowed in, host groups give several hosts the same disks.
                 """

    display_attributes = ("target_iqn", "auth", "control_values")

    def __init__(self, parent, iqn: str) -> None:
        super().__init__(iqn, parent)
        self.target_iqn = iqn
        TargetDisks(self)
        GatewayGroup(self)
        HostGroups(self)
        Clients(self)

    @property
    def config(self) -> dict[str, Any]:
        target = self.view.targets.get(self.target_iqn)
        if target is None:
            raise CommandError(f"Target {self.target_iqn} is no longer defined")
        return _dict(target)

    @property
    def auth(self) -> dict[str, Any]:
        return args.auth_fields(self.config.get("auth"))

    @property
    def control_values(self) -> dict[str, Any]:
        return control_values(TARGET_CONTROLS, _dict(self.config.get("controls")),
                              self.ui_root.settings.target_defaults)

    def summary(self):
        mode = args.chap_mode(self.auth)
        portals = _dict(self.config.get("portals"))
        return f"Auth: {mode}, Gateways: {len(portals)}", True if mode != "None" else None

    def ui_command_reconfigure(self, attribute, value) -> None:
        """
        Set a target control (iSCSI session parameter); an empty value (value=) resets it.

        attributes: cmdsn_depth (1-512), dataout_timeout (2-60), nopin_response_timeout (3-60),
          nopin_timeout (3-60), immediate_data (yes/no), initial_r2t (yes/no),
          first_burst_length (512-16777215), max_burst_length (512-16777215),
          max_outstanding_r2t (1-65535), max_recv_data_segment_length (512-16777215),
          max_xmit_data_segment_length (512-16777215)
        e.g. reconfigure cmdsn_depth 64
        """
        controls = args.target_control(attribute, value)
        self.change(lambda: self.api.reconfigure_target(self.target_iqn, controls))

    def ui_command_auth(self, username=None, password=None, mutual_username=None,
                        mutual_password=None) -> None:
        """
        Target-level CHAP, for any initiator (only with ACLs disabled: hosts auth
        disable_acl); nochap removes it.

        username / mutual_username ... 8-64 characters: letters, digits and . : @ _ -
        password / mutual_password ... 12-16 characters: letters, digits and @ _ - /
        e.g. auth username=<user> password=<pass> [mutual_username=<u> mutual_password=<p>]
        """
        credentials = args.chap(username, password, mutual_username, mutual_password, CHAP_USAGE)
        self.change(lambda: self.api.target_auth(self.target_iqn, credentials))

    def ui_command_top(self, interval: str = "2", count: str = "0", sort: str = "iops",
                       urls: str | None = None) -> None:
        """
        Live per-LUN I/O of this target (see 'help top' at /).  Press q to leave.
        """
        top.run(self, interval, count, sort, self.target_iqn, urls)


class TargetDisks(UIGroup):
    help_intro = """
                 The disks mapped to this target as LUNs.  A disk is mapped to one target
                 at most; its owner gateway is the Active/Optimized path.
                 """

    def __init__(self, parent: Target) -> None:
        super().__init__("disks", parent)
        for name, entry in sorted(_dict(parent.config.get("disks")).items()):
            TargetDisk(self, name, _dict(entry).get("lun_id"))

    @property
    def target_iqn(self) -> str:
        return self.parent.target_iqn

    def summary(self):
        return f"Disks: {len(self.children)}", None

    def add_disk(self, disk: str, lun: Any = None, failure: str = "", quiet: bool = False) -> None:
        disk = args.disk_name(disk)
        lun = args.lun_id(lun)
        if disk not in self.view.disks:
            raise CommandError(f"Disk '{disk}' is not defined; create it first (/disks create)")
        self.change(lambda: self.api.map_lun(self.target_iqn, disk, lun), failure, quiet=quiet)

    def ui_command_add(self, disk, lun_id=None) -> None:
        """
        Map a disk to this target, at lun_id or the lowest free id.  Its owner is the
        gateway owning the fewest LUNs.

        e.g. add rbd/disk_1 [lun_id]
        """
        self.add_disk(disk, lun_id)

    def ui_command_delete(self, disk) -> None:
        """
        Unmap a disk from this target (no host or host group may still have it).

        e.g. delete rbd/disk_1
        """
        disk = args.disk_name(disk)
        if disk not in _dict(self.parent.config.get("disks")):
            raise CommandError(f"Disk '{disk}' is not mapped to this target")
        self.change(lambda: self.api.unmap_lun(self.target_iqn, disk))

    def ui_command_owner(self, disk, gateway_name) -> None:
        """
        Move a disk's owner (its Active/Optimized gateway) to another gateway of the
        target.  Initiators follow the ALUA change; I/O keeps flowing.

        e.g. owner rbd/disk_1 ceph-gw-2
        """
        self.get_node(args.disk_name(disk)).ui_command_owner(gateway_name)


class TargetDisk(UINode):
    display_attributes = ("name", "owner", "lun_id")

    def __init__(self, parent: TargetDisks, name: str, lun_id: Any) -> None:
        super().__init__(name, parent)
        self.lun_id = lun_id

    @property
    def owner(self) -> str:
        disk = self.view.disks.get(self.name)
        return disk.owner if disk else ""

    def summary(self):
        return f"Owner: {self.owner}, Lun: {self.lun_id}", True

    def ui_command_owner(self, gateway_name) -> None:
        """
        Make another gateway of the target this disk's owner (Active/Optimized path).

        e.g. owner ceph-gw-2
        """
        name = args.gateway_name(gateway_name)
        target = self.parent.parent
        if name not in _dict(target.config.get("portals")):
            raise CommandError(f"Gateway {name} does not serve target {target.target_iqn}")
        if name == self.owner:
            raise CommandError(f"{name} already owns {self.name}")
        self.change(lambda: self.api.move_owner(self.name, name))
