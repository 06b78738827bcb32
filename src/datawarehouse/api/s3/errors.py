"""S3 errors: the one exception the S3 adapter raises, the one table from the project's tree.

Every failure a client sees is an ``S3Error``: an S3 error code (``NoSuchKey``), a human message,
an HTTP status and optional extra elements, rendered as the S3 error document. The project's
exception tree (``datawarehouse.errors``) carries no HTTP codes; ``s3_error_from`` maps it here, in
one table, walking the exception's MRO so the most specific row wins. Server-side failures (5xx)
never echo the project's message: it may name disks, paths or internals a client has no business
seeing. Constructors below never put secrets or signatures in messages or extra fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final, Literal
from xml.etree.ElementTree import Element, SubElement

from datawarehouse import errors as dwh
from datawarehouse.api.numbers import whole_number
from datawarehouse.api.s3.xmlrender import to_document

S3Code = Literal[
    "AccessControlListNotSupported",
    "AccessDenied",
    "AuthorizationHeaderMalformed",
    "AuthorizationQueryParametersError",
    "BadDigest",
    "BucketAlreadyExists",
    "BucketAlreadyOwnedByYou",
    "BucketNotEmpty",
    "EntityTooLarge",
    "EntityTooSmall",
    "ExpiredToken",
    "IllegalVersioningConfigurationException",
    "IncompleteBody",
    "InternalError",
    "InvalidAccessKeyId",
    "InvalidArgument",
    "InvalidBucketAclWithObjectOwnership",
    "InvalidBucketName",
    "InvalidBucketState",
    "InvalidDigest",
    "InvalidPart",
    "InvalidPartOrder",
    "InvalidRange",
    "InvalidRequest",
    "InvalidStorageClass",
    "InvalidTag",
    "KeyTooLongError",
    "MalformedACLError",
    "MalformedPolicy",
    "MalformedXML",
    "MetadataTooLarge",
    "MethodNotAllowed",
    "MissingContentLength",
    "NoSuchBucket",
    "NoSuchBucketPolicy",
    "NoSuchCORSConfiguration",
    "NoSuchLifecycleConfiguration",
    "NoSuchKey",
    "NoSuchObjectLockConfiguration",
    "NoSuchTagSet",
    "NoSuchUpload",
    "NoSuchVersion",
    "NoSuchWebsiteConfiguration",
    "NoSuchPublicAccessBlockConfiguration",
    "NotFound",
    "NotImplemented",
    "ObjectLockConfigurationNotFoundError",
    "OwnershipControlsNotFoundError",
    "QuotaExceeded",
    "ReplicationConfigurationNotFoundError",
    "RequestHeaderSectionTooLarge",
    "MalformedPOSTRequest",
    "AccessForbidden",
    "IllegalLocationConstraintException",
    "OperationAborted",
    "PreconditionFailed",
    "RequestTimeTooSkewed",
    "ServiceUnavailable",
    "SignatureDoesNotMatch",
    "SlowDown",
    "UnexpectedContent",
    "XAmzContentSHA256Mismatch",
]

# code -> (HTTP status, default message). Messages follow S3's wording where clients or humans
# may recognise them.
CATALOGUE: Final[Mapping[S3Code, tuple[int, str]]] = {
    "AccessControlListNotSupported": (400, "The bucket does not allow ACLs"),
    "AccessDenied": (403, "Access Denied"),
    "AuthorizationHeaderMalformed": (400, "The authorization header is malformed."),
    "AuthorizationQueryParametersError": (400, "The authorization query parameters are invalid."),
    "BadDigest": (400, "The Content-MD5 or checksum value you specified did not match what we received."),
    "BucketAlreadyExists": (409, "The requested bucket name is not available."),
    "BucketAlreadyOwnedByYou": (
        409,
        "Your previous request to create the named bucket succeeded and you already own it.",
    ),
    "BucketNotEmpty": (409, "The bucket you tried to delete is not empty."),
    "EntityTooLarge": (400, "Your proposed upload exceeds the maximum allowed size."),
    "QuotaExceeded": (403, "The bucket's quota does not allow this write."),
    "EntityTooSmall": (400, "Your proposed upload is smaller than the minimum allowed object size."),
    "ExpiredToken": (400, "The provided token has expired."),
    "IncompleteBody": (400, "You did not provide the number of bytes specified by the request."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "InvalidAccessKeyId": (403, "The AWS Access Key Id you provided does not exist in our records."),
    "InvalidArgument": (400, "Invalid Argument"),
    "InvalidBucketAclWithObjectOwnership": (
        400,
        "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
    ),
    "InvalidBucketName": (400, "The specified bucket is not valid."),
    "InvalidBucketState": (409, "The request is not valid with the current state of the bucket."),
    "IllegalVersioningConfigurationException": (
        400,
        "The versioning configuration specified in the request is invalid.",
    ),
    "InvalidDigest": (400, "The Content-MD5 you specified is not valid."),
    "InvalidPart": (
        400,
        "One or more of the specified parts could not be found. The part may not have been "
        "uploaded, or the specified entity tag may not match the part's entity tag.",
    ),
    "InvalidPartOrder": (
        400,
        "The list of parts was not in ascending order. Parts must be ordered by part number.",
    ),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    "InvalidRequest": (400, "Invalid Request"),
    "InvalidStorageClass": (400, "The storage class you specified is not valid."),
    "InvalidTag": (400, "The tag provided was not a valid tag."),
    "KeyTooLongError": (400, "Your key is too long."),
    "MalformedACLError": (
        400,
        "The XML you provided was not well-formed or did not validate against our published schema.",
    ),
    "MalformedPolicy": (400, "Policies must be valid JSON and the first byte must be '{'"),
    "MalformedXML": (
        400,
        "The XML you provided was not well-formed or did not validate against our published schema.",
    ),
    "MetadataTooLarge": (400, "Your metadata headers exceed the maximum allowed metadata size."),
    "MethodNotAllowed": (405, "The specified method is not allowed against this resource."),
    "MissingContentLength": (411, "You must provide the Content-Length HTTP header."),
    "NoSuchBucket": (404, "The specified bucket does not exist."),
    "NoSuchBucketPolicy": (404, "The bucket policy does not exist"),
    "NoSuchCORSConfiguration": (404, "The CORS configuration does not exist."),
    "NoSuchLifecycleConfiguration": (404, "The lifecycle configuration does not exist."),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchTagSet": (404, "The TagSet does not exist."),
    "NoSuchWebsiteConfiguration": (404, "The specified bucket does not have a website configuration"),
    "NoSuchPublicAccessBlockConfiguration": (404, "The public access block configuration was not found"),
    "OwnershipControlsNotFoundError": (404, "The bucket ownership controls were not found"),
    "ReplicationConfigurationNotFoundError": (404, "The replication configuration was not found"),
    "NoSuchObjectLockConfiguration": (404, "The specified object does not have a ObjectLock configuration"),
    "ObjectLockConfigurationNotFoundError": (404, "Object Lock configuration does not exist for this bucket"),
    "NoSuchUpload": (
        404,
        "The specified multipart upload does not exist. The upload ID may be invalid, or the "
        "upload may have been aborted or completed.",
    ),
    "NoSuchVersion": (404, "The specified version does not exist."),
    "NotFound": (404, "Not Found"),
    "IllegalLocationConstraintException": (400, "The location constraint is incompatible with this endpoint."),
    "AccessForbidden": (403, "CORSResponse: This CORS request is not allowed."),
    "MalformedPOSTRequest": (400, "The body of your POST request is not well-formed multipart/form-data."),
    "RequestHeaderSectionTooLarge": (400, "Your request header section exceeds the maximum allowed size."),
    "NotImplemented": (501, "A header you provided implies functionality that is not implemented."),
    "OperationAborted": (
        409,
        "A conflicting conditional operation is currently in progress against this resource. Try again.",
    ),
    "PreconditionFailed": (412, "At least one of the pre-conditions you specified did not hold."),
    "RequestTimeTooSkewed": (
        403,
        "The difference between the request time and the server's time is too large.",
    ),
    "ServiceUnavailable": (503, "Service is unable to handle request."),
    "SignatureDoesNotMatch": (
        403,
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    ),
    "SlowDown": (503, "Please reduce your request rate."),
    "UnexpectedContent": (400, "This request does not support content."),
    "XAmzContentSHA256Mismatch": (
        400,
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    ),
}


class S3Error(Exception):
    """An error answered to an S3 client: code, message, status, optional resource and extras.

    ``extra`` becomes additional child elements of ``<Error>`` (``<Region>``, ``<ServerTime>``...);
    ``headers`` are response headers the answer needs (``Allow`` for 405, for example).
    """

    def __init__(
        self,
        code: S3Code,
        message: str | None = None,
        *,
        http_status: int | None = None,
        resource: str | None = None,
        extra: Mapping[str, str] | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        status, default_message = CATALOGUE[code]
        self.code: S3Code = code
        self.message: str = message if message is not None else default_message
        self.http_status: int = http_status if http_status is not None else status
        self.resource: str | None = resource
        self.extra: dict[str, str] = dict(extra or {})
        self.headers: tuple[tuple[str, str], ...] = tuple(headers)
        super().__init__(f"{code}: {self.message}")

    def __repr__(self) -> str:
        return f"S3Error(code={self.code!r}, http_status={self.http_status}, message={self.message!r})"

    def with_resource(self, resource: str) -> S3Error:
        """The same error naming ``resource``; handlers know the resource, raisers often do not."""
        return S3Error(
            self.code,
            self.message,
            http_status=self.http_status,
            resource=resource,
            extra=self.extra,
            headers=self.headers,
        )

    def to_xml(self, request_id: str, *, host_id: str | None = None) -> bytes:
        """The S3 error document (no namespace, as S3 sends it)."""
        root = Element("Error")
        SubElement(root, "Code").text = self.code
        SubElement(root, "Message").text = self.message
        for name, value in self.extra.items():
            SubElement(root, name).text = value
        if self.resource is not None:
            SubElement(root, "Resource").text = self.resource
        SubElement(root, "RequestId").text = request_id
        if host_id is not None:
            SubElement(root, "HostId").text = host_id
        return to_document(root)


# --- the one table from the project's exception tree ---------------------------------------------

# class -> (S3 code, whether the project's message may be shown to the client). Lookup walks the
# raised class's MRO, so a subclass without its own row inherits its parent's.
_FROM_PROJECT: Final[Mapping[type[dwh.DwhError], tuple[S3Code, bool]]] = {
    dwh.DwhError: ("InternalError", False),
    dwh.InvalidInput: ("InvalidArgument", True),
    dwh.ConfigError: ("InternalError", False),  # server configuration, not the client's input
    dwh.InvalidStorageClass: ("InvalidStorageClass", True),
    dwh.InvalidRange: ("InvalidRange", True),
    dwh.InvalidBucketName: ("InvalidBucketName", True),
    dwh.EntityTooLarge: ("EntityTooLarge", True),
    dwh.EntityTooSmall: ("EntityTooSmall", True),
    dwh.InvalidPart: ("InvalidPart", True),
    dwh.InvalidPartOrder: ("InvalidPartOrder", True),
    dwh.InvalidPolicy: ("MalformedPolicy", True),
    dwh.CredentialsRefused: ("InvalidAccessKeyId", True),  # the message names the key, never a secret
    dwh.PreconditionFailed: ("PreconditionFailed", False),
    dwh.QuotaExceeded: ("QuotaExceeded", True),
    dwh.UnsafePath: ("InvalidArgument", False),  # its message may carry a server path
    dwh.NotFound: ("NotFound", False),
    dwh.NoSuchBucket: ("NoSuchBucket", False),
    dwh.NoSuchKey: ("NoSuchKey", False),
    dwh.NoSuchUpload: ("NoSuchUpload", False),
    dwh.NoSuchVersion: ("NoSuchVersion", False),
    dwh.InvalidVersionId: ("InvalidArgument", True),
    dwh.InvalidBucketState: ("InvalidBucketState", True),
    dwh.ObjectLocked: ("AccessDenied", True),
    dwh.PublicAccessBlocked: ("AccessDenied", True),
    dwh.AclsDisabled: ("AccessControlListNotSupported", True),
    dwh.AclConflictsWithOwnership: ("InvalidBucketAclWithObjectOwnership", True),
    dwh.Conflict: ("OperationAborted", False),
    dwh.BucketAlreadyExists: ("BucketAlreadyOwnedByYou", False),  # single owner per deployment
    dwh.BucketNotEmpty: ("BucketNotEmpty", False),
    dwh.IntegrityError: ("InternalError", False),
    dwh.DataUnavailable: ("ServiceUnavailable", False),  # may return once disks come back: retry
    dwh.StorageError: ("InternalError", False),
    dwh.KeyError_: ("InternalError", False),
    dwh.DataDirError: ("InternalError", False),
    dwh.MetadataError: ("InternalError", False),
    dwh.ConcurrentModification: ("ServiceUnavailable", False),  # a lost race: SDKs retry 503
}


def s3_error_from(exc: BaseException, *, resource: str | None = None) -> S3Error:
    """Translate any exception into the S3Error the client sees.

    An ``S3Error`` passes through; a project error maps through the table; anything else is a bug
    and becomes a bare InternalError (its text is for the log, never for the client).
    """
    if isinstance(exc, S3Error):
        return exc if resource is None else exc.with_resource(resource)
    if isinstance(exc, dwh.DeleteMarkerFound):
        return delete_marker_error(exc, resource)
    if isinstance(exc, dwh.DwhError):
        for cls in type(exc).__mro__:
            row = _FROM_PROJECT.get(cls)
            if row is not None:
                code, expose = row
                message = str(exc) if expose and str(exc) else None
                return S3Error(code, message, resource=resource)
    return S3Error("InternalError", resource=resource)


def delete_marker_error(exc: dwh.DeleteMarkerFound, resource: str | None = None) -> S3Error:
    """A read that met a delete marker: 404 NoSuchKey when it is the key's latest version, 405
    MethodNotAllowed when the request named it; both with x-amz-delete-marker and its version id."""
    headers = (("x-amz-delete-marker", "true"), ("x-amz-version-id", exc.version_id))
    if exc.named:
        return S3Error(
            "MethodNotAllowed",
            resource=resource,
            extra={"ResourceType": "DeleteMarker"},
            headers=(*headers, ("allow", "DELETE")),
        )
    return S3Error("NoSuchKey", resource=resource, headers=headers)


# --- constructors for the S3-only codes -----------------------------------------------------------


def s3_error(code: S3Code, message: str | None = None, **extra: str) -> S3Error:
    """The generic constructor: ``s3_error("MalformedXML")``; keyword args become extra elements."""
    return S3Error(code, message, extra=extra)


def signature_does_not_match(message: str | None = None) -> S3Error:
    # S3 echoes the string to sign and the provided signature; we do not, by policy.
    return S3Error("SignatureDoesNotMatch", message)


def invalid_access_key_id(access_key_id: str) -> S3Error:
    # The access key id is an identifier, not a secret; S3 echoes it too.
    return S3Error("InvalidAccessKeyId", extra={"AWSAccessKeyId": access_key_id[:128]})


def access_denied(message: str | None = None) -> S3Error:
    return S3Error("AccessDenied", message)


def headers_not_signed(names: Sequence[str]) -> S3Error:
    return S3Error(
        "AccessDenied",
        "There were headers present in the request which were not signed",
        extra={"HeadersNotSigned": ", ".join(names)},
    )


def authorization_header_malformed(detail: str, *, region: str | None = None) -> S3Error:
    extra = {"Region": region} if region is not None else None
    return S3Error("AuthorizationHeaderMalformed", f"The authorization header is malformed; {detail}", extra=extra)


def authorization_query_parameters_error(detail: str, *, region: str | None = None) -> S3Error:
    extra = {"Region": region} if region is not None else None
    return S3Error("AuthorizationQueryParametersError", detail, extra=extra)


def request_time_too_skewed(request_time: str, server_time: datetime, max_skew_ms: int) -> S3Error:
    return S3Error(
        "RequestTimeTooSkewed",
        extra={
            "RequestTime": request_time[:64],
            "ServerTime": _iso(server_time),
            "MaxAllowedSkewMilliseconds": str(max_skew_ms),
        },
    )


def request_expired(expires_at: datetime, server_time: datetime) -> S3Error:
    """A presigned URL past its X-Amz-Expires: S3 answers AccessDenied, not ExpiredToken."""
    return S3Error(
        "AccessDenied",
        "Request has expired",
        extra={"Expires": _iso(expires_at), "ServerTime": _iso(server_time)},
    )


def request_not_yet_valid(server_time: datetime) -> S3Error:
    return S3Error("AccessDenied", "Request is not valid yet", extra={"ServerTime": _iso(server_time)})


def expired_token() -> S3Error:
    return S3Error("ExpiredToken")


def malformed_post(message: str | None = None) -> S3Error:
    return S3Error("MalformedPOSTRequest", message)


def malformed_xml(message: str | None = None) -> S3Error:
    return S3Error("MalformedXML", message)


def invalid_digest(message: str | None = None) -> S3Error:
    return S3Error("InvalidDigest", message)


def bad_digest(message: str | None = None) -> S3Error:
    return S3Error("BadDigest", message)


def content_sha256_mismatch(client_sha256: str, computed_sha256: str) -> S3Error:
    # Payload digests are not secrets; S3 returns both so clients can diagnose.
    return S3Error(
        "XAmzContentSHA256Mismatch",
        extra={
            "ClientComputedContentSHA256": client_sha256[:64],
            "S3ComputedContentSHA256": computed_sha256,
        },
    )


def entity_too_large(max_size: int, proposed_size: int | None = None) -> S3Error:
    extra = {"MaxSizeAllowed": str(max_size)}
    if proposed_size is not None:
        extra["ProposedSize"] = str(proposed_size)
    return S3Error("EntityTooLarge", extra=extra)


def entity_too_small(min_size: int | None = None) -> S3Error:
    extra = {"MinSizeAllowed": str(min_size)} if min_size is not None else None
    return S3Error("EntityTooSmall", extra=extra)


def invalid_part(message: str | None = None) -> S3Error:
    return S3Error("InvalidPart", message)


def invalid_part_number(value: str | None = None) -> S3Error:
    return invalid_argument(
        "Part number must be an integer between 1 and 10000, inclusive", name="partNumber", value=value
    )


def invalid_part_order() -> S3Error:
    return S3Error("InvalidPartOrder")


def invalid_bucket_name(name: str) -> S3Error:
    return S3Error("InvalidBucketName", extra={"BucketName": name[:255]})


def precondition_failed(condition: str) -> S3Error:
    return S3Error("PreconditionFailed", extra={"Condition": condition})


def not_implemented(message: str | None = None) -> S3Error:
    return S3Error("NotImplemented", message)


def method_not_allowed(method: str, allowed: Sequence[str] = ()) -> S3Error:
    headers = [("allow", ", ".join(allowed))] if allowed else []
    return S3Error("MethodNotAllowed", extra={"Method": method[:32]}, headers=headers)


def incomplete_body(message: str | None = None) -> S3Error:
    return S3Error("IncompleteBody", message)


def invalid_request(message: str) -> S3Error:
    return S3Error("InvalidRequest", message)


def invalid_argument(message: str, *, name: str | None = None, value: str | None = None) -> S3Error:
    extra: dict[str, str] = {}
    if name is not None:
        extra["ArgumentName"] = name
    if value is not None:
        extra["ArgumentValue"] = value[:256]
    return S3Error("InvalidArgument", message, extra=extra)


def count_argument(name: str, text: str | None, default: int, maximum: int) -> int:
    """A non-negative count a request carries (``max-keys``, ``x-amz-max-parts``, a marker):
    ``default`` when absent, at most ``maximum``; InvalidArgument naming it otherwise."""
    if text is None:
        return default
    number = whole_number(text.strip())
    if number is None:
        raise invalid_argument(f"{name} must be a non-negative integer", name=name, value=text)
    return min(number, maximum)


def missing_content_length() -> S3Error:
    return S3Error("MissingContentLength")


def key_too_long(max_size: int) -> S3Error:
    return S3Error("KeyTooLongError", extra={"MaxSizeAllowed": str(max_size)})


def metadata_too_large(max_size: int) -> S3Error:
    return S3Error("MetadataTooLarge", extra={"MaxSizeAllowed": str(max_size)})


def slow_down() -> S3Error:
    return S3Error("SlowDown")


def internal_error() -> S3Error:
    return S3Error("InternalError")


def _iso(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
