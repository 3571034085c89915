"""Where reservation state lives: the store interface and the in-memory store.

A store holds one :class:`ReservationState` per disk.  ``update`` applies a
mutation atomically (compare-and-set in RADOS, so two gateways changing a
reservation at once never lose an update) and, before it returns, makes every
subscriber -- one per gateway serving the disk -- see the new state.  That is
what lets every gateway enforce the same reservation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from .prstate import ReservationState

T = TypeVar("T")
Subscriber = Callable[[ReservationState], None]


class StoreError(Exception):
    """The reservation state could not be read or written (the cluster is unreachable)."""


class ReservationStore(Protocol):
    async def load(self) -> ReservationState:
        """The current state, read from the source of truth (not a cache)."""
        ...

    async def update(self, mutate: Callable[[ReservationState], T]) -> tuple[ReservationState, T]:
        """Apply ``mutate`` to a copy of the current state and store it atomically.

        ``mutate`` may raise (ReservationConflict, CheckCondition): nothing is
        stored then.  Returns the stored state and ``mutate``'s result.  When
        the state changed, ``seq`` is incremented and subscribers are told
        before this returns.
        """
        ...

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(state)`` (possibly from another thread) on every change;
        returns an unsubscribe function."""
        ...

    async def close(self) -> None: ...


class MemoryReservationStore:
    """In-process store; share one instance between disks to model several gateways."""

    def __init__(self, state: ReservationState | None = None) -> None:
        self._state = state or ReservationState()
        self._subscribers: list[Subscriber] = []

    async def load(self) -> ReservationState:
        return self._state.copy()

    async def update(self, mutate: Callable[[ReservationState], T]) -> tuple[ReservationState, T]:
        before = self._state.to_json()
        state = self._state.copy()
        result = mutate(state)
        if state.to_json() != before:
            state.seq += 1
            self._state = state
            for cb in list(self._subscribers):
                cb(state)
        return state, result

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    async def close(self) -> None:
        self._subscribers.clear()
