"""Parse the XML request bodies S3 accepts — untrusted input, so defensively, and only here.

Every body goes through ``parse_document``: size-checked *before* any parsing (the caller hands
bytes it already bounded by Content-Length), then parsed by defusedxml with DTDs, entity
declarations and external references forbidden, so nothing is ever expanded or fetched. Element
names are matched by local name, so documents with or without the S3 namespace both parse (SDKs
differ). Unknown elements are ignored, as S3 does; structural errors become ``MalformedXML``;
semantic limits use the code S3 uses for them (``InvalidTag``, ``InvalidPartOrder``...).
Renderers live in ``xmlrender``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException

from datawarehouse.api.numbers import whole_number
from datawarehouse.api.s3.errors import S3Error, invalid_part_number, malformed_xml, s3_error
from datawarehouse.api.s3.http import header_value_ok
from datawarehouse.api.s3.xmlmodel import (
    Checksums,
    CompletedPart,
    CorsRule,
    DeleteRequest,
    ObjectIdentifier,
    Tag,
)

DEFAULT_BODY_LIMIT: Final = 1024 * 1024
MAX_DELETE_OBJECTS: Final = 1000
MAX_PARTS: Final = 10_000
MAX_OBJECT_TAGS: Final = 10
MAX_BUCKET_TAGS: Final = 50
MAX_TAG_KEY_CHARS: Final = 128
MAX_TAG_VALUE_CHARS: Final = 256
MAX_CORS_RULES: Final = 100
CORS_METHODS: Final = frozenset({"GET", "PUT", "POST", "DELETE", "HEAD"})


# --- the one door for untrusted XML ----------------------------------------------------------------


def parse_document(body: bytes, root_name: str, *, limit: int = DEFAULT_BODY_LIMIT) -> Element:
    """Parse ``body`` safely and check its root's local name; refuse oversize bodies unparsed."""
    if len(body) > limit:
        raise malformed_xml(f"The XML document is larger than the {limit} bytes allowed.")
    if not body.strip():
        raise malformed_xml()
    try:
        root: Element = safe_et.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError, LookupError) as exc:
        raise malformed_xml() from exc
    if local_name(root) != root_name:
        raise malformed_xml()
    return root


def local_name(element: Element) -> str:
    tag = element.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def children(parent: Element, name: str) -> list[Element]:
    return [child for child in parent if local_name(child) == name]


def child_text(parent: Element, name: str) -> str | None:
    """Text of the optional single child ``name`` (``""`` when empty); repeated -> MalformedXML."""
    found = children(parent, name)
    if len(found) > 1:
        raise malformed_xml()
    return (found[0].text or "") if found else None


def required_text(parent: Element, name: str) -> str:
    """Text of the single child ``name``, which must be there exactly once."""
    found = children(parent, name)
    if len(found) != 1:
        raise malformed_xml()
    return found[0].text or ""


def _optional_stripped(parent: Element, name: str) -> str | None:
    text = child_text(parent, name)
    return (text.strip() or None) if text is not None else None


def _texts(parent: Element, name: str) -> tuple[str, ...]:
    return tuple((child.text or "").strip() for child in children(parent, name))


def parse_int(text: str, error: Callable[[], S3Error]) -> int:
    number = whole_number(text.strip(), signed=True)
    if number is None:
        raise error()
    return number


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise malformed_xml()
    return lowered == "true"


# --- CreateBucket ----------------------------------------------------------------------------------


def parse_create_bucket_configuration(body: bytes, *, limit: int = DEFAULT_BODY_LIMIT) -> str | None:
    """The LocationConstraint asked for; an empty body (the common case) means none."""
    if not body.strip():
        return None
    root = parse_document(body, "CreateBucketConfiguration", limit=limit)
    return _optional_stripped(root, "LocationConstraint")


# --- DeleteObjects ---------------------------------------------------------------------------------


def parse_delete(body: bytes, *, limit: int = DEFAULT_BODY_LIMIT) -> DeleteRequest:
    """Keys are kept byte-exact (no stripping): whitespace is legal in S3 keys."""
    root = parse_document(body, "Delete", limit=limit)
    elements = children(root, "Object")
    if not elements or len(elements) > MAX_DELETE_OBJECTS:
        raise malformed_xml()
    objects = []
    for element in elements:
        key = required_text(element, "Key")
        if not key:
            raise malformed_xml()
        objects.append(ObjectIdentifier(key=key, version_id=_optional_stripped(element, "VersionId")))
    quiet = child_text(root, "Quiet")
    return DeleteRequest(objects=tuple(objects), quiet=_bool(quiet) if quiet is not None else False)


