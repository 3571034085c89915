"""Device behaviour around the commands: unit attentions, the LUN table, REPORT
SUPPORTED OPERATION CODES vs. dispatch, task management, the data area,
backend errors, read-only disks, ALUA states and the exclusive-lock policy."""

from __future__ import annotations

import asyncio
import errno
import struct

from scsi_support import (
    BLOCKS,
    BS,
    N1,
    N2,
    Harness,
    Sense,
    cdb6,
    check,
    good,
    inquiry,
    maint_in,
    mode_sense6,
    report_luns,
    run,
    rw10,
    sa16,
)

from tcmu_handler.alua import AccessState, AluaModel, TargetPortGroup, implicit_model
from tcmu_handler.api import LunTable, Nexus, ScsiCommand, Status
from tcmu_handler.backends.base import BackendTimeout
from tcmu_handler.backends.memory import MemoryBackend
from tcmu_handler.config import DiskConfig, naa_from_wwn
from tcmu_handler.disk import ScsiDisk
from tcmu_handler.lock import LockState

A = b"A" * BS


# -- unit attentions -----------------------------------------------------------------------
def test_first_command_of_a_nexus_reports_power_on_reset_once():
    async def go():
        h = Harness()
        assert check(await h.run(rw10(0x28, 0, 1))).code == (6, 0x29, 0x00)
        good(await h.run(rw10(0x28, 0, 1)))
    run(go())


def test_inquiry_and_report_luns_do_not_consume_a_unit_attention():
    async def go():
        h = Harness()
        good(await h.run(inquiry()))
        good(await h.run(report_luns()))
        assert check(await h.run(cdb6(0x00))).code == (6, 0x29, 0x00)
    run(go())


def test_request_sense_returns_and_clears_the_unit_attention():
    async def go():
        h = Harness()
        r = good(await h.run(cdb6(0x03, 0, 0, 0, 18)))
        assert Sense.parse(bytes(r.data)).code == (6, 0x29, 0x00)
        good(await h.run(cdb6(0x00)))
    run(go())


def test_resize_reports_capacity_data_has_changed_and_new_capacity():
    async def go():
        h = Harness()
        await h.ready(N1, N2)
        h.backend.image.resize((BLOCKS + 2048) * BS)
        for nexus in (N1, N2):
            assert check(await h.run(cdb6(0x00), nexus=nexus)).code == (6, 0x2A, 0x09)
        r = good(await h.run(bytes((0x25,)) + bytes(9)))
        assert struct.unpack(">II", r.data) == (BLOCKS + 2047, BS)
    run(go())


def test_lun_reset_aborts_tasks_and_raises_unit_attention_on_every_nexus():
    """SAM-5 6.3.1: BUS DEVICE RESET FUNCTION OCCURRED for every I_T nexus, the one that
    sent the reset included (libiscsi's MultipathIO.Reset checks each path)."""
    async def go():
        h = Harness()
        await h.ready(N1, N2)
        h.backend.gate = asyncio.Event()
        pending = asyncio.create_task(h.run(rw10(0x28, 0, 1), nexus=N2, tag=7))
        await asyncio.sleep(0.01)
        h.disk.lun_reset(N1)
        h.backend.gate.set()
        assert (await pending).status == Status.TASK_ABORTED
        for nexus in (N1, N2):
            assert check(await h.run(cdb6(0x00), nexus=nexus)).code == (6, 0x29, 0x03)
            good(await h.run(cdb6(0x00), nexus=nexus))
    run(go())


def test_alua_state_change_raises_asymmetric_access_state_changed():
    async def go():
        h = Harness(alua=implicit_model(1, {1: (1,), 2: (2,)}))
        await h.ready()
        h.disk.set_alua(implicit_model(2, {1: (1,), 2: (2,)}))
        assert check(await h.run(cdb6(0x00))).code == (6, 0x2A, 0x06)
    run(go())


# -- LUN table -----------------------------------------------------------------------------------
def test_unmapped_lun_inquiry_answers_qualifier_3_type_1f():
    async def go():
        h = Harness()
        r = good(await h.run(inquiry(), lun=5))
        assert r.data[0] == 0x7F and len(r.data) == 36
    run(go())


