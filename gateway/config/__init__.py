"""The cluster configuration: model, validation, stores, ceph-iscsi import/export.

Modules (see docs/config-store.md):

* ``model``        dataclasses of the desired state (``ClusterConfig`` and its entities)
* ``validation``   every rule, each with a message saying what to fix; ``violations(cfg)``
* ``allocation``   LUN ids, TPG tags, owners, WWNs (ceph-iscsi's rules, pure functions)
* ``operations``   typed changes for ``store.update`` (add_target, map_lun, add_client...)
* ``store``        ``ConfigStore`` (protocol) and ``MemoryConfigStore``
* ``rados_store``  ``RadosConfigStore`` (imports ``rados``; not re-exported here)
* ``follow``       ``ConfigFollower``: async iterator of new configs for the daemon
* ``status``       ``GatewayStatus``, ``ApplyReport``
* ``ceph_iscsi``   ``gateway.conf`` v11 import/export and schema upgrades
* ``crypto``       CHAP secrets at rest (RSA-OAEP, ceph-iscsi compatible)
* ``image_identity`` WWN in the RBD image metadata (imports ``rbd``)
"""

from gateway.config.errors import (
    AlreadyExists,
    ConfigError,
    ConflictError,
    NotFound,
    RetriesExhausted,
    SecretError,
    StoreError,
    ValidationError,
)
from gateway.config.model import (
    ChapAuth,
    Client,
    ClusterConfig,
    Disk,
    Gateway,
    HostGroup,
    Portal,
    Target,
    TargetLun,
)
from gateway.config.status import ApplyReport, GatewayStatus
from gateway.config.store import Committed, ConfigStore, MemoryBackend, MemoryConfigStore

__all__ = [
    "AlreadyExists", "ApplyReport", "ChapAuth", "Client", "ClusterConfig", "Committed", "ConfigError",
    "ConfigStore", "ConflictError", "Disk", "Gateway", "GatewayStatus", "HostGroup", "MemoryBackend",
    "MemoryConfigStore", "NotFound", "Portal", "RetriesExhausted", "SecretError", "StoreError", "Target",
    "TargetLun", "ValidationError",
]
