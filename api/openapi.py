"""The OpenAPI 3 description of the API, built from the tables below.

Served at ``/api/openapi.json`` and kept in ``docs/openapi.json``; a test checks that the
two are equal and that every route of the app, with every method, is described here.
Regenerate the file with ``.venv/bin/python -m api.openapi > docs/openapi.json``.

Every parameter is described twice: as a form field (ceph-iscsi's encoding: strings,
comma-separated lists, JSON text for objects) and as a JSON body property (real types
accepted as well as those strings).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

VERSION = "0.1.0"
ERROR_CODES = {
    "none": (),
    "basic": (401, 404),
    "restricted": (400, 401, 403, 404, 409, 503),
}
EXAMPLES = {
    "target_iqn": "iqn.2003-01.com.example.iscsi-gw:target1",
    "client_iqn": "iqn.1994-05.com.redhat:host1",
    "gateway_name": "gw1.example.com",
    "pool": "rbd",
    "image": "disk1",
    "name": "snap1",
    "group_name": "group1",
    "query_type": "hostname",
    "task_id": "1-0a1b2c3d",
}


_LABEL = "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?"  # keeps a whole IQN under 223 bytes
_IQN = rf"iqn\.[0-9]{{4}}-(0[1-9]|1[0-2])\.{_LABEL}(\.{_LABEL}){{1,5}}(:[a-z0-9.:-]{{1,64}})?"
# What the API accepts in path segments (validation.py), as patterns a client can check.
PATH_PATTERNS = {
    "target_iqn": f"^{_IQN}$",
    "client_iqn": f"^({_IQN}|eui\\.[0-9a-f]{{16}}|naa\\.([0-9a-f]{{16}}|[0-9a-f]{{32}}))$",
    "gateway_name": r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$",
    "pool": r"^[a-zA-Z0-9_.-]+$",
    "image": r"^[a-zA-Z0-9_.-]+$",
    "name": r"^[^/@\x00-\x1f\x7f]{1,255}$",
    "group_name": r"^[A-Za-z0-9_@-]{1,32}$",
}
PATH_ENUMS = {"query_type": ["ip_addresses", "hostname", "checkconf", "checkversions"]}


@dataclass(frozen=True)
class P:
    """A request parameter: ``kind`` is string | boolean | integer | list | object | number."""

    name: str
    kind: str = "string"
    description: str = ""
    required: bool = False
    enum: tuple[str, ...] = ()
    example: Any = None


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    response: str = "Message"
    params: tuple[P, ...] = ()
    access: str = "restricted"
    tags: tuple[str, ...] = ("ceph-iscsi",)
    extra_codes: tuple[int, ...] = ()
    task: bool = False
    description: str = ""
    also: dict[int, str] = field(default_factory=dict)


CHAP = (P("username", description="CHAP user name, 8-64 of a-z A-Z 0-9 . : @ _ -; empty disables CHAP",
          example="myiscsiusername"),
        P("password", description="CHAP secret, 12-16 of a-z A-Z 0-9 @ - _ /", example="myiscsipassword"),
        P("mutual_username", description="mutual CHAP user name (needs username)"),
        P("mutual_password", description="mutual CHAP secret, different from password"))
WAIT = P("wait", "number", "seconds to wait for a long operation before answering 202 with its task")
DISK = P("disk", description="the disk as pool/image", required=True, example="rbd/disk1")

T = "/api/target/{target_iqn}"
OPS: tuple[Op, ...] = (
    Op("GET", "/api", "List the API endpoints", "ApiIndex", access="none"),
    Op("GET", "/api/openapi.json", "This OpenAPI document", "Object", access="none", tags=("extension",)),
    Op("GET", "/api/sysinfo/{query_type}", "ip_addresses, hostname, checkconf or checkversions of this node",
       "SysInfo", access="basic", also={500: "SysInfo"}),
    Op("GET", "/api/cluster", "Health, daemons, capacity and pools of the Ceph cluster", "Cluster",
       tags=("extension",)),
    Op("GET", "/api/settings", "Control defaults and limits, backstores, api_version (2)", "Settings"),
    Op("GET", "/api/config", "The whole configuration as a ceph-iscsi schema-11 document", "Object",
       (P("decrypt_passwords", "boolean", "true: CHAP secrets in clear (default: redacted)"),)),
    Op("GET", "/api/_ping", "200 pong, or 503 when this node is a gateway whose iSCSI portal is down",
       "Message", tags=("ceph-iscsi internal",), also={503: "Message"}),
    Op("GET", "/api/gatewayinfo", "Sessions on this gateway", "SessionCount"),
    Op("GET", "/api/status", "Which gateways applied a config version", "ApplyStatus",
       (P("version", "integer", "config version to judge (default: the current one)"),
        P("wait", "number", "seconds to wait until no gateway is pending")), tags=("extension",)),
    Op("GET", "/api/tasks", "Long operations run by this API node", "TaskList", tags=("extension",)),
    Op("GET", "/api/tasks/{task_id}", "One long operation: state, progress, outcome", "Task",
       tags=("extension",)),
    Op("GET", "/api/targets", "Target names", "TargetList"),
    Op("GET", T, "A target's definition", "Object", tags=("extension",)),
    Op("PUT", T, "Create a target, or change its controls (mode=reconfigure)", "Applied",
       (P("mode", description="absent: create; reconfigure: change controls", enum=("reconfigure",)),
        P("controls", "object", "target controls, e.g. {\"cmdsn_depth\": 64}; \"\" or null resets one"))),
    Op("DELETE", T, "Delete a target (refused while it has clients or disks)", "Applied"),
    Op("DELETE", "/api/_target/{target_iqn}", "Delete a target (gwcli clearconfig)", "Applied",
       tags=("ceph-iscsi internal",)),
    Op("GET", "/api/gateways/{target_iqn}", "The gateways (portals) of a target", "Object"),
    Op("GET", "/api/gateway/{target_iqn}/{gateway_name}", "A gateway of a target and its live state",
       "Object", tags=("extension",)),
    Op("PUT", "/api/gateway/{target_iqn}/{gateway_name}", "Add a gateway (portal) to a target", "Applied",
       (P("ip_address", "list", "portal address(es), comma-separated", True, example="192.168.1.10"),
        P("port", "integer", "TCP port of the portals (default: the cfg's iscsi_port)"),
        P("advertise", "list", "host[:port] announced in discovery instead of each address (NAT)"),
        P("skipchecks", "boolean", "true: skip checking the gateway's reported addresses and settings"),
        P("nosync", "boolean", "accepted for compatibility; no effect"))),
    Op("DELETE", "/api/gateway/{target_iqn}/{gateway_name}", "Remove a gateway from a target", "Applied",
       (P("force", "boolean", "accepted for compatibility; a down gateway can always be removed"),)),
    Op("GET", "/api/_gateway/{target_iqn}/{gateway_name}", "A portal's definition", "Object",
       tags=("ceph-iscsi internal",)),
    Op("PUT", "/api/gateway/{target_iqn}/{gateway_name}/drain",
       "Move the LUNs a gateway owns in a target to the target's other gateways", "Applied",
       tags=("extension",)),
    Op("PUT", "/api/targetlun/{target_iqn}", "Map a disk to a target", "Applied",
       (DISK, P("lun_id", "integer", "LUN id 0-255 (default: lowest free)"),
        P("owner", description="gateway to own the LUN (default: the least loaded)"))),
    Op("DELETE", "/api/targetlun/{target_iqn}", "Unmap a disk from a target", "Applied", (DISK,)),
    Op("GET", "/api/disks", "Disk names, or definitions with config=yes", "DiskList",
       (P("config", "boolean", "yes: each disk's definition"),
        P("details", "boolean", "yes: definitions plus image facts"))),
    Op("GET", "/api/disk/{pool}/{image}", "A disk: definition, live status, image facts", "Object"),
    Op("PUT", "/api/disk/{pool}/{image}", "Create/attach (mode=create), resize, reconfigure, or move "
       "the owner (mode=owner) of a disk", "Applied",
       (P("mode", required=True, enum=("create", "resize", "reconfigure", "owner")),
        P("size", description="e.g. 10G (M, G, T)", example="1G"),
        P("count", "integer", "create N images <image>1..<image>N (1-10)"),
        P("backstore", description="user:rbd", enum=("user:rbd",)),
        P("wwn", description="unit serial (default: the image's recorded one, or a new UUID)"),
        P("controls", "object", "disk controls, e.g. {\"qfull_timeout\": 10}"),
        P("qos", "object", "librbd QoS, e.g. {\"iops_limit\": 1000, \"bps_limit\": \"100M\"}"),
        P("create_image", "boolean", "false: attach an existing image only"),
        P("clone", description="pool/image@snapshot to clone from"),
        P("flatten", "boolean", "copy a clone's data from its parent now"),
        P("data_pool", description="pool for the image's data (e.g. erasure-coded)"),
        P("owner", description="mode=owner: the gateway to own the LUN"), WAIT),
       task=True),
    Op("DELETE", "/api/disk/{pool}/{image}", "Delete a disk (and its image unless preserve_image=true)",
       "Applied", (P("preserve_image", "boolean", "true: keep the RBD image (detach)"), WAIT), task=True),
    Op("PUT", "/api/disksnap/{pool}/{image}/{name}", "Create a snapshot, or roll back to it", "Message",
       (P("mode", required=True, enum=("create", "rollback")), WAIT), task=True),
    Op("DELETE", "/api/disksnap/{pool}/{image}/{name}", "Delete a snapshot", "Message"),
    Op("PUT", "/api/discoveryauth", "CHAP for discovery sessions (all empty: none)", "Applied", CHAP),
    Op("PUT", "/api/targetauth/{target_iqn}", "ACL mode (action) or target-level CHAP", "Applied",
       (P("action", enum=("enable_acl", "disable_acl")), *CHAP)),
    Op("GET", "/api/targetinfo/{target_iqn}", "Sessions of a target over its gateways", "SessionCount"),
    Op("GET", "/api/_targetinfo/{target_iqn}", "Sessions of a target on this gateway", "SessionCount",
       tags=("ceph-iscsi internal",)),
    Op("GET", "/api/clients/{target_iqn}", "Client names of a target", "ClientList"),
    Op("GET", "/api/client/{target_iqn}/{client_iqn}", "A client's definition", "Object",
       tags=("extension",)),
    Op("PUT", "/api/client/{target_iqn}/{client_iqn}", "Create a client (optionally with its CHAP)",
       "Applied", CHAP),
    Op("DELETE", "/api/client/{target_iqn}/{client_iqn}", "Delete a client (refused while logged in)",
       "Applied"),
    Op("PUT", "/api/clientauth/{target_iqn}/{client_iqn}", "A client's CHAP (all empty: none)", "Applied",
       CHAP),
    Op("GET", "/api/clientlun/{target_iqn}/{client_iqn}", "A client's LUNs", "ClientLuns",
       tags=("extension",)),
    Op("PUT", "/api/clientlun/{target_iqn}/{client_iqn}", "Give a disk to a client", "Applied", (DISK,)),
    Op("DELETE", "/api/clientlun/{target_iqn}/{client_iqn}", "Take a disk from a client", "Applied", (DISK,)),
    Op("GET", "/api/_clientlun/{target_iqn}/{client_iqn}", "A client's LUNs", "ClientLuns",
       tags=("ceph-iscsi internal",)),
    Op("GET", "/api/clientinfo/{target_iqn}/{client_iqn}", "Where a client is logged in", "ClientInfo"),
    Op("GET", "/api/_clientinfo/{target_iqn}/{client_iqn}", "A client's session on this gateway", "Object",
       tags=("ceph-iscsi internal",)),
    Op("GET", "/api/hostgroups/{target_iqn}", "Host group names of a target", "GroupList"),
    Op("GET", "/api/hostgroup/{target_iqn}/{group_name}", "A host group", "Group",
       (P("action", enum=("add", "remove")),), extra_codes=(405,)),
    Op("PUT", "/api/hostgroup/{target_iqn}/{group_name}", "Create or change a host group", "Applied",
       (P("members", "list", "client IQNs, comma-separated"),
        P("disks", "list", "pool/image, comma-separated"),
        P("action", description="add (default) or remove; others answer 405", enum=("add", "remove"))),
       extra_codes=(405,)),
    Op("DELETE", "/api/hostgroup/{target_iqn}/{group_name}", "Delete a host group", "Applied",
       (P("action", enum=("add", "remove")),), extra_codes=(405,)),
)

_OBJ = {"type": "object"}
_STRINGS = {"type": "array", "items": {"type": "string"}}
SCHEMAS: dict[str, Any] = {
    "Object": {"type": "object", "additionalProperties": True},
    "Message": {"type": "object", "required": ["message"], "properties": {"message": {}}},
    "Error": {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}},
    "Applied": {"type": "object", "required": ["message", "version", "applied", "pending", "down"],
                "properties": {"message": {"type": "string"}, "version": {"type": "integer"},
                               "applied": _STRINGS, "pending": _STRINGS, "down": _STRINGS,
                               "degraded": {"type": "object", "additionalProperties": {"type": "string"}},
                               "task": {}}},
    "ApiIndex": {"type": "object", "required": ["api"], "properties": {"api": {"type": "array"}}},
    "SysInfo": {"type": "object", "required": ["data"], "properties": {"data": {}}},
    "Cluster": {"type": "object", "required": ["name", "health", "mons", "osds", "pools"],
                "properties": {"name": {"type": "string"}, "fsid": {"type": ["string", "null"]},
                               "version": {"type": "string"}, "health": {"type": "object"},
                               "mons": {"type": "object"}, "osds": {"type": "object"},
                               "raw_bytes": {"type": ["integer", "null"]}, "conf": {"type": "string"},
                               "client_name": {"type": ["string", "null"]}, "pools": {"type": "object"}}},
    "Settings": {"type": "object", "required": ["api_version", "target_default_controls",
                                                "disk_default_controls", "backstores", "config"],
                 "properties": {"api_version": {"type": "integer", "enum": [2]}}},
    "SessionCount": {"type": "object", "required": ["num_sessions"],
                     "properties": {"num_sessions": {"type": "integer", "minimum": 0}}},
    "ApplyStatus": {"type": "object", "required": ["version", "current_version", "applied", "pending", "down",
                                                   "gateways"],
                    "properties": {"version": {"type": "integer"}, "current_version": {"type": "integer"},
                                   "applied": _STRINGS, "pending": _STRINGS, "down": _STRINGS,
                                   "gateways": _OBJ}},
    "Task": {"type": "object", "required": ["id", "kind", "subject", "state", "progress"],
             "properties": {"id": {"type": "string"},
                            "state": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
                            "progress": {"type": "number", "nullable": True},
                            "result": {"type": "object", "nullable": True}}},
    "TaskList": {"type": "object", "required": ["tasks"], "properties": {"tasks": {"type": "array"}}},
    "TaskAccepted": {"type": "object", "required": ["message", "task"],
                     "properties": {"message": {"type": "string"},
                                    "task": {"$ref": "#/components/schemas/Task"}}},
    "TargetList": {"type": "object", "required": ["targets"], "properties": {"targets": _STRINGS}},
    "DiskList": {"type": "object", "required": ["disks"],
                 "properties": {"disks": {"anyOf": [_STRINGS, _OBJ]}}},
    "ClientList": {"type": "object", "required": ["clients"], "properties": {"clients": _STRINGS}},
    "ClientLuns": {"type": "object", "required": ["message"], "properties": {"message": _OBJ}},
    "ClientInfo": {"type": "object", "required": ["alias", "state", "ip_address"],
                   "properties": {"alias": {"type": "string"}, "state": _OBJ, "ip_address": _STRINGS}},
    "GroupList": {"type": "object", "required": ["groups"], "properties": {"groups": _STRINGS}},
    "Group": {"type": "object", "required": ["members", "disks"],
              "properties": {"members": _STRINGS, "disks": _OBJ}},
}


def _form_schema(p: P) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if p.enum:
        schema["enum"] = list(p.enum)
    elif p.kind == "boolean":
        schema["enum"] = ["true", "false"]
    elif p.kind == "integer":
        schema["pattern"] = "^[0-9]+$"
    if p.example is not None:
        schema["example"] = p.example
    return schema


def _json_schema(p: P) -> dict[str, Any]:
    typed = {"boolean": {"type": "boolean"}, "integer": {"type": "integer"}, "number": {"type": "number"},
             "list": _STRINGS, "object": {"type": "object"}}.get(p.kind)
    form = _form_schema(p)
    return {"anyOf": [typed, form]} if typed else form


def _param(name: str, where: str, p: P | None = None) -> dict[str, Any]:
    if p is None:
        schema: dict[str, Any] = {"type": "string", "example": EXAMPLES.get(name, name)}
        if name in PATH_PATTERNS:
            schema["pattern"] = PATH_PATTERNS[name]
        if name in PATH_ENUMS:
            schema["enum"] = PATH_ENUMS[name]
        return {"name": name, "in": where, "required": True, "schema": schema}
    out = {"name": p.name, "in": where, "required": p.required, "schema": _form_schema(p)}
    if p.description:
        out["description"] = p.description
    return out


def _ref(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}


def _operation(op: Op) -> dict[str, Any]:
    path_names = [part[1:-1] for part in op.path.split("/") if part.startswith("{")]
    op_id = op.method.lower() + op.path.replace("/", "_").replace("{", "").replace("}", "")
    out: dict[str, Any] = {"summary": op.summary, "tags": list(op.tags), "operationId": op_id,
                           "parameters": [_param(n, "path") for n in path_names]}
    if op.description:
        out["description"] = op.description
    if op.params and op.method == "GET":
        out["parameters"] += [_param(p.name, "query", p) for p in op.params]
    elif op.params:
        required = [p.name for p in op.params if p.required]
        form = {"type": "object", "properties": {p.name: {**_form_schema(p), "description": p.description}
                                                 for p in op.params}}
        body = {"type": "object", "properties": {p.name: _json_schema(p) for p in op.params}}
        if required:
            form["required"] = body["required"] = required
        out["requestBody"] = {"required": bool(required), "content": {
            "application/x-www-form-urlencoded": {"schema": form},
            "application/json": {"schema": body}}}
    responses: dict[str, Any] = {"200": {"description": "done", **_ref(op.response)}}
    if op.task:
        responses["202"] = {"description": "still running after 'wait' seconds; follow the task",
                            **_ref("TaskAccepted")}
    for code in (*ERROR_CODES[op.access], *op.extra_codes):
        responses[str(code)] = {"description": _CODE_TEXT[code], **_ref("Error")}
    for code, schema in op.also.items():
        responses[str(code)] = {"description": _CODE_TEXT.get(code, "see description"), **_ref(schema)}
    out["responses"] = responses
    out["security"] = [] if op.access == "none" else [{"basicAuth": []}]
    return out


_CODE_TEXT = {
    400: "the request is invalid; the message says what to fix",
    401: "missing or wrong credentials",
    403: "the source address is not trusted",
    404: "no such entity (or endpoint)",
    405: "invalid action",
    409: "conflicts with the current state (exists already, in use, busy)",
    500: "checks failed on this node",
    503: "the Ceph cluster cannot be reached (or, for _ping, iSCSI is down)",
}


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for op in OPS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.0.3",
        "info": {"title": "rbd-target-api", "version": VERSION,
                 "description": "REST API of the Ceph RBD iSCSI gateway, compatible with ceph-iscsi's "
                                "rbd-target-api (api_version 2). See docs/api.md."},
        "paths": paths,
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic"}}},
    }


def flask_rules() -> set[tuple[str, str]]:
    """(METHOD, path in Flask syntax) of every described operation."""
    out = set()
    for op in OPS:
        out.add((op.method, op.path.replace("{", "<").replace("}", ">")))
    return out


if __name__ == "__main__":
    json.dump(document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