def test_unmapped_lun_other_commands_get_logical_unit_not_supported():
    async def go():
        h = Harness()
        for cdb in (cdb6(0x00), rw10(0x28, 0, 1), inquiry(0x80)):
            assert check(await h.run(cdb, lun=3)).code == (5, 0x25, 0x00)
        r = good(await h.run(cdb6(0x03, 0, 0, 0, 18), lun=3))
        assert Sense.parse(bytes(r.data)).code == (5, 0x25, 0x00)
    run(go())


def test_report_luns_lists_the_nexus_mapping_on_any_lun():
    async def go():
        h = Harness()
        other = ScsiDisk(DiskConfig(wwn="other"), MemoryBackend(1 << 20))
        h.table.set_luns({0: h.disk, 300: other})
        for lun in (0, 9):
            r = good(await h.run(report_luns(), lun=lun))
            assert bytes(r.data) == struct.pack(">II", 16, 0) + bytes(8) + bytes((0x41, 0x2C)) + bytes(6)
        assert check(await h.run(report_luns(select=0x10))).code == (5, 0x24, 0x00)
        assert check(await h.run(report_luns(alloc=2))).code == (5, 0x24, 0x00)
        r = good(await h.run(report_luns(select=0x01)))
        assert bytes(r.data) == bytes(8)
    run(go())


def test_changing_the_mapping_raises_reported_luns_data_has_changed_once():
    async def go():
        h = Harness()
        await h.ready()
        other = ScsiDisk(DiskConfig(wwn="other"), MemoryBackend(1 << 20))
        h.table.set_luns({0: h.disk, 1: other})
        good(await h.run(inquiry()))  # exempt, does not clear it
        assert check(await h.run(cdb6(0x00))).code == (6, 0x3F, 0x0E)
        good(await h.run(cdb6(0x00)))
    run(go())


def test_lun_table_nexus_lost_reaches_every_logical_unit():
    async def go():
        h = Harness()
        await h.ready()
        good(await h.run(cdb6(0x16)))  # RESERVE(6)
        h.table.nexus_lost(N1)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await h.ready(N2)
        good(await h.run(rw10(0x28, 0, 1), nexus=N2))
    run(go())


# -- REPORT SUPPORTED OPERATION CODES is the dispatch table ------------------------------------
def _descriptors(data: bytes) -> list[tuple[int, int, bool, int]]:
    out, pos = [], 4
    while pos < len(data):
        op, sa, flags, cdb_len = data[pos], struct.unpack_from(">H", data, pos + 2)[0], data[pos + 5], \
            struct.unpack_from(">H", data, pos + 6)[0]
        out.append((op, sa, bool(flags & 1), cdb_len))
        pos += 8 + (12 if flags & 2 else 0)
    return out


def test_every_reported_opcode_is_dispatched_and_every_other_is_refused():
    async def go():
        h = Harness()
        await h.ready()
        listed = _descriptors(bytes(good(await h.run(maint_in(0x0C))).data))
        plain = {op for op, _sa, has_sa, _n in listed if not has_sa}
        with_sa = {op for op, _sa, has_sa, _n in listed if has_sa}
        for op in range(256):
            r = await h.run(bytes((op, 0)) + bytes(14))
            invalid = r.status == Status.CHECK_CONDITION and Sense.parse(r.sense).code == (5, 0x20, 0)
            assert invalid == (op not in plain and op not in with_sa), hex(op)
        for op, sa, has_sa, cdb_len in listed:
            option = 2 if has_sa else 1
            one = good(await h.run(maint_in(0x0C, b2=option, b3=op, b45=sa)))
            assert one.data[1] & 0x07 == 3 and one.data[4] == op
            assert struct.unpack_from(">H", one.data, 2)[0] == cdb_len
    run(go())


def test_usage_data_bits_are_accepted_and_others_rejected_with_pointer():
    async def go():
        h = Harness()
        await h.ready()
        one = good(await h.run(maint_in(0x0C, b2=1, b3=0x2A)))
        usage = bytes(one.data[4:14])
        assert usage[1] == 0x1A  # DPO, FUA, FUA_NV
        s = check(await h.run(rw10(0x2A, 0, 1, b1=0x80), A))
        assert (s.field, s.bit) == (1, 7)
    run(go())


