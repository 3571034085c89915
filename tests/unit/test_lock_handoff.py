"""The exclusive-lock handoff between gateways, on the memory backend: two in-process
"gateways" (two disks on two client handles of one image) ask each other for the lock.

A live holder hands the lock over after its admitted writes finish, and nobody is fenced;
only a holder that does not answer is fenced; a write refused because its gateway was
fenced is BUSY, never retried; and the sessions open when a gateway found itself fenced
cannot land writes afterwards."""

from __future__ import annotations

import asyncio

from scsi_support import BLOCKS, BS, N1, N2, Harness, caw, check, good, run, rw10

from tcmu_handler.api import Status
from tcmu_handler.backends.base import BackendError
from tcmu_handler.backends.memory import MemoryBackend
from tcmu_handler.lock import LockState

A, B, C = b"A" * BS, b"B" * BS, b"C" * BS
READ1, WRITE1 = rw10(0x28, 0, 1), rw10(0x2A, 0, 1)


def pair(timeout: float = 0.05) -> tuple[Harness, Harness]:
    be1 = MemoryBackend(BLOCKS * BS, supports_lock=True)
    return (Harness(backend=be1, lock_handoff_timeout=timeout),
            Harness(backend=be1.peer(), lock_handoff_timeout=timeout))


async def ready(*gws: Harness) -> None:
    for gw in gws:
        await gw.ready(N1, N2)


async def until(predicate, what: str) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(what)


def data(gw: Harness) -> bytes:
    return bytes(gw.backend.image.data[:BS])


def test_a_write_through_a_non_holder_is_handed_the_lock_and_nobody_is_fenced():
    async def go():
        gw1, gw2 = pair()
        await ready(gw1, gw2)
        assert await gw1.disk.lock.acquire()
        good(await gw1.run(WRITE1, A))
        good(await gw2.run(WRITE1, B))  # asks gw1, which hands the lock over
        assert data(gw1) == B
        good(await gw1.run(WRITE1, C))  # and back, the same way
        assert data(gw1) == C
        locks = gw1.backend.image.locks
        assert locks.blocklisted == set() and locks.breaks == 0
        s1, s2 = gw1.disk.stats, gw2.disk.stats
        assert (s2.lock_handoffs_in, s1.lock_handoffs_out, s1.lock_handoffs_in) == (1, 1, 1)
        assert s1.lock_acquired + s1.lock_lost + s2.lock_acquired + s2.lock_lost == 5  # moves
        assert s1.busy == s2.busy == s1.lock_fenced == s2.lock_fenced == 0
    run(go())


def test_the_holder_finishes_its_admitted_writes_before_it_hands_the_lock_over():
    async def go():
        gw1, gw2 = pair()
        await ready(gw1, gw2)
        assert await gw1.disk.lock.acquire()
        gw1.backend.gate = asyncio.Event()       # gw1's write is in flight, not yet landed
        w1 = asyncio.create_task(gw1.run(WRITE1, A))
        await until(lambda: gw1.disk.lock.writers == 1, "gw1's write was not admitted")
        w2 = asyncio.create_task(gw2.run(WRITE1, B))
        await until(lambda: gw1.disk.lock.state is LockState.RELEASING, "gw1 was not asked")
        later = asyncio.create_task(gw1.run(WRITE1, C, nexus=N2))  # not admitted while releasing
        await asyncio.sleep(0.02)
        assert not w2.done() and not later.done() and gw1.disk.lock.writers == 1
        assert gw1.backend.image.locks.owner == gw1.backend.client
        gw1.backend.gate.set()
        good(await w1)
        good(await w2)
        good(await later)  # it took the lock back from gw2, cooperatively, after gw2's write
        assert data(gw1) == C
        assert gw1.backend.image.locks.breaks == 0 and gw2.disk.stats.lock_handoffs_out == 1
    run(go())


def test_a_holder_that_does_not_answer_is_fenced_after_the_handoff_timeout():
    async def go():
        gw1, gw2 = pair(timeout=0.05)
        await ready(gw1, gw2)
        assert await gw1.disk.lock.acquire()
        gw1.backend.unresponsive = True  # frozen: it never answers
        t0 = asyncio.get_running_loop().time()
        good(await gw2.run(WRITE1, B))
        assert asyncio.get_running_loop().time() - t0 >= 0.05
        locks = gw1.backend.image.locks
        assert locks.blocklisted == {gw1.backend.client} and locks.breaks == 1
        assert gw2.disk.stats.lock_breaks == 1 and gw2.disk.stats.lock_handoffs_in == 0
    run(go())


