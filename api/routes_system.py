"""Endpoints about the API and the cluster as a whole: the index, sysinfo, settings, the
config document, ping, gateway info, apply status, tasks, the OpenAPI document."""

from __future__ import annotations

import inspect
from typing import Any

from flask import current_app

from api import openapi
from api.errors import ApiError
from api.routing import answer, ctx, message, params, route
from gateway import settings as settings_mod
from gateway.config import ceph_iscsi
from gateway.config.status import classify
from gateway.config.status_details import host_addresses

API_VERSION = 2
SOFTWARE_VERSION = "0.1.0"


@route("/api", ["GET"], access="none")
def get_api_info():
    """Display all the available API endpoints
    Each entry: "<url> : <description>", the methods, and the rest of the description.
    Example: curl -X GET http://127.0.0.1:5000/api
    """
    links = []
    for rule in sorted(current_app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static" or any(part.startswith("_") for part in rule.rule.split("/")):
            continue
        doc = inspect.getdoc(current_app.view_functions[rule.endpoint]) or "Missing description"
        lines = doc.split("\n")
        methods = sorted(m for m in rule.methods or () if m not in ("HEAD", "OPTIONS"))
        links.append([f"{rule.rule} : {lines[0]}", f"Methods: {','.join(methods)}", lines[1:]])
    return answer({"api": links})


@route("/api/openapi.json", ["GET"], access="none")
def get_openapi():
    """The OpenAPI 3 description of this API (also in docs/openapi.json)"""
    return answer(openapi.document())


@route("/api/sysinfo/<query_type>", ["GET"], access="basic")
def get_sys_info(query_type: str):
    """Provide system information: ip_addresses, hostname, checkconf or checkversions
    ip_addresses: this host's addresses (no loopback/link-local); hostname: the gateway name
    this node uses in the config; checkconf: hash of the settings gateways must agree on.
    Example: curl --user admin:secret http://127.0.0.1:5000/api/sysinfo/hostname
    """
    c = ctx()
    if query_type == "ip_addresses":
        return answer({"data": host_addresses()})
    if query_type == "hostname":
        return answer({"data": c.gateway_name})
    if query_type == "checkconf":
        return answer({"data": c.settings.checkconf_hash()})
    if query_type == "checkversions":
        problems = _version_problems()
        if problems:
            return answer({"data": problems}, 500)
        return answer({"data": "checks passed"})
    raise ApiError(404, f"Unknown /sysinfo query {query_type[:40]!r}; use ip_addresses, hostname, "
                        "checkconf or checkversions")


def _version_problems() -> list[str]:
    problems = []
    try:
        import rbd

        if rbd.RBD().version() < (1, 16, 0):
            problems.append("librbd is older than Ceph 16 (Pacific)")
    except ImportError:
        problems.append("the python3-rbd bindings are not installed")
    return problems


def _limits(table: dict[str, settings_mod.Setting]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, s in table.items():
        if s.kind == "int":
            out[name] = {"min": s.minimum, "max": s.maximum, "type": "int"}
        elif s.kind == "enum":
            out[name] = {"values": list(s.choices), "type": "enum"}
        else:
            out[name] = {"type": s.kind}
    return out


@route("/api/cluster", ["GET"])
def get_cluster():
    """The Ceph cluster behind this gateway: health, daemons, capacity and pools
    Read by gwcli's /cluster node.
    Example: curl --user admin:secret http://127.0.0.1:5000/api/cluster
    """
    c = ctx()
    facts = c.images.cluster_facts()
    facts["conf"] = c.settings.ceph_conf
    facts["client_name"] = c.settings.cluster_client_name
    return answer(facts)


@route("/api/settings", ["GET"])
def get_settings():
    """List settings: control defaults and limits, backstores, api_version
    Consumed by the Ceph Dashboard (which checks api_version).
    Example: curl --user admin:secret http://127.0.0.1:5000/api/settings
    """
    from api.images import QOS_KEYS, REQUIRED_FEATURES

    s = ctx().settings
    qos_limits = {k: {"min": 1 if k.endswith("seconds") else 0, "type": "int"} for k in QOS_KEYS}
    return answer({
        "target_default_controls": s.target_defaults,
        "target_controls_limits": _limits(settings_mod.TARGET_CONTROLS),
        "disk_default_controls": {"user:rbd": s.disk_defaults},
        "disk_controls_limits": {"user:rbd": _limits(settings_mod.DISK_CONTROLS)},
        "disk_qos_limits": {"user:rbd": qos_limits},
        "unsupported_rbd_features": {"user:rbd": 0},
        "required_rbd_features": {"user:rbd": REQUIRED_FEATURES},
        "backstores": ["user:rbd"],
        "default_backstore": "user:rbd",
        "config": {"minimum_gateways": s.minimum_gateways, "apply_timeout": s.apply_timeout,
                   "gateway_dead_after": s.gateway_dead_after},
        "api_version": API_VERSION,
    })


@route("/api/config", ["GET"])
def get_config():
    """Return the complete configuration (ceph-iscsi schema 11 document)
    CHAP passwords are redacted unless decrypt_passwords=true.
    Example: curl --user admin:secret 'http://127.0.0.1:5000/api/config?decrypt_passwords=true'
    """
    secrets = "plain" if params().flag("decrypt_passwords") else "redacted"
    c = ctx()
    return answer(ceph_iscsi.export_document(c.load(), secrets, c.store.cipher))


@route("/api/_ping", ["GET"])
def ping():
    """Is this node serving: 200 unless this node is a configured gateway whose iSCSI portal
    is not listening (503), as ceph-iscsi answers."""
    c = ctx()
    if c.gateway_name not in c.load().gateways:
        return message("pong", iscsi="not a gateway")
    local = c.live().gateway(c.gateway_name)
    if not local.alive:
        return message("pong", 503, iscsi="down (rbd-target-gw is not reporting)")
    if local.details.iscsi_listening is False:
        return message("pong", 503, iscsi="down (no portal is listening)")
    return message("pong", iscsi="up")


@route("/api/gatewayinfo", ["GET"])
def gatewayinfo():
    """Returns the number of active sessions on this gateway
    Example: curl --user admin:secret http://127.0.0.1:5000/api/gatewayinfo
    """
    c = ctx()
    cfg = c.load()
    if c.gateway_name not in cfg.gateways:
        raise ApiError(404, f"Gateway {c.gateway_name} does not exist in configuration")
    local = c.live().gateway(c.gateway_name)
    return answer({"num_sessions": local.details.sessions() if local.alive else 0,
                   "state": "up" if local.alive else "down"})


@route("/api/status", ["GET"])
def get_status():
    """Which gateways applied a config version (default: the current one)
    Parameters: version (int), wait (seconds to wait until no gateway is pending).
    Example: curl --user admin:secret 'http://127.0.0.1:5000/api/status?wait=5'
    """
    c = ctx()
    p = params()
    cfg = c.load()
    version = p.integer("version", cfg.version, 0, 1 << 62)
    wait = p.number("wait", 0.0, 0.0, 600.0)
    names = sorted(set(cfg.gateways) | set(cfg.gateways_of()))
    if wait:
        report = c.store.wait_applied(version, names, timeout=wait, dead_after=c.settings.gateway_dead_after)
    live = c.live()
    statuses = {n: g.status for n in names if (g := live.gateway(n)).status is not None}
    report = classify(version, names, statuses, live.now, c.settings.gateway_dead_after)
    gateways = {}
    for name in names:
        g = live.gateway(name)
        state = "applied" if name in report.applied else "pending" if name in report.pending else "down"
        entry: dict[str, Any] = {"state": state}
        if g.status is not None:
            age = round(max(live.now - g.status.heartbeat, 0), 3)
            entry.update(applied_version=g.status.applied_version, health=g.status.health,
                         message=g.status.message, heartbeat_age=age, started=g.status.started)
        gateways[name] = entry
    return answer({"current_version": cfg.version, "version": version, "applied": report.applied,
                   "pending": report.pending, "down": report.down, "degraded": report.degraded,
                   "gateways": gateways})


@route("/api/tasks", ["GET"])
def get_tasks():
    """List the long operations (tasks) this API node ran in the last hour"""
    return answer({"tasks": [t.as_dict() for t in ctx().tasks.all()]})


@route("/api/tasks/<task_id>", ["GET"])
def get_task(task_id: str):
    """Progress and outcome of one long operation"""
    task = ctx().tasks.get(task_id)
    if task is None:
        raise ApiError(404, f"task {task_id[:40]} is not known to this API node (tasks are kept one hour "
                            "by the node that ran them)")
    return answer(task.as_dict())