def test_reporting_timeouts_uses_osd_op_timeout():
    async def go():
        h = Harness(osd_op_timeout=17)
        await h.ready()
        data = bytes(good(await h.run(maint_in(0x0C, b2=0x80))).data)
        assert struct.unpack_from(">I", data, 4 + 8 + 8)[0] == 17
    run(go())


# -- task management --------------------------------------------------------------------------------
def test_abort_task_turns_the_running_command_into_task_aborted():
    async def go():
        h = Harness()
        await h.ready()
        h.backend.gate = asyncio.Event()
        t = asyncio.create_task(h.run(rw10(0x2A, 0, 1), A, tag=42))
        await asyncio.sleep(0.01)
        assert h.disk.abort_task(N1, 42) is True
        assert h.disk.abort_task(N1, 43) is False
        h.backend.gate.set()
        assert (await t).status == Status.TASK_ABORTED
        assert h.disk.abort_task(N1, 42) is False
        assert h.disk.stats.aborted == 1
    run(go())


def test_abort_task_set_only_touches_its_nexus():
    async def go():
        h = Harness()
        await h.ready(N1, N2)
        h.backend.gate = asyncio.Event()
        t1 = [asyncio.create_task(h.run(rw10(0x28, i, 1), tag=i)) for i in range(3)]
        t2 = asyncio.create_task(h.run(rw10(0x28, 0, 1), nexus=N2, tag=1))
        await asyncio.sleep(0.01)
        assert h.disk.abort_task_set(N1) == 3
        h.backend.gate.set()
        assert [(await t).status for t in t1] == [Status.TASK_ABORTED] * 3
        assert (await t2).status == Status.GOOD
    run(go())


def test_reused_task_tag_is_an_overlapped_command():
    async def go():
        h = Harness()
        await h.ready()
        h.backend.gate = asyncio.Event()
        t = asyncio.create_task(h.run(rw10(0x28, 0, 1), tag=5))
        await asyncio.sleep(0.01)
        assert check(await h.run(rw10(0x28, 0, 1), tag=5)).code == (0xB, 0x4E, 0x00)
        h.backend.gate.set()
        good(await t)
    run(go())


# -- data area (max_data_area_mb / qfull_timeout) ----------------------------------------------------
def test_full_data_area_answers_task_set_full_when_qfull_timeout_is_zero():
    async def go():
        h = Harness(max_data_area_mb=1, qfull_timeout=0)
        await h.ready()
        h.backend.gate = asyncio.Event()
        first = asyncio.create_task(h.run(rw10(0x28, 0, 1024), tag=1))  # 512 KiB
        second = asyncio.create_task(h.run(rw10(0x28, 0, 1024), tag=2))
        await asyncio.sleep(0.01)
        third = await h.run(rw10(0x28, 0, 8), tag=3)
        assert third.status == Status.TASK_SET_FULL
        h.backend.gate.set()
        good(await first)
        good(await second)
        assert h.disk.stats.task_set_full == 1
    run(go())


def test_command_waits_for_data_area_space_within_qfull_timeout():
    async def go():
        h = Harness(max_data_area_mb=1, qfull_timeout=5)
        await h.ready()
        h.backend.gate = asyncio.Event()
        first = asyncio.create_task(h.run(rw10(0x28, 0, 1024), tag=1))
        second = asyncio.create_task(h.run(rw10(0x28, 1024, 1024), tag=2))  # the 1 MiB area is full
        await asyncio.sleep(0.01)
        waiting = asyncio.create_task(h.run(rw10(0x28, 0, 8), tag=3))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        h.backend.gate.set()
        good(await first)
        good(await second)
        good(await waiting)
    run(go())


# -- backend errors -------------------------------------------------------------------------------------
def test_backend_errors_map_to_medium_error_and_space_allocation_failed():
    async def go():
        h = Harness()
        await h.ready()
        h.backend.fail["read"] = errno.EIO
        assert check(await h.run(rw10(0x28, 0, 1))).code == (3, 0x11, 0x00)
        h.backend.fail["write"] = errno.EIO
        assert check(await h.run(rw10(0x2A, 0, 1), A)).code == (3, 0x0C, 0x00)
        h.backend.fail["write"] = errno.ENOSPC
        assert check(await h.run(rw10(0x2A, 0, 1), A)).code == (7, 0x27, 0x07)
        h.backend.fail["flush"] = errno.EINVAL
        assert check(await h.run(rw10(0x35, 0, 0))).code == (4, 0x44, 0x00)
    run(go())


