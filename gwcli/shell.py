"""The configshell-fb shell of gwcli: output, colours, errors, and secrets kept out of history.

configshell decides colours by ``isatty()`` and prints errors through a logger; gwcli needs
them decided once per run (interactive on a terminal, never in batch mode unless asked),
every failure turned into a message plus a failed-command flag for batch exit codes, and
CHAP secrets never written to ``~/.gwcli/history.txt``.
"""

from __future__ import annotations

import logging
import re
import signal
import sys
import threading
import traceback
from typing import TextIO

import pyparsing
from configshell_fb import ConfigShell, Console, ExecutionError, Prefs
from configshell_fb import shell as configshell_shell

from gwcli.transport import ApiError

log = logging.getLogger(__name__)

_FG = {"black": 30, "red": 31, "green": 32, "yellow": 33, "blue": 34, "magenta": 35, "cyan": 36,
       "white": 37}
_BG = {name: code + 10 for name, code in _FG.items()}
_STYLE = {"bold": 1, "underline": 4, "blink": 5, "reverse": 7, "concealed": 8}
_SECRET_KWARG = re.compile(r"\b((?:mutual_)?password=)\S*")
_AUTH_COMMANDS = ("auth", "discovery_auth")


def scrub_secrets(line: str) -> str:
    """A command line with CHAP passwords replaced by ``***`` (keyword or positional form)."""
    line = _SECRET_KWARG.sub(r"\1***", line)
    words = line.split(" ")
    for i, word in enumerate(words):
        if word in _AUTH_COMMANDS:
            positional = [j for j in range(i + 1, len(words)) if words[j] and "=" not in words[j]]
            for rank, j in enumerate(positional):
                if rank in (1, 3) and words[j] != "nochap":  # password, mutual_password
                    words[j] = "***"
            break
    return " ".join(words)


class GatewayConsole(Console):
    """configshell's console (a Borg: one state for all instances) with gwcli's colour choice."""

    def configure(self, stdout: TextIO, stderr: TextIO, color: bool, width: int | None) -> None:
        self._stdout = stdout
        self._stderr = stderr
        self._gw_color = color
        self._gw_width = width

    def get_width(self) -> int:
        width = self.__dict__.get("_gw_width")
        return width if width else super().get_width()

    def render_text(self, text, fgcolor=None, bgcolor=None, styles=None, open_end=False, todefault=False):
        if not (fgcolor or bgcolor or styles) or not self.__dict__.get("_gw_color") \
                or self.prefs["color_mode"] is False:  # 'set global color_mode=false' in the shell
            return text
        prefix = "".join(f"\033[{_STYLE[s]}m" for s in reversed(styles or []))
        if bgcolor is not None:
            prefix += f"\033[{_BG[bgcolor]}m"
        if fgcolor is not None:
            prefix += f"\033[{_FG[fgcolor]}m"
        return f"{prefix}{text}" + ("" if open_end else "\033[0m")

    def raw_write(self, text, output=None):
        output = output or self._stdout
        output.write(text)
        output.flush()


