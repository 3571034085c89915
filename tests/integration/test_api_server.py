"""The rbd-target-api process: refuses default credentials, serves TLS 1.2+ only when
api_secure, keeps secrets out of its logs, listens on IPv6, exits with ceph-iscsi's codes
when it cannot start, and answers 503 (not 500, not a hang) when the cluster goes away."""

import datetime
import ipaddress
import socket
import ssl
import subprocess
import sys
import threading
import uuid

import pytest
import rados
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support.harness import API_PASSWORD, HOST, ApiServer, ConfigDir, free_port

from api.app import create_app
from api.context import ApiContext
from api.images import ImageService
from api.server import build_server
from gateway import settings as settings_mod
from gateway.config.rados_store import RadosConfigStore

T = "iqn.2003-01.com.example.test:server"


def run_api(cfg) -> subprocess.CompletedProcess:
    exe = [sys.executable, "-m", "api.server", "--cfg", str(cfg)]
    return subprocess.run(exe, capture_output=True, text=True, timeout=60)


def test_refuses_to_start_with_the_default_credentials(ceph_cluster, tmp_path):
    d = ConfigDir(tmp_path, ceph_cluster, api_password="admin")
    done = run_api(d.cfg("api"))
    assert done.returncode == 2
    assert "refusing to start with the default API credentials admin/admin" in done.stdout + done.stderr


def test_the_default_credentials_work_when_allowed_for_a_demo(ceph_cluster, tmp_path):
    d = ConfigDir(tmp_path, ceph_cluster, api_password="admin", allow_default_api_password="true")
    api = ApiServer(d)
    api.start()
    try:
        assert api.client(auth=("admin", "admin")).ok("GET", "/api/targets") == {"targets": []}
    finally:
        assert api.stop() == 0


def test_missing_pool_or_certificate_exit_16_with_the_reason(ceph_cluster, tmp_path):
    d = ConfigDir(tmp_path, ceph_cluster)
    done = run_api(d.cfg("nopool", pool="no-such-pool"))
    assert done.returncode == 16 and "pool 'no-such-pool' does not exist" in done.stderr
    done = run_api(d.cfg("nocert", api_secure="true"))
    assert done.returncode == 16 and "iscsi-gateway.crt" in done.stderr
    done = run_api(d.cfg("badtrust", trusted_ip_list="10.0.0.1,not-an-address"))
    assert done.returncode == 2 and "not-an-address" in done.stderr


