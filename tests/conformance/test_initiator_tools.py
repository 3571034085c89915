"""Real initiators against the portal: libiscsi's utilities and qemu-img (libiscsi driver)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess

import pytest
from portal_process import IQN, running_portal

USER, PASSWORD = "chap-user-01", "chap-secret-0123"
ALLOWED = "iqn.2024-01.org.example:allowed"


def run(*cmd: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout)


@pytest.fixture(scope="module")
def plain():
    with running_portal("127.0.4.12", "--ramdisk", "64M", "--ramdisk", "16M") as portal:
        yield portal


@pytest.fixture(scope="module")
def chap():
    # iscsi-ls uses the URL's credentials for discovery and for the login that lists LUNs.
    with running_portal("127.0.4.13", "--ramdisk", "16M", "--chap", f"{USER}:{PASSWORD}",
                        "--discovery-chap", f"{USER}:{PASSWORD}") as portal:
        yield portal


def test_iscsi_ls_discovers_the_target_and_its_luns_without_chap(plain):
    out = run("iscsi-ls", "-s", f"iscsi://{plain.address}")
    assert out.returncode == 0, out.stderr
    assert f"Target:{IQN} Portal:{plain.address},1" in out.stdout
    # iscsi-ls prints last LBA x block size, rounded down: 64 MiB shows as 63M.
    assert re.search(r"Lun:0\s+Type:DIRECT_ACCESS \(Size:63M\)", out.stdout), out.stdout
    assert re.search(r"Lun:1\s+Type:DIRECT_ACCESS \(Size:15M\)", out.stdout), out.stdout


def test_iscsi_ls_with_chap_on_discovery_and_login(chap):
    out = run("iscsi-ls", "-s", f"iscsi://{USER}%{PASSWORD}@{chap.address}")
    assert out.returncode == 0, out.stderr
    assert f"Target:{IQN} Portal:{chap.address},1" in out.stdout
    assert re.search(r"Lun:0\s+Type:DIRECT_ACCESS", out.stdout), out.stdout
    out = run("iscsi-inq", chap.url(0, USER, PASSWORD))
    assert out.returncode == 0 and "Vendor:LIO-ORG" in out.stdout, out.stderr


def test_iscsi_ls_without_or_with_wrong_chap_is_refused(chap):
    for url in (f"iscsi://{chap.address}", f"iscsi://{USER}%wrong-password-1@{chap.address}"):
        out = run("iscsi-ls", url)
        assert out.returncode != 0 and "Target:" not in out.stdout
    out = run("iscsi-inq", chap.url(0, USER, "wrong-password-1"))
    assert out.returncode != 0 and "Authentication failure" in out.stdout + out.stderr


def test_iscsi_inq_reads_standard_inquiry_and_vpd(plain):
    out = run("iscsi-inq", plain.url(0))
    assert out.returncode == 0, out.stderr
    assert "Peripheral Device Type:DIRECT_ACCESS" in out.stdout and "Product:TCMU device" in out.stdout
    out = run("iscsi-inq", "-e", "1", "-c", "128", plain.url(0))
    assert out.returncode == 0 and re.search(r"Unit Serial Number:\[[0-9a-f-]{36}\]", out.stdout), out.stdout
    out = run("iscsi-inq", "-e", "1", "-c", "131", plain.url(0))
    assert out.returncode == 0 and "Designator Type:(3) NAA" in out.stdout, out.stdout


def test_iscsi_readcapacity16_reports_the_size(plain):
    out = run("iscsi-readcapacity16", plain.url(1))
    assert out.returncode == 0, out.stderr
    assert "Total size:16777216" in out.stdout and "LOGICAL BLOCK LENGTH IN BYTES:512" in out.stdout


def test_acl_admits_listed_initiator_and_refuses_others():
    with running_portal("127.0.4.14", "--ramdisk", "8M", "--acl", ALLOWED) as portal:
        ok = run("iscsi-inq", "-i", ALLOWED, portal.url(0))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        refused = run("iscsi-inq", "-i", "iqn.2024-01.org.example:stranger", portal.url(0))
        assert refused.returncode != 0 and "Authorization failure" in refused.stdout + refused.stderr


@pytest.mark.parametrize("header_digest", ["none", "crc32c"])
def test_qemu_img_convert_round_trip_keeps_the_checksum(plain, tmp_path, header_digest):
    src, back = tmp_path / "src.raw", tmp_path / "back.raw"
    payload = os.urandom(64 << 20)
    src.write_bytes(payload)
    opts = (f"driver=iscsi,transport=tcp,portal={plain.address},target={IQN},lun=0,"
            f"header-digest={header_digest},initiator-name=iqn.2008-11.org.linux-kvm:{header_digest}")
    out = run("qemu-img", "convert", "-n", "-f", "raw", "--target-image-opts", str(src), opts, timeout=300)
    assert out.returncode == 0, out.stderr
    out = run("qemu-img", "convert", "-O", "raw", "--image-opts", opts, str(back), timeout=300)
    assert out.returncode == 0, out.stderr
    assert hashlib.sha256(back.read_bytes()).hexdigest() == hashlib.sha256(payload).hexdigest()
    # The digest was really negotiated (libiscsi only offers what qemu asked for).
    want = "CRC32C" if header_digest == "crc32c" else "None"
    sessions = [line for line in plain.log().splitlines() if f"linux-kvm:{header_digest}" in line]
    assert sessions and all(f"HeaderDigest {want}" in line for line in sessions)
