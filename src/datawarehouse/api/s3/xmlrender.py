"""Render S3 response documents from ``xmlmodel`` records with xml.etree (building, never parsing).

Each renderer lists its elements as ``(tag, value)`` rows in S3's documented order; ``None`` rows
are left out, so optional elements need no branches. Every document carries the XML declaration
and the S3 namespace on its root (error documents excepted, as in S3). Text that XML 1.0 cannot
carry (control characters, lone surrogates) is replaced by U+FFFD so the output always parses;
clients that store such keys must list with ``EncodingType=url``, exactly as S3 advises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import quote_plus
from xml.etree.ElementTree import Element, SubElement, tostring

from datawarehouse.api.s3.xmlmodel import (
    S3_NAMESPACE,
    Checksums,
    CompleteMultipartUploadResult,
    CopyResult,
    CorsRule,
    DeleteResult,
    InitiateMultipartUploadResult,
    ListAllMyBucketsResult,
    ListBucketResult,
    ListBucketResultV2,
    ListMultipartUploadsResult,
    ListPartsResult,
    ObjectSummary,
    Owner,
    PartSummary,
    Tag,
    UploadSummary,
)

Value = str | int | bool | datetime | None
Row = tuple[str, Value]

_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# --- helpers ---------------------------------------------------------------------------------------


def to_document(root: Element) -> bytes:
    """Serialise ``root`` as a UTF-8 document with declaration, making every text XML-safe."""
    for element in root.iter():
        if element.text:
            element.text = _NOT_XML_CHAR.sub("\ufffd", element.text)
    return _XML_DECLARATION + tostring(root, encoding="unicode").encode("utf-8")


def s3_root(tag: str) -> Element:
    """A root element in the S3 namespace (declared as the default namespace, no prefixes)."""
    return Element(tag, xmlns=S3_NAMESPACE)


def add_rows(parent: Element, rows: Iterable[Row]) -> None:
    for tag, value in rows:
        if value is not None:
            SubElement(parent, tag).text = _text(value)


def timestamp(moment: datetime) -> str:
    """S3's timestamp form: ISO 8601, UTC, milliseconds, ``Z``."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def quote_etag(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def url_encode(value: str) -> str:
    """EncodingType=url as S3 does it: form encoding (space as ``+``), ``/`` kept."""
    return quote_plus(value, safe="/", errors="surrogateescape")


def _text(value: str | int | bool | datetime) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return timestamp(value)
    return str(value)


def _maybe_encode(value: str | None, encoding_type: str | None) -> str | None:
    if value is None or encoding_type != "url":
        return value
    return url_encode(value)


def _checksum_rows(checksums: Checksums) -> list[Row]:
    return [
        ("ChecksumCRC32", checksums.crc32),
        ("ChecksumCRC32C", checksums.crc32c),
        ("ChecksumCRC64NVME", checksums.crc64nvme),
        ("ChecksumSHA1", checksums.sha1),
        ("ChecksumSHA256", checksums.sha256),
        ("ChecksumType", checksums.checksum_type),
    ]


def _add_owner(parent: Element, tag: str, owner: Owner | None) -> None:
    if owner is not None:
        add_rows(SubElement(parent, tag), [("ID", owner.id), ("DisplayName", owner.display_name)])


def _add_common_prefixes(parent: Element, prefixes: Iterable[str], encoding_type: str | None) -> None:
    for prefix in prefixes:
        add_rows(SubElement(parent, "CommonPrefixes"), [("Prefix", _maybe_encode(prefix, encoding_type))])


def _add_object(parent: Element, item: ObjectSummary, encoding_type: str | None) -> None:
    contents = SubElement(parent, "Contents")
    add_rows(
        contents,
        [
            ("Key", _maybe_encode(item.key, encoding_type)),
            ("LastModified", item.modified_at),
            ("ETag", quote_etag(item.etag)),
        ],
    )
    add_rows(contents, [("ChecksumAlgorithm", algorithm) for algorithm in item.checksum_algorithms])
    add_rows(contents, [("ChecksumType", item.checksum_type), ("Size", item.object_size)])
    _add_owner(contents, "Owner", item.owner)
    add_rows(contents, [("StorageClass", item.storage_class)])


# --- buckets and listings --------------------------------------------------------------------------


