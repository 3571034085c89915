"""Draining a gateway moves the LUNs it owns to the target's other gateways, least loaded first."""

import pytest

from gateway.config import operations as ops
from gateway.config.errors import NotFound, ValidationError
from gateway.config.model import ClusterConfig

T = "iqn.2003-01.com.example:t1"


def target_with(gateways, disks):
    cfg = ClusterConfig()
    ops.add_target(cfg, T)
    for i, gw in enumerate(gateways):
        ops.add_portal(cfg, T, gw, [f"10.0.0.{i + 1}"])
    for d in disks:
        ops.add_disk(cfg, "rbd", d)
        ops.map_lun(cfg, T, f"rbd/{d}")
    return cfg


def test_drain_spreads_the_owned_luns_over_the_other_gateways():
    cfg = target_with(["gw1", "gw2", "gw3"], ["a", "b", "c", "d", "e", "f"])
    owned = sorted(lun.disk for lun in cfg.targets[T].luns.values() if lun.owner == "gw1")
    assert len(owned) == 2
    moved = ops.drain_portal(cfg, T, "gw1")
    assert sorted(moved) == owned
    assert cfg.active_luns("gw1") == 0
    assert cfg.active_luns("gw2") == cfg.active_luns("gw3") == 3
    assert ops.drain_portal(cfg, T, "gw1") == {}


def test_draining_the_only_gateway_is_refused_while_it_owns_luns():
    cfg = target_with(["gw1"], ["a"])
    with pytest.raises(ValidationError, match="only gateway"):
        ops.drain_portal(cfg, T, "gw1")
    with pytest.raises(NotFound):
        ops.drain_portal(cfg, T, "gw9")
