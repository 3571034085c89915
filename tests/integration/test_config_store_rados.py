"""The store contract against RADOS, plus what only the RADOS store does."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
import rados
from config_store_contract import SAMPLE_V11, T1, ConfigStoreContract, build_sample

from gateway.config import ceph_iscsi, codec
from gateway.config import operations as ops
from gateway.config.crypto import NO_CIPHER
from gateway.config.errors import AlreadyExists
from gateway.config.rados_store import END_KEY, RadosConfigStore
from gateway.config.status import GatewayStatus


@pytest.fixture
def object_name(rados_client, ceph_cluster):
    name = f"test-{uuid.uuid4().hex[:10]}.conf"
    yield name
    with rados_client.open_ioctx(ceph_cluster.pool) as io:
        for obj in (name, f"{name}.status"):
            try:
                io.remove_object(obj)
            except rados.ObjectNotFound:
                pass


@pytest.fixture
def make_store(rados_client, ceph_cluster, object_name):
    stores = []

    def make(cipher=NO_CIPHER, **kw):
        stores.append(RadosConfigStore(rados_client.open_ioctx(ceph_cluster.pool), object_name,
                                       cipher=cipher, **kw))
        return stores[-1]
    yield make
    for store in stores:
        store.close()
        store.ioctx.close()


@pytest.fixture
def raw_values(ioctx, object_name):
    def read():
        with rados.ReadOpCtx() as op:
            it, _ = ioctx.get_omap_vals(op, "", "", 10000)
            ioctx.operate_read_op(op, object_name)
            return {k: v for k, v in it if k not in (codec.VERSION_KEY, codec.UPDATED_KEY, END_KEY)}
    return read


class TestRadosStoreContract(ConfigStoreContract):
    pass


def test_reads_over_many_pages_are_consistent(make_store):
    store = make_store(page_size=2)
    done = store.update(build_sample)
    assert store.load() == done.config


def test_reads_are_complete_when_the_osd_returns_shorter_pages_than_asked(make_store, ceph_cluster):
    store = make_store()
    done = store.update(build_sample)
    for n in range(3):
        store.report_status(GatewayStatus(f"gw{n}", 1))
    ceph_cluster.ceph("tell", "osd.0", "config", "set", "osd_max_omap_entries_per_request", "3")
    try:
        assert store.load() == done.config
        assert set(store.read_statuses()) == {"gw0", "gw1", "gw2"}
    finally:
        ceph_cluster.ceph("tell", "osd.0", "config", "set", "osd_max_omap_entries_per_request", "1024")


def test_read_restarts_when_a_commit_lands_between_pages(make_store):
    reader, writer = make_store(page_size=2), make_store()
    writer.update(build_sample)
    real_read_page = reader._read_page
    calls = []

    def read_page_with_interleaved_commit(obj, start, head_keys):
        calls.append(start)
        if len(calls) == 2:  # after the first page, another gateway commits
            writer.update(lambda cfg: ops.set_target_controls(cfg, T1, {"cmdsn_depth": 64}))
        return real_read_page(obj, start, head_keys)

    reader._read_page = read_page_with_interleaved_commit
    cfg = reader.load()
    assert calls.count("") == 2  # started over
    assert cfg == writer.load() and cfg.targets[T1].controls["cmdsn_depth"] == 64


def test_unknown_keys_are_reported_and_survive_rewrites(make_store, ioctx, object_name):
    store = make_store()
    store.update(lambda cfg: ops.add_target(cfg, T1))
    with rados.WriteOpCtx() as op:
        ioctx.set_omap(op, ("future-kind/x", "lun/iqn.2003-01.com.example:gone/rbd/d"), (b"{}", b"{}"))
        ioctx.operate_write_op(op, object_name)
    cfg = store.load()
    assert set(cfg.stray) == {"future-kind/x", "lun/iqn.2003-01.com.example:gone/rbd/d"}
    store.update(lambda cfg: ops.set_target_controls(cfg, T1, {"cmdsn_depth": 64}))
    assert set(store.load().stray) == set(cfg.stray)


def _write_legacy_blob(ioctx, object_name) -> bytes:
    blob = SAMPLE_V11.read_bytes()
    ioctx.write_full(object_name, blob)
    return blob


def test_open_imports_a_ceph_iscsi_blob_once_and_leaves_it_untouched(make_store, ioctx, object_name):
    blob = _write_legacy_blob(ioctx, object_name)
    store = make_store()
    assert "imported" in store.open()
    doc = json.loads(blob)
    assert store.read_version() == doc["epoch"]
    assert set(store.load().targets) == set(doc["targets"])
    assert make_store().open() == "ready"  # a second gateway finds it done
    assert ioctx.read(object_name, length=len(blob) + 1) == blob


def test_open_on_fresh_pool_creates_an_empty_store(make_store, ioctx, object_name):
    store = make_store()
    assert store.open() == "ready"
    assert ioctx.stat(object_name)[0] == 0 and store.read_version() == 0


def test_legacy_import_refuses_to_overwrite_without_force(make_store, ioctx, object_name):
    _write_legacy_blob(ioctx, object_name)
    store = make_store()
    store.update(lambda cfg: ops.add_target(cfg, T1))
    with pytest.raises(AlreadyExists):
        store.import_legacy()
    done, _ = store.import_legacy(force=True)
    assert T1 not in store.load().targets and done.version > 1


def test_cli_imports_the_blob_and_exports_it_back(ceph_cluster, ioctx, object_name, tmp_path):
    blob = _write_legacy_blob(ioctx, object_name)
    cfg_file = tmp_path / "iscsi-gateway.cfg"
    cfg_file.write_text(f"[config]\npool = {ceph_cluster.pool}\ngateway_conf = {object_name}\n"
                        f"ceph_config_dir = {tmp_path}\n")
    base = [sys.executable, "-X", "faulthandler", "-m", "gateway.config", "--cfg", str(cfg_file),
            "--ceph-conf", str(ceph_cluster.conf_path), "--keyring", str(ceph_cluster.admin_keyring)]
    run = subprocess.run([*base, "import"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "imported as version 57" in run.stdout
    again = subprocess.run([*base, "import"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "force" in again.stderr
    out = tmp_path / "export.json"
    run = subprocess.run([*base, "export", str(out)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    exported = json.loads(out.read_text())
    for target in exported["targets"].values():
        for portal in target["portals"].values():
            del portal["tpg_tag"]
    assert exported == json.loads(blob)
    shown = subprocess.run([*base, "show"], capture_output=True, text=True, timeout=60)
    assert "myiscsipassword" not in shown.stdout and ceph_iscsi.REDACTED in shown.stdout