def render_list_all_my_buckets(result: ListAllMyBucketsResult) -> bytes:
    root = s3_root("ListAllMyBucketsResult")
    _add_owner(root, "Owner", result.owner)
    buckets = SubElement(root, "Buckets")
    for bucket in result.buckets:
        add_rows(
            SubElement(buckets, "Bucket"),
            [("Name", bucket.name), ("CreationDate", bucket.created_at), ("BucketRegion", bucket.region)],
        )
    add_rows(root, [("ContinuationToken", result.continuation_token), ("Prefix", result.prefix)])
    return to_document(root)


def render_list_objects_v1(result: ListBucketResult) -> bytes:
    enc = result.encoding_type
    root = s3_root("ListBucketResult")
    add_rows(
        root,
        [
            ("Name", result.bucket),
            ("Prefix", _maybe_encode(result.prefix, enc)),
            ("Marker", _maybe_encode(result.marker, enc)),
            ("NextMarker", _maybe_encode(result.next_marker, enc)),
            ("MaxKeys", result.max_keys),
            ("Delimiter", _maybe_encode(result.delimiter, enc)),
            ("IsTruncated", result.is_truncated),
            ("EncodingType", enc),
        ],
    )
    for item in result.contents:
        _add_object(root, item, enc)
    _add_common_prefixes(root, result.common_prefixes, enc)
    return to_document(root)


def render_list_objects_v2(result: ListBucketResultV2) -> bytes:
    enc = result.encoding_type
    root = s3_root("ListBucketResult")
    add_rows(
        root,
        [
            ("Name", result.bucket),
            ("Prefix", _maybe_encode(result.prefix, enc)),
            ("ContinuationToken", result.continuation_token),
            ("NextContinuationToken", result.next_continuation_token),
            ("StartAfter", _maybe_encode(result.start_after, enc)),
            ("KeyCount", len(result.contents) + len(result.common_prefixes)),
            ("MaxKeys", result.max_keys),
            ("Delimiter", _maybe_encode(result.delimiter, enc)),
            ("IsTruncated", result.is_truncated),
            ("EncodingType", enc),
        ],
    )
    for item in result.contents:
        _add_object(root, item, enc)
    _add_common_prefixes(root, result.common_prefixes, enc)
    return to_document(root)


# --- multipart -------------------------------------------------------------------------------------


def render_initiate_multipart_upload(result: InitiateMultipartUploadResult) -> bytes:
    root = s3_root("InitiateMultipartUploadResult")
    add_rows(root, [("Bucket", result.bucket), ("Key", result.key), ("UploadId", result.upload_id)])
    return to_document(root)


def render_complete_multipart_upload(result: CompleteMultipartUploadResult) -> bytes:
    root = s3_root("CompleteMultipartUploadResult")
    add_rows(
        root,
        [
            ("Location", result.location),
            ("Bucket", result.bucket),
            ("Key", result.key),
            ("ETag", quote_etag(result.etag)),
            *_checksum_rows(result.checksums),
        ],
    )
    return to_document(root)


def _add_part(parent: Element, part: PartSummary) -> None:
    add_rows(
        SubElement(parent, "Part"),
        [
            ("PartNumber", part.part_number),
            ("LastModified", part.modified_at),
            ("ETag", quote_etag(part.etag)),
            ("Size", part.part_size),
            *_checksum_rows(part.checksums),
        ],
    )


def render_list_parts(result: ListPartsResult) -> bytes:
    enc = result.encoding_type
    root = s3_root("ListPartsResult")
    add_rows(
        root,
        [
            ("Bucket", result.bucket),
            ("Key", _maybe_encode(result.key, enc)),
            ("UploadId", result.upload_id),
            ("PartNumberMarker", result.part_number_marker),
            ("NextPartNumberMarker", result.next_part_number_marker),
            ("MaxParts", result.max_parts),
            ("IsTruncated", result.is_truncated),
            ("EncodingType", enc),
        ],
    )
    for part in result.parts:
        _add_part(root, part)
    _add_owner(root, "Initiator", result.initiator)
    _add_owner(root, "Owner", result.owner)
    add_rows(
        root,
        [
            ("StorageClass", result.storage_class),
            ("ChecksumAlgorithm", result.checksum_algorithm),
            ("ChecksumType", result.checksum_type),
        ],
    )
    return to_document(root)


