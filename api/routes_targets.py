"""Targets, their gateways (portals), target and discovery authentication."""

from __future__ import annotations

import ipaddress

from flask import request

from api.errors import ApiError
from api.routing import answer, ctx, params, route, target_name
from gateway.config import ceph_iscsi, validation
from gateway.config import operations as ops
from gateway.config.model import ChapAuth, ClusterConfig


def _target_doc(cfg: ClusterConfig, iqn: str) -> dict:
    """The target in ceph-iscsi's shape (secrets redacted); 404 if it does not exist."""
    ops.get_target(cfg, iqn)
    return ceph_iscsi.export_document(cfg, "redacted", ctx().store.cipher)["targets"][iqn]


def _portals(cfg: ClusterConfig, iqn: str) -> dict:
    return _target_doc(cfg, iqn)["portals"]


@route("/api/targets", ["GET"])
def get_targets():
    """List targets defined in the configuration.
    Example: curl --user admin:secret http://127.0.0.1:5000/api/targets
    """
    return answer({"targets": sorted(ctx().load().targets)})


@route("/api/target/<target_iqn>", ["GET", "PUT", "DELETE"])
def target(target_iqn: str):
    """Create (PUT), reconfigure (PUT mode=reconfigure), show (GET) or delete (DELETE) a target
    PUT parameters: mode (absent = create, or 'reconfigure'), controls (JSON object of
    target controls; "" or null resets one to its default).  Delete is refused while the
    target has clients or disks.
    Example: curl --user admin:secret -X PUT http://127.0.0.1:5000/api/target/iqn.2003-01.com.example:t1
    Example: curl --user admin:secret -d mode=reconfigure -d controls='{"cmdsn_depth": 64}'
        -X PUT http://127.0.0.1:5000/api/target/iqn.2003-01.com.example:t1
    """
    c = ctx()
    iqn = target_name(target_iqn)
    if request.method == "GET":
        return answer(_target_doc(c.load(), iqn))
    if request.method == "DELETE":
        change = c.change(ops.remove_target, iqn, targets=[iqn])
        return answer(change.body("Target deleted."))
    p = params()
    mode = p.choice("mode", ["reconfigure"], None, what="target mode")
    controls = p.obj("controls", '{"cmdsn_depth": 64}')
    defaults = c.settings.target_defaults
    if mode is None:
        change = c.change(ops.add_target, iqn, controls, defaults, targets=[iqn])
        return answer(change.body("Target defined successfully"))
    change = c.change(ops.set_target_controls, iqn, controls or {}, defaults, targets=[iqn])
    return answer(change.body("Target reconfigured.", controls=change.done.result))


@route("/api/_target/<target_iqn>", ["DELETE"])
def _target(target_iqn: str):
    """ceph-iscsi's per-gateway target removal (gwcli clearconfig): deletes the target
    (refused while it has clients or disks)."""
    iqn = target_name(target_iqn)
    change = ctx().change(ops.remove_target, iqn, targets=[iqn])
    return answer(change.body("Target deleted."))


@route("/api/gateways/<target_iqn>", ["GET"])
def gateways(target_iqn: str):
    """Return the gateways (portals) of a target
    Each: gateway_ip_list, portal_ip_addresses, inactive_portal_ips, tpgs, tpg_tag.
    Example: curl --user admin:secret http://127.0.0.1:5000/api/gateways/iqn.2003-01.com.example:t1
    """
    return answer(_portals(ctx().load(), target_name(target_iqn)))


def _check_new_gateway(name: str, addresses: list[str]) -> None:
    """What ceph-iscsi asked the new gateway over HTTP, read from its status report."""
    c = ctx()
    g = c.live().gateway(name)
    if not g.alive:
        raise ApiError(400, f"gateway {name} has not reported to the cluster recently; start rbd-target-gw "
                            "there (with gateway_name matching), or pass skipchecks=true")
    d = g.details
    wanted = [validation.check_ip_address(a) for a in addresses]
    # Loopback addresses exist on every host (tests, demos, a portal behind an advertised
    # address); any other address must be one the gateway reports having.
    missing = [a for a in wanted if d.ip_addresses and a not in d.ip_addresses
               and not ipaddress.ip_address(a).is_loopback]
    if missing:
        raise ApiError(400, f"gateway {name} does not have address(es) {', '.join(missing)} (it reports "
                            f"{', '.join(d.ip_addresses)})")
    if d.checkconf and d.checkconf != c.settings.checkconf_hash():
        raise ApiError(400, f"gateway {name} runs with different iscsi-gateway.cfg settings than this "
                            "node (checkconf mismatch); make the files agree, or pass skipchecks=true")


