"""``Warehouse``: the Python API of one data directory — buckets and objects, plus the admin
operations (scrub, gc, disks, keys, rebuild) that the CLI and tests drive.

Objects are written with a streaming ``ObjectUpload`` (``write``/``finish``) or in one call with
``put_object``; ``finish`` first makes every shard durable, then commits the version, its
manifest and the chunk references in one journaled transaction.
"""

from __future__ import annotations

import dataclasses
import io
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from datawarehouse.clock import Clock
from datawarehouse.config import EngineConfig
from datawarehouse.engine.engine import Engine
from datawarehouse.engine.writer import ObjectWriter
from datawarehouse.errors import (
    BucketNotEmpty,
    CorruptFrame,
    DeleteMarkerFound,
    DwhError,
    EntityTooLarge,
    InvalidInput,
    NoSuchBucket,
)
from datawarehouse.ids import DEFAULT_TENANT, DiskId, DomainId, TenantId, UserId, qualify_bucket_name, split_bucket_name
from datawarehouse.meta.repo import BucketUsage, MetaTx, ObjectSummary, StoredUsage
from datawarehouse.meta.repo import ObjectRead as ObjectRead  # what open_object returns, for the API layer
from datawarehouse.records import BucketRecord, ObjectVersion, StorageClass, parse_storage_class
from datawarehouse.service import catalog, parts, quota
from datawarehouse.service.iam import IamService
from datawarehouse.service.naming import check_bucket_name, check_key, is_system_bucket

if TYPE_CHECKING:
    from datawarehouse.service.objectlock import LockRequest
    from datawarehouse.service.versioning import DeleteOutcome

# What the journal document of an object write from a read worker may hold.
_FORWARDED_PUT_FIELDS = frozenset({"op", "domain_id", "replace", "conditions", "version", "new_chunks", "lock_request"})
MAX_OBJECT_SIZE = 5 * 1024**4  # 5 TiB, as S3
MAX_PUT_SIZE = 5 * 1024**3  # one PutObject: 5 GiB, as S3
# Representation headers stored with an object and returned on GET/HEAD.
OWNER_META = "dwh-owner"  # system metadata: the ARN of the principal that wrote the version (never rendered)


def with_owner(system_meta: dict[str, str], owner: str | None) -> dict[str, str]:
    """``system_meta`` recording ``owner`` as the version's writer (none: unknown, e.g. the CLI)."""
    out = {k: v for k, v in system_meta.items() if k != OWNER_META}
    if owner:
        out[OWNER_META] = owner
    return out


SYSTEM_HEADERS = ("content-encoding", "content-disposition", "content-language", "cache-control", "expires")
READ_SIZE = 1024 * 1024
READ_HEAD_CHUNKS = 4  # chunk records read with the version (the reader's prefetch window)
T = TypeVar("T")


@dataclass(frozen=True)
class OpenOptions:
    passphrase: str | None = None
    config: EngineConfig | None = None
    clock: Clock | None = None


@dataclass(frozen=True)
class ObjectSpec:
    """What a new object carries besides its bytes."""

    content_type: str = "application/octet-stream"
    user_meta: dict[str, str] = field(default_factory=dict)
    system_meta: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lock: LockRequest | None = None


