"""A portal's port and advertised addresses: validation, storage, export; blocklist parsing."""

from __future__ import annotations

import pytest

from gateway.config import ceph_iscsi, codec, validation
from gateway.config import operations as ops
from gateway.config.errors import ValidationError
from gateway.config.model import ClusterConfig, split_host_port
from gateway.daemon.ceph import address_ip, parse_blocklist

IQN = "iqn.2003-01.com.example:t1"


def config() -> ClusterConfig:
    cfg = ClusterConfig()
    ops.add_target(cfg, IQN)
    ops.add_portal(cfg, IQN, "gw1", ["192.168.1.10"])
    ops.add_portal(cfg, IQN, "gw2", ["192.168.1.11", "fd00::11"], port=3261,
                   advertise=["203.0.113.5:13260", "[2001:db8::5]:3260"])
    return cfg


@pytest.mark.parametrize("text", ["10.0.2.102", "10.0.2.102:3260", "gw1.example.com", "gw1.example.com:3261",
                                  "[2001:db8::1]:3260", "2001:db8::1"])
def test_advertised_addresses_accepted(text):
    assert validation.check_advertise_address(text)


@pytest.mark.parametrize("text", ["10.0.2.102:0", "10.0.2.102:70000", "bad_name", "0.0.0.0", "224.0.0.1:3260",
                                  "-gw.example.com", ""])
def test_advertised_addresses_rejected_with_a_message(text):
    with pytest.raises(ValidationError, match="advertis|port"):
        validation.check_advertise_address(text)


def test_one_advertised_address_per_portal_address_or_none():
    cfg = config()
    with pytest.raises(ValidationError, match="one advertised address per portal address"):
        ops.set_portal_endpoint(cfg, IQN, "gw1", advertise=["10.0.0.1", "10.0.0.2"])
    ops.set_portal_endpoint(cfg, IQN, "gw1", advertise=["10.0.0.1"], port=13260)
    p = cfg.targets[IQN].portals["gw1"]
    assert (p.port, p.advertise) == (13260, ["10.0.0.1"])
    assert p.endpoints() == [("192.168.1.10", 13260, "10.0.0.1", 13260)]
    with pytest.raises(ValidationError, match="out of range"):
        ops.set_portal_endpoint(cfg, IQN, "gw1", port=0)


def test_endpoints_pair_each_bound_address_with_what_discovery_announces():
    p = config().targets[IQN].portals["gw2"]
    assert p.endpoints() == [("192.168.1.11", 3261, "203.0.113.5", 13260),
                             ("fd00::11", 3261, "2001:db8::5", 3260)]
    assert split_host_port("host", 3260) == ("host", 3260)


def test_new_addresses_drop_advertised_ones_that_described_the_old_ones():
    cfg = config()
    ops.set_portal_addresses(cfg, IQN, "gw2", ["192.168.1.12"])
    assert cfg.targets[IQN].portals["gw2"].advertise == []


def test_port_and_advertise_survive_the_store_codec_and_default_portals_stay_as_before():
    cfg = config()
    blobs = codec.encode(cfg)
    assert b"port" not in blobs[codec.portal_key(IQN, "gw1")]  # unchanged for older readers
    back = codec.decode(blobs)
    assert back.targets[IQN].portals["gw2"].port == 3261
    assert back.targets[IQN].portals["gw2"].advertise == ["203.0.113.5:13260", "[2001:db8::5]:3260"]
    assert back.targets[IQN].portals["gw2"].extra == {}


def test_port_and_advertise_are_exported_and_imported_back():
    cfg = config()
    doc = ceph_iscsi.export_document(cfg)
    portals = doc["targets"][IQN]["portals"]
    assert "port" not in portals["gw1"] and "advertise" not in portals["gw1"]
    assert portals["gw2"]["port"] == 3261 and portals["gw2"]["advertise"][0] == "203.0.113.5:13260"
    back, _ = ceph_iscsi.import_document(doc)
    assert back.targets[IQN].portals["gw2"].endpoints() == cfg.targets[IQN].portals["gw2"].endpoints()


def test_a_stored_bad_advertise_is_a_violation():
    cfg = config()
    cfg.targets[IQN].portals["gw1"].advertise = ["a", "b"]
    assert any("advertised" in v for v in validation.violations(cfg))


def test_blocklist_listing_of_pacific_is_parsed():
    out = b'[{"addr":"127.0.0.1:0/12345","until":"2026-11-26T12:30:54.913075+0000"}][]'
    assert parse_blocklist(out) == ["127.0.0.1:0/12345"]
    assert parse_blocklist(b"") == []
    assert address_ip("127.0.0.1:0/12345") == "127.0.0.1"
    assert address_ip("v2:[::1]:6800/7") == "::1"
