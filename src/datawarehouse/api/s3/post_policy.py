"""Browser POST-policy uploads: the signed policy document and its conditions (pure functions).

The form carries a base64 JSON policy (an expiration and a list of conditions) and a signature
over that base64 text: SigV4 (``x-amz-algorithm``, ``x-amz-credential``, ``x-amz-signature``) or,
where version 2 is accepted, SigV2 (``AWSAccessKeyId`` and ``signature``, base64 HMAC-SHA1).
Every form field except the signature, ``policy``, ``file`` and ``x-ignore-*`` must be allowed by
a condition, as S3 requires (field names are compared lower-cased).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from datawarehouse.api.s3 import sigv2
from datawarehouse.api.s3.authn import V2_REFUSED
from datawarehouse.api.s3.errors import S3Error, access_denied, invalid_argument, invalid_request, s3_error
from datawarehouse.api.s3.signing import ALGORITHM, derive_signing_key, sign, signatures_equal
from datawarehouse.api.s3.sigv4 import MAX_ACCESS_KEY_ID_CHARS

EXEMPT = ("policy", "x-amz-signature", "file", "awsaccesskeyid", "signature")


@dataclass(frozen=True)
class Policy:
    expiration: datetime
    conditions: tuple[Any, ...]
    min_size: int = 0
    max_size: int | None = None


def _denied(reason: str) -> S3Error:
    return access_denied(f"Invalid according to Policy: {reason}")


def parse_policy(policy_b64: str) -> Policy:
    try:
        doc = json.loads(base64.b64decode(policy_b64, validate=True))
        expiration = datetime.fromisoformat(str(doc["expiration"]).replace("Z", "+00:00"))
        conditions = tuple(doc.get("conditions", ()))
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise invalid_argument("Invalid Policy: the policy is not base64-encoded JSON with an expiration") from exc
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=UTC)
    min_size, max_size = 0, None
    for cond in conditions:
        if isinstance(cond, list) and len(cond) == 3 and str(cond[0]).lower() == "content-length-range":
            try:
                min_size, max_size = int(cond[1]), int(cond[2])
            except (TypeError, ValueError) as exc:
                raise invalid_argument("Invalid Policy: content-length-range needs two integers") from exc
    return Policy(expiration, conditions, min_size, max_size)


def verify_signature(
    fields: Mapping[str, str], lookup_secret: Callable[[str], str | None], *, signature_v2: bool = False
) -> tuple[str, str]:
    """Check the signature over the policy; return the access key id and the signature version
    (``s3:signatureversion``). ``fields``: names lower-cased."""
    if "x-amz-algorithm" not in fields and "awsaccesskeyid" in fields:
        return _verify_v2(fields, lookup_secret, signature_v2), sigv2.VERSION
    if fields.get("x-amz-algorithm") != "AWS4-HMAC-SHA256":
        raise invalid_argument("POST uploads need x-amz-algorithm AWS4-HMAC-SHA256", name="x-amz-algorithm")
    parts = fields.get("x-amz-credential", "").split("/")
    if len(parts) != 5 or parts[3] != "s3" or parts[4] != "aws4_request":
        raise invalid_argument("x-amz-credential must be AKID/date/region/s3/aws4_request", name="x-amz-credential")
    secret = lookup_secret(parts[0])
    if secret is None:
        raise s3_error("InvalidAccessKeyId")
    expected = sign(derive_signing_key(secret, parts[1], parts[2], "s3"), fields.get("policy", ""))
    if not signatures_equal(expected, fields.get("x-amz-signature", "")):
        raise s3_error("SignatureDoesNotMatch")
    return parts[0], ALGORITHM


def _verify_v2(fields: Mapping[str, str], lookup_secret: Callable[[str], str | None], allowed: bool) -> str:
    if not allowed:
        raise invalid_request(V2_REFUSED)
    access_key_id = fields["awsaccesskeyid"]
    secret = lookup_secret(access_key_id) if 0 < len(access_key_id) <= MAX_ACCESS_KEY_ID_CHARS else None
    if secret is None:
        raise s3_error("InvalidAccessKeyId")
    if not sigv2.signatures_equal_v2(sigv2.sign_v2(secret, fields.get("policy", "")), fields.get("signature", "")):
        raise s3_error("SignatureDoesNotMatch")
    return access_key_id


def check_conditions(policy: Policy, fields: Mapping[str, str], bucket: str, now: datetime) -> None:
    """Every condition holds and every non-exempt field is covered (content length: see ``check_size``)."""
    if now >= policy.expiration:
        raise _denied("Policy expired.")
    values = {k.lower(): v for k, v in fields.items()}
    values["bucket"] = bucket
    covered = {"bucket"}
    for cond in policy.conditions:
        if isinstance(cond, dict):
            for name, want in cond.items():
                name = name.lower()
                covered.add(name)
                if values.get(name) != str(want):
                    raise _denied(f'Policy Condition failed: ["eq", "${name}", "{want}"]')
        elif isinstance(cond, list) and len(cond) == 3:
            op = str(cond[0]).lower()
            if op == "content-length-range":
                continue
            name = str(cond[1]).lstrip("$").lower()
            covered.add(name)
            have, want = values.get(name, ""), str(cond[2])
            if op == "eq" and have != want:
                raise _denied(f'Policy Condition failed: ["eq", "${name}", "{want}"]')
            if op == "starts-with" and not have.startswith(want):
                raise _denied(f'Policy Condition failed: ["starts-with", "${name}", "{want}"]')
            if op not in ("eq", "starts-with"):
                raise invalid_argument(f"Invalid Policy: unknown condition {op}")
        else:
            raise invalid_argument("Invalid Policy: a condition is neither an object nor a 3-element list")
    for name in values:
        if name in EXEMPT or name.startswith("x-ignore-") or name in covered:
            continue
        raise _denied(f"Extra input fields: {name}")


def check_size(policy: Policy, size: int) -> None:
    if size < policy.min_size:
        raise s3_error("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size")
    if policy.max_size is not None and size > policy.max_size:
        raise s3_error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
