"""Every gwcli command, long and short forms: the API request it sends, or the error it prints.

Each case runs one command line in the shell (at a given path) against the fake API
holding the populated configuration, and checks the change requests sent (method, path,
form fields) or, for bad input, the message and that nothing was sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from gwcli_fake_api import Harness, populated

T = "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
TP = f"/iscsi-targets/{T}"
RH7 = "iqn.1994-05.com.redhat:rh7-client"
NODE1 = "iqn.1994-05.com.redhat:node1"
NOCHAP = "iqn.1994-05.com.redhat:nochap"


@dataclass
class Req:
    method: str
    path: str
    form: dict

    def matches(self, recorded) -> bool:
        if (recorded.method, recorded.path) != (self.method, self.path):
            return False
        for key, value in self.form.items():
            got = recorded.form.get(key)
            if key in ("controls", "qos"):
                got = json.loads(got) if got else None
            if got != value:
                return False
        return True


@dataclass
class Err:
    """gwcli refuses the input itself: nothing is sent."""

    text: str


@dataclass
class Refused:
    """gwcli sends the change and prints the API's refusal."""

    text: str


def put(path, **form):
    return Req("PUT", f"/api/{path}", form)


def delete(path, **form):
    return Req("DELETE", f"/api/{path}", form)


CASES = [
    # ---- /disks ---------------------------------------------------------------------------
    ("/disks", "create pool=rbd image=d1 size=10G",
     [put("disk/rbd/d1", mode="create", size="10G", create_image="true")]),
    ("/disks", "create rbd/d1 10g", [put("disk/rbd/d1", mode="create", size="10G")]),
    ("/disks", "create rbd/d 1G 3", [put("disk/rbd/d", mode="create", size="1G", count="3")]),
    ("/disks", "create rbd/d 1G count=3", [put("disk/rbd/d", mode="create", size="1G", count="3")]),
    ("/disks", "create pool=rbd image=d wwn=my-serial-1 size=1G", [put("disk/rbd/d", wwn="my-serial-1")]),
    ("/disks", "create pool=rbd image=c1 clone=rbd/disk_1@before-upgrade",
     [put("disk/rbd/c1", mode="create", clone="rbd/disk_1@before-upgrade")]),
    ("/disks", "create rbd/c1 clone=rbd/disk_1@before-upgrade",
      [put("disk/rbd/c1", clone="rbd/disk_1@before-upgrade")]),
    ("/disks", "create pool=rbd image=e1 size=1G data_pool=ec", [put("disk/rbd/e1", data_pool="ec")]),
    ("/disks", "create rbd/c1 clone=rbd/disk_1@before-upgrade flatten=true",
     [put("disk/rbd/c1", clone="rbd/disk_1@before-upgrade", flatten="true")]),
    ("/disks", "create rbd/c1 1G flatten=true", Err("flatten applies to clones only")),
    ("/disks", "create rbd/d1", Err("size is required to create a new image")),
    ("/disks", "create pool=rbd size=1G", Err("pool and image are required. Usage: create pool=<pool>")),
    ("/disks", "create rbd/d1 10X",
      Err("size must be a whole number followed by M, G or T (e.g. 10G), got '10X'")),
    ("/disks", "create rbd/d1 1.5G", Err("size must be a whole number followed by M, G or T")),
    ("/disks", "create rbd/d1 1G 11", Err("count must be a whole number 1..10, got '11'")),
    ("/disks", "create rbd/d1 1G count=x", Err("count must be a whole number 1..10, got 'x'")),
    ("/disks", "create rbd/bad!name 1G", Err("image name 'bad!name' contains '!'")),
    ("/disks", "create rbd/disk_1 1G", Err("Disk 'rbd/disk_1' is already defined")),
    ("/disks", "create rbd/c clone=rbd/disk_1",
      Err("clone must be written pool/image@snapshot, got 'rbd/disk_1'")),
    ("/disks", "create rbd/c 1G 2 clone=rbd/disk_1@s", Err("count and clone cannot be combined")),
    ("/disks", "create rbd/d 1G 2 wwn=abc", Err("wwn cannot be combined with count > 1")),
    ("/disks", "create pool=nopool image=x size=1G",
      Err("Invalid pool (nopool). Must already exist and be replicated")),
    ("/disks", "create pool=ec image=x size=1G",
      Err("Invalid pool (ec). Must already exist and be replicated")),
    ("/disks", "create pool=rbd image=x size=1G backstore=user:qcow",
      Err("backstore 'user:qcow' is not supported")),
    ("/disks", "create rbd/d 1G bogus=1", Err("Unexpected keyword parameter 'bogus'.")),
    ("/disks", "attach pool=rbd image=gone2", [put("disk/rbd/gone2", mode="create", create_image="false")]),
    ("/disks", "attach rbd/gone2", [put("disk/rbd/gone2", mode="create", create_image="false")]),
    ("/disks", "attach rbd/disk_1", Err("Disk 'rbd/disk_1' is already defined")),
    ("/disks", "attach rbd/x 1G", Err("attach registers an existing image with its own size; give no size")),
    ("/disks", "detach rbd/gone", [delete("disk/rbd/gone", preserve_image="true")]),
    ("/disks", "delete rbd/gone", [delete("disk/rbd/gone", preserve_image="false")]),
    ("/disks", "delete rbd/disk_1", Refused("disk rbd/disk_1 is in use by target")),
    ("/disks", "delete rbd/nope", Err("Disk 'rbd/nope' is not defined to the configuration")),
    ("/disks", "delete disk_1", Err("disk 'disk_1' must be written pool/image")),
    ("/disks", "resize rbd/disk_1 2G", [put("disk/rbd/disk_1", mode="resize", size="2G")]),
    ("/disks", "resize rbd/disk_1 1G", Err("resize value must be larger than the current size (1G)")),
    ("/disks", "resize rbd/disk_1", Err("Missing required parameter size")),
    ("/disks", "reconfigure rbd/disk_1 qfull_timeout 10",
     [put("disk/rbd/disk_1", mode="reconfigure", controls={"qfull_timeout": 10})]),
    ("/disks", "reconfigure image_id=rbd/disk_1 attribute=qfull_timeout value=",
     [put("disk/rbd/disk_1", mode="reconfigure", controls={"qfull_timeout": ""})]),
    ("/disks", "reconfigure rbd/disk_1 bogus 1", Err("unknown disk attribute 'bogus'; supported attributes: "
                                                    "hw_max_sectors, max_data_area_mb, osd_op_timeout")),
    ("/disks", "reconfigure rbd/disk_1 qfull_timeout 601",
      Err("qfull_timeout: 601 is out of range, allowed 0..600")),
    ("/disks", "qos rbd/disk_1 iops=500 bps=10M",
     [put("disk/rbd/disk_1", mode="reconfigure", qos={"iops_limit": 500, "bps_limit": 10 << 20})]),
    ("/disks", "qos rbd/disk_1 iops=", [put("disk/rbd/disk_1", mode="reconfigure", qos={"iops_limit": ""})]),
    ("/disks", "qos rbd/disk_1 iops=10M",
      Err("iops must be a whole number of operations per second, got '10M'")),
    ("/disks", "qos rbd/disk_1 speed=1", Err("unknown QoS setting 'speed'")),
    ("/disks/rbd/disk_1", "qos write_bps_burst=1G iops_burst_seconds=5",
     [put("disk/rbd/disk_1", qos={"write_bps_burst": 1 << 30, "iops_burst_seconds": 5})]),
    ("/disks/rbd/disk_1", "qos iops_burst_seconds=0", Err("iops_burst_seconds must be at least 1 second")),
    ("/disks/rbd/disk_1", "resize 2G", [put("disk/rbd/disk_1", mode="resize", size="2G")]),
    ("/disks/rbd/disk_1", "resize 2", Err("size must be a whole number followed by M, G or T")),
    ("/disks/rbd/disk_1", "reconfigure max_data_area_mb 16",
     [put("disk/rbd/disk_1", mode="reconfigure", controls={"max_data_area_mb": 16})]),
    ("/disks/rbd/disk_1", "snapshot create s1", [put("disksnap/rbd/disk_1/s1", mode="create")]),
    ("/disks/rbd/disk_1", "snapshot rollback before-upgrade", [put("disksnap/rbd/disk_1/before-upgrade",
                                                                   mode="rollback")]),
    ("/disks/rbd/disk_1", "snapshot delete before-upgrade", [delete("disksnap/rbd/disk_1/before-upgrade")]),
    ("/disks/rbd/disk_1", "snapshot create before-upgrade", Err("Snapshot before-upgrade already exists")),
    ("/disks/rbd/disk_1", "snapshot delete nope", Err("Snapshot nope does not exist")),
    ("/disks/rbd/disk_1", "snapshot frobnicate s1",
      Err("expected create or delete or rollback, got 'frobnicate'")),
    ("/disks/rbd/disk_1", "snapshot create a@b", Err("snapshot name 'a@b' must not contain '@'")),
    # ---- /iscsi-targets -------------------------------------------------------------------
    ("/iscsi-targets", "create iqn.2003-01.com.example:t2", [put("target/iqn.2003-01.com.example:t2")]),
    ("/iscsi-targets", "create IQN.2003-01.COM.EXAMPLE:T2", [put("target/iqn.2003-01.com.example:t2")]),
    ("/iscsi-targets", "create target_iqn=iqn.2003-01.com.example:t2",
      [put("target/iqn.2003-01.com.example:t2")]),
    ("/iscsi-targets", "create foo", Err("target name 'foo' must start with 'iqn.'")),
    ("/iscsi-targets", "create iqn.2003-13.com.example:t", Err("month 13 is not 01..12")),
    ("/iscsi-targets", f"create {T}", Err(f"Target {T} already exists")),
    ("/iscsi-targets", f"delete {T}",
      Refused(f"target {T} still has 4 client(s) and 4 disk(s); remove them first")),
    ("/iscsi-targets", "delete iqn.2003-01.com.example:none",
      Err("Target iqn.2003-01.com.example:none does not exist")),
    ("/iscsi-targets", "clearconfig", Err("To clear the configuration you must specify confirm=true")),
    ("/iscsi-targets", "clearconfig confirm=maybe", Err("confirm must be true or false, got 'maybe'")),
    ("/iscsi-targets", "clearconfig confirm=true", Err(f"{T} - Clients(4) must be removed first")),
    ("/iscsi-targets", "discovery_auth username=discoveryuser password=discoverypass1",
     [put("discoveryauth", username="discoveryuser", password="discoverypass1", mutual_username="")]),
    ("/iscsi-targets", "discovery_auth nochap",
     [put("discoveryauth", username="", password="", mutual_username="", mutual_password="")]),
    ("/iscsi-targets", "discovery_auth",
      Err("to set or clear CHAP give username=<user> password=<password>")),
    ("/iscsi-targets", "discovery_auth username=short password=discoverypass1",
     Err("CHAP username must be 8 to 64 characters long (got 5)")),
    ("/iscsi-targets", "discovery_auth username=discoveryuser password=short",
     Err("CHAP password must be 12 to 16 characters long (got 5)")),
    ("/iscsi-targets", "discovery_auth username=discoveryuser",
     Err("a CHAP password is required with a CHAP username")),
    ("/iscsi-targets", "discovery_auth nochap password=x", Err("nochap takes no other arguments")),
    ("/iscsi-targets", "drain gw1.example.com", [put(f"gateway/{T}/gw1.example.com/drain")]),
    ("/iscsi-targets", "drain gw9.example.com", Err("Gateway gw9.example.com serves no target")),
    # ---- a target -------------------------------------------------------------------------
    (TP, "reconfigure cmdsn_depth 64",
      [put(f"target/{T}", mode="reconfigure", controls={"cmdsn_depth": 64})]),
    (TP, "reconfigure immediate_data No", [put(f"target/{T}", controls={"immediate_data": False})]),
    (TP, "reconfigure attribute=nopin_timeout value=", [put(f"target/{T}", controls={"nopin_timeout": ""})]),
    (TP, "reconfigure cmdsn_depth 0", Err("cmdsn_depth: 0 is out of range, allowed 1..512")),
    (TP, "reconfigure immediate_data maybe", Err("immediate_data: expected a boolean")),
    (TP, "reconfigure nope 1", Err("unknown target attribute 'nope'; supported attributes: cmdsn_depth")),
    (TP, "auth nochap", [put(f"targetauth/{T}", username="", password="")]),
    (TP, "auth username=targetuser1 password=targetpassword",
     Refused(f"target {T} has ACLs enabled; target CHAP applies only with acl_enabled=false")),
    (TP, "auth username=targetuser1", Err("a CHAP password is required with a CHAP username")),
    # ---- target disks -----------------------------------------------------------------------
    (f"{TP}/disks", "add rbd/gone", [put(f"targetlun/{T}", disk="rbd/gone")]),
    (f"{TP}/disks", "add rbd/gone 7", [put(f"targetlun/{T}", disk="rbd/gone", lun_id="7")]),
    (f"{TP}/disks", "add disk=rbd/gone lun_id=7", [put(f"targetlun/{T}", disk="rbd/gone", lun_id="7")]),
    (f"{TP}/disks", "add rbd/gone 0", Refused(f"LUN id 0 is already used by disk rbd/disk_1 in target {T}")),
    (f"{TP}/disks", "add rbd/gone 300", Err("LUN id 300 is out of range 0..255")),
    (f"{TP}/disks", "add rbd/nope", Err("Disk 'rbd/nope' is not defined; create it first")),
    (f"{TP}/disks", "delete rbd/disk_3", [delete(f"targetlun/{T}", disk="rbd/disk_3")]),
    (f"{TP}/disks", "delete rbd/gone", Err("Disk 'rbd/gone' is not mapped to this target")),
    (f"{TP}/disks", "delete rbd/disk_1", Refused(f"disk rbd/disk_1 is mapped to client(s) {RH7}")),
    (f"{TP}/disks", "owner rbd/disk_1 gw2.example.com",
     [put("disk/rbd/disk_1", mode="owner", owner="gw2.example.com")]),
    (f"{TP}/disks", "owner rbd/disk_1 gw1.example.com", Err("gw1.example.com already owns rbd/disk_1")),
    (f"{TP}/disks", "owner rbd/disk_1 gw9.example.com",
      Err(f"Gateway gw9.example.com does not serve target {T}")),
    (f"{TP}/disks/rbd/disk_1", "owner gw2.example.com",
      [put("disk/rbd/disk_1", mode="owner", owner="gw2.example.com")]),
    # ---- gateways --------------------------------------------------------------------------
    (f"{TP}/gateways", "create gw3.example.com 192.168.100.203",
     [put(f"gateway/{T}/gw3.example.com", ip_address="192.168.100.203", nosync="false", skipchecks="false")]),
    (f"{TP}/gateways", "create gateway_name=gw3 ip_addresses=10.0.0.1,10.0.0.2 skipchecks=true",
     [put(f"gateway/{T}/gw3", ip_address="10.0.0.1,10.0.0.2", skipchecks="true")]),
    (f"{TP}/gateways", "create gw3 300.1.1.1", Err("'300.1.1.1' is not an IPv4 or IPv6 address")),
    (f"{TP}/gateways", "create gw3 10.0.0.1 skipchecks=maybe",
      Err("skipchecks must be true or false, got 'maybe'")),
    (f"{TP}/gateways", "create gw_3 10.0.0.1", Err("gateway name 'gw_3' must be a host name or FQDN")),
    (f"{TP}/gateways", "create gw1.example.com 10.1.1.1",
      Err(f"Gateway gw1.example.com already serves target {T}")),
    (f"{TP}/gateways", "create gw3 192.168.100.201",
     Refused("address 192.168.100.201 is already a portal of gateway gw1.example.com")),
    (f"{TP}/gateways", "create gw3", Err("Missing required parameter ip_addresses")),
    (f"{TP}/gateways", "delete gw2.example.com", [delete(f"gateway/{T}/gw2.example.com", force="false")]),
    (f"{TP}/gateways", "delete gw2.example.com confirm=true",
      [delete(f"gateway/{T}/gw2.example.com", force="true")]),
    (f"{TP}/gateways", "delete gw9.example.com", Err(f"Gateway gw9.example.com does not serve target {T}")),
    (f"{TP}/gateways", "drain gw1.example.com", [put(f"gateway/{T}/gw1.example.com/drain")]),
    (f"{TP}/gateways/gw2.example.com", "drain", [put(f"gateway/{T}/gw2.example.com/drain")]),
    # ---- host groups ------------------------------------------------------------------------
    (f"{TP}/host-groups", "create grp2", [put(f"hostgroup/{T}/grp2", action="add")]),
    (f"{TP}/host-groups", "create bad!", Err("host group name 'bad!' must be 1 to 32 characters")),
    (f"{TP}/host-groups", "create cluster1", Err("Group cluster1 already defined")),
    (f"{TP}/host-groups", "delete cluster1", [delete(f"hostgroup/{T}/cluster1")]),
    (f"{TP}/host-groups", "delete nope", Err("Group 'nope' does not exist")),
    (f"{TP}/host-groups/cluster1", f"host add {NOCHAP}",
      [put(f"hostgroup/{T}/cluster1", action="add", members=NOCHAP)]),
    (f"{TP}/host-groups/cluster1", f"host remove {NODE1}",
     [put(f"hostgroup/{T}/cluster1", action="remove", members=NODE1)]),
    (f"{TP}/host-groups/cluster1", f"host add {NODE1}", Err(f"'{NODE1}' already belongs to 'cluster1'")),
    (f"{TP}/host-groups/cluster1", f"host remove {RH7}", Err(f"'{RH7}' does not belong to this group")),
    (f"{TP}/host-groups/cluster1", f"host add {RH7}",
     Refused(f"client {RH7} has disks mapped directly; remove them before adding it to a host group")),
    (f"{TP}/host-groups/cluster1", "host join x", Err("expected add or remove, got 'join'")),
    (f"{TP}/host-groups/cluster1", "disk add rbd/disk_1", [put(f"hostgroup/{T}/cluster1", action="add",
                                                                disks="rbd/disk_1")]),
    (f"{TP}/host-groups/cluster1", "disk add rbd/gone",
     [put(f"targetlun/{T}", disk="rbd/gone"), put(f"hostgroup/{T}/cluster1", disks="rbd/gone")]),
    (f"{TP}/host-groups/cluster1", "disk remove rbd/disk_2",
     [put(f"hostgroup/{T}/cluster1", action="remove", disks="rbd/disk_2")]),
    (f"{TP}/host-groups/cluster1", "disk add rbd/disk_2",
      Err("'rbd/disk_2' is already defined to this host-group")),
    (f"{TP}/host-groups/cluster1", "disk add rbd/nope",
      Err("Disk 'rbd/nope' is not defined within the configuration")),
    # ---- hosts -----------------------------------------------------------------------------
    (f"{TP}/hosts", "create iqn.1994-05.com.redhat:new", [put(f"client/{T}/iqn.1994-05.com.redhat:new")]),
    (f"{TP}/hosts", "create client_iqn=iqn.1994-05.com.redhat:new",
      [put(f"client/{T}/iqn.1994-05.com.redhat:new")]),
    (f"{TP}/hosts", "create bad", Err("client name 'bad' must start with 'iqn.', 'eui.' or 'naa.'")),
    (f"{TP}/hosts", f"create {RH7}", Err(f"A client with the name '{RH7}' is already defined")),
    (f"{TP}/hosts", f"delete {NOCHAP}", [delete(f"client/{T}/{NOCHAP}")]),
    (f"{TP}/hosts", f"delete {NODE1}", Refused(f"client {NODE1} is a member of host group cluster1")),
    (f"{TP}/hosts", "auth disable_acl",
      Refused(f"target {T} has 4 client(s); remove them before disabling ACLs")),
    (f"{TP}/hosts", "auth enable_acl", [put(f"targetauth/{T}", action="enable_acl")]),
    (f"{TP}/hosts", "auth nochap", [put(f"clientauth/{T}/{RH7}", username="", password=""),
                                   put(f"clientauth/{T}/{NODE1}", username=""),
                                   put(f"clientauth/{T}/iqn.1994-05.com.redhat:node2", username="")]),
    (f"{TP}/hosts", "auth", Err("expected nochap or enable_acl or disable_acl, got nothing")),
    (f"{TP}/hosts/{RH7}", "auth username=myiscsiusername password=myiscsipassw0",
     [put(f"clientauth/{T}/{RH7}", username="myiscsiusername", password="myiscsipassw0")]),
    (f"{TP}/hosts/{RH7}", "auth myiscsiusername myiscsipassw0",
     [put(f"clientauth/{T}/{RH7}", username="myiscsiusername", password="myiscsipassw0")]),
    (f"{TP}/hosts/{RH7}", "auth nochap", [put(f"clientauth/{T}/{RH7}", username="", password="")]),
    (f"{TP}/hosts/{RH7}", "auth username=myiscsiusername password=myiscsipassw0 mutual_username=tgtuser01 "
                          "mutual_password=tgtpassword01",
     [put(f"clientauth/{T}/{RH7}", mutual_username="tgtuser01", mutual_password="tgtpassword01")]),
    (f"{TP}/hosts/{RH7}", "auth username=myiscsiusername password=bad!password",
     Err("CHAP password contains '!'; allowed are letters, digits and @ _ - /")),
    (f"{TP}/hosts/{RH7}", "auth username=myiscsiusername password=myiscsipassw0 mutual_username=tgtuser01",
     Err("a mutual CHAP password is required with a mutual CHAP username")),
    (f"{TP}/hosts/{RH7}", "disk add rbd/disk_3", [put(f"clientlun/{T}/{RH7}", disk="rbd/disk_3")]),
    (f"{TP}/hosts/{RH7}", "disk add disk=rbd/disk_3", [put(f"clientlun/{T}/{RH7}", disk="rbd/disk_3")]),
    (f"{TP}/hosts/{RH7}", "disk add rbd/gone", [put(f"targetlun/{T}", disk="rbd/gone"),
                                                put(f"clientlun/{T}/{RH7}", disk="rbd/gone")]),
    (f"{TP}/hosts/{RH7}", "disk add rbd/new 5G", [put("disk/rbd/new", mode="create", size="5G"),
                                                  put(f"targetlun/{T}", disk="rbd/new"),
                                                  put(f"clientlun/{T}/{RH7}", disk="rbd/new")]),
    (f"{TP}/hosts/{RH7}", "disk add rbd/new", Err("size is required to create a new image")),
    (f"{TP}/hosts/{RH7}", "disk add rbd/disk_3 5G",
      Err("Disk rbd/disk_3 already exists: do not give a size")),
    (f"{TP}/hosts/{RH7}", "disk add rbd/disk_1", Err("Disk rbd/disk_1 already mapped")),
    (f"{TP}/hosts/{RH7}", "disk remove rbd/disk_1", [delete(f"clientlun/{T}/{RH7}", disk="rbd/disk_1")]),
    (f"{TP}/hosts/{RH7}", "disk remove rbd/disk_2", Err("disk 'rbd/disk_2' is not mapped to this client")),
    (f"{TP}/hosts/{RH7}", "disk add", Err("You must supply a disk name to add/remove for this client")),
    (f"{TP}/hosts/{RH7}", "disk move rbd/disk_1", Err("expected add or remove, got 'move'")),
    (f"{TP}/hosts/{NODE1}", "disk add rbd/disk_1", Err(f"'{NODE1}' belongs to host group cluster1")),
    # ---- keyword forms of positional arguments ------------------------------------------------
    ("/disks/rbd/disk_1", "snapshot action=create name=s1", [put("disksnap/rbd/disk_1/s1", mode="create")]),
    ("/disks/rbd/disk_1", "resize size=2G", [put("disk/rbd/disk_1", mode="resize", size="2G")]),
    ("/disks", "resize image_id=rbd/disk_1 size=2G", [put("disk/rbd/disk_1", mode="resize", size="2G")]),
    ("/iscsi-targets", "discovery_auth discoveryuser discoverypass1",
     [put("discoveryauth", username="discoveryuser", password="discoverypass1")]),
    ("/iscsi-targets", "drain gateway_name=gw1.example.com", [put(f"gateway/{T}/gw1.example.com/drain")]),
    (f"{TP}/disks", "owner disk=rbd/disk_1 gateway_name=gw2.example.com",
     [put("disk/rbd/disk_1", mode="owner", owner="gw2.example.com")]),
    (f"{TP}/gateways", "delete gateway_name=gw2.example.com", [delete(f"gateway/{T}/gw2.example.com")]),
    (f"{TP}/host-groups", "create group_name=grp2", [put(f"hostgroup/{T}/grp2")]),
    (f"{TP}/host-groups/cluster1", f"host action=add client_iqn={NOCHAP}",
     [put(f"hostgroup/{T}/cluster1", action="add", members=NOCHAP)]),
    (f"{TP}/host-groups/cluster1", "disk action=remove disk_name=rbd/disk_2",
     [put(f"hostgroup/{T}/cluster1", action="remove", disks="rbd/disk_2")]),
    (f"{TP}/hosts", "auth action=enable_acl", [put(f"targetauth/{T}", action="enable_acl")]),
    (f"{TP}/hosts/{RH7}", "disk action=remove disk=rbd/disk_1",
     [delete(f"clientlun/{T}/{RH7}", disk="rbd/disk_1")]),
    (f"{TP}/hosts/{RH7}", "disk add rbd/new size=5G", [put("disk/rbd/new", size="5G"), put(f"targetlun/{T}"),
                                                       put(f"clientlun/{T}/{RH7}", disk="rbd/new")]),
    # ---- anywhere ------------------------------------------------------------------------------
    ("/", "goto nowhere", Err("No bookmark named 'nowhere'")),
    ("/", "frobnicate", Err("Command not found frobnicate")),
    ("/", "cd /nope", Err("No such path /nope")),
    ("/", "export mode=json", Err("expected copy, got 'json'. Usage: export [mode=copy]")),
]


