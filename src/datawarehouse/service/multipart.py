"""Multipart uploads: parts stream in as chunks; completing stitches their manifests together.

A part's chunks are referenced by the part while the upload is open. Completing builds the
object's manifest by concatenating the chosen parts' manifests (offsets shifted) — no byte is
read or written again — and, in the same transaction, references the chunks from the new
version and releases the parts. Aborting releases the parts. Every step is a journaled operation
applied by one function, live and on replay.

UploadPartCopy references the source's chunks when the copied range starts and ends on chunk
boundaries (nothing is written; the bytes are read only when the part's MD5 is not the source's
ETag); any other range is read and written as new data, where dedup still finds whole chunks.

Quota (later): a part's bytes count against the bucket's quota when the part commits (the
``multipart.part`` apply is the place, like ``object.put``), and completion moves them from the
upload to the object without counting them twice.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from datawarehouse.engine.writer import ObjectWriter
from datawarehouse.errors import (
    ConcurrentModification,
    EntityTooLarge,
    EntityTooSmall,
    InvalidInput,
    InvalidPart,
    InvalidPartOrder,
    MetadataError,
    NoSuchBucket,
    NoSuchUpload,
)
from datawarehouse.ids import BucketId, ChunkId, DomainId
from datawarehouse.meta.repo import MetaTx
from datawarehouse.records import (
    BucketRecord,
    ChunkerParams,
    ChunkRef,
    ObjectVersion,
    PartRecord,
    StorageClass,
    UploadRecord,
)
from datawarehouse.service import catalog
from datawarehouse.service.naming import check_key
from datawarehouse.service.objectlock import LockRequest
from datawarehouse.service.parts import MAX_PARTS, layout_meta
from datawarehouse.service.warehouse import MAX_OBJECT_SIZE, MAX_PUT_SIZE, Warehouse

log = logging.getLogger(__name__)

_PAGE = 1000
_MAX_CHAR = "\U0010ffff"
MIN_PART_SIZE = 5 * 1024 * 1024  # every part but the last, as S3


@dataclass
class UploadsPage:
    uploads: list[UploadRecord] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    next_key_marker: str | None = None  # the last key or common prefix returned
    next_upload_id_marker: str | None = None


@dataclass(frozen=True)
class CompletedPart:
    part_number: int
    etag: str  # unquoted
    checksums: dict[str, str] = field(default_factory=dict)  # x-amz-checksum-<alg> -> base64 value


# The upload's own settings (checksum algorithm ...), kept in its system_meta under this prefix and
# not copied to the completed object.
UPLOAD_ONLY_PREFIX = "x-dwh-upload-"
# The object lock the upload asked for (a LockRequest document, JSON), applied at completion.
LOCK_KEY = UPLOAD_ONLY_PREFIX + "object-lock"

# What the completed object's checksums are made of (the S3 adapter knows the algorithms).
ObjectChecksums = Callable[[UploadRecord, list[PartRecord]], dict[str, str]]


# --- documents ---------------------------------------------------------------------------------------


def _upload_doc(u: UploadRecord) -> dict[str, Any]:
    return {
        "upload_id": u.upload_id,
        "bucket_id": u.bucket_id,
        "key": u.key,
        "created_at": u.created_at.isoformat(),
        "ec": [u.storage_class.k, u.storage_class.m],
        "chunker": [u.chunker.min_size, u.chunker.avg_size, u.chunker.max_size],
        "content_type": u.content_type,
        "user_meta": u.user_meta,
        "system_meta": u.system_meta,
        "tags": u.tags,
    }


def _upload_from(d: dict[str, Any]) -> UploadRecord:
    return UploadRecord(
        upload_id=d["upload_id"],
        bucket_id=BucketId(d["bucket_id"]),
        key=d["key"],
        created_at=datetime.fromisoformat(d["created_at"]),
        storage_class=StorageClass(*d["ec"]),
        chunker=ChunkerParams(*d["chunker"]),
        content_type=d["content_type"],
        user_meta=dict(d["user_meta"]),
        system_meta=dict(d["system_meta"]),
        tags=dict(d["tags"]),
    )


def _part_doc(p: PartRecord) -> dict[str, Any]:
    return {
        "upload_id": p.upload_id,
        "part_number": p.part_number,
        "size": p.size,
        "etag": p.etag,
        "created_at": p.created_at.isoformat(),
        "checksums": p.checksums,
        "chunks": [[c.chunk_id.hex(), c.offset, c.plain_size] for c in p.chunks],
    }


def _part_from(d: dict[str, Any]) -> PartRecord:
    return PartRecord(
        upload_id=d["upload_id"],
        part_number=int(d["part_number"]),
        size=int(d["size"]),
        etag=d["etag"],
        created_at=datetime.fromisoformat(d["created_at"]),
        checksums=dict(d["checksums"]),
        chunks=tuple(ChunkRef(ChunkId(bytes.fromhex(h)), o, s) for h, o, s in d["chunks"]),
    )


def _refs(chunks: Iterable[ChunkRef]) -> Counter[ChunkId]:
    return Counter(c.chunk_id for c in chunks)


def _release(tx: MetaTx, domain_id: DomainId, parts: Iterable[PartRecord], at: datetime, replay: bool) -> None:
    for part in parts:
        for chunk_id, count in _refs(part.chunks).items():
            try:
                tx.decref(domain_id, chunk_id, count, at)
            except MetadataError:
                if not replay:
                    raise
                # Replay over a partial index (rebuild recomputes every count from the manifests).
                log.warning("journal: part chunk %s missing from the index", chunk_id.hex()[:16])


# --- apply (live and replay) -------------------------------------------------------------------------


def apply_create(tx: MetaTx, doc: dict[str, Any], replay: bool) -> None:
    upload = _upload_from(doc["upload"])
    if tx.get_bucket_by_id(upload.bucket_id) is None:
        if replay:
            return
        raise NoSuchBucket(f"bucket {upload.bucket_id} no longer exists")
    tx.create_upload(upload)


def apply_part(tx: MetaTx, doc: dict[str, Any], replay: bool) -> None:
    part = _part_from(doc["part"])
    domain_id = DomainId(doc["domain_id"])
    if tx.get_upload(part.upload_id) is None:
        if replay:
            return
        raise NoSuchUpload("the upload does not exist (completed or aborted)")
    if replay:
        existing = tx.get_part(part.upload_id, part.part_number)
        if existing is not None and existing.etag == part.etag and existing.created_at == part.created_at:
            return
    tx.insert_chunks([catalog.chunk_from_doc(domain_id, cdoc) for cdoc in doc["new_chunks"]])
    missing = tx.incref_many(domain_id, _refs(part.chunks))
    if missing and not replay:
        raise ConcurrentModification(f"chunk {missing[0].hex()[:16]} was collected during the upload; retry")
    replaced = tx.put_part(part)
    if replaced is not None:
        _release(tx, domain_id, [replaced], part.created_at, replay)


def apply_complete(tx: MetaTx, doc: dict[str, Any], replay: bool) -> ObjectVersion | None:
    """Insert the stitched version (replacing the key's current one) and release the upload."""
    version = catalog.version_from_doc(doc["version"])
    domain_id = DomainId(doc["domain_id"])
    upload_id = doc["upload_id"]
    upload = tx.get_upload(upload_id)
    if upload is None:
        if replay:
            return None
        raise NoSuchUpload("the upload does not exist (completed or aborted)")
    parts = {p.part_number: p for p in tx.get_parts(upload_id)}
    if not replay:
        check_parts(parts, [CompletedPart(n, e) for n, e in doc["parts"]])
    put_doc: dict[str, Any] = {
        "op": "object.put",
        "domain_id": domain_id,
        "replace": True,
        "conditions": doc.get("conditions", {}),
        "version": doc["version"],
        "new_chunks": [],
    }
    lock = upload.system_meta.get(LOCK_KEY)
    if lock and not replay:  # a replayed version carries the lock its commit decided
        put_doc["lock_request"] = json.loads(lock)
    stored = catalog.apply_object_put(tx, put_doc, replay)
    _release(tx, domain_id, tx.delete_upload(upload_id), version.created_at, replay)
    return stored if stored is not None else version


def apply_abort(tx: MetaTx, doc: dict[str, Any], replay: bool) -> None:
    upload_id = doc["upload_id"]
    if tx.get_upload(upload_id) is None:
        if replay:
            return
        raise NoSuchUpload("the upload does not exist (completed or aborted)")
    at = datetime.fromisoformat(doc["at"])
    _release(tx, DomainId(doc["domain_id"]), tx.delete_upload(upload_id), at, replay)


def replay(tx: MetaTx, doc: dict[str, Any]) -> None:
    {
        "multipart.create": apply_create,
        "multipart.part": apply_part,
        "multipart.complete": apply_complete,
        "multipart.abort": apply_abort,
    }[doc["op"]](tx, doc, True)


def check_parts(parts: dict[int, PartRecord], chosen: list[CompletedPart]) -> list[PartRecord]:
    """The parts a completion names, validated as S3 does."""
    if not chosen:
        raise InvalidInput("You must specify at least one part")
    out: list[PartRecord] = []
    last = 0
    for c in chosen:
        if c.part_number <= last:
            raise InvalidPartOrder("The list of parts was not in ascending order")
        last = c.part_number
        part = parts.get(c.part_number)
        if part is None or part.etag != c.etag.strip('"'):
            raise InvalidPart(f"part {c.part_number} was not uploaded or its ETag does not match")
        for name, value in c.checksums.items():
            if part.checksums.get(name, value) != value:
                raise InvalidPart(f"part {c.part_number}: its {name.removeprefix('x-amz-')} does not match")
        out.append(part)
    for part in out[:-1]:
        if part.size < MIN_PART_SIZE:
            raise EntityTooSmall(f"part {part.part_number} is {part.size} bytes; all parts but the last need 5 MiB")
    return out


def check_part_number(part_number: int) -> None:
    if not 1 <= part_number <= MAX_PARTS:
        raise InvalidInput(f"Part number must be an integer between 1 and {MAX_PARTS}, inclusive")


def whole_chunks(source: ObjectVersion, start: int, end: int) -> tuple[ChunkRef, ...] | None:
    """The source's chunks that exactly cover ``[start, end)``, offsets made relative to
    ``start``; ``None`` when the range cuts a chunk (or the source is inline, or empty)."""
    if source.inline_data is not None or start >= end:
        return None
    picked: list[ChunkRef] = []
    pos = start
    for c in source.chunks:  # ordered by offset
        if c.offset + c.plain_size <= start:
            continue
        if c.offset >= end:
            break
        if c.offset != pos or c.offset + c.plain_size > end:
            return None
        picked.append(ChunkRef(c.chunk_id, c.offset - start, c.plain_size))
        pos += c.plain_size
    return tuple(picked) if pos == end else None


def _is_md5(etag: str) -> bool:
    return len(etag) == 32 and all(ch in "0123456789abcdef" for ch in etag)


def multipart_etag(parts: list[PartRecord]) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    for part in parts:
        try:
            digest.update(binascii.unhexlify(part.etag))
        except (binascii.Error, ValueError) as exc:
            raise InvalidPart(f"part {part.part_number} has a malformed ETag") from exc
    return f"{digest.hexdigest()}-{len(parts)}"


# --- use cases -----------------------------------------------------------------------------------------


class Multipart:
    def __init__(self, wh: Warehouse) -> None:
        self.wh = wh

    def _bucket(self, name: str) -> BucketRecord:
        return self.wh.get_bucket(name)

    def create(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str = "application/octet-stream",
        user_meta: dict[str, str] | None = None,
        system_meta: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        storage_class: str | None = None,
        lock: LockRequest | None = None,
    ) -> UploadRecord:
        """``lock``: the retention and legal hold the completed version asks for (decided, like
        a PutObject's, when it is committed)."""
        check_key(key)
        rec = self._bucket(bucket)
        system_meta = dict(system_meta or {})
        if lock is not None and not lock.empty:
            system_meta[LOCK_KEY] = json.dumps(lock.to_doc(), sort_keys=True)
        engine = self.wh.engine
        upload = UploadRecord(
            upload_id=secrets.token_urlsafe(24),
            bucket_id=rec.bucket_id,
            key=key,
            created_at=engine.now(),
            storage_class=self.wh.storage_class_for(rec, storage_class),
            chunker=engine.config.chunker,
            content_type=content_type,
            user_meta=dict(user_meta or {}),
            system_meta=system_meta,
            tags=dict(tags or {}),
        )
        doc = {"op": "multipart.create", "upload": _upload_doc(upload)}
        engine.commit(lambda tx: apply_create(tx, doc, False), rec.domain_id, lambda: doc, announce=False)
        return upload

    def get_upload(self, bucket: str, key: str, upload_id: str) -> tuple[BucketRecord, UploadRecord]:
        rec = self._bucket(bucket)
        with self.wh.engine.repo.read() as tx:
            upload = tx.get_upload(upload_id)
        if upload is None or upload.bucket_id != rec.bucket_id or upload.key != key:
            raise NoSuchUpload(
                "The specified upload does not exist. The upload ID may be invalid, or the upload "
                "may have been aborted or completed."
            )
        return rec, upload

    def open_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, expected_size: int | None = None
    ) -> PartUpload:
        """A streaming write of one part: always chunked (never inline) with the upload's
        chunker parameters, so that completion can concatenate the parts' manifests.
        ``expected_size`` (announced by the client) is checked against the quota first."""
        check_part_number(part_number)
        rec, upload = self.get_upload(bucket, key, upload_id)
        self.wh.check_quota_room(rec, add_bytes=expected_size or 0, add_objects=0)
        writer = self.wh.engine.new_writer(
            rec.domain_id, upload.storage_class, MAX_PUT_SIZE, inline=False, chunker=upload.chunker, md5_etag=True
        )
        return PartUpload(self.wh, rec, upload, part_number, writer)

    def upload_part_copy(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        src_bucket: str,
        src_key: str,
        byte_range: tuple[int, int] | None = None,
        source_conditions: Callable[[ObjectVersion], None] | None = None,
        source_version_id: str | None = None,
    ) -> PartRecord:
        """A part made of ``[start, end)`` of the current version of ``src_bucket/src_key``
        (the whole object without a range). ``source_conditions`` may refuse the source."""
        check_part_number(part_number)
        rec, upload = self.get_upload(bucket, key, upload_id)
        src_rec, source = self.wh.lookup(src_bucket, src_key, source_version_id)
        if source_conditions is not None:
            source_conditions(source)
        start, end = byte_range if byte_range is not None else (0, source.size)
        if not 0 <= start <= end <= source.size:
            raise InvalidInput(f"Range specified is not valid for source object of size: {source.size}")
        if end - start > MAX_PUT_SIZE:
            raise EntityTooLarge(f"a copied part is at most {MAX_PUT_SIZE} bytes")
        engine = self.wh.engine
        shared = whole_chunks(source, start, end) if src_rec.domain_id == rec.domain_id else None
        if shared is None:
            part = self.open_part(bucket, key, upload_id, part_number)
            try:
                for piece in engine.read(src_rec.domain_id, source, start, end):
                    part.write(piece)
            except BaseException:
                part.abort()
                raise
            return part.finish()
        if start == 0 and end == source.size and _is_md5(source.etag):
            etag = source.etag
        else:
            md5 = hashlib.md5(usedforsecurity=False)
            for piece in engine.read(src_rec.domain_id, source, start, end):
                md5.update(piece)
            etag = md5.hexdigest()
        record = PartRecord(
            upload_id=upload.upload_id,
            part_number=part_number,
            size=end - start,
            etag=etag,
            created_at=engine.now(),
            chunks=shared,
        )
        return commit_part(self.wh, rec, record, [])

    def complete(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        chosen: list[CompletedPart],
        conditions: dict[str, str] | None = None,
        object_checksums: ObjectChecksums | None = None,
    ) -> ObjectVersion:
        """Stitch the chosen parts into the key's new version. ``conditions`` (If-Match /
        If-None-Match) hold atomically; ``object_checksums`` gives the object's checksum headers."""
        rec, upload = self.get_upload(bucket, key, upload_id)
        engine = self.wh.engine
        with engine.repo.read() as tx:
            parts = check_parts({p.part_number: p for p in tx.get_parts(upload_id)}, chosen)
        chunks: list[ChunkRef] = []
        offset = 0
        for part in parts:
            for c in part.chunks:
                chunks.append(ChunkRef(c.chunk_id, offset + c.offset, c.plain_size))
            offset += part.size
        if offset > MAX_OBJECT_SIZE:
            raise EntityTooLarge(f"the parts add up to {offset} bytes; an object is at most {MAX_OBJECT_SIZE}")
        system_meta = {k: v for k, v in upload.system_meta.items() if not k.startswith(UPLOAD_ONLY_PREFIX)}
        if object_checksums is not None:
            system_meta.update(object_checksums(upload, parts))
        system_meta.update(layout_meta(parts, system_meta))
        now = engine.now()
        version = ObjectVersion(
            bucket_id=rec.bucket_id,
            key=key,
            version_id=catalog.new_version_id(now),
            size=offset,
            etag=multipart_etag(parts),
            created_at=now,
            storage_class=upload.storage_class,
            chunker=upload.chunker,
            content_type=upload.content_type,
            user_meta=upload.user_meta,
            system_meta=system_meta,
            tags=upload.tags,
            chunks=tuple(chunks),
        )
        doc = {
            "op": "multipart.complete",
            "domain_id": rec.domain_id,
            "upload_id": upload_id,
            "parts": [[p.part_number, p.etag] for p in parts],
            "conditions": conditions or {},
            "version": catalog.version_to_doc(version),
        }
        stored: ObjectVersion = engine.commit(
            self.wh.within_quota(rec, lambda tx: apply_complete(tx, doc, False)),
            rec.domain_id,
            lambda: doc,
            announce=False,
        )
        return stored

    def abort(self, bucket: str, key: str, upload_id: str) -> None:
        rec, _ = self.get_upload(bucket, key, upload_id)
        doc = {
            "op": "multipart.abort",
            "domain_id": rec.domain_id,
            "upload_id": upload_id,
            "at": self.wh.engine.now().isoformat(),
        }
        self.wh.engine.commit(lambda tx: apply_abort(tx, doc, False), rec.domain_id, lambda: doc, announce=False)

    def list_parts(
        self, bucket: str, key: str, upload_id: str, after: int, limit: int
    ) -> tuple[UploadRecord, list[PartRecord]]:
        _, upload = self.get_upload(bucket, key, upload_id)
        with self.wh.engine.repo.read() as tx:
            return upload, tx.list_parts(upload_id, after, limit)

    def list_uploads(
        self, bucket: str, prefix: str, key_marker: str, upload_id_marker: str, limit: int
    ) -> list[UploadRecord]:
        rec = self._bucket(bucket)
        with self.wh.engine.repo.read() as tx:
            return tx.list_uploads(rec.bucket_id, prefix, key_marker, upload_id_marker, limit)

    def list_uploads_page(
        self, bucket: str, prefix: str, delimiter: str, key_marker: str, upload_id_marker: str, max_uploads: int
    ) -> UploadsPage:
        """ListMultipartUploads: up to ``max_uploads`` uploads and common prefixes (keys folded at
        ``delimiter`` after ``prefix``) after the markers; a folded prefix is skipped over whole."""
        out = UploadsPage()
        if max_uploads <= 0:
            out.is_truncated = bool(self.list_uploads(bucket, prefix, key_marker, upload_id_marker, 1))
            return out
        cursor_key, cursor_id = key_marker, upload_id_marker
        while True:
            batch = self.list_uploads(bucket, prefix, cursor_key, cursor_id, _PAGE)
            for u in batch:
                if len(out.uploads) + len(out.common_prefixes) >= max_uploads:
                    out.is_truncated = True
                    return out
                cursor_key, cursor_id = u.key, u.upload_id
                cut = u.key.find(delimiter, len(prefix)) if delimiter else -1
                if cut < 0:
                    out.uploads.append(u)
                    out.next_key_marker, out.next_upload_id_marker = u.key, u.upload_id
                    continue
                common = u.key[: cut + len(delimiter)]
                if common > key_marker:  # (a marker inside this prefix: it is not repeated)
                    out.common_prefixes.append(common)
                    out.next_key_marker, out.next_upload_id_marker = common, None
                cursor_key, cursor_id = common + _MAX_CHAR, ""  # past every key under it
                break
            else:
                if len(batch) < _PAGE:
                    return out


