"""WWN kept in the RBD image metadata; following the config from asyncio over real watches."""

from __future__ import annotations

import asyncio
import errno
import queue
import uuid

import pytest
import rados
import rbd

from gateway.config import operations as ops
from gateway.config.errors import NotFound
from gateway.config.follow import ConfigFollower
from gateway.config.image_identity import WWN_METADATA_KEY, ensure_image_wwn, read_image_wwn
from gateway.config.rados_store import RadosConfigStore

T = "iqn.2003-01.com.example:t"


@pytest.fixture
def object_name(ioctx):
    name = f"identity-{uuid.uuid4().hex[:10]}.conf"
    yield name
    try:
        ioctx.remove_object(name)
    except rados.ObjectNotFound:
        pass


@pytest.fixture
def store(ioctx, object_name):
    s = RadosConfigStore(ioctx, object_name)
    yield s
    s.close()


def attach(store, ioctx, image, wwn=None):
    wwn = ensure_image_wwn(ioctx, image, wwn)
    return store.update(lambda cfg: ops.add_disk(cfg, ioctx.get_pool_name(), image, wwn)).result


def test_detach_and_attach_keep_the_wwn(store, ioctx, rbd_image):
    first = attach(store, ioctx, rbd_image)
    assert uuid.UUID(first.wwn).version == 4
    assert read_image_wwn(ioctx, rbd_image) == first.wwn
    store.update(lambda cfg: ops.remove_disk(cfg, first.name))  # detach: the config entry is gone
    assert attach(store, ioctx, rbd_image).wwn == first.wwn


def test_explicit_wwn_is_used_and_recorded_on_the_image(store, ioctx, rbd_image):
    attach(store, ioctx, rbd_image)
    assert ensure_image_wwn(ioctx, rbd_image, "serial-from-user") == "serial-from-user"
    with rbd.Image(ioctx, rbd_image) as img:
        assert img.metadata_get(WWN_METADATA_KEY) == "serial-from-user"


def test_missing_image_is_reported(ioctx):
    with pytest.raises(NotFound, match="no-such-image does not exist"):
        ensure_image_wwn(ioctx, "no-such-image")


def test_follower_gets_changes_from_another_handle_through_the_watch(ioctx, object_name):
    follower_store, writer = RadosConfigStore(ioctx, object_name), RadosConfigStore(ioctx, object_name)

    async def follow():
        seen = []
        async for cfg in ConfigFollower(follower_store, poll_interval=3600):  # no timer: notifies only
            seen.append(cfg.version)
            if len(seen) == 1:
                await asyncio.to_thread(writer.update, lambda c: ops.add_target(c, T))
            else:
                return seen

    assert asyncio.run(asyncio.wait_for(follow(), 30)) == [0, 1]
    follower_store.close()
    writer.close()


def test_watch_error_from_librados_reaches_the_subscriber(store, ioctx, object_name):
    got: queue.Queue = queue.Queue()
    sub = store.watch(got.put)
    ioctx.remove_object(object_name)  # the OSD drops its watchers: librados calls the error callback
    assert got.get(timeout=30) is None  # "re-read, you may have missed changes"
    sub.close()


def test_broken_watch_is_reestablished_by_check(store, ioctx, object_name):
    got: queue.Queue = queue.Queue()
    sub = store.watch(got.put)
    sub._on_error(0, -errno.ENOTCONN)  # what librados reports when the watch session is lost
    assert got.get(timeout=10) is None  # "re-read, you may have missed changes"
    assert sub.check()
    assert got.get(timeout=10) is None
    writer = RadosConfigStore(ioctx, object_name)
    done = writer.update(lambda c: ops.add_target(c, T))
    assert got.get(timeout=10) == done.version
    sub.close()
    writer.close()
