"""From an S3 request to the service's authorization question (``service.access``).

Gathers what the request says (operation, bucket, key, version, copy source, headers that need
extra permissions, condition keys, the connection's address and scheme) into ``RequestFacts``.
The decision itself is the service's; this module only translates.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from datawarehouse.api.s3.acl import names_grants
from datawarehouse.api.s3.errors import S3Error, access_denied
from datawarehouse.api.s3.http import Request
from datawarehouse.api.s3.router import Endpoint
from datawarehouse.ids import TENANT_SEPARATOR, qualify_bucket_name
from datawarehouse.service import policy, s3_actions
from datawarehouse.service.access import Authorizer, Caller, RequestFacts
from datawarehouse.service.policy import ContextValue

# Operations whose x-amz-acl or x-amz-grant-* headers set the new bucket's or object's ACL (api.s3.acl).
ACL_ON_CREATE = frozenset({"CreateBucket", "PutObject", "CopyObject", "CreateMultipartUpload"})


def qualify(caller: Caller, bucket: str) -> str:
    """A bucket named in a request: ``tenant:bucket`` as given, else in the caller's tenant."""
    return bucket if TENANT_SEPARATOR in bucket else qualify_bucket_name(caller.tenant, bucket)


def connection_context(request: Request, secure: bool) -> dict[str, ContextValue]:
    ctx: dict[str, ContextValue] = {"aws:SecureTransport": "true" if secure else "false"}
    if request.client:
        ctx["aws:SourceIp"] = request.client
    agent = request.headers.get("user-agent")
    if agent:
        ctx["aws:UserAgent"] = agent
    referer = request.headers.get("referer")
    if referer:
        ctx["aws:Referer"] = referer
    return ctx


def request_facts(
    request: Request,
    endpoint: Endpoint,
    caller: Caller,
    *,
    secure: bool,
    copy_source: tuple[str, str, str | None] | None = None,
    operation: str | None = None,
    key: str | None = None,
    version_id: str | None = None,
    signature: tuple[str, str] | None = None,
) -> RequestFacts:
    """The facts of ``request`` (``operation``/``key``/``version_id`` override the endpoint's,
    for the per-key checks of DeleteObjects and the form fields of a browser POST).
    ``signature``: how the request was signed, ``s3:signatureversion`` and ``s3:authType``."""
    headers = request.headers
    operation = operation or endpoint.operation
    query: Mapping[str, str] = dict(request.query)
    context = connection_context(request, secure)
    context.update(s3_actions.request_condition_keys(operation, query, headers))
    if signature is not None:
        context["s3:signatureversion"], context["s3:authType"] = signature
    if copy_source is not None:
        src_bucket, src_key, src_version = copy_source
        copy_source = (qualify(caller, src_bucket), src_key, src_version)
    return RequestFacts(
        operation=operation,
        bucket=endpoint.bucket,
        key=key if key is not None else endpoint.key,
        version_id=version_id if version_id is not None else query.get("versionId"),
        copy_source=copy_source,
        bypass_governance=headers.get("x-amz-bypass-governance-retention", "").lower() == "true",
        sets_tagging="x-amz-tagging" in headers,
        sets_retention="x-amz-object-lock-mode" in headers or "x-amz-object-lock-retain-until-date" in headers,
        sets_legal_hold="x-amz-object-lock-legal-hold" in headers,
        enables_object_lock=headers.get("x-amz-bucket-object-lock-enabled", "").lower() == "true",
        sets_acl=operation in ACL_ON_CREATE and _sets_acl(headers),
        sets_ownership=operation == "CreateBucket" and "x-amz-object-ownership" in headers,
        context=context,
    )


def _sets_acl(headers: Mapping[str, str]) -> bool:
    """A creating write that grants something: a granting ``x-amz-acl``, or any grant header
    (as on S3, grant headers need s3:PutObjectAcl / s3:PutBucketAcl whatever they grant)."""
    return names_grants(headers) or policy.acl_grants(headers.get("x-amz-acl", "private").strip())


def check(authorizer: Authorizer, caller: Caller, facts: RequestFacts, now: datetime) -> None:
    """Raise AccessDenied unless the request is allowed."""
    decision = authorizer.authorize(caller, facts, now)
    if not decision.allowed:
        raise denied(caller)


def denied(caller: Caller) -> S3Error:
    if caller.principal.kind == "anonymous":
        return access_denied("Access Denied (anonymous request; sign it, or ask for a bucket policy)")
    return access_denied("Access Denied")
