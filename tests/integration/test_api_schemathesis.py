"""schemathesis against /api/openapi.json of a real rbd-target-api with valid credentials:
no input, however malformed, gets a 5xx; every answer has a documented status code, is
JSON, and matches its documented schema.

Its own API process, config object and gateways: fuzzing changes the cluster config at will.
Examples are derandomized so CI runs are reproducible.  To dig deeper locally:
``API_FUZZ_EXAMPLES=300 API_FUZZ_RANDOM=1 .venv/bin/python -m pytest \
tests/integration/test_api_schemathesis.py``
"""

import os

import rados
import rbd
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from support.api_fixtures import api_env  # noqa: F401 - fixture
from support.harness import API_PASSWORD

MAX_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "25"))
DERANDOMIZE = not os.environ.get("API_FUZZ_RANDOM")
CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance)

schema = schemathesis.from_pytest_fixture("api_schema")


def _forget_fuzzed_disks(env) -> None:
    """Delete every image the fuzzer registered (they live in the shared pool)."""
    cfg = env.store.load()
    for disk in cfg.disks.values():
        try:
            with env.cluster.open_ioctx(disk.pool) as io:
                try:
                    with rbd.Image(io, disk.image) as img:
                        for snap in list(img.list_snaps()):
                            if img.is_protected_snap(snap["name"]):
                                img.unprotect_snap(snap["name"])
                            img.remove_snap(snap["name"])
                    rbd.RBD().remove(io, disk.image)
                except rbd.ImageNotFound:
                    pass
        except rados.ObjectNotFound:
            pass


import pytest  # noqa: E402


@pytest.fixture
def api_schema(api_env):
    return schemathesis.from_uri(f"{api_env.api.base}/api/openapi.json", base_url=api_env.api.base)


@pytest.fixture(scope="module", autouse=True)
def _cleanup(api_env):
    yield
    _forget_fuzzed_disks(api_env)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=DERANDOMIZE, database=None,
          suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
def test_no_input_gets_a_server_error(case, api_env):
    response = case.call(auth=("admin", API_PASSWORD), timeout=120)
    case.validate_response(response, checks=CHECKS)