def test_backend_timeout_answers_busy_and_counts_it():
    async def go():
        h = Harness()
        await h.ready()

        async def slow_read(offset, length):
            raise BackendTimeout("read", 30)
        h.backend.read = slow_read
        assert (await h.run(rw10(0x28, 0, 1))).status == Status.BUSY
        assert h.disk.stats.timeouts == 1
    run(go())


def test_zero_length_transfers_never_reach_the_backend():
    async def go():
        h = Harness()
        await h.ready()
        h.backend.ops.clear()
        for cdb, data in ((rw10(0x28, 0, 0), None), (rw10(0x2A, 0, 0), None), (rw10(0x2A, 0, 1), b""),
                          (rw10(0x2F, 0, 0, b1=2), None), (rw10(0x2E, 0, 0), None)):
            good(await h.run(cdb, data))
        assert all(length > 0 for _op, _off, length in h.backend.ops if _op != "flush")
        assert h.backend.ops == []
    run(go())


# -- read-only, ALUA access states ----------------------------------------------------------------------
def test_read_only_disk_refuses_writes_with_write_protected_and_reports_wp():
    async def go():
        h = Harness(read_only=True)
        await h.ready()
        for cdb, data in ((rw10(0x2A, 0, 1), A), (rw10(0x41, 0, 1), A), (bytes((0x89,)) + bytes(12)
                          + bytes((1, 0, 0)), A + A)):
            assert check(await h.run(cdb, data)).code == (7, 0x27, 0x00)
        good(await h.run(rw10(0x28, 0, 1)))
        assert good(await h.run(mode_sense6(0x3F))).data[2] & 0x80
    run(go())


def test_standby_port_group_refuses_media_access_but_answers_inquiry_and_rtpg():
    async def go():
        model = AluaModel((TargetPortGroup(1, AccessState.ACTIVE_OPTIMIZED, (1,)),
                           TargetPortGroup(2, AccessState.STANDBY, (2,))))
        h = Harness(alua=model)
        n_standby = Nexus(N1.initiator_name, N1.initiator_port, N1.target_name, "tp,t,0x2", 2, 2)
        await h.ready(N1)
        good(await h.run(cdb6(0x03, 0, 0, 0, 18), nexus=n_standby))  # clears its power-on UA
        assert check(await h.run(cdb6(0x00), nexus=n_standby)).code == (2, 0x04, 0x0B)
        assert check(await h.run(rw10(0x28, 0, 1), nexus=n_standby)).code == (2, 0x04, 0x0B)
        good(await h.run(rw10(0x28, 0, 1), nexus=N1))
        good(await h.run(inquiry(0x83), nexus=n_standby))
        r1 = good(await h.run(maint_in(0x0A), nexus=N1))
        r2 = good(await h.run(maint_in(0x0A), nexus=n_standby))
        assert bytes(r1.data) == bytes(r2.data)
    run(go())


def test_rtpg_and_vpd83_describe_the_ceph_iscsi_layout():
    async def go():
        h = Harness(alua=implicit_model(2, {1: (1,), 2: (2,), 3: (3,)}, transition_time=45))
        await h.ready()
        data = bytes(good(await h.run(maint_in(0x0A, b1_high=0x20))).data)
        assert data[4] == 0x10 and data[5] == 45
        groups = [(data[p] & 0x0F, struct.unpack_from(">H", data, p + 2)[0],
                   struct.unpack_from(">H", data, p + 10)[0]) for p in range(8, len(data), 12)]
        assert groups == [(1, 1, 1), (0, 2, 2), (1, 3, 3)]  # ANO, AO (owner), ANO
        assert good(await h.run(inquiry())).data[5] & 0x30 == 0x10  # TPGS: implicit
        vpd = bytes(good(await h.run(inquiry(0x83))).data)
        assert bytes((0x51, 0x95, 0, 4, 0, 0, 0, 1)) in vpd  # target port group 1 for relative port 1
        assert bytes((0x51, 0x94, 0, 4, 0, 0, 0, 1)) in vpd  # relative target port 1
        assert b"iqn.2003-01.com.example:gw,t,0x1\x00" in vpd
    run(go())


