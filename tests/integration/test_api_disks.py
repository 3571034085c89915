"""Disk endpoints act on RBD for real: create with ceph-iscsi's features, attach, WWN kept
on the image, resize seen by the gateways, snapshots, clone (+ flatten as a task with
progress), data pool, QoS as librbd image settings, delete that respects preserve_image."""

import json
import time

import rbd
from support.api_fixtures import GW_A, GW_B, POOL, api_env  # noqa: F401 - fixture

from gateway.config.image_identity import WWN_METADATA_KEY

FEATURES = {"layering", "exclusive-lock", "object-map", "fast-diff", "deep-flatten"}


def test_create_makes_an_image_with_ceph_iscsi_features_and_a_recorded_wwn(api_env):
    c = api_env.client
    name = api_env.image_name()
    body = c.ok("PUT", f"/api/disk/{POOL}/{name}", data={"mode": "create", "size": "32m"})
    assert body["message"] == "disk create/update successful" and body["disks"] == [f"{POOL}/{name}"]
    assert body["task"]
    img, io = api_env.rbd_image(name)
    with img:
        assert img.size() == 32 << 20
        assert img.features() & 61 == 61
        wwn = img.metadata_get(WWN_METADATA_KEY)
    io.close()
    disk = c.ok("GET", f"/api/disk/{POOL}/{name}")
    assert disk["wwn"] == wwn and disk["pool"] == POOL and disk["image"] == name
    assert disk["backstore"] == "user:rbd" and disk["allocating_host"] == GW_A
    assert set(disk["image_info"]["feature_list"]) == FEATURES and disk["image_info"]["size"] == 32 << 20
    assert disk["status"]["state"] == "Unmapped"
    assert c.ok("GET", "/api/disks")["disks"].count(f"{POOL}/{name}") == 1
    assert c.ok("GET", "/api/disks", params={"config": "yes"})["disks"][f"{POOL}/{name}"]["wwn"] == wwn
    detailed = c.ok("GET", "/api/disks", data={"details": "yes"})["disks"][f"{POOL}/{name}"]
    assert detailed["image_info"]["size"] == 32 << 20
    r = c.put(f"/api/disk/{POOL}/{name}", data={"mode": "create", "size": "32M"})
    assert r.status_code == 409 and "already defined" in r.json()["message"]


def test_detach_and_attach_keeps_the_wwn(api_env):
    c = api_env.client
    name = api_env.image_name()
    c.ok("PUT", f"/api/disk/{POOL}/{name}", data={"mode": "create", "size": "16M"})
    wwn = c.ok("GET", f"/api/disk/{POOL}/{name}")["wwn"]
    body = c.ok("DELETE", f"/api/disk/{POOL}/{name}", data={"preserve_image": "true"})
    assert body["message"] == "disk map deletion successful" and body["image_deleted"] is False
    assert api_env.image_exists(name)
    assert c.get(f"/api/disk/{POOL}/{name}").status_code == 404
    # the Dashboard's attach: mode=create without size
    c.ok("PUT", f"/api/disk/{POOL}/{name}", data={"mode": "create", "backstore": "user:rbd"})
    assert c.ok("GET", f"/api/disk/{POOL}/{name}")["wwn"] == wwn
    r = c.put(f"/api/disk/{POOL}/{api_env.image_name()}", data={"mode": "create", "create_image": "false"})
    assert r.status_code == 400 and "does not exist" in r.json()["message"]
    r = c.put(f"/api/disk/{POOL}/{api_env.image_name()}", data={"mode": "create"})
    assert r.status_code == 400
    assert r.json()["message"] == "Size parameter is required when creating a new image"


def test_attaching_an_image_without_exclusive_lock_is_refused(api_env):
    name = api_env.image_name()
    with api_env.cluster.open_ioctx(POOL) as io:
        rbd.RBD().create(io, name, 8 << 20, old_format=False, features=rbd.RBD_FEATURE_LAYERING)
    r = api_env.client.put(f"/api/disk/{POOL}/{name}", data={"mode": "create"})
    assert r.status_code == 400 and "exclusive-lock" in r.json()["message"]


