"""``python -m gateway.config``: look at, export, import and check the cluster config.

    python -m gateway.config show [--secrets redacted|plain|stored]
    python -m gateway.config export FILE            # ceph-iscsi v11 JSON, secrets as stored
    python -m gateway.config import [FILE] [--force]
    python -m gateway.config status
    python -m gateway.config check
    python -m gateway.config reseal                 # encrypt secrets stored before the key pair existed
    python -m gateway.config drain GATEWAY          # move every LUN it owns to other gateways
    python -m gateway.config owner TARGET DISK GATEWAY   # move one LUN's owner (ALUA optimized path)

``import`` without FILE imports the ceph-iscsi JSON blob kept in the config object's data
(the migration path; the blob is left untouched).  It refuses to replace an existing
config unless ``--force``.  Connection settings come from ``iscsi-gateway.cfg``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from gateway import settings as settings_mod
from gateway.config import ceph_iscsi, validation
from gateway.config.crypto import cipher_from_settings
from gateway.config.errors import ConfigError
from gateway.config.status import classify


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gateway.config", description=__doc__.split("\n\n")[0])
    settings_mod.add_cfg_argument(p)
    p.add_argument("--ceph-conf", help="ceph.conf to use (default: from the settings)")
    p.add_argument("--keyring", help="keyring of the CephX user (default: from ceph.conf)")
    sub = p.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="print the config as ceph-iscsi v11 JSON")
    show.add_argument("--secrets", choices=ceph_iscsi.SECRET_MODES, default="redacted")
    export = sub.add_parser("export", help="write the config as ceph-iscsi v11 JSON")
    export.add_argument("file")
    export.add_argument("--secrets", choices=ceph_iscsi.SECRET_MODES, default="stored")
    imp = sub.add_parser("import", help="import a ceph-iscsi gateway.conf (file, or the object's data)")
    imp.add_argument("file", nargs="?")
    imp.add_argument("--force", action="store_true", help="replace an existing config")
    sub.add_parser("reseal", help="rewrite the config so CHAP secrets stored in clear get encrypted")
    sub.add_parser("status", help="show what each gateway reported")
    sub.add_parser("check", help="list broken rules of the stored config")
    drain = sub.add_parser("drain", help="before maintenance: move every LUN a gateway owns elsewhere")
    drain.add_argument("gateway")
    owner = sub.add_parser("owner", help="make a gateway the owner (optimized path) of one LUN")
    owner.add_argument("target")
    owner.add_argument("disk", help="pool/image")
    owner.add_argument("gateway")
    return p


def _open_store(args: argparse.Namespace, settings):
    from gateway.config.rados_store import RadosConfigStore

    return RadosConfigStore.connect(conffile=args.ceph_conf or settings.ceph_conf, pool=settings.pool,
                                    object_name=settings.gateway_conf, name=settings.cluster_client_name,
                                    keyring=args.keyring, cipher=cipher_from_settings(settings))


def run(args: argparse.Namespace) -> int:
    settings = settings_mod.load(args.cfg)
    store = _open_store(args, settings)
    try:
        if args.command in ("show", "export"):
            text = ceph_iscsi.dumps(ceph_iscsi.export_document(store.load(), args.secrets, store.cipher))
            if args.command == "show":
                print(text)
            else:
                with open(args.file, "w") as f:
                    f.write(text + "\n")
        elif args.command == "import":
            if args.file:
                with open(args.file) as f:
                    doc = json.load(f)
                cfg, problems = ceph_iscsi.import_document(doc, store.cipher)
                done = store.import_config(cfg, force=args.force)
            else:
                done, problems = store.import_legacy(force=args.force)
            for line in problems:
                print(f"warning: {line}", file=sys.stderr)
            print(f"imported as version {done.version}")
        elif args.command == "reseal":
            if not store.cipher.can_encrypt:
                print("error: no key pair configured (priv_key/pub_key in ceph_config_dir)", file=sys.stderr)
                return 1
            print(f"rewritten as version {store.reseal().version}")
        elif args.command == "status":
            cfg = store.load()
            report = classify(cfg.version, cfg.gateways_of(), store.read_statuses(), time.time(),
                              settings.gateway_dead_after)
            print(json.dumps({"version": cfg.version, **report.as_dict()}, indent=2, sort_keys=True))
        elif args.command in ("drain", "owner"):
            from gateway.config import operations as ops

            if args.command == "drain":
                done = store.update(ops.drain_gateway, args.gateway)
                moved = done.result
            else:
                done = store.update(ops.set_lun_owner, args.target, args.disk, args.gateway)
                moved = {args.disk: args.gateway}
            for disk, gw in sorted(moved.items()):
                print(f"{disk}: owner {gw}")
            print(f"version {done.version}" if done.changed else "nothing to change")
        elif args.command == "check":
            problems = validation.violations(store.load())
            for line in problems:
                print(line)
            return 1 if problems else 0
    finally:
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except (ConfigError, settings_mod.SettingsError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
