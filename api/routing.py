"""The blueprint every endpoint module adds to, who may call each endpoint, and the small
helpers handlers share (the request's parameters, name checks, the task runner).

Access levels, as ceph-iscsi has them: ``none`` (``GET /api``, the OpenAPI document),
``basic`` (credentials only: ``/api/sysinfo/*``, so a gateway not yet in the cluster can be
checked) and ``restricted`` (trusted source address, then credentials) for the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, g, jsonify

from api.context import ApiContext
from api.errors import ApiError
from api.params import Params
from api.tasks import Task
from gateway.config import validation

bp = Blueprint("api", __name__)
ACCESS: dict[str, str] = {}  # endpoint -> none | basic | restricted
ACCESS_LEVELS = ("none", "basic", "restricted")


def route(rule: str, methods: list[str], access: str = "restricted") -> Callable:
    """``bp.route`` that also records the endpoint's access level."""
    assert access in ACCESS_LEVELS

    def decorator(fn: Callable) -> Callable:
        ACCESS[f"{bp.name}.{fn.__name__}"] = access
        return bp.route(rule, methods=methods)(fn)

    return decorator


def ctx() -> ApiContext:
    return current_app.extensions["gateway_api"]


def params() -> Params:
    return g.params


def answer(body: dict[str, Any], status: int = 200):
    response = jsonify(body)
    response.status_code = status
    return response


def message(text: str, status: int = 200, **extra: Any):
    return answer({"message": text, **extra}, status)


# ---- names in paths and parameters ------------------------------------------------------
def target_name(iqn: str) -> str:
    return validation.normalize_iqn(iqn)


def client_name(name: str) -> str:
    return validation.normalize_initiator_name(name)


def disk_id(pool: str, image: str) -> str:
    return f"{validation.check_pool_name(pool)}/{validation.check_image_name(image)}"


def disk_param(p: Params, name: str = "disk") -> str:
    text = p.text(name, required=True, hint="the disk as pool/image")
    pool, image = validation.split_disk_name(text.strip())
    return f"{pool}/{image}"


def check(ok: bool, text: str, status: int = 400) -> None:
    if not ok:
        raise ApiError(status, text)


def dry_run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Judge a change against the current state without writing (refuse before doing RBD
    work that would have to be undone)."""
    fn(ctx().load().copy(), *args, **kwargs)


# ---- long operations ---------------------------------------------------------------------
def run_task(kind: str, subject: str, work: Callable[[Task], tuple[int, dict[str, Any]]]):
    """Run ``work`` as a task; answer its result, or 202 if it outlasts the ``wait`` parameter."""
    wait = params().number("wait", None, 0.0, 86400.0)
    app = current_app._get_current_object()

    def in_app(task: Task) -> tuple[int, dict[str, Any]]:
        with app.app_context():
            return work(task)

    task = ctx().tasks.submit(kind, subject, in_app)
    with ctx().wait_slot() as may_wait:
        finished = task.wait(wait if may_wait else 0.0)
    if finished and task.result is not None:
        return answer({**task.result, "task": task.id}, task.status or 200)
    return answer({"message": f"{kind} of {subject} is still running; follow it at /api/tasks/{task.id}",
                   "task": task.as_dict()}, 202)