def _add_upload(parent: Element, upload: UploadSummary, encoding_type: str | None) -> None:
    element = SubElement(parent, "Upload")
    add_rows(element, [("Key", _maybe_encode(upload.key, encoding_type)), ("UploadId", upload.upload_id)])
    _add_owner(element, "Initiator", upload.initiator)
    _add_owner(element, "Owner", upload.owner)
    add_rows(
        element,
        [
            ("StorageClass", upload.storage_class),
            ("Initiated", upload.initiated_at),
            ("ChecksumAlgorithm", upload.checksum_algorithm),
            ("ChecksumType", upload.checksum_type),
        ],
    )


def render_list_multipart_uploads(result: ListMultipartUploadsResult) -> bytes:
    enc = result.encoding_type
    root = s3_root("ListMultipartUploadsResult")
    add_rows(
        root,
        [
            ("Bucket", result.bucket),
            ("KeyMarker", _maybe_encode(result.key_marker, enc)),
            ("UploadIdMarker", result.upload_id_marker),
            ("NextKeyMarker", _maybe_encode(result.next_key_marker, enc)),
            ("NextUploadIdMarker", result.next_upload_id_marker),
            ("Delimiter", _maybe_encode(result.delimiter, enc)),
            ("Prefix", _maybe_encode(result.prefix, enc)),
            ("MaxUploads", result.max_uploads),
            ("IsTruncated", result.is_truncated),
            ("EncodingType", enc),
        ],
    )
    for upload in result.uploads:
        _add_upload(root, upload, enc)
    _add_common_prefixes(root, result.common_prefixes, enc)
    return to_document(root)


# --- copy and delete -------------------------------------------------------------------------------


def _render_copy(tag: str, result: CopyResult) -> bytes:
    root = s3_root(tag)
    add_rows(
        root,
        [
            ("LastModified", result.modified_at),
            ("ETag", quote_etag(result.etag)),
            *_checksum_rows(result.checksums),
        ],
    )
    return to_document(root)


def render_copy_object_result(result: CopyResult) -> bytes:
    return _render_copy("CopyObjectResult", result)


def render_copy_part_result(result: CopyResult) -> bytes:
    return _render_copy("CopyPartResult", result)


def render_delete_result(result: DeleteResult) -> bytes:
    root = s3_root("DeleteResult")
    for deleted in result.deleted:
        add_rows(
            SubElement(root, "Deleted"),
            [
                ("Key", deleted.key),
                ("VersionId", deleted.version_id),
                ("DeleteMarker", deleted.delete_marker),
                ("DeleteMarkerVersionId", deleted.delete_marker_version_id),
            ],
        )
    for error in result.errors:
        add_rows(
            SubElement(root, "Error"),
            [
                ("Key", error.key),
                ("VersionId", error.version_id),
                ("Code", error.code),
                ("Message", error.message),
            ],
        )
    return to_document(root)


# --- bucket subresources ---------------------------------------------------------------------------


def render_post_response(location: str, bucket: str, key: str, etag: str) -> bytes:
    """The body of a POST-policy upload answered with success_action_status 201."""
    root = Element("PostResponse")
    add_rows(root, [("Location", location), ("Bucket", bucket), ("Key", key), ("ETag", f'"{etag}"')])
    return to_document(root)


def render_location_constraint(region: str | None) -> bytes:
    """``None`` or ``""`` renders the empty element S3 uses for us-east-1."""
    root = s3_root("LocationConstraint")
    root.text = region or None
    return to_document(root)


def render_tagging(tags: Iterable[Tag]) -> bytes:
    root = s3_root("Tagging")
    tag_set = SubElement(root, "TagSet")
    for tag in tags:
        add_rows(SubElement(tag_set, "Tag"), [("Key", tag.key), ("Value", tag.value)])
    return to_document(root)


def render_cors_configuration(rules: Iterable[CorsRule]) -> bytes:
    root = s3_root("CORSConfiguration")
    for rule in rules:
        element = SubElement(root, "CORSRule")
        add_rows(element, [("ID", rule.id)])
        add_rows(element, [("AllowedHeader", v) for v in rule.allowed_headers])
        add_rows(element, [("AllowedMethod", v) for v in rule.allowed_methods])
        add_rows(element, [("AllowedOrigin", v) for v in rule.allowed_origins])
        add_rows(element, [("ExposeHeader", v) for v in rule.expose_headers])
        add_rows(element, [("MaxAgeSeconds", rule.max_age_seconds)])
    return to_document(root)
