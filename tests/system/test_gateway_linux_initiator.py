"""A real Linux initiator (open-iscsi + dm-multipath in a Debian guest under QEMU) against two
rbd-target-gw processes serving one RBD image.

The guest discovers the target through one gateway -- the gateways advertise the guest-side
addresses of their portals, so SendTargets answers with addresses the guest can use --, logs
in through both, and dm-multipath (``hardware_handler "1 alua"``, ``prio alua``) builds one map
with a prio-50 group (the owner's Active/Optimized path) and a prio-10 group (the other
gateway's Active/Non-optimized path).  Data is written and verified; the owning gateway is
killed with SIGKILL; I/O continues through the other gateway, which takes the exclusive lock,
and every acknowledged write still reads back.
"""

from __future__ import annotations

import uuid

from gateway_support import CHAP_PASSWORD, CHAP_USER

from gateway.config import operations as ops
from gateway.config.model import ChapAuth
from gateway.testing.gateways import GatewayCluster
from gateway.testing.guest import Guest

IQN = "iqn.2003-01.com.example.gw-test:linux"
INITIATOR = "iqn.1994-05.com.redhat:gw-system-test"
ADDRESSES = {"gw-a": "127.0.11.31", "gw-b": "127.0.11.32"}
RUN_TIMEOUT = 300.0   # hard bound of boot + test (TCG on 2 shared cores, under load)

SCRIPT = """
vm_start_initiator
vm_iscsi_discover {a} >/dev/null
vm_iscsi_login {iqn} {a} {b}
map=$(vm_wait_multipath 2)
vm_multipath_ll
vm_scsi_info "$(vm_active_path "$map")" owner
vm_write_verify "/dev/mapper/$map" 0 8 before
vm_failover_on_host "$map" owner-killed
vm_iscsi_logout
"""


def test_linux_multipath_uses_alua_and_survives_the_owning_gateway_dying(ceph_cluster, guest_image, tmp_path,
                                                                          record_property):
    tag = uuid.uuid4().hex[:8]
    image = f"gwsys-{tag}"
    disk = f"{ceph_cluster.pool}/{image}"
    ceph_cluster.rbd("create", "--size", "64M", disk)
    gc = GatewayCluster(ceph_cluster, tmp_path / "gateways", gateway_conf=f"gw-system-{tag}")
    for name, ip in ADDRESSES.items():
        gc.add(name, ip)
    try:
        with Guest(guest_image, tmp_path / "guest", initiator_iqn=INITIATOR) as guest:
            fwd = {name: guest.forward(*gc.addresses[name]) for name in ADDRESSES}

            def setup(cfg):
                ops.add_target(cfg, IQN)
                for name in ADDRESSES:
                    ip, port = gc.addresses[name]
                    ops.add_portal(cfg, IQN, name, [ip], port=port, advertise=[fwd[name].guest_portal])
                ops.add_disk(cfg, ceph_cluster.pool, image)
                ops.map_lun(cfg, IQN, disk, owner="gw-a")
                ops.add_client(cfg, IQN, INITIATOR, ChapAuth(CHAP_USER, CHAP_PASSWORD))
                ops.add_client_lun(cfg, IQN, INITIATOR, disk)

            version = gc.store.update(setup).version
            gc.start_all()
            gc.wait_applied(version, timeout=60)
            guest.start(SCRIPT.format(iqn=IQN, a=fwd["gw-a"], b=fwd["gw-b"]), timeout=RUN_TIMEOUT,
                        env={"VM_CHAP_USER": CHAP_USER, "VM_CHAP_PASSWORD": CHAP_PASSWORD})
            owner = guest.forward_for(guest.wait_data("owner_portal", timeout=RUN_TIMEOUT))
            killed = next(n for n in ADDRESSES if gc.portal(n) == owner.host_portal)
            gc.gateways[killed].kill()
            guest.signal("owner-killed")
            result = guest.wait()
    finally:
        gc.close()
        ceph_cluster.rbd("rm", disk)
    record_property("guest_boot_seconds", result.boot_seconds)
    record_property("guest_wall_seconds", round(result.wall_seconds, 1))
    print(f"\nguest: boot {result.boot_seconds} s, whole run {result.wall_seconds:.1f} s")
    assert result.passed, result.summary()

    # multipath chose the owner's (Active/Optimized) path, and that is the gateway we killed.
    assert killed == "gw-a", f"the active path went to {killed}, not to the owner gw-a"
    # SendTargets through a gateway announces both portals at their advertised addresses.
    assert sorted(result.events.discovery) == sorted(f"{fwd[n].guest_portal},{t} {IQN}"
                                                     for n, t in (("gw-a", 1), ("gw-b", 2))), \
        result.events.discovery

    (before,) = result.multipath("multipath")
    assert (before.vendor, before.product) == ("LIO-ORG", "TCMU device")
    assert before.hwhandler == "1 alua"
    assert sorted(g.prio for g in before.groups) == [10, 50]
    active = next(g for g in before.groups if g.status == "active")
    assert active.prio == 50 and [p.disk for p in active.paths] == [result.data["owner_path"]]
    assert all((p.dm_state, p.checker_state) == ("active", "ready") for p in before.paths)

    rtpg = result.blocks["sg_rtpg-owner"]
    assert "active/optimized" in rtpg.lower() and "active/non optimized" in rtpg.lower(), rtpg
    assert "TPGS=1" in result.blocks["sg_inq-owner"]

    (after,) = result.multipath("multipath-after-owner-killed")
    assert [p.disk for p in after.paths if p.dm_state == "failed"] == [result.data["owner_path"]]
    assert [p.dm_state for p in after.paths if p.disk != result.data["owner_path"]] == ["active"]

    for log in (result.serial_log, result.events_log):
        assert CHAP_PASSWORD not in log.read_text(errors="replace")
