"""Shared fixtures for the S3 adapter tests: botocore as the reference SigV4 signer.

``BotoSigner`` signs requests exactly as boto3 would (S3SigV4Auth / S3SigV4QueryAuth over an
AWSRequest) at a fixed instant, then turns the prepared request into the ``SignedRequest`` the
server side sees: raw path and query from the URL that would go on the wire, headers lower-cased,
and the Host header the HTTP client would add.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, _host_from_url
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from datawarehouse.api.s3.canonical import parse_query
from datawarehouse.api.s3.sigv4 import SignedRequest

ACCESS_KEY = "AKIDEXAMPLE0000001"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
SIGNED_AT = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


class _FixedPayloadAuth(S3SigV4Auth):
    """S3SigV4Auth with a chosen x-amz-content-sha256 (STREAMING-*, UNSIGNED-PAYLOAD)."""

    def __init__(self, credentials: Credentials, region: str, payload: str) -> None:
        super().__init__(credentials, "s3", region)
        self._payload = payload

    def payload(self, request: AWSRequest) -> str:
        return self._payload


@dataclass
class BotoSigner:
    """Signs like boto3 at ``signed_at``; ``lookup`` is the server's secret lookup (known key only)."""

    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    signed_at: datetime = SIGNED_AT
    known_key: str = ACCESS_KEY
    known_secret: str = SECRET_KEY

    def lookup(self, access_key_id: str) -> str | None:
        return self.known_secret if access_key_id == self.known_key else None

    def but(self, **changes: str) -> BotoSigner:
        """A signer with other credentials or region, still verified against the known key."""
        return dataclasses.replace(self, **changes)

    def _credentials(self) -> Credentials:
        return Credentials(self.access_key, self.secret_key)

    def sign_header(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        repeated: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        payload: str | None = None,
        at: datetime | None = None,
    ) -> SignedRequest:
        request = AWSRequest(method=method, url=url, headers=dict(headers or {}), data=body)
        for name, value in repeated:
            request.headers[name] = value  # HTTPHeaders appends: a repeated header
        auth = (
            S3SigV4Auth(self._credentials(), "s3", self.region)
            if payload is None
            else _FixedPayloadAuth(self._credentials(), self.region, payload)
        )
        _sign_at(auth, request, at or self.signed_at)
        return to_signed_request(request)

    def sign_params(self, method: str, url: str, params: Mapping[str, str]) -> SignedRequest:
        """The AWSRequest(params=...) route: the wire query is form-encoded (space as '+')."""
        request = AWSRequest(method=method, url=url, params=dict(params))
        _sign_at(S3SigV4Auth(self._credentials(), "s3", self.region), request, self.signed_at)
        return to_signed_request(request)

    def presign(
        self,
        method: str,
        url: str,
        *,
        expires: int = 3600,
        headers: Mapping[str, str] | None = None,
        at: datetime | None = None,
    ) -> SignedRequest:
        request = AWSRequest(method=method, url=url, headers=dict(headers or {}))
        auth = S3SigV4QueryAuth(self._credentials(), "s3", self.region, expires=expires)
        _sign_at(auth, request, at or self.signed_at)
        return to_signed_request(request)


def _sign_at(auth: S3SigV4Auth, request: AWSRequest, at: datetime) -> None:
    naive = at.astimezone(UTC).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=naive):
        auth.add_auth(request)


def to_signed_request(request: AWSRequest) -> SignedRequest:
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    # The original headers keep repeated names (the prepared copy folds them into a dict).
    headers = [(name.lower(), value) for name, value in request.headers.items()]
    if "Content-Length" in prepared.headers and not any(name == "content-length" for name, _ in headers):
        headers.append(("content-length", prepared.headers["Content-Length"]))
    if not any(name == "host" for name, _ in headers):
        headers.append(("host", _host_from_url(prepared.url)))
    return SignedRequest(
        method=prepared.method,
        raw_path=parts.path,
        query=parse_query(parts.query),
        headers=headers,
    )


@pytest.fixture(scope="session")
def signer() -> BotoSigner:
    return BotoSigner()
