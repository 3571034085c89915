"""Clients (initiator ACLs), their CHAP and LUN masking, and host groups."""

from __future__ import annotations

from flask import request

from api.errors import ApiError
from api.routing import answer, client_name, ctx, disk_param, params, route, target_name
from gateway.config import ceph_iscsi, validation
from gateway.config import operations as ops
from gateway.config.model import ChapAuth, ClusterConfig

HOSTGROUP_ACTIONS = ("add", "remove")


def _client_doc(cfg: ClusterConfig, iqn: str, client: str) -> dict:
    ops.get_client(ops.get_target(cfg, iqn), client)
    return ceph_iscsi.export_document(cfg, "redacted")["targets"][iqn]["clients"][client]


def _auth() -> ChapAuth:
    return ChapAuth(*params().credentials())


@route("/api/clients/<target_iqn>", ["GET"])
def get_clients(target_iqn: str):
    """List the clients (initiators) defined to a target
    Example: curl --user admin:secret http://127.0.0.1:5000/api/clients/iqn.2003-01.com.example:t1
    """
    t = ops.get_target(ctx().load(), target_name(target_iqn))
    return answer({"clients": sorted(t.clients)})


@route("/api/client/<target_iqn>/<client_iqn>", ["GET", "PUT", "DELETE"])
def client(target_iqn: str, client_iqn: str):
    """Create (PUT), show (GET) or delete (DELETE) a client of a target
    PUT may carry the client's CHAP at once: username, password, mutual_username,
    mutual_password.  Delete is refused while the client is logged in or in a host group.
    Example: curl --user admin:secret
        -X PUT http://127.0.0.1:5000/api/client/iqn.2003-01.com.example:t1/iqn.1994-05.com.redhat:host1
    """
    c = ctx()
    iqn, name = target_name(target_iqn), client_name(client_iqn)
    if request.method == "GET":
        return answer(_client_doc(c.load(), iqn, name))
    if request.method == "PUT":
        change = c.change(ops.add_client, iqn, name, _auth(), minimum_gateways=c.settings.minimum_gateways,
                          targets=[iqn])
        return answer(change.body("client create/update successful"))
    t = ops.get_target(c.load(), iqn)
    ops.get_client(t, name)
    where = c.live().logged_in(iqn, t.portals).get(name)
    if where:
        raise ApiError(409, f"Client '{name}' is logged in to {iqn} (through {', '.join(where)}); log it out "
                            "before deleting it")
    change = c.change(ops.remove_client, iqn, name, targets=[iqn])
    return answer(change.body("client delete successful"))


@route("/api/clientauth/<target_iqn>/<client_iqn>", ["PUT"])
def clientauth(target_iqn: str, client_iqn: str):
    """Set (or clear, with all fields empty) a client's CHAP credentials
    Parameters: username, password, mutual_username, mutual_password.
    Example: curl --user admin:secret -d username=myiscsiusername -d password=myiscsipassword
        -X PUT http://127.0.0.1:5000/api/clientauth/iqn.2003-01.com.example:t1/iqn.1994-05.com.redhat:host1
    """
    iqn, name = target_name(target_iqn), client_name(client_iqn)
    change = ctx().change(ops.set_client_auth, iqn, name, _auth(), targets=[iqn])
    return answer(change.body("client auth successful"))


@route("/api/clientlun/<target_iqn>/<client_iqn>", ["GET", "PUT", "DELETE"])
def clientlun(target_iqn: str, client_iqn: str):
    """Give (PUT) or take (DELETE) a disk to/from a client; GET lists the client's LUNs
    Parameter: disk (pool/image, mapped to the target).  GET answers ceph-iscsi's
    {"message": {"pool/image": {"lun_id": n}}}.
    Example: curl --user admin:secret -d disk=rbd/disk1
        -X PUT http://127.0.0.1:5000/api/clientlun/iqn.2003-01.com.example:t1/iqn.1994-05.com.redhat:host1
    """
    c = ctx()
    iqn, name = target_name(target_iqn), client_name(client_iqn)
    if request.method == "GET":
        return _client_luns(iqn, name)
    disk = disk_param(params())
    if request.method == "PUT":
        change = c.change(ops.add_client_lun, iqn, name, disk, targets=[iqn])
        return answer(change.body("client masking update successful", lun_id=change.done.result))
    change = c.change(ops.remove_client_lun, iqn, name, disk, targets=[iqn])
    return answer(change.body("client masking update successful"))


