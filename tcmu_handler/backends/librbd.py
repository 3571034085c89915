"""ctypes declarations for the parts of librados/librbd the rbd backend uses.

python3-rbd has no ``rbd_aio_compare_and_write``/``rbd_aio_writesame`` and
delivers one Python callback per I/O from librbd's threads; this binding uses
the completion batching interface instead (``rbd_set_image_notification`` +
``rbd_poll_io_events``), as fio and SPDK do.  Buffers are passed by address
through ``PyObject_GetBuffer``, so neither reads nor writes copy data.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_int64,
    c_size_t,
    c_ssize_t,
    c_uint8,
    c_uint64,
    c_void_p,
    py_object,
)

EVENT_TYPE_EVENTFD = 2
RBD_LOCK_MODE_EXCLUSIVE = 0
RBD_FEATURE_EXCLUSIVE_LOCK = 1 << 2
PYBUF_SIMPLE = 0
PYBUF_WRITABLE = 0x0001


class IoVec(Structure):
    _fields_ = [("iov_base", c_void_p), ("iov_len", c_size_t)]


class PyBuffer(Structure):
    """CPython's Py_buffer; ``obj`` is kept as a raw pointer (PyBuffer_Release drops it)."""

    _fields_ = [("buf", c_void_p), ("obj", c_void_p), ("len", c_ssize_t), ("itemsize", c_ssize_t),
                ("readonly", c_int), ("ndim", c_int), ("format", c_char_p), ("shape", c_void_p),
                ("strides", c_void_p), ("suboffsets", c_void_p), ("internal", c_void_p)]


class ImageInfo(Structure):
    _fields_ = [("size", c_uint64), ("obj_size", c_uint64), ("num_objs", c_uint64), ("order", c_int),
                ("block_name_prefix", ctypes.c_char * 24), ("parent_pool", c_int64),
                ("parent_name", ctypes.c_char * 96)]


UPDATE_CALLBACK = CFUNCTYPE(None, c_void_p)
COMPLETION_CALLBACK = CFUNCTYPE(None, c_void_p, c_void_p)
DIFF_CALLBACK = CFUNCTYPE(c_int, c_uint64, c_size_t, c_int, c_void_p)


def _load(name: str, soname: str) -> ctypes.CDLL:
    try:
        return ctypes.CDLL(soname, use_errno=True)
    except OSError:
        found = ctypes.util.find_library(name)
        if not found:
            raise
        return ctypes.CDLL(found, use_errno=True)


def _declare(lib: ctypes.CDLL, name: str, restype, *argtypes) -> None:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


rados = _load("rados", "librados.so.2")
rbd = _load("rbd", "librbd.so.1")
capi = ctypes.pythonapi

# Views are passed by their (preallocated) address: no byref object per I/O.
_declare(capi, "PyObject_GetBuffer", c_int, py_object, c_void_p, c_int)
_declare(capi, "PyBuffer_Release", None, c_void_p)
_declare(capi, "PyByteArray_AsString", c_void_p, py_object)

for _name, _res, _args in (
    ("rados_create2", c_int, (POINTER(c_void_p), c_char_p, c_char_p, c_uint64)),
    ("rados_conf_read_file", c_int, (c_void_p, c_char_p)),
    ("rados_conf_set", c_int, (c_void_p, c_char_p, c_char_p)),
    ("rados_connect", c_int, (c_void_p,)),
    ("rados_shutdown", None, (c_void_p,)),
    ("rados_ioctx_create", c_int, (c_void_p, c_char_p, POINTER(c_void_p))),
    ("rados_ioctx_destroy", None, (c_void_p,)),
    ("rados_ioctx_set_namespace", None, (c_void_p, c_char_p)),
    ("rados_getaddrs", c_int, (c_void_p, POINTER(c_char_p))),
):
    _declare(rados, _name, _res, *_args)