class ObjectUpload:
    """A streaming write of one object; nothing is visible until ``finish`` returns."""

    def __init__(
        self,
        wh: Warehouse,
        bucket: BucketRecord,
        key: str,
        writer: ObjectWriter,
        storage_class: StorageClass,
        spec: ObjectSpec,
    ) -> None:
        self._wh = wh
        self._bucket = bucket
        self._key = key
        self._writer = writer
        self._class = storage_class
        self._spec = spec

    def write(self, data: bytes | memoryview) -> None:
        try:
            self._writer.write(data)
        except InvalidInput as exc:
            self._writer.abort()
            raise EntityTooLarge(str(exc)) from exc

    def abort(self) -> None:
        self._writer.abort()

    def finish(
        self, *, extra_system_meta: dict[str, str] | None = None, conditions: dict[str, str] | None = None
    ) -> ObjectVersion:
        """Make the bytes durable, then commit the version. ``conditions`` (If-Match /
        If-None-Match) are checked inside the commit's transaction, so they hold atomically."""
        return self.finish_later(extra_system_meta=extra_system_meta, conditions=conditions).result()

    def finish_later(
        self, *, extra_system_meta: dict[str, str] | None = None, conditions: dict[str, str] | None = None
    ) -> Future[ObjectVersion]:
        """``finish`` up to handing the version to the committer: the bytes and the version are
        durable once the future is resolved (the committer flushes the disks holding the last
        staged shards of every object of its batch, once each, before journaling them). For an
        inline object nothing here blocks on I/O, so an event loop may call it and await the
        future."""
        engine = self._wh.engine
        data = self._writer.finish(flush=False)  # the committer flushes the batch's disks
        now = engine.now()
        version = ObjectVersion(
            bucket_id=self._bucket.bucket_id,
            key=self._key,
            version_id=catalog.new_version_id(now),
            size=data.size,
            etag=data.etag,
            created_at=now,
            storage_class=self._class,
            chunker=engine.config.chunker,
            content_type=self._spec.content_type,
            user_meta=dict(self._spec.user_meta),
            inline_data=data.inline_data,
            chunks=data.chunks,
            system_meta={**self._spec.system_meta, **(extra_system_meta or {})},
            tags=dict(self._spec.tags),
        )
        doc: dict[str, Any] = {
            "op": "object.put",
            "domain_id": self._bucket.domain_id,
            "replace": True,
            "conditions": conditions or {},
            "version": catalog.version_to_doc(version),
            "new_chunks": [catalog.chunk_to_doc(c) for c in data.new_chunks],
        }
        if self._spec.lock is not None and not self._spec.lock.empty:
            doc["lock_request"] = self._spec.lock.to_doc()
        return self._wh.commit_put(self._bucket, doc, version, data.unflushed)


def _then(pending: Future[Any], done: Callable[[Future[Any]], T]) -> Future[T]:
    """A future of ``done(pending)``, computed on the thread that resolves ``pending``."""
    out: Future[T] = Future()

    def finish(f: Future[Any]) -> None:
        try:
            out.set_result(done(f))
        except BaseException as exc:
            out.set_exception(exc)

    pending.add_done_callback(finish)
    return out


