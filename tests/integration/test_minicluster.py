"""The mini cluster is a real Ceph: RBD works through python3-rbd against it."""

from __future__ import annotations

import threading

import pytest
import rbd

from gateway.testing.minicluster import MiniCluster


def test_cluster_runs_with_cephx_on_loopback(ceph_cluster):
    conf = ceph_cluster.conf_path.read_text()
    assert "auth cluster required = cephx" in conf
    assert "public addr = 127.0.0.1" in conf
    st = ceph_cluster.status()
    assert st.healthy and all(st.running.values())


def test_aio_write_then_read_back_same_bytes(ioctx, rbd_image):
    payload = bytes(range(256)) * 16 * 64  # 256 KiB
    done = threading.Event()
    results = []

    with rbd.Image(ioctx, rbd_image) as img:
        def on_write(comp):
            results.append(comp.get_return_value())
            done.set()

        comp = img.aio_write(payload, 1 << 20, on_write)
        assert done.wait(10)
        comp.wait_for_complete_and_cb()
        assert results == [0]

        read_done = threading.Event()
        got = []

        def on_read(comp, data):
            got.append(data)
            read_done.set()

        img.aio_read(1 << 20, len(payload), on_read)
        assert read_done.wait(10)
        assert got[0] == payload
        # Unwritten space reads as zeroes.
        assert img.read(0, 4096) == bytes(4096)


def test_exclusive_lock_acquire_and_release(ioctx, rbd_image):
    with rbd.Image(ioctx, rbd_image) as img:
        assert img.features() & rbd.RBD_FEATURE_EXCLUSIVE_LOCK
        assert not img.is_exclusive_lock_owner()
        img.lock_acquire(rbd.RBD_LOCK_MODE_EXCLUSIVE)
        assert img.is_exclusive_lock_owner()
        owners = list(img.lock_get_owners())
        assert len(owners) == 1 and owners[0]["mode"] == rbd.RBD_LOCK_MODE_EXCLUSIVE
        img.lock_release()
        assert not img.is_exclusive_lock_owner()


def test_second_client_cannot_acquire_held_lock(ceph_cluster, ioctx, rbd_image):
    other = ceph_cluster.rados_connect()
    try:
        with other.open_ioctx(ceph_cluster.pool) as io2, rbd.Image(ioctx, rbd_image) as a, \
                rbd.Image(io2, rbd_image) as b:
            a.lock_acquire(rbd.RBD_LOCK_MODE_EXCLUSIVE)
            with pytest.raises(rbd.ReadOnlyImage):
                b.lock_acquire(rbd.RBD_LOCK_MODE_EXCLUSIVE)
            assert a.is_exclusive_lock_owner() and not b.is_exclusive_lock_owner()
    finally:
        other.shutdown()


def test_snapshot_create_and_rollback(ioctx, rbd_image):
    with rbd.Image(ioctx, rbd_image) as img:
        img.write(b"A" * 4096, 0)
        img.create_snap("before")
        img.write(b"B" * 4096, 0)
        assert img.read(0, 4096) == b"B" * 4096
        img.rollback_to_snap("before")
        assert img.read(0, 4096) == b"A" * 4096
        assert [s["name"] for s in img.list_snaps()] == ["before"]


def test_resize_grows_and_shrinks(ioctx, rbd_image):
    with rbd.Image(ioctx, rbd_image) as img:
        assert img.size() == 64 << 20
        img.resize(128 << 20)
        assert img.size() == 128 << 20
        img.write(b"Z" * 512, (128 << 20) - 512)
        img.resize(32 << 20)
        assert img.size() == 32 << 20


def test_two_clusters_in_two_dirs_run_side_by_side(ceph_cluster, tmp_path):
    other = MiniCluster(tmp_path / "second")
    other.start()
    try:
        assert other.mon_port != ceph_cluster.mon_port
        a = ceph_cluster.rados_connect()
        b = other.rados_connect()
        try:
            assert a.get_fsid() != b.get_fsid()
            with a.open_ioctx("rbd") as ia, b.open_ioctx("rbd") as ib:
                ia.write_full("whoami", b"first")
                ib.write_full("whoami", b"second")
                assert ia.read("whoami") == b"first"
                assert ib.read("whoami") == b"second"
        finally:
            a.shutdown()
            b.shutdown()
        # Stopping the second cluster (by its pids) leaves the first one serving.
        other.stop()
        assert not any(other.status().running.values())
        assert ceph_cluster.status().healthy
    finally:
        other.destroy()


def test_restart_keeps_data(tmp_path):
    cluster = MiniCluster(tmp_path / "restart")
    cluster.start()
    try:
        cluster.rbd("create", "--size", "16M", "keepme")
        cluster.stop()
        assert not any(cluster.status().running.values())
        cluster.start()
        assert "keepme" in cluster.rbd("ls").split()
    finally:
        cluster.destroy()
    assert not (tmp_path / "restart").exists()


def test_a_test_run_that_dies_takes_its_cluster_with_it(tmp_path):
    """die_with_parent: daemons started by a process that is killed get SIGTERM."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    d = tmp_path / "orphan"
    code = ("import json, sys, time\n"
            "from gateway.testing.minicluster import MiniCluster\n"
            f"c = MiniCluster({str(d)!r}, die_with_parent=True)\n"
            "c.start()\n"
            "print(json.dumps(c.status().running), flush=True)\n"
            "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pids = [p for p in json.loads(proc.stdout.readline()).values() if p]
        assert len(pids) == 2
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{p}") and _alive(p) for p in pids):
        assert time.monotonic() < deadline, "the daemons outlived the process that started them"
        time.sleep(0.2)
    MiniCluster(d).destroy()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_cluster_does_not_start_and_says_why_leaving_nothing_running(tmp_path):
    """kill -9 (or a session ending) loses a memstore OSD's data: start must say so, stop
    what it started, and not blame a stale pid from the earlier run."""
    import os
    import signal

    from gateway.testing.minicluster import MiniClusterError

    cluster = MiniCluster(tmp_path / "killed")
    cluster.start()
    try:
        cluster.rbd("create", "--size", "16M", "lost")
        pids = list(cluster.status().running.values())
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for pid in pids:  # gone, as after a session ended (they are children of this process)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:  # already reaped by subprocess' own clean-up
                pass
        with pytest.raises(MiniClusterError) as err:
            cluster.start(timeout=12)
        assert "destroy" in str(err.value) and "memstore" in str(err.value)
        assert "exited while waiting for the monitor" not in str(err.value)
        assert not any(cluster.status().running.values())
        # destroy + start is the way back
        cluster.destroy()
        cluster.start()
        assert "lost" not in cluster.rbd("ls").split()
    finally:
        cluster.destroy()
