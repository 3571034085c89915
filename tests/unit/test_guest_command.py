"""The qemu command line of a guest run: TCG, user networking only, forwards per portal."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.testing.guest import Guest, GuestError
from gateway.testing.guest_image import GuestImage


def guest(tmp_path: Path, **kw) -> Guest:
    return Guest(GuestImage(tmp_path / "img", "k", "6.1.0-test"), tmp_path / "run", **kw)


def option(cmd: list[str], name: str) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == name]


def test_forwards_get_consecutive_guest_addresses_and_one_socat_per_connection(tmp_path):
    g = guest(tmp_path)
    a = g.forward("127.0.6.1", 40001)
    b = g.forward("127.0.6.2", 40002)
    assert (a.guest_portal, b.guest_portal) == ("10.0.2.101:3260", "10.0.2.102:3260")
    assert (a.host_portal, str(b)) == ("127.0.6.1:40001", "10.0.2.102:3260")
    assert g.forward_for("10.0.2.102:3260") is b
    (netdev,) = option(g.command(), "-netdev")
    assert "guestfwd=tcp:10.0.2.101:3260-cmd:/bin/sh -c " in netdev
    assert "TCP:127.0.6.1:40001" in netdev and "TCP:127.0.6.2:40002" in netdev
    with pytest.raises(GuestError):
        g.forward_for("10.0.2.103:3260")


def test_network_is_user_mode_restricted_with_nothing_listening_on_the_host(tmp_path):
    cmd = guest(tmp_path).command()
    (netdev,) = option(cmd, "-netdev")
    assert netdev.startswith("user,") and "restrict=on" in netdev
    assert "hostfwd" not in netdev
    assert option(cmd, "-accel") == ["tcg"]
    assert "restrict=on" not in option(guest(tmp_path, restrict=False).command(), "-netdev")[0]


def test_console_and_event_channel_go_to_separate_files(tmp_path):
    cmd = guest(tmp_path).command()
    assert option(cmd, "-serial") == ["chardev:console", "chardev:events"]
    chardevs = option(cmd, "-chardev")
    assert any(c.endswith("serial.log") for c in chardevs)
    assert any(c.endswith("events.log") for c in chardevs)


def test_run_directory_with_a_comma_is_refused(tmp_path):
    g = Guest(GuestImage(tmp_path, "k", "v"), tmp_path / "a,b")
    with pytest.raises(GuestError, match="comma"):
        g.command()


def test_forward_command_has_no_comma_for_qemu_to_split(tmp_path):
    g = guest(tmp_path)
    g.forward("127.0.6.1", 40001)
    (netdev,) = option(g.command(), "-netdev")
    guestfwd = netdev.split("guestfwd=", 1)[1]
    assert "," not in guestfwd
