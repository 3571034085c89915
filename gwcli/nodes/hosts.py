"""``<target>/hosts``: initiators allowed on a target, their CHAP and their disks (LUN masking)."""

from __future__ import annotations

from typing import Any

from gwcli import args
from gwcli.args import CommandError
from gwcli.format import human_size
from gwcli.nodes.base import UIGroup, UINode
from gwcli.nodes.disks import check_pool
from gwcli.view import SessionView, _dict

CLIENT_CHAP_USAGE = ("username=<user> password=<password> [mutual_username=<user> "
                     "mutual_password=<password>] or nochap")


class Clients(UIGroup):
    help_intro = """
                 The hosts (initiators) allowed to log in to this target, by IQN, with
                 their CHAP credentials and the disks each one sees.

                 e.g. create iqn.1994-05.com.redhat:rh7-client
                 """

    def __init__(self, parent) -> None:
        super().__init__("hosts", parent)
        self.bookmark("hosts")
        for iqn in _dict(parent.config.get("clients")):
            Client(self, iqn)

    @property
    def target(self):
        return self.parent

    def summary(self):
        target = self.target.config
        target_chap = bool(_dict(target.get("auth")).get("username"))
        if target.get("acl_enabled", True):
            text, healthy = "ACL_ENABLED", True
        else:
            text, healthy = "ACL_DISABLED", (None if target_chap else False)
        if not target_chap:
            clients = _dict(target.get("clients")).values()
            modes = {bool(_dict(_dict(c).get("auth")).get("username")) for c in clients}
            if len(modes) > 1:
                text, healthy = "MISCONFIG", False
        return f"Auth: {text}, Hosts: {len(self.children)}", healthy

    def ui_command_create(self, client_iqn):
        """
        Allow an initiator (by its IQN) to log in to this target, then go to it to set
        its CHAP credentials (auth) and give it disks (disk add).

        e.g. create iqn.1994-05.com.redhat:rh7-client
        """
        iqn = args.client_iqn(client_iqn)
        if iqn in _dict(self.target.config.get("clients")):
            raise CommandError(f"A client with the name '{iqn}' is already defined")
        target_iqn = self.target.target_iqn
        self.change(lambda: self.api.create_client(target_iqn, iqn))
        return self.ui_root.get_node(f"{self.path}/{iqn}")

    def ui_command_delete(self, client_iqn) -> None:
        """
        Remove an initiator from this target (it must have logged out, and left its
        host group).

        e.g. delete iqn.1994-05.com.redhat:rh7-client
        """
        iqn = args.client_iqn(client_iqn)
        if iqn not in _dict(self.target.config.get("clients")):
            raise CommandError(f"Client '{iqn}' is not defined")
        target_iqn = self.target.target_iqn
        self.change(lambda: self.api.delete_client(target_iqn, iqn))

    def ui_command_auth(self, action=None) -> None:
        """
        For all hosts of this target:

        nochap ........ remove every host's CHAP credentials (initiator name ACLs only)
        enable_acl .... only the hosts listed here may log in
        disable_acl ... any initiator may log in (use target CHAP: <target> auth)

        e.g. auth disable_acl
        """
        action = args.one_of(action, ("nochap", "enable_acl", "disable_acl"),
                             "auth nochap|enable_acl|disable_acl")
        target_iqn = self.target.target_iqn
        if action != "nochap":
            self.change(lambda: self.api.target_acl(target_iqn, action))
            return
        clients = [iqn for iqn, c in _dict(self.target.config.get("clients")).items()
                   if _dict(_dict(c).get("auth")).get("username")]
        nochap = dict.fromkeys(args.CHAP_FIELDS, "")
        for iqn in clients:
            self.change(lambda iqn=iqn: self.api.client_auth(target_iqn, iqn, nochap),
                        f"clearing CHAP of {iqn} failed: ", refresh=False, quiet=True)
        self.ui_root.refresh()
        self.gw_shell.ok("ok")


