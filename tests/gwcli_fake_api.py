"""A stand-in for ``rbd-target-api`` in gwcli's unit tests: real config rules, no Ceph.

Changes are applied with ``gateway.config.operations`` to an in-memory ``ClusterConfig`` and
``GET /api/config`` serves ``ceph_iscsi.export_document`` of it, so gwcli sees the exact
document shape and the exact refusal messages of the config layer.  What only Ceph or the
gateways know (image sizes, snapshots, liveness, sessions, cluster health) is plain data
the test sets.  Every request is recorded for assertions.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from gateway.config import operations as ops
from gateway.config import validation
from gateway.config.ceph_iscsi import export_document
from gateway.config.errors import AlreadyExists, NotFound, ValidationError
from gateway.config.model import ChapAuth, ClusterConfig

USER, PASSWORD = "gwcli-test", "not-the-default-secret"


@dataclass
class Recorded:
    method: str
    path: str
    form: dict[str, str]


@dataclass
class FakeImage:
    size: int
    features: int = 61  # layering, exclusive-lock, object-map, fast-diff, deep-flatten
    snapshots: dict[str, int] = field(default_factory=dict)
    state: str = "Online"
    lock_owner: str = ""
    qos: dict[str, int] = field(default_factory=dict)


class FakeApi:
    """The state behind the fake API; ``serve()`` starts it on ``host`` (port 0)."""

    def __init__(self, cfg: ClusterConfig | None = None) -> None:
        self.cfg = cfg or ClusterConfig()
        self.images: dict[str, FakeImage] = {}
        self.gateway_health: dict[str, dict[str, Any]] = {}  # name -> status entry; absent = down
        self.sessions: dict[tuple[str, str], dict[str, Any]] = {}
        self.cluster: dict[str, Any] | None = {
            "name": "ceph", "version": "16.2.11", "health": {"status": "HEALTH_OK", "checks": []},
            "mons": {"total": 1, "quorum": ["a"]}, "osds": {"total": 1, "up": 1, "in": 1},
            "raw_bytes": 4 << 30, "conf": "/etc/ceph/ceph.conf", "client_name": "client.admin",
            "pools": {"rbd": {"type": "replicated", "size": 3, "max_avail": 20 << 30, "used_bytes": 5120},
                      "ec": {"type": "erasure", "k": 2, "m": 1, "max_avail": 40 << 30, "used_bytes": 0}}}
        self.status_available = True
        self.requests: list[Recorded] = []
        self.fail_next: tuple[int, str] | None = None
        # With tasks on, a change sent with ``wait`` answers 202 and is followed at
        # /api/tasks/<id>: one "running" poll, then the change's own answer.
        self.tasks_on = False
        self.tasks: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.version = 1

    # ---- server ------------------------------------------------------------------------------
    def serve(self, host: str = "127.0.8.1") -> str:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                url = urlsplit(self.path)
                form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
                form.update({k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()})
                auth = self.headers.get("Authorization", "")
                status, reply = api.handle(self.command, unquote(url.path), form, auth)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_DELETE = _handle

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # gwcli loads with parallel requests; 5 would drop SYNs
            daemon_threads = True

        self.server = Server((host, 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return f"http://{host}:{self.server.server_address[1]}"

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # ---- requests -----------------------------------------------------------------------------
    def changes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method != "GET"]

    def handle(self, method: str, path: str, form: dict[str, str], auth: str) -> tuple[int, Any]:
        import base64

        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if auth != expected:
            return 401, {"message": "username/password mismatch with the configuration file"}
        with self.lock:
            self.requests.append(Recorded(method, path, dict(form)))
            if self.fail_next is not None and method != "GET":
                status, message = self.fail_next
                self.fail_next = None
                return status, {"message": message}
            parts = path.strip("/").split("/")
            if parts[:1] != ["api"] or len(parts) < 2:
                return 404, {"message": f"no such endpoint {path}"}
            if method == "GET" and parts[1] == "tasks":
                return self._poll_task(parts[2])
            status, body = self._answer(method, parts, form)
            if self.tasks_on and method != "GET" and "wait" in form:
                task_id = f"{len(self.tasks) + 1}-fake"
                self.tasks[task_id] = {"polls": 0, "status": status, "result": body}
                task = {"id": task_id, "url": f"/api/tasks/{task_id}", "state": "running", "progress": 0.0}
                return 202, {"message": "still running", "task": task}
            return status, body

    def _answer(self, method: str, parts: list[str], form: dict[str, str]) -> tuple[int, Any]:
        try:
            return self._route(method, parts[1], parts[2:], form)
        except NotFound as e:
            return 404, {"message": e.message}
        except AlreadyExists as e:
            return 409, {"message": e.message}
        except ValidationError as e:
            return 400, {"message": e.message}

    def _poll_task(self, task_id: str) -> tuple[int, Any]:
        task = self.tasks.get(task_id)
        if task is None:
            return 404, {"message": f"task {task_id} is not known"}
        task["polls"] += 1
        if task["polls"] == 1:
            return 200, {"id": task_id, "state": "running", "progress": 0.5, "message": "working"}
        state = "done" if task["status"] < 400 else "failed"
        return 200, {"id": task_id, "state": state, "progress": 1.0, "status": task["status"],
                     "message": task["result"].get("message", ""), "result": task["result"]}

    def _report(self, message: str, iqns: list[str] | None = None,
                everywhere: bool = False) -> tuple[int, Any]:
        """The apply report: the gateways of ``iqns`` (all with ``everywhere``), down ones
        being those without a status entry."""
        self.version += 1
        self.cfg.version = self.version
        gateways = sorted(self.cfg.gateways) if everywhere else self.cfg.gateways_of(iqns) if iqns else []
        down = [g for g in gateways if g not in self.gateway_health]
        return 200, {"message": message, "applied": [g for g in gateways if g not in down],
                     "pending": [], "down": down}

    def _route(self, method: str, kind: str, rest: list[str], form: dict[str, str]) -> tuple[int, Any]:
        handler = getattr(self, f"_{method.lower()}_{kind}", None)
        if handler is None:
            return 404 if method == "GET" else 405, {"message": f"{method} /api/{kind} is not supported"}
        return handler(rest, form)

    # ---- reads --------------------------------------------------------------------------------
    def _get_config(self, rest, form):
        return 200, export_document(self.cfg)

    def _get_disk(self, rest, form):
        """ceph-iscsi's disk dict, ``status``, and ``image_info`` (null: the image is gone)."""
        name = "/".join(rest)
        if name not in self.cfg.disks:
            raise NotFound(f"rbd image {name} not found in the configuration")
        body = export_document(self.cfg)["disks"][name]
        image = self.images.get(name)
        mapped = self.cfg.target_of_disk(name) is not None
        body["status"] = {"state": image.state if image and mapped else "Unmapped" if image else "Unknown",
                          "lock_owner": (image.lock_owner or body.get("owner", "")) if image else ""}
        body["image_info"] = None if image is None else {
            "size": image.size, "features": image.features,
            "snapshots": [{"name": n, "size": s, "protected": False} for n, s in image.snapshots.items()],
            "qos": dict(image.qos), "data_pool": None, "parent": None}
        return 200, body

    def _get_status(self, rest, form):
        if not self.status_available:
            return 404, {"message": "no such endpoint"}
        return 200, {"version": self.version, "gateways": dict(self.gateway_health)}

    def _get_cluster(self, rest, form):
        if self.cluster is None:
            return 404, {"message": "no such endpoint"}
        return 200, self.cluster

    def _get_clientinfo(self, rest, form):
        iqn, client = rest[0], rest[1]
        return 200, self.sessions.get((iqn, client), {"alias": "", "state": {}, "ip_address": []})

    # ---- targets ------------------------------------------------------------------------------
    def _put_target(self, rest, form):
        iqn = rest[0]
        if form.get("mode") == "reconfigure":
            ops.set_target_controls(self.cfg, iqn, json.loads(form.get("controls") or "{}"))
            return self._report("Target reconfigured.", [iqn])
        ops.add_target(self.cfg, iqn)
        return self._report("Target defined successfully")

    def _delete_target(self, rest, form):
        ops.remove_target(self.cfg, rest[0])
        return self._report("Target deleted.", everywhere=True)

    def _put_targetauth(self, rest, form):
        iqn = rest[0]
        if form.get("action"):
            ops.set_acl_enabled(self.cfg, iqn, form["action"] == "enable_acl")
        else:
            ops.set_target_auth(self.cfg, iqn, _auth(form))
        return self._report("target auth updated", [iqn])

    def _put_discoveryauth(self, rest, form):
        ops.set_discovery_auth(self.cfg, _auth(form))
        return self._report("discovery auth updated", everywhere=True)

    # ---- gateways -----------------------------------------------------------------------------
    def _put_gateway(self, rest, form):
        iqn, name = rest[0], rest[1]
        if rest[2:] == ["drain"]:
            target = ops.get_target(self.cfg, iqn)
            others = [g for g in target.portals if g != name]
            moved = {}
            for lun in target.luns.values():
                if lun.owner == name:
                    lun.owner = moved[lun.disk] = others[0]
            status, body = self._report(f"gateway {name} drained: {len(moved)} LUN(s) moved", [iqn])
            return status, {**body, "moved": moved}
        ops.add_portal(self.cfg, iqn, name, form.get("ip_address", "").split(","))
        self.gateway_health.setdefault(name, {"state": "applied", "health": "ok",
                                              "applied_version": self.version, "heartbeat_age": 1.0})
        return self._report("Gateway creation successful", [iqn])

    def _delete_gateway(self, rest, form):
        ops.remove_portal(self.cfg, rest[0], rest[1])
        return self._report("Gateway deleted", [rest[0]])

    # ---- LUNs and disks -----------------------------------------------------------------------
    def _put_targetlun(self, rest, form):
        iqn = rest[0]
        ops.map_lun(self.cfg, iqn, form.get("disk", ""), form.get("lun_id") or None)
        return self._report("Target LUN mapping updated successfully", [iqn])

    def _delete_targetlun(self, rest, form):
        ops.unmap_lun(self.cfg, rest[0], form.get("disk", ""))
        return self._report("Target LUN mapping deleted", [rest[0]])

    def _put_disk(self, rest, form):
        name = "/".join(rest)
        pool, image = validation.split_disk_name(name)
        mode = form.get("mode")
        if mode == "create":
            count = int(form.get("count") or 1)
            names = [name] if count == 1 else [f"{name}{n}" for n in range(1, count + 1)]
            for disk in names:
                if form.get("create_image") == "false":
                    if disk not in self.images:
                        raise NotFound(f"rbd image {disk} not found")
                elif form.get("size"):
                    self.images.setdefault(disk, FakeImage(validation.parse_size(form["size"])))
                elif form.get("clone"):
                    source = form["clone"].split("@")[0]
                    self.images[disk] = FakeImage(self.images[source].size)
                else:
                    raise ValidationError("Size parameter is required when creating a new image", "size")
                ops.add_disk(self.cfg, pool, disk.split("/", 1)[1], form.get("wwn") or None)
            return self._report("disk create/update successful")
        ops.get_disk(self.cfg, name)
        if mode == "resize":
            size = validation.parse_size(form.get("size", ""))
            if size <= self.images[name].size:
                raise ValidationError("resize value must be larger than the current size "
                                      f"({self.images[name].size})")
            self.images[name].size = size
        elif mode == "reconfigure":
            ops.set_disk_controls(self.cfg, name, json.loads(form.get("controls") or "{}"))
            for key, value in json.loads(form.get("qos") or "{}").items():
                if value in ("", None, 0):
                    self.images[name].qos.pop(key, None)
                else:
                    self.images[name].qos[key] = int(value)
        elif mode == "owner":
            target = self.cfg.target_of_disk(name)
            if target is None:
                raise ValidationError(f"disk {name} is not mapped to a target; map it first", "disk")
            ops.set_lun_owner(self.cfg, target.iqn, name, form.get("owner", ""))
        else:
            raise ValidationError(f"disk operation mode {mode!r} is invalid; use create, resize, reconfigure "
                                  "or owner", "mode")
        target = self.cfg.target_of_disk(name)
        return self._report("disk updated", [target.iqn] if target else None)

    def _delete_disk(self, rest, form):
        name = "/".join(rest)
        ops.remove_disk(self.cfg, name)
        if form.get("preserve_image") != "true":
            self.images.pop(name, None)
        return self._report("disk deleted")

    def _put_disksnap(self, rest, form):
        name, snap = "/".join(rest[:-1]), rest[-1]
        image = self.images[name]
        if form.get("mode") == "create":
            image.snapshots[snap] = image.size
        elif snap not in image.snapshots:
            raise NotFound(f"snapshot {snap} not found")
        target = self.cfg.target_of_disk(name)
        return self._report(f"snapshot {form.get('mode')} done", [target.iqn] if target else None)

    def _delete_disksnap(self, rest, form):
        self.images["/".join(rest[:-1])].snapshots.pop(rest[-1])
        return self._report("snapshot deleted")

    # ---- clients and groups -------------------------------------------------------------------
    def _put_client(self, rest, form):
        ops.add_client(self.cfg, rest[0], rest[1])
        return self._report("client create/update successful", [rest[0]])

    def _delete_client(self, rest, form):
        ops.remove_client(self.cfg, rest[0], rest[1])
        return self._report("client deleted", [rest[0]])

    def _put_clientauth(self, rest, form):
        ops.set_client_auth(self.cfg, rest[0], rest[1], _auth(form))
        return self._report("client auth updated", [rest[0]])

    def _put_clientlun(self, rest, form):
        ops.add_client_lun(self.cfg, rest[0], rest[1], form.get("disk", ""))
        return self._report("client lun added", [rest[0]])

    def _delete_clientlun(self, rest, form):
        ops.remove_client_lun(self.cfg, rest[0], rest[1], form.get("disk", ""))
        return self._report("client lun removed", [rest[0]])

    def _put_hostgroup(self, rest, form):
        iqn, name = rest[0], rest[1]
        members = [m for m in form.get("members", "").split(",") if m]
        disks = [d for d in form.get("disks", "").split(",") if d]
        if form.get("action", "add") == "remove":
            ops.update_group(self.cfg, iqn, name, remove_members=members, remove_disks=disks)
        else:
            ops.update_group(self.cfg, iqn, name, add_members=members, add_disks=disks)
        return self._report("host group updated", [iqn])

    def _delete_hostgroup(self, rest, form):
        ops.remove_group(self.cfg, rest[0], rest[1])
        return self._report("host group deleted", [rest[0]])


