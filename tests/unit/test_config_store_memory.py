"""The store contract against the in-memory store, plus the asyncio follower."""

from __future__ import annotations

import asyncio

import pytest
from config_store_contract import T1, T2, ConfigStoreContract

from gateway.config import operations as ops
from gateway.config.crypto import NO_CIPHER
from gateway.config.follow import ConfigFollower
from gateway.config.store import MemoryBackend, MemoryConfigStore


@pytest.fixture
def backend():
    return MemoryBackend()


@pytest.fixture
def make_store(backend):
    return lambda cipher=NO_CIPHER: MemoryConfigStore(backend, cipher)


@pytest.fixture
def raw_values(backend):
    return lambda: dict(backend.values)


class TestMemoryStoreContract(ConfigStoreContract):
    pass


def test_follower_yields_each_new_version_from_notifies(make_store):
    store, writer = make_store(), make_store()

    async def follow():
        seen = []
        async for cfg in ConfigFollower(store, poll_interval=3600):
            seen.append(sorted(cfg.targets))
            if len(seen) == 1:
                await asyncio.to_thread(writer.update, lambda c: ops.add_target(c, T1))
            elif len(seen) == 2:
                await asyncio.to_thread(writer.update, lambda c: ops.add_target(c, T2))
            else:
                return seen

    seen = asyncio.run(asyncio.wait_for(follow(), 20))
    assert seen == [[], [T1], [T1, T2]]


def test_follower_rereads_on_its_timer_without_notifies(backend):
    store = MemoryConfigStore(backend)
    writer = MemoryConfigStore(backend)
    writer._announce = lambda version: None  # a writer whose notify got lost

    async def follow():
        versions = []
        async for cfg in ConfigFollower(store, poll_interval=0.05):
            versions.append(cfg.version)
            if len(versions) == 1:
                await asyncio.to_thread(writer.update, lambda c: ops.add_target(c, T1))
            else:
                return versions

    assert asyncio.run(asyncio.wait_for(follow(), 20)) == [0, 1]
