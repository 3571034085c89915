"""Behaviour every gwcli node shares: ``goto``, ``info``, API changes and their reports.

Nodes never keep copies of cluster state: they read the current ``View`` of the root, which
is replaced wholesale after each change (``GatewayRoot.refresh``), so what ``ls`` shows is
always what the API last said.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from configshell_fb import ConfigNode

from gwcli.args import CommandError
from gwcli.format import info_block
from gwcli.transport import ApiError, ChangeReport

if TYPE_CHECKING:
    from gwcli.api import GatewayApi
    from gwcli.nodes.root import GatewayRoot
    from gwcli.shell import GatewayShell
    from gwcli.view import View


class UICommon(ConfigNode):
    """A node of the gwcli tree."""

    help_intro = ""

    @property
    def ui_root(self) -> GatewayRoot:
        node: ConfigNode = self
        while node.parent is not None:
            node = node.parent
        return node  # type: ignore[return-value]

    @property
    def gw_shell(self) -> GatewayShell:
        return self.ui_root.shell  # type: ignore[return-value]

    @property
    def api(self) -> GatewayApi:
        return self.ui_root.api

    @property
    def view(self) -> View:
        return self.ui_root.view

    # ---- navigation ------------------------------------------------------------------------
    def get_child(self, name: str) -> ConfigNode:
        """Exact name, else the same name without spaces (``lun0`` finds ``lun 0``)."""
        for child in self.children:
            if child.name == name:
                return child
        for child in self.children:
            if child.name.replace(" ", "") == name:
                return child
        raise ValueError(f"No such path {self.path.rstrip('/')}/{name}")

    def get_node(self, path: str) -> ConfigNode:
        """configshell's lookup, plus children whose names contain ``/`` (``rbd/disk_1``)."""
        if path and not path.startswith(("/", "@")):
            for child in self.children:
                if "/" in child.name and (path == child.name or path.startswith(child.name + "/")):
                    rest = path[len(child.name):].lstrip("/")
                    return child.get_node(rest) if rest else child
        return super().get_node(path)

    def ui_command_goto(self, shortcut: str = "/") -> ConfigNode:
        """
        Go to a bookmark: gateways, hosts and host-groups of the last loaded target are
        bookmarked automatically, and 'bookmarks add <name>' adds your own.

        e.g.
        goto hosts
        """
        if shortcut == "/":
            return self.ui_command_cd("/")
        bookmarks = self.shell.prefs["bookmarks"] or {}
        if shortcut not in bookmarks:
            known = ", ".join(sorted(bookmarks)) or "none"
            raise CommandError(f"No bookmark named {shortcut!r} (bookmarks: {known})")
        return self.ui_command_cd(bookmarks[shortcut])

    def ui_complete_goto(self, parameters, text, current_param):
        if current_param != "shortcut":
            return []
        return [b for b in sorted(self.shell.prefs["bookmarks"] or {}) if b.startswith(text)]

    def bookmark(self, name: str) -> None:
        """Automatic bookmark (ceph-iscsi's ``gateways``, ``hosts``, ``host-groups``)."""
        bookmarks = self.shell.prefs["bookmarks"]
        if bookmarks is None:
            bookmarks = self.shell.prefs["bookmarks"] = {}
        if bookmarks.get(name) != self.path:
            bookmarks[name] = self.path
            self.shell.prefs.save()

    # ---- info ------------------------------------------------------------------------------
    def info_fields(self) -> Iterable[tuple[str, Any]]:
        text, _ = self.summary()
        return [("name", self.name), ("path", self.path), ("summary", text or "-"),
                ("children", len(self.children))]

    def ui_command_info(self) -> None:
        """
        Show the attributes of this object.
        """
        self.gw_shell.out(info_block(self.info_fields()))

    # ---- changes ---------------------------------------------------------------------------
    def change(self, call: Callable[[], ChangeReport], failure: str = "", refresh: bool = True,
               quiet: bool = False) -> ChangeReport:
        """Run one API change: print ``ok`` (and what is pending), refresh the tree.

        An API refusal raises ``CommandError`` with the API's message (prefixed by
        ``failure`` when the command did several things).
        """
        try:
            report = call()
        except ApiError as e:
            if refresh:
                self.ui_root.refresh()
            raise CommandError(f"{failure}{e.message}") from None
        for warning in report.warnings():
            self.gw_shell.warn(warning)
        if refresh:
            self.ui_root.refresh()
        if not quiet:
            self.gw_shell.ok(report.outcome())
        return report

    def progress(self, text: str) -> None:
        self.gw_shell.progress(text)


class UIGroup(UICommon):
    """A node that groups children (``disks``, ``hosts``...)."""


class UINode(UIGroup):
    """A node for one configured object; ``info`` prints ``display_attributes``."""

    display_attributes: tuple[str, ...] = ()

    def info_fields(self) -> Iterable[tuple[str, Any]]:
        if not self.display_attributes:
            return super().info_fields()
        return [(name, getattr(self, name)) for name in self.display_attributes]
