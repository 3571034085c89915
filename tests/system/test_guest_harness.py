"""The real-Linux-initiator harness, proven against a peer target (a private tgtd).

One boot: open-iscsi in the guest logs in (CHAP) to one target through two portals (two host
loopback addresses reached through slirp forwards), dm-multipath makes one map of the
two paths, O_DIRECT writes read back, and I/O keeps working when a path fails, first
from inside the guest (device offline) and then from the host (the portal's connections
are cut and reconnects refused, as when a gateway process dies); once the host heals the
partition the path comes back.  tgt has no ALUA, so
the map shows hwhandler '0' and constant priorities; the gateway's test expects ALUA.
"""

from __future__ import annotations

from gateway.testing.guest import Guest
from gateway.testing.guest_events import MultipathDevice
from gateway.testing.tgt import TgtTarget, free_port

IQN = "iqn.2003-01.org.example.vmtest:harness"
CHAP_USER, CHAP_PASSWORD = "vmtest", "HarnessSecret-16"
PORTAL_IPS = ("127.0.6.1", "127.0.6.2")
RUN_TIMEOUT = 300.0   # hard bound of the boot + test (TCG, 2 shared cores, under load)

SCRIPT = """
vm_start_initiator
vm_iscsi_discover {a} >/dev/null
vm_iscsi_login {iqn} {a} {b}
map=$(vm_wait_multipath 2)
vm_multipath_ll
vm_scsi_info "$(vm_active_path "$map")" active
vm_write_verify "/dev/mapper/$map" 0 8 before
vm_failover_offline "$map"
vm_failover_on_host "$map" cut
vm_data cut_checked yes
vm_wait_host healed 60 >/dev/null
vm_wait_path "$map" "$(vm_failed_paths "$map")" active 60
vm_verify_all "/dev/mapper/$map"
vm_iscsi_logout
"""


def test_linux_multipath_keeps_data_and_io_when_a_path_fails(guest_image, tmp_path, record_property):
    ports = [free_port(ip) for ip in PORTAL_IPS]
    with TgtTarget(tmp_path / "tgt", IQN, list(zip(PORTAL_IPS, ports, strict=True))) as tgt, \
            Guest(guest_image, tmp_path / "guest",
                  multipath=MultipathDevice(vendor="IET", product="VIRTUAL-DISK")) as guest:
        tgt.add_lun(64 << 20)
        tgt.require_chap(CHAP_USER, CHAP_PASSWORD)
        a, b = (guest.forward(ip, port) for ip, port in zip(PORTAL_IPS, ports, strict=True))
        guest.start(SCRIPT.format(iqn=IQN, a=a, b=b), timeout=RUN_TIMEOUT,
                    env={"VM_CHAP_USER": CHAP_USER, "VM_CHAP_PASSWORD": CHAP_PASSWORD})

        owner = guest.forward_for(guest.wait_data("owner_portal", timeout=RUN_TIMEOUT))
        dropped = guest.cut(owner)
        guest.signal("cut")
        guest.wait_data("cut_checked", timeout=RUN_TIMEOUT)
        guest.heal(owner)
        guest.signal("healed")
        result = guest.wait()

    record_property("guest_boot_seconds", result.boot_seconds)
    record_property("guest_wall_seconds", round(result.wall_seconds, 1))
    assert result.passed, result.summary()
    assert [guest.forwarder_pids(f) for f in (a, b)] == [[], []]   # no forwarder outlives qemu
    assert dropped == 1, f"expected the one connection of {owner.host_portal} to be cut, cut {dropped}"

    # SendTargets answers with the host's addresses, which is why the harness re-creates
    # node records with the guest-side portals.
    assert any(d.startswith(f"{PORTAL_IPS[0]}:{ports[0]},") and d.endswith(IQN)
               for d in result.events.discovery), result.events.discovery

    (before,) = result.multipath("multipath")
    assert (before.vendor, before.product) == ("IET", "VIRTUAL-DISK")
    assert before.hwhandler == "0"                       # tgt: no ALUA
    assert "queue_if_no_path" in before.features         # no_path_retry queue
    assert [len(g.paths) for g in before.groups] == [1, 1]   # failover: a group per path
    assert all((p.dm_state, p.checker_state) == ("active", "ready") for p in before.paths)
    assert len({p.hctl.split(":")[0] for p in before.paths}) == 2   # two sessions

    (offline,) = result.multipath("multipath-offline")
    assert sorted(p.dev_state for p in offline.paths) == ["offline", "running"]

    (after,) = result.multipath("multipath-after-cut")
    assert [p.disk for p in after.paths if p.dm_state == "failed"] == [result.data["owner_path"]]
    assert [p.dm_state for p in after.paths if p.disk != result.data["owner_path"]] == ["active"]

    for log in (result.serial_log, result.events_log):
        assert CHAP_PASSWORD not in log.read_text(errors="replace")

    assert "TPGS=0" in result.blocks["sg_inq-active"]
    assert result.block_status["sg_rtpg-active"] != 0          # tgt rejects REPORT TARGET PORT GROUPS
    assert "NAA" in result.blocks["sg_vpd83-active"]


def test_guest_is_killed_when_its_hard_timeout_expires(guest_image, tmp_path):
    with Guest(guest_image, tmp_path) as guest:
        guest.start("vm_log started; sleep 600", timeout=3)
        result = guest.wait()
    assert result.verdict == "TIMEOUT", result.summary()
    assert not result.passed
    assert result.qemu_status == -9          # SIGKILL, not a guest power-off