# --- CompleteMultipartUpload -----------------------------------------------------------------------


def _part_number_error() -> S3Error:
    return invalid_part_number()


def _part_checksums(part: Element) -> Checksums:
    return Checksums(
        crc32=_optional_stripped(part, "ChecksumCRC32"),
        crc32c=_optional_stripped(part, "ChecksumCRC32C"),
        crc64nvme=_optional_stripped(part, "ChecksumCRC64NVME"),
        sha1=_optional_stripped(part, "ChecksumSHA1"),
        sha256=_optional_stripped(part, "ChecksumSHA256"),
    )


def parse_complete_multipart_upload(body: bytes, *, limit: int = DEFAULT_BODY_LIMIT) -> tuple[CompletedPart, ...]:
    """Parts in request order, strictly ascending (else InvalidPartOrder); ETags unquoted."""
    root = parse_document(body, "CompleteMultipartUpload", limit=limit)
    elements = children(root, "Part")
    if not elements or len(elements) > MAX_PARTS:
        raise malformed_xml()
    parts: list[CompletedPart] = []
    for element in elements:
        number = parse_int(required_text(element, "PartNumber"), _part_number_error)
        if not 1 <= number <= MAX_PARTS:
            raise _part_number_error()
        if parts and number <= parts[-1].part_number:
            raise s3_error("InvalidPartOrder")
        etag = required_text(element, "ETag").strip().strip('"')
        parts.append(CompletedPart(part_number=number, etag=etag, checksums=_part_checksums(element)))
    return tuple(parts)


# --- Tagging ---------------------------------------------------------------------------------------


def _tag_char_ok(char: str) -> bool:
    # S3's documented set: letters, digits and spaces in any script, plus + - = . _ : / @
    return char.isalnum() or char.isspace() or char in "+-=._:/@"


def check_tag(key: str, value: str) -> None:
    if not key or len(key) > MAX_TAG_KEY_CHARS:
        raise s3_error("InvalidTag", f"The TagKey you have provided is invalid (1 to {MAX_TAG_KEY_CHARS} characters).")
    if len(value) > MAX_TAG_VALUE_CHARS:
        raise s3_error("InvalidTag", f"The TagValue you have provided is too long, max {MAX_TAG_VALUE_CHARS}.")
    if key.lower().startswith("aws:"):
        raise s3_error("InvalidTag", "Your TagKey cannot be prefixed with aws:")
    if not all(map(_tag_char_ok, key)):
        raise s3_error("InvalidTag", "The TagKey you have provided is invalid.")
    if not all(map(_tag_char_ok, value)):
        raise s3_error("InvalidTag", "The TagValue you have provided is invalid.")


def parse_tagging(body: bytes, *, limit: int = DEFAULT_BODY_LIMIT, max_tags: int = MAX_OBJECT_TAGS) -> tuple[Tag, ...]:
    """A TagSet under S3's limits: ``max_tags`` (10 per object, 50 per bucket), unique keys."""
    root = parse_document(body, "Tagging", limit=limit)
    tag_sets = children(root, "TagSet")
    if len(tag_sets) != 1:
        raise malformed_xml()
    elements = children(tag_sets[0], "Tag")
    if len(elements) > max_tags:
        raise s3_error("InvalidTag", f"Object tags cannot be greater than {max_tags}")
    tags: list[Tag] = []
    seen: set[str] = set()
    for element in elements:
        tag = Tag(key=required_text(element, "Key"), value=required_text(element, "Value"))
        check_tag(tag.key, tag.value)
        if tag.key in seen:
            raise s3_error("InvalidTag", "Cannot provide multiple Tags with the same key")
        seen.add(tag.key)
        tags.append(tag)
    return tuple(tags)


# --- CORS ------------------------------------------------------------------------------------------


def _check_wildcards(values: tuple[str, ...], what: str) -> None:
    for value in values:
        if value.count("*") > 1:
            raise s3_error("InvalidRequest", f'{what} "{value[:64]}" can not have more than one wildcard.')


