"""The OpenAPI document describes exactly the app's routes, and docs/openapi.json is current."""

import json
from pathlib import Path

from api import openapi
from api.app import create_app
from api.context import ApiContext
from api.routing import ACCESS
from gateway import settings as settings_mod
from gateway.config import MemoryConfigStore

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def app_rules() -> set[tuple[str, str]]:
    settings = settings_mod.load("/nonexistent.cfg", overrides={"api_password": "x"})
    app = create_app(ApiContext(settings, MemoryConfigStore(), gateway_name="gw1"))
    return {(m, r.rule) for r in app.url_map.iter_rules() if r.endpoint != "static"
            for m in r.methods if m not in ("HEAD", "OPTIONS")}


def test_docs_copy_equals_the_served_document():
    assert json.loads(DOC.read_text()) == json.loads(json.dumps(openapi.document())), \
        "regenerate: .venv/bin/python -m api.openapi > docs/openapi.json"


def test_every_route_and_method_is_described_and_nothing_else():
    assert app_rules() == openapi.flask_rules()


def test_documented_access_levels_match_the_app():
    endpoints = {}
    settings = settings_mod.load("/nonexistent.cfg", overrides={"api_password": "x"})
    app = create_app(ApiContext(settings, MemoryConfigStore(), gateway_name="gw1"))
    for rule in app.url_map.iter_rules():
        endpoints[rule.rule] = ACCESS.get(rule.endpoint, "restricted")
    for op in openapi.OPS:
        assert endpoints[op.path.replace("{", "<").replace("}", ">")] == op.access, op.path


def test_every_operation_documents_its_error_codes_and_auth():
    doc = openapi.document()
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            codes = set(op["responses"])
            assert "200" in codes
            if op["security"]:
                assert {"401"} <= codes, (method, path)
            if any(p["in"] == "path" for p in op["parameters"]):
                assert "404" in codes or path.startswith("/api/sysinfo"), (method, path)
