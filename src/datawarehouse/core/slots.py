"""Integers shared by the processes of one server through a small mapped file.

``dwh serve --workers N`` keeps a few numbers every process must see without a round trip: the
open-connection count of each process (``cli/balance.py``) and the primary's count of
configuration changes (``engine/changes.py``). Each lives in a file of 8-byte slots in the
server's private run directory (0700), created 0600 by the primary and mapped by every process.
A slot is written by one process only (its owner), so no lock is needed: an aligned 8-byte store
is read whole on the machines this runs on.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Sequence
from pathlib import Path

_SLOT = struct.Struct("<q")


class MappedSlots:
    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.count = size // _SLOT.size

    @staticmethod
    def create(path: Path, values: Sequence[int]) -> None:
        """A new file (refused if one exists) holding ``values``."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"".join(_SLOT.pack(v) for v in values))
        finally:
            os.close(fd)

    def get(self, index: int) -> int:
        return int(_SLOT.unpack_from(self._map, index * _SLOT.size)[0])

    def set(self, index: int, value: int) -> None:
        _SLOT.pack_into(self._map, index * _SLOT.size, value)