def _cors_rule(element: Element) -> CorsRule:
    methods = _texts(element, "AllowedMethod")
    origins = _texts(element, "AllowedOrigin")
    if not methods or not origins:
        raise malformed_xml()
    for method in methods:
        if method not in CORS_METHODS:
            raise s3_error(
                "InvalidRequest",
                f"Found unsupported HTTP method in CORS config. Unsupported method is {method[:16]}",
            )
    headers = _texts(element, "AllowedHeader")
    _check_wildcards(origins, "AllowedOrigin")
    _check_wildcards(headers, "AllowedHeader")
    max_age = child_text(element, "MaxAgeSeconds")
    rule_id = child_text(element, "ID")
    if rule_id is not None and len(rule_id) > 255:
        raise malformed_xml()
    age = parse_int(max_age, malformed_xml) if max_age is not None else None
    if age is not None and age < 0:
        raise malformed_xml()
    exposed = _texts(element, "ExposeHeader")
    for name in exposed:  # sent back in Access-Control-Expose-Headers
        if not header_value_ok(name):
            raise s3_error("InvalidRequest", "ExposeHeader: a header name cannot hold control characters")
    return CorsRule(
        allowed_methods=methods,
        allowed_origins=origins,
        allowed_headers=headers,
        expose_headers=exposed,
        max_age_seconds=age,
        id=rule_id,
    )


def parse_cors_configuration(body: bytes, *, limit: int = DEFAULT_BODY_LIMIT) -> tuple[CorsRule, ...]:
    root = parse_document(body, "CORSConfiguration", limit=limit)
    elements = children(root, "CORSRule")
    if not elements or len(elements) > MAX_CORS_RULES:
        raise malformed_xml()
    return tuple(_cors_rule(element) for element in elements)


# --- bucket encryption -----------------------------------------------------------------------------


def parse_encryption_configuration(body: bytes, *, limit: int = DEFAULT_BODY_LIMIT) -> tuple[str, str | None, bool]:
    """A ServerSideEncryptionConfiguration: one ``Rule`` with its default encryption. Returns the
    SSEAlgorithm, the KMSMasterKeyID (or ``None``) and BucketKeyEnabled (absent: false)."""
    root = parse_document(body, "ServerSideEncryptionConfiguration", limit=limit)
    rules = children(root, "Rule")
    if len(rules) != 1:
        raise malformed_xml()
    defaults = children(rules[0], "ApplyServerSideEncryptionByDefault")
    if len(defaults) != 1:
        raise malformed_xml()
    algorithm = required_text(defaults[0], "SSEAlgorithm").strip()
    if not algorithm:
        raise malformed_xml()
    bucket_key = child_text(rules[0], "BucketKeyEnabled")
    return algorithm, _optional_stripped(defaults[0], "KMSMasterKeyID"), bucket_key is not None and _bool(bucket_key)


# --- public access blocks and ownership controls --------------------------------------------------

PUBLIC_ACCESS_BLOCK_FLAGS: Final = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


def parse_public_access_block(body: bytes, *, limit: int = DEFAULT_BODY_LIMIT) -> dict[str, bool]:
    """A PublicAccessBlockConfiguration: each of the four flags, false when absent."""
    root = parse_document(body, "PublicAccessBlockConfiguration", limit=limit)
    flags: dict[str, bool] = {}
    for name in PUBLIC_ACCESS_BLOCK_FLAGS:
        text = child_text(root, name)
        flags[name] = text is not None and _bool(text)
    return flags


def parse_ownership_controls(body: bytes, *, limit: int = DEFAULT_BODY_LIMIT) -> str:
    """An OwnershipControls document: its one Rule's ObjectOwnership, as written (the caller
    checks the value)."""
    root = parse_document(body, "OwnershipControls", limit=limit)
    rules = children(root, "Rule")
    if len(rules) != 1:
        raise malformed_xml()
    return required_text(rules[0], "ObjectOwnership").strip()


# --- bucket features this server does not have (handlers/unconfigured.py) -------------------------


def parse_feature_value(body: bytes, root_name: str, field: str, *, limit: int = DEFAULT_BODY_LIMIT) -> str | None:
    """The text of ``field`` in an AccelerateConfiguration (Status) or RequestPaymentConfiguration
    (Payer) document; None when absent."""
    root = parse_document(body, root_name, limit=limit)
    return _optional_stripped(root, field)


def element_names(body: bytes, root_name: str, *, limit: int = DEFAULT_BODY_LIMIT) -> list[str]:
    """The local names of the root's children (BucketLoggingStatus, NotificationConfiguration):
    whether the document configures anything at all."""
    return [local_name(child) for child in parse_document(body, root_name, limit=limit)]
