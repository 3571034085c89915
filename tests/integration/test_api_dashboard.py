"""The Ceph Dashboard's call sequence (reference C.5) end to end against the real API and two
gateways: register, create a target with two gateways, a disk and a CHAP client, show it,
tear it all down.  The initiator login and I/O in the middle needs the real gateway daemon:
tests/conformance/test_dashboard_initiator_io.py."""

import uuid

import rbd
from support.api_fixtures import GW_A, GW_B, IP_A, IP_B, POOL, api_env  # noqa: F401 - fixture
from support.dashboard import Dashboard, DashboardTarget


def test_dashboard_creates_shows_and_deletes_a_target(api_env):
    dashboard = Dashboard(api_env.client)
    registered = dashboard.check_gateway()
    assert registered["hostname"] == GW_A and registered["settings"]["api_version"] == 2

    image = api_env.image_name()
    with api_env.cluster.open_ioctx(POOL) as io:  # the Dashboard creates images itself
        rbd.RBD().create(io, image, 64 << 20, old_format=False, features=61)
    t = DashboardTarget(
        iqn=f"iqn.2001-07.com.ceph:{uuid.uuid4().hex[:12]}", portals={GW_A: [IP_A], GW_B: [IP_B]},
        disk=(POOL, image), client="iqn.1994-05.com.redhat:dashboard-client",
        chap={"user": "dashboarduser", "password": "dashboardpass1", "mutual_user": "mutualuser1",
              "mutual_password": "mutualpass123"},
        disk_controls={"qfull_timeout": 7})
    dashboard.create(t)

    config = dashboard.get_config()
    target = config["targets"][t.iqn]
    disk_id = f"{POOL}/{image}"
    assert set(target["portals"]) == {GW_A, GW_B} and target["ip_list"] == [IP_A, IP_B]
    assert target["acl_enabled"] is True and target["disks"] == {disk_id: {"lun_id": 0}}
    client = target["clients"][t.client]
    assert client["luns"] == {disk_id: {"lun_id": 0}}
    assert (client["auth"]["username"], client["auth"]["password"]) == ("dashboarduser", "dashboardpass1")
    assert client["auth"]["mutual_password"] == "mutualpass123"
    assert config["disks"][disk_id]["controls"] == {"qfull_timeout": 7}
    assert config["disks"][disk_id]["owner"] in (GW_A, GW_B)
    status = api_env.client.ok("GET", "/api/status", params={"wait": "10"})
    assert status["pending"] == [] and status["down"] == [] and {GW_A, GW_B} <= set(status["applied"])

    info = dashboard.info(t)
    assert info["target"]["num_sessions"] == 0 and info["gateway"]["num_sessions"] == 0
    assert info["client"]["state"] == {}

    dashboard.delete(t)
    config = dashboard.get_config()
    assert t.iqn not in config["targets"] and disk_id not in config["disks"]
    assert api_env.image_exists(image)  # the Dashboard detaches (preserve_image=true)
