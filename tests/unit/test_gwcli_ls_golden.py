"""``ls`` of a populated configuration, byte for byte, without and with colours.

The fake API serves ``export_document`` of a real ``ClusterConfig`` (two gateways, one down;
disks in two pools, one degraded, one whose image is missing; hosts with no CHAP, CHAP and
mutual CHAP; a logged-in host; a host group).  Set GWCLI_UPDATE_GOLDEN=1 to rewrite the
files after an intended change, then review the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from gwcli_fake_api import Harness, populated

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "gwcli"
ANSI = re.compile(r"\033\[[0-9;]*m")


@pytest.fixture(params=[False, True], ids=["plain", "colour"])
def harness(request, tmp_path):
    h = Harness(populated(), str(tmp_path / "prefs"), color=request.param, width=100)
    yield h
    h.close()


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("GWCLI_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"output differs from {path}"


def test_ls_of_populated_config_matches_golden(harness):
    ok, out, err = harness.run("ls /")
    assert ok and not err
    check_golden(f"ls_{'colour' if harness.shell.color else 'plain'}.txt", out)


def test_ls_colours_follow_health(tmp_path):
    h = Harness(populated(), str(tmp_path / "prefs"), color=True, width=100)
    try:
        _, out, _ = h.run("ls /")
    finally:
        h.close()
    lines = {ANSI.sub("", line): line for line in out.splitlines()}

    def colour_of(summary_end: str) -> str:
        line = next(line for plain, line in lines.items() if plain.endswith(summary_end))
        summary = line.split("\033[1m [\033[0m", 1)[1]  # after the bold " ["
        if "\033[1m\033[31m" in summary:
            return "red"
        if "\033[32m" in summary:
            return "green"
        return "none"

    assert colour_of("(UP)]") == "green"
    assert colour_of("(DOWN)]") == "red"
    assert colour_of("Portals: 2]") == "red"  # not every gateway up
    assert colour_of("[NOT FOUND]") == "red"
    assert colour_of("failovers, 1.5G)]") == "red"
    assert colour_of("(Online, 10G)]") == "green"
    assert colour_of("Hosts: 4]") == "red"  # MISCONFIG: CHAP and no-CHAP hosts mixed
    assert colour_of("Disks: 0(0b)]") == "red"  # a host without CHAP
    assert colour_of("Targets: 1]") == "none"
    assert colour_of("[HEALTH_OK]") == "green"


def test_plain_output_has_no_escape_sequences_and_fits_the_width(tmp_path):
    h = Harness(populated(), str(tmp_path / "prefs"), color=False, width=100)
    try:
        _, out, _ = h.run("ls /")
    finally:
        h.close()
    assert "\033" not in out
    assert {len(line) for line in out.splitlines()} == {100}  # configshell pads to the width


def test_ls_shows_every_status_word(tmp_path):
    h = Harness(populated(), str(tmp_path / "prefs"), color=False, width=120)
    try:
        _, out, _ = h.run("ls /")
    finally:
        h.close()
    for words in ("[Clusters: 1]", "[HEALTH_OK]", "[Pools: 3]", "[(x3), Commit: 4.5G/20G (22%), Used: 5K]",
                  "[(2+1), Commit: 0b/40G (0%), Used: 0b]", "[OSDs: 1,MONs: 1]", "[14.5G, Disks: 5]",
                  "[rbd (4.5G)]", "[rbd/disk_1 (Online, 1G)]", "[NOT FOUND]",
                  "[DiscoveryAuth: CHAP, Targets: 1]", "[Auth: None, Gateways: 2]", "[Disks: 4]",
                  "[Owner: gw1.example.com, Lun: 0]", "[Up: 1/2, Portals: 2]", "[192.168.100.201 (UP)]",
                  "[192.168.100.202 (DOWN)]", "[Groups : 1]", "[Hosts: 2, Disks: 2]", "[host]", "[disk]",
                  "[Auth: MISCONFIG, Hosts: 4]", "[LOGGED-IN, Auth: CHAP, Disks: 1(1G)]",
                  "[Auth: CHAP_MUTUAL, Disks: 2(12G)]", "[rbd/disk_1(1G), Owner: gw1.example.com]"):
        assert words in out, words