class Client(UINode):
    help_intro = """
                 One host: 'auth' sets its CHAP credentials, 'disk add|remove' its disks
                 (a LUN id is chosen once and kept).  A host in a host group gets its disks
                 from the group.
                 """

    display_attributes = ("client_iqn", "ip_address", "alias", "logged_in", "auth", "group_name", "luns")

    def __init__(self, parent: Clients, iqn: str) -> None:
        super().__init__(iqn, parent)
        self.client_iqn = iqn
        for disk, entry in sorted(self.luns.items(), key=lambda kv: _dict(kv[1]).get("lun_id", 0)):
            MappedLun(self, disk, _dict(entry).get("lun_id"))

    @property
    def target(self):
        return self.parent.parent

    @property
    def config(self) -> dict[str, Any]:
        client = _dict(self.target.config.get("clients")).get(self.client_iqn)
        if client is None:
            raise CommandError(f"Client '{self.client_iqn}' is no longer defined")
        return _dict(client)

    @property
    def session(self) -> SessionView:
        return self.view.sessions.get((self.target.target_iqn, self.client_iqn)) or SessionView()

    @property
    def auth(self) -> dict[str, Any]:
        return args.auth_fields(self.config.get("auth"))

    @property
    def luns(self) -> dict[str, Any]:
        return _dict(self.config.get("luns"))

    @property
    def group_name(self) -> str:
        return str(self.config.get("group_name", "") or "")

    @property
    def ip_address(self) -> str:
        return ",".join(self.session.ip_address)

    @property
    def alias(self) -> str:
        return self.session.alias

    @property
    def logged_in(self) -> str:
        gateways = self.session.logged_in
        return f"LOGGED_IN ({','.join(gateways)})" if gateways else ""

    def summary(self):
        parts = ["LOGGED-IN"] if self.session.logged_in else []
        mode = args.chap_mode(self.auth)
        total = sum(self.view.disks[d].size or 0 for d in self.luns if d in self.view.disks)
        parts += [f"Auth: {mode}", f"Disks: {len(self.luns)}({human_size(total)})"]
        return ", ".join(parts), mode != "None"

    def ui_command_auth(self, username=None, password=None, mutual_username=None,
                        mutual_password=None) -> None:
        """
        Set this host's CHAP credentials (CHAP, or CHAP_MUTUAL with the mutual pair), or
        remove them with nochap.

        username / mutual_username ... 8-64 characters: letters, digits and . : @ _ -
        password / mutual_password ... 12-16 characters: letters, digits and @ _ - /
        e.g. auth username=<user> password=<pass> [mutual_username=<u> mutual_password=<p>]
        """
        credentials = args.chap(username, password, mutual_username, mutual_password, CLIENT_CHAP_USAGE)
        target_iqn = self.target.target_iqn
        self.change(lambda: self.api.client_auth(target_iqn, self.client_iqn, credentials))

    def ui_command_disk(self, action="add", disk=None, size=None) -> None:
        """
        Give this host a disk, or take it away.  A disk that does not exist yet is
        created (size needed) and a disk not mapped to the target is mapped first.

        e.g.
        disk add rbd/disk_1
        disk add rbd/new_disk 10G
        disk remove rbd/disk_1
        """
        action = args.one_of(action, ("add", "remove"), "disk add|remove <pool>/<image> [<size>]")
        if not disk:
            raise CommandError("You must supply a disk name to add/remove for this client")
        name = args.disk_name(disk)
        target = self.target
        target_iqn = target.target_iqn
        if self.group_name:
            raise CommandError(f"'{self.client_iqn}' belongs to host group {self.group_name}: manage its "
                               "disks in the group")
        if action == "remove":
            if name not in self.luns:
                raise CommandError(f"disk '{name}' is not mapped to this client")
            self.change(lambda: self.api.client_lun(target_iqn, self.client_iqn, name, False))
            return
        if name in self.luns:
            raise CommandError(f"Disk {name} already mapped")
        if name not in self.view.disks:
            pool, _, image = name.partition("/")
            request = args.disk_request(pool, image, size, None, allow_count=False,
                                        usage="disk add <pool>/<image> <size>")
            check_pool(self, pool, None)
            self.gw_shell.info(f"Disk {name} is not defined: creating it ({request.size})")
            self.change(lambda: self.api.create_disk(pool, image, size=request.size, progress=self.progress),
                        "disk auto-define failed: ", quiet=True)
        elif size:
            raise CommandError(f"Disk {name} already exists: do not give a size")
        if name not in _dict(target.config.get("disks")):
            target.get_child("disks").add_disk(name, None, "disk auto-map failed: ", quiet=True)
        report = self.change(lambda: self.api.client_lun(target_iqn, self.client_iqn, name, True),
                             quiet=True)
        others = [iqn for iqn, c in _dict(target.config.get("clients")).items()
                  if iqn != self.client_iqn and name in _dict(_dict(c).get("luns"))]
        if others:
            self.gw_shell.warn(f"Warning: '{name}' mapped to {len(others)} other client(s)")
        self.gw_shell.ok(report.outcome())


class MappedLun(UINode):
    display_attributes = ("rbd_name", "owner", "size", "size_h", "lun_id")

    def __init__(self, parent: Client, disk: str, lun_id: Any) -> None:
        super().__init__(f"lun {lun_id}", parent)
        self.rbd_name = disk
        self.lun_id = lun_id

    @property
    def owner(self) -> str:
        disk = self.view.disks.get(self.rbd_name)
        return disk.owner if disk else ""

    @property
    def size(self) -> int | None:
        disk = self.view.disks.get(self.rbd_name)
        return disk.size if disk else None

    @property
    def size_h(self) -> str:
        return human_size(self.size)

    def summary(self):
        return f"{self.rbd_name}({self.size_h}), Owner: {self.owner}", True
