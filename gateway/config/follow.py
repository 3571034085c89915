"""Following the desired state from an asyncio daemon.

Watch callbacks arrive on librados threads; this turns them into an async iterator that
yields a fresh ``ClusterConfig`` whenever the version differs from the last one yielded,
on a notify or on the slow timer (the safety net for lost notifies and broken watches)::

    follower = ConfigFollower(store, poll_interval=settings.config_poll_interval)
    async for cfg in follower:
        await reconcile(cfg)

Blocking store calls run in the default executor.  A gateway should apply a config whose
version *differs* from the one it applied, not only a greater one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from gateway.config.errors import ConfigError
from gateway.config.model import ClusterConfig
from gateway.config.store import ConfigStore

log = logging.getLogger(__name__)


class ConfigFollower:
    def __init__(self, store: ConfigStore, poll_interval: float = 30.0, retry_interval: float = 2.0) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.retry_interval = retry_interval
        self.last_error: str | None = None  # for health reporting; None when the last read worked
        self.notifies = 0

    def __aiter__(self) -> AsyncIterator[ClusterConfig]:
        return self._run()

    async def _run(self) -> AsyncIterator[ClusterConfig]:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def on_notify(_version: int | None) -> None:  # a librados thread
            self.notifies += 1
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop is closed
                pass

        sub = None
        last: int | None = None
        try:
            while True:
                delay = self.poll_interval
                try:
                    if sub is None:
                        sub = await asyncio.to_thread(self.store.watch, on_notify)
                    cfg = await asyncio.to_thread(self.store.load)
                    self.last_error = None
                except ConfigError as e:
                    self.last_error = str(e)
                    log.warning("cannot read the cluster config: %s", e)
                    delay = self.retry_interval
                else:
                    if cfg.version != last:
                        last = cfg.version
                        yield cfg
                try:
                    await asyncio.wait_for(wake.wait(), delay)
                except TimeoutError:
                    if sub is not None:
                        await asyncio.to_thread(sub.check)  # never raises; logs and retries later
                wake.clear()
        finally:
            if sub is not None:
                sub.close()
