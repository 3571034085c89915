"""Who may call the API: credentials, trusted sources in every address spelling, and the
status codes and messages ceph-iscsi clients expect (Flask app over the memory store)."""

import ipaddress

import pytest

from api.app import create_app
from api.auth import SourcePolicy, credentials_match, credentials_problem, normalize_address, parse_trusted
from api.context import ApiContext
from gateway import settings as settings_mod
from gateway.config import MemoryConfigStore
from gateway.config import operations as ops

PASSWORD = "not-the-default"
T = "iqn.2003-01.com.example:t1"


def make_settings(**values):
    return settings_mod.load("/nonexistent.cfg", overrides={"api_password": PASSWORD, **values})


@pytest.fixture
def api():
    store = MemoryConfigStore()
    ctx = ApiContext(make_settings(trusted_ip_list="192.168.1.0/24,2001:db8::10,::ffff:10.7.7.7"), store,
                     gateway_name="gw1.example.com")
    ctx.start()
    app = create_app(ctx)
    yield app.test_client(), store
    ctx.close()


def call(client, path, addr, method="GET", auth=("admin", PASSWORD), **kw):
    headers = {}
    if auth is not None:
        import base64
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    return client.open(path, method=method, headers=headers, environ_base={"REMOTE_ADDR": addr}, **kw)


def test_default_credentials_refused_unless_allowed_for_a_demo():
    assert "admin/admin" in credentials_problem(settings_mod.load("/nonexistent.cfg"))
    demo = settings_mod.load("/nonexistent.cfg", overrides={"allow_default_api_password": "true"})
    assert credentials_problem(demo) is None
    assert "must be set" in credentials_problem(make_settings(api_password=""))
    assert credentials_problem(make_settings()) is None


def test_credentials_must_match_both_fields():
    s = make_settings()
    assert credentials_match(s, "admin", PASSWORD)
    assert not credentials_match(s, "admin", PASSWORD + "x")
    assert not credentials_match(s, "root", PASSWORD)
    assert not credentials_match(s, None, None)


@pytest.mark.parametrize("text, expected", [
    ("10.1.2.3", "10.1.2.3"), ("::ffff:10.1.2.3", "10.1.2.3"), ("::FFFF:10.1.2.3", "10.1.2.3"),
    ("fe80::1%eth0", "fe80::1"), ("[2001:db8::1]", "2001:db8::1"), ("2001:0DB8:0:0:0:0:0:1", "2001:db8::1"),
    ("not an address", None), ("", None), (None, None),
])
def test_peer_addresses_normalise(text, expected):
    got = normalize_address(text)
    assert (str(got) if got is not None else None) == expected


def test_trusted_entries_are_addresses_or_networks():
    nets = parse_trusted(["192.168.1.0/24", "::ffff:10.0.0.5", "2001:db8::1"])
    assert [str(n) for n in nets] == ["192.168.1.0/24", "10.0.0.5/32", "2001:db8::1/128"]
    with pytest.raises(ValueError, match="'gw1.example.com' is not an IP address"):
        parse_trusted(["gw1.example.com"])


@pytest.mark.parametrize("addr", ["192.168.1.77", "::ffff:192.168.1.77", "2001:0db8::0010", "10.7.7.7",
                                  "::ffff:10.7.7.7", "127.0.0.1", "::1"])
def test_trusted_sources_in_any_spelling_are_let_in(api, addr):
    client, _ = api
    r = call(client, "/api/targets", addr)
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"targets": []}


@pytest.mark.parametrize("addr, shown", [("10.9.9.9", "10.9.9.9"), ("::ffff:10.9.9.9", "10.9.9.9"),
                                         ("2001:db8::11", "2001:db8::11"), ("fe80::5%eth1", "fe80::5")])
def test_untrusted_sources_get_403_naming_the_address(api, addr, shown):
    client, _ = api
    r = call(client, "/api/targets", addr)
    assert r.status_code == 403
    assert r.get_json() == {"message": f"API access not available to {shown}"}
    # checked before credentials, as in ceph-iscsi
    assert call(client, "/api/targets", addr, auth=None).status_code == 403


def test_a_gateway_portal_address_is_trusted_once_configured(api):
    client, store = api
    assert call(client, "/api/targets", "10.5.5.5").status_code == 403
    store.update(ops.add_target, T)
    store.update(ops.add_portal, T, "gw2.example.com", ["10.5.5.5"])
    policy: SourcePolicy = client.application.extensions["gateway_api"].sources
    policy.mark_stale()  # as the store's watch does (delivered on another thread)
    policy._last_attempt = 0.0
    assert call(client, "/api/targets", "10.5.5.5").status_code == 200


def test_missing_or_wrong_credentials_get_401_with_ceph_iscsi_messages(api):
    client, _ = api
    r = call(client, "/api/targets", "127.0.0.1", auth=None)
    assert r.status_code == 401 and r.get_json() == {"message": "Missing credentials"}
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    r = call(client, "/api/targets", "127.0.0.1", auth=("admin", "wrong"))
    assert r.status_code == 401
    assert r.get_json() == {"message": "username/password mismatch with the configuration file"}


def test_sysinfo_needs_credentials_but_no_trusted_source(api):
    client, _ = api
    r = call(client, "/api/sysinfo/hostname", "10.9.9.9")
    assert r.status_code == 200 and r.get_json() == {"data": "gw1.example.com"}
    assert call(client, "/api/sysinfo/hostname", "10.9.9.9", auth=None).status_code == 401
    r = call(client, "/api/sysinfo/bogus", "10.9.9.9")
    assert r.status_code == 404 and "Unknown /sysinfo query" in r.get_json()["message"]


def test_the_index_and_openapi_document_are_open(api):
    client, _ = api
    r = call(client, "/api", "10.9.9.9", auth=None)
    assert r.status_code == 200
    urls = [entry[0].split(" : ")[0] for entry in r.get_json()["api"]]
    assert "/api/targets" in urls and not any("/_" in u for u in urls)
    assert call(client, "/api/openapi.json", "10.9.9.9", auth=None).get_json()["openapi"].startswith("3.")


def test_wrong_method_unknown_path_and_bad_names_answer_json(api):
    client, store = api
    r = call(client, "/api/targets", "127.0.0.1", method="POST")
    assert r.status_code == 405 and "use GET" in r.get_json()["message"]
    r = call(client, "/api/nothing", "127.0.0.1")
    assert r.status_code == 404 and r.get_json()["message"].startswith("no such endpoint")
    r = call(client, "/api/target/iqn.bad_name", "127.0.0.1", method="PUT")
    assert r.status_code == 400 and "iqn" in r.get_json()["message"]
    assert call(client, f"/api/target/{T}", "127.0.0.1", method="PUT").status_code == 200
    r = call(client, f"/api/target/{T}", "127.0.0.1", method="PUT")
    assert r.status_code == 409 and "already exists" in r.get_json()["message"]
    r = call(client, "/api/gateways/iqn.2003-01.com.example:missing", "127.0.0.1")
    assert r.status_code == 404 and "does not exist" in r.get_json()["message"]


def test_ipv4_mapped_trusted_entry_matches_plain_ipv4():
    nets = parse_trusted(["::ffff:10.0.0.5"])
    assert ipaddress.ip_address("10.0.0.5") in nets[0]
