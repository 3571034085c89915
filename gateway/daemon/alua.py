"""The ALUA view of a LUN, derived from the config alone so every gateway reports the same.

One target port group per gateway of the target (group id = its TPG tag, one target port
each, relative port id = the TPG tag); the owner's group Active/Optimized, the others
Active/Non-optimized (implicit ALUA, as ceph-iscsi).  A LUN whose owner is not a gateway of
the target has no optimized group: every path is non-optimized.
"""

from __future__ import annotations

from gateway.config.model import Target, TargetLun
from tcmu_handler.alua import AluaModel, implicit_model

# ceph-iscsi: implicit transition time = osd_op_timeout + 15
TRANSITION_MARGIN = 15


def lun_alua(target: Target, lun: TargetLun, osd_op_timeout: int) -> AluaModel:
    groups = {p.tpg_tag: (p.tpg_tag,) for p in target.portals.values()}
    owner = target.portals.get(lun.owner)
    return implicit_model(owner.tpg_tag if owner is not None else 0, groups,
                          transition_time=min(255, osd_op_timeout + TRANSITION_MARGIN))