@pytest.fixture
def make_harness(tmp_path):
    made = []

    def make():
        h = Harness(populated(), str(tmp_path / f"prefs{len(made)}"))
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.mark.parametrize(("where", "line", "expected"), CASES, ids=[f"{w} {c}" for w, c, _ in CASES])
def test_command_sends_request_or_explains_error(make_harness, where, line, expected):
    h = make_harness()
    assert h.run(f"cd {where}")[0], where
    ok, out, err = h.run(line)
    changes = h.fake.changes()
    if isinstance(expected, Err):
        assert not ok
        assert expected.text in err, err
        assert changes == [], f"a refused command still sent {changes}"
        return
    if isinstance(expected, Refused):
        assert not ok
        assert expected.text in err, err
        assert len(changes) == 1, changes
        return
    assert ok, err
    assert len(changes) == len(expected), changes
    for want, got in zip(expected, changes, strict=True):
        assert want.matches(got), f"expected {want}, sent {got}"
    assert out.rstrip().splitlines()[-1].startswith("ok"), out


def test_every_command_of_every_node_is_covered():
    """A command added to a node must get a case above (or be listed as read-only here)."""
    h_cls = {"/", "/disks", "/disks/rbd/disk_1", "/iscsi-targets", TP, f"{TP}/disks",
             f"{TP}/disks/rbd/disk_1", f"{TP}/gateways", f"{TP}/gateways/gw2.example.com",
             f"{TP}/host-groups", f"{TP}/host-groups/cluster1", f"{TP}/hosts", f"{TP}/hosts/{RH7}"}
    builtin = {"ls", "cd", "pwd", "bookmarks", "get", "set", "help", "exit", "goto", "info", "refresh", "top",
               "export"}
    covered = {(w, c.split()[0]) for w, c, _ in CASES}
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        h = Harness(populated(), d)
        try:
            for path in h_cls:
                node = h.root.get_node(path)
                for command in node.list_commands():
                    if command not in builtin:
                        assert (path, command) in covered, f"{path} {command} has no test case"
        finally:
            h.close()