def test_a_holder_that_lets_the_lock_go_without_answering_is_not_fenced():
    """A gateway closing its disks (stopping) may miss a request, but it releases the lock:
    the asker sees it gone once its request went unanswered, and takes it without a fence."""
    async def go():
        gw1, gw2 = pair(timeout=0.05)
        await ready(gw1, gw2)
        assert await gw1.disk.lock.acquire()
        gw1.backend.unresponsive = True  # busy closing: the request goes unanswered

        async def close_meanwhile():
            await asyncio.sleep(0.02)
            await gw1.disk.close()
        closing = asyncio.create_task(close_meanwhile())
        good(await gw2.run(WRITE1, B))
        await closing
        locks = gw1.backend.image.locks
        assert locks.blocklisted == set() and locks.breaks == 0
        assert gw2.disk.stats.lock_breaks == 0 and locks.owner == gw2.backend.client
        assert data(gw2) == B
    run(go())


def test_a_write_refused_because_its_gateway_was_fenced_is_busy_and_not_retried():
    async def go():
        gw1, gw2 = pair()
        await ready(gw1, gw2)
        assert await gw1.disk.lock.acquire()
        gw1.backend.unresponsive = True
        gw1.backend.gate = asyncio.Event()
        stale = asyncio.create_task(gw1.run(WRITE1, A))  # queued on the frozen holder
        await until(lambda: gw1.disk.lock.writers == 1, "not admitted")
        good(await gw2.run(WRITE1, B))                    # fences gw1
        gw1.backend.gate.set()                             # gw1 thaws
        r = await stale
        assert r.status == Status.BUSY and not r.drop_connection
        assert data(gw1) == B                              # it never landed
        assert [op for op in gw1.backend.ops if op[0] == "write"] == []  # and was not retried
        assert gw1.disk.stats.fenced_writes == 1 and gw1.disk.stats.lock_fenced == 1
        assert gw1.disk.lock.state is LockState.UNLOCKED
    run(go())


def test_after_a_fence_the_sessions_open_then_lose_their_connection_on_their_next_write():
    """More stale writes of those sessions may still be queued in this gateway's sockets: had
    they run, the first would have taken the lock back (cooperatively) and landed."""
    async def go():
        gw1, gw2 = pair()
        await ready(gw1, gw2)
        assert await gw1.disk.lock.acquire()
        gw1.backend.unresponsive = True
        good(await gw2.run(WRITE1, B))                    # gw1 is fenced while frozen
        gw1.backend.unresponsive = False
        good(await gw1.run(READ1))                        # gw1 finds out (and reconnects)
        assert gw1.disk.stats.lock_fenced == 1
        for nexus in (N1, N2):                            # both sessions were open
            r = await gw1.run(WRITE1, A, nexus=nexus)
            assert r.drop_connection and r.status == Status.BUSY
        assert data(gw1) == B and gw2.disk.stats.lock_requests == 0  # no lock move for them
        gw1.disk.nexus_lost(N1)                           # the transport dropped the connection
        await gw1.ready(N1)                               # the initiator logs in again
        good(await gw1.run(WRITE1, A))                    # a new session writes normally
        assert data(gw1) == A and gw1.disk.stats.stale_session_drops == 2
        assert gw2.disk.stats.lock_handoffs_out == 1      # handed back, not broken
        assert gw1.backend.image.locks.breaks == 1
    run(go())


def test_a_stale_write_waiting_for_the_lock_when_the_fence_is_found_does_not_land():
    """The frozen holder thaws and handles the (late) request first: it stops admitting
    writes, a stale write waits, the release fails because it was fenced -- and the write
    must not land once the lock comes back."""
    async def go():
        gw1, gw2 = pair()
        await ready(gw1, gw2)
        assert await gw1.disk.lock.acquire()
        gw1.backend.unresponsive = True
        good(await gw2.run(WRITE1, B))
        gw1.backend.unresponsive = False
        gw1.disk.lock.release_requested(gw2.backend.client)  # the late request, after thawing
        assert gw1.disk.lock.state is LockState.RELEASING
        r = await gw1.run(WRITE1, A)
        assert r.drop_connection, r
        assert data(gw1) == B
        # and the lock stayed where it is: a stale write does not even move it
        assert gw1.backend.image.locks.owner == gw2.backend.client
        assert gw2.disk.stats.lock_requests == 0
    run(go())


def test_writes_through_both_gateways_at_once_all_complete_without_fencing():
    """Round-robin paths: the lock ping-pongs; each acquisition serves the writes waiting
    for it before a request is honoured, so neither side starves."""
    async def go():
        gw1, gw2 = pair()
        await ready(gw1, gw2)

        async def writer(gw, fill, n, nexus):
            for i in range(n):
                good(await gw.run(rw10(0x2A, i % 8, 1), bytes([fill]) * BS, nexus=nexus))
                await asyncio.sleep(0.001)  # the writers interleave
        await asyncio.wait_for(asyncio.gather(writer(gw1, 1, 30, N1), writer(gw2, 2, 30, N1),
                                              writer(gw1, 3, 30, N2)), 20)
        s1, s2 = gw1.disk.stats, gw2.disk.stats
        assert gw1.backend.image.locks.breaks == 0 and s1.busy == s2.busy == 0
        assert s1.lock_handoffs_out >= 1 and s2.lock_handoffs_out >= 1
    run(go())


