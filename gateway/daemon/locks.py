"""Who holds a disk's exclusive lock as ownership moves, and lock thrashing.

The write path (``tcmu_handler.lock``) moves the lock on demand: a write through a gateway
that does not hold it asks the holder to hand it over (the holder finishes its writes and
releases; nobody is fenced) and breaks the lock -- fencing the holder -- only when the holder
does not answer within ``lock_handoff_timeout``.  The daemon adds the planned moves:

* a gateway that becomes a disk's owner (start, ``set_lun_owner``, drain, a gateway
  removed) takes the lock *if it is free* -- it never asks or fences a holder, which keeps
  serving the initiator until it writes through the new owner;
* a gateway that stops being the owner releases the lock (after the writes it admitted),
  so the new owner finds it free: a drain moves the lock without fencing anyone.

``LockMoveMonitor`` applies ceph-iscsi's device-status rule to the lock moves this gateway
sees (taken + lost, handoffs included): ``lock_lost_cnt_threshhold`` moves between two polls
(``status_check_interval``) mark the disk as thrashing ("excessive failovers");
``stable_state_reset_count`` quiet polls clear it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from tcmu_handler.disk import ScsiDisk

log = logging.getLogger(__name__)


class LockKeeper:
    """Takes or releases a disk's lock when this gateway's ownership of it changes."""

    #: how long a new owner keeps trying to take a lock the old owner is about to release
    take_window = 10.0
    retry_interval = 0.5

    def __init__(self) -> None:
        self._jobs: dict[str, asyncio.Task] = {}

    def owner_changed(self, name: str, disk: ScsiDisk, owner: bool) -> None:
        if disk.lock is None:
            return
        self.forget(name)
        job = asyncio.get_running_loop().create_task(self._take(disk) if owner else self._give(disk))
        self._jobs[name] = job
        job.add_done_callback(lambda j: self._jobs.pop(name, None) if self._jobs.get(name) is j else None)

    async def _take(self, disk: ScsiDisk) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.take_window
        while True:
            if await disk.lock.try_acquire():
                return
            if loop.time() >= deadline:
                log.info("%s: the exclusive lock stays with its holder; the first write here takes it",
                         disk.name)
                return
            await asyncio.sleep(self.retry_interval)

    async def _give(self, disk: ScsiDisk) -> None:
        await disk.lock.release()

    def forget(self, name: str) -> None:
        job = self._jobs.pop(name, None)
        if job is not None and not job.done():
            job.cancel()

    async def close(self) -> None:
        jobs = list(self._jobs.values())
        self._jobs.clear()
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)


@dataclass
class _Track:
    last_total: int
    thrashing: bool = False
    quiet_polls: int = 0
    last_delta: int = 0


class LockMoveMonitor:
    """Lock moves per disk between polls; thrashing when a poll sees ``threshold`` or more."""

    def __init__(self, threshold: int = 12, reset_after: int = 3) -> None:
        self.threshold = threshold
        self.reset_after = reset_after
        self.tracks: dict[str, _Track] = {}
        self.episodes: dict[str, int] = {}  # times each disk started thrashing

    def poll(self, totals: dict[str, int]) -> list[str]:
        """Feed each disk's lock moves so far; returns the disks that just started thrashing."""
        started = []
        for name in list(self.tracks):
            if name not in totals:
                del self.tracks[name]
        for name, total in totals.items():
            track = self.tracks.get(name)
            if track is None:
                self.tracks[name] = _Track(total)
                continue
            delta = max(0, total - track.last_total)
            track.last_total, track.last_delta = total, delta
            if delta >= self.threshold:
                track.quiet_polls = 0
                if not track.thrashing:
                    track.thrashing = True
                    self.episodes[name] = self.episodes.get(name, 0) + 1
                    started.append(name)
            elif track.thrashing:
                track.quiet_polls += 1
                if track.quiet_polls >= self.reset_after:
                    track.thrashing = False
                    log.info("%s: lock moves back to normal", name)
        return started

    def thrashing(self, name: str) -> bool:
        track = self.tracks.get(name)
        return bool(track and track.thrashing)
