"""The calls the Ceph Dashboard makes (mgr/dashboard iscsi_client.py + controllers/iscsi.py),
in its order and with its encodings: form fields, ``controls`` as JSON text, booleans as
"true", ``decrypt_passwords`` as Python's ``True`` in the query string.

Shared by the API integration test and by the end-to-end test with a real initiator
(tests/conformance/test_dashboard_initiator_io.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from support.harness import ApiClient

HEADERS = {"Accept": "application/json"}


@dataclass
class DashboardTarget:
    iqn: str
    portals: dict[str, list[str]]  # gateway -> addresses
    disk: tuple[str, str]  # pool, image (the Dashboard creates the image itself, through rbd)
    client: str
    chap: dict[str, str]  # user, password, mutual_user, mutual_password (Dashboard's names)
    disk_controls: dict[str, Any]


class Dashboard:
    """Drives one API the way the Dashboard drives the API of its first gateway."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    def call(self, method: str, path: str, *, data: dict[str, Any] | None = None,
             params: dict[str, Any] | None = None) -> Any:
        r = self.api.request(method, path, data=data, params=params, headers=HEADERS)
        assert r.ok, f"Dashboard {method} {path}: {r.status_code} {r.text}"
        return r.json()

    def get_config(self) -> dict[str, Any]:
        return self.call("GET", "/api/config", params={"decrypt_passwords": True})

    def check_gateway(self) -> dict[str, Any]:
        """What the Dashboard asks when a gateway is registered and when it lists gateways."""
        self.call("GET", "/api/_ping")
        settings = self.call("GET", "/api/settings")
        assert settings["api_version"] >= 2
        return {"hostname": self.call("GET", "/api/sysinfo/hostname")["data"],
                "ip_addresses": self.call("GET", "/api/sysinfo/ip_addresses")["data"],
                "settings": settings}

    def create(self, t: DashboardTarget) -> None:
        """IscsiTarget._create for a new target with one disk and one CHAP client."""
        config = self.get_config()
        assert t.iqn not in config["targets"]
        pool, image = t.disk
        disk_id = f"{pool}/{image}"
        self.call("PUT", f"/api/target/{t.iqn}", data={"controls": json.dumps({})})
        for host, ips in t.portals.items():
            self.call("PUT", f"/api/gateway/{t.iqn}/{host}",
                      data={"ip_address": ",".join(ips), "skipchecks": "true"})
        # acl_enabled: target auth first (empty), then the ACL action
        self.call("PUT", f"/api/targetauth/{t.iqn}",
                  data={"username": "", "password": "", "mutual_username": "", "mutual_password": ""})
        self.call("PUT", f"/api/targetauth/{t.iqn}", data={"action": "enable_acl"})
        if disk_id not in config["disks"]:
            self.call("PUT", f"/api/disk/{pool}/{image}", data={"mode": "create", "backstore": "user:rbd"})
        self.call("PUT", f"/api/targetlun/{t.iqn}", data={"disk": disk_id})
        if t.disk_controls:
            self.call("PUT", f"/api/disk/{pool}/{image}",
                      data={"controls": json.dumps(t.disk_controls), "mode": "reconfigure"})
        self.call("PUT", f"/api/client/{t.iqn}/{t.client}")
        self.call("PUT", f"/api/clientlun/{t.iqn}/{t.client}", data={"disk": disk_id})
        self.call("PUT", f"/api/clientauth/{t.iqn}/{t.client}", data={
            "username": t.chap["user"], "password": t.chap["password"],
            "mutual_username": t.chap["mutual_user"], "mutual_password": t.chap["mutual_password"]})

    def info(self, t: DashboardTarget) -> dict[str, Any]:
        """IscsiTarget._set_info and the gateway list: sessions and client states."""
        return {"target": self.call("GET", f"/api/targetinfo/{t.iqn}"),
                "gateway": self.call("GET", "/api/gatewayinfo"),
                "client": self.call("GET", f"/api/clientinfo/{t.iqn}/{t.client}")}

    def delete(self, t: DashboardTarget) -> None:
        """IscsiTarget.delete: refuse with sessions, then clients, LUNs, disks, portals, target."""
        config = self.get_config()
        target = config["targets"][t.iqn]
        assert self.call("GET", f"/api/targetinfo/{t.iqn}")["num_sessions"] == 0
        for client in target["clients"]:
            assert not self.call("GET", f"/api/clientinfo/{t.iqn}/{client}").get("state", {}).get("LOGGED_IN")
        for group in target["groups"]:
            self.call("DELETE", f"/api/hostgroup/{t.iqn}/{group}")
        for client in target["clients"]:
            self.call("DELETE", f"/api/client/{t.iqn}/{client}")
        for disk_id in target["disks"]:
            self.call("DELETE", f"/api/targetlun/{t.iqn}", data={"disk": disk_id})
            pool, image = disk_id.split("/", 1)
            self.call("DELETE", f"/api/disk/{pool}/{image}", data={"preserve_image": "true"})
        for host in target["portals"]:
            self.call("DELETE", f"/api/gateway/{t.iqn}/{host}")
        self.call("DELETE", f"/api/target/{t.iqn}")