def test_naa_follows_lio_for_the_same_wwn():
    assert naa_from_wwn("4fc1071d-7e2f-4df0-95c8-925a6aaaaaaa").hex() == "60014054fc1071d7e2f4df095c8925a6"
    assert naa_from_wwn("ab").hex() == "6001405ab" + "0" * 23


# -- exclusive-lock failover ------------------------------------------------------------------------------
def _lock_pair():
    be1 = MemoryBackend(BLOCKS * BS, supports_lock=True)
    be2 = be1.peer()
    return Harness(backend=be1), Harness(backend=be2)


async def _until_locked(h: Harness) -> None:
    for _ in range(100):
        if h.disk.lock.state is LockState.LOCKED:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(h.disk.lock.state)


def test_first_write_on_non_owner_waits_for_the_lock_then_runs():
    async def go():
        gw1, _gw2 = _lock_pair()
        await gw1.ready()
        good(await gw1.run(rw10(0x28, 0, 1)))  # reads never take the lock
        assert gw1.disk.lock.state is LockState.UNLOCKED
        good(await gw1.run(rw10(0x2A, 0, 1), A))
        assert gw1.disk.lock.state is LockState.LOCKED
        assert gw1.disk.stats.lock_acquired == 1 and gw1.disk.stats.busy == 0
    run(go())


def test_write_is_busy_when_the_lock_does_not_arrive_within_write_wait():
    async def go():
        gw1, _gw2 = _lock_pair()
        await gw1.ready()
        release = asyncio.Event()
        real_try = gw1.backend.lock_try_acquire

        async def slow_try():
            await release.wait()
            return await real_try()
        gw1.backend.lock_try_acquire = slow_try
        gw1.disk.lock.write_wait = 0.01
        assert (await gw1.run(rw10(0x2A, 0, 1), A)).status == Status.BUSY
        assert gw1.disk.stats.busy == 1
        release.set()
        await _until_locked(gw1)
        good(await gw1.run(rw10(0x2A, 0, 1), A))
    run(go())


def test_writes_alternating_between_gateways_hand_the_lock_over_without_fencing():
    """libiscsi's MultipathIO, a round-robin path policy: every write moves the lock; the
    holder hands it over on request (its writes done), so every write succeeds at once."""
    async def go():
        gw1, gw2 = _lock_pair()
        await gw1.ready()
        await gw2.ready()
        await gw1.disk.lock.acquire()
        good(await gw1.run(rw10(0x2A, 0, 1), A))
        good(await gw2.run(rw10(0x2A, 0, 1), b"B" * BS))  # failover write: the lock moves
        assert gw2.disk.stats.lock_acquired == 1 and gw2.disk.stats.lock_handoffs_in == 1
        assert bytes(good(await gw2.run(rw10(0x28, 0, 1))).data) == b"B" * BS
        good(await gw1.run(rw10(0x2A, 0, 1), A))          # and back
        assert gw1.disk.stats.lock_lost == 1 and gw1.disk.stats.lock_acquired == 2
        assert bytes(good(await gw2.run(rw10(0x28, 0, 1))).data) == A
        good(await gw2.run(rw10(0x2A, 0, 1), b"B" * BS))
        assert gw1.disk.stats.busy == gw2.disk.stats.busy == 0
        assert gw1.backend.reopens == gw2.backend.reopens == 0
        assert not gw1.backend.image.locks.blocklisted
    run(go())


def test_lock_policy_is_off_for_a_backend_without_locks():
    h = Harness()
    assert h.disk.lock is None


def test_owner_query_and_break_are_exposed_for_the_daemon():
    async def go():
        gw1, gw2 = _lock_pair()
        await gw1.disk.lock.acquire()
        owners = await gw2.disk.lock.owners()
        assert owners == [gw1.backend.client]
        await gw2.disk.lock.break_lock(owners[0])
        assert await gw1.disk.lock.verify() is False
        assert gw1.disk.stats.lock_lost == 1
    run(go())