def test_refused_change_reports_the_api_message_and_keeps_the_tree(make_harness):
    h = make_harness()
    h.fake.fail_next = (503, "store unavailable: the cluster did not answer")
    ok, _, err = h.run("/iscsi-targets create iqn.2003-01.com.example:t9")
    assert not ok and "store unavailable: the cluster did not answer" in err
    ok, out, _ = h.run("ls /iscsi-targets 1")
    assert ok and "Targets: 1" in out


def test_change_with_a_gateway_down_prints_what_is_pending(make_harness):
    h = make_harness()
    ok, out, err = h.run(f"{TP}/disks add rbd/gone")
    assert ok, err
    assert out.strip().splitlines()[-1] == "ok (pending on gw2.example.com: down)"


def test_change_with_every_gateway_up_prints_ok(make_harness):
    h = make_harness()
    h.fake.gateway_health["gw2.example.com"] = {"state": "applied", "health": "ok"}
    ok, out, _ = h.run(f"{TP}/disks add rbd/gone")
    assert ok and out.strip().splitlines()[-1] == "ok"


def test_hosts_create_goes_to_the_new_host(make_harness):
    h = make_harness()
    h.run(f"cd {TP}/hosts")
    assert h.run("create iqn.1994-05.com.redhat:new")[0]
    assert h.cwd == f"{TP}/hosts/iqn.1994-05.com.redhat:new"