@route("/api/gateway/<target_iqn>/<gateway_name>", ["GET", "PUT", "DELETE"])
def gateway(target_iqn: str, gateway_name: str):
    """Add (PUT), show (GET) or remove (DELETE) a gateway of a target
    PUT parameters: ip_address (comma-separated portal addresses, required), port (TCP port
    of the portals; default the cfg's iscsi_port), advertise (comma-separated host[:port]
    that discovery announces instead of each address: NAT, containers), skipchecks
    (true: do not check the gateway's own report of its addresses and settings), nosync
    (accepted, no effect: gateways always converge to the config).  DELETE: force (accepted;
    a gateway that is down can always be removed).  Removing a gateway moves the LUNs it
    owns to the others; no other gateway's TPG tag changes.
    Example: curl --user admin:secret -d ip_address=192.168.1.10
        -X PUT http://127.0.0.1:5000/api/gateway/iqn.2003-01.com.example:t1/gw1.example.com
    """
    c = ctx()
    iqn = target_name(target_iqn)
    name = validation.check_gateway_name(gateway_name)
    if request.method == "GET":
        cfg = c.load()
        portals = _portals(cfg, iqn)
        if name not in portals:
            raise ApiError(404, f"gateway {name} does not serve target {iqn}")
        g = c.live().gateway(name)
        return answer({**portals[name], "state": "up" if g.alive else "down",
                       "applied_version": g.status.applied_version if g.status else None,
                       "sessions": g.details.sessions(iqn) if g.alive else 0})
    p = params()
    if request.method == "DELETE":
        p.flag("force")
        change = c.change(ops.remove_portal, iqn, name, targets=[iqn])
        c.sources.mark_stale()
        return answer(change.body("Gateway deletion successful"))
    addresses = p.names("ip_address")
    if not addresses:
        raise ApiError(400, "parameter 'ip_address' is required: the gateway's portal address(es), "
                            "comma-separated")
    p.flag("nosync")
    port = p.integer("port", c.settings.iscsi_port, 1, 65535)
    advertise = p.names("advertise")
    if not p.flag("skipchecks"):
        _check_new_gateway(name, addresses)
    change = c.change(ops.add_portal, iqn, name, addresses, port=port, advertise=advertise, targets=[iqn])
    c.sources.mark_stale()
    return answer(change.body("Gateway creation successful", tpg_tag=change.done.result.tpg_tag))


@route("/api/_gateway/<target_iqn>/<gateway_name>", ["GET"])
def _gateway(target_iqn: str, gateway_name: str):
    """ceph-iscsi's internal portal query: the portal dict, 404 if absent."""
    portals = _portals(ctx().load(), target_name(target_iqn))
    if gateway_name not in portals:
        raise ApiError(404, "Gateway doesn't exist in the configuration")
    return answer(portals[gateway_name])


@route("/api/gateway/<target_iqn>/<gateway_name>/drain", ["PUT"])
def drain(target_iqn: str, gateway_name: str):
    """Move the LUNs a gateway owns in a target to the target's other gateways
    Before maintenance: initiators switch their optimized path to the new owners while the
    drained gateway keeps serving as a non-optimized path.  Answers {disk: new owner}.
    Example: curl --user admin:secret -X PUT
        http://127.0.0.1:5000/api/gateway/iqn.2003-01.com.example:t1/gw1.example.com/drain
    """
    iqn = target_name(target_iqn)
    name = validation.check_gateway_name(gateway_name)
    change = ctx().change(ops.drain_portal, iqn, name, targets=[iqn])
    moved = change.done.result
    return answer(change.body(f"gateway {name} drained: {len(moved)} LUN(s) moved", moved=moved))


def _auth_from_params() -> ChapAuth:
    user, password, muser, mpassword = params().credentials()
    return ChapAuth(user, password, muser, mpassword)


@route("/api/discoveryauth", ["PUT"])
def discoveryauth():
    """Set (or clear, with all fields empty) CHAP for discovery sessions on every gateway
    Parameters: username (8-64 of a-z A-Z 0-9 . : @ _ -), password (12-16 of a-z A-Z 0-9
    @ - _ /), mutual_username, mutual_password.
    Example: curl --user admin:secret -d username=myiscsiusername -d password=myiscsipassword
        -X PUT http://127.0.0.1:5000/api/discoveryauth
    """
    change = ctx().change(ops.set_discovery_auth, _auth_from_params(), everywhere=True)
    return answer(change.body("discovery auth successful"))


def _set_target_auth(cfg, iqn: str, action: str | None, auth: ChapAuth | None) -> None:
    if action == "disable_acl":
        ops.set_acl_enabled(cfg, iqn, False)
    if auth is not None:
        ops.set_target_auth(cfg, iqn, auth)
    if action == "enable_acl":
        ops.set_acl_enabled(cfg, iqn, True)


@route("/api/targetauth/<target_iqn>", ["PUT"])
def targetauth(target_iqn: str):
    """Switch ACLs (action=enable_acl|disable_acl) or set target-level CHAP
    Target CHAP (username, password, mutual_username, mutual_password; all empty clears it)
    needs acl_enabled=false.  With an action and no credentials only the ACL mode changes.
    Example: curl --user admin:secret -d action=disable_acl
        -X PUT http://127.0.0.1:5000/api/targetauth/iqn.2003-01.com.example:t1
    """
    p = params()
    iqn = target_name(target_iqn)
    action = p.choice("action", ["disable_acl", "enable_acl"], None, what="auth action")
    creds_given = p.any_of("username", "password", "mutual_username", "mutual_password")
    auth = _auth_from_params() if creds_given or action is None else None
    change = ctx().change(_set_target_auth, iqn, action, auth, targets=[iqn])
    return answer(change.body(f"target auth {action} - successful"))


@route("/api/targetinfo/<target_iqn>", ["GET"])
def targetinfo(target_iqn: str):
    """Returns the total number of active sessions for a target (over its live gateways)
    "unknown" lists gateways that are down (their sessions cannot be counted).
    Example: curl --user admin:secret http://127.0.0.1:5000/api/targetinfo/iqn.2003-01.com.example:t1
    """
    c = ctx()
    iqn = target_name(target_iqn)
    t = ops.get_target(c.load(), iqn)
    live = c.live()
    return answer({"num_sessions": live.num_sessions(t.portals, iqn), "unknown": live.down(t.portals)})


@route("/api/_targetinfo/<target_iqn>", ["GET"])
def _targetinfo(target_iqn: str):
    """ceph-iscsi's per-gateway session count: this gateway's sessions of the target."""
    c = ctx()
    iqn = target_name(target_iqn)
    ops.get_target(c.load(), iqn)
    local = c.live().gateway(c.gateway_name)
    return answer({"num_sessions": local.details.sessions(iqn) if local.alive else 0})
