"""A disk's WWN (unit serial) kept in its RBD image's metadata as well as in the config.

ceph-iscsi dropped the WWN with the config entry on detach, so re-attaching the same image
gave initiators and multipath a new device.  We store it on the image too and read it back
on attach.  The key avoids librbd's ``conf_`` prefix (those keys are librbd settings).
"""

from __future__ import annotations

from typing import Any

import rbd

from gateway.config.allocation import new_wwn
from gateway.config.errors import NotFound, StoreError
from gateway.config.validation import check_wwn

WWN_METADATA_KEY = "iscsi.wwn"


def _open(ioctx: Any, image: str) -> Any:
    try:
        return rbd.Image(ioctx, image)
    except rbd.ImageNotFound:
        raise NotFound(f"rbd image {ioctx.get_pool_name()}/{image} does not exist", "image") from None
    except rbd.Error as e:
        raise StoreError(f"cannot open rbd image {ioctx.get_pool_name()}/{image}: {e}") from None


def read_image_wwn(ioctx: Any, image: str) -> str | None:
    """The WWN recorded on the image, or None."""
    with _open(ioctx, image) as img:
        try:
            value = img.metadata_get(WWN_METADATA_KEY)
        except KeyError:
            return None
    return value or None


def write_image_wwn(ioctx: Any, image: str, wwn: str) -> None:
    check_wwn(wwn)
    with _open(ioctx, image) as img:
        img.metadata_set(WWN_METADATA_KEY, wwn)


def ensure_image_wwn(ioctx: Any, image: str, requested: str | None = None) -> str:
    """The WWN to register the image with, recorded on the image.

    An explicitly requested WWN wins (and replaces what the image had); otherwise the one
    the image already carries; otherwise a new random one.
    """
    current = read_image_wwn(ioctx, image)
    wwn = check_wwn(requested) if requested else (current or new_wwn())
    if wwn != current:
        write_image_wwn(ioctx, image, wwn)
    return wwn
