"""The guest's /init and shell library, run by the host's /bin/sh with the boot stubbed.

What matters here is that a test script can never pass by accident: a failing command
or a vm_fail anywhere (even inside $(...)) must give RESULT: FAIL.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from gateway.testing.guest import INIT, LIB_PATH
from gateway.testing.guest_events import GuestEvents, parse_events


def run_init(tmp: Path, script: str, signals: dict[str, str] | None = None) -> tuple[GuestEvents, str]:
    """Run /init as the guest would, minus mounts and power-off (never PID 1 here)."""
    d = tmp / "vmtest"
    d.mkdir()
    (d / "lib.sh").write_bytes(LIB_PATH.read_bytes())
    (d / "test.sh").write_text(script)
    (tmp / "signals").mkdir()
    for name, value in (signals or {}).items():
        (tmp / "signals" / name).write_text(value)
    (d / "env").write_text(
        f"VM_FAILED_FILE={tmp}/failed\n"
        f"VM_WRITTEN={tmp}/written\n"
        f"VM_SIGNALS={tmp}/signals\n"
        f"vm_channels() {{ exec 3>>{tmp}/events 4>>{tmp}/console; }}\n"
        "vm_boot() { vm_channels; vm_log 'boot done'; }\n"
        # tmp may not support O_DIRECT: the data logic is what is under test here
        "dd() { set -- $(printf '%s\\n' \"$@\" | sed 's/^[io]flag=direct$/status=none/')\n"
        "       command dd \"$@\"; }\n"
    )
    (tmp / "init").write_text(INIT)
    env = {"PATH": os.environ["PATH"], "VMTEST": str(d)}
    subprocess.run(["/bin/sh", str(tmp / "init")], env=env, timeout=60, capture_output=True)
    console = (tmp / "console").read_text()
    return parse_events((tmp / "events").read_text()), console


def test_script_that_runs_to_the_end_passes(tmp_path):
    ev, _ = run_init(tmp_path, "vm_log hello\nvm_data answer 42\n")
    assert ev.result == "PASS"
    assert [p.text for p in ev.progress] == ["boot done", "hello"]
    assert ev.data == {"answer": "42"}


def test_failing_command_fails_the_run_and_stops_the_script(tmp_path):
    ev, _ = run_init(tmp_path, "vm_log one\nfalse\nvm_log unreachable\n")
    assert ev.result == "FAIL"
    assert ev.reason == "test script exited with status 1"
    assert "unreachable" not in [p.text for p in ev.progress]


def test_vm_fail_inside_command_substitution_fails_the_run(tmp_path):
    ev, _ = run_init(tmp_path, 'x=$(vm_fail "deep reason")\nvm_log unreachable\n')
    assert (ev.result, ev.reason) == ("FAIL", "deep reason")
    assert "unreachable" not in [p.text for p in ev.progress]


def test_vm_fail_in_a_condition_still_fails_the_run(tmp_path):
    ev, _ = run_init(tmp_path, 'if [ "$(vm_fail swallowed)" = "" ]; then vm_log went-on; fi\n')
    assert ev.result == "FAIL"
    assert ev.reason == "swallowed"


def test_vm_block_reports_output_and_status(tmp_path):
    script = "vm_block greet echo hi there\nvm_block nope sh -c 'echo bad; exit 3' || true\n"
    ev, console = run_init(tmp_path, script)
    assert ev.result == "PASS"
    assert ev.blocks == {"greet": "hi there", "nope": "bad"}
    assert ev.block_status == {"greet": 0, "nope": 3}
    assert "hi there" in console


def test_vm_wait_host_returns_the_value_the_host_signalled(tmp_path):
    ev, _ = run_init(tmp_path, 'v=$(vm_wait_host go 5)\nvm_data got "$v"\n', signals={"go": "portal-b"})
    assert ev.result == "PASS"
    assert ev.data["got"] == "portal-b"
    assert ev.waiting == ["go"]


def test_vm_wait_host_fails_the_run_when_no_signal_comes(tmp_path):
    ev, _ = run_init(tmp_path, "vm_wait_host never 1\nvm_log unreachable\n")
    assert (ev.result, ev.reason) == ("FAIL", "no host signal 'never' within 1s")


def test_every_acknowledged_write_is_verified_and_overwrites_are_forgotten(tmp_path):
    disk = tmp_path / "disk"
    disk.write_bytes(b"\0" * (8 << 20))
    script = (f"vm_write {disk} 0 2 a\n"
              f"vm_write {disk} 4 2 b\n"
              f"vm_write {disk} 1 2 c\n"      # overwrites half of a: a is no longer expected
              f"vm_verify_all {disk}\n"
              f"vm_data written \"$(cut -d' ' -f4 {tmp_path}/written | tr '\\n' ' ')\"\n")
    ev, _ = run_init(tmp_path, script)
    assert ev.result == "PASS", ev.reason
    assert ev.data["written"].split() == ["b", "c"]
    verified = [p.text for p in ev.progress if p.text.startswith("verified")]
    assert [t.split("(")[1] for t in verified] == ["b)", "c)"]


def test_vm_verify_all_catches_data_that_changed_behind_its_back(tmp_path):
    disk = tmp_path / "disk"
    disk.write_bytes(b"\0" * (4 << 20))
    script = (f"vm_write {disk} 0 1 a\n"
              f"printf corrupt | dd of={disk} bs=1 seek=100 conv=notrunc status=none\n"
              f"vm_verify_all {disk}\n")
    ev, _ = run_init(tmp_path, script)
    assert ev.result == "FAIL"
    assert ev.reason == f"data read back from {disk} differs (a)"
