"""Helpers shared by the durability, crash, rebuild and GC tests: a deterministic mixed dataset,
opening a data directory with small chunks, and looking at what is on the disks.

Everything here drives the real engine; nothing of our own code is mocked.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from datawarehouse.clock import Clock
from datawarehouse.config import EngineConfig
from datawarehouse.engine.chunkstore import parse_shard_key, shard_key
from datawarehouse.engine.engine import Engine
from datawarehouse.ids import ChunkId, DomainId
from datawarehouse.meta.repo import DomainSecretRecord
from datawarehouse.records import BucketRecord, ChunkRecord, ObjectVersion
from datawarehouse.service.warehouse import OpenOptions, Warehouse
from datawarehouse.storage.packformat import RECORD_HEADER
from datawarehouse.storage.packstore import PACK_DIR, PackedLocation, scan_locations

# Small chunks so a few MiB of data make many chunks (and therefore many shards on every disk).
SMALL_CHUNKS = EngineConfig(
    chunk_min_size=16 * 1024,
    chunk_avg_size=64 * 1024,
    chunk_max_size=256 * 1024,
    inline_max_size=4 * 1024,
)
BUCKET = "durable"
DISK_COUNT = 6
K, M = 4, 2
DATASET_SEED = 20240601


@dataclass(frozen=True)
class Item:
    key: str
    data: bytes
    content_type: str = "application/octet-stream"
    user_meta: dict[str, str] = field(default_factory=dict)

    @property
    def inline(self) -> bool:
        return len(self.data) <= SMALL_CHUNKS.inline_max_size

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data, usedforsecurity=False).hexdigest()


_WORDS = (
    "durable shard chunk erasure parity journal scrub heal rebuild disk stripe block object bucket "
    "version manifest refcount grace period collect orphan sealed frame nonce cipher tag metadata index"
).split()


def text_bytes(rng: random.Random, size: int) -> bytes:
    """Compressible, non-repeating text (zstd keeps it: it shrinks by far more than 1/32)."""
    out: list[str] = []
    length = 0
    while length < size:
        line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14))) + f" {rng.randrange(10**6)}\n"
        out.append(line)
        length += len(line)
    return "".join(out).encode()[:size]


def make_dataset(seed: int = DATASET_SEED) -> list[Item]:
    """~20 objects: inline ones (empty, tiny, at the inline limit), a few chunks, many chunks,
    random and compressible, chunks repeated inside one object, one content under two keys, and
    two objects sharing a long prefix."""
    rng = random.Random(seed)
    shared = rng.randbytes(450_000)
    prefix = rng.randbytes(300_000)
    return [
        Item("small/empty", b""),
        Item("small/one-byte", b"\x07"),
        Item("small/random-100", rng.randbytes(100), "application/x-random", {"origin": "seeded"}),
        Item("small/text-3000", text_bytes(rng, 3000), "text/plain", {"lang": "en", "rev": "3"}),
        Item("small/at-inline-limit", rng.randbytes(SMALL_CHUNKS.inline_max_size)),
        Item("small/unicode", "héllo wörld ✓".encode(), "text/plain; charset=utf-8", {"note": "caf\u00e9"}),
        Item("edge/just-above-inline", rng.randbytes(SMALL_CHUNKS.inline_max_size + 1)),
        Item("few/random-90k", rng.randbytes(90_000)),
        Item("few/text-150k", text_bytes(rng, 150_000), "text/plain"),
        Item("few/random-300k", rng.randbytes(300_000), "application/x-random", {"a": "1", "b": "2"}),
        Item("many/random-600k", rng.randbytes(600_000)),
        Item("many/text-900k", text_bytes(rng, 900_000), "text/csv"),
        Item("many/zeros-500k", bytes(500_000)),
        Item("many/random-1m", rng.randbytes(1_000_000)),
        Item("dup/first", shared),
        Item("dup/second", shared, "application/x-dup", {"copy": "yes"}),
        Item("prefix/a", prefix + rng.randbytes(150_000)),
        Item("prefix/b", prefix + text_bytes(rng, 150_000)),
        Item("deep/path/with spaces/é-unicode.bin", rng.randbytes(50_000)),
        Item("mixed/random-then-text", rng.randbytes(120_000) + text_bytes(rng, 120_000)),
    ]


# --- opening ---------------------------------------------------------------------------------------


def options(clock: Clock | None = None, config: EngineConfig = SMALL_CHUNKS) -> OpenOptions:
    return OpenOptions(config=config, clock=clock)


def init_wh(root: Path, clock: Clock | None = None) -> Warehouse:
    return Warehouse.init(root, None, options(clock))


def open_wh(root: Path, clock: Clock | None = None) -> Warehouse:
    return Warehouse.open(root, options(clock))


def put_items(wh: Warehouse, items: Iterable[Item], bucket: str = BUCKET) -> None:
    for item in items:
        wh.put_object(
            bucket, item.key, item.data, content_type=item.content_type, user_meta=item.user_meta, md5_etag=True
        )


def populate(root: Path, items: list[Item], clock: Clock | None = None) -> None:
    with init_wh(root, clock) as wh:
        wh.create_bucket(BUCKET)
        put_items(wh, items)


def clone_datadir(src: Path, dst: Path) -> Path:
    """Copy a closed data directory (its disks inside it) and point ``datadir.json`` at the copy."""
    shutil.copytree(src, dst, symlinks=True)
    doc_path = dst / "datadir.json"
    doc = json.loads(doc_path.read_text())
    for disk in doc["disks"]:
        path = Path(disk["path"])
        assert path.is_relative_to(src), f"disk {path} is outside the data directory"
        disk["path"] = str(dst / path.relative_to(src))
    doc_path.write_text(json.dumps(doc, indent=1) + "\n")
    return dst


# --- checking objects ------------------------------------------------------------------------------


def assert_item(wh: Warehouse, item: Item, bucket: str = BUCKET, ranges: bool = True) -> None:
    head = wh.head_object(bucket, item.key)
    assert head.size == len(item.data), item.key
    assert head.etag == item.md5, item.key
    assert head.content_type == item.content_type, item.key
    assert head.user_meta == item.user_meta, item.key
    got = wh.get_object_bytes(bucket, item.key)
    assert len(got) == len(item.data), item.key
    assert got == item.data, f"{item.key}: bytes differ"
    if ranges and len(item.data) > 10:
        # A range inside the object (crosses chunk boundaries for the large ones).
        lo, hi = len(item.data) // 3, len(item.data) - 5
        assert wh.get_object_bytes(bucket, item.key, lo, hi) == item.data[lo:hi], f"{item.key}: range differs"


def assert_dataset(wh: Warehouse, items: Iterable[Item], bucket: str = BUCKET, ranges: bool = True) -> None:
    """Every item reads back byte-identical (and a range of it, unless ``ranges`` is off), with
    its size, etag, content type and user metadata; the listing holds exactly these keys."""
    items = list(items)
    for item in items:
        assert_item(wh, item, bucket, ranges)
    listed = sorted(s.key for s in wh.iter_objects(bucket))
    assert listed == sorted(i.key for i in items)


# --- looking at the index --------------------------------------------------------------------------


def all_chunks(engine: Engine) -> list[ChunkRecord]:
    out: list[ChunkRecord] = []
    after = None
    while True:
        with engine.repo.transaction() as tx:
            page = tx.list_chunks(after, limit=500)
        if not page:
            return out
        out.extend(page)
        after = (page[-1].domain_id, page[-1].chunk_id)


def all_versions(engine: Engine) -> list[ObjectVersion]:
    with engine.repo.transaction() as tx:
        versions = list(tx.iter_all_versions())
    return sorted(versions, key=lambda v: (v.bucket_id, v.key, v.version_id))


def manifest_refcounts(engine: Engine) -> Counter[tuple[DomainId, ChunkId]]:
    """References every stored version holds (what each chunk's refcount must be)."""
    with engine.repo.transaction() as tx:
        buckets = {b.bucket_id: b.domain_id for b in tx.list_buckets()}
    refs: Counter[tuple[DomainId, ChunkId]] = Counter()
    for v in all_versions(engine):
        if v.inline_data is not None:
            continue
        for ref in v.chunks:
            refs[(buckets[v.bucket_id], ref.chunk_id)] += 1
    return refs


def chunk_key(rec: ChunkRecord) -> tuple[DomainId, ChunkId]:
    return rec.domain_id, rec.chunk_id


def chunk_ids_of(wh: Warehouse, keys: Iterable[str], bucket: str = BUCKET) -> set[ChunkId]:
    out: set[ChunkId] = set()
    for key in keys:
        v = wh.head_object(bucket, key)
        if v.inline_data is None:
            out |= {ref.chunk_id for ref in v.chunks}
    return out


@dataclass(frozen=True)
class IndexSnapshot:
    """What the metadata index says, in a form two indexes can be compared by."""

    buckets: list[BucketRecord]
    versions: list[ObjectVersion]
    # (domain, chunk id) -> (generation, plain size, sealed size, k, m, refcount, placement)
    chunks: dict[tuple[DomainId, ChunkId], tuple[object, ...]]
    zero_since: dict[tuple[DomainId, ChunkId], object]
    secrets: list[DomainSecretRecord]


def snapshot_index(engine: Engine) -> IndexSnapshot:
    with engine.repo.transaction() as tx:
        buckets = sorted(tx.list_buckets(), key=lambda b: b.bucket_id)
        secrets = sorted(tx.list_domain_secrets(), key=lambda s: (s.domain_id, s.key_version))
    chunks = all_chunks(engine)
    return IndexSnapshot(
        buckets=buckets,
        versions=all_versions(engine),
        chunks={
            chunk_key(c): (c.generation, c.plain_size, c.sealed_size, c.k, c.m, c.refcount, c.placement) for c in chunks
        },
        zero_since={chunk_key(c): c.zero_since for c in chunks},
        secrets=secrets,
    )


# --- looking at the disks --------------------------------------------------------------------------


def disk_dirs(root: Path) -> list[Path]:
    """The disk directories recorded in ``datadir.json``, in order."""
    doc = json.loads((root / "datadir.json").read_text())
    return [Path(d["path"]) for d in doc["disks"]]


def disk_ids(root: Path) -> dict[Path, str]:
    doc = json.loads((root / "datadir.json").read_text())
    return {Path(d["path"]): d["disk_id"] for d in doc["disks"]}


def iter_files(root: Path, sub: str) -> Iterator[Path]:
    for disk in disk_dirs(root):
        base = disk / sub
        if base.is_dir():
            yield from (p for p in sorted(base.rglob("*")) if p.is_file())


def file_inventory(root: Path, sub: str) -> dict[str, str]:
    """``<disk name>/<relative path>`` -> sha256 of every file under ``sub`` on every disk (for
    what is still one file per blob: journal segments)."""
    out = {}
    for path in iter_files(root, sub):
        disk = next(d for d in disk_dirs(root) if path.is_relative_to(d))
        out[f"{disk.name}/{path.relative_to(disk)}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# Shards live in pack files (``<disk>/.packs``, storage/packstore.py), many to a file: the
# helpers below find a shard by its key through ``scan_locations`` (read-only, safe while a
# warehouse has the disk open) and break it inside its byte range of the pack.


def shard_key_of(rec: ChunkRecord, index: int) -> str:
    return shard_key(rec.domain_id, rec.chunk_id, rec.generation, index)


def disk_of(root: Path, rec: ChunkRecord, index: int) -> Path:
    """The disk directory that holds shard ``index`` of a chunk according to its placement."""
    return {v: k for k, v in disk_ids(root).items()}[rec.placement[index]]


def shard_locations_on(disk: Path) -> dict[str, PackedLocation]:
    """Every shard key stored on one disk directory -> where its bytes are: the live packed
    records, plus any legacy one-file shard the store still serves (a pack record of the same
    key wins, as in the store). Anything else packed there is a stray and fails the test."""
    if not disk.is_dir():
        return {}
    out: dict[str, PackedLocation] = {}
    legacy = disk / "shards"
    if legacy.is_dir():
        for path in sorted(legacy.rglob("*")):
            if path.is_file():
                out[path.relative_to(disk).as_posix()] = PackedLocation(path, 0, path.stat().st_size)
    for key, loc in scan_locations(disk).items():
        assert parse_shard_key(key) is not None, f"stray key among the shards: {disk.name}/{key}"
        out[key] = loc
    return out


def shard_keys_on(disk: Path) -> set[str]:
    return set(shard_locations_on(disk))


def shard_locations(root: Path) -> dict[str, PackedLocation]:
    """``<disk name>/<shard key>`` -> location, over every disk. Two equal results mean no shard
    was written, rewritten or removed in between (a rewrite appends a new record elsewhere)."""
    return {f"{disk.name}/{key}": loc for disk in disk_dirs(root) for key, loc in shard_locations_on(disk).items()}


def read_location(loc: PackedLocation) -> bytes:
    with loc.path.open("rb") as f:
        f.seek(loc.offset)
        data = f.read(loc.length)
    assert len(data) == loc.length, f"{loc.path.name}: the located range runs past the end of the file"
    return data


def shard_inventory(root: Path) -> dict[str, str]:
    """``<disk name>/<shard key>`` -> sha256 of that shard's bytes, on every disk. Compared by
    key, not by file: a repaired shard is the same key with the same bytes in another record."""
    return {name: hashlib.sha256(read_location(loc)).hexdigest() for name, loc in shard_locations(root).items()}


def shard_location(root: Path, rec: ChunkRecord, index: int) -> PackedLocation:
    """Where shard ``index`` of a chunk is stored, on the disk its placement names."""
    disk = disk_of(root, rec, index)
    key = shard_key_of(rec, index)
    found = shard_locations_on(disk)
    assert key in found, f"shard {index} of {rec.chunk_id.hex()[:16]} is not on {disk.name}"
    return found[key]


def shard_bytes(root: Path, rec: ChunkRecord, index: int) -> bytes:
    return read_location(shard_location(root, rec, index))


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    """Change bytes in place: an open store's ``pread`` sees them at once."""
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def flip_shard_byte(root: Path, rec: ChunkRecord, index: int, offset: int) -> PackedLocation:
    """XOR one byte of a stored shard (``offset`` inside the shard; negative counts from its end)."""
    loc = shard_location(root, rec, index)
    pos = loc.offset + (offset % loc.length)
    with loc.path.open("rb") as f:
        f.seek(pos)
        old = f.read(1)
    _overwrite(loc.path, pos, bytes([old[0] ^ 0x5A]))
    return loc


def zero_shard_bytes(root: Path, rec: ChunkRecord, index: int, start: int = 0) -> PackedLocation:
    """Zero a stored shard from ``start`` to its end (a torn or lost tail; ``start=0``: all of it)."""
    loc = shard_location(root, rec, index)
    _overwrite(loc.path, loc.offset + start, bytes(loc.length - start))
    return loc


def zero_shard_record(root: Path, rec: ChunkRecord, index: int) -> PackedLocation:
    """Zero a shard's whole pack record (its header and key included): the shard is gone from
    the bytes, the pack around it intact."""
    loc = shard_location(root, rec, index)
    assert loc.path.parent.name == PACK_DIR, f"{loc.path} is not a pack"
    start = loc.offset - RECORD_HEADER - len(shard_key_of(rec, index).encode())
    _overwrite(loc.path, start, bytes(loc.offset + loc.length - start))
    return loc


def truncate_pack_inside(root: Path, rec: ChunkRecord, index: int) -> tuple[Path, int, set[str]]:
    """Cut the pack holding a shard in the middle of that shard's bytes (a torn write or a lost
    tail). Only with the warehouse closed: an open store keeps reading through its fd. Returns
    the pack, the new length and ``<disk name>/<key>`` of every shard the cut loses: that one
    and every record after it in the same pack."""
    disk = disk_of(root, rec, index)
    loc = shard_location(root, rec, index)
    assert loc.path.parent.name == PACK_DIR, f"{loc.path} is not a pack"
    cut = loc.offset + loc.length // 2
    lost = {
        f"{disk.name}/{key}"
        for key, other in shard_locations_on(disk).items()
        if other.path == loc.path and other.offset + other.length > cut
    }
    os.truncate(loc.path, cut)
    return loc.path, cut, lost


def pack_files(disk: Path) -> list[Path]:
    base = disk / PACK_DIR
    return sorted(p for p in base.iterdir() if p.suffix == ".pack") if base.is_dir() else []


def unsealed_packs(root: Path) -> list[Path]:
    """Packs without their index, other than each disk's newest (an open store's active pack):
    an open scans, truncates and seals the active pack a crashed process left, so none is
    ever left behind."""
    out: list[Path] = []
    for disk in disk_dirs(root):
        out.extend(p for p in pack_files(disk)[:-1] if not p.with_suffix(".idx").is_file())
    return out


def evict_page_cache(root: Path) -> bool:
    """Drop every pack of every disk from the page cache, as if the server had not read them
    since a reboot (fsync first: the kernel keeps dirty pages). False where the file system
    keeps every page in memory (tmpfs): then nothing can be evicted."""
    evicted = True
    for disk in disk_dirs(root):
        for path in pack_files(disk):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                try:
                    if os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT) > 0:
                        evicted = False  # the first byte is still in memory
                except BlockingIOError:
                    pass
            finally:
                os.close(fd)
    return evicted


def drop_shards(disk: Path) -> None:
    """Lose every shard of a disk and nothing else (its journal and identity stay)."""
    gone = False
    for sub in (PACK_DIR, "shards"):
        if (disk / sub).is_dir():
            shutil.rmtree(disk / sub)
            gone = True
    assert gone, f"{disk.name} held no shards"


def shard_identities(root: Path) -> Counter[tuple[DomainId, ChunkId, int]]:
    """(domain, chunk, generation) -> number of stored shards on all disks."""
    out: Counter[tuple[DomainId, ChunkId, int]] = Counter()
    for name in shard_locations(root):
        parsed = parse_shard_key(name.split("/", 1)[1])
        assert parsed is not None, f"stray key among the shards: {name}"
        domain, chunk, generation, _ = parsed
        out[(domain, chunk, generation)] += 1
    return out


def temp_files(root: Path) -> list[Path]:
    return list(iter_files(root, ".tmp"))