def _auth(form: dict[str, str]) -> ChapAuth:
    return ChapAuth(form.get("username", ""), form.get("password", ""), form.get("mutual_username", ""),
                    form.get("mutual_password", ""))


def populated() -> FakeApi:
    """The config of the golden tests: two gateways (one down), a target with disks in two
    pools, hosts with and without CHAP, a host group, a missing image and a degraded disk."""
    cfg = ClusterConfig()
    iqn = "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
    ops.add_target(cfg, iqn)
    ops.add_portal(cfg, iqn, "gw1.example.com", ["192.168.100.201"])
    ops.add_portal(cfg, iqn, "gw2.example.com", ["192.168.100.202"])
    fake = FakeApi(cfg)
    sizes = {"rbd/disk_1": 1 << 30, "rbd/disk_2": 2 << 30, "rbd/disk_3": 3 << 29, "iscsi/lun_a": 10 << 30,
             "rbd/gone": 1 << 30}
    for name, size in sizes.items():
        pool, image = name.split("/")
        ops.add_disk(cfg, pool, image)
        if name != "rbd/gone":
            fake.images[name] = FakeImage(size)
    fake.images["rbd/gone2"] = FakeImage(4 << 30)  # an image that is not a disk (yet)
    fake.images["rbd/disk_3"].state = "Degraded - excessive failovers"
    fake.images["rbd/disk_1"].snapshots["before-upgrade"] = 1 << 30
    for disk in ("rbd/disk_1", "rbd/disk_2", "rbd/disk_3", "iscsi/lun_a"):
        ops.map_lun(cfg, iqn, disk)
    ops.add_client(cfg, iqn, "iqn.1994-05.com.redhat:rh7-client",
                   ChapAuth("myiscsiusername", "myiscsipassword"))
    ops.add_client_lun(cfg, iqn, "iqn.1994-05.com.redhat:rh7-client", "rbd/disk_1")
    ops.add_client(cfg, iqn, "iqn.1994-05.com.redhat:nochap")
    ops.add_client(cfg, iqn, "iqn.1994-05.com.redhat:node1", ChapAuth("nodeuser01", "nodepassword01"))
    ops.add_client(cfg, iqn, "iqn.1994-05.com.redhat:node2", ChapAuth("nodeuser01", "nodepassword01",
                                                                     "targetuser01", "targetpassw0rd"))
    ops.update_group(cfg, iqn, "cluster1", add_members=["iqn.1994-05.com.redhat:node1",
                                                        "iqn.1994-05.com.redhat:node2"],
                     add_disks=["rbd/disk_2", "iscsi/lun_a"])
    ops.set_discovery_auth(cfg, ChapAuth("discoveryuser", "discoverypass1"))
    fake.gateway_health["gw1.example.com"] = {"state": "applied", "health": "ok", "applied_version": 7,
                                              "heartbeat_age": 1.0}
    fake.sessions[(iqn, "iqn.1994-05.com.redhat:rh7-client")] = {
        "alias": "rh7-client", "state": {"LOGGED_IN": ["gw1.example.com"]}, "ip_address": ["192.168.100.50"]}
    fake.cluster["pools"]["iscsi"] = {"type": "replicated", "size": 2, "max_avail": 100 << 30,
                                      "used_bytes": 3 << 20}
    return fake


