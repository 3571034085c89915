"""The demo: a mini cluster with an RBD image, shown with ``rbd info``.

``scripts/demo run`` starts it in the foreground and stops everything on Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from gateway.testing.minicluster import MiniCluster, MiniClusterError

DEMO_DIR = Path(__file__).resolve().parents[2] / ".demo"


def run(args) -> int:
    cluster = MiniCluster(DEMO_DIR / "cluster")
    try:
        cluster.start()
        if "demo" not in cluster.rbd("ls").split():
            cluster.rbd("create", "--size", "1G", "demo")
        print(cluster.rbd("info", "demo"))
        print(f"Ceph conf: {cluster.conf_path}  keyring: {cluster.admin_keyring}")
        if args.once:
            return 0
        print("Demo running; press Ctrl-C to stop it.")
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return 0
    except MiniClusterError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    finally:
        print("Stopping the demo...")
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("run", help="run the demo in the foreground until Ctrl-C")
    p.add_argument("--once", action="store_true", help="stop right after printing")
    args = parser.parse_args(argv)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
