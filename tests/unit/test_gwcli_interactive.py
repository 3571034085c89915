"""The interactive shell in a real pseudo-terminal (pexpect), against the fake API.

The seed's walkthrough is typed as an operator would; the same walkthrough against the real
API and gateways (and an initiator logging in) is the acceptance test in
tests/integration/test_gwcli_walkthrough.py.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pexpect
import pytest
from gwcli_fake_api import PASSWORD, USER, FakeApi, populated

GWCLI = str(Path(sys.executable).with_name("gwcli"))
TIMEOUT = 30
TARGET = "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
CLIENT = "iqn.1994-05.com.redhat:rh7-client"
ANSI = re.compile(r"\033\[[0-9;]*[A-Za-z]")


def prompt(path: str) -> str:
    """configshell's prompt: the path, shortened to 30 characters, then '> '."""
    if len(path) > 30:
        path = f"{path[:13]}...{path[-13:]}"
    return f"{path}> "


class Session:
    def __init__(self, fake: FakeApi, tmp_path: Path) -> None:
        self.home = tmp_path
        cfg = tmp_path / "iscsi-gateway.cfg"
        cfg.write_text(f"[config]\napi_user = {USER}\napi_password = {PASSWORD}\n")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TERM": "xterm", "LANG": "C.UTF-8"}
        self.child = pexpect.spawn(GWCLI, ["--cfg", str(cfg), "--api", fake.url], env=env, encoding="utf-8",
                                   timeout=TIMEOUT, dimensions=(50, 120))
        self.path = "/"

    def expect_prompt(self, path: str | None = None) -> str:
        """Wait for the prompt of ``path`` (the current path by default); the output before it."""
        if path is not None:
            self.path = path
        self.child.expect_exact(prompt(self.path))
        return ANSI.sub("", self.child.before)

    def type(self, line: str, then_at: str | None = None) -> str:
        self.child.sendline(line)
        out = self.expect_prompt(then_at)
        echoed, _, rest = out.partition("\n")
        assert line in echoed
        return rest

    def close(self) -> None:
        if self.child.isalive():
            self.child.sendline("exit")
            self.child.expect(pexpect.EOF)
        self.child.close()


@pytest.fixture
def empty_api():
    fake = FakeApi()
    fake.url = fake.serve()
    yield fake
    fake.close()


def test_seed_walkthrough_in_a_terminal(empty_api, tmp_path):
    """The seed's session as the issue writes it: gateways, disk and host created from the
    target with relative paths and an absolute one."""
    s = Session(empty_api, tmp_path)
    tp = f"/iscsi-targets/{TARGET}"
    try:
        s.expect_prompt("/")
        s.type("cd /iscsi-targets", "/iscsi-targets")
        assert s.type(f"create {TARGET}").strip() == "ok"
        s.type(f"cd {TARGET}", tp)
        out = s.type("gateways create ceph-gw-1 10.172.19.21")
        assert "Adding gateway, sync'ing 0 disk(s) and 0 client(s)" in out and out.strip().endswith("ok")
        assert s.type("gateways create ceph-gw-2 10.172.19.22").strip().endswith("ok")
        assert s.type("/disks create pool=rbd image=disk_1 size=90G").strip() == "ok"
        # creating a host takes the operator into it
        assert s.type(f"hosts create {CLIENT}", f"{tp}/hosts/{CLIENT}").strip() == "ok"
        assert s.type("auth username=myiscsiusername password=myiscsipassword").strip() == "ok"
        assert s.type("disk add rbd/disk_1").strip() == "ok"
        assert "Lun Id   .. 0" in s.type("lun0 info")
        tree = s.type("ls /")
        assert re.search(r"o- ceph-gw-1 \.+ \[10\.172\.19\.21 \(UP\)\]", tree)
        assert re.search(rf"o- {re.escape(CLIENT)} \.+ \[Auth: CHAP, Disks: 1\(90G\)\]", tree)
        assert re.search(r"o- lun 0 \.+ \[rbd/disk_1\(90G\), Owner: ceph-gw-1\]", tree)
        assert re.search(r"o- rbd/disk_1 \.+ \[Owner: ceph-gw-1, Lun: 0\]", tree)
        s.child.sendline("exit")
        s.child.expect(pexpect.EOF)
    finally:
        s.close()
    target = empty_api.cfg.targets[TARGET]
    client = target.clients[CLIENT]
    assert (client.auth.username, client.auth.password, client.luns) == (
        "myiscsiusername", "myiscsipassword", {"rbd/disk_1": 0})
    assert sorted(target.portals) == ["ceph-gw-1", "ceph-gw-2"]
    history = (tmp_path / ".gwcli" / "history.txt").read_text()
    assert "auth username=myiscsiusername password=***" in history
    assert "myiscsipassword" not in history


def test_terminal_session_shows_reachability_colours_and_pending_changes(tmp_path):
    fake = populated()
    fake.url = fake.serve()
    s = Session(fake, tmp_path)
    try:
        banner = s.expect_prompt("/")
        assert ("1 gateway(s) inaccessible: gw2.example.com (DOWN) - changes are still accepted and apply "
                "when they return") in banner
        s.child.sendline("ls /cluster 1")
        s.expect_prompt()
        assert "\033[32mHEALTH_OK\033[0m" in s.child.before  # colours on a terminal
        out = s.type(f"/iscsi-targets/{TARGET}/disks add rbd/gone")
        assert out.strip() == "ok (pending on gw2.example.com: down)"
        err = s.type("/disks create rbd/x 10X")
        assert "size must be a whole number followed by M, G or T (e.g. 10G), got '10X'" in err
        # Ctrl-C abandons the line being typed, not the shell.  As a person would, press it
        # once the typed text is echoed: CPython's readline only notices a SIGINT while it
        # waits for input.
        s.child.send("ls /clus")
        s.child.expect_exact("ls /clus")
        time.sleep(0.2)
        s.child.sendintr()
        s.expect_prompt()
        assert s.type("pwd").strip() == "/"
        s.type("goto hosts", f"/iscsi-targets/{TARGET}/hosts")
    finally:
        s.close()
        fake.close()


def test_top_in_a_terminal_redraws_and_quits_on_q(tmp_path):
    from test_gwcli_top import MetricsServer

    exporter = MetricsServer()
    fake = populated()
    fake.url = fake.serve()
    s = Session(fake, tmp_path)
    try:
        s.expect_prompt("/")
        s.child.sendline(f"top interval=0.3 urls={exporter.url}")
        s.child.expect_exact("(q to quit)")
        s.child.expect_exact("(q to quit)")  # a second frame
        s.child.send("q")
        s.expect_prompt()
        assert exporter.scrapes >= 3  # one before the first frame, one per frame
        assert s.type("pwd").strip() == "/"
    finally:
        s.close()
        fake.close()
        exporter.close()