def test_host_groups_create_goes_to_the_new_group(make_harness):
    h = make_harness()
    h.run(f"cd {TP}/host-groups")
    assert h.run("create grp2")[0]
    assert h.cwd == f"{TP}/host-groups/grp2"


def test_current_node_survives_a_refresh_of_the_tree(make_harness):
    h = make_harness()
    h.run(f"cd {TP}/hosts/{RH7}")
    assert h.run("disk add rbd/disk_3")[0]
    assert h.cwd == f"{TP}/hosts/{RH7}"
    ok, out, _ = h.run("ls")
    assert ok and "Disks: 2(2.5G)" in out and "lun 2" in out


def test_goto_follows_automatic_bookmarks(make_harness):
    h = make_harness()
    for name, path in (("gateways", f"{TP}/gateways"), ("hosts", f"{TP}/hosts"),
                       ("host-groups", f"{TP}/host-groups")):
        assert h.run(f"goto {name}")[0]
        assert h.cwd == path


def test_bookmarks_work_as_paths(make_harness):
    h = make_harness()
    ok, out, _ = h.run("ls @hosts 0")
    assert ok and "[Auth: MISCONFIG, Hosts: 4]" in out


def test_export_prints_the_api_config_document(make_harness):
    h = make_harness()
    ok, out, _ = h.run("export")
    from gateway.config.ceph_iscsi import export_document

    assert ok and json.loads(out) == json.loads(json.dumps(export_document(h.fake.cfg)))


