"""The behaviour every ``ConfigStore`` must have, run against each implementation.

A test module subclasses ``ConfigStoreContract`` and provides two fixtures:

* ``make_store(cipher=NO_CIPHER)`` -> a new store handle on one shared backend (like a
  second process on the same RADOS object);
* ``raw_values()`` -> the stored bytes of the entity keys, as the backend holds them.
"""

from __future__ import annotations

import functools
import json
import queue
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.config import ceph_iscsi, codec
from gateway.config import operations as ops
from gateway.config.crypto import SecretCipher
from gateway.config.errors import AlreadyExists, ConflictError, ValidationError
from gateway.config.model import ChapAuth, TargetLun
from gateway.config.status import HEALTH_DEGRADED, GatewayStatus

T1 = "iqn.2003-01.com.example:t1"
T2 = "iqn.2003-01.com.example:t2"
INITIATOR = "iqn.1994-05.com.redhat:client1"
INITIATOR2 = "iqn.1994-05.com.redhat:client2"
SAMPLE_V11 = Path(__file__).parent / "data" / "gateway_conf_v11.json"
# A callback that should not come must not have come within this long.
QUIET_PERIOD = 0.5
LIVENESS = 20.0  # bound on waits for something that must happen (hang detection only)


@functools.lru_cache(maxsize=1)
def shared_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def full_cipher() -> SecretCipher:
    return SecretCipher(shared_key().public_key(), shared_key())


def public_only_cipher() -> SecretCipher:
    return SecretCipher(shared_key().public_key(), None)


def build_sample(cfg) -> None:
    """A small but complete state: portals, disks, LUNs, clients, CHAP, a host group."""
    ops.set_discovery_auth(cfg, ChapAuth("discovery-user", "discovery-pw1"))
    ops.add_target(cfg, T1, {"nopin_timeout": 7})
    ops.add_portal(cfg, T1, "gw1.example.com", ["192.0.2.1"])
    ops.add_portal(cfg, T1, "gw2.example.com", ["192.0.2.2", "2001:db8::2"])
    ops.add_disk(cfg, "rbd", "disk1", allocating_host="gw1.example.com", controls={"qfull_timeout": 9})
    ops.add_disk(cfg, "rbd", "disk2", allocating_host="gw2.example.com")
    ops.map_lun(cfg, T1, "rbd/disk1")
    ops.map_lun(cfg, T1, "rbd/disk2", lun_id=7)
    ops.add_client(cfg, T1, INITIATOR, ChapAuth("client1-user", "client1-secret", "target1-user",
                                                "target1-secret"))
    ops.add_client(cfg, T1, INITIATOR2)
    ops.add_client_lun(cfg, T1, INITIATOR, "rbd/disk2")
    ops.update_group(cfg, T1, "group1", add_members=[INITIATOR2], add_disks=["rbd/disk1"])


