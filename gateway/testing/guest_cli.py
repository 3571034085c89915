"""``scripts/guest-image build|path|info|smoke|prune``: the system-test guest image.

build  build the image unless cached (``--force``: rebuild); prints its directory
path   print the cached image's directory; exit 1 when it is not built
info   the manifest of the cached image (inputs, kernel, module list, build times)
smoke  boot the image once with a trivial script; prints boot and wall times
prune  remove cached images other than the current one
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile

from gateway.testing.guest import Guest
from gateway.testing.guest_image import GuestImageError, cache_root, ensure_image, find_image, resolve_inputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="guest-image", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("verb", choices=("build", "path", "info", "smoke", "prune"))
    parser.add_argument("--force", action="store_true", help="build: rebuild even when cached")
    args = parser.parse_args(argv)
    try:
        if args.verb == "build":
            print(ensure_image(force=args.force).directory)
        elif args.verb in ("path", "info"):
            image = find_image()
            if image is None:
                print(f"guest-image: not built (cache {cache_root()})", file=sys.stderr)
                return 1
            print(image.directory if args.verb == "path" else json.dumps(image.manifest, indent=2))
        elif args.verb == "smoke":
            image = ensure_image()
            with tempfile.TemporaryDirectory(prefix="guest-smoke-") as d, Guest(image, d) as guest:
                result = guest.run("vm_log smoke test", timeout=180)
                print(f"{result.verdict}: guest boot {result.boot_seconds}s, "
                      f"wall {result.wall_seconds:.1f}s")
                if not result.passed:
                    print(result.summary(), file=sys.stderr)
                    return 1
        else:
            keep = resolve_inputs().key()
            for entry in cache_root().iterdir() if cache_root().exists() else []:
                if entry.is_dir() and not entry.name.startswith(".") and entry.name != keep:
                    shutil.rmtree(entry)
                    print(f"removed {entry}")
    except GuestImageError as e:
        print(f"guest-image: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
