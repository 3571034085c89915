"""Every API call gwcli makes, one method each: the only module that knows paths and fields.

Paths and form fields follow ceph-iscsi's REST API (reference C.2).  Our additions are
marked *extension*; their shapes are documented in docs/gwcli.md ("What gwcli needs from
the API") so the API and gwcli stay in step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gwcli.transport import ApiClient, ApiError, ChangeReport, path_part

Progress = Callable[[str], None] | None


class GatewayApi:
    """Operations of the gateway API, as gwcli uses them."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    @property
    def base_url(self) -> str:
        return self.client.base_url

    # ---- reads ------------------------------------------------------------------------------
    def config(self, decrypt_passwords: bool = False) -> dict[str, Any]:
        params = {"decrypt_passwords": "true"} if decrypt_passwords else None
        body = self.client.get("config", params=params)
        if not isinstance(body, dict):
            raise ApiError("Malformed REST API response for /api/config (not an object)")
        return body

    def disk(self, name: str) -> dict[str, Any]:
        """ceph-iscsi's disk dict plus ``status``; *extension* ``image_info``: size, features,
        snapshots, qos, parent, data_pool (null when the RBD image is missing)."""
        body = self.client.get(f"disk/{path_part(name)}")
        return body if isinstance(body, dict) else {}

    def gateway_status(self) -> dict[str, Any]:
        """*extension* ``GET /api/status``: every gateway's heartbeat and applied version."""
        body = self.client.get("status", timeout=10)
        return body if isinstance(body, dict) else {}

    def cluster(self) -> dict[str, Any]:
        """*extension* ``GET /api/cluster``: health, MONs, OSDs, pools (for ``/cluster``)."""
        body = self.client.get("cluster", timeout=30)
        return body if isinstance(body, dict) else {}

    def client_info(self, target: str, client: str) -> dict[str, Any]:
        body = self.client.get(f"clientinfo/{path_part(target)}/{path_part(client)}", timeout=10)
        return body if isinstance(body, dict) else {}

    def settings(self) -> dict[str, Any]:
        body = self.client.get("settings")
        return body if isinstance(body, dict) else {}

    # ---- targets ----------------------------------------------------------------------------
    def create_target(self, iqn: str) -> ChangeReport:
        return self.client.put(f"target/{path_part(iqn)}")

    def delete_target(self, iqn: str) -> ChangeReport:
        return self.client.delete(f"target/{path_part(iqn)}")

    def reconfigure_target(self, iqn: str, controls: Mapping[str, Any]) -> ChangeReport:
        return self.client.put(f"target/{path_part(iqn)}",
                               {"mode": "reconfigure", "controls": dict(controls)})

    def target_auth(self, iqn: str, credentials: Mapping[str, str]) -> ChangeReport:
        return self.client.put(f"targetauth/{path_part(iqn)}", dict(credentials))

    def target_acl(self, iqn: str, action: str) -> ChangeReport:
        return self.client.put(f"targetauth/{path_part(iqn)}", {"action": action})

    def discovery_auth(self, credentials: Mapping[str, str]) -> ChangeReport:
        return self.client.put("discoveryauth", dict(credentials))

    # ---- gateways ---------------------------------------------------------------------------
    def add_gateway(self, iqn: str, name: str, ips: list[str], nosync: bool,
                    skipchecks: bool) -> ChangeReport:
        return self.client.put(f"gateway/{path_part(iqn)}/{path_part(name)}",
                               {"ip_address": ips, "nosync": nosync, "skipchecks": skipchecks})

    def delete_gateway(self, iqn: str, name: str, force: bool) -> ChangeReport:
        return self.client.delete(f"gateway/{path_part(iqn)}/{path_part(name)}", {"force": force})

    def drain_gateway(self, iqn: str, name: str, progress: Progress = None) -> ChangeReport:
        """*extension*: move every LUN this gateway owns in the target to the other gateways."""
        return self.client.put(f"gateway/{path_part(iqn)}/{path_part(name)}/drain", None, progress)

    # ---- target LUNs ------------------------------------------------------------------------
    def map_lun(self, iqn: str, disk: str, lun_id: int | None = None) -> ChangeReport:
        return self.client.put(f"targetlun/{path_part(iqn)}", {"disk": disk, "lun_id": lun_id})

    def unmap_lun(self, iqn: str, disk: str) -> ChangeReport:
        return self.client.delete(f"targetlun/{path_part(iqn)}", {"disk": disk})

    def move_owner(self, disk: str, owner: str) -> ChangeReport:
        """*extension*: make ``owner`` the Active/Optimized gateway of a mapped disk."""
        return self.client.put(f"disk/{path_part(disk)}", {"mode": "owner", "owner": owner})

    # ---- disks ------------------------------------------------------------------------------
    def create_disk(self, pool: str, image: str, *, size: str | None = None, count: int = 1,
                    backstore: str | None = None, wwn: str | None = None, create_image: bool = True,
                    clone: str | None = None, flatten: bool = False, data_pool: str | None = None,
                    progress: Progress = None) -> ChangeReport:
        """ceph-iscsi's create; *extensions*: ``clone`` (pool/image@snap), ``flatten`` (copy
        the clone's data now), ``data_pool`` (an erasure-coded pool for the data)."""
        return self.client.put(f"disk/{path_part(pool)}/{path_part(image)}",
                               {"mode": "create", "pool": pool, "size": size,
                                "count": count if count != 1 else None, "backstore": backstore,
                                "wwn": wwn, "create_image": create_image, "clone": clone,
                                "flatten": True if flatten else None, "data_pool": data_pool}, progress)

    def resize_disk(self, name: str, size: str, progress: Progress = None) -> ChangeReport:
        return self.client.put(f"disk/{path_part(name)}", {"mode": "resize", "size": size}, progress)

    def reconfigure_disk(self, name: str, controls: Mapping[str, Any]) -> ChangeReport:
        return self.client.put(f"disk/{path_part(name)}",
                               {"mode": "reconfigure", "controls": dict(controls)})

    def set_qos(self, name: str, qos: Mapping[str, Any]) -> ChangeReport:
        """*extension*: per-disk QoS, librbd ``rbd_qos_<name>`` (``iops_limit``, ``bps_burst``...;
        an empty value removes a setting), sent as a reconfigure with a ``qos`` JSON object."""
        return self.client.put(f"disk/{path_part(name)}", {"mode": "reconfigure", "qos": dict(qos)})

    def delete_disk(self, name: str, preserve_image: bool, progress: Progress = None) -> ChangeReport:
        return self.client.delete(f"disk/{path_part(name)}", {"preserve_image": preserve_image},
                                  progress)

    def snapshot(self, name: str, snapshot: str, mode: str, progress: Progress = None) -> ChangeReport:
        path = f"disksnap/{path_part(name)}/{path_part(snapshot)}"
        if mode == "delete":
            return self.client.delete(path)
        return self.client.put(path, {"mode": mode}, progress)

    # ---- clients ----------------------------------------------------------------------------
    def create_client(self, iqn: str, client: str) -> ChangeReport:
        return self.client.put(f"client/{path_part(iqn)}/{path_part(client)}")

    def delete_client(self, iqn: str, client: str) -> ChangeReport:
        return self.client.delete(f"client/{path_part(iqn)}/{path_part(client)}")

    def client_auth(self, iqn: str, client: str, credentials: Mapping[str, str]) -> ChangeReport:
        return self.client.put(f"clientauth/{path_part(iqn)}/{path_part(client)}", dict(credentials))

    def client_lun(self, iqn: str, client: str, disk: str, add: bool) -> ChangeReport:
        path = f"clientlun/{path_part(iqn)}/{path_part(client)}"
        if add:
            return self.client.put(path, {"disk": disk})
        return self.client.delete(path, {"disk": disk})

    # ---- host groups ------------------------------------------------------------------------
    def update_group(self, iqn: str, group: str, action: str = "add", members: list[str] | None = None,
                     disks: list[str] | None = None) -> ChangeReport:
        data: dict[str, Any] = {"action": action}
        if members:
            data["members"] = members
        if disks:
            data["disks"] = disks
        return self.client.put(f"hostgroup/{path_part(iqn)}/{path_part(group)}", data)

    def delete_group(self, iqn: str, group: str) -> ChangeReport:
        return self.client.delete(f"hostgroup/{path_part(iqn)}/{path_part(group)}")