class ConfigStoreContract:
    @pytest.fixture
    def store(self, make_store):
        s = make_store()
        yield s
        s.close()

    # ---- reading and writing ----------------------------------------------------------------
    def test_fresh_store_is_empty_at_version_zero(self, store):
        cfg = store.load()
        assert cfg.version == 0 and store.read_version() == 0
        assert not cfg.targets and not cfg.disks and not cfg.gateways and not cfg.stray

    def test_each_update_commits_exactly_one_new_version(self, store):
        first = store.update(lambda cfg: ops.add_target(cfg, T1))
        second = store.update(lambda cfg: ops.add_target(cfg, T2))
        assert (first.version, second.version) == (1, 2)
        assert store.read_version() == 2 and set(store.load().targets) == {T1, T2}

    def test_update_that_changes_nothing_writes_nothing(self, store):
        store.update(lambda cfg: ops.add_target(cfg, T1))
        done = store.update(lambda cfg: None)
        assert not done.changed and done.version == 1 and store.read_version() == 1

    def test_full_state_reads_back_equal(self, store):
        done = store.update(build_sample)
        loaded = store.load()
        assert loaded == done.config
        assert loaded.version == done.version and loaded.created and loaded.updated

    def test_fn_result_is_returned(self, store):
        store.update(lambda cfg: ops.add_target(cfg, T1))
        store.update(lambda cfg: ops.add_portal(cfg, T1, "gw1", ["192.0.2.1"]))
        store.update(lambda cfg: ops.add_disk(cfg, "rbd", "d1"))
        done = store.update(ops.map_lun, T1, "rbd/d1", lun_id=3)
        assert done.result == TargetLun("rbd/d1", 3, "gw1")

    def test_removed_entities_stay_removed(self, store):
        store.update(build_sample)
        store.update(lambda cfg: ops.remove_client_lun(cfg, T1, INITIATOR, "rbd/disk2"))
        store.update(lambda cfg: ops.remove_client(cfg, T1, INITIATOR))
        cfg = store.load()
        assert INITIATOR not in cfg.targets[T1].clients
        assert codec.client_key(T1, INITIATOR) not in store.load().stray

    def test_other_handle_sees_committed_change(self, make_store):
        a, b = make_store(), make_store()
        a.update(build_sample)
        assert b.load() == a.load()
        a.close()
        b.close()

    # ---- compare-and-set ----------------------------------------------------------------------
    def test_commit_from_stale_version_conflicts_and_writes_nothing(self, make_store):
        a, b = make_store(), make_store()
        base = a.load()
        mine = base.copy()
        ops.add_target(mine, T1)
        b.update(lambda cfg: ops.add_target(cfg, T2))
        with pytest.raises(ConflictError):
            a.commit(base, mine)
        assert set(a.load().targets) == {T2} and a.read_version() == 1
        a.close()
        b.close()

    def test_update_rereads_and_retries_after_losing_the_race(self, make_store):
        a, b = make_store(), make_store()
        seen = []

        def add_t1(cfg):
            seen.append(set(cfg.targets))
            if len(seen) == 1:  # another writer commits between our read and our write
                b.update(lambda other: ops.add_target(other, T2))
            ops.add_target(cfg, T1)

        done = a.update(add_t1)
        assert done.conflicts == 1 and seen == [set(), {T2}]
        assert set(a.load().targets) == {T1, T2} and done.version == 2
        a.close()
        b.close()

    def test_request_refused_on_a_stale_state_is_judged_again_on_the_latest(self, make_store):
        a, b = make_store(), make_store()
        seen = []

        def configure_late_disk(cfg):
            seen.append("rbd/late" in cfg.disks)
            if len(seen) == 1:  # the disk is added elsewhere while this request is judged
                b.update(lambda other: ops.add_disk(other, "rbd", "late"))
            ops.set_disk_controls(cfg, "rbd/late", {"qfull_timeout": 9})  # NotFound on the stale state

        done = a.update(configure_late_disk)
        assert seen == [False, True] and done.changed
        assert a.load().disks["rbd/late"].controls == {"qfull_timeout": 9}
        a.close()
        b.close()

    def test_validation_error_in_fn_aborts_without_writing(self, store):
        store.update(lambda cfg: ops.add_target(cfg, T1))
        with pytest.raises(AlreadyExists, match="already exists"):
            store.update(lambda cfg: ops.add_target(cfg, T1))
        assert store.read_version() == 1

    def test_change_adding_a_violation_is_refused(self, store):
        store.update(build_sample)
        version = store.read_version()

        def duplicate_lun_id(cfg):  # bypasses the operations' own checks
            cfg.targets[T1].luns["rbd/disk2"].lun_id = cfg.targets[T1].luns["rbd/disk1"].lun_id

        with pytest.raises(ValidationError, match="share LUN id"):
            store.update(duplicate_lun_id)
        assert store.read_version() == version

    def test_existing_violation_does_not_block_unrelated_changes(self, store):
        base = store.load()
        broken = base.copy()
        ops.add_target(broken, T1)
        broken.targets[T1].luns["rbd/missing"] = TargetLun("rbd/missing", 0, "")
        store.commit(base, broken, check=False)
        done = store.update(lambda cfg: ops.add_target(cfg, T2))
        assert done.changed and set(store.load().targets) == {T1, T2}

    # ---- secrets ------------------------------------------------------------------------------
    def test_secrets_are_encrypted_at_rest_and_read_back_in_clear(self, make_store, raw_values):
        store = make_store(cipher=full_cipher())
        store.update(build_sample)
        stored = b"".join(raw_values().values())
        for secret in (b"client1-secret", b"target1-secret", b"discovery-pw1"):
            assert secret not in stored
        client_auth = json.loads(raw_values()[codec.client_key(T1, INITIATOR)])["auth"]
        assert client_auth["password_encryption_enabled"] is True
        assert store.load().targets[T1].clients[INITIATOR].auth.password == "client1-secret"
        store.close()

    def test_without_key_pair_secrets_are_stored_in_clear(self, store, raw_values):
        store.update(build_sample)
        client_auth = json.loads(raw_values()[codec.client_key(T1, INITIATOR)])["auth"]
        assert client_auth["password"] == "client1-secret"
        assert client_auth["password_encryption_enabled"] is False

    def test_reseal_encrypts_secrets_written_before_the_key_pair_existed(self, make_store, raw_values):
        make_store().update(build_sample)
        key = codec.client_key(T1, INITIATOR)
        assert b"client1-secret" in raw_values()[key]
        store = make_store(cipher=full_cipher())
        version = store.read_version()
        done = store.reseal()
        assert done.version == version + 1
        assert b"client1-secret" not in raw_values()[key]
        assert store.load().targets[T1].clients[INITIATOR].auth.password == "client1-secret"
        store.close()

    def test_node_without_private_key_keeps_secrets_it_cannot_read(self, make_store):
        writer = make_store(cipher=full_cipher())
        writer.update(build_sample)
        blind = make_store(cipher=public_only_cipher())
        auth = blind.load().targets[T1].clients[INITIATOR].auth
        assert auth.password_sealed and auth.password != "client1-secret"
        blind.update(lambda cfg: ops.add_client_lun(cfg, T1, INITIATOR, "rbd/disk1"))  # rewrites the client
        assert writer.load().targets[T1].clients[INITIATOR].auth.password == "client1-secret"
        writer.close()
        blind.close()

    # ---- watch ----------------------------------------------------------------------------------
    def test_watcher_is_called_with_the_new_version(self, make_store):
        watcher, writer = make_store(), make_store()
        got: queue.Queue = queue.Queue()
        sub = watcher.watch(got.put)
        done = writer.update(lambda cfg: ops.add_target(cfg, T1))
        assert got.get(timeout=LIVENESS) == done.version
        assert sub.check()
        sub.close()
        watcher.close()
        writer.close()

    def test_closed_watch_gets_no_more_callbacks(self, make_store):
        watcher, writer = make_store(), make_store()
        got: queue.Queue = queue.Queue()
        sub = watcher.watch(got.put)
        sub.close()
        writer.update(lambda cfg: ops.add_target(cfg, T1))
        time.sleep(QUIET_PERIOD)
        assert got.empty()
        watcher.close()
        writer.close()

    # ---- gateway status -------------------------------------------------------------------------
    def test_status_reports_do_not_change_the_config_version(self, store):
        store.update(lambda cfg: ops.add_target(cfg, T1))
        status = GatewayStatus("gw1", 1, health=HEALTH_DEGRADED, message="disk rbd/x missing",
                               details={"sessions": 3})
        for _ in range(3):
            store.report_status(status, announce=True)
        assert store.read_version() == 1
        assert store.read_statuses() == {"gw1": status}

    def test_wait_applied_tells_applied_pending_and_down_apart(self, store):
        now = time.time()
        store.report_status(GatewayStatus("gw-applied", 5, heartbeat=now))
        store.report_status(GatewayStatus("gw-ahead", 6, heartbeat=now, health=HEALTH_DEGRADED,
                                          message="rbd/x: image missing"))
        store.report_status(GatewayStatus("gw-behind", 4, heartbeat=now))
        store.report_status(GatewayStatus("gw-silent", 5, heartbeat=now - 60))
        report = store.wait_applied(5, ["gw-applied", "gw-ahead", "gw-behind", "gw-silent", "gw-never"],
                                    timeout=0, dead_after=10)
        assert report.applied == ["gw-ahead", "gw-applied"]
        assert report.pending == ["gw-behind"]
        assert report.down == ["gw-never", "gw-silent"]
        assert report.degraded == {"gw-ahead": "rbd/x: image missing"} and not report.complete

    def test_announced_status_wakes_wait_applied(self, make_store):
        api, gateway = make_store(), make_store()
        api.status_poll_interval = 3 * LIVENESS  # only the announce can wake the waiter in time
        gateway.report_status(GatewayStatus("gw1", 1))
        reports = []
        waiter = threading.Thread(target=lambda: reports.append(
            api.wait_applied(2, ["gw1"], timeout=2 * LIVENESS)))
        waiter.start()
        time.sleep(QUIET_PERIOD)  # the waiter is waiting now
        gateway.report_status(GatewayStatus("gw1", 2), announce=True)
        waiter.join(LIVENESS)
        assert not waiter.is_alive(), "wait_applied slept through the announce"
        assert reports[0].complete and reports[0].applied == ["gw1"]
        api.close()
        gateway.close()

    def test_removed_status_reads_as_down(self, store):
        store.report_status(GatewayStatus("gw1", 1))
        store.remove_status("gw1")
        assert store.read_statuses() == {}
        assert store.wait_applied(1, ["gw1"], timeout=0).down == ["gw1"]

    # ---- import -----------------------------------------------------------------------------------
    def test_import_into_empty_store_keeps_document_and_epoch(self, store):
        doc = json.loads(SAMPLE_V11.read_text())
        cfg, problems = ceph_iscsi.import_document(doc)
        done = store.import_config(cfg)
        assert problems == [] and done.version == doc["epoch"] == store.read_version()
        exported = ceph_iscsi.export_document(store.load(), "plain")
        for target in exported["targets"].values():
            for portal in target["portals"].values():
                del portal["tpg_tag"]  # the one field we add
        assert exported == doc

    def test_import_refuses_to_replace_a_config_without_force(self, store):
        store.update(lambda cfg: ops.add_target(cfg, T1))
        cfg, _ = ceph_iscsi.import_document(json.loads(SAMPLE_V11.read_text()))
        with pytest.raises(AlreadyExists, match="force"):
            store.import_config(cfg)
        assert set(store.load().targets) == {T1}

    def test_forced_import_replaces_everything_and_version_only_grows(self, store):
        for n in range(3):
            store.update(lambda cfg, n=n: ops.add_target(cfg, f"iqn.2003-01.com.example:old{n}"))
        cfg, _ = ceph_iscsi.import_document(json.loads(SAMPLE_V11.read_text()))
        cfg.version = 1
        done = store.import_config(cfg, force=True)
        loaded = store.load()
        assert done.version == 4 and loaded.version == 4
        assert set(loaded.targets) == set(cfg.targets) and not loaded.stray
