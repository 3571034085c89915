"""Ceph RBD iSCSI gateway."""

__version__ = "0.1.0"
