"""Metadata operations on buckets and objects, as journal documents and as transactions.

Each operation is one JSON document. The same ``apply_*`` function runs it live (inside the
committer's transaction, validating first) and when the journal is replayed (catch-up after a
crash, or a full rebuild of the index): replay skips what is already there, so applying a record
twice changes nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import secrets
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from datawarehouse.engine.committer import APPLY_ALONE, Refused
from datawarehouse.errors import (
    ConcurrentModification,
    CorruptFrame,
    DwhError,
    InvalidInput,
    MetadataError,
    NoSuchBucket,
    NoSuchKey,
    PreconditionFailed,
)
from datawarehouse.ids import BucketId, ChunkId, DiskId, DomainId, UserId, VersionId
from datawarehouse.meta.repo import MetaTx
from datawarehouse.records import BucketRecord, ChunkerParams, ChunkRecord, ChunkRef, ObjectVersion, StorageClass

log = logging.getLogger(__name__)

# The bucket setting that holds the versioning state: absent (never enabled), Enabled, Suspended.
VERSIONING_SETTING = "versioning"
VERSIONING_ENABLED = "Enabled"
VERSIONING_SUSPENDED = "Suspended"


_last_micros = 0
_ids_lock = threading.Lock()


def new_version_id(at: datetime) -> VersionId:
    """Time-ordered and unique: microseconds since the epoch, then 64 random bits. Within a
    process the time part strictly increases (a clock that stands still, as a test's, or steps
    back never reorders versions): "newest first" is "greatest version id first"."""
    global _last_micros
    with _ids_lock:
        micros = max(int(at.timestamp() * 1_000_000), _last_micros + 1)
        _last_micros = micros
    return VersionId(f"{micros:014x}{secrets.token_hex(8)}")


# --- encoding --------------------------------------------------------------------------------------


def version_to_doc(v: ObjectVersion) -> dict[str, Any]:
    return {
        "bucket_id": v.bucket_id,
        "key": v.key,
        "version_id": v.version_id,
        "size": v.size,
        "etag": v.etag,
        "created_at": v.created_at.isoformat(),
        "ec": [v.storage_class.k, v.storage_class.m],
        "chunker": [v.chunker.min_size, v.chunker.avg_size, v.chunker.max_size],
        "content_type": v.content_type,
        "user_meta": v.user_meta,
        "inline": base64.b64encode(v.inline_data).decode() if v.inline_data is not None else None,
        "chunks": [[c.chunk_id.hex(), c.offset, c.plain_size] for c in v.chunks],
        "delete_marker": v.is_delete_marker,
        "system_meta": v.system_meta,
        "tags": v.tags,
        "null": v.null_version,
        "lock": {
            "mode": v.lock_mode,
            "until": v.lock_until.isoformat() if v.lock_until else None,
            "hold": v.legal_hold,
        },
    }


def version_from_doc(d: dict[str, Any]) -> ObjectVersion:
    try:
        lock = d.get("lock") or {}
        return ObjectVersion(
            bucket_id=BucketId(d["bucket_id"]),
            key=d["key"],
            version_id=VersionId(d["version_id"]),
            size=int(d["size"]),
            etag=d["etag"],
            created_at=datetime.fromisoformat(d["created_at"]),
            storage_class=StorageClass(*d["ec"]),
            chunker=ChunkerParams(*d["chunker"]),
            content_type=d["content_type"],
            user_meta=dict(d["user_meta"]),
            inline_data=base64.b64decode(d["inline"]) if d["inline"] is not None else None,
            chunks=tuple(ChunkRef(ChunkId(bytes.fromhex(h)), o, s) for h, o, s in d["chunks"]),
            is_delete_marker=bool(d.get("delete_marker", False)),
            system_meta=dict(d.get("system_meta", {})),
            tags=dict(d.get("tags", {})),
            # records written before versioning existed are all "null" versions
            null_version=bool(d.get("null", True)),
            lock_mode=lock.get("mode"),
            lock_until=datetime.fromisoformat(lock["until"]) if lock.get("until") else None,
            legal_hold=None if lock.get("hold") is None else bool(lock["hold"]),
        )
    except (KeyError, TypeError, ValueError, InvalidInput) as exc:  # InvalidInput: a bad EC or chunker
        raise CorruptFrame(f"journal: malformed object version ({exc.__class__.__name__})") from exc


def chunk_to_doc(c: ChunkRecord) -> dict[str, Any]:
    return {
        "id": c.chunk_id.hex(),
        "gen": c.generation,
        "plain": c.plain_size,
        "sealed": c.sealed_size,
        "ec": [c.k, c.m],
        "at": c.created_at.isoformat(),
        "placement": list(c.placement),
    }


def chunk_from_doc(domain_id: DomainId, d: dict[str, Any]) -> ChunkRecord:
    return ChunkRecord(
        domain_id=domain_id,
        chunk_id=ChunkId(bytes.fromhex(d["id"])),
        generation=int(d["gen"]),
        plain_size=int(d["plain"]),
        sealed_size=int(d["sealed"]),
        k=d["ec"][0],
        m=d["ec"][1],
        refcount=0,
        created_at=datetime.fromisoformat(d["at"]),
        placement=tuple(DiskId(p) for p in d["placement"]),
    )


def refs_of(v: ObjectVersion) -> Counter[ChunkId]:
    """Chunk references a version holds (inline versions hold none)."""
    if v.inline_data is not None:
        return Counter()
    return Counter(c.chunk_id for c in v.chunks)


# --- operations ------------------------------------------------------------------------------------


def bucket_create_doc(b: BucketRecord) -> dict[str, Any]:
    sc = b.storage_class
    doc: dict[str, Any] = {
        "op": "bucket.create",
        "bucket_id": b.bucket_id,
        "domain_id": b.domain_id,
        "name": b.name,
        "created_at": b.created_at.isoformat(),
        "ec": [sc.k, sc.m] if sc else None,
    }
    if b.owner_user_id is not None:
        doc["owner_user_id"] = b.owner_user_id
    return doc


def apply_bucket_create(tx: MetaTx, doc: dict[str, Any]) -> None:
    """Replay only (the live path calls ``tx.create_bucket`` to get an id). ``settings`` (bucket
    settings made with the bucket, such as object lock and versioning) are restored with it."""
    ec = doc["ec"]
    bucket_id = BucketId(doc["bucket_id"])
    tx.insert_bucket(
        BucketRecord(
            bucket_id,
            DomainId(doc["domain_id"]),
            doc["name"],
            datetime.fromisoformat(doc["created_at"]),
            StorageClass(*ec) if ec else None,
            None if doc.get("owner_user_id") is None else UserId(doc["owner_user_id"]),
        )
    )
    for name, value in (doc.get("settings") or {}).items():
        if tx.get_bucket_setting(bucket_id, name) is None:
            tx.put_bucket_setting(bucket_id, name, value)


def apply_bucket_delete(tx: MetaTx, doc: dict[str, Any], replay: bool) -> None:
    if replay and tx.get_bucket_by_id(BucketId(doc["bucket_id"])) is None:
        return
    tx.delete_bucket(BucketId(doc["bucket_id"]))


def _drop_version(
    tx: MetaTx, domain_id: DomainId, v: ObjectVersion, at: datetime, replay: bool = False
) -> ObjectVersion | None:
    gone = tx.delete_version(v.bucket_id, v.key, v.version_id)
    if gone is not None:
        for chunk_id, count in refs_of(gone).items():
            try:
                tx.decref(domain_id, chunk_id, count, at)
            except MetadataError:
                if not replay:
                    raise
                # Replay after a partial index (rebuild recomputes every count from the manifests).
                log.warning("journal: chunk %s of %r missing from the index", chunk_id.hex()[:16], v.key)
    return gone


def apply_object_put(tx: MetaTx, doc: dict[str, Any], replay: bool) -> ObjectVersion | None:
    """Store a version (or a delete marker) as the key's latest.

    Live, the bucket's versioning state decides whether it is a "null" version (unversioned or
    suspended) and the decision is written into the document (``version.null``), so that replay
    repeats it. A null version replaces the key's previous null version, wherever it is in the
    key's history; a versioned one replaces nothing (``replace: false`` never replaces). New chunk
    rows are inserted, every reference counted; a reused chunk that vanished meanwhile (GC)
    refuses the commit rather than reference it. Returns the stored version (``None`` when replay
    finds it applied already or its bucket gone).
    """
    vdoc = doc["version"]
    v = version_from_doc(vdoc)
    domain_id = DomainId(doc["domain_id"])
    bucket = tx.get_bucket_by_id(v.bucket_id)
    if bucket is None:
        if replay:
            log.warning("journal: object %r in a bucket that no longer exists; skipped", v.key)
            return None
        raise NoSuchBucket(f"bucket {v.bucket_id} no longer exists")
    if replay:
        try:
            tx.get_version(v.bucket_id, v.key, v.version_id)
            return None  # already applied
        except NoSuchKey:
            pass
    elif not doc.get("null_decided"):  # decided by the writer when it was journaled first
        null = tx.get_bucket_setting(v.bucket_id, VERSIONING_SETTING) != VERSIONING_ENABLED
        mode: str | None = None
        until: datetime | None = None
        hold: bool | None = None
        if not v.is_delete_marker:
            from datawarehouse.service import objectlock

            request = objectlock.LockRequest.from_doc(doc.get("lock_request"))
            mode, until, hold = objectlock.lock_for_write(tx, v.bucket_id, request, v.created_at)
        v = dataclasses.replace(v, null_version=null, lock_mode=mode, lock_until=until, legal_hold=hold)
        vdoc.update(version_to_doc(v))
    tx.insert_chunks([chunk_from_doc(domain_id, cdoc) for cdoc in doc["new_chunks"]])
    for chunk_id in tx.incref_many(domain_id, refs_of(v)):
        if not replay:
            raise ConcurrentModification(f"chunk {chunk_id.hex()[:16]} was collected during the write; retry")
        log.warning("journal: object %r references chunk %s missing from the index", v.key, chunk_id.hex()[:16])
    if not replay and doc.get("conditions"):
        try:
            current: ObjectVersion | None = tx.get_version(v.bucket_id, v.key)
        except NoSuchKey:
            current = None
        check_write_conditions(doc["conditions"], current)
    if doc.get("replace", True) and v.null_version:
        previous = tx.get_null_version(v.bucket_id, v.key)
        if previous is not None:
            if not replay:
                check_removable(tx, previous, v.created_at, doc.get("bypass_governance", False))
            _drop_version(tx, domain_id, previous, v.created_at, replay)
    tx.insert_version(v)
    return v


def check_removable(tx: MetaTx, v: ObjectVersion, now: datetime, bypass_governance: bool) -> None:
    """Refuse to remove (or replace) a version that object lock protects. The one place every
    removal of a version passes through, live; replay repeats only what was allowed."""
    from datawarehouse.service import objectlock  # object lock builds on this module

    objectlock.check_removable(tx, v, now, bypass_governance)


def apply_object_lock(tx: MetaTx, doc: dict[str, Any], replay: bool) -> None:
    """Set a version's retention (``retention``: ``{"mode", "until"}``, both null to remove)
    and/or legal hold (``legal_hold``); a key absent from the document is left as it is. Live,
    a change that weakens a retention in force is refused (``objectlock``)."""
    bucket_id = BucketId(doc["bucket_id"])
    try:
        v = tx.get_version(bucket_id, doc["key"], VersionId(doc["version_id"]))
    except NoSuchKey:
        if replay:
            return
        raise
    mode, until, hold = v.lock_mode, v.lock_until, v.legal_hold
    if "retention" in doc:
        r = doc["retention"]
        mode, until = r["mode"], datetime.fromisoformat(r["until"]) if r["until"] else None
        if not replay:
            from datawarehouse.service import objectlock

            objectlock.check_retention_change(
                v, mode, until, datetime.fromisoformat(doc["at"]), bool(doc.get("bypass_governance", False))
            )
    if "legal_hold" in doc:
        hold = bool(doc["legal_hold"])
    tx.set_version_lock(bucket_id, v.key, v.version_id, mode, until, hold)


@dataclass(frozen=True)
class PutOp:
    """An ``object.put`` for the group commit: its journal document and the version it holds
    (decoded already, so the committer need not decode the document)."""

    doc: dict[str, Any]
    version: ObjectVersion


def apply_object_puts(tx: MetaTx, ops: Sequence[PutOp]) -> list[Any]:
    """Apply a run of live ``object.put`` operations at once (the committer's ``BatchApply``).

    The common case of a PUT — a new key, no other write to the key in the run — is validated
    with one query per bucket and stored with a few multi-row statements for the whole run (its
    new chunk rows, the reference counts of every chunk it uses, the versions and their
    manifests); it replaces nothing, so it returns ``None``. Every other operation is left to
    ``apply_object_put`` (``APPLY_ALONE``): those touch other keys, so they commute with the ones
    stored here (reference counts add up in any order). A chunk collected by GC during the write
    fails the whole run (``ConcurrentModification``): the committer then applies the operations
    one at a time, which refuses only the one that used it.
    """
    out: list[Any] = [APPLY_ALONE] * len(ops)
    per_key = Counter((op.version.bucket_id, op.version.key) for op in ops)
    by_bucket: dict[BucketId, list[int]] = {}
    for i, op in enumerate(ops):
        v = op.version
        if per_key[(v.bucket_id, v.key)] != 1:
            continue
        by_bucket.setdefault(v.bucket_id, []).append(i)
    fresh: list[ObjectVersion] = []
    new_chunks: list[ChunkRecord] = []
    refs: dict[DomainId, Counter[ChunkId]] = {}
    for bucket_id, indexes in by_bucket.items():
        taken = tx.latest_keys(bucket_id, [ops[i].version.key for i in indexes])
        if taken is None:
            for i in indexes:
                out[i] = Refused(NoSuchBucket(f"bucket {bucket_id} no longer exists"))
            continue
        for i in indexes:
            op = ops[i]
            if op.version.key in taken:
                continue  # replaces a version: apply_object_put
            conditions = op.doc.get("conditions")
            if conditions:
                try:
                    check_write_conditions(conditions, None)
                except DwhError as exc:
                    out[i] = Refused(exc)
                    continue
            fresh.append(op.version)
            domain_id = DomainId(op.doc["domain_id"])
            new_chunks.extend(chunk_from_doc(domain_id, cdoc) for cdoc in op.doc["new_chunks"])
            used = refs_of(op.version)
            if used:
                refs.setdefault(domain_id, Counter()).update(used)
            out[i] = None
    tx.insert_chunks(new_chunks)
    for domain_id, counts in refs.items():
        missing = tx.incref_many(domain_id, counts)
        if missing:
            raise ConcurrentModification(f"chunk {missing[0].hex()[:16]} was collected during the write; retry")
    tx.insert_new_versions(fresh)
    return out


def etag_matches(header: str, etag: str) -> bool:
    """RFC 7232 list of entity tags (quoted or not, ``*``) against a stored (unquoted) ETag."""
    for candidate in header.split(","):
        c = candidate.strip().removeprefix("W/")
        if c == "*" or c.strip('"') == etag:
            return True
    return False


def check_write_conditions(conditions: dict[str, str], current: ObjectVersion | None) -> None:
    """If-None-Match: * (create only) and If-Match (replace only that version) on a write."""
    if_none = conditions.get("if-none-match")
    if if_none is not None:
        if if_none.strip() != "*":
            raise InvalidInput("If-None-Match on a write supports only '*'")
        if current is not None and not current.is_delete_marker:
            raise PreconditionFailed("If-None-Match: an object exists under this key")
    if_match = conditions.get("if-match")
    if if_match is not None:
        if current is None or current.is_delete_marker:
            raise NoSuchKey("If-Match: no object under this key")
        if not etag_matches(if_match, current.etag):
            raise PreconditionFailed("If-Match: the object's ETag differs")


def apply_object_delete(tx: MetaTx, doc: dict[str, Any], replay: bool) -> ObjectVersion | None:
    """Permanently remove one version (or delete marker); if it was the latest, the next newest
    becomes the latest."""
    bucket_id = BucketId(doc["bucket_id"])
    at = datetime.fromisoformat(doc["at"])
    try:
        v = tx.get_version(bucket_id, doc["key"], VersionId(doc["version_id"]))
    except NoSuchKey:
        if replay:
            return None
        raise
    if not replay:
        check_removable(tx, v, at, bool(doc.get("bypass_governance", False)))
    return _drop_version(tx, DomainId(doc["domain_id"]), v, at, replay)


def apply_object_tags(tx: MetaTx, doc: dict[str, Any], replay: bool) -> None:
    """Replace the tag set of one version."""
    try:
        tx.set_version_tags(BucketId(doc["bucket_id"]), doc["key"], VersionId(doc["version_id"]), dict(doc["tags"]))
    except NoSuchKey:
        if not replay:
            raise


def apply_bucket_setting(tx: MetaTx, doc: dict[str, Any], replay: bool) -> None:
    """Put (``value`` a string) or delete (``value`` null) one per-bucket settings document."""
    bucket_id = BucketId(doc["bucket_id"])
    if tx.get_bucket_by_id(bucket_id) is None:
        if replay:
            return
        raise NoSuchBucket(f"bucket {bucket_id} no longer exists")
    if doc["value"] is None:
        tx.delete_bucket_setting(bucket_id, doc["name"])
    else:
        tx.put_bucket_setting(bucket_id, doc["name"], doc["value"])


def replay(tx: MetaTx, doc: dict[str, Any]) -> None:
    """Apply one journaled operation idempotently (catch-up and rebuild)."""
    op = doc.get("op")
    if op == "bucket.create":
        apply_bucket_create(tx, doc)
    elif op == "bucket.delete":
        apply_bucket_delete(tx, doc, replay=True)
    elif op == "object.put":
        apply_object_put(tx, doc, replay=True)
    elif op == "object.delete":
        apply_object_delete(tx, doc, replay=True)
    elif op == "object.tags":
        apply_object_tags(tx, doc, replay=True)
    elif op == "object.lock":
        apply_object_lock(tx, doc, replay=True)
    elif op == "bucket.setting":
        apply_bucket_setting(tx, doc, replay=True)
    elif isinstance(op, str) and op.startswith("iam."):
        from datawarehouse.service import iam_ops

        iam_ops.replay(tx, doc)
    elif isinstance(op, str) and op.startswith("multipart."):
        from datawarehouse.service import multipart  # multipart builds on this module

        multipart.replay(tx, doc)
    else:
        log.warning("journal: unknown operation %r skipped", op)
