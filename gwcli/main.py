"""Entry point of ``gwcli``: the interactive shell, or one command in batch mode.

``gwcli`` alone opens the shell; ``gwcli <path> <command> [args]`` runs one command and
exits 0 when it succeeded, 1 when it failed (the API's message on stderr); commands piped
on stdin run one by one until the first failure.  Exit 2: bad options or settings file;
exit 3: the local API could not be reached or refused the credentials.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from gateway import __version__, settings
from gwcli.api import GatewayApi
from gwcli.nodes.root import GatewayRoot
from gwcli.shell import GatewayMonitor, GatewayShell
from gwcli.transport import ApiClient, ApiError, ApiUnreachable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_API = 0, 1, 2, 3
PREFS_DIR = "~/.gwcli"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gwcli", description="Manage the iSCSI gateways of a Ceph cluster (through the local "
                                  "rbd-target-api). Without a command: interactive shell.",
        epilog="examples: gwcli ls | gwcli /iscsi-targets create iqn.2003-01.com.example:igw | "
               "gwcli /disks create pool=rbd image=disk_1 size=10G")
    settings.add_cfg_argument(p)
    p.add_argument("--api", metavar="URL", default=None,
                   help="API endpoint (default: http(s)://localhost:<api_port> from the cfg)")
    p.add_argument("-d", "--debug", action="store_true", help="show tracebacks of unexpected errors")
    p.add_argument("-t", "--threads", type=int, default=8, metavar="N",
                   help="parallel API requests when loading disk details (default 8)")
    p.add_argument("-c", "--config-object", metavar="POOL/OBJECT", default=None,
                   help="accepted for ceph-iscsi compatibility; gwcli only talks to the API")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colours: auto = interactive shell on a terminal (default)")
    p.add_argument("-v", "--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="[path] command [args...]: run it and exit (batch mode)")
    return p


def api_url(opts: argparse.Namespace, cfg: settings.Settings) -> str:
    if opts.api:
        return opts.api if "://" in opts.api else f"http://{opts.api}"
    scheme = "https" if cfg.api_secure else "http"
    return f"{scheme}://localhost:{cfg.api_port}"


def main(argv: list[str] | None = None) -> int:
    opts = parser().parse_args(argv)
    if opts.threads < 1:
        print("gwcli: --threads must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        cfg = settings.load(opts.cfg)
    except settings.SettingsError as e:
        print(f"gwcli: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"gwcli: cannot read {settings.cfg_path(opts.cfg)}: {e.strerror}", file=sys.stderr)
        return EXIT_USAGE
    command = " ".join(opts.command).strip()
    interactive = not command and sys.stdin.isatty()
    color = opts.color == "always" or (opts.color == "auto" and interactive and sys.stdout.isatty())

    url = api_url(opts, cfg)
    api = GatewayApi(ApiClient(url, cfg.api_user, cfg.api_password, verify=cfg.api_ssl_verify))
    shell = GatewayShell(os.environ.get("GWCLI_PREFS_DIR", PREFS_DIR), color=color, debug=opts.debug)
    root = GatewayRoot(shell, api, cfg, threads=opts.threads)
    try:
        root.refresh()
    except ApiUnreachable as e:
        shell.error(f"Unable to contact the local API endpoint ({api.base_url}): {e.message}")
        return EXIT_API
    except ApiError as e:
        shell.error(f"REST API failure, code : {e.status} - {e.message}")
        return EXIT_API

    if command:
        return EXIT_OK if shell.run_cmdline(command) else EXIT_FAILED
    if not interactive:
        for line in sys.stdin:
            if line.strip() and not line.lstrip().startswith("#") and not shell.run_cmdline(line.strip()):
                return EXIT_FAILED
        return EXIT_OK
    return interactive_loop(shell, root)


def interactive_loop(shell: GatewayShell, root: GatewayRoot) -> int:
    signal.signal(signal.SIGTSTP, signal.SIG_IGN)  # Ctrl-Z would leave a stopped shell behind
    monitor = GatewayMonitor(shell, root)
    monitor.announce()
    monitor.start()
    try:
        shell.run_interactive()
    finally:
        monitor.stop()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
