"""Entry point of ``gwcli``: the gateway shell (not implemented yet)."""

from __future__ import annotations

import argparse
import sys

from gateway import settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gwcli", description="the gateway shell")
    settings.add_cfg_argument(parser)
    parser.parse_args(argv)
    print("gwcli: not implemented yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
