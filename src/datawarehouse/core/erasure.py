"""Erasure coding of sealed frames into k data + m parity shards (any k of them suffice).

k = 1 is plain replication (every shard is the whole frame); k > 1 uses pyeclib's
``isa_l_rs_vand`` backend (format.md, "Shard file", scheme 1). Shard payloads are pyeclib
fragments exactly as returned, their own 80-byte liberasurecode header included.

Findings that shape this module (pyeclib 1.8.0 with its bundled liberasurecode and ISA-L):

* **GIL and threads.** ``pyeclib_c`` never releases the GIL (the extension imports no
  ``PyEval_SaveThread``): encode/decode/reconstruct run start to finish under the GIL, so two
  threads never run inside the same driver at once, and EC work never runs in parallel with other
  Python threads (it is a fraction of the cost of sealing, which does release the GIL). A lock
  per driver is still taken: uncontended it costs well under a microsecond, and it keeps us safe
  should a later pyeclib release the GIL — liberasurecode does not document its per-instance
  state as thread-safe.
* **Determinism.** Encoding the same frame gives byte-identical fragments (headers included),
  across calls and processes; ``reconstruct`` regenerates exactly what ``encode`` produced. The
  fragment header carries liberasurecode's and ISA-L's version numbers, so golden vectors pin the
  pyeclib version.
* **Not MDS everywhere.** ISA-L's Vandermonde matrix is not invertible for every k-subset of
  shards for some (k, m): measured exhaustively over every k-subset for all k + m <= 32 with
  m <= 4, and for m >= 5 up to the first failing k, the failures are m = 4 with k >= 22,
  m = 5 with k >= 6, and m >= 6 with k >= 5. Such a class could lose data while it still had
  k healthy shards, so :class:`ErasureCoder` refuses it (``InvalidStorageClass``).
* **Driver creation is slow** (it builds the encode tables), so drivers are cached per (k, m).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Final

from pyeclib.ec_iface import ECDriver, ECDriverError

from datawarehouse.core.ecnative import native_encoder
from datawarehouse.core.frame import SCHEME_ISA_L_RS_VAND as SCHEME_ISA_L_RS_VAND
from datawarehouse.core.frame import SCHEME_REPLICA as SCHEME_REPLICA
from datawarehouse.errors import CorruptFrame, DataUnavailable, InvalidInput, InvalidStorageClass

MAX_SHARDS: Final = 32
EC_TYPE: Final = "isa_l_rs_vand"

_drivers: dict[tuple[int, int], tuple[ECDriver, threading.Lock]] = {}
_drivers_lock = threading.Lock()


def isa_l_vand_is_mds(k: int, m: int) -> bool:
    """Whether every k-subset of EC(k, m) shards decodes with ``isa_l_rs_vand`` (see module doc)."""
    if m <= 3:
        return True
    if m == 4:
        return k <= 21
    if m == 5:
        return k <= 5
    return k <= 4


def _driver(k: int, m: int) -> tuple[ECDriver, threading.Lock]:
    entry = _drivers.get((k, m))
    if entry is None:
        with _drivers_lock:
            entry = _drivers.get((k, m))
            if entry is None:
                try:
                    driver = ECDriver(k=k, m=m, ec_type=EC_TYPE)
                except ECDriverError as exc:
                    raise InvalidStorageClass(f"EC({k},{m}): pyeclib refused it: {exc}") from exc
                entry = (driver, threading.Lock())
                _drivers[(k, m)] = entry
    return entry


# liberasurecode's fragment header (``fragment_header_t``, native little-endian, 80 bytes):
# index u32, payload size u32, backend metadata size u32, original data size u64 at offset 0, and
# the magic at offset 59. Only what the data-shard fast paths need is read.
FRAGMENT_HEADER: Final = 80
_FRAGMENT_FIELDS: Final = struct.Struct("<IIIQ")
_FRAGMENT_MAGIC_AT: Final = 59
_FRAGMENT_MAGIC: Final = 0xB0C5ECC


def fragment_data_size(sealed_size: int, k: int) -> int:
    """Bytes of frame data in each of the k fragments of an isa_l_rs_vand encoding of
    ``sealed_size`` bytes (liberasurecode aligns the input to a multiple of k, w = 8)."""
    return -(-sealed_size // k)


def data_fragment_header_ok(header: bytes | memoryview, index: int, data_size: int, sealed_size: int) -> bool:
    """Whether ``header`` (a fragment's first 80 bytes) describes data fragment ``index`` of a
    ``sealed_size``-byte frame carrying ``data_size`` bytes with no backend metadata: then its
    data is bytes ``[index * data_size, ...)`` of the frame (the code is systematic)."""
    if len(header) < FRAGMENT_HEADER:
        return False
    idx, size, backend_meta, orig = _FRAGMENT_FIELDS.unpack_from(header, 0)
    magic = int.from_bytes(header[_FRAGMENT_MAGIC_AT : _FRAGMENT_MAGIC_AT + 4], "little")
    return magic == _FRAGMENT_MAGIC and idx == index and backend_meta == 0 and orig == sealed_size and size == data_size


def _join_data_fragments(fragments: Sequence[bytes | memoryview], sealed_size: int) -> bytes | None:
    """The sealed frame from data fragments 0..k-1 in order, by concatenating their payloads, or
    ``None`` when any header is not what this layout expects (then pyeclib decodes).

    isa_l_rs_vand is systematic: data fragment i holds bytes [i*size, (i+1)*size) of the input.
    Doing the concatenation here costs one copy without the GIL-holding pyeclib call, its driver
    lock and its own allocation (measured: pyeclib's decode was 12 % of the GIL-holding samples of
    an S3 GET of 1 MiB objects)."""
    parts: list[memoryview] = []
    remaining = sealed_size
    data_size = fragment_data_size(sealed_size, len(fragments))
    for index, fragment in enumerate(fragments):
        view = memoryview(fragment)
        if FRAGMENT_HEADER + data_size > len(view) or not data_fragment_header_ok(view, index, data_size, sealed_size):
            return None
        take = min(data_size, remaining)
        parts.append(view[FRAGMENT_HEADER : FRAGMENT_HEADER + take])
        remaining -= take
    if remaining:
        return None
    return b"".join(parts)


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    # pyeclib_c reads its inputs with PyBytes_AsStringAndSize: only real bytes objects work.
    return data if isinstance(data, bytes) else bytes(data)


class ErasureCoder:
    """EC(k, m) for one storage class; cheap to create (the pyeclib driver is shared)."""

    def __init__(self, k: int, m: int) -> None:
        if k < 1 or m < 0:
            raise InvalidStorageClass(f"EC({k},{m}): need k >= 1 and m >= 0")
        if k + m > MAX_SHARDS:
            raise InvalidStorageClass(f"EC({k},{m}): k+m must be <= {MAX_SHARDS}")
        if k > 1 and m == 0:
            raise InvalidStorageClass(f"EC({k},0): without parity use k=1 (replica-1)")
        if k > 1 and not isa_l_vand_is_mds(k, m):
            raise InvalidStorageClass(
                f"EC({k},{m}): the {EC_TYPE} code cannot recover from every loss of {m} shards at this "
                "size; use m <= 3, or m = 4 with k <= 21, or m = 5 with k <= 5, or k <= 4"
            )
        self.k = k
        self.m = m
        self._entry = _driver(k, m) if k > 1 else None

    @property
    def n(self) -> int:
        return self.k + self.m

    @property
    def scheme(self) -> int:
        return SCHEME_REPLICA if self.k == 1 else SCHEME_ISA_L_RS_VAND

    def __repr__(self) -> str:
        return f"ErasureCoder(k={self.k}, m={self.m})"

    def encode(self, sealed: bytes) -> list[bytes]:
        """The k + m shard payloads of a sealed frame, index i at position i."""
        if self._entry is None:
            frame = _as_bytes(sealed)
            return [frame] * self.n
        driver, lock = self._entry
        try:
            with lock:
                fragments = driver.encode(_as_bytes(sealed))
        except ECDriverError as exc:
            raise InvalidInput(f"EC({self.k},{self.m}) encode failed: {exc}") from exc
        return list(fragments)

    @contextmanager
    def encode_views(self, sealed: bytes) -> Iterator[Sequence[bytes | memoryview]]:
        """Like ``encode``, but the payloads may be views of the EC library's buffers, valid only
        inside the ``with`` block: no copy of them is made while holding the GIL
        (``core/ecnative.py``). Falls back to ``encode`` where the native path is unavailable."""
        native = native_encoder(self.k, self.m, self._entry[0]) if self._entry is not None else None
        if native is None:
            yield self.encode(sealed)
            return
        try:
            fragments = native.encode(_as_bytes(sealed))
        except OSError as exc:
            raise InvalidInput(f"EC({self.k},{self.m}) encode failed: {exc}") from exc
        with fragments:
            yield fragments.views

    def _check_indexes(self, indexes: Iterable[int]) -> None:
        for i in indexes:
            if not 0 <= i < self.n:
                raise InvalidInput(f"shard index {i} outside EC({self.k},{self.m})")

    def decode(self, shards: Mapping[int, bytes | memoryview], sealed_size: int) -> bytes:
        """The sealed frame from any k shards (``{index: payload}``).

        Data shards are preferred: with all of 0..k-1 present, decoding is a concatenation.
        Fewer than k shards is ``DataUnavailable``; shards that do not decode, or decode to
        another size, are ``CorruptFrame`` (payload checksums should have caught them earlier).
        """
        self._check_indexes(shards)
        if len(shards) < self.k:
            raise DataUnavailable(f"EC({self.k},{self.m}): {len(shards)} shard(s) available, {self.k} needed")
        if self._entry is None:
            for i in sorted(shards):
                if len(shards[i]) == sealed_size:
                    return _as_bytes(shards[i])
            raise CorruptFrame(f"no replica has the expected size {sealed_size}")
        if all(i in shards for i in range(self.k)):
            joined = _join_data_fragments([shards[i] for i in range(self.k)], sealed_size)
            if joined is not None:
                return joined
        chosen = [_as_bytes(shards[i]) for i in sorted(shards)[: self.k]]
        driver, lock = self._entry
        try:
            with lock:
                sealed = driver.decode(chosen)
        except ECDriverError as exc:
            raise CorruptFrame(f"EC({self.k},{self.m}) shards do not decode: {exc}") from exc
        if len(sealed) != sealed_size:
            raise CorruptFrame(f"EC({self.k},{self.m}) decoded {len(sealed)} bytes, expected {sealed_size}")
        return bytes(sealed)

    def reconstruct(self, shards: Mapping[int, bytes | memoryview], missing: list[int]) -> dict[int, bytes]:
        """Regenerate the payloads of the ``missing`` shard indexes from the available ones.

        The result is byte-identical to what :meth:`encode` produced for those indexes, so a
        healed shard is indistinguishable from the original.
        """
        self._check_indexes(shards)
        self._check_indexes(missing)
        wanted = sorted(set(missing))
        if any(i in shards for i in wanted):
            raise InvalidInput("reconstruct: a missing index is also among the available shards")
        if not wanted:
            return {}
        if len(shards) < self.k:
            raise DataUnavailable(
                f"EC({self.k},{self.m}): {len(shards)} shard(s) available, {self.k} needed to rebuild"
            )
        if self._entry is None:
            source = _as_bytes(shards[min(shards)])
            return dict.fromkeys(wanted, source)
        available = [_as_bytes(shards[i]) for i in sorted(shards)]
        driver, lock = self._entry
        try:
            with lock:
                # pyeclib sorts the index list in place: hand it a copy.
                rebuilt = driver.reconstruct(available, list(wanted))
        except ECDriverError as exc:
            raise CorruptFrame(f"EC({self.k},{self.m}) shards do not reconstruct: {exc}") from exc
        if len(rebuilt) != len(wanted):
            raise CorruptFrame(f"EC({self.k},{self.m}) rebuilt {len(rebuilt)} shards, expected {len(wanted)}")
        return {i: bytes(fragment) for i, fragment in zip(wanted, rebuilt, strict=True)}
