"""Erasure encoding through ctypes: pyeclib's own liberasurecode, called without the GIL.

pyeclib's C extension holds the GIL for a whole encode: the copy of the input into fragment
buffers, the parity, and a copy of every fragment into a new ``bytes``. On a PUT that was the
largest single holder of the GIL besides the chunker (profiled: ~0.2 ms per MiB, all of it
serial). Here the same library (the copy pyeclib's wheel ships, ``pyeclib.libs/``) is called
through ctypes, which releases the GIL for the call, and the fragments are handed out as views of
the library's own buffers, so nothing is copied under the GIL either; the caller writes them
out and then closes them (``Fragments.close`` frees the buffers).

Same library, same arguments, so the same bytes: when an encoder is first made for a (k, m),
its output is compared with pyeclib's for several input sizes, and any difference (or a library
that cannot be loaded) makes ``native_encoder`` return ``None``: the caller then uses pyeclib.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import threading
from types import TracebackType
from typing import Any, Final

log = logging.getLogger(__name__)

_ISA_L_RS_VAND: Final = 4  # ec_backend_id_t, as pyeclib's PyECLib_EC_Types.isa_l_rs_vand
_CHKSUM_NONE: Final = 1  # ec_checksum_type_t; pyeclib's default ("none")
_CT_OFFSET: Final = 56  # offset of ``ct`` in struct ec_args (k, m, w, hd, 32-byte union, pointer)
_ARGS_SIZE: Final = 256  # room for struct ec_args, zero-filled past the fields set
_CHECK_SIZES: Final = (1, 100, 4096, 65_537, 1_000_003)

_CharPP: Any = ctypes.POINTER(ctypes.POINTER(ctypes.c_char))  # char ** (a ctypes type object)


def _load_library() -> ctypes.CDLL | None:
    try:
        import pyeclib
    except ImportError:
        return None
    pattern = os.path.join(os.path.dirname(os.path.dirname(pyeclib.__file__)), "pyeclib.libs", "liberasurecode*.so*")
    for path in sorted(glob.glob(pattern)):
        try:
            lib = ctypes.CDLL(path)
            lib.liberasurecode_instance_create.argtypes = [ctypes.c_int, ctypes.c_void_p]
            lib.liberasurecode_instance_create.restype = ctypes.c_int
            lib.liberasurecode_encode.argtypes = [
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_uint64,
                ctypes.POINTER(_CharPP),
                ctypes.POINTER(_CharPP),
                ctypes.POINTER(ctypes.c_uint64),
            ]
            lib.liberasurecode_encode.restype = ctypes.c_int
            lib.liberasurecode_encode_cleanup.argtypes = [ctypes.c_int, _CharPP, _CharPP]
            lib.liberasurecode_encode_cleanup.restype = ctypes.c_int
            return lib
        except (OSError, AttributeError):
            continue
    return None


_PyMemoryView_FromMemory = ctypes.pythonapi.PyMemoryView_FromMemory
_PyMemoryView_FromMemory.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int]
_PyMemoryView_FromMemory.restype = ctypes.py_object
_PyBUF_READ: Final = 0x100


def _view(address: int | None, size: int) -> memoryview:
    """A read-only memoryview of ``size`` bytes at ``address`` (no ctypes type per size)."""
    if not address:
        raise OSError("liberasurecode returned a null fragment")
    view: memoryview = _PyMemoryView_FromMemory(address, size, _PyBUF_READ)
    return view


class Fragments:
    """The k + m fragments of one encode, as views of the library's buffers: valid until
    ``close`` (or the end of a ``with`` block), never after."""

    def __init__(self, lib: ctypes.CDLL, desc: int, data: Any, parity: Any, k: int, m: int, size: int) -> None:
        self._lib = lib
        self._desc = desc
        self._data: Any = data
        self._parity = parity
        addresses = [ctypes.cast(data[i], ctypes.c_void_p).value for i in range(k)]
        addresses += [ctypes.cast(parity[i], ctypes.c_void_p).value for i in range(m)]
        self.views: list[memoryview] = [_view(a, size) for a in addresses]

    def close(self) -> None:
        if self._data is None:
            return
        for view in self.views:
            view.release()
        self.views = []
        self._lib.liberasurecode_encode_cleanup(self._desc, self._data, self._parity)
        self._data = None

    def __enter__(self) -> Fragments:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class NativeEncoder:
    """EC(k, m) encoding with isa_l_rs_vand through liberasurecode; thread-safe (one encode at
    a time per encoder: the library's instance is shared)."""

    def __init__(self, lib: ctypes.CDLL, k: int, m: int) -> None:
        args = (ctypes.c_char * _ARGS_SIZE)()
        fields = (ctypes.c_int * 4).from_buffer(args)
        fields[0], fields[1], fields[2], fields[3] = k, m, 0, m  # k, m, w (backend default), hd
        ctypes.c_int.from_buffer(args, _CT_OFFSET).value = _CHKSUM_NONE
        desc = lib.liberasurecode_instance_create(_ISA_L_RS_VAND, ctypes.addressof(args))
        if desc <= 0:
            raise OSError(f"liberasurecode_instance_create failed ({desc})")
        self._lib = lib
        self._desc = desc
        self._args = args  # the library may keep a pointer to its arguments
        self.k = k
        self.m = m
        self._lock = threading.Lock()

    def encode(self, data: bytes) -> Fragments:
        d = _CharPP()
        p = _CharPP()
        size = ctypes.c_uint64()
        with self._lock:
            rc = self._lib.liberasurecode_encode(
                self._desc, data, len(data), ctypes.byref(d), ctypes.byref(p), ctypes.byref(size)
            )
        if rc != 0:
            raise OSError(f"liberasurecode_encode failed ({rc})")
        return Fragments(self._lib, self._desc, d, p, self.k, self.m, size.value)


_lib: ctypes.CDLL | None = None
_lib_loaded = False
_encoders: dict[tuple[int, int], NativeEncoder | None] = {}
_encoders_lock = threading.Lock()


def native_encoder(k: int, m: int, reference: object) -> NativeEncoder | None:
    """The native encoder for EC(k, m), or ``None`` if it is unavailable or does not reproduce
    ``reference`` (a pyeclib ``ECDriver`` for the same k and m) byte for byte."""
    global _lib, _lib_loaded
    key = (k, m)
    if key in _encoders:
        return _encoders[key]
    with _encoders_lock:
        if key in _encoders:
            return _encoders[key]
        if not _lib_loaded:
            _lib = _load_library()
            _lib_loaded = True
        encoder: NativeEncoder | None = None
        if _lib is not None:
            try:
                candidate = NativeEncoder(_lib, k, m)
                if _reproduces(candidate, reference):
                    encoder = candidate
                else:
                    log.warning("EC(%d,%d): liberasurecode through ctypes differs from pyeclib; using pyeclib", k, m)
            except OSError as exc:
                log.warning("EC(%d,%d): liberasurecode through ctypes unavailable (%s); using pyeclib", k, m, exc)
        _encoders[key] = encoder
        return encoder


def _reproduces(encoder: NativeEncoder, reference: object) -> bool:
    for size in _CHECK_SIZES:
        sample = os.urandom(size)
        expected = [bytes(f) for f in reference.encode(sample)]  # type: ignore[attr-defined]
        with encoder.encode(sample) as fragments:
            if [bytes(v) for v in fragments.views] != expected:
                return False
    return True
