"""Shared fixtures: one mini Ceph cluster for the whole run, tier markers by directory.

Set ``MINICLUSTER_DIR`` to reuse a running cluster (it is then left running);
otherwise a cluster is created in a temporary directory and destroyed afterwards.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

from gateway.testing.minicluster import MiniCluster

TIERS = ("unit", "integration", "conformance", "system")


def pytest_collection_modifyitems(config, items):
    """Each test gets the marker of its tier directory (tests/<tier>/...)."""
    root = Path(__file__).parent
    for item in items:
        try:
            tier = Path(item.fspath).relative_to(root).parts[0]
        except ValueError:
            continue
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def ceph_cluster():
    """A running mini cluster (shared by every test of the session)."""
    given = os.environ.get("MINICLUSTER_DIR")
    if given:
        cluster = MiniCluster(given)
        cluster.start()
        yield cluster
        return
    with tempfile.TemporaryDirectory(prefix="minicluster-") as d:
        cluster = MiniCluster(d, die_with_parent=True)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.destroy()


@pytest.fixture(scope="session")
def rados_client(ceph_cluster):
    client = ceph_cluster.rados_connect()
    yield client
    client.shutdown()


@pytest.fixture
def ioctx(rados_client, ceph_cluster):
    io = rados_client.open_ioctx(ceph_cluster.pool)
    yield io
    io.close()


@pytest.fixture
def rbd_image(ioctx):
    """Name of a fresh 64 MiB RBD image in the pool, removed afterwards."""
    import rbd

    name = f"test-{uuid.uuid4().hex[:12]}"
    rbd.RBD().create(ioctx, name, 64 << 20, old_format=False,
                     features=rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK
                     | rbd.RBD_FEATURE_OBJECT_MAP | rbd.RBD_FEATURE_FAST_DIFF
                     | rbd.RBD_FEATURE_DEEP_FLATTEN)
    yield name
    try:
        with rbd.Image(ioctx, name) as img:
            for snap in list(img.list_snaps()):
                if img.is_protected_snap(snap["name"]):
                    img.unprotect_snap(snap["name"])
                img.remove_snap(snap["name"])
        rbd.RBD().remove(ioctx, name)
    except rbd.ImageNotFound:
        pass