def test_a_request_while_taking_the_lock_is_honoured_after_the_waiting_writes_ran():
    async def go():
        gw1, gw2 = pair()
        await ready(gw1, gw2)
        slow = asyncio.Event()
        real = gw1.backend.lock_try_acquire

        async def slow_try():
            await slow.wait()
            return await real()
        gw1.backend.lock_try_acquire = slow_try
        w1 = asyncio.create_task(gw1.run(WRITE1, A))
        await until(lambda: gw1.disk.lock.state is LockState.ACQUIRING, "not acquiring")
        assert gw1.disk.lock.release_requested(gw2.backend.client)  # a (stale) request meanwhile
        slow.set()
        good(await w1)                                    # the waiting write ran first
        await until(lambda: gw1.disk.lock.state is LockState.UNLOCKED, "not released")
        assert data(gw1) == A and gw1.disk.stats.lock_handoffs_out == 1
    run(go())


def test_after_handing_the_lock_over_a_gateway_lets_the_asker_take_it_first():
    async def go():
        gw1, gw2 = pair(timeout=1.0)
        await ready(gw1, gw2)
        assert await gw1.disk.lock.acquire()
        slow = asyncio.Event()
        real = gw2.backend.lock_try_acquire

        async def slow_try():  # gw2 is slow to take the free lock
            await slow.wait()
            return await real()
        gw2.backend.lock_try_acquire = slow_try
        w2 = asyncio.create_task(gw2.run(WRITE1, B))
        await until(lambda: gw1.disk.lock.state is LockState.UNLOCKED, "gw1 did not release")
        w1 = asyncio.create_task(gw1.run(WRITE1, A))      # gw1 wants it back at once
        await asyncio.sleep(0.05)
        assert gw1.backend.image.locks.owner is None      # gw1 left the free lock to gw2
        slow.set()
        good(await w2)
        good(await w1)
        assert data(gw1) == A and gw1.backend.image.locks.breaks == 0
    run(go())


def test_compare_and_write_handed_between_gateways_stays_atomic():
    async def go():
        gw1, gw2 = pair()
        await ready(gw1, gw2)
        good(await gw1.run(WRITE1, bytes(BS)))
        value = bytes(BS)
        for i in range(6):
            gw = (gw1, gw2)[i % 2]
            new = bytes([i + 1]) * BS
            good(await gw.run(caw(0), value + new))
            assert check(await gw.run(caw(0), value + new)).code == (0xE, 0x1D, 0)  # old value gone
            value = new
        assert bytes(good(await gw1.run(READ1)).data) == value
        assert gw1.backend.image.locks.breaks == 0
    run(go())


def test_a_planned_release_waits_for_admitted_writes_and_fences_no_one():
    async def go():
        gw1, gw2 = pair()
        await ready(gw1, gw2)
        assert await gw1.disk.lock.acquire()
        gw1.backend.gate = asyncio.Event()
        w1 = asyncio.create_task(gw1.run(WRITE1, A))
        await until(lambda: gw1.disk.lock.writers == 1, "not admitted")
        released = asyncio.create_task(gw1.disk.lock.release())
        await asyncio.sleep(0.01)
        assert not released.done() and gw1.backend.image.locks.owner == gw1.backend.client
        gw1.backend.gate.set()
        good(await w1)
        assert await released
        assert gw1.backend.image.locks.owner is None
        assert await gw2.disk.lock.try_acquire()           # the new owner finds it free
        assert gw1.backend.image.locks.breaks == 0
    run(go())


def test_a_copy_to_a_disk_whose_lock_is_on_another_gateway_is_handed_the_lock():
    """EXTENDED COPY through gw1 from its disk X to its disk Y: Y's lock is held by gw2, which
    hands it over; a session open when Y's client was fenced cannot copy onto Y."""
    from test_scsi_xcopy import param_list, segment, target, xcopy

    async def go():
        y1, y2 = pair()
        x1 = Harness(wwn="aaaaaaaa-0000-0000-0000-000000000001", registry=y1.registry)
        await ready(x1, y1, y2)
        good(await x1.run(WRITE1, A))
        assert await y2.disk.lock.acquire()
        copy = param_list([target(x1.disk.naa), target(y1.disk.naa)], [segment(0, 1, 1, 0, 0)])
        good(await xcopy(x1, copy))
        assert data(y1) == A and y2.disk.stats.lock_handoffs_out == 1 and y1.disk.lock.writers == 0
        y1.disk.lock.fenced(BackendError(108, "test"))  # y1's client found fenced
        r = await xcopy(x1, copy)
        assert r.drop_connection and y1.disk.stats.stale_session_drops == 1
    run(go())