def test_clearconfig_deletes_every_target_once_hosts_and_disks_are_gone(make_harness):
    from gateway.config.model import ClusterConfig

    h = make_harness()
    h.fake.cfg = ClusterConfig()
    h.run("/iscsi-targets create iqn.2003-01.com.example:a")
    h.run("/iscsi-targets create iqn.2003-01.com.example:b")
    ok, out, err = h.run("/iscsi-targets clearconfig confirm=true")
    assert ok, err
    assert [(r.method, r.path) for r in h.fake.changes()] == [
        ("DELETE", "/api/target/iqn.2003-01.com.example:a"),
        ("DELETE", "/api/target/iqn.2003-01.com.example:b")]
    assert h.fake.cfg.targets == {}
    assert "gateways" not in (h.shell.prefs["bookmarks"] or {})


def test_info_works_on_every_node(make_harness):
    h = make_harness()
    paths = [node.path for node in _walk(h.root)]
    assert len(paths) > 40
    for path in paths:
        node = h.root.get_node(path)
        ok, out, err = h.run(f"cd {path}") and h.run("info")
        assert ok and out.strip(), f"info at {path}: {err}"
        del node


def _walk(node):
    yield node
    for child in node.children:
        yield from _walk(child)


def test_cluster_refresh_rereads_health(make_harness):
    h = make_harness()
    h.fake.cluster["health"] = {"status": "HEALTH_WARN", "checks": ["1 osds down"]}
    assert h.run("/cluster refresh")[0]
    ok, out, _ = h.run("ls /cluster 1")
    assert "[HEALTH_WARN]" in out
    ok, out, _ = h.run("/cluster/ceph info")
    assert "Health      : HEALTH_WARN\n - 1 osds down" in out