def write_certificate(directory) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw-a.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    (directory / "iscsi-gateway.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "iscsi-gateway.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def handshake(port: int, version: ssl.TLSVersion) -> str:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = ctx.maximum_version = version
    with socket.create_connection((HOST, port), timeout=10) as raw, ctx.wrap_socket(raw) as tls:
        return tls.version()


def test_tls_serves_1_2_and_1_3_only(ceph_cluster, tmp_path):
    d = ConfigDir(tmp_path, ceph_cluster, api_secure="true")
    write_certificate(tmp_path)
    api = ApiServer(d)
    api.start()
    try:
        assert api.scheme == "https"
        ca = str(tmp_path / "iscsi-gateway.crt")
        assert api.client(verify=ca).ok("GET", "/api/settings")["api_version"] == 2
        assert handshake(api.port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
        assert handshake(api.port, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
        for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            with pytest.raises((ssl.SSLError, ConnectionResetError)):
                handshake(api.port, old)
        with pytest.raises(requests.RequestException):
            requests.get(f"http://{HOST}:{api.port}/api/settings", timeout=10)
    finally:
        assert api.stop() == 0


SECRETS = ("chapsecret123", "mutualsecret12", "discsecret1234", "wrong-api-password-x")


def test_secrets_never_reach_the_log(ceph_cluster, tmp_path):
    d = ConfigDir(tmp_path, ceph_cluster, logger_level="DEBUG")
    api = ApiServer(d)
    api.start()
    try:
        c = api.client()
        c.ok("PUT", f"/api/target/{T}")
        c.ok("PUT", f"/api/gateway/{T}/gw-a.test", data={"ip_address": "127.0.7.11", "skipchecks": "true"})
        c.ok("PUT", f"/api/gateway/{T}/gw-b.test", data={"ip_address": "127.0.7.12", "skipchecks": "true"})
        client = "iqn.1994-05.com.example:logtest"
        c.ok("PUT", f"/api/client/{T}/{client}")
        c.ok("PUT", f"/api/clientauth/{T}/{client}", data={"username": "chapuser1", "password": SECRETS[0],
                                                           "mutual_username": "mutualuser1",
                                                           "mutual_password": SECRETS[1]})
        c.ok("PUT", "/api/discoveryauth", json={"username": "discuser1", "password": SECRETS[2]})
        c.put("/api/discoveryauth", params={"password": SECRETS[2]}, data={"username": "x"})  # 400
        c.put(f"/api/clientauth/{T}/{client}",
              data={"username": "chapuser1", "password": SECRETS[0] + "toolong"})
        api.client(auth=("admin", SECRETS[3])).get("/api/config")
        shown = c.ok("GET", "/api/config", params={"decrypt_passwords": "true"})
        assert shown["discovery_auth"]["password"] == SECRETS[2]
        assert c.ok("GET", "/api/config")["discovery_auth"]["password"] == "<redacted>"
    finally:
        api.stop()
    log = api.process.output()
    assert "PUT /api/clientauth" in log  # the access log is there...
    for secret in (*SECRETS, API_PASSWORD):
        assert secret not in log  # ...without any secret


def test_serves_on_ipv6(ceph_cluster, tmp_path):
    d = ConfigDir(tmp_path, ceph_cluster, api_host="::1", api_port=free_port("::1"))
    api = ApiServer(d)
    api.start()
    try:
        assert api.base.startswith("http://[::1]:")
        assert api.client().ok("GET", "/api/targets") == {"targets": []}  # ::1 is localhost: trusted
    finally:
        api.stop()


def test_an_unreachable_cluster_gives_503_not_500(ceph_cluster, tmp_path):
    """The app over a real socket, its RADOS client blocklisted by the cluster mid-life."""
    d = ConfigDir(tmp_path, ceph_cluster)
    settings = settings_mod.load(str(d.cfg("api")))
    cluster = ceph_cluster.rados_connect()
    store = RadosConfigStore(cluster.open_ioctx(ceph_cluster.pool), d.gateway_conf)
    store.open()
    ctx = ApiContext(settings, store, ImageService(cluster), gateway_name="gw-a.test")
    port = free_port()
    server = build_server(create_app(ctx), HOST, port, None, 4)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    client = requests.Session()
    client.auth = ("admin", API_PASSWORD)
    base = f"http://{HOST}:{port}"
    address = cluster.get_addrs()
    try:
        assert client.put(f"{base}/api/target/{T}", timeout=30).status_code == 200
        ceph_cluster.ceph("osd", "blocklist", "add", address)
        for method, path, data in (("GET", "/api/targets", None), ("GET", "/api/config", None),
                                   ("PUT", f"/api/client/{T}/iqn.1994-05.com.example:h", None),
                                   ("PUT", f"/api/disk/rbd/{uuid.uuid4().hex}",
                                    {"mode": "create", "size": "1M"})):
            r = client.request(method, base + path, data=data, timeout=60)
            assert r.status_code == 503, (method, path, r.text)
            assert "cannot be reached" in r.json()["message"]
    finally:
        server.stop()
        thread.join(10)
        ceph_cluster.ceph("osd", "blocklist", "rm", address)
        ctx.tasks.shutdown()
        cluster.shutdown()  # the blocklisted client is not reused
    fresh = ceph_cluster.rados_connect()
    try:
        with fresh.open_ioctx(ceph_cluster.pool) as io:
            for obj in (d.gateway_conf, d.gateway_conf + ".status"):
                try:
                    io.remove_object(obj)
                except rados.ObjectNotFound:
                    pass
    finally:
        fresh.shutdown()