def test_counters_track_ops_bytes_and_latency_buckets():
    async def go():
        h = Harness()
        await h.ready()
        good(await h.run(rw10(0x2A, 0, 2), A + A))
        good(await h.run(rw10(0x28, 0, 1)))
        s = h.disk.stats
        assert (s.write_ops, s.read_ops, s.write_bytes, s.read_bytes) == (1, 1, 2 * BS, BS)
        assert s.latency_count >= 3 and s.cumulative_buckets()[-1][1] == s.latency_count
    run(go())


def test_lun_table_passes_commands_to_the_mapped_unit():
    async def go():
        disk = ScsiDisk(DiskConfig(wwn="x"), MemoryBackend(1 << 20))
        table = LunTable({2: disk})
        cmd = ScsiCommand(sa16(0x9E, 0x10), 2, N1)
        assert check(await table.execute(cmd)).code == (6, 0x29, 0)
        r = good(await table.execute(cmd))
        assert struct.unpack_from(">Q", r.data)[0] == 2047
    run(go())


def test_docs_list_every_dispatched_command():
    from pathlib import Path
    doc = (Path(__file__).parents[2] / "docs" / "scsi.md").read_text()
    h = Harness(alua=AluaModel(explicit=True, stpg=lambda req: None))
    names = {s.name for s in h.disk.table.specs}
    assert "SET TARGET PORT GROUPS" in names
    for name in names:
        assert name in doc, name


def test_set_target_port_groups_goes_to_the_gateway_in_explicit_mode():
    async def go():
        requests = []

        async def stpg(req):
            requests.append(req)
            return AluaModel((TargetPortGroup(1, req[1], (1,)),
                              TargetPortGroup(2, AccessState.STANDBY, (2,))),
                             implicit=True, explicit=True, stpg=stpg)
        model = AluaModel((TargetPortGroup(1, AccessState.STANDBY, (1,)),
                           TargetPortGroup(2, AccessState.ACTIVE_OPTIMIZED, (2,))),
                          implicit=True, explicit=True, stpg=stpg)
        h = Harness(alua=model)
        good(await h.run(cdb6(0x03, 0, 0, 0, 18)))
        assert good(await h.run(inquiry())).data[5] & 0x30 == 0x30  # TPGS: implicit and explicit
        cdb = struct.pack(">BBxxxxIBB", 0xA4, 0x0A, 8, 0, 0)
        good(await h.run(cdb, bytes(4) + bytes((0x00, 0, 0, 1))))
        assert requests == [{1: AccessState.ACTIVE_OPTIMIZED}]
        assert check(await h.run(cdb6(0x00))).code == (6, 0x2A, 0x06)
        s = check(await h.run(cdb, bytes(4) + bytes((0x00, 0, 0, 9))))
        assert s.code == (5, 0x26, 0) and s.field == 6 and not s.in_cdb
    run(go())


def test_an_unexpected_error_in_a_handler_costs_one_command_not_the_device():
    async def go():
        h = Harness()
        await h.ready()

        async def broken(offset, length):
            raise ValueError("bug")
        h.backend.read = broken
        assert check(await h.run(rw10(0x28, 0, 1))).code == (4, 0x44, 0x00)
        good(await h.run(cdb6(0x00)))
    run(go())


def test_arbitrary_cdbs_get_an_answer_never_an_exception():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    h = Harness(blocks=256)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(h.ready())
    valid = {Status.GOOD, Status.CHECK_CONDITION, Status.RESERVATION_CONFLICT, Status.BUSY}

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(op=st.sampled_from(sorted({s.opcode for s in h.disk.table.specs}) + [0x04, 0x7F, 0xFF]),
           rest=st.binary(min_size=0, max_size=15), data=st.one_of(st.none(), st.binary(max_size=2048)))
    def check_one(op, rest, data):
        cdb = bytes((op,)) + rest
        if op in (0x16, 0x56, 0x5F):  # reservations would only make later examples conflict
            cdb = bytes((op,))
        r = loop.run_until_complete(asyncio.wait_for(h.run(cdb, data), 5))
        assert r.status in valid
        if r.status == Status.CHECK_CONDITION:
            assert r.sense[0] == 0x70 and r.sense[7] == 10
    try:
        check_one()
        assert loop.run_until_complete(h.run(cdb6(0x00))).status in valid
    finally:
        loop.close()


