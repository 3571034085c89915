"""Batch mode: ``gwcli <path> <command> [args]`` and scripts on stdin; exit codes and messages.

Exit 0: done; 1: the command failed (gwcli's or the API's message on stderr); 2: bad
options or settings file; 3: the API cannot be reached or refuses the credentials.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from gwcli_fake_api import PASSWORD, USER, populated

from gateway import __version__
from gwcli.main import main

GWCLI = str(Path(sys.executable).with_name("gwcli"))


@pytest.fixture
def fake():
    f = populated()
    f.url = f.serve()
    yield f
    f.close()


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("GWCLI_PREFS_DIR", str(tmp_path / "prefs"))
    path = tmp_path / "iscsi-gateway.cfg"
    path.write_text(f"[config]\napi_user = {USER}\napi_password = {PASSWORD}\napi_secure = false\n")
    return str(path)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_batch_command_succeeds_and_prints_the_tree_without_colours(fake, cfg, capsys):
    code, out, err = run(capsys, "--cfg", cfg, "--api", fake.url, "ls", "/iscsi-targets", "1")
    assert code == 0, err
    assert "[DiscoveryAuth: CHAP, Targets: 1]" in out and "\033" not in out


def test_batch_path_then_command(fake, cfg, capsys):
    code, out, _ = run(capsys, "--cfg", cfg, "--api", fake.url, "/disks/rbd/disk_1", "info")
    assert code == 0 and "Backstore Object Name .. rbd.disk_1" in out


def test_batch_change_prints_ok_with_pending_gateways(fake, cfg, capsys):
    code, out, _ = run(capsys, "--cfg", cfg, "--api", fake.url, "/disks", "create", "pool=rbd", "image=new",
                       "size=1G")
    assert code == 0
    assert out.strip() == "ok"  # a disk not mapped to a target concerns no gateway
    code, out, _ = run(capsys, "--cfg", cfg, "--api", fake.url,
                       "/iscsi-targets/iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw/disks", "add", "rbd/new")
    assert code == 0 and out.strip() == "ok (pending on gw2.example.com: down)"


def test_batch_bad_argument_exits_1_with_the_reason(fake, cfg, capsys):
    code, out, err = run(capsys, "--cfg", cfg, "--api", fake.url, "/disks", "create", "rbd/x", "10X")
    assert code == 1
    assert err.strip() == "size must be a whole number followed by M, G or T (e.g. 10G), got '10X'"
    assert fake.changes() == []


def test_batch_api_refusal_exits_1_with_the_api_message(fake, cfg, capsys):
    fake.fail_next = (409, "disk rbd/x is being created by another request")
    code, _, err = run(capsys, "--cfg", cfg, "--api", fake.url, "/disks", "create", "rbd/x", "1G")
    assert code == 1 and err.strip() == "disk rbd/x is being created by another request"


def test_batch_unknown_command_exits_1(fake, cfg, capsys):
    code, _, err = run(capsys, "--cfg", cfg, "--api", fake.url, "/disks", "frobnicate")
    assert code == 1 and "Command not found frobnicate" in err


def test_unreachable_api_exits_3(cfg, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.8.1", 0))
        port = s.getsockname()[1]
    code, _, err = run(capsys, "--cfg", cfg, "--api", f"http://127.0.8.1:{port}", "ls")
    assert code == 3
    assert f"Unable to contact the local API endpoint (http://127.0.8.1:{port}/api)" in err


def test_api_without_scheme_means_http(fake, cfg, capsys):
    code, out, _ = run(capsys, "--cfg", cfg, "--api", fake.url.removeprefix("http://"), "ls", "/disks", "1")
    assert code == 0 and "[14.5G, Disks: 5]" in out


def test_wrong_credentials_exit_3_with_the_api_message(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GWCLI_PREFS_DIR", str(tmp_path / "prefs"))
    path = tmp_path / "bad.cfg"
    path.write_text("[config]\napi_user = someone\napi_password = wrong\n")
    code, _, err = run(capsys, "--cfg", str(path), "--api", fake.url, "ls")
    assert code == 3
    assert "REST API failure, code : 401 - username/password mismatch with the configuration file" in err


def test_invalid_settings_file_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.cfg"
    path.write_text("[config]\napi_port = seventy\n")
    code, _, err = run(capsys, "--cfg", str(path), "ls")
    assert code == 2 and "api_port: expected an integer 1..65535, got 'seventy'" in err


def test_default_endpoint_comes_from_the_cfg(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GWCLI_PREFS_DIR", str(tmp_path / "prefs"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "c.cfg"
    path.write_text(f"[config]\napi_port = {port}\napi_secure = true\n")
    code, _, err = run(capsys, "--cfg", str(path), "ls")
    assert code == 3 and f"(https://localhost:{port}/api)" in err


def test_commands_piped_on_stdin_stop_at_the_first_failure(fake, cfg, capsys, monkeypatch):
    script = ("# a comment\n/iscsi-targets create iqn.2003-01.com.example:a\n\n"
              "/disks create rbd/x 10X\n/iscsi-targets create iqn.2003-01.com.example:b\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    code, out, err = run(capsys, "--cfg", cfg, "--api", fake.url)
    assert code == 1 and "got '10X'" in err
    assert [r.path for r in fake.changes()] == ["/api/target/iqn.2003-01.com.example:a"]


def test_color_always_colours_batch_output(fake, cfg, capsys):
    code, out, _ = run(capsys, "--cfg", cfg, "--api", fake.url, "--color", "always", "ls", "/cluster", "1")
    assert code == 0 and "\033[32mHEALTH_OK\033[0m" in out


def test_secrets_stay_out_of_the_prefs_directory(fake, cfg, capsys, tmp_path):
    code, _, _ = run(capsys, "--cfg", cfg, "--api", fake.url,
                     "/iscsi-targets/iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw/hosts/"
                     "iqn.1994-05.com.redhat:rh7-client", "auth", "username=myiscsiusername",
                     "password=n3wsecretpass")
    assert code == 0
    for f in (tmp_path / "prefs").rglob("*"):
        if f.is_file():
            assert b"n3wsecretpass" not in f.read_bytes(), f


# ---- the installed console script ---------------------------------------------------------
def test_console_script_version_and_help():
    version = subprocess.run([GWCLI, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == f"gwcli {__version__}"
    usage = subprocess.run([GWCLI, "-h"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0
    for option in ("--cfg PATH", "--api URL", "--debug", "--color", "--version", "batch mode"):
        assert option in usage.stdout


def test_console_script_batch_exit_codes(fake, cfg, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GWCLI_PREFS_DIR": str(tmp_path / "p")}
    ok = subprocess.run([GWCLI, "--cfg", cfg, "--api", fake.url, "/iscsi-targets", "ls"], capture_output=True,
                        text=True, timeout=60, env=env)
    assert ok.returncode == 0 and "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw" in ok.stdout
    bad = subprocess.run([GWCLI, "--cfg", cfg, "--api", fake.url, "/iscsi-targets", "delete",
                          "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert bad.returncode == 1
    assert bad.stderr.strip().endswith("still has 4 client(s) and 4 disk(s); remove them first")
    usage = subprocess.run([GWCLI, "--color", "sometimes"], capture_output=True, text=True, timeout=60,
                           env=env)
    assert usage.returncode == 2 and "invalid choice: 'sometimes'" in usage.stderr
