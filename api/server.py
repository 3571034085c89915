"""Entry point of ``rbd-target-api``: settings, logging, RADOS, TLS, and a threaded WSGI server.

Start-up order (ceph-iscsi's, where it applies): settings (``--cfg``) -> logging ->
refuse default credentials -> connect to the cluster and open the config store (creating
it, or importing a ceph-iscsi ``gateway.conf`` once) -> TLS context when ``api_secure`` ->
serve on ``api_host:api_port`` with cheroot (a production WSGI server: a fixed pool of
request threads, keep-alive connections parked in a selector, not in threads).  Long RBD
work runs on the task pool (``api.tasks``), never on the request threads.

Exit codes: 0 stopped by SIGTERM/SIGINT, 2 bad settings or credentials, 16 cluster or
certificate problems (as ceph-iscsi).
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import shutil
import signal
import ssl
import sys
import tempfile
import threading
from typing import Any

from gateway import logs
from gateway import settings as settings_mod

log = logging.getLogger("api")
EXIT_SETTINGS = 2
EXIT_CLUSTER = 16
DEFAULT_THREADS = 32
RESERVED_THREADS = 8  # request threads that never block on gateways or tasks
CERT_FILE, KEY_FILE = "iscsi-gateway.crt", "iscsi-gateway.key"
# TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3 suites are always AEAD).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"


def setup_logging(settings: Any, daemon: str = "rbd-target-api") -> None:
    logs.setup_logging(settings, daemon)
    logging.getLogger("cheroot").setLevel(logging.WARNING)


def connect(settings: Any) -> Any:
    """A librados handle with bounded op times, so an unreachable cluster gives 503s, not hangs."""
    import rados

    conf = {"rados_osd_op_timeout": "30", "rados_mon_op_timeout": "30", "rbd_cache": "false"}
    cluster = rados.Rados(conffile=settings.ceph_conf, name=settings.cluster_client_name, conf=conf)
    cluster.connect(timeout=30)
    return cluster


def _mon_config_key(cluster: Any, key: str) -> bytes | None:
    import json

    ret, out, _ = cluster.mon_command(json.dumps({"prefix": "config-key get", "key": key}), b"", timeout=30)
    return out if ret == 0 and out else None


def tls_files(settings: Any, cluster: Any = None) -> tuple[str, str, str | None]:
    """(certificate, key, temporary directory to remove at exit) for ``api_secure``: from
    ``<ceph_config_dir>/iscsi-gateway.crt|.key``, else from the mon config-key store
    (``iscsi/<client name>/iscsi-gateway.crt|.key``, where cephadm puts them).  OSError if
    neither has them."""
    crt = os.path.join(settings.ceph_config_dir, CERT_FILE)
    key = os.path.join(settings.ceph_config_dir, KEY_FILE)
    if os.path.exists(crt) and os.path.exists(key):
        return crt, key, None
    prefix = f"iscsi/{settings.cluster_client_name}/"
    pems = None if cluster is None else (_mon_config_key(cluster, prefix + CERT_FILE),
                                         _mon_config_key(cluster, prefix + KEY_FILE))
    if not pems or not all(pems):
        raise OSError(f"api_secure = true needs {crt} and {key} (or mon config-key {prefix}{CERT_FILE} "
                      f"and {prefix}{KEY_FILE})")
    d = tempfile.mkdtemp(prefix="rbd-target-api-")
    paths = []
    for name, pem in zip((CERT_FILE, KEY_FILE), pems, strict=True):
        path = os.path.join(d, name)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(pem)
        paths.append(path)
    return paths[0], paths[1], d


def tls_context(crt: str, key: str) -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer, forward-secret AEAD suites, no compression or
    renegotiation.  Raises ssl.SSLError/OSError for unusable files."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.load_cert_chain(crt, key)
    return ctx


def build_server(app: Any, host: str, port: int, tls: tuple[str, str] | None, threads: int) -> Any:
    from cheroot import wsgi
    from cheroot.ssl.builtin import BuiltinSSLAdapter

    server = wsgi.Server((host.strip("[]"), port), app, numthreads=threads, server_name="rbd-target-api",
                         shutdown_timeout=5)
    if tls is not None:
        adapter = BuiltinSSLAdapter(*tls)
        adapter.context = tls_context(*tls)  # replaces cheroot's default context
        server.ssl_adapter = adapter
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rbd-target-api", description="the gateway REST API")
    settings_mod.add_cfg_argument(parser)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="HTTP request threads")
    args = parser.parse_args(argv)
    try:
        settings = settings_mod.load(args.cfg)
    except settings_mod.SettingsError as e:
        print(f"rbd-target-api: {e}", file=sys.stderr)
        return EXIT_SETTINGS
    setup_logging(settings)
    from api.auth import credentials_problem, parse_trusted

    problem = credentials_problem(settings)
    if problem:
        log.error("%s", problem)
        return EXIT_SETTINGS
    try:
        parse_trusted(settings.trusted_ip_list)
    except ValueError as e:
        log.error("%s", e)
        return EXIT_SETTINGS
    return _run(settings, args.threads)


def _run(settings: Any, threads: int) -> int:
    import rados

    from api.app import create_app
    from api.context import ApiContext
    from api.images import ImageService
    from gateway.config.crypto import cipher_from_settings
    from gateway.config.errors import ConfigError
    from gateway.config.rados_store import RadosConfigStore

    try:
        cluster = connect(settings)
    except rados.Error as e:
        log.error("cannot connect to the Ceph cluster (%s as %s): %s", settings.ceph_conf,
                  settings.cluster_client_name, e)
        return EXIT_CLUSTER
    store = None
    tls_tmp: str | None = None
    try:
        if settings.deferred:
            settings.resolve_deferred(lambda key: (_mon_config_key(cluster, key) or b"").decode())
        try:
            ioctx = cluster.open_ioctx(settings.pool)
        except rados.ObjectNotFound:
            log.error("pool %r does not exist; create it or set 'pool' in iscsi-gateway.cfg", settings.pool)
            return EXIT_CLUSTER
        store = RadosConfigStore(ioctx, settings.gateway_conf, cipher=cipher_from_settings(settings),
                                 cluster=cluster)
        log.info("config store %s/%s: %s", settings.pool, settings.gateway_conf, store.open())
        tls = None
        if settings.api_secure:
            try:
                crt, key, tls_tmp = tls_files(settings, cluster)
                tls_context(crt, key)  # fail now, with a clear message, if the files are unusable
                tls = (crt, key)
            except (OSError, ssl.SSLError) as e:
                log.error("cannot set up TLS: %s", e)
                return EXIT_CLUSTER
        ctx = ApiContext(settings, store, ImageService(cluster, settings.time_out, settings.loop_delay),
                         waiting_requests=max(1, threads - RESERVED_THREADS))
        ctx.start()
        server = build_server(create_app(ctx), settings.api_host, settings.api_port, tls, threads)
        stopping = threading.Event()

        def stop(signum: int, _frame: Any) -> None:
            if not stopping.is_set():
                stopping.set()
                log.info("signal %d: stopping", signum)
                threading.Thread(target=server.stop, name="api-stop", daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, lambda *_: log.info("SIGHUP: nothing to reload (the config is read per "
                                                         "request; restart to change settings)"))
        scheme = "https" if tls else "http"
        host = settings.api_host if ":" not in settings.api_host else f"[{settings.api_host}]"
        log.info("rbd-target-api %s listening on %s://%s:%d (gateway name %s)", "0.1.0", scheme, host,
                 settings.api_port, ctx.gateway_name)
        try:
            server.prepare()
        except OSError as e:
            log.error("cannot listen on %s:%d: %s", settings.api_host, settings.api_port, e)
            return EXIT_CLUSTER
        server.serve()
        ctx.close()
        return 0
    except ConfigError as e:
        log.error("cannot open the config store: %s", e)
        return EXIT_CLUSTER
    finally:
        if tls_tmp:
            shutil.rmtree(tls_tmp, ignore_errors=True)
        if store is not None:
            store.close()
        else:
            cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
