"""The engine of one data directory: keys, disks, chunk store, journal, metadata and commit.

``Engine.open`` locks the data directory, loads the master key, checks the disk set, opens the
metadata index and replays any journal records the index missed (a crash between journal and
database). The service layer supplies ``replay`` — how to apply one journaled operation — so
the engine stays ignorant of buckets and objects.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import secrets
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from datawarehouse.clock import Clock, SystemClock
from datawarehouse.config import EngineConfig
from datawarehouse.core import crypto
from datawarehouse.engine import journal as jr
from datawarehouse.engine.changes import ChangeCounter
from datawarehouse.engine.chunkstore import ChunkStore
from datawarehouse.engine.committer import Apply, BatchApply, Committer
from datawarehouse.engine.datadir import DataDir
from datawarehouse.engine.diskset import DiskSet
from datawarehouse.engine.keys import KeyRing, check_passphrase
from datawarehouse.engine.reader import read_range
from datawarehouse.engine.writer import ObjectWriter
from datawarehouse.errors import CorruptFrame, DwhError, KeyError_, MetadataError, WrongKey
from datawarehouse.ids import DEFAULT_DOMAIN, ChunkId, DiskId, DomainId, TenantId
from datawarehouse.meta.repo import DomainSecretRecord, HealItem, MetaTx
from datawarehouse.meta.sql import SqlMetaRepo
from datawarehouse.records import (
    ChunkerParams,
    ChunkRecord,
    DiskRecord,
    ObjectVersion,
    StorageClass,
    default_storage_class,
    parse_storage_class,
)
from datawarehouse.storage.base import BlobStore
from datawarehouse.storage.packfollow import PackFollower
from datawarehouse.storage.packstore import PackStore

log = logging.getLogger(__name__)

# Applies one journaled operation during replay (idempotently).
Replay = Callable[[MetaTx, dict[str, Any]], None]


def _open_store(rec: DiskRecord, *, direct_parity: bool) -> BlobStore:
    """Every disk is a pack store (format version 3): shards go to packs, journal segments and
    v1 shard files stay plain files it reads through. ``direct_parity``: see ``EngineConfig``."""
    return PackStore(rec.path, direct_io=direct_parity)


def _open_follower_store(rec: DiskRecord) -> BlobStore:
    """A follower reads the packs the primary writes (storage/packfollow.py)."""
    return PackFollower(rec.path)


class Engine:
    def __init__(
        self,
        datadir: DataDir,
        config: EngineConfig,
        clock: Clock,
        passphrase: str | None,
        replay: Replay,
        *,
        rebuilding: bool = False,
        follower: bool = False,
    ) -> None:
        """``follower``: a process that only reads a data directory another process (the lock's
        holder) writes — a read worker of ``dwh serve --workers``. Its disks are pack followers,
        its metadata is opened read-only, and it has no journal or committer: it replays nothing,
        creates no domain, records no disk row and queues no heal."""
        self.datadir = datadir
        self.follower = follower
        self.changes: ChangeCounter | None = None  # see share_changes
        self._journal: jr.Journal | None = None
        self._committer: Committer | None = None
        self.config = config
        self.clock = clock
        self._replay = replay
        # Called by a master key rotation once the new key is current and every domain secret is
        # rewrapped, before the old key is dropped: services that seal secrets under the master
        # key (IAM access keys) reseal them here.
        self.master_rotation_hooks: list[Callable[[], None]] = []
        self.keyring = KeyRing(datadir.keys.load(passphrase), config.aead)
        opener = (
            _open_follower_store if follower else functools.partial(_open_store, direct_parity=config.direct_parity)
        )
        self.disks = DiskSet(datadir.disks(), opener)
        try:
            self.chunks = ChunkStore(self.disks, self.keyring, self._report_bad_shard)
            self.pool = ThreadPoolExecutor(max_workers=config.chunk_threads, thread_name_prefix="dwh-chunk")
            if follower:
                self.repo = SqlMetaRepo.for_sqlite(datadir.meta_path, create=False, read_only=True)
                self._load_domain_secrets()
                self.replayed = 0
                return
            meta_exists = datadir.meta_path.exists()
            if not meta_exists and not rebuilding and jr.segment_names(self.disks.stores()):
                raise MetadataError(
                    f"the metadata database {datadir.meta_path} is missing but the disks hold a journal: "
                    "run `dwh repair rebuild-meta` to rebuild it"
                )
            self.repo = SqlMetaRepo.for_sqlite(datadir.meta_path)
            self._journal = jr.Journal(
                self.disks.active_stores,
                self.required_copies,
                self._journal_disk_error,
                writer_process=config.journal_process,
            )
            self._load_domain_secrets()
            self.replayed = self.catch_up()
            self._committer = Committer(self.repo, self._journal, flush=self.chunks.flush)
            self._ensure_domain(DEFAULT_DOMAIN)
            with self.repo.transaction() as tx:
                for rec in self.disks.records():
                    tx.upsert_disk(rec)
        except BaseException:
            # A store left open would keep its active pack unsealed (scanned at the next open);
            # a failure to close is secondary to the error being raised.
            with contextlib.suppress(DwhError):
                self.disks.close()
            raise

    # --- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        root: Path,
        disk_paths: list[Path] | None,
        replay: Replay,
        *,
        passphrase: str | None = None,
        config: EngineConfig | None = None,
        clock: Clock | None = None,
    ) -> Engine:
        if passphrase is not None:
            check_passphrase(passphrase)  # before anything is created: a refusal leaves no half-made directory
        datadir = DataDir.create(root, disk_paths)
        try:
            datadir.keys.create(passphrase)
            return cls(datadir, config or EngineConfig(), clock or SystemClock(), passphrase, replay)
        except BaseException:
            datadir.close()
            raise

    @classmethod
    def open(
        cls,
        root: Path,
        replay: Replay,
        *,
        passphrase: str | None = None,
        config: EngineConfig | None = None,
        clock: Clock | None = None,
        rebuilding: bool = False,
        follower: bool = False,
    ) -> Engine:
        datadir = DataDir.open(root, follower=follower)
        try:
            return cls(
                datadir,
                config or EngineConfig(),
                clock or SystemClock(),
                passphrase,
                replay,
                rebuilding=rebuilding,
                follower=follower,
            )
        except BaseException:
            datadir.close()
            raise

    def close(self) -> None:
        if self._committer is not None:
            self._committer.close()
        self.pool.shutdown(wait=True)
        self.chunks.close()
        if self._journal is not None:
            self._journal.close()
        self.disks.close()
        self.repo.close()
        self.datadir.close()

    @property
    def journal(self) -> jr.Journal:
        if self._journal is None:
            raise MetadataError("this process only reads the data directory: it has no journal")
        return self._journal

    @property
    def committer(self) -> Committer:
        if self._committer is None:
            raise MetadataError("this process only reads the data directory: writes go through the primary")
        return self._committer

    def share_changes(self, counter: ChangeCounter) -> None:
        """Serving with read workers (``engine.changes``): the writer counts there the commits
        that may change what the workers cache; a follower reads it to know when to drop them."""
        self.changes = counter
        if self._committer is not None:
            self._committer.on_announced = counter.add

    def refresh(self) -> None:
        """A follower after the writer committed: learn domain secrets made since (a new
        tenant's domain), so its objects can be read here."""
        with self.repo.read() as tx:
            records = tx.list_domain_secrets()
        for r in records:
            if not self.keyring.has_version(r.domain_id, r.key_version) and not self.keyring.add_wrapped(
                r.domain_id, r.key_version, r.wrapped, r.master_key_id
            ):
                log.warning("domain %d: wrapped by master key %s, not loaded here", r.domain_id, r.master_key_id)

    # --- facts ---------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock.now()

    def default_storage_class(self) -> StorageClass:
        return self.default_storage_class_for(len(self.disks.active()))

    def default_storage_class_for(self, disk_count: int) -> StorageClass:
        if self.config.storage_class:
            return parse_storage_class(self.config.storage_class, disk_count)
        return default_storage_class(disk_count)

    def widest_storage_class(self) -> int | None:
        with self.repo.transaction() as tx:
            return tx.max_chunk_width()

    def required_copies(self) -> int:
        """Journal copies that must be durable: enough to survive losing m disks."""
        active = len(self.disks.active())
        return max(1, min(active, self.default_storage_class().m + 1))

    # --- keys ----------------------------------------------------------------------------------

    def _load_domain_secrets(self) -> None:
        """Unwrap every domain secret. One wrapped by a master key that is not loaded (an
        interrupted passphrase rotation) is looked up in the journal under a loaded key; if none
        is found, opening fails — a new secret is never made for a domain that has one."""
        with self.repo.read() as tx:
            records = tx.list_domain_secrets()
        missing = [
            r for r in records if not self.keyring.add_wrapped(r.domain_id, r.key_version, r.wrapped, r.master_key_id)
        ]
        if not missing:
            return
        for entry in jr.read_all(self.disks.stores()):
            if entry.rtype == jr.RECORD_DOMAIN_SECRET:
                rec = _secret_from_json(entry.payload)
                self.keyring.add_wrapped(rec.domain_id, rec.key_version, rec.wrapped, rec.master_key_id)
        for rec in missing:
            try:
                self.keyring.version(rec.domain_id, rec.key_version)
            except KeyError_ as exc:
                raise WrongKey(
                    f"domain {rec.domain_id} is wrapped by master key {rec.master_key_id}, which is not loaded "
                    "(wrong key file or passphrase?)"
                ) from exc

    def _ensure_domain(self, domain_id: DomainId) -> None:
        """Create the secret of a domain that has none (never replace one)."""
        if self.keyring.has_domain(domain_id):
            return
        with self.repo.transaction() as tx:
            if any(r.domain_id == domain_id for r in tx.list_domain_secrets()):
                raise WrongKey(f"domain {domain_id} has a secret this process cannot unwrap")
        master = self.keyring.master(self.keyring.master_ids()[0])
        if master is None:  # pragma: no cover - _masters() comes from the ring itself
            raise KeyError_("no master key loaded")
        secret = secrets.token_bytes(32)
        wrapped = crypto.wrap_secret(master, domain_id, 1, secret)
        rec = DomainSecretRecord(domain_id, 1, wrapped, master.key_id, self.now())
        self.committer.submit(lambda tx: tx.put_domain_secret(rec), lambda: domain_secret_record(rec))
        self.keyring.add_wrapped(domain_id, 1, wrapped, master.key_id)

    def create_domain(self, tenant_id: int) -> DomainId:
        """A new dedup/encryption domain for a tenant: its row and a fresh secret wrapped by the
        current master key, in one journaled commit. The journal record (type 1) names the tenant,
        so replay recreates the domain row before its secret. Two domains never share a chunk id
        or a key: a tenant's data is isolated, and forgetting its secret shreds it."""
        master = self.keyring.master(self.keyring.current_master_id())
        if master is None:  # pragma: no cover - the id comes from the ring itself
            raise KeyError_("no master key loaded")
        secret = secrets.token_bytes(32)
        now = self.now()
        made: list[DomainSecretRecord] = []

        def apply(tx: MetaTx) -> DomainSecretRecord:
            domain_id = tx.create_domain(TenantId(tenant_id))
            rec = DomainSecretRecord(domain_id, 1, crypto.wrap_secret(master, domain_id, 1, secret), master.key_id, now)
            tx.put_domain_secret(rec)
            made.append(rec)
            return rec

        rec: DomainSecretRecord = self.committer.submit(
            apply, lambda: domain_secret_record(made[-1], tenant_id=tenant_id)
        )
        self.keyring.add_wrapped(rec.domain_id, rec.key_version, rec.wrapped, rec.master_key_id)
        return rec.domain_id

    # --- data path -----------------------------------------------------------------------------

    def chunk_known(self, domain_id: DomainId, chunk_id: ChunkId) -> bool:
        """Whether the chunk is stored already (dedup). An unreferenced one gets its grace period
        restarted so GC cannot remove it while the write that reuses it is still running."""
        refcount = self.repo.chunk_refcount(domain_id, chunk_id)
        if refcount is None:
            return False
        if refcount == 0:
            with self.repo.transaction() as tx:
                rec = tx.get_chunk(domain_id, chunk_id)
                if rec is None:
                    return False  # collected meanwhile: store it again
                if rec.refcount == 0:
                    tx.touch_unreferenced(domain_id, chunk_id, self.now())
        return True

    def get_chunk(self, domain_id: DomainId, chunk_id: ChunkId) -> ChunkRecord | None:
        with self.repo.read() as tx:
            return tx.get_chunk(domain_id, chunk_id)

    def iter_chunks(self, page_size: int = 200) -> Iterator[ChunkRecord]:
        """Every chunk record, a page per (short) read snapshot, in (domain, id) order."""
        after = None
        while True:
            with self.repo.read() as tx:
                page = tx.list_chunks(after, limit=page_size)
            if not page:
                return
            yield from page
            after = (page[-1].domain_id, page[-1].chunk_id)

    def chunk_count(self) -> int:
        with self.repo.read() as tx:
            return tx.chunk_count()

    def get_chunks(self, domain_id: DomainId, chunk_ids: list[ChunkId]) -> dict[ChunkId, ChunkRecord]:
        with self.repo.read() as tx:
            return tx.get_chunks(domain_id, chunk_ids)

    def new_writer(
        self,
        domain_id: DomainId,
        storage_class: StorageClass,
        max_size: int | None = None,
        *,
        inline: bool = True,
        chunker: ChunkerParams | None = None,
        md5_etag: bool = False,
    ) -> ObjectWriter:
        """``inline=False`` always chunks (multipart parts: their manifests are concatenated);
        ``chunker`` overrides the configured parameters (a part uses its upload's); ``md5_etag``
        makes the ETag the stream's MD5, as S3 requires of a single PUT and of a part (else it
        is the content ETag, ``digest.content_etag``)."""
        return ObjectWriter(
            self.chunks,
            self.pool,
            self.chunk_known,
            domain_id,
            storage_class,
            chunker or self.config.chunker,
            self.now(),
            inline_max_size=self.config.inline_max_size if inline else 0,
            compression_level=self.config.compression_level or None,  # 0 disables compression
            # Enough chunks in flight to keep every pool thread busy while the caller cuts the next ones.
            max_inflight=self.config.chunk_threads + 4,
            max_size=max_size,
            md5_etag=md5_etag,
        )

    def read(
        self,
        domain_id: DomainId,
        version: ObjectVersion,
        start: int = 0,
        end: int | None = None,
        known: Mapping[ChunkId, ChunkRecord] | None = None,
        prefetch: int = 4,
        cached_only: bool = False,
    ) -> Iterator[bytes]:
        """The bytes ``[start, end)``; ``known``: chunk records the caller already read;
        ``prefetch``: chunks read ahead on the pool (0: all on the calling thread);
        ``cached_only``: from memory only, on the calling thread (see ``read_range``)."""
        return read_range(
            self.chunks,
            self.pool,
            self.get_chunks,
            domain_id,
            version,
            start,
            end,
            prefetch=prefetch,
            known=known,
            cached_only=cached_only,
        )

    def commit(
        self,
        apply: Apply,
        domain_id: DomainId,
        op: dict[str, Any] | Callable[[], dict[str, Any]],
        *,
        batch: BatchApply | None = None,
        payload: Any = None,
        announce: bool = True,
    ) -> Any:
        """Apply an operation to the index and journal it (sealed under the domain's key). ``op``
        is its journal document, or a function that builds it after ``apply`` ran; a document
        given as such is sealed here, on the caller's thread, not on the committer's (the serial
        stage). ``batch`` and ``payload``: group commit (see ``Committer``). ``announce=False``:
        the operation changes objects only, nothing a read worker caches (``engine.changes``)."""
        return self.commit_later(apply, domain_id, op, batch=batch, payload=payload, announce=announce).result()

    def commit_later(
        self,
        apply: Apply,
        domain_id: DomainId,
        op: dict[str, Any] | Callable[[], dict[str, Any]],
        *,
        batch: BatchApply | None = None,
        payload: Any = None,
        flush: frozenset[DiskId] = frozenset(),
        announce: bool = True,
    ) -> Future[Any]:
        """``commit`` without blocking: a future resolved once the operation is durable.
        ``flush``: disks with staged shards the operation refers to (made durable first)."""
        if callable(op):
            build = op
            return self.committer.enqueue(
                apply,
                lambda: (jr.RECORD_OP, jr.seal_op(self.keyring, domain_id, build())),
                flush=flush,
                announce=announce,
            )
        record = (jr.RECORD_OP, jr.seal_op(self.keyring, domain_id, op))
        return self.committer.enqueue(apply, record, batch=batch, payload=payload, flush=flush, announce=announce)

    def _report_bad_shard(self, rec: ChunkRecord, index: int, reason: str) -> None:
        log.warning("shard %d of chunk %s is bad: %s", index, rec.chunk_id.hex()[:16], reason)
        if self.follower:
            return  # it cannot queue a heal; the primary's reads and scrub find the shard too
        try:
            with self.repo.transaction() as tx:
                tx.enqueue_heal(HealItem(rec.domain_id, rec.chunk_id, f"shard {index}: {reason}"[:500], self.now()))
        except DwhError as exc:  # the read itself succeeded; healing is best effort here
            log.error("could not queue chunk %s for heal: %s", rec.chunk_id.hex()[:16], exc)

    def _journal_disk_error(self, disk_id: DiskId, exc: Exception) -> None:
        self.disks.record_error(disk_id)
        log.error("journal append failed on disk %s: %s", disk_id, exc)

    # --- journal replay ------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply journal records that the index has not seen; return how many."""
        with self.repo.transaction() as tx:
            positions = tx.get_journal_positions()
        count = 0
        stores = self.disks.stores()
        for segment in jr.segment_names(stores):
            entries = jr.read_segment(stores, segment, positions.get(segment, 0))
            if not entries:
                continue
            with self.repo.transaction() as tx:
                for entry in entries:
                    self._apply_entry(tx, entry)
                tx.set_journal_position(segment, entries[-1].end_offset)
            count += len(entries)
        if count:
            log.info("replayed %d journal records", count)
        return count

    def _apply_entry(self, tx: MetaTx, entry: jr.JournalEntry) -> None:
        if entry.rtype == jr.RECORD_DOMAIN_SECRET:
            rec = _secret_from_json(entry.payload)
            if self.keyring.add_wrapped(rec.domain_id, rec.key_version, rec.wrapped, rec.master_key_id):
                tenant_id = _secret_tenant(entry.payload)
                if tenant_id is not None:  # a domain made by create_domain: its row comes first
                    tx.insert_domain(rec.domain_id, TenantId(tenant_id))
                tx.put_domain_secret(rec)
        elif entry.rtype == jr.RECORD_OP:
            self._replay(tx, jr.open_op(self.keyring, entry.payload))
        else:
            log.warning("journal %s: unknown record type %d skipped", entry.segment, entry.rtype)


def domain_secret_record(rec: DomainSecretRecord, *, tenant_id: int | None = None) -> tuple[int, bytes]:
    """The type-1 journal record of a (wrapped) domain secret; ``tenant_id`` when the record also
    creates the domain (``Engine.create_domain``)."""
    doc: dict[str, Any] = {
        "domain_id": rec.domain_id,
        "key_version": rec.key_version,
        "wrapped": base64.b64encode(rec.wrapped).decode(),
        "master_key_id": rec.master_key_id,
        "created_at": rec.created_at.astimezone(UTC).isoformat(),
    }
    if tenant_id is not None:
        doc["tenant_id"] = tenant_id
    return jr.RECORD_DOMAIN_SECRET, json.dumps(doc, sort_keys=True).encode()


def _secret_tenant(payload: bytes) -> int | None:
    try:
        tenant = json.loads(payload).get("tenant_id")
    except (ValueError, AttributeError) as exc:
        raise CorruptFrame("journal: malformed domain secret record") from exc
    return None if tenant is None else int(tenant)


def _secret_from_json(payload: bytes) -> DomainSecretRecord:
    try:
        doc = json.loads(payload)
        return DomainSecretRecord(
            DomainId(doc["domain_id"]),
            int(doc["key_version"]),
            base64.b64decode(doc["wrapped"]),
            str(doc["master_key_id"]),
            datetime.fromisoformat(doc["created_at"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptFrame("journal: malformed domain secret record") from exc