for _name, _res, _args in (
    ("rbd_open", c_int, (c_void_p, c_char_p, POINTER(c_void_p), c_char_p)),
    ("rbd_close", c_int, (c_void_p,)),
    ("rbd_stat", c_int, (c_void_p, POINTER(ImageInfo), c_size_t)),
    ("rbd_get_size", c_int, (c_void_p, POINTER(c_uint64))),
    ("rbd_get_features", c_int, (c_void_p, POINTER(c_uint64))),
    ("rbd_get_id", c_int, (c_void_p, c_char_p, c_size_t)),
    ("rbd_set_image_notification", c_int, (c_void_p, c_int, c_int)),
    ("rbd_poll_io_events", c_int, (c_void_p, c_void_p, c_int)),
    ("rbd_aio_create_completion", c_int, (c_void_p, c_void_p, c_void_p)),
    ("rbd_aio_get_arg", c_void_p, (c_void_p,)),
    ("rbd_aio_get_return_value", c_ssize_t, (c_void_p,)),
    ("rbd_aio_release", None, (c_void_p,)),
    ("rbd_aio_readv", c_int, (c_void_p, c_void_p, c_int, c_uint64, c_void_p)),
    ("rbd_aio_writev", c_int, (c_void_p, c_void_p, c_int, c_uint64, c_void_p)),
    ("rbd_aio_discard", c_int, (c_void_p, c_uint64, c_uint64, c_void_p)),
    ("rbd_aio_write_zeroes", c_int, (c_void_p, c_uint64, c_size_t, c_void_p, c_int, c_int)),
    ("rbd_aio_writesame", c_int, (c_void_p, c_uint64, c_size_t, c_void_p, c_size_t, c_void_p, c_int)),
    ("rbd_aio_compare_and_write", c_ssize_t,
     (c_void_p, c_uint64, c_size_t, c_void_p, c_void_p, c_void_p, c_void_p, c_int)),
    ("rbd_aio_flush", c_int, (c_void_p, c_void_p)),
    ("rbd_is_exclusive_lock_owner", c_int, (c_void_p, POINTER(c_int))),
    ("rbd_lock_acquire", c_int, (c_void_p, c_int)),
    ("rbd_lock_release", c_int, (c_void_p,)),
    ("rbd_lock_get_owners", c_int, (c_void_p, POINTER(c_int), POINTER(c_char_p), POINTER(c_size_t))),
    ("rbd_lock_get_owners_cleanup", None, (POINTER(c_char_p), c_size_t)),
    ("rbd_lock_break", c_int, (c_void_p, c_int, c_char_p)),
    ("rbd_update_watch", c_int, (c_void_p, POINTER(c_uint64), UPDATE_CALLBACK, c_void_p)),
    ("rbd_update_unwatch", c_int, (c_void_p, c_uint64)),
    ("rbd_diff_iterate2", c_int,
     (c_void_p, c_char_p, c_uint64, c_uint64, c_uint8, c_uint8, DIFF_CALLBACK, c_void_p)),
):
    _declare(rbd, _name, _res, *_args)


class LibError(OSError):
    """A librados/librbd call returned -errno."""

    def __init__(self, call: str, ret: int) -> None:
        super().__init__(-ret, f"{call}: {os.strerror(-ret)}")
        self.call = call


def check(call: str, ret: int) -> int:
    if ret < 0:
        raise LibError(call, ret)
    return ret


def lock_owners(image: int) -> list[str]:
    """Current exclusive-lock owners (blocking)."""
    cap = 8
    while True:
        arr = (c_char_p * cap)()
        n = c_size_t(cap)
        mode = c_int(0)
        ret = rbd.rbd_lock_get_owners(image, ctypes.byref(mode), arr, ctypes.byref(n))
        if ret == -errno.ERANGE:
            cap *= 4
            continue
        if ret == -errno.ENOENT:
            return []
        check("rbd_lock_get_owners", ret)
        owners = [arr[i].decode() for i in range(n.value)]
        rbd.rbd_lock_get_owners_cleanup(arr, n.value)
        return owners