def test_create_validates_before_touching_rbd(api_env):
    c = api_env.client
    for data, status, fragment in (
            ({"mode": "create", "size": "10X"}, 400, "size must be"),
            ({"mode": "create", "size": "2000T"}, 400, "too large"),
            ({"mode": "create", "size": "1G", "count": "11"}, 400, "between 1 and 10"),
            ({"mode": "create", "size": "1G", "count": "2", "wwn": "abc"}, 400, "count > 1"),
            ({"mode": "create", "size": "1G", "backstore": "fileio"}, 400, "not supported"),
            ({"mode": "create", "size": "1G", "controls": '{"qfull_timeout": 9999}'}, 400, "qfull_timeout"),
            ({"mode": "create", "size": "1G", "qos": '{"iops_limit": -1}'}, 400, "iops_limit"),
            ({"mode": "create", "size": "1G", "qos": '{"fast": 1}'}, 400, "unknown QoS"),
            ({"mode": "create", "clone": "rbd/x"}, 400, "pool/image@snapshot"),
            ({"mode": "create", "size": "1G", "data_pool": "no-such-pool"}, 400, "does not exist"),
            ({"mode": "grow"}, 400, "mode 'grow' is invalid"),
            ({}, 400, "'mode' is required")):
        name = api_env.image_name()
        r = c.put(f"/api/disk/{POOL}/{name}", data=data)
        assert r.status_code == status, (data, r.text)
        assert fragment in r.json()["message"], (data, r.text)
        assert not api_env.image_exists(name)
    r = c.put(f"/api/disk/no-such-pool/{api_env.image_name()}", data={"mode": "create", "size": "1G"})
    assert r.status_code == 400 and "does not exist" in r.json()["message"]
    assert c.put(f"/api/disk/{POOL}/bad$name", data={"mode": "create", "size": "1G"}).status_code == 400


def test_count_creates_numbered_images_in_one_change(api_env):
    c = api_env.client
    base = api_env.image_name()
    body = c.ok("PUT", f"/api/disk/{POOL}/{base}", data={"mode": "create", "size": "8M", "count": "3"})
    assert body["disks"] == [f"{POOL}/{base}{i}" for i in (1, 2, 3)]
    assert all(api_env.image_exists(f"{base}{i}") for i in (1, 2, 3))
    wwns = {c.ok("GET", f"/api/disk/{POOL}/{base}{i}")["wwn"] for i in (1, 2, 3)}
    assert len(wwns) == 3


def test_a_refused_commit_removes_the_images_the_request_created(api_env):
    c = api_env.client
    first = api_env.new_disk()
    wwn = c.ok("GET", f"/api/disk/{first}")["wwn"]
    name = api_env.image_name()
    r = c.put(f"/api/disk/{POOL}/{name}", data={"mode": "create", "size": "8M", "wwn": wwn})
    assert r.status_code == 409 and "already used" in r.json()["message"]
    assert not api_env.image_exists(name)


def test_resize_grows_the_image_and_waits_for_the_gateways_to_see_it(api_env):
    c = api_env.client
    iqn = api_env.new_target()
    disk = api_env.mapped_disk(iqn)
    body = c.ok("PUT", f"/api/disk/{disk}", data={"mode": "resize", "size": "64M"})
    assert body["size"] == 64 << 20 and body["previous_size"] == 16 << 20
    assert body["applied"] == [GW_A, GW_B] and body["pending"] == []
    status = api_env.store.read_statuses()
    assert all(status[g].details["disks"][disk]["size"] == 64 << 20 for g in (GW_A, GW_B))
    r = c.put(f"/api/disk/{disk}", data={"mode": "resize", "size": "32M"})
    assert r.status_code == 400 and "must be larger" in r.json()["message"]
    assert c.put(f"/api/disk/{POOL}/not-a-disk", data={"mode": "resize", "size": "1G"}).status_code == 404


