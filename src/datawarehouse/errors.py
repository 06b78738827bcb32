"""The one exception tree of DataWarehouse.

Every package raises these (foreign exceptions are translated once, in the package that owns the
dependency). No HTTP codes here: the S3 adapter and the CLI each map this tree in one table.
Messages never contain key material or secrets.
"""

from __future__ import annotations


class DwhError(Exception):
    """Root of every error DataWarehouse raises on purpose."""


# --- input and configuration -------------------------------------------------------------------


class InvalidInput(DwhError):
    """A caller passed something malformed (a name, a size, a range, a parameter)."""


class ConfigError(InvalidInput):
    """Configuration failed validation; the message names the key (``erasure.parity: ...``)."""


class InvalidStorageClass(InvalidInput):
    """An EC(k, m) setting that cannot be honoured on the current disk set."""


class InvalidRange(InvalidInput):
    """A byte range that does not overlap the object."""


class InvalidBucketName(InvalidInput):
    pass


class InvalidKey(InvalidInput):
    pass


class InvalidVersionId(InvalidInput):
    """A version id that this server cannot have issued (malformed)."""


class EntityTooLarge(InvalidInput):
    """An upload is larger than allowed."""


class EntityTooSmall(InvalidInput):
    """A multipart part other than the last is smaller than the minimum part size."""


class InvalidPart(InvalidInput):
    """A part named in a multipart completion is missing or has another ETag."""


class InvalidPartOrder(InvalidInput):
    """The parts of a multipart completion are not in ascending order."""


class InvalidPolicy(InvalidInput):
    """A policy document (IAM identity, session or S3 bucket policy) failed parsing or validation.

    The message names the statement (by Sid or position) and the field, never a secret."""


# --- lookups -----------------------------------------------------------------------------------


class NotFound(DwhError):
    """Something named does not exist."""


class NoSuchBucket(NotFound):
    pass


class NoSuchTenant(NotFound):
    pass


class NoSuchKey(NotFound):
    pass


class NoSuchUpload(NotFound):
    pass


class NoSuchVersion(NotFound):
    """A well-formed version id that the key does not have."""


class DeleteMarkerFound(NoSuchKey):
    """A read met a delete marker: the key's latest version (``named`` false: the object reads as
    missing), or the version the request named (``named`` true: the method is not allowed on it).
    ``version_id`` is the marker's id as clients see it."""

    def __init__(self, message: str, version_id: str = "null", *, named: bool = False) -> None:
        super().__init__(message)
        self.version_id = version_id
        self.named = named


class NoSuchDisk(NotFound):
    pass


class Conflict(DwhError):
    """The request conflicts with the current state."""


class BucketAlreadyExists(Conflict):
    pass


class BucketNotEmpty(Conflict):
    pass


class DiskAlreadyPresent(Conflict):
    pass


class ObjectLocked(DwhError):
    """Object lock (retention or legal hold) forbids removing, replacing or weakening a version."""


class PreconditionFailed(Conflict):
    """A conditional write or read (If-Match, If-None-Match, ...) did not hold."""


class QuotaExceeded(Conflict):
    """A write would take a bucket over its hard quota (bytes or objects); nothing was added."""


class InvalidBucketState(Conflict):
    """The bucket's configuration does not allow the request (suspending versioning on a bucket
    with object lock, object lock settings on a bucket without it)."""


# --- public access and ACLs ----------------------------------------------------------------------


class PublicAccessBlocked(DwhError):
    """The bucket's public access block refuses a public ACL or a public bucket policy."""


class AclsDisabled(InvalidInput):
    """The bucket's object ownership is ``BucketOwnerEnforced``: ACLs cannot be set."""


class AclConflictsWithOwnership(InvalidInput):
    """``BucketOwnerEnforced`` asked for on a bucket whose ACL grants beyond its owner."""


# --- integrity and durability ------------------------------------------------------------------


class IntegrityError(DwhError):
    """Stored bytes failed verification (checksum, AEAD tag, chunk id). Never returned as data."""


class CorruptFrame(IntegrityError):
    """A frame, shard header or journal record could not be parsed or failed its checksum."""


class AuthenticationFailed(IntegrityError):
    """An AEAD tag did not verify: the bytes were altered or the key is wrong."""


class AuditLogClosed(DwhError):
    """A record was offered to an audit log that has been closed."""


class ForwardFailed(DwhError):
    """An audit forwarder's receiver refused a batch or could not be reached (it is retried)."""


class DataUnavailable(DwhError):
    """Too few healthy shards remain to reconstruct a chunk (more than m lost)."""


class StorageError(DwhError):
    """A disk operation failed (I/O error, missing disk, permission)."""


class BlobNotFound(StorageError, NotFound):
    """A blob key is not present on a store."""


class WouldBlock(StorageError):
    """A read asked for memory only (``cached_only``) needs the disk: bytes not in the page cache,
    a store that cannot tell, or a chunk that needs more than its data shards. Not a fault: the
    caller does the ordinary read, on a thread that may wait."""


class UnsafePath(InvalidInput):
    """A key or path would escape the directory it must stay in."""


# --- keys --------------------------------------------------------------------------------------


class KeyError_(DwhError):
    """Key material is missing, malformed or does not match (wrong passphrase, foreign key file)."""


class WrongKey(KeyError_):
    pass


# --- state of the data directory ---------------------------------------------------------------


class DataDirError(DwhError):
    """The data directory is missing, foreign, locked by another process, or of an unknown format."""


class ForeignDisk(DataDirError):
    """A disk directory belongs to another data directory or carries another identity."""


class DataDirLocked(DataDirError):
    pass


class MetadataError(DwhError):
    """The metadata repository failed or is inconsistent."""


class ConcurrentModification(MetadataError):
    """A row changed under a transaction (for example GC removed a chunk a write wanted to reuse)."""


# --- identity and access -----------------------------------------------------------------------


class InvalidIamName(InvalidInput):
    """A tenant, user, group, policy or service account name that breaks the naming rules."""


class MalformedPolicyDocument(InvalidInput):
    """A policy document that is not a JSON object with a ``Statement``."""


class NoSuchUser(NotFound):
    pass


class NoSuchGroup(NotFound):
    pass


class NoSuchPolicy(NotFound):
    pass


class NoSuchAccessKey(NotFound):
    pass


class EntityAlreadyExists(Conflict):
    """An IAM entity (tenant, user, group) of that name exists already."""


class DeleteConflict(Conflict):
    """An IAM entity still owns or is used by others (a tenant with buckets or users, a policy
    still attached)."""


class CredentialsRefused(DwhError):
    """An access key exists but may not be used now. The S3 layer answers AccessDenied (or
    InvalidAccessKeyId); the message names the key id, never its secret."""


class AccessKeyDisabled(CredentialsRefused):
    pass


class AccessKeyExpired(CredentialsRefused):
    pass


class PrincipalDisabled(CredentialsRefused):
    """The key's user, its parent user (service accounts) or its tenant is disabled."""


# --- remote servers ----------------------------------------------------------------------------


class RemoteError(DwhError):
    """A remote server (the admin API, for ``dwh admin``) refused a request or could not be
    reached. ``status`` is what it answered (0: no answer), ``code`` its error code."""

    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
