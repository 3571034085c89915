"""Entry point of ``rbd-target-api``: the REST API (not implemented yet)."""

from __future__ import annotations

import argparse
import sys

from gateway import settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rbd-target-api", description="the REST API")
    settings.add_cfg_argument(parser)
    parser.parse_args(argv)
    print("rbd-target-api: not implemented yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
