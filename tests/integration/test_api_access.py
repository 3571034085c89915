"""Every endpoint of the real rbd-target-api process, for every method: 401 without
credentials, 403 from an untrusted source (naming it), 405 for a method it does not take,
all as JSON ``{"message": ...}``; the open endpoints answer anyone."""

import pytest
from support.api_fixtures import api_env  # noqa: F401 - fixture
from support.harness import ApiClient

from api import openapi

UNTRUSTED = "127.0.7.200"
ALL_METHODS = ("GET", "PUT", "DELETE", "POST")


def concrete(path: str) -> str:
    for name, example in openapi.EXAMPLES.items():
        path = path.replace("{" + name + "}", example)
    return path


OPS = [(op.method, op.path, op.access) for op in openapi.OPS]
PATHS = sorted({op.path for op in openapi.OPS})


@pytest.mark.parametrize("method, path, access", OPS, ids=[f"{m} {p}" for m, p, _ in OPS])
def test_credentials_are_required_where_ceph_iscsi_requires_them(api_env, method, path, access):
    anonymous = api_env.api.client(auth=None)
    r = anonymous.request(method, concrete(path))
    if access == "none":
        assert r.status_code == 200, r.text
        return
    assert r.status_code == 401, r.text
    assert r.json() == {"message": "Missing credentials"}
    wrong = api_env.api.client(auth=("admin", "wrong-password"))
    r = wrong.request(method, concrete(path))
    assert r.status_code == 401
    assert r.json() == {"message": "username/password mismatch with the configuration file"}


@pytest.mark.parametrize("method, path, access", OPS, ids=[f"{m} {p}" for m, p, _ in OPS])
def test_untrusted_sources_are_refused_on_restricted_endpoints(api_env, method, path, access):
    outsider: ApiClient = api_env.api.client(source=UNTRUSTED)
    r = outsider.request(method, concrete(path))
    if access == "restricted":
        assert r.status_code == 403, r.text
        assert r.json() == {"message": f"API access not available to {UNTRUSTED}"}
    else:
        assert r.status_code != 403, r.text


@pytest.mark.parametrize("path", PATHS)
def test_methods_an_endpoint_does_not_take_get_405(api_env, path):
    allowed = {op.method for op in openapi.OPS if op.path == path}
    for method in sorted(set(ALL_METHODS) - allowed):
        r = api_env.client.request(method, concrete(path))
        assert r.status_code == 405, (method, path, r.text)
        assert r.json()["message"].startswith(f"method {method} is not allowed")
        assert set(allowed) <= {m.strip() for m in r.headers["Allow"].split(",")}
