"""HTTP to the local ``rbd-target-api``: requests, errors, and the apply report of a change.

Requests are form-encoded as ceph-iscsi's API expects (lists comma-separated, ``controls``
as a JSON string).  Every failure becomes an ``ApiError`` carrying the API's own message,
which gwcli prints as is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
import urllib3

# The API's certificate is usually self-signed and shared by the gateways (as in ceph-iscsi);
# verification follows api_ssl_verify, and the warning would drown every command's output.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

DEFAULT_TIMEOUT = 120.0
# A change waits for the gateways (apply_timeout) and may do RBD work before answering.
CHANGE_TIMEOUT = 600.0
TASK_POLL_INTERVAL = 0.5
# A long operation (image create, rollback...) answers 202 after this many seconds and is
# then followed at /api/tasks/<id>, so gwcli can show its progress.
TASK_WAIT = 2


class ApiError(Exception):
    """The API refused or failed a request; ``message`` is the API's own text."""

    def __init__(self, message: str, status: int | None = None, url: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.url = url


class ApiUnreachable(ApiError):
    """No HTTP answer at all (connection refused, timeout, TLS failure)."""


@dataclass
class ChangeReport:
    """What the API says about a change: applied on which gateways, pending on which.

    ``pending``: alive gateways that had not applied it when the API stopped waiting;
    ``down``: gateways without a heartbeat.  Both converge later; neither is an error.
    """

    message: str = ""
    applied: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    down: list[str] = field(default_factory=list)
    degraded: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: Any) -> ChangeReport:
        if not isinstance(body, Mapping):
            return cls(body={"message": str(body)} if body is not None else {})

        def names(key: str) -> list[str]:
            value = body.get(key) or []
            if isinstance(value, str):
                return [v for v in value.split(",") if v]
            if isinstance(value, Mapping):
                return sorted(str(k) for k in value)
            return [str(v) for v in value]

        degraded = body.get("degraded") or {}
        if not isinstance(degraded, Mapping):
            degraded = {str(name): "" for name in degraded}
        return cls(message=str(body.get("message", "")), applied=names("applied"),
                   pending=names("pending"), down=names("down"),
                   degraded={str(k): str(v) for k, v in degraded.items()}, body=dict(body))

    def outcome(self) -> str:
        """``ok``, or ``ok (pending on gw2: down, gw3: applying)``."""
        waiting = [f"{name}: down" for name in self.down]
        waiting += [f"{name}: applying" for name in self.pending if name not in self.down]
        return f"ok (pending on {', '.join(waiting)})" if waiting else "ok"

    def warnings(self) -> list[str]:
        return [f"{name} applied it with problems: {msg or 'degraded'}"
                for name, msg in sorted(self.degraded.items())]


