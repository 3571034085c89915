"""Long operations (image create/clone/flatten, resize, rollback, delete) as tasks.

A task runs on a small pool of worker threads, apart from the HTTP threads, so a slow
rollback never holds up other requests and a burst of heavy operations queues instead of
swamping the cluster.  The request that started a task waits for it (ceph-iscsi clients
expect the answer of the finished operation), or at most ``wait`` seconds when the client
says so: it then gets 202 with the task, and follows it at ``GET /api/tasks/<id>``, which
shows the state, the progress (0..1, null when librbd cannot tell, as for rollback) and,
once done, the answer the request would have had.  Tasks live in this API process only and
are forgotten an hour after they end.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from api.errors import describe

log = logging.getLogger("api.tasks")

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
KEEP_SECONDS = 3600.0
KEEP_COUNT = 500


@dataclass
class Task:
    id: str
    kind: str
    subject: str
    state: str = QUEUED
    progress: float | None = None
    message: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    status: int | None = None
    result: dict[str, Any] | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def report(self, progress: float | None, message: str) -> None:
        """Called by the work (any thread): where it stands."""
        if progress is not None:
            progress = min(max(progress, 0.0), 1.0)
        self.progress, self.message = progress, message

    def wait(self, timeout: float | None) -> bool:
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def as_dict(self) -> dict[str, Any]:
        end = self.finished or time.time()
        return {"id": self.id, "kind": self.kind, "subject": self.subject, "state": self.state,
                "progress": self.progress, "message": self.message, "created": self.created,
                "started": self.started, "finished": self.finished,
                "elapsed": round(end - (self.started or end), 3), "status": self.status,
                "result": self.result, "url": f"/api/tasks/{self.id}"}


Work = Callable[[Task], tuple[int, dict[str, Any]]]


class TaskRegistry:
    def __init__(self, workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api-task")
        self._tasks: dict[str, Task] = {}
        self._lock = threading.Lock()
        self._serial = itertools.count(1)

    def submit(self, kind: str, subject: str, work: Work) -> Task:
        task = Task(f"{next(self._serial)}-{uuid.uuid4().hex[:8]}", kind, subject)
        with self._lock:
            self._forget_old()
            self._tasks[task.id] = task
        self._pool.submit(self._run, task, work)
        return task

    def _run(self, task: Task, work: Work) -> None:
        task.state, task.started = RUNNING, time.time()
        try:
            status, body = work(task)
        except Exception as err:  # every failure becomes the task's answer
            status, message, extra = describe(err, f"task {task.kind} {task.subject}")
            body = {"message": message, **extra}
        task.status, task.result = status, body
        task.state = DONE if status < 400 else FAILED
        if task.state == DONE:
            task.progress = 1.0
        task.message = body.get("message", "")
        task.finished = time.time()
        task._done.set()

    def get(self, task_id: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    def all(self) -> list[Task]:
        with self._lock:
            return sorted(self._tasks.values(), key=lambda t: t.created)

    def _forget_old(self) -> None:
        now = time.time()
        for tid, t in list(self._tasks.items()):
            if t.finished and now - t.finished > KEEP_SECONDS:
                del self._tasks[tid]
        while len(self._tasks) >= KEEP_COUNT:
            oldest = min((t for t in self._tasks.values() if t.finished), key=lambda t: t.finished or 0,
                         default=None)
            if oldest is None:
                break
            del self._tasks[oldest.id]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