class Warehouse:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Buckets by name for writes (one process owns a data directory, and every bucket change
        # goes through here): a PUT then needs no metadata read before its commit, which checks
        # the bucket again. Cleared when a bucket is created or deleted; ``_bucket_generation``
        # keeps a look-up that raced with that from caching what it read before.
        self._bucket_cache: dict[str, BucketRecord] = {}
        self._bucket_generation = 0
        self._bucket_lock = threading.Lock()
        # Settings documents by (bucket id, name), for hot-path decisions (versioning state,
        # quota). Every change goes through set_bucket_setting, which forgets the entry and bumps
        # ``_settings_generation`` so that a read racing with the change is not cached.
        self._settings: dict[tuple[int, str], str | None] = {}
        self._settings_generation = 0
        self._tenant_names: dict[TenantId, str] = {}
        # A read worker's way to have the primary commit what it wrote (``commit_forwarded_put``
        # on the other side): set by the worker, ``None`` in the process that holds the data
        # directory.
        self.remote_commit: Callable[[str, dict[str, Any]], Future[ObjectVersion]] | None = None
        # Tenants, users, keys, policies, quotas (and the master-rotation hook that reseals
        # access-key secrets, so it is registered whoever opens the data directory).
        self.iam = IamService(engine)

    # --- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def init(cls, root: Path, disks: list[Path] | None = None, options: OpenOptions | None = None) -> Warehouse:
        o = options or OpenOptions()
        return cls(Engine.init(root, disks, catalog.replay, passphrase=o.passphrase, config=o.config, clock=o.clock))

    @classmethod
    def open(cls, root: Path, options: OpenOptions | None = None, *, follower: bool = False) -> Warehouse:
        """``follower``: read what the process holding the data directory writes (a read worker
        of ``dwh serve --workers``); call ``refresh_if_changed`` before each request."""
        o = options or OpenOptions()
        engine = Engine.open(
            root, catalog.replay, passphrase=o.passphrase, config=o.config, clock=o.clock, follower=follower
        )
        return cls(engine)

    def refresh_if_changed(self) -> bool:
        """A follower: if the writer committed since the last call, drop every cache of what it
        may have changed (buckets, bucket settings, identities, quotas) and learn new domain
        secrets. With the writer's ``engine.changes`` counter only the commits that may change
        those count; without it (one PRAGMA) every commit does. True if something had."""
        changes = self.engine.changes
        if not (changes.moved() if changes is not None else self.engine.repo.changed()):
            return False
        self.forget_buckets()
        self.iam.forget_cached()
        self.engine.refresh()
        return True

    def close(self) -> None:
        try:
            self.iam.close()
        finally:
            self.engine.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> Any:
        """A read-only snapshot (no write lock)."""
        return self.engine.repo.read()

    # --- buckets -------------------------------------------------------------------------------

    def create_bucket(
        self,
        name: str,
        storage_class: str | None = None,
        domain_id: DomainId | None = None,
        *,
        object_lock: bool = False,
        snapshot_view: bool = False,
        system: bool = False,
        owner_user_id: UserId | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> BucketRecord:
        """``name`` is tenant-qualified (``tenant:bucket``, bare for the default tenant); the
        bucket joins its tenant's dedup/encryption domain unless ``domain_id`` says otherwise.
        ``object_lock``: the bucket is created with object lock enabled, hence versioning
        Enabled (both settings are part of the journaled creation). ``snapshot_view``: the
        bucket is a snapshot view (service/snapshots.py), the only way to a ``--snap--`` name.
        ``system``: a system bucket (``dwh--`` names, such as the audit log's).
        ``owner_user_id``: the IAM user creating it (counted by user quotas). ``settings``: bucket
        settings documents the bucket is created with (in the same journaled creation)."""
        tenant, name = split_bucket_name(name)
        check_bucket_name(name, allow_snapshot=snapshot_view, allow_system=system)
        if domain_id is None:
            domain_id = self.iam.tenant_domain(tenant)
        sc = None
        if storage_class:
            sc = parse_storage_class(storage_class, len(self.engine.disks.active()))
            sc.check_fits(len(self.engine.disks.active()))
        now = self.engine.now()
        created: list[BucketRecord] = []
        settings = dict(settings or {})
        if object_lock:
            from datawarehouse.service import objectlock

            settings[catalog.VERSIONING_SETTING] = catalog.VERSIONING_ENABLED
            settings[objectlock.SETTING] = objectlock.LockConfig(True).to_json()

        def apply(tx: MetaTx) -> BucketRecord:
            rec = tx.create_bucket(domain_id, name, now, sc, owner_user_id)
            if not system:  # tenant and user bucket quotas (the new bucket now counts)
                self.iam.check_quota(rec.tenant_id, owner_user_id, tx=tx)
            for setting, value in settings.items():
                tx.put_bucket_setting(rec.bucket_id, setting, value)
            created.append(rec)
            return rec

        def doc() -> dict[str, Any]:
            d = catalog.bucket_create_doc(created[-1])
            if settings:
                d["settings"] = settings
            return d

        try:
            rec: BucketRecord = self.engine.commit(apply, domain_id, doc)
        finally:
            self.forget_buckets()
        return rec

    def get_bucket(self, name: str) -> BucketRecord:
        with self._read() as tx:
            rec: BucketRecord = tx.get_bucket(name)
            return rec

    def list_buckets(self, tenant: str | None = None, *, include_system: bool = False) -> list[BucketRecord]:
        """One tenant's buckets, or every tenant's (``None``: maintenance jobs, which then name
        each bucket by ``qualified_name``). System buckets (``dwh--audit``) are left out unless
        ``include_system``: so neither S3 ListBuckets nor ``dwh bucket list`` reveals them."""
        with self._read() as tx:
            out: list[BucketRecord] = tx.list_buckets(tenant)
        return out if include_system else [b for b in out if not is_system_bucket(b.name)]

    def qualified_name(self, rec: BucketRecord) -> str:
        """The name every by-name method takes for this bucket (``tenant:bucket``, or bare in the
        default tenant). Tenant names never change, so the id -> name map is cached."""
        if rec.tenant_id == DEFAULT_TENANT:
            return rec.name
        name = self._tenant_names.get(rec.tenant_id)
        if name is None:
            self._tenant_names = {t.tenant_id: t.name for t in self.iam.list_tenants()}
            name = self._tenant_names[rec.tenant_id]
        return qualify_bucket_name(name, rec.name)

    def delete_bucket(self, name: str) -> None:
        rec = self.get_bucket(name)
        doc = {"op": "bucket.delete", "bucket_id": rec.bucket_id}
        try:
            self.engine.commit(
                lambda tx: catalog.apply_bucket_delete(tx, doc, replay=False), rec.domain_id, lambda: doc
            )
        except BucketNotEmpty as exc:  # the index names the bucket by id; the caller knows it by name
            raise BucketNotEmpty(f"bucket {name!r} is not empty ({exc})") from exc
        finally:
            self.forget_buckets()

    def bucket_for_write(self, name: str) -> BucketRecord:
        """``get_bucket`` through the write cache (the commit checks the bucket again)."""
        rec = self._bucket_cache.get(name)
        if rec is None:
            generation = self._bucket_generation
            rec = self.get_bucket(name)
            with self._bucket_lock:
                if generation == self._bucket_generation:
                    self._bucket_cache[name] = rec
        return rec

    def forget_buckets(self) -> None:
        with self._bucket_lock:
            self._bucket_generation += 1
            self._bucket_cache.clear()
            self._settings_generation += 1
            self._settings.clear()  # a bucket id may be reused by a new bucket

    def storage_class_for(self, bucket: BucketRecord, override: str | None = None) -> StorageClass:
        count = len(self.engine.disks.active())
        sc = (
            parse_storage_class(override, count)
            if override
            else (bucket.storage_class or self.engine.default_storage_class())
        )
        sc.check_fits(count)
        return sc

    # --- objects -------------------------------------------------------------------------------

    def open_upload(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str = "application/octet-stream",
        user_meta: dict[str, str] | None = None,
        system_meta: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        storage_class: str | None = None,
        max_size: int = MAX_OBJECT_SIZE,
        expected_size: int | None = None,
        lock: LockRequest | None = None,
        md5_etag: bool = False,
    ) -> ObjectUpload:
        """``expected_size``: what the client announced, checked against the bucket's quota
        before any byte is stored (the commit checks the real size again). ``lock``: the
        retention and legal hold the new version asks for (object lock buckets; without it the
        bucket's default retention applies). ``md5_etag``: make the ETag the MD5 of the bytes,
        as S3 promises for a single PUT; other writers get the free content ETag
        (``digest.content_etag``)."""
        check_key(key)
        rec = self.bucket_for_write(bucket)
        self.check_quota_room(rec, add_bytes=expected_size or 0, add_objects=1)
        sc = self.storage_class_for(rec, storage_class)
        writer = self.engine.new_writer(rec.domain_id, sc, max_size, md5_etag=md5_etag)
        spec = ObjectSpec(content_type, dict(user_meta or {}), dict(system_meta or {}), dict(tags or {}), lock)
        return ObjectUpload(self, rec, key, writer, sc, spec)

    def commit_put(
        self, rec: BucketRecord, doc: dict[str, Any], version: ObjectVersion, unflushed: frozenset[DiskId]
    ) -> Future[ObjectVersion]:
        """Hand a written object's version (``doc``: its ``object.put`` journal document) to the
        committer — on a read worker, to the primary's (``remote_commit``); the future resolves
        to the stored version once it is durable."""
        if self.remote_commit is not None:
            if doc["new_chunks"] or unflushed or version.inline_data is None:
                raise DwhError("a read worker writes only objects small enough to be inline")
            return self.remote_commit(self.qualified_name(rec), doc)
        domain = rec.domain_id
        if (
            not self.has_quota(rec)
            and "lock_request" not in doc
            and self.bucket_setting_cached(rec, catalog.VERSIONING_SETTING) is None
        ):
            # A bucket that never had versioning: the version is its key's "null" version,
            # decided here (and journaled so), which lets the committer store a run of such
            # PUTs together (group commit). A concurrent PutBucketVersioning may land in the
            # same batch; the PUT then counts as written just before it, as S3 allows.
            doc["version"]["null"] = True
            doc["null_decided"] = True
            version = dataclasses.replace(version, null_version=True)
            pending = self.engine.commit_later(
                lambda tx: catalog.apply_object_put(tx, doc, replay=False),
                domain,
                doc,
                batch=catalog.apply_object_puts,
                payload=catalog.PutOp(doc, version),
                flush=unflushed,
                announce=False,
            )
        else:
            # Versioning decides the version's fate in the commit; a quota is checked there too.
            pending = self.engine.commit_later(
                self.within_quota(rec, lambda tx: catalog.apply_object_put(tx, doc, replay=False)),
                domain,
                lambda: doc,
                flush=unflushed,
                announce=False,
            )
        return _then(pending, partial(self._stored, version))

    def _stored(self, version: ObjectVersion, pending: Future[Any]) -> ObjectVersion:
        """The committed version (the batch path answers ``None`` for the one it was given)."""
        try:
            stored = pending.result()
        except NoSuchBucket:
            self.forget_buckets()  # the bucket (by id) is gone: look its name up again next time
            raise
        return stored if isinstance(stored, ObjectVersion) else version

    def commit_forwarded_put(self, bucket: str, doc: dict[str, Any]) -> Future[ObjectVersion]:
        """``commit_put`` of an inline object a read worker wrote (``remote_commit`` there):
        ``bucket`` is the name it knew the bucket by, ``doc`` the journal document it built. The
        worker authorized the write and sealed the bytes; what depends on this process's state
        (versioning, quotas, conditions, the bucket still being the one it meant) is decided
        here, exactly as for a write of this process's own."""
        if doc.get("op") != "object.put" or not set(doc) <= _FORWARDED_PUT_FIELDS:
            raise CorruptFrame("a read worker sent a commit that is not an object write")
        if doc.get("new_chunks") or doc.get("replace") is not True or not isinstance(doc.get("version"), dict):
            raise CorruptFrame("a read worker may commit only new inline versions")
        version = catalog.version_from_doc(doc["version"])
        if version.inline_data is None or version.is_delete_marker:
            raise CorruptFrame("a read worker may commit only new inline versions")
        rec = self.bucket_for_write(bucket)
        if rec.bucket_id != version.bucket_id or rec.domain_id != doc.get("domain_id"):
            self.forget_buckets()
            raise NoSuchBucket(f"bucket {bucket!r} was deleted while the object was written")
        return self.commit_put(rec, doc, version, frozenset())

    def put_object(self, bucket: str, key: str, data: bytes | BinaryIO | Iterable[bytes], **kw: Any) -> ObjectVersion:
        upload = self.open_upload(bucket, key, **kw)
        try:
            if isinstance(data, bytes | bytearray | memoryview):
                view = memoryview(data)
                for i in range(0, len(view), READ_SIZE):
                    upload.write(view[i : i + READ_SIZE])
            elif isinstance(data, io.IOBase) or hasattr(data, "read"):
                stream: Any = data
                while piece := stream.read(READ_SIZE):
                    upload.write(piece)
            else:
                for piece in data:
                    upload.write(piece)
        except BaseException:
            upload.abort()
            raise
        return upload.finish()

    def head_object(self, bucket: str, key: str, version_id: str | None = None) -> ObjectVersion:
        return self.lookup(bucket, key, version_id)[1]

    def lookup(self, bucket: str, key: str, version_id: str | None = None) -> tuple[BucketRecord, ObjectVersion]:
        """Bucket and current (or named) version in one snapshot; a delete marker reads as
        ``DeleteMarkerFound`` (a ``NoSuchKey``)."""
        found = self.open_object(bucket, key, chunk_head=0, version_id=version_id)
        return found.bucket, found.version

    @property
    def inline_max_size(self) -> int:
        """Objects up to this size are stored in the metadata (sealed), not as shards."""
        return self.engine.config.inline_max_size

    @property
    def reads_are_local(self) -> bool:
        """Whether ``open_object``/``lookup`` of a current version (no ``version_id``) is one read
        of a local database that never waits for a writer: then a server may call them on its
        event loop (see ``MetaRepo.reads_are_local``)."""
        return self.engine.repo.reads_are_local

    def open_object(
        self, bucket: str, key: str, chunk_head: int = READ_HEAD_CHUNKS, version_id: str | None = None
    ) -> ObjectRead:
        """Bucket, current version (or the one named by ``version_id``, ``null`` included) and the
        records of its first ``chunk_head`` chunks: for the current version one metadata
        statement, everything a GET of a small object needs before reading shards. A delete
        marker raises ``DeleteMarkerFound``; an unknown version ``NoSuchVersion``."""
        if version_id is not None:
            from datawarehouse.service import versioning

            return versioning.open_version(self, bucket, key, version_id, chunk_head)
        found = self.engine.repo.read_object(bucket, key, chunk_head)
        if found.version.is_delete_marker:
            raise DeleteMarkerFound(f"no object {key!r} in bucket {bucket!r}", found.version.s3_version_id, named=False)
        return found

    def read_object(
        self,
        found: ObjectRead,
        start: int = 0,
        end: int | None = None,
        *,
        prefetch: int = 4,
        cached_only: bool = False,
    ) -> Iterator[bytes]:
        """The bytes ``[start, end)`` of an opened object (the chunk records it carries are used);
        ``prefetch``: chunks read ahead on the engine pool (0: all on the calling thread);
        ``cached_only``: only from memory, else ``WouldBlock`` (``Engine.read``)."""
        return self.engine.read(
            found.bucket.domain_id,
            found.version,
            start,
            end,
            known=found.chunks,
            prefetch=prefetch,
            cached_only=cached_only,
        )

    def get_object(
        self, bucket: str, key: str, start: int = 0, end: int | None = None
    ) -> tuple[ObjectVersion, Iterator[bytes]]:
        """The version and an iterator over its bytes ``[start, end)`` (end exclusive)."""
        found = self.open_object(bucket, key)
        return found.version, self.read_object(found, start, end)

    def get_object_bytes(self, bucket: str, key: str, start: int = 0, end: int | None = None) -> bytes:
        _, it = self.get_object(bucket, key, start, end)
        return b"".join(it)

    def list_objects(
        self, bucket: str, prefix: str = "", start_after: str = "", limit: int = 1000
    ) -> list[ObjectSummary]:
        rec = self.get_bucket(bucket)
        with self._read() as tx:
            out: list[ObjectSummary] = tx.list_objects(rec.bucket_id, prefix, start_after, limit)
            return out

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectSummary]:
        after = ""
        while True:
            page = self.list_objects(bucket, prefix, after, 1000)
            yield from page
            if len(page) < 1000:
                return
            after = page[-1].key

    def copy_object(
        self,
        src_bucket: str,
        src_key: str,
        bucket: str,
        key: str,
        *,
        spec: ObjectSpec | None = None,
        tags: dict[str, str] | None = None,
        source_conditions: Callable[[ObjectVersion], None] | None = None,
        source_version_id: str | None = None,
        lock: LockRequest | None = None,
        owner: str | None = None,
    ) -> ObjectVersion:
        """Copy by reference: the new version shares the source's chunks (one journaled commit
        that adds references; nothing is read or rewritten). Both buckets share the domain.
        ``spec`` replaces the metadata, ``tags`` the tag set (each ``None``: the source's);
        ``owner`` is who made the copy (never the source's writer).
        ``source_version_id`` names a version of the source (default: its current one);
        ``source_conditions`` is called with the source version (and may refuse it)."""
        check_key(key)
        src_rec, source = self.lookup(src_bucket, src_key, source_version_id)
        if source_conditions is not None:
            source_conditions(source)
        dst = self.get_bucket(bucket)
        if dst.domain_id != src_rec.domain_id:
            raise InvalidInput("copying between tenants re-encrypts data and is not supported yet")
        version = copied_version(source, dst, key, self.engine.now(), spec, tags)
        version = dataclasses.replace(version, system_meta=with_owner(version.system_meta, owner))
        doc: dict[str, Any] = {
            "op": "object.put",
            "domain_id": dst.domain_id,
            "replace": True,
            "version": catalog.version_to_doc(version),
            "new_chunks": [],
        }
        if lock is not None and not lock.empty:
            doc["lock_request"] = lock.to_doc()
        stored: ObjectVersion = self.engine.commit(
            self.within_quota(dst, lambda tx: catalog.apply_object_put(tx, doc, replay=False)),
            dst.domain_id,
            lambda: doc,
            announce=False,
        )
        return stored

    def put_object_tags(
        self, bucket: str, key: str, tags: dict[str, str], version_id: str | None = None
    ) -> ObjectVersion:
        """Replace the tags of the current (or named) version (no data is touched)."""
        rec, v = self.lookup(bucket, key, version_id)
        doc = {
            "op": "object.tags",
            "bucket_id": rec.bucket_id,
            "key": key,
            "version_id": v.version_id,
            "tags": dict(tags),
        }
        self.engine.commit(
            lambda tx: catalog.apply_object_tags(tx, doc, replay=False), rec.domain_id, lambda: doc, announce=False
        )
        return v

    def get_bucket_setting(self, bucket: str, name: str) -> str | None:
        rec = self.get_bucket(bucket)
        with self._read() as tx:
            value: str | None = tx.get_bucket_setting(rec.bucket_id, name)
            return value

    def set_bucket_setting(self, bucket: str, name: str, value: str | None) -> None:
        """Store (or with ``None`` remove) a per-bucket settings document such as ``cors``."""
        rec = self.get_bucket(bucket)
        doc = {"op": "bucket.setting", "bucket_id": rec.bucket_id, "name": name, "value": value}
        try:
            self.engine.commit(
                lambda tx: catalog.apply_bucket_setting(tx, doc, replay=False), rec.domain_id, lambda: doc
            )
        finally:
            with self._bucket_lock:
                self._settings_generation += 1
                self._settings.pop((rec.bucket_id, name), None)

    def bucket_setting_cached(self, rec: BucketRecord, name: str) -> str | None:
        """A settings document read once and kept (every change goes through
        ``set_bucket_setting``, which forgets it)."""
        slot = (rec.bucket_id, name)
        if slot in self._settings:
            return self._settings[slot]
        generation = self._settings_generation
        with self._read() as tx:
            value: str | None = tx.get_bucket_setting(rec.bucket_id, name)
        with self._bucket_lock:
            if generation == self._settings_generation:
                self._settings[slot] = value
        return value

    def cached_bucket_has_no(self, name: str, setting: str) -> bool:
        """True only when both the bucket and the absence of ``setting`` are already in memory:
        a check the event loop can afford (no metadata read). False means "look it up"."""
        rec = self._bucket_cache.get(name)
        if rec is None:
            return False
        slot = (rec.bucket_id, setting)
        return slot in self._settings and self._settings[slot] is None

    # --- quotas and usage ----------------------------------------------------------------------

    def set_bucket_quota(self, bucket: str, limit: quota.Quota | None) -> None:
        """Set (``None`` or an unlimited quota: remove) the bucket's hard quota."""
        value = None if limit is None or limit.unlimited else limit.to_json()
        self.set_bucket_setting(bucket, quota.SETTING, value)

    def quota_for(self, rec: BucketRecord) -> quota.Quota | None:
        value = self.bucket_setting_cached(rec, quota.SETTING)
        return quota.Quota.from_json(value) if value else None

    def has_quota(self, rec: BucketRecord) -> bool:
        """Whether any quota covers writes to this bucket: its own, its tenant's, or the quota of
        the user who owns it (IAM)."""
        return self.quota_for(rec) is not None or self.iam.has_quota(rec.tenant_id, rec.owner_user_id)

    def check_quota_room(self, rec: BucketRecord, *, add_bytes: int, add_objects: int) -> None:
        """Refuse, before any data is stored, a write that cannot fit the bucket's quota, its
        tenant's or its owner's."""
        limit = self.quota_for(rec)
        if limit is not None:
            with self._read() as tx:
                usage = tx.bucket_usage(rec.bucket_id)
            quota.check_room(rec.name, limit, usage, add_bytes=add_bytes, add_objects=add_objects)
        if self.iam.has_quota(rec.tenant_id, rec.owner_user_id):
            self.iam.check_quota(rec.tenant_id, rec.owner_user_id, add_bytes=add_bytes, add_objects=add_objects)

    def within_quota(self, rec: BucketRecord, apply: Callable[[MetaTx], Any]) -> Callable[[MetaTx], Any]:
        """``apply``, then (if a quota covers the bucket) the check that it left the bucket, its
        tenant and its owner within their quotas, in the same transaction."""
        limit = self.quota_for(rec)
        tenant_quota = self.iam.has_quota(rec.tenant_id, rec.owner_user_id)
        if limit is None and not tenant_quota:
            return apply

        def guarded(tx: MetaTx) -> Any:
            result = apply(tx)
            if limit is not None:
                quota.check_within(tx, rec.name, rec.bucket_id, limit)
            if tenant_quota:
                self.iam.check_quota(rec.tenant_id, rec.owner_user_id, tx=tx)
            return result

        return guarded

    def bucket_usage(self, bucket: str) -> tuple[BucketUsage, StoredUsage, quota.Quota | None]:
        """Logical usage (counters), stored usage (a scan of the bucket's chunks) and quota."""
        rec = self.get_bucket(bucket)
        with self._read() as tx:
            return tx.bucket_usage(rec.bucket_id), tx.bucket_stored_usage(rec.bucket_id), self.quota_for(rec)

    def delete_object(
        self, bucket: str, key: str, version_id: str | None = None, *, bypass_governance: bool = False
    ) -> DeleteOutcome:
        """Delete the current version (a delete marker when the bucket is versioned) or, with
        ``version_id``, that version permanently. Chunks another version uses stay."""
        from datawarehouse.service import versioning

        return versioning.delete_object(self, bucket, key, version_id, bypass_governance=bypass_governance)


def copied_version(
    source: ObjectVersion,
    bucket: BucketRecord,
    key: str,
    now: datetime,
    spec: ObjectSpec | None,
    tags: dict[str, str] | None = None,
) -> ObjectVersion:
    """A new version of ``bucket/key`` with ``source``'s bytes: the same manifest (or inline
    frame), so no data is read or written. ``spec`` replaces the metadata (REPLACE directive) but
    not the stored checksums and part layout, which describe the unchanged bytes; ``tags`` replaces the tag set
    (``spec.tags`` is not used: S3's tagging directive is independent of the metadata one)."""
    describing = parts.describing_bytes(source.system_meta)
    return ObjectVersion(
        bucket_id=bucket.bucket_id,
        key=key,
        version_id=catalog.new_version_id(now),
        size=source.size,
        etag=source.etag,
        created_at=now,
        storage_class=source.storage_class,
        chunker=source.chunker,
        content_type=spec.content_type if spec else source.content_type,
        user_meta=dict(spec.user_meta) if spec else dict(source.user_meta),
        inline_data=source.inline_data,
        chunks=source.chunks,
        system_meta={**spec.system_meta, **describing} if spec else dict(source.system_meta),
        tags=dict(tags) if tags is not None else dict(source.tags),
    )