class GatewayShell(ConfigShell):
    default_prefs = {
        "color_path": "magenta", "color_command": "cyan", "color_parameter": "magenta",
        "color_keyword": "cyan", "completions_in_columns": True, "logfile": None,
        "loglevel_console": "info", "loglevel_file": "debug", "color_mode": True, "prompt_length": 30,
        "tree_max_depth": 0, "tree_status_mode": True, "tree_round_nodes": True, "tree_show_root": True,
    }

    def __init__(self, preferences_dir: str | None = "~/.gwcli", *, color: bool = False,
                 width: int | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None,
                 debug: bool = False) -> None:
        # configshell's Prefs is a process-wide Borg: start each shell from a clean state.
        fresh = Prefs()
        fresh._prefs, fresh.filename, fresh.autosave = {}, None, False
        super().__init__(preferences_dir)
        self.con = GatewayConsole()
        self.con.configure(stdout or sys.stdout, stderr or sys.stderr, color, width)
        self.log.con = self.con
        if not debug:
            # configshell's Log.debug walks the whole stack (inspect.stack) on every call, dozens
            # of times per command; its output goes nowhere unless debugging.
            self.log.debug = lambda msg: None
        self.color = color
        self.debug = debug
        self.progress_shown = False
        self.print_lock = threading.Lock()
        # Old ceph-iscsi prefs may hold values configshell no longer accepts; and no log file:
        # command lines carry CHAP secrets.
        for key, value in (("color_mode", color), ("logfile", None), ("loglevel_file", "debug"),
                           ("loglevel_console", "info")):
            if self.prefs[key] != value:
                self.prefs[key] = value
        if self.prefs["bookmarks"] is None:
            self.prefs["bookmarks"] = {}

    # ---- output ----------------------------------------------------------------------------
    def _write(self, text: str, fg: str | None = None, error: bool = False, bold: bool = True) -> None:
        if fg is not None:
            text = self.con.render_text(text, fg, styles=["bold"] if bold else None)
        with self.print_lock:
            if self.progress_shown:  # erase the progress line before writing below it
                self.con.raw_write("\r\033[K", self.con._stdout)
                self.progress_shown = False
            self.con.raw_write(text + "\n", self.con._stderr if error else self.con._stdout)

    def out(self, text: str) -> None:
        """Plain output (``ls``, ``info``, ``export``)."""
        self._write(text)

    def ok(self, text: str = "ok") -> None:
        self._write(text, "green")

    def info(self, text: str) -> None:
        self._write(text, "green")

    def warn(self, text: str) -> None:
        self._write(text, "yellow")

    def error(self, text: str) -> None:
        self._write(text, "red", error=True)

    def progress(self, text: str) -> None:
        """A progress line rewritten in place (terminals only)."""
        stdout = self.con._stdout
        if getattr(stdout, "isatty", lambda: False)():
            with self.print_lock:
                self.con.raw_write("\r" + self.con.render_text(text, "green") + "\033[K", stdout)
                self.progress_shown = True

    # ---- commands --------------------------------------------------------------------------
    def run_cmdline(self, cmdline: str) -> bool:
        """Run one command; print a failure instead of raising.  True when it succeeded."""
        self._scrub_history()
        try:
            super().run_cmdline(self.child_as_path(cmdline))
            return True
        except KeyboardInterrupt:
            raise
        except Exception as e:  # every failure is reported, none ends the shell
            self.error(self.describe(e))
            return False
        finally:
            self._reattach()

    def child_as_path(self, cmdline: str) -> str:
        """``gateways create ...`` typed in a target means ``gateways/ create ...``.

        configshell only takes a word with a ``/`` as a path; a first word that names a child
        of the current node (and is not one of its commands) is taken as that child's path,
        as the seed's walkthrough types it.
        """
        first, sep, rest = cmdline.strip().partition(" ")
        node = self._current_node
        if not first or "/" in first or first.startswith("@") or node is None:
            return cmdline
        if first in node.list_commands():
            return cmdline
        try:
            node.get_child(first)  # "lun0" finds "lun 0"
        except ValueError:
            return cmdline
        return f"{first}/{sep}{rest}"

    def describe(self, e: Exception) -> str:
        if isinstance(e, ApiError):
            return e.message
        if isinstance(e, ExecutionError):
            return str(e)
        if isinstance(e, pyparsing.ParseBaseException):
            return f"Syntax error: {e}"
        if self.debug:
            return "".join(traceback.format_exception(e)).rstrip()
        return f"{type(e).__name__}: {e}"

    def _reattach(self) -> None:
        """After a refresh rebuilt the tree, point the current node at its new twin."""
        node, root = self._current_node, self._root_node
        if node is None or root is None:
            return
        path = node.path
        while True:
            try:
                self._current_node = root.get_node(path)
                return
            except ValueError:
                if path in ("", "/"):
                    self._current_node = root
                    return
                path = path.rsplit("/", 1)[0] or "/"

    def _scrub_history(self) -> None:
        readline = getattr(configshell_shell, "readline", None)
        if readline is None:
            return
        count = readline.get_current_history_length()
        if count <= 0:
            return
        line = readline.get_history_item(count)
        if line:
            clean = scrub_secrets(line)
            if clean != line:
                readline.replace_history_item(count - 1, clean)


class GatewayMonitor:
    """Re-checks gateway liveness every ``interval`` s and says when it changes (as ceph-iscsi)."""

    def __init__(self, shell: GatewayShell, root, interval: float = 10.0) -> None:
        self.shell = shell
        self.root = root
        self.interval = interval
        self.stop_event = threading.Event()
        self.last = ""
        self.thread = threading.Thread(target=self._run, name="gwcli-gateway-check", daemon=True)

    def announce(self) -> None:
        from gwcli.nodes.gateways import reachability

        line, healthy = reachability(self.root.view)
        self._say(line, healthy)

    def _say(self, line: str, healthy: bool, newline: bool = False) -> None:
        if not line or line == self.last:
            return
        self.last = line
        text = ("\n" if newline else "") + line
        (self.shell.info if healthy else self.shell.warn)(text)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def _run(self) -> None:
        from gwcli.nodes.gateways import check_gateways

        # Ctrl-C must reach the main thread while it waits in readline: a SIGINT the kernel
        # hands to this thread would only be noticed at the next key press.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        while not self.stop_event.wait(self.interval):
            try:
                line, healthy = check_gateways(self.root)
            except Exception as e:  # a background check must never kill the shell
                log.debug("gateway check failed: %s", e)
                continue
            self._say(line, healthy, newline=True)
