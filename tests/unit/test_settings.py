"""Settings: every ceph-iscsi key parses with its default; bad values say what is allowed."""

from __future__ import annotations

import textwrap

import pytest

from gateway import settings
from gateway.settings import SettingsError

# The reference table (ceph-iscsi 3.9, section B): key -> default.
CEPH_ISCSI_DEFAULTS = {
    "cluster_name": "ceph", "pool": "rbd", "cluster_client_name": "client.admin",
    "gateway_conf": "gateway.conf", "ceph_config_dir": "/etc/ceph", "time_out": 30,
    "loop_delay": 2, "api_host": "::", "api_port": 5000, "api_secure": True,
    "api_ssl_verify": False, "api_user": "admin", "api_password": "admin", "trusted_ip_list": [],
    "ceph_user": "admin", "debug": False, "minimum_gateways": 2,
    "priv_key": "iscsi-gateway.key", "pub_key": "iscsi-gateway-pub.key",
    "prometheus_exporter": True, "prometheus_host": "::", "prometheus_port": 9287,
    "logger_level": 10, "log_to_stderr": False, "log_to_stderr_prefix": "", "log_to_file": True,
    "alua_failover_type": "implicit",
    "dataout_timeout": 20, "nopin_response_timeout": 5, "nopin_timeout": 5, "cmdsn_depth": 128,
    "immediate_data": True, "initial_r2t": True, "max_outstanding_r2t": 1,
    "first_burst_length": 262144, "max_burst_length": 524288,
    "max_recv_data_segment_length": 262144, "max_xmit_data_segment_length": 262144,
    "max_data_area_mb": 8, "hw_max_sectors": 1024, "qfull_timeout": 5, "osd_op_timeout": 30,
    "lock_lost_cnt_threshhold": 12, "status_check_interval": 10, "stable_state_reset_count": 3,
}

# key -> (section, lowest valid, highest valid) for every bounded integer key.
INT_BOUNDS = {
    "time_out": ("config", 1, 600), "loop_delay": ("config", 1, 60),
    "api_port": ("config", 1, 65535), "minimum_gateways": ("config", 1, 9999),
    "prometheus_port": ("config", 1, 65535), "logger_level": ("config", 10, 50),
    "dataout_timeout": ("target", 2, 60), "nopin_response_timeout": ("target", 3, 60),
    "nopin_timeout": ("target", 3, 60), "cmdsn_depth": ("target", 1, 512),
    "max_outstanding_r2t": ("target", 1, 65535),
    "first_burst_length": ("target", 512, 16777215), "max_burst_length": ("target", 512, 16777215),
    "max_recv_data_segment_length": ("target", 512, 16777215),
    "max_xmit_data_segment_length": ("target", 512, 16777215),
    "max_data_area_mb": ("target", 1, 2048), "hw_max_sectors": ("target", 1, 8192),
    "qfull_timeout": ("target", 0, 600), "osd_op_timeout": ("target", 0, 600),
    "lock_lost_cnt_threshhold": ("device_status", 1, 1000000),
    "status_check_interval": ("device_status", 1, 600),
    "stable_state_reset_count": ("device_status", 1, 600),
}


def _cfg(tmp_path, text: str) -> str:
    p = tmp_path / "iscsi-gateway.cfg"
    p.write_text(textwrap.dedent(text))
    return str(p)


def test_missing_file_gives_every_ceph_iscsi_default(tmp_path):
    s = settings.load(str(tmp_path / "absent.cfg"))
    for key, default in CEPH_ISCSI_DEFAULTS.items():
        assert getattr(s, key) == default, key
    assert s.warnings == []


def test_every_reference_key_is_known_in_its_section():
    for key in CEPH_ISCSI_DEFAULTS:
        assert key in settings.BY_NAME, key
    assert set(settings.BY_SECTION) == {"config", "target", "device_status"}


@pytest.mark.parametrize("key", sorted(CEPH_ISCSI_DEFAULTS))
def test_each_key_parses_its_default_written_in_the_file(tmp_path, key):
    setting = settings.BY_NAME[key]
    text = f"[{setting.section}]\n{key} = {setting.format(CEPH_ISCSI_DEFAULTS[key])}\n"
    s = settings.load(_cfg(tmp_path, text))
    assert getattr(s, key) == CEPH_ISCSI_DEFAULTS[key]


@pytest.mark.parametrize("key", sorted(INT_BOUNDS))
def test_int_bounds_accept_edges_and_reject_beyond(tmp_path, key):
    section, lo, hi = INT_BOUNDS[key]
    assert getattr(settings.load(_cfg(tmp_path, f"[{section}]\n{key} = {lo}\n")), key) == lo
    assert getattr(settings.load(_cfg(tmp_path, f"[{section}]\n{key} = {hi}\n")), key) == hi
    for bad in (lo - 1, hi + 1):
        with pytest.raises(SettingsError) as e:
            settings.load(_cfg(tmp_path, f"[{section}]\n{key} = {bad}\n"))
        assert key in str(e.value) and f"{lo}..{hi}" in str(e.value)


def test_non_integer_names_key_and_range(tmp_path):
    with pytest.raises(SettingsError, match=r"\[config\] api_port: expected an integer 1\.\.65535"):
        settings.load(_cfg(tmp_path, "[config]\napi_port = fivethousand\n"))


