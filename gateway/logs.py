"""Logging of the daemons, as ceph-iscsi set it up: stderr (containers, tests) or syslog,
plus a rotating file ``<log_dir>/<daemon>/<daemon>.log`` (5 MiB x 7)."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import Any


def setup_logging(settings: Any, daemon: str) -> None:
    root = logging.getLogger()
    root.setLevel(settings.logger_level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt = logging.Formatter(f"{settings.log_to_stderr_prefix}%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.log_to_stderr:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(fmt)
        root.addHandler(handler)
    elif os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.setFormatter(logging.Formatter(f"{daemon}: %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    if settings.log_to_file:
        directory = os.path.join(settings.log_dir, daemon)
        try:
            os.makedirs(directory, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(os.path.join(directory, f"{daemon}.log"),
                                                           maxBytes=5 << 20, backupCount=7)
            handler.setFormatter(fmt)
            root.addHandler(handler)
        except OSError as e:
            print(f"{daemon}: cannot log to {directory}: {e}", file=sys.stderr)
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
