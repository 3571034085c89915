"""``<target>/host-groups``: hosts that see the same disks at the same LUN ids."""

from __future__ import annotations

from typing import Any

from gwcli import args
from gwcli.args import CommandError
from gwcli.nodes.base import UIGroup, UINode
from gwcli.view import _dict


class HostGroups(UIGroup):
    help_intro = """
                 A host group gives several hosts the same disks at the same LUN ids (a
                 cluster of hosts that share storage).  Only cluster-aware hosts should
                 share disks: others corrupt the data.

                 create <group_name> / delete <group_name>, then in the group:
                 host add|remove <client_iqn> and disk add|remove <pool>/<image>.
                 A host belongs to one group at most; a disk may be in several.
                 """

    def __init__(self, parent) -> None:
        super().__init__("host-groups", parent)
        self.bookmark("host-groups")
        for name, group in _dict(parent.config.get("groups")).items():
            HostGroup(self, name, _dict(group))

    @property
    def target(self):
        return self.parent

    def summary(self):
        return f"Groups : {len(self.children)}", None

    def ui_command_create(self, group_name):
        """
        Create a host group (up to 32 letters, digits, '_', '-' and '@'; it cannot be
        renamed), then go to it.

        e.g. create cluster1
        """
        name = args.group_name(group_name)
        if name in _dict(self.target.config.get("groups")):
            raise CommandError(f"Group {name} already defined")
        target_iqn = self.target.target_iqn
        self.change(lambda: self.api.update_group(target_iqn, name))
        return self.ui_root.get_node(f"{self.path}/{name}")

    def ui_command_delete(self, group_name) -> None:
        """
        Delete a host group.  Its hosts keep the disks they see (remove them from the
        hosts afterwards if they should lose them).

        e.g. delete cluster1
        """
        name = args.group_name(group_name)
        if name not in _dict(self.target.config.get("groups")):
            raise CommandError(f"Group '{name}' does not exist")
        target_iqn = self.target.target_iqn
        self.change(lambda: self.api.delete_group(target_iqn, name))


class HostGroup(UIGroup):
    help_intro = """
                 A host group: its hosts see exactly its disks.  Manage the disks of its
                 hosts here, not on the hosts.

                 e.g.
                 host add|remove iqn.1994-05.com.redhat:rh7-client
                 disk add|remove rbd/disk_1
                 """

    def __init__(self, parent: HostGroups, name: str, group: dict[str, Any]) -> None:
        super().__init__(name, parent)
        for disk in _dict(group.get("disks")):
            HostGroupMember(self, "disk", disk)
        for member in group.get("members") or []:
            HostGroupMember(self, "host", member)

    @property
    def target(self):
        return self.parent.parent

    @property
    def config(self) -> dict[str, Any]:
        group = _dict(self.target.config.get("groups")).get(self.name)
        if group is None:
            raise CommandError(f"Group '{self.name}' is no longer defined")
        return _dict(group)

    @property
    def members(self) -> list[str]:
        return list(self.config.get("members") or [])

    @property
    def disks(self) -> list[str]:
        return list(_dict(self.config.get("disks")))

    def info_fields(self):
        return [("name", self.name), ("members", self.members),
                ("disks", {d: f"lun {i.get('lun_id')}" if isinstance(i, dict) else i
                           for d, i in _dict(self.config.get("disks")).items()})]

    def summary(self):
        return f"Hosts: {len(self.members)}, Disks: {len(self.disks)}", None

    def ui_command_host(self, action, client_iqn) -> None:
        """
        Add a host to the group (it then sees the group's disks) or remove it (it keeps
        the disks it sees).  A host with disks of its own cannot join: remove them first.

        e.g. host add iqn.1994-05.com.redhat:rh7-client
        """
        action = args.one_of(action, ("add", "remove"), "host add|remove <client_iqn>")
        iqn = args.client_iqn(client_iqn)
        clients = _dict(self.target.config.get("clients"))
        if iqn not in clients:
            raise CommandError(f"'{iqn}' is not a host of this target (create it in hosts first)")
        current = str(_dict(clients[iqn]).get("group_name", "") or "")
        if action == "add" and current:
            raise CommandError(f"'{iqn}' already belongs to '{current}'")
        if action == "remove" and current != self.name:
            raise CommandError(f"'{iqn}' does not belong to this group")
        target_iqn = self.target.target_iqn
        self.change(lambda: self.api.update_group(target_iqn, self.name, action, members=[iqn]))

    def ui_command_disk(self, action, disk_name) -> None:
        """
        Add a disk to the group (every host of the group sees it; it is mapped to the
        target first if needed) or remove it from the group and all its hosts.

        e.g. disk add rbd/disk_1
        """
        action = args.one_of(action, ("add", "remove"), "disk add|remove <pool>/<image>")
        name = args.disk_name(disk_name)
        if name not in self.view.disks:
            raise CommandError(f"Disk '{name}' is not defined within the configuration")
        if action == "add" and name in self.disks:
            raise CommandError(f"'{name}' is already defined to this host-group")
        if action == "remove" and name not in self.disks:
            raise CommandError(f"'{name}' is not a member of this group")
        target = self.target
        if action == "add" and name not in _dict(target.config.get("disks")):
            target.get_child("disks").add_disk(name, None, "disk auto-map failed: ", quiet=True)
        self.change(lambda: self.api.update_group(target.target_iqn, self.name, action, disks=[name]))


class HostGroupMember(UINode):
    display_attributes = ("name", "member_type")

    def __init__(self, parent: HostGroup, member_type: str, name: str) -> None:
        super().__init__(name, parent)
        self.member_type = member_type

    def summary(self):
        return self.member_type, True