@pytest.mark.parametrize("word,value", [("true", True), ("Yes", True), ("1", True), ("on", True),
                                        ("false", False), ("NO", False), ("0", False)])
def test_bool_words(tmp_path, word, value):
    assert settings.load(_cfg(tmp_path, f"[config]\napi_secure = {word}\n")).api_secure is value


def test_bad_bool_is_an_error(tmp_path):
    with pytest.raises(SettingsError, match="api_secure: expected a boolean"):
        settings.load(_cfg(tmp_path, "[config]\napi_secure = maybe\n"))


def test_enum_rejects_unknown_choice(tmp_path):
    assert settings.load(_cfg(tmp_path, "[config]\nalua_failover_type = Explicit\n")) \
        .alua_failover_type == "explicit"
    with pytest.raises(SettingsError, match="expected one of implicit, explicit"):
        settings.load(_cfg(tmp_path, "[config]\nalua_failover_type = symmetric\n"))


def test_trusted_ip_list_is_split_and_stripped(tmp_path):
    s = settings.load(_cfg(tmp_path, "[config]\ntrusted_ip_list = 10.0.0.1, ::1 ,192.168.1.2,\n"))
    assert s.trusted_ip_list == ["10.0.0.1", "::1", "192.168.1.2"]


def test_logger_level_accepts_names_and_numbers(tmp_path):
    assert settings.load(_cfg(tmp_path, "[config]\nlogger_level = INFO\n")).logger_level == 20
    assert settings.load(_cfg(tmp_path, "[config]\nlogger_level = 40\n")).logger_level == 40
    with pytest.raises(SettingsError, match="logger_level"):
        settings.load(_cfg(tmp_path, "[config]\nlogger_level = LOUD\n"))


def test_unknown_key_and_section_warn_but_load(tmp_path, caplog):
    s = settings.load(_cfg(tmp_path, "[config]\ngateway_keyring = x\n[nonsense]\na = 1\n"))
    assert any("gateway_keyring" in w for w in s.warnings)
    assert any("[nonsense]" in w for w in s.warnings)
    assert "gateway_keyring" in caplog.text


def test_key_in_wrong_section_is_unknown(tmp_path):
    s = settings.load(_cfg(tmp_path, "[target]\napi_port = 80\n"))
    assert s.api_port == 5000
    assert s.warnings


def test_env_variable_and_explicit_path(tmp_path, monkeypatch):
    env_cfg = _cfg(tmp_path, "[config]\napi_port = 5001\n")
    monkeypatch.setenv(settings.CFG_ENV, env_cfg)
    assert settings.load().api_port == 5001
    other = tmp_path / "other.cfg"
    other.write_text("[config]\napi_port = 5002\n")
    assert settings.load(str(other)).api_port == 5002


def test_config_key_references_are_deferred_and_resolved(tmp_path):
    s = settings.load(_cfg(tmp_path, "[config]\napi_password = config://iscsi/api_password\n"))
    assert s.deferred == {"api_password": "iscsi/api_password"}
    s.resolve_deferred(lambda key: {"iscsi/api_password": "s3cret"}[key])
    assert s.api_password == "s3cret" and s.deferred == {}


def test_checkconf_hash_ignores_client_name_and_log_level(tmp_path):
    base = settings.load(_cfg(tmp_path, "[config]\napi_port = 5000\n")).checkconf_hash()
    same = settings.load(_cfg(tmp_path, "[config]\ncluster_client_name = client.igw\n"
                                        "logger_level = 30\n")).checkconf_hash()
    other = settings.load(_cfg(tmp_path, "[config]\napi_port = 5001\n")).checkconf_hash()
    assert base == same != other


def test_ceph_conf_path_and_client_id(tmp_path):
    s = settings.load(_cfg(tmp_path, "[config]\ncluster_name = prod\nceph_config_dir = /srv/ceph\n"
                                     "cluster_client_name = client.iscsi\n"))
    assert s.ceph_conf == "/srv/ceph/prod.conf"
    assert s.client_id == "iscsi"


def test_parse_controls_validates_and_resets():
    out = settings.parse_controls(settings.TARGET_CONTROLS,
                                  {"cmdsn_depth": "64", "immediate_data": "no", "nopin_timeout": ""})
    assert out == {"cmdsn_depth": 64, "immediate_data": False, "nopin_timeout": None}
    with pytest.raises(SettingsError, match="cmdsn_depth: 513 is out of range"):
        settings.parse_controls(settings.TARGET_CONTROLS, {"cmdsn_depth": 513})
    with pytest.raises(SettingsError, match="unknown control 'bogus'"):
        settings.parse_controls(settings.DISK_CONTROLS, {"bogus": 1})


def test_malformed_file_is_a_clear_error(tmp_path):
    with pytest.raises(SettingsError, match="not a valid cfg file"):
        settings.load(_cfg(tmp_path, "api_port = 5000\n"))


def test_settings_doc_is_current():
    from pathlib import Path

    from gateway import settings_doc

    doc = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
    assert doc.read_text() == settings_doc.render(), "run: python -m gateway.settings_doc > docs/settings.md"
