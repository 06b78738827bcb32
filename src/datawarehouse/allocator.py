"""Process-wide malloc tuning for large, short-lived buffers (glibc only).

Every chunk passes through several ~1 MiB buffers (sealed frame, shards, decoded frame). glibc's
default serves allocations above a dynamic threshold (128 KiB at start) with ``mmap`` and hands
them back with ``munmap`` when freed, so each buffer costs fresh page faults on every use;
pyeclib's encode ran 0.5-0.8 GiB/s like that and 5.5-7.7 GiB/s with the thresholds below
(``shared/PERFORMANCE-NOTES.md``). Setting them with ``mallopt`` at start-up gives ``dwh`` the
same behaviour as the ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` environment variables
without asking operators to export them; explicit environment settings win.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Final

M_TRIM_THRESHOLD: Final = -1
M_MMAP_THRESHOLD: Final = -3

MMAP_THRESHOLD: Final = 64 * 1024 * 1024
TRIM_THRESHOLD: Final = 256 * 1024 * 1024


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds unless the environment already sets them; ``True``
    when both were applied (``False`` on another C library or when the environment decides)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