class Harness:
    """gwcli's shell in this process, on the fake API, with captured output.

    ``run(line)`` executes one command line as the interactive shell would and returns
    (succeeded, stdout, stderr) of that command only.
    """

    def __init__(self, fake: FakeApi, prefs_dir: str, *, color: bool = False, width: int = 100,
                 host: str = "127.0.8.1") -> None:
        import io

        from gateway import settings
        from gwcli.api import GatewayApi
        from gwcli.nodes.root import GatewayRoot
        from gwcli.shell import GatewayShell
        from gwcli.transport import ApiClient

        self.fake = fake
        self.url = fake.serve(host)
        self.out, self.err = io.StringIO(), io.StringIO()
        self.shell = GatewayShell(prefs_dir, color=color, width=width, stdout=self.out, stderr=self.err)
        cfg = settings.load(f"{prefs_dir}/no-such.cfg",
                            overrides={"api_user": USER, "api_password": PASSWORD})
        self.root = GatewayRoot(self.shell, GatewayApi(ApiClient(self.url, USER, PASSWORD)), cfg)
        self.root.refresh()

    def run(self, line: str) -> tuple[bool, str, str]:
        for buf in (self.out, self.err):
            buf.seek(0)
            buf.truncate()
        self.fake.requests.clear()
        ok = self.shell.run_cmdline(line)
        return ok, self.out.getvalue(), self.err.getvalue()

    @property
    def cwd(self) -> str:
        return self.shell._current_node.path

    def close(self) -> None:
        self.fake.close()