def test_reconfigure_stores_controls_and_sets_librbd_qos(api_env):
    c = api_env.client
    iqn = api_env.new_target()
    disk = api_env.mapped_disk(iqn)
    body = c.ok("PUT", f"/api/disk/{disk}", data={
        "mode": "reconfigure", "controls": json.dumps({"qfull_timeout": 9, "qos_write_iops_limit": 300}),
        "qos": json.dumps({"iops_limit": 1000, "bps_limit": "100M", "iops_burst_seconds": 2})})
    assert body["message"] == "lun reconfigured: successful" and body["controls"] == {"qfull_timeout": 9}
    assert body["applied"] == [GW_A, GW_B]
    img, io = api_env.rbd_image(disk.split("/")[1])
    with img:
        meta = dict(img.metadata_list())
    io.close()
    assert meta["conf_rbd_qos_iops_limit"] == "1000"
    assert meta["conf_rbd_qos_bps_limit"] == str(100 << 20)
    assert meta["conf_rbd_qos_write_iops_limit"] == "300"
    assert c.ok("GET", f"/api/disk/{disk}")["image_info"]["qos"] == {
        "iops_limit": 1000, "bps_limit": 100 << 20, "write_iops_limit": 300, "iops_burst_seconds": 2}
    c.ok("PUT", f"/api/disk/{disk}", json={"mode": "reconfigure",
                                           "qos": {"iops_limit": 0, "bps_limit": None}})
    qos = c.ok("GET", f"/api/disk/{disk}")["image_info"]["qos"]
    assert set(qos) == {"write_iops_limit", "iops_burst_seconds"}
    r = c.put(f"/api/disk/{disk}", data={"mode": "reconfigure"})
    assert r.status_code == 400


def test_snapshots_create_rollback_delete(api_env):
    c = api_env.client
    disk = api_env.new_disk()
    pool, name = disk.split("/")
    with api_env.cluster.open_ioctx(pool) as io, rbd.Image(io, name) as img:
        img.write(b"A" * 4096, 0)
    assert c.ok("PUT", f"/api/disksnap/{disk}/before", data={"mode": "create"}) == \
        {"message": "disk snapshot snapshot created"}
    r = c.put(f"/api/disksnap/{disk}/before", data={"mode": "create"})
    assert r.status_code == 409
    with api_env.cluster.open_ioctx(pool) as io, rbd.Image(io, name) as img:
        img.write(b"B" * 4096, 0)
    body = c.ok("PUT", f"/api/disksnap/{disk}/before", data={"mode": "rollback"})
    assert body["message"] == "disk snapshot rolled back to snapshot" and body["task"]
    with api_env.cluster.open_ioctx(pool) as io, rbd.Image(io, name, read_only=True) as img:
        assert img.read(0, 4096) == b"A" * 4096
    assert [s["name"] for s in c.ok("GET", f"/api/disk/{disk}")["image_info"]["snapshots"]] == ["before"]
    for path, data, status in ((f"/api/disksnap/{disk}/nope", {"mode": "rollback"}, 404),
                               (f"/api/disksnap/{disk}/before", {"mode": "revert"}, 400),
                               (f"/api/disksnap/{disk}/a@b", {"mode": "create"}, 400),
                               (f"/api/disksnap/{POOL}/not-a-disk/s", {"mode": "create"}, 404)):
        r = c.put(path, data=data)
        assert r.status_code == status, (path, r.text)
    r = c.delete(f"/api/disk/{disk}")
    assert r.status_code == 400 and "snapshot" in r.json()["message"]
    assert c.ok("DELETE", f"/api/disksnap/{disk}/before") == {"message": "disk snapshot snapshot deleted"}
    assert c.delete(f"/api/disksnap/{disk}/before").status_code == 404


def test_rollback_is_refused_while_an_initiator_that_sees_the_disk_is_logged_in(api_env):
    c = api_env.client
    iqn = api_env.new_target()
    disk = api_env.mapped_disk(iqn)
    client = api_env.new_client(iqn)
    c.ok("PUT", f"/api/clientlun/{iqn}/{client}", data={"disk": disk})
    c.ok("PUT", f"/api/disksnap/{disk}/s1", data={"mode": "create"})
    api_env.gateways[GW_B].set_sessions({iqn: {client: {"alias": "h", "ip_addresses": ["127.0.7.50"]}}})
    try:
        deadline = time.monotonic() + 30
        while not c.ok("GET", f"/api/clientinfo/{iqn}/{client}")["state"] and time.monotonic() < deadline:
            time.sleep(0.2)
        r = c.put(f"/api/disksnap/{disk}/s1", data={"mode": "rollback"})
        assert r.status_code == 409 and client in r.json()["message"]
    finally:
        api_env.gateways[GW_B].set_sessions({})


