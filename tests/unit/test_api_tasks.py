"""Long operations run off the request threads and report progress and their outcome."""

import threading

from api.errors import ApiError
from api.tasks import TaskRegistry
from gateway.config.errors import NotFound, StoreError


def test_a_task_reports_progress_while_running_and_its_answer_when_done():
    tasks = TaskRegistry(workers=2)
    go, seen = threading.Event(), threading.Event()

    def work(task):
        task.report(0.25, "a quarter")
        seen.set()
        go.wait(10)
        return 200, {"message": "done it"}

    try:
        task = tasks.submit("disk create", "rbd/d1", work)
        assert seen.wait(10)
        assert not task.wait(0.01)
        view = tasks.get(task.id).as_dict()
        assert (view["state"], view["progress"], view["message"]) == ("running", 0.25, "a quarter")
        go.set()
        assert task.wait(10)
        view = task.as_dict()
        assert (view["state"], view["progress"], view["status"]) == ("done", 1.0, 200)
        assert view["result"] == {"message": "done it"} and view["url"] == f"/api/tasks/{task.id}"
        assert [t.id for t in tasks.all()] == [task.id]
    finally:
        tasks.shutdown()


def test_failures_become_the_tasks_answer_with_the_api_status():
    tasks = TaskRegistry(workers=1)
    try:
        cases = [(ApiError(409, "busy"), 409), (NotFound("no such image"), 404), (StoreError("down"), 503),
                 (RuntimeError("bug"), 500)]
        for err, status in cases:
            def work(task, err=err):
                raise err
            task = tasks.submit("disk delete", "rbd/d1", work)
            assert task.wait(10)
            assert (task.state, task.status) == ("failed", status)
            assert task.result["message"]
    finally:
        tasks.shutdown()
