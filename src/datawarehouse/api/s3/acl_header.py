"""The canned ACL a CreateBucket or an object-creating write carries (``x-amz-acl``).

S3 lets a client set the new bucket's or object's ACL in the creating request
(``create_bucket(ACL="public-read")``, ``put_object(ACL=...)``). Here a canned ACL is a bucket
setting (``service.access``): it is validated before anything is stored, so an unsupported ACL
(``public-read-write``) refuses the whole request, and applied after the creation succeeded. The
no-op private ACLs (``private``, ``bucket-owner-*``, which many tools always send) change
nothing; explicit grants (``x-amz-grant-*``) answer NotImplemented as they do on Put*Acl.
"""

from __future__ import annotations

from datawarehouse.api.s3.errors import not_implemented
from datawarehouse.api.s3.http import Request
from datawarehouse.service import policy


def granting_acl(request: Request) -> str | None:
    """The request's ``x-amz-acl`` when it grants something (``public-read``), else None.
    Raises InvalidInput (400 InvalidArgument) for an unsupported canned ACL."""
    headers = request.headers
    if any(h.startswith("x-amz-grant-") for h in headers):
        raise not_implemented("x-amz-grant-* headers are not supported; use a canned ACL or a bucket policy")
    canned = headers.get("x-amz-acl", "").strip()
    if not canned:
        return None
    policy.canned_acl_statements(canned, "bucket")  # refuses what is not supported
    return canned if policy.acl_grants(canned) else None
