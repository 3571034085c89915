"""Cleaning up after a test's RBD image, and the objects the gateway keeps beside it."""

from __future__ import annotations

import rados
import rbd


def remove_image(ioctx, name: str) -> None:
    """Remove ``name`` and its reservation and lock-handoff objects; whatever is already gone
    stays gone (a test may have deleted the image itself)."""
    try:
        with rbd.Image(ioctx, name) as img:
            image_id = img.id()
        rbd.RBD().remove(ioctx, name)
        for oid in (f"gateway.pr.{image_id}", f"gateway.lock.{image_id}"):
            try:
                ioctx.remove_object(oid)
            except rados.ObjectNotFound:
                pass
    except (rbd.Error, rados.Error):
        pass