def test_gateways_refresh_reports_reachability(make_harness):
    h = make_harness()
    ok, out, _ = h.run(f"{TP}/gateways refresh")
    assert "1 gateway(s) inaccessible: gw2.example.com (DOWN)" in out
    h.fake.gateway_health["gw2.example.com"] = {"state": "pending", "health": "ok"}
    ok, out, _ = h.run(f"{TP}/gateways refresh")
    assert out.strip() == "All gateways accessible"
    ok, out, _ = h.run(f"ls {TP}/gateways")
    assert "[Up: 2/2, Portals: 2]" in out


def test_view_without_status_or_cluster_endpoints_still_loads(make_harness):
    h = make_harness()
    h.fake.status_available = False
    h.fake.cluster = None
    assert h.run("refresh")[0]
    ok, out, _ = h.run("ls /")
    assert ok
    assert "[UNKNOWN]" in out and "(UNKNOWN)]" in out and "[Up: 0/2, Portals: 2]" in out


def test_a_child_name_first_runs_the_command_in_that_child(make_harness):
    """The seed's ``gateways create ...`` typed in a target: the child's name acts as a path."""
    h = make_harness()
    h.run(f"cd {TP}")
    ok, _, err = h.run("disks add rbd/gone")
    assert ok, err
    assert [(r.method, r.path) for r in h.fake.changes()] == [("PUT", f"/api/targetlun/{T}")]
    assert h.cwd == TP
    ok, out, _ = h.run("info")  # a command of the node itself still wins
    assert ok and out.startswith("Target Iqn")
    h.run(f"cd {TP}/hosts/{RH7}")
    ok, out, _ = h.run("lun0 info")
    assert ok and "Rbd Name .. rbd/disk_1" in out
    ok, _, err = h.run("nosuchchild info")
    assert not ok and "Command not found nosuchchild" in err


def test_long_operation_is_followed_until_done(make_harness):
    h = make_harness()
    h.fake.tasks_on = True
    ok, out, err = h.run(f"{TP}/hosts/{RH7} disk add rbd/new 5G")
    assert ok, err
    polls = [r.path for r in h.fake.requests if r.path.startswith("/api/tasks/")]
    assert polls == ["/api/tasks/1-fake", "/api/tasks/1-fake"]  # running, then done
    assert "rbd/new" in h.fake.cfg.disks and out.strip().splitlines()[-1].startswith("ok")


def test_failed_long_operation_reports_the_task_message(make_harness):
    h = make_harness()
    h.fake.tasks_on = True
    h.fake.images["rbd/disk_1"].snapshots.clear()
    ok, _, err = h.run("/disks delete rbd/disk_1")
    assert not ok and "disk rbd/disk_1 is in use by target" in err