def _client_luns(iqn: str, name: str):
    luns = _client_doc(ctx().load(), iqn, name)["luns"]
    return answer({"message": luns})


@route("/api/_clientlun/<target_iqn>/<client_iqn>", ["GET"])
def _clientlun(target_iqn: str, client_iqn: str):
    """ceph-iscsi's internal LUN list of a client (gwcli reads it after changes)."""
    return _client_luns(target_name(target_iqn), client_name(client_iqn))


@route("/api/clientinfo/<target_iqn>/<client_iqn>", ["GET"])
def clientinfo(target_iqn: str, client_iqn: str):
    """Returns a client's alias, addresses and the gateways it is logged in through
    {"alias": ..., "state": {"LOGGED_IN": [gateways]}, "ip_address": [...]}; "unknown" lists
    gateways that are down.
    Example: curl --user admin:secret
        http://127.0.0.1:5000/api/clientinfo/iqn.2003-01.com.example:t1/iqn.1994-05.com.redhat:host1
    """
    c = ctx()
    iqn, name = target_name(target_iqn), client_name(client_iqn)
    t = ops.get_target(c.load(), iqn)
    ops.get_client(t, name)
    live = c.live()
    return answer({**live.client_info(iqn, name, t.portals), "unknown": live.down(t.portals)})


@route("/api/_clientinfo/<target_iqn>/<client_iqn>", ["GET"])
def _clientinfo(target_iqn: str, client_iqn: str):
    """ceph-iscsi's per-gateway client state, for this gateway."""
    c = ctx()
    iqn, name = target_name(target_iqn), client_name(client_iqn)
    ops.get_client(ops.get_target(c.load(), iqn), name)
    info = c.live().client_info(iqn, name, [c.gateway_name])
    return answer({"alias": info["alias"], "state": "LOGGED_IN" if info["state"] else "",
                   "ip_address": info["ip_address"]})


# ---- host groups ----------------------------------------------------------------------------
@route("/api/hostgroups/<target_iqn>", ["GET"])
def hostgroups(target_iqn: str):
    """Return the host group names defined to a target"""
    t = ops.get_target(ctx().load(), target_name(target_iqn))
    return answer({"groups": sorted(t.groups)})


@route("/api/hostgroup/<target_iqn>/<group_name>", ["GET", "PUT", "DELETE"])
def hostgroup(target_iqn: str, group_name: str):
    """Create or change (PUT), show (GET) or delete (DELETE) a host group
    PUT parameters: members (client IQNs, comma-separated), disks (pool/image,
    comma-separated), action=add (default) or remove; any other action answers 405.
    Members see exactly the group's disks; deleting a group keeps its members' masking.
    Example: curl --user admin:secret -d members=iqn.1994-05.com.redhat:host1 -d disks=rbd/disk1
        -X PUT http://127.0.0.1:5000/api/hostgroup/iqn.2003-01.com.example:t1/group1
    """
    c, p = ctx(), params()
    iqn = target_name(target_iqn)
    action = (p.text("action", "add") or "add").lower()
    if action not in HOSTGROUP_ACTIONS:
        raise ApiError(405, f"Invalid hostgroup action specified: {action[:40]!r}; use add or remove")
    validation.check_group_name(group_name)
    if request.method == "GET":
        cfg = c.load()
        t = ops.get_target(cfg, iqn)
        if group_name not in t.groups:
            raise ApiError(404, f"Group name {group_name} does not exist in target {iqn}")
        return answer(ceph_iscsi.export_document(cfg, "redacted")["targets"][iqn]["groups"][group_name])
    if request.method == "DELETE":
        change = c.change(ops.remove_group, iqn, group_name, targets=[iqn])
        return answer(change.body(f"Group definition '{group_name}' deleted"))
    members = [client_name(m) for m in p.names("members")]
    disks = []
    for d in p.names("disks"):
        pool, image = validation.split_disk_name(d)
        disks.append(f"{pool}/{image}")
    if action == "add":
        change = c.change(ops.update_group, iqn, group_name, add_members=members, add_disks=disks,
                          targets=[iqn])
    else:
        if group_name not in ops.get_target(c.load(), iqn).groups:
            raise ApiError(404, f"Group name {group_name} does not exist in target {iqn}")
        change = c.change(ops.update_group, iqn, group_name, remove_members=members, remove_disks=disks,
                          targets=[iqn])
    return answer(change.body("hostgroup create/update successful"))
