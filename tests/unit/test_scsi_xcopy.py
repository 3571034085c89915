"""EXTENDED COPY (LID1) and RECEIVE COPY RESULTS as libiscsi's ExtendedCopy and
ReceiveCopyResults suites drive them, plus copies between two disks."""

from __future__ import annotations

import asyncio
import struct

from scsi_support import BLOCKS, BS, N1, Harness, check, good, run, rw10, rw16

from tcmu_handler.api import Status
from tcmu_handler.config import naa_from_wwn
from tcmu_handler.xcopy import MAX_DESCRIPTOR_LIST_LENGTH, MAX_SEGMENT_DESCRIPTORS, MAX_TARGET_DESCRIPTORS

COPY_ABORTED = 0xA


def target(naa: bytes, code: int = 0xE4, lu_id_type: int = 0, block_size: int = BS) -> bytes:
    d = bytearray(32)
    d[0] = code
    d[1] = lu_id_type << 6
    d[4:8] = bytes((0x01, 0x03, 0, len(naa)))
    d[8:8 + len(naa)] = naa
    d[29:32] = block_size.to_bytes(3, "big")
    return bytes(d)


def segment(src: int, dst: int, blocks: int, src_lba: int, dst_lba: int, code: int = 0x02) -> bytes:
    return struct.pack(">BBHHHxxHQQ", code, 0, 0x18, src, dst, blocks, src_lba, dst_lba)


def offset_segment(src: int, dst: int, nbytes: int, src_lba: int, dst_lba: int, src_off: int = 0,
                   dst_off: int = 0) -> bytes:
    """Block device to block device with offset (0Ah)."""
    return struct.pack(">BBHHHIQQHH", 0x0A, 0, 0x1C, src, dst, nbytes, src_lba, dst_lba, src_off, dst_off)


def param_list(targets: list[bytes], segments: list[bytes], list_id: int = 1, usage: int = 0) -> bytes:
    t, s = b"".join(targets), b"".join(segments)
    return struct.pack(">BBH4xII", list_id, usage << 3, len(t), len(s), 0) + t + s


def xcopy_cdb(plen: int, sa: int = 0) -> bytes:
    return struct.pack(">BB8xIBB", 0x83, sa, plen, 0, 0)


def rcr_cdb(sa: int, list_id: int = 0, alloc: int = 1024) -> bytes:
    return struct.pack(">BBB7xIBB", 0x84, sa, list_id, alloc, 0, 0)


async def xcopy(h: Harness, data: bytes, plen: int | None = None):
    return await h.run(xcopy_cdb(len(data) if plen is None else plen), data)


