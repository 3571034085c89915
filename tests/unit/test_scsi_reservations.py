"""SPC-3 persistent reservations and SPC-2 RESERVE/RELEASE, as libiscsi's
Prin*/Prout*/Reserve6 suites exercise them, plus the multi-gateway view (two
disks sharing one reservation store = one image exported by two gateways)."""

from __future__ import annotations

import asyncio
import struct

import pytest
from scsi_support import (
    BS,
    N1,
    N1_GW2,
    N2,
    Harness,
    cdb6,
    check,
    good,
    mode_sense6,
    pr_in,
    pr_out,
    pr_params,
    run,
    rw10,
)

from tcmu_handler import prstate as P
from tcmu_handler.api import Nexus, Status
from tcmu_handler.prstore import MemoryReservationStore

A = b"A" * BS
REGISTER, RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT_ABORT, REG_IGNORE = range(7)
TYPES = {"WE": P.WE, "EA": P.EA, "WERO": P.WERO, "EARO": P.EARO, "WEAR": P.WEAR, "EAAR": P.EAAR}


async def prout(h, nexus, sa, rtype=0, key=0, sark=0, flags=0):
    return await h.run(pr_out(sa, rtype), pr_params(key, sark, flags), nexus=nexus)


async def keys(h, nexus=N1) -> tuple[int, list[int]]:
    d = bytes(good(await h.run(pr_in(0), nexus=nexus)).data)
    gen, n = struct.unpack_from(">II", d)
    return gen, [struct.unpack_from(">Q", d, 8 + 8 * i)[0] for i in range(n // 8)]


async def reservation(h, nexus=N1) -> tuple[int, int] | None:
    d = bytes(good(await h.run(pr_in(1), nexus=nexus)).data)
    if struct.unpack_from(">I", d, 4)[0] == 0:
        return None
    return struct.unpack_from(">Q", d, 8)[0], d[21] & 0x0F


async def setup_two() -> Harness:
    h = Harness()
    await h.ready(N1, N2)
    return h


# libiscsi ProutReserve.Access*: (registered i2 read, write, unregistered i2 read, write)
ACCESS = {"EA": (0, 0, 0, 0), "WE": (1, 0, 1, 0), "EARO": (1, 1, 0, 0), "WERO": (1, 1, 1, 0),
          "EAAR": (1, 1, 0, 0), "WEAR": (1, 1, 1, 0)}


@pytest.mark.parametrize("name", ACCESS)
def test_reservation_type_access_matrix(name):
    async def go():
        h = await setup_two()
        rtype = TYPES[name]
        good(await prout(h, N1, REG_IGNORE, sark=0x1111))
        good(await prout(h, N2, REG_IGNORE, sark=0x2222))
        good(await prout(h, N1, RESERVE, rtype, key=0x1111))
        key = 0 if rtype in P.ALL_REGISTRANTS else 0x1111
        assert await reservation(h) == (key, rtype)
        good(await h.run(rw10(0x28, 1, 1), nexus=N1))
        good(await h.run(rw10(0x2A, 1, 1), A, nexus=N1))

        async def allowed(cdb, data=None):
            r = await h.run(cdb, data, nexus=N2)
            assert r.status in (Status.GOOD, Status.RESERVATION_CONFLICT)
            return r.status == Status.GOOD
        reg_read, reg_write, unreg_read, unreg_write = ACCESS[name]
        assert await allowed(rw10(0x28, 1, 1)) == bool(reg_read)
        assert await allowed(rw10(0x2A, 1, 1), A) == bool(reg_write)
        good(await prout(h, N2, REGISTER, key=0x2222))  # unregister i2
        assert await allowed(rw10(0x28, 1, 1)) == bool(unreg_read)
        assert await allowed(rw10(0x2A, 1, 1), A) == bool(unreg_write)
        good(await h.run(cdb6(0x00), nexus=N2))  # TEST UNIT READY is always allowed
        good(await prout(h, N1, RELEASE, rtype, key=0x1111))
        assert await reservation(h) is None
        good(await h.run(rw10(0x2A, 1, 1), A, nexus=N2))
    run(go())


@pytest.mark.parametrize("name,shared", [("EA", False), ("WE", False), ("EARO", False), ("WERO", False),
                                         ("EAAR", True), ("WEAR", True)])
def test_unregistering_the_holder_releases_unless_all_registrants(name, shared):
    async def go():
        h = await setup_two()
        rtype = TYPES[name]
        good(await prout(h, N1, REG_IGNORE, sark=1))
        good(await prout(h, N2, REG_IGNORE, sark=2))
        good(await prout(h, N1, RESERVE, rtype, key=1))
        good(await prout(h, N1, REGISTER, key=1))  # unregister the holder
        if shared:
            assert await reservation(h) == (0, rtype)
            good(await prout(h, N2, RELEASE, rtype, key=2))
        assert await reservation(h) is None
    run(go())


def test_register_twice_with_wrong_key_conflicts_and_unregister_removes_key():
    async def go():
        h = await setup_two()
        good(await prout(h, N1, REG_IGNORE, sark=0xABC))
        assert (await keys(h))[1] == [0xABC]
        assert (await prout(h, N1, REGISTER, key=0, sark=0xABD)).status == Status.RESERVATION_CONFLICT
        good(await prout(h, N1, REGISTER, key=0xABC, sark=0))
        assert (await keys(h))[1] == []
    run(go())


def test_read_keys_truncated_keeps_additional_length():
    async def go():
        h = await setup_two()
        good(await prout(h, N1, REG_IGNORE, sark=7))
        d = bytes(good(await h.run(pr_in(0, alloc=8))).data)
        assert len(d) == 8 and struct.unpack_from(">I", d, 4)[0] == 8
    run(go())


def test_prin_service_actions_0_to_3_work_and_others_are_invalid():
    async def go():
        h = await setup_two()
        for sa in range(4):
            good(await h.run(pr_in(sa)))
        for sa in range(4, 0x20):
            assert check(await h.run(pr_in(sa))).code == (5, 0x24, 0)
    run(go())


def test_report_capabilities_claims_all_six_types():
    async def go():
        h = await setup_two()
        d = bytes(good(await h.run(pr_in(2))).data)
        assert struct.unpack(">HBBHH", d) == (8, 0x15, 0x80, 0xEA01, 0)
    run(go())


def test_clear_removes_everything_bumps_generation_once_and_tells_other_registrants():
    async def go():
        h = await setup_two()
        good(await prout(h, N1, REG_IGNORE, sark=1))
        good(await prout(h, N2, REG_IGNORE, sark=2))
        gen, _ = await keys(h)
        good(await prout(h, N1, RESERVE, P.EA, key=1))
        good(await prout(h, N1, CLEAR, key=1))
        assert await reservation(h) is None
        assert await keys(h) == (gen + 1, [])
        assert check(await h.run(cdb6(0x00), nexus=N2)).code == (6, 0x2A, 0x03)
        good(await h.run(cdb6(0x00), nexus=N1))
    run(go())


def test_preempt_removes_the_other_registration_and_raises_registrations_preempted():
    async def go():
        h = await setup_two()
        good(await prout(h, N1, REG_IGNORE, sark=1))
        good(await prout(h, N2, REG_IGNORE, sark=2))
        gen, ks = await keys(h)
        assert sorted(ks) == [1, 2]
        good(await prout(h, N2, PREEMPT, P.EA, key=2, sark=1))
        assert await keys(h, N2) == (gen + 1, [2])
        assert check(await h.run(cdb6(0x00), nexus=N1)).code == (6, 0x2A, 0x05)
        assert (await prout(h, N2, PREEMPT, P.EA, key=2, sark=9)).status == Status.RESERVATION_CONFLICT
    run(go())


def test_preempt_the_holder_takes_over_the_reservation():
    async def go():
        h = await setup_two()
        good(await prout(h, N1, REG_IGNORE, sark=1))
        good(await prout(h, N2, REG_IGNORE, sark=2))
        good(await prout(h, N1, RESERVE, P.WE, key=1))
        good(await prout(h, N2, PREEMPT, P.EA, key=2, sark=1))
        assert await reservation(h, N2) == (2, P.EA)
        assert check(await h.run(rw10(0x28, 0, 1), nexus=N1)).code == (6, 0x2A, 0x05)
        assert (await h.run(rw10(0x28, 0, 1), nexus=N1)).status == Status.RESERVATION_CONFLICT
    run(go())


def test_preempt_and_abort_aborts_the_preempted_nexus_tasks():
    async def go():
        h = await setup_two()
        good(await prout(h, N1, REG_IGNORE, sark=1))
        good(await prout(h, N2, REG_IGNORE, sark=2))
        good(await prout(h, N1, RESERVE, P.WE, key=1))
        h.backend.gate = asyncio.Event()
        running = asyncio.create_task(h.run(rw10(0x2A, 0, 1), A, nexus=N1, tag=9))
        await asyncio.sleep(0.01)
        h.backend.gate.set()
        good(await prout(h, N2, PREEMPT_ABORT, P.WE, key=2, sark=1))
        assert (await running).status == Status.TASK_ABORTED
    run(go())


def test_prout_rejections():
    async def go():
        h = await setup_two()
        assert check(await h.run(pr_out(REGISTER, plen=23), pr_params(sark=1)[:23])).code == (5, 0x1A, 0)
        s = check(await prout(h, N1, REGISTER, sark=1, flags=0x08))  # SPEC_I_PT
        assert s.code == (5, 0x26, 0) and (s.field, s.bit, s.in_cdb) == (20, 3, False)
        good(await prout(h, N1, REG_IGNORE, sark=1))
        s = check(await h.run(pr_out(RESERVE, 0x2), pr_params(key=1)))  # type 2 is obsolete
        assert s.code == (5, 0x24, 0) and s.field == 2
        s = check(await h.run(pr_out(RESERVE, P.WE, scope=1), pr_params(key=1)))
        assert s.code == (5, 0x24, 0) and s.field == 2
        assert check(await h.run(pr_out(7), pr_params(key=1))).code == (5, 0x24, 0)  # REGISTER AND MOVE
        good(await prout(h, N1, RESERVE, P.WE, key=1))
        assert check(await prout(h, N1, RELEASE, P.EA, key=1)).code == (5, 0x26, 0x04)
        assert (await prout(h, N2, RESERVE, P.WE, key=0)).status == Status.RESERVATION_CONFLICT
    run(go())


def test_all_target_ports_registration_covers_other_gateways_ports():
    async def go():
        h = await setup_two()
        await h.ready(N1_GW2)
        good(await prout(h, N1, REG_IGNORE, sark=5, flags=0x04))
        good(await prout(h, N1_GW2, RESERVE, P.EA, key=5))
        good(await h.run(rw10(0x28, 0, 1), nexus=N1))
        full = bytes(good(await h.run(pr_in(3))).data)
        assert full[8 + 12] == 0x03  # ALL_TG_PT and R_HOLDER
        assert b"iscsi-test,i,0x23d000000001\x00" in full
    run(go())


# -- SPC-2 RESERVE/RELEASE (libiscsi Reserve6.*) -----------------------------------------------------
def test_reserve6_two_initiators():
    async def go():
        h = await setup_two()
        good(await h.run(cdb6(0x16), nexus=N1))
        good(await h.run(cdb6(0x16), nexus=N1))
        assert (await h.run(cdb6(0x16), nexus=N2)).status == Status.RESERVATION_CONFLICT
        good(await h.run(cdb6(0x17), nexus=N2))  # release by a non-holder: GOOD, no effect
        good(await h.run(mode_sense6(0x3F), nexus=N1))
        assert (await h.run(mode_sense6(0x3F), nexus=N2)).status == Status.RESERVATION_CONFLICT
        good(await h.run(bytes((0x12, 0, 0, 0, 36, 0)), nexus=N2))  # INQUIRY is allowed
        good(await h.run(cdb6(0x17), nexus=N1))
        good(await h.run(cdb6(0x16), nexus=N2))
        good(await h.run(bytes((0x57,)) + bytes(9), nexus=N2))
    run(go())


@pytest.mark.parametrize("how", ["lun_reset", "nexus_lost"])
def test_reserve6_is_released_by_lun_reset_and_nexus_loss(how):
    async def go():
        h = await setup_two()
        good(await h.run(cdb6(0x16), nexus=N1))
        getattr(h.disk, how)(N1)
        for _ in range(3):
            await asyncio.sleep(0)
        r = await h.run(cdb6(0x16), nexus=N2)
        if how == "lun_reset":
            assert check(r).code == (6, 0x29, 0x03)
            r = await h.run(cdb6(0x16), nexus=N2)
        good(r)
    run(go())


def test_persistent_registration_blocks_reserve6():
    async def go():
        h = await setup_two()
        good(await prout(h, N2, REG_IGNORE, sark=3))
        assert (await h.run(cdb6(0x16), nexus=N1)).status == Status.RESERVATION_CONFLICT
    run(go())


# -- one image, two gateways -----------------------------------------------------------------------------
def test_reservation_taken_through_one_gateway_is_enforced_by_the_other():
    async def go():
        store = MemoryReservationStore()
        gw1 = Harness(store=store)
        gw2 = Harness(store=store, backend=gw1.backend.peer())
        n2_gw2 = Nexus(N2.initiator_name, N2.initiator_port, N2.target_name, "gw,t,0x2", 2, 2)
        await gw1.ready(N1)
        await gw2.ready(n2_gw2)
        good(await prout(gw1, N1, REG_IGNORE, sark=1))
        good(await prout(gw2, n2_gw2, REG_IGNORE, sark=2))
        good(await prout(gw1, N1, RESERVE, P.WEAR, key=1))
        good(await gw2.run(rw10(0x2A, 0, 1), A, nexus=n2_gw2))  # registered: allowed
        good(await prout(gw1, N1, PREEMPT, P.WEAR, key=1, sark=2))
        # the preempted nexus is served by gw2: it gets the unit attention there
        assert check(await gw2.run(cdb6(0x00), nexus=n2_gw2)).code == (6, 0x2A, 0x05)
        assert (await gw2.run(rw10(0x2A, 0, 1), A, nexus=n2_gw2)).status == Status.RESERVATION_CONFLICT
        good(await gw2.run(rw10(0x28, 0, 1), nexus=n2_gw2))  # write exclusive: reads allowed
        assert (await keys(gw2, n2_gw2))[1] == [1]
    run(go())


def test_reserve6_is_cluster_wide():
    async def go():
        store = MemoryReservationStore()
        gw1 = Harness(store=store)
        gw2 = Harness(store=store, backend=gw1.backend.peer())
        await gw1.ready(N1)
        await gw2.ready(N2)
        good(await gw1.run(cdb6(0x16), nexus=N1))
        assert (await gw2.run(rw10(0x28, 0, 1), nexus=N2)).status == Status.RESERVATION_CONFLICT
        good(await gw1.run(cdb6(0x17), nexus=N1))
        good(await gw2.run(rw10(0x28, 0, 1), nexus=N2))
    run(go())


# -- the state itself -------------------------------------------------------------------------------------
def test_state_round_trips_through_json():
    st = P.ReservationState()
    P.register(st, ("i1", "t1"), 1, 0, 5, False, False, True)
    P.register(st, ("i2", "t2"), 2, 0, 6, False, True, False)
    P.reserve(st, ("i1", "t1"), 5, P.WERO)
    P.preempt(st, ("i1", "t1"), 5, 6, P.WERO, True)
    st.spc2 = None
    again = P.ReservationState.from_json(st.to_json())
    assert again == st and again.events[-1].abort


def test_generation_wraps_at_32_bits():
    st = P.ReservationState(generation=0xFFFFFFFF)
    P.register(st, ("i", "t"), 1, 0, 1, True, False, False)
    assert st.generation == 0


def test_memory_store_update_is_atomic_and_notifies_only_on_change():
    async def go():
        store = MemoryReservationStore()
        seen = []
        store.subscribe(seen.append)
        await store.update(lambda st: None)
        assert seen == []
        with pytest.raises(P.ReservationConflict):
            await store.update(lambda st: P.reserve(st, ("i", "t"), 1, P.WE))
        state, _ = await store.update(lambda st: P.register(st, ("i", "t"), 1, 0, 1, True, False, False))
        assert [s.seq for s in seen] == [1] and state.seq == 1
    run(go())


def test_unreachable_reservation_store_answers_busy():
    from tcmu_handler.prstore import StoreError

    class DownStore(MemoryReservationStore):
        async def update(self, mutate):
            raise StoreError("no answer from RADOS")

    async def go():
        h = Harness(store=DownStore())
        await h.ready()
        assert (await prout(h, N1, REG_IGNORE, sark=1)).status == Status.BUSY
        assert (await h.run(cdb6(0x16))).status == Status.BUSY
        good(await h.run(rw10(0x28, 0, 1)))
    run(go())


def test_daemon_can_release_reserve6_held_through_a_dead_gateway():
    async def go():
        h = await setup_two()
        good(await h.run(cdb6(0x16), nexus=N1))
        assert await h.disk.reservations.release_spc2_of_ports({"other,t,0x9"}) is False
        assert await h.disk.reservations.release_spc2_of_ports({N1.target_port}) is True
        good(await h.run(cdb6(0x16), nexus=N2))
    run(go())


class SlowStore(MemoryReservationStore):
    """A store whose writes take a while (a RADOS round trip, a notify to the other gateways)."""

    async def update(self, mutate):
        await asyncio.sleep(0.05)
        return await super().update(mutate)


@pytest.mark.parametrize("how", ["lun_reset", "nexus_lost"])
def test_a_release_in_flight_is_seen_by_the_very_next_command(how):
    """libiscsi's Reserve6.Logout: the initiator logs out and at once RESERVEs from another
    nexus; the release started by the nexus loss must land before that RESERVE is judged."""
    async def go():
        h = Harness(store=SlowStore())
        await h.ready(N1, N2)
        good(await h.run(cdb6(0x16), nexus=N1))
        getattr(h.disk, how)(N1)
        r = await h.run(cdb6(0x16), nexus=N2)
        if how == "lun_reset":
            assert check(r).code == (6, 0x29, 0x03)
            r = await h.run(cdb6(0x16), nexus=N2)
        good(r)
        assert not h.disk.reservations.settling
    run(go())


def test_lun_reset_through_one_gateway_reaches_the_nexuses_of_the_other():
    """SAM-5: a LOGICAL UNIT RESET aborts every task of the logical unit and raises BUS
    DEVICE RESET FUNCTION OCCURRED for every nexus -- also those on another gateway."""
    async def go():
        store = MemoryReservationStore()
        gw1 = Harness(store=store)
        gw2 = Harness(store=store, backend=gw1.backend.peer())
        await gw1.ready(N1)
        await gw2.ready(N1_GW2, N2)
        gw2.backend.gate = asyncio.Event()
        running = asyncio.create_task(gw2.run(rw10(0x28, 0, 1), nexus=N2, tag=9))
        await asyncio.sleep(0.01)
        gw1.disk.lun_reset(N1)
        await gw1.disk.reservations.settle()
        gw2.backend.gate.set()
        assert (await running).status == Status.TASK_ABORTED
        for h, nexus in ((gw1, N1), (gw2, N1_GW2), (gw2, N2)):
            assert check(await h.run(cdb6(0x00), nexus=nexus)).code == (6, 0x29, 0x03)
            good(await h.run(cdb6(0x00), nexus=nexus))  # once: the gateway that reset is not told twice
    run(go())