def commit_part(wh: Warehouse, bucket: BucketRecord, part: PartRecord, new_chunks: list[Any]) -> PartRecord:
    """Journal and apply one part: its chunks gain references, a part it replaces loses its (and
    the bucket must stay within its quota, unfinished parts counting)."""
    domain_id = bucket.domain_id
    doc = {
        "op": "multipart.part",
        "domain_id": domain_id,
        "part": _part_doc(part),
        "new_chunks": [catalog.chunk_to_doc(c) for c in new_chunks],
    }
    wh.engine.commit(
        wh.within_quota(bucket, lambda tx: apply_part(tx, doc, False)), domain_id, lambda: doc, announce=False
    )
    return part


class PartUpload:
    """A streaming write of one part; the part exists once ``finish`` returns."""

    def __init__(
        self, wh: Warehouse, bucket: BucketRecord, upload: UploadRecord, part_number: int, writer: ObjectWriter
    ) -> None:
        self._wh, self._bucket, self._upload, self._number, self._writer = wh, bucket, upload, part_number, writer

    def write(self, data: bytes | memoryview) -> None:
        try:
            self._writer.write(data)
        except InvalidInput as exc:  # over the part size limit
            self._writer.abort()
            raise EntityTooLarge(str(exc)) from exc

    def abort(self) -> None:
        self._writer.abort()

    def finish(self, checksums: dict[str, str] | None = None) -> PartRecord:
        engine = self._wh.engine
        data = self._writer.finish()
        part = PartRecord(
            upload_id=self._upload.upload_id,
            part_number=self._number,
            size=data.size,
            etag=data.etag,
            created_at=engine.now(),
            chunks=data.chunks if data.size else (),
            checksums=dict(checksums or {}),
        )
        return commit_part(self._wh, self._bucket, part, data.new_chunks)