def test_a_fenced_gateway_reconnects_so_reads_work_again_without_taking_the_lock():
    async def go():
        gw1, gw2 = _lock_pair()
        await gw1.ready()
        await gw2.ready()
        await gw1.disk.lock.acquire()
        gw1.backend.unresponsive = True  # frozen: the takeover fences it
        gw2.disk.lock.handoff_timeout = 0.01
        await gw2.disk.lock.acquire()
        assert gw1.backend.client in gw1.backend.image.locks.blocklisted
        good(await gw1.run(rw10(0x28, 0, 1)))  # fails once inside, reconnects, reads again
        assert gw1.backend.reopens == 1 and gw1.disk.stats.busy == 0
        assert gw1.disk.lock.state is not LockState.LOCKED
        assert await gw2.disk.lock.verify()  # the read did not move the lock
    run(go())


# -- transfer and WRITE SAME limits on a disk with RBD's object size ------------------------------------
def _rbd_sized(blocks: int, **config) -> Harness:
    return Harness(backend=MemoryBackend(blocks * BS, granularity=4096, object_size=4 << 20), **config)


def test_transfers_beyond_hw_max_sectors_run_up_to_the_data_area():
    """VPD B0 advertises hw_max_sectors; like LIO with TCMU, a larger READ/WRITE still runs
    while it fits the data area (max_data_area_mb), and only a larger one is refused."""
    async def go():
        h = _rbd_sized(4096, hw_max_sectors=256, max_data_area_mb=1)  # 128 KiB advertised, 1 MiB area
        await h.ready()
        b0 = good(await h.run(inquiry(0xB0))).data
        assert struct.unpack_from(">II", b0, 8) == (256, 256)
        payload = bytes(range(256)) * (2048 * BS // 256)
        good(await h.run(struct.pack(">BBQIBB", 0x8A, 0, 0, 2048, 0, 0), payload))
        assert bytes(good(await h.run(struct.pack(">BBQIBB", 0x88, 0, 0, 2048, 0, 0))).data) == payload
        for op in (0x88, 0x8A):
            r = await h.run(struct.pack(">BBQIBB", op, 0, 0, 2049, 0, 0), payload + A if op == 0x8A else None)
            s = check(r)
            assert s.code == (5, 0x24, 0) and (s.field, s.bit) == (10, None)
    run(go())


def test_write_same_length_is_65535_blocks_and_zero_means_to_the_last_lba():
    async def go():
        h = _rbd_sized(70000)
        await h.ready()
        b0 = good(await h.run(inquiry(0xB0))).data
        assert struct.unpack_from(">Q", b0, 36)[0] == 0xFFFF and not b0[4] & 1  # WSNZ=0
        r = await h.run(struct.pack(">BBQIBB", 0x93, 0x08, 0, 0x10000, 0, 0), bytes(BS))
        assert check(r).code == (5, 0x24, 0)
        good(await h.run(struct.pack(">BBQIBB", 0x93, 0x08, 0, 0xFFFF, 0, 0), bytes(BS)))
        # zero blocks: from the LBA to the end, refused while that is more than 65535 blocks
        assert check(await h.run(struct.pack(">BBQIBB", 0x93, 0, 0, 0, 0, 0), A)).code == (5, 0x24, 0)
        good(await h.run(struct.pack(">BBQIBB", 0x93, 0, 70000 - 3, 0, 0, 0), A))
        assert bytes(good(await h.run(rw10(0x28, 70000 - 4, 4))).data) == bytes(BS) + A * 3
        r = await h.run(struct.pack(">BBQIBB", 0x93, 0, 70000, 0, 0, 0), A)
        assert check(r).code == (5, 0x21, 0)
    run(go())


def test_physical_block_size_is_reported_as_lbppbe():
    async def go():
        for pbs, exponent in ((None, 0), (4096, 3)):
            h = Harness(physical_block_size=pbs)
            await h.ready()
            r = good(await h.run(sa16(0x9E, 0x10)))
            assert r.data[13] & 0x0F == exponent and r.data[14] & 0xC0 == 0xC0
    run(go())


def test_physical_block_size_must_be_a_power_of_two_not_below_the_block_size():
    import pytest
    for bad in (256, 3000, 1 << 17):
        with pytest.raises(ValueError):
            DiskConfig(wwn="x", physical_block_size=bad)
