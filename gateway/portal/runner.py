"""Running one SCSI command's coroutine without an asyncio Task.

A command either completes without waiting (memory backend, most errors) or waits once or
twice on a future (a librbd completion).  An asyncio Task per command costs its creation,
its registration in the loop's weak set of tasks, one loop iteration before its first step
and a wake-up handle per wait: about a fifth of the portal's CPU per 4 KiB read.
:class:`CommandRun` runs the first step at once, inside the receive callback (a READ reaches
librbd in the same loop iteration its PDU arrived in), and resumes the coroutine straight
from the done callback of the future it awaits.

It offers what the portal needs of a task: :meth:`done`, :meth:`cancel` (CancelledError
delivered where the coroutine waits, as ``Task.cancel`` does) and :meth:`future`, a future
to wait on for task management and logout, made only when someone asks.

Python 3.12 has eager tasks for this, and its ``asyncio.wait_for``/``asyncio.timeout`` need a
current task, which this driver does not provide: :func:`start_command` uses eager tasks there.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)

EAGER_TASKS = sys.version_info >= (3, 12)


class CommandRun:
    """Drives one coroutine to completion on ``loop``; see the module docstring."""

    __slots__ = ("_coro", "_loop", "_ctx", "_waiting", "_done", "_cancel", "_fut")

    def __init__(self, coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop,
                 ctx: contextvars.Context) -> None:
        self._coro = coro
        self._loop = loop
        self._ctx = ctx
        self._waiting: asyncio.Future | None = None
        self._done = False
        self._cancel = False
        self._fut: asyncio.Future | None = None
        self._step()

    def _step(self, _fut: Any = None) -> None:
        self._waiting = None
        try:
            if self._cancel:
                self._cancel = False
                yielded = self._coro.throw(asyncio.CancelledError())
            else:
                yielded = self._coro.send(None)
        except (StopIteration, asyncio.CancelledError):
            self._done = True
            if self._fut is not None:
                self._finish()
            return
        except Exception:  # the command coroutine handles its errors; this is a bug
            self._finish()
            log.exception("SCSI command coroutine failed")
            return
        except BaseException:  # KeyboardInterrupt, SystemExit: as a Task, let them through
            self._finish()
            raise
        if yielded is None:  # a bare yield (asyncio.sleep(0)): run again next iteration
            self._loop.call_soon(self._step, context=self._ctx)
            return
        if getattr(yielded, "_asyncio_future_blocking", None) is None:  # not a future: a bug
            self._coro.close()
            self._finish()
            log.error("a SCSI command awaited %r, which is not a future", yielded)
            return
        yielded._asyncio_future_blocking = False
        self._waiting = yielded
        yielded.add_done_callback(self._step, context=self._ctx)

    def _finish(self) -> None:
        self._done = True
        fut = self._fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def done(self) -> bool:
        return self._done

    def cancel(self) -> bool:
        """Deliver CancelledError where the coroutine waits (or at its next step)."""
        if self._done:
            return False
        waiting = self._waiting
        if waiting is None or not waiting.cancel():
            self._cancel = True
        return True

    def future(self) -> asyncio.Future:
        """A future done when the command is (for asyncio.wait)."""
        if self._fut is None:
            self._fut = self._loop.create_future()
            if self._done:
                self._fut.set_result(None)
        return self._fut


def start_command(coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop,
                  ctx: contextvars.Context) -> CommandRun | asyncio.Task:
    """Start a command's coroutine now; returns its handle (done/cancel, waitable())."""
    if EAGER_TASKS:
        return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg]
    return CommandRun(coro, loop, ctx)


def waitable(handle: CommandRun | asyncio.Future) -> asyncio.Future:
    """What asyncio.wait() takes for a handle of :func:`start_command` or a task."""
    return handle.future() if isinstance(handle, CommandRun) else handle
