"""Command line of the mini cluster: ``scripts/minicluster start|stop|status|destroy DIR``."""

from __future__ import annotations

import argparse
import json
import sys
import time

from gateway.testing.minicluster import MiniCluster, MiniClusterError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minicluster", description=__doc__)
    parser.add_argument("verb", choices=("start", "stop", "status", "destroy"))
    parser.add_argument("dir", help="directory holding everything of this cluster")
    parser.add_argument("--mgr", action="store_true", help="also run a ceph-mgr (start)")
    parser.add_argument("--json", action="store_true", help="status as JSON")
    args = parser.parse_args(argv)
    cluster = MiniCluster(args.dir, with_mgr=args.mgr)
    try:
        if args.verb == "start":
            t0 = time.monotonic()
            cluster.start()
            print(f"mini cluster ready in {time.monotonic() - t0:.1f}s: conf {cluster.conf_path}, "
                  f"keyring {cluster.admin_keyring}, pool {cluster.pool}")
            print(f"  export CEPH_ARGS='--conf {cluster.conf_path} --keyring {cluster.admin_keyring}'")
        elif args.verb == "stop":
            cluster.stop()
        elif args.verb == "destroy":
            cluster.destroy()
        else:
            st = cluster.status()
            if args.json:
                print(json.dumps(st.as_dict()))
            else:
                for name, pid in st.running.items():
                    print(f"{name}: {f'running, pid {pid}' if pid else 'stopped'}")
                print(f"healthy: {'yes' if st.healthy else 'no'}")
            return 0 if st.healthy else 3
    except MiniClusterError as e:
        print(f"minicluster: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
