"""Which signature a request carries, and its verification: SigV4, or SigV2 where allowed.

``verify`` is what the S3 app calls for every request. Version 4 stays the path of nearly every
request, so telling the two apart costs one pass over the header pairs (``sigv2.is_v2``).
"""

from __future__ import annotations

from datetime import datetime

from datawarehouse.api.s3 import errors, sigv2
from datawarehouse.api.s3.router import virtual_host_bucket
from datawarehouse.api.s3.sigv4 import AuthResult, SecretLookup, SignedRequest, verify_request

V2_REFUSED = "AWS Signature Version 2 is turned off on this server (server.signature_v2); use version 4."


def verify(
    request: SignedRequest,
    *,
    now: datetime,
    lookup_secret: SecretLookup,
    signature_v2: bool,
    domain: str | None = None,
) -> AuthResult | None:
    """``None`` for an anonymous request, an ``AuthResult`` for a verified one, else ``S3Error``.

    ``signature_v2``: whether version 2 is accepted (``server.signature_v2``); when it is not,
    such a request is refused as InvalidRequest, naming the setting. ``domain``: the server's
    ``--domain``; a SigV2 resource starts with the bucket a virtual-hosted Host header names."""
    if sigv2.is_v2(request):
        if not signature_v2:
            raise errors.invalid_request(V2_REFUSED)
        host = next((value for name, value in request.headers if name == "host"), None)
        bucket = virtual_host_bucket(host, domain)
        return sigv2.verify_v2(request, now=now, lookup_secret=lookup_secret, virtual_bucket=bucket)
    return verify_request(request, now=now, lookup_secret=lookup_secret)