def test_clone_with_flatten_runs_as_a_task_with_progress(api_env):
    c = api_env.client
    parent = api_env.new_disk(size="16M")
    pool, pname = parent.split("/")
    with api_env.cluster.open_ioctx(pool) as io, rbd.Image(io, pname) as img:
        img.write(b"P" * 8192, 4 << 20)
    c.ok("PUT", f"/api/disksnap/{parent}/golden", data={"mode": "create"})
    child = api_env.image_name()
    r = c.put(f"/api/disk/{POOL}/{child}", data={"mode": "create", "clone": f"{parent}@golden",
                                                  "size": "32M", "flatten": "true", "wait": "0"})
    assert r.status_code in (200, 202), r.text
    task_id = r.json()["task"]["id"] if r.status_code == 202 else r.json()["task"]
    deadline = time.monotonic() + 60
    while (task := c.ok("GET", f"/api/tasks/{task_id}"))["state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert task["state"] == "done" and task["progress"] == 1.0, task["result"]
    assert task["result"]["disks"] == [f"{POOL}/{child}"]
    notes = " ".join(task["result"]["notes"])
    assert "was protected for cloning" in notes and "got a new one" in notes
    assert c.ok("GET", f"/api/disk/{POOL}/{child}")["wwn"] != c.ok("GET", f"/api/disk/{parent}")["wwn"]
    info = c.ok("GET", f"/api/disk/{POOL}/{child}")["image_info"]
    assert info["parent"] is None and info["size"] == 32 << 20
    with api_env.cluster.open_ioctx(POOL) as io, rbd.Image(io, child, read_only=True) as img:
        assert img.read(4 << 20, 8192) == b"P" * 8192
    assert any(t["id"] == task_id for t in c.ok("GET", "/api/tasks")["tasks"])
    assert c.get("/api/tasks/0-nothing").status_code == 404
    # the snapshot was protected for the clone; deleting it unprotects it (no clone left)
    assert c.ok("DELETE", f"/api/disksnap/{parent}/golden")["message"] == "disk snapshot snapshot deleted"


def test_clone_refuses_missing_sources_and_existing_targets(api_env):
    c = api_env.client
    parent = api_env.new_disk()
    r = c.put(f"/api/disk/{POOL}/{api_env.image_name()}", data={"mode": "create", "clone": f"{parent}@none"})
    assert r.status_code == 404 and "does not exist" in r.json()["message"]
    c.ok("PUT", f"/api/disksnap/{parent}/s", data={"mode": "create"})
    existing = api_env.new_disk().split("/")[1]
    c.ok("DELETE", f"/api/disk/{POOL}/{existing}", data={"preserve_image": "true"})
    r = c.put(f"/api/disk/{POOL}/{existing}", data={"mode": "create", "clone": f"{parent}@s"})
    assert r.status_code == 409


def test_data_pool_puts_the_data_in_another_pool(api_env):
    c = api_env.client
    data_pool = "issue7-data"
    api_env.cluster.create_pool(data_pool) if not api_env.cluster.pool_exists(data_pool) else None
    name = api_env.image_name()
    c.ok("PUT", f"/api/disk/{POOL}/{name}", data={"mode": "create", "size": "8M", "data_pool": data_pool})
    assert c.ok("GET", f"/api/disk/{POOL}/{name}")["image_info"]["data_pool"] == data_pool
    assert "data-pool" in c.ok("GET", f"/api/disk/{POOL}/{name}")["image_info"]["feature_list"]


def test_delete_removes_the_image_unless_preserved(api_env):
    c = api_env.client
    iqn = api_env.new_target()
    disk = api_env.mapped_disk(iqn)
    r = c.delete(f"/api/disk/{disk}")
    assert r.status_code == 400 and "in use" in r.json()["message"]
    c.ok("DELETE", f"/api/targetlun/{iqn}", data={"disk": disk})
    body = c.ok("DELETE", f"/api/disk/{disk}")
    assert body["message"] == "disk map deletion successful" and body["image_deleted"] is True
    assert not api_env.image_exists(disk.split("/")[1])
    assert c.delete(f"/api/disk/{disk}").status_code == 404
