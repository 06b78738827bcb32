"""Admin API errors: one JSON shape, and the one table from the project's exception tree to HTTP
statuses and codes (``errors.py`` has no HTTP in it; this is where it gets some)."""

from __future__ import annotations

from typing import Final

from datawarehouse import errors


class AdminError(Exception):
    """An answer other than success: HTTP status, a stable code, a message safe to show."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def document(self, request_id: str) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message, "request_id": request_id}}


def bad_request(message: str, code: str = "InvalidRequest") -> AdminError:
    return AdminError(400, code, message)


def access_denied(message: str, code: str = "AccessDenied") -> AdminError:
    return AdminError(403, code, message)


def not_found(message: str, code: str = "NotFound") -> AdminError:
    return AdminError(404, code, message)


# Most specific first: the first matching class decides.
_STATUS: Final[list[tuple[type[errors.DwhError], int, str]]] = [
    (errors.NoSuchBucket, 404, "NoSuchBucket"),
    (errors.NoSuchTenant, 404, "NoSuchTenant"),
    (errors.NoSuchUser, 404, "NoSuchUser"),
    (errors.NoSuchGroup, 404, "NoSuchGroup"),
    (errors.NoSuchPolicy, 404, "NoSuchPolicy"),
    (errors.NoSuchAccessKey, 404, "NoSuchAccessKey"),
    (errors.NotFound, 404, "NotFound"),
    (errors.BucketAlreadyExists, 409, "BucketAlreadyExists"),
    (errors.EntityAlreadyExists, 409, "EntityAlreadyExists"),
    (errors.DeleteConflict, 409, "DeleteConflict"),
    (errors.BucketNotEmpty, 409, "BucketNotEmpty"),
    (errors.QuotaExceeded, 409, "QuotaExceeded"),
    (errors.Conflict, 409, "Conflict"),
    (errors.ObjectLocked, 409, "ObjectLocked"),
    (errors.InvalidPolicy, 400, "InvalidPolicy"),
    (errors.MalformedPolicyDocument, 400, "MalformedPolicyDocument"),
    (errors.InvalidIamName, 400, "InvalidName"),
    (errors.InvalidBucketName, 400, "InvalidBucketName"),
    (errors.InvalidStorageClass, 400, "InvalidStorageClass"),
    (errors.InvalidInput, 400, "InvalidInput"),
    (errors.CredentialsRefused, 403, "AccessDenied"),
    (errors.AuditLogClosed, 503, "ServiceUnavailable"),
    (errors.DataUnavailable, 503, "DataUnavailable"),
    (errors.StorageError, 503, "StorageError"),
]


def from_dwh_error(exc: errors.DwhError) -> AdminError:
    """The API answer for a service error (its message is written for users: no secrets)."""
    for cls, status, code in _STATUS:
        if isinstance(exc, cls):
            return AdminError(status, code, str(exc))
    return AdminError(500, "InternalError", "the server could not complete the request (see its log)")