def test_copy_start_of_lun_to_end_of_lun():
    async def go():
        h = Harness()
        await h.ready()
        n = 1024
        data = bytes(range(256)) * (n * BS // 256)
        good(await h.run(rw16(0x8A, 0, n), data))
        me = target(naa_from_wwn(h.disk.config.wwn))
        good(await xcopy(h, param_list([me], [segment(0, 0, n, 0, BLOCKS - n)], usage=2)))
        assert bytes(good(await h.run(rw16(0x88, BLOCKS - n, n))).data) == data
    run(go())


def test_copy_between_two_disks_of_the_gateway_and_overlapping_copy_on_one():
    async def go():
        src = Harness(wwn="aaaaaaaa-0000-0000-0000-000000000001")
        dst = Harness(wwn="bbbbbbbb-0000-0000-0000-000000000002", registry=src.registry)
        await src.ready()
        await dst.ready()
        payload = b"".join(bytes([i]) * BS for i in range(8))
        good(await src.run(rw10(0x2A, 0, 8), payload))
        ts = [target(src.disk.naa), target(dst.disk.naa)]
        good(await xcopy(src, param_list(ts, [segment(0, 1, 8, 0, 100)])))
        assert bytes(good(await dst.run(rw10(0x28, 100, 8))).data) == payload
        # overlapping forward copy on the same disk keeps the source intact while copying
        good(await xcopy(src, param_list(ts[:1], [segment(0, 0, 8, 0, 4)])))
        assert bytes(good(await src.run(rw10(0x28, 4, 8))).data) == payload
    run(go())


def test_parameter_list_length_zero_is_a_no_op_and_truncation_is_an_error():
    async def go():
        h = Harness()
        await h.ready()
        full = param_list([target(h.disk.naa)], [segment(0, 0, 8, 0, 8)])
        good(await h.run(xcopy_cdb(0)))
        assert check(await xcopy(h, full[:16 + 32 - 1])).code == (5, 0x1A, 0)
        assert check(await xcopy(h, full[:-1])).code == (5, 0x1A, 0)
        assert check(await h.run(xcopy_cdb(len(full)), full[:20])).code == (5, 0x1A, 0)
    run(go())


def test_descriptor_limits():
    async def go():
        h = Harness()
        await h.ready()
        me = target(h.disk.naa)
        seg = segment(0, 0, 8, 0, 8)
        s = check(await xcopy(h, param_list([me] * (MAX_TARGET_DESCRIPTORS + 1), [seg])))
        assert s.code == (5, 0x26, 0x06)
        s = check(await xcopy(h, param_list([me], [seg] * (MAX_SEGMENT_DESCRIPTORS + 1))))
        assert s.code == (5, 0x26, 0x08)
        many = (MAX_DESCRIPTOR_LIST_LENGTH // 28) + 1
        s = check(await xcopy(h, param_list([me] * (MAX_TARGET_DESCRIPTORS + 1), [seg] * many)))
        assert s.code == (5, 0x1A, 0x00)
    run(go())


def test_unsupported_descriptor_types():
    async def go():
        h = Harness()
        await h.ready()
        me = target(h.disk.naa)
        s = check(await xcopy(h, param_list([target(h.disk.naa, code=0xE0)], [segment(0, 0, 8, 0, 8)])))
        assert s.code == (5, 0x26, 0x07)
        stream = struct.pack(">BBHHH", 0x03, 0, 0x10, 0, 0) + bytes(12)
        s = check(await xcopy(h, param_list([me], [stream])))
        assert s.code == (5, 0x26, 0x09)
    run(go())


def test_lu_id_type_is_ignored_as_spc4_says():
    async def go():
        h = Harness()
        await h.ready()
        good(await xcopy(h, param_list([target(h.disk.naa, lu_id_type=2)], [segment(0, 0, 8, 0, 16)])))
    run(go())


def test_bad_target_index_unknown_designator_and_beyond_end_abort_the_copy():
    async def go():
        h = Harness()
        await h.ready()
        me = target(h.disk.naa)
        s = check(await xcopy(h, param_list([me], [segment(0, 1, 8, 0, 8)])))
        assert s.code == (COPY_ABORTED, 0x0D, 0x02)
        s = check(await xcopy(h, param_list([target(naa_from_wwn("elsewhere"))], [segment(0, 0, 8, 0, 8)])))
        assert s.code == (COPY_ABORTED, 0x0D, 0x02)
        s = check(await xcopy(h, param_list([me], [segment(0, 0, 2048, 0, BLOCKS - 1)])))
        assert s.key == COPY_ABORTED
    run(go())


def test_receive_copy_results_operating_parameters():
    async def go():
        h = Harness()
        await h.ready()
        d = bytes(good(await h.run(rcr_cdb(3))).data)
        assert struct.unpack_from(">I", d)[0] == len(d) - 4 and len(d) == 47
        assert struct.unpack_from(">HHII", d, 8) == (MAX_TARGET_DESCRIPTORS, MAX_SEGMENT_DESCRIPTORS,
                                                     MAX_DESCRIPTOR_LIST_LENGTH, 0xFFFF * BS)
        assert d[43] == 3 and d[44:47] == bytes((0x02, 0x0A, 0xE4))
    run(go())


def test_copy_status_only_for_held_list_ids_of_this_nexus():
    async def go():
        h = Harness()
        await h.ready()
        assert check(await h.run(rcr_cdb(0, list_id=1))).code == (5, 0x24, 0)
        good(await xcopy(h, param_list([target(h.disk.naa)], [segment(0, 0, 8, 0, 8)], list_id=1)))
        d = bytes(good(await h.run(rcr_cdb(0, list_id=1))).data)
        assert struct.unpack(">IBHBI", d) == (8, 0, 1, 0, 8 * BS)
        h.disk.nexus_lost(N1)
        await h.ready()
        assert check(await h.run(rcr_cdb(0, list_id=1))).code == (5, 0x24, 0)
    run(go())


def test_copy_waits_for_the_destination_lock_and_is_busy_when_it_does_not_come():
    async def go():
        from tcmu_handler.backends.memory import MemoryBackend
        h = Harness(backend=MemoryBackend(BLOCKS * BS, supports_lock=True))
        await h.ready()
        good(await xcopy(h, param_list([target(h.disk.naa)], [segment(0, 0, 8, 0, 8)])))
        assert h.disk.stats.lock_acquired == 1
        # another gateway takes the lock; this one cannot get it back in time
        stuck = asyncio.Event()

        async def ask_forever(owner, timeout):
            await stuck.wait()
            return False
        h.backend.lock_request_release = ask_forever
        assert await h.disk.lock.release()
        h.backend.image.locks.owner = "client.other"
        h.disk.lock.write_wait = 0.01
        r = await xcopy(h, param_list([target(h.disk.naa)], [segment(0, 0, 8, 0, 8)]))
        assert r.status == Status.BUSY and not r.drop_connection
        stuck.set()
    run(go())


def _tpc_descriptors(page: bytes) -> dict[int, bytes]:
    assert page[1] == 0x8F and struct.unpack_from(">H", page, 2)[0] == len(page) - 4
    out, pos = {}, 4
    while pos < len(page):
        kind, length = struct.unpack_from(">HH", page, pos)
        assert (length + 4) % 4 == 0
        out[kind] = page[pos + 4:pos + 4 + length]
        pos += 4 + length
    assert pos == len(page)
    return out


def test_third_party_copy_vpd_page_lists_the_lid1_commands_and_limits():
    async def go():
        h = Harness()
        await h.ready()
        page = bytes(good(await h.run(bytes((0x12, 1, 0x8F, 4, 0, 0)))).data)
        d = _tpc_descriptors(page)
        assert set(d) == {0x0001, 0x0004, 0x0008, 0x000C, 0x8001}
        n = d[0x0001][0]
        assert d[0x0001][1:1 + n] == bytes((0x83, 1, 0x00, 0x84, 2, 0x00, 0x03))
        assert struct.unpack_from(">HHII", d[0x0004], 4) == (
            MAX_TARGET_DESCRIPTORS, MAX_SEGMENT_DESCRIPTORS, MAX_DESCRIPTOR_LIST_LENGTH, 0)
        assert d[0x0008][:4] == bytes((3, 0x02, 0x0A, 0xE4))
        assert struct.unpack_from(">IIIB", d[0x8001], 0)[2:] == (0xFFFF * BS, 9)
    run(go())


def test_without_a_registry_there_is_no_copy_page_nor_3pc():
    async def go():
        from tcmu_handler.backends.memory import MemoryBackend
        from tcmu_handler.config import DiskConfig
        from tcmu_handler.disk import ScsiDisk
        disk = ScsiDisk(DiskConfig(wwn="x"), MemoryBackend(1 << 20))
        h = Harness()
        h.disk, h.table.luns[0] = disk, disk
        await h.ready()
        pages = bytes(good(await h.run(bytes((0x12, 1, 0, 0, 255, 0)))).data)
        assert 0x8F not in pages[4:]
        assert check(await h.run(bytes((0x12, 1, 0x8F, 0, 255, 0)))).code == (5, 0x24, 0)
        assert not good(await h.run(bytes((0x12, 0, 0, 0, 36, 0)))).data[5] & 0x08
    run(go())


def test_offset_segment_copies_whole_blocks():
    async def go():
        h = Harness()
        await h.ready()
        data = bytes(range(256)) * (64 * BS // 256)
        good(await h.run(rw16(0x8A, 0, 64), data))
        good(await xcopy(h, param_list([target(h.disk.naa)], [offset_segment(0, 0, 64 * BS, 0, 1000)])))
        assert bytes(good(await h.run(rw16(0x88, 1000, 64))).data) == data
    run(go())


def test_offset_segment_copies_bytes_inside_blocks_and_keeps_the_rest_of_the_edge_blocks():
    async def go():
        h = Harness()
        await h.ready()
        src = bytes((i * 7) & 0xFF for i in range(8 * BS))
        good(await h.run(rw16(0x8A, 0, 8), src))
        good(await h.run(rw16(0x8A, 100, 8), b"D" * 8 * BS))
        nbytes = 5 * BS + 77
        seg = offset_segment(0, 0, nbytes, 1, 101, src_off=3, dst_off=200)
        good(await xcopy(h, param_list([target(h.disk.naa)], [seg])))
        got = bytes(good(await h.run(rw16(0x88, 100, 8))).data)
        start = BS + 200
        assert got[:start] == b"D" * start
        assert got[start:start + nbytes] == src[BS + 3:BS + 3 + nbytes]
        assert got[start + nbytes:] == b"D" * (8 * BS - start - nbytes)
    run(go())


def test_offset_segment_longer_than_maximum_segment_length_is_refused():
    async def go():
        h = Harness()
        await h.ready()
        seg = offset_segment(0, 0, 0xFFFF * BS + 1, 0, 0)
        r = check(await xcopy(h, param_list([target(h.disk.naa)], [seg])))
        assert r.code == (5, 0x26, 0) and (r.in_cdb, r.field) == (False, 16 + 32 + 8)
        seg = offset_segment(0, 0, BS, 0, 0, dst_off=BS)
        assert check(await xcopy(h, param_list([target(h.disk.naa)], [seg]))).code == (5, 0x26, 0)
    run(go())


def test_offset_segment_overlapping_forward_within_one_disk():
    """Several 1 MiB chunks copied from the end, so no chunk reads what another wrote."""
    async def go():
        h = Harness(blocks=8192)
        await h.ready()
        data = bytes((i * 13 + i // 512) & 0xFF for i in range(5000 * BS))
        for lba in range(0, 5000, 1000):
            good(await h.run(rw16(0x8A, lba, 1000), data[lba * BS:(lba + 1000) * BS]))
        nbytes = 5000 * BS - 100
        seg = offset_segment(0, 0, nbytes, 0, 300, dst_off=100)
        good(await xcopy(h, param_list([target(h.disk.naa)], [seg])))
        got = b"".join([bytes(good(await h.run(rw16(0x88, lba, 1000))).data)
                        for lba in range(300, 5300, 1000)])
        assert got[100:100 + nbytes] == data[:nbytes]
    run(go())
