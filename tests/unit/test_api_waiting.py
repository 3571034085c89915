"""Requests never all block: once ``waiting_requests`` request threads wait (for gateways or
for a task), the next ones answer at once, so the server always has threads for others.
apply_timeout is set to 600 s: a request that waited would hang the test instead of passing."""

import threading
import time

import pytest
from flask import g

from api.app import create_app
from api.context import ApiContext
from api.params import Params
from api.routing import run_task
from gateway import settings as settings_mod
from gateway.config import GatewayStatus, MemoryConfigStore
from gateway.config import operations as ops

T = "iqn.2003-01.com.example:t1"
PASSWORD = "not-the-default"


@pytest.fixture
def busy_api():
    settings = settings_mod.load("/nonexistent.cfg",
                                 overrides={"api_password": PASSWORD, "apply_timeout": 600})
    store = MemoryConfigStore()
    store.update(ops.add_target, T)
    store.update(ops.add_portal, T, "gw1.example.com", ["10.0.0.1"])
    store.report_status(GatewayStatus("gw1.example.com", applied_version=0, heartbeat=time.time() + 3600))
    ctx = ApiContext(settings, store, gateway_name="gw1.example.com", waiting_requests=1)
    app = create_app(ctx)
    assert ctx._wait_slots.acquire(blocking=False)  # another request is already waiting
    yield app, ctx
    ctx._wait_slots.release()
    ctx.close()


def test_a_change_answers_at_once_with_the_gateway_pending_when_no_thread_may_wait(busy_api):
    app, _ = busy_api
    r = app.test_client().put("/api/discoveryauth",
                              data={"username": "discoveryuser", "password": "discoverypass1"},
                              auth=("admin", PASSWORD), environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert r.status_code == 200
    body = r.get_json()
    assert body["pending"] == ["gw1.example.com"] and body["applied"] == []


def test_a_task_answers_202_at_once_when_no_thread_may_wait(busy_api):
    app, _ = busy_api
    release = threading.Event()

    def work(task):
        release.wait(30)
        return 200, {"message": "done"}

    with app.test_request_context("/x", method="PUT"):
        g.params = Params({})
        response = run_task("disk create", "rbd/d1", work)
    release.set()
    assert response.status_code == 202
    assert response.get_json()["task"]["state"] in ("queued", "running")


def test_work_off_the_request_threads_may_always_wait(busy_api):
    _, ctx = busy_api
    with ctx.wait_slot() as may_wait:
        assert may_wait is True
