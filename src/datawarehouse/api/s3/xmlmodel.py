"""The values S3 XML bodies carry, in and out, as frozen records named after their XML documents.

Parsers (``xml``) produce the request-side records; renderers (``xmlrender``) take the
response-side ones. Handlers build these from service results, so neither side of the XML code
ever sees a service object. ETags are stored bare (no surrounding quotes); renderers add them.
Instants are aware UTC datetimes named ``*_at``; sizes are ints named ``*_size``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

S3_NAMESPACE: Final = "http://s3.amazonaws.com/doc/2006-03-01/"

# --- shared ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Owner:
    id: str
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class Checksums:
    """Base64 additional checksums as S3 reports them (``ChecksumCRC32`` ...), each optional."""

    crc32: str | None = None
    crc32c: str | None = None
    crc64nvme: str | None = None
    sha1: str | None = None
    sha256: str | None = None
    checksum_type: str | None = None  # FULL_OBJECT or COMPOSITE, where S3 reports it


# --- request bodies (parsed) -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectIdentifier:
    key: str
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    objects: tuple[ObjectIdentifier, ...]
    quiet: bool = False


@dataclass(frozen=True, slots=True)
class CompletedPart:
    part_number: int
    etag: str
    checksums: Checksums = field(default_factory=Checksums)


@dataclass(frozen=True, slots=True)
class Tag:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class CorsRule:
    allowed_methods: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_seconds: int | None = None
    id: str | None = None


# --- response bodies (rendered) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BucketSummary:
    name: str
    created_at: datetime
    region: str | None = None


@dataclass(frozen=True, slots=True)
class ListAllMyBucketsResult:
    owner: Owner
    buckets: tuple[BucketSummary, ...]
    continuation_token: str | None = None
    prefix: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectSummary:
    key: str
    modified_at: datetime
    etag: str
    object_size: int
    storage_class: str = "STANDARD"
    owner: Owner | None = None
    checksum_algorithms: tuple[str, ...] = ()
    checksum_type: str | None = None


@dataclass(frozen=True, slots=True)
class ListBucketResult:
    """ListObjects (v1). ``encoding_type="url"`` url-encodes keys, prefixes, delimiter, markers."""

    bucket: str
    prefix: str
    max_keys: int
    is_truncated: bool
    contents: tuple[ObjectSummary, ...] = ()
    common_prefixes: tuple[str, ...] = ()
    marker: str = ""
    next_marker: str | None = None
    delimiter: str | None = None
    encoding_type: str | None = None


@dataclass(frozen=True, slots=True)
class ListBucketResultV2:
    """ListObjectsV2. ``KeyCount`` is derived: contents plus common prefixes."""

    bucket: str
    prefix: str
    max_keys: int
    is_truncated: bool
    contents: tuple[ObjectSummary, ...] = ()
    common_prefixes: tuple[str, ...] = ()
    delimiter: str | None = None
    continuation_token: str | None = None
    next_continuation_token: str | None = None
    start_after: str | None = None
    encoding_type: str | None = None


@dataclass(frozen=True, slots=True)
class InitiateMultipartUploadResult:
    bucket: str
    key: str
    upload_id: str


@dataclass(frozen=True, slots=True)
class CompleteMultipartUploadResult:
    location: str
    bucket: str
    key: str
    etag: str
    checksums: Checksums = field(default_factory=Checksums)


@dataclass(frozen=True, slots=True)
class PartSummary:
    part_number: int
    modified_at: datetime
    etag: str
    part_size: int
    checksums: Checksums = field(default_factory=Checksums)


@dataclass(frozen=True, slots=True)
class ListPartsResult:
    bucket: str
    key: str
    upload_id: str
    part_number_marker: int
    max_parts: int
    is_truncated: bool
    parts: tuple[PartSummary, ...] = ()
    next_part_number_marker: int | None = None
    initiator: Owner | None = None
    owner: Owner | None = None
    storage_class: str = "STANDARD"
    checksum_algorithm: str | None = None
    checksum_type: str | None = None
    encoding_type: str | None = None


@dataclass(frozen=True, slots=True)
class UploadSummary:
    key: str
    upload_id: str
    initiated_at: datetime
    initiator: Owner | None = None
    owner: Owner | None = None
    storage_class: str = "STANDARD"
    checksum_algorithm: str | None = None
    checksum_type: str | None = None


@dataclass(frozen=True, slots=True)
class ListMultipartUploadsResult:
    bucket: str
    max_uploads: int
    is_truncated: bool
    uploads: tuple[UploadSummary, ...] = ()
    common_prefixes: tuple[str, ...] = ()
    prefix: str | None = None
    delimiter: str | None = None
    key_marker: str = ""
    upload_id_marker: str = ""
    next_key_marker: str | None = None
    next_upload_id_marker: str | None = None
    encoding_type: str | None = None


@dataclass(frozen=True, slots=True)
class CopyResult:
    """Body of CopyObjectResult and of CopyPartResult (same fields, different root)."""

    modified_at: datetime
    etag: str
    checksums: Checksums = field(default_factory=Checksums)


@dataclass(frozen=True, slots=True)
class DeletedObject:
    key: str
    version_id: str | None = None
    delete_marker: bool | None = None
    delete_marker_version_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteError:
    key: str
    code: str
    message: str
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    deleted: tuple[DeletedObject, ...] = ()
    errors: tuple[DeleteError, ...] = ()


@dataclass(frozen=True, slots=True)
class ObjectPart:
    """A part of a multipart object in GetObjectAttributes (listed only with its checksum)."""

    part_number: int
    part_size: int
    checksums: Checksums


@dataclass(frozen=True, slots=True)
class ObjectParts:
    """GetObjectAttributes' ``ObjectParts``: the count always; the paging fields and the parts
    only when the parts are listed (the object has per-part checksums)."""

    total_parts_count: int
    part_number_marker: int | None = None
    next_part_number_marker: int | None = None
    max_parts: int | None = None
    is_truncated: bool | None = None
    parts: tuple[ObjectPart, ...] = ()


@dataclass(frozen=True, slots=True)
class ObjectAttributes:
    """GetObjectAttributesResponse: each field present only when it was asked for (and, for
    ``checksums`` and ``object_parts``, when the object has them)."""

    etag: str | None = None
    checksums: Checksums | None = None
    object_parts: ObjectParts | None = None
    storage_class: str | None = None
    object_size: int | None = None