def form_value(value: Any) -> str:
    """One form field: bools as true/false, lists comma-separated, dicts as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set)):
        return ",".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True)
    return str(value)


def path_part(text: str) -> str:
    """A path element of an API URL (IQNs keep their ``:``; a pool/image keeps its ``/``)."""
    return quote(text, safe=":/@")


class ApiClient:
    """A session to one API endpoint (``http(s)://localhost:<api_port>``) with Basic auth."""

    def __init__(self, base_url: str, user: str, password: str, *, verify: bool = False,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/api"):
            self.base_url += "/api"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.auth = (user, password)
        self.session.verify = verify
        # The local API only: never a proxy from the environment.
        self.session.trust_env = False

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(self, method: str, path: str, data: Mapping[str, Any] | None = None,
                params: Mapping[str, Any] | None = None, timeout: float | None = None) -> requests.Response:
        form = {k: form_value(v) for k, v in (data or {}).items() if v is not None}
        url = self.url(path)
        try:
            return self.session.request(method, url, data=form or None, params=params,
                                        timeout=timeout or self.timeout)
        except requests.exceptions.SSLError as e:
            raise ApiUnreachable(f"TLS failure talking to {url}: {e}. Is api_secure the same as the "
                                 "API's?", None, url) from None
        except requests.exceptions.RequestException as e:
            raise ApiUnreachable(f"Unable to contact the API at {url}: {type(e).__name__}", None,
                                 url) from None

    def get(self, path: str, params: Mapping[str, Any] | None = None, timeout: float | None = None) -> Any:
        response = self.request("GET", path, params=params, timeout=timeout)
        self._raise_for(response)
        return _json(response)

    def change(self, method: str, path: str, data: Mapping[str, Any] | None = None,
               progress: Callable[[str], None] | None = None) -> ChangeReport:
        """PUT/DELETE a change and return its apply report; waits for a long task to end.

        With ``progress``, the API is asked (``wait``) to answer 202 for a long operation,
        which is then followed and its progress shown.
        """
        if progress is not None:
            data = {**(data or {}), "wait": TASK_WAIT}
        response = self.request(method, path, data=data, timeout=max(self.timeout, CHANGE_TIMEOUT))
        self._raise_for(response)
        body = _json(response)
        task = _task_ref(response, body)
        if response.status_code == 202 and task:
            body = self.wait_task(task, progress)
        return ChangeReport.from_body(body)

    def put(self, path: str, data: Mapping[str, Any] | None = None,
            progress: Callable[[str], None] | None = None) -> ChangeReport:
        return self.change("PUT", path, data, progress)

    def delete(self, path: str, data: Mapping[str, Any] | None = None,
               progress: Callable[[str], None] | None = None) -> ChangeReport:
        return self.change("DELETE", path, data, progress)

    def wait_task(self, task: str, progress: Callable[[str], None] | None = None) -> Any:
        """Poll a long operation (``GET /api/tasks/<id>``) until it ends; its final answer."""
        path = task if "/" in task else f"tasks/{path_part(task)}"
        for prefix in (self.base_url + "/", "/api/"):
            if path.startswith(prefix):
                path = path[len(prefix):]
        while True:
            body = self.get(path)
            if not isinstance(body, Mapping):
                raise ApiError(f"Malformed task report from {self.url(path)}", None, self.url(path))
            state = str(body.get("state", "")).lower()
            if state in ("done", "finished", "succeeded"):
                result = body.get("result")
                return result if isinstance(result, Mapping) else body
            if state in ("failed", "error", "aborted"):
                result = body.get("result") if isinstance(body.get("result"), Mapping) else {}
                raise ApiError(str(result.get("message") or body.get("message") or f"task {task} {state}"),
                               body.get("status") if isinstance(body.get("status"), int) else None,
                               self.url(path))
            if progress is not None:
                progress(_progress_text(body))
            time.sleep(TASK_POLL_INTERVAL)

    @staticmethod
    def _raise_for(response: requests.Response) -> None:
        if 200 <= response.status_code < 300:
            return
        raise ApiError(error_message(response), response.status_code, response.url)


def error_message(response: requests.Response) -> str:
    """The API's message (``{"message": ...}``), else the HTTP status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        for key in ("message", "error", "data"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, list) and value:
                return "; ".join(str(v) for v in value)
    text = response.text.strip()
    if text and len(text) < 300 and not text.lstrip().startswith("<"):
        return f"{response.status_code} {text}"
    return f"{response.status_code} {response.reason}"


def _json(response: requests.Response) -> Any:
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        raise ApiError(f"Malformed REST API response from {response.url} (not JSON)",
                       response.status_code, response.url) from None


def _task_ref(response: requests.Response, body: Any) -> str:
    """Where to follow a long operation: the task's URL or id (a dict or a string)."""
    if isinstance(body, Mapping):
        task = body.get("task")
        if isinstance(task, Mapping):
            return str(task.get("url") or task.get("id") or "")
        if task:
            return str(task)
    return response.headers.get("Location", "")


def _progress_text(body: Mapping[str, Any]) -> str:
    progress = body.get("progress")
    message = str(body.get("message", "") or f"{body.get('kind', 'task')} {body.get('state', 'running')}")
    if isinstance(progress, (int, float)) and not isinstance(progress, bool):
        return f"{message} {progress * 100:.0f}%"
    return message
