"""The canonical request, as S3 computes it for SigV4 (the half of verification that is pure text).

S3 differs from the generic SigV4 of other AWS services in one place that matters: the path is
encoded once and never normalised (``a//b/../c`` is signed as is). The query is re-encoded with
AWS's UriEncode and sorted by encoded name, then value; header values are trimmed with inner
runs of spaces collapsed, a repeated header's values joined by ``,``. ``parse_query`` is the
decoding the app must apply to the raw query for all of this to reproduce what clients signed.

"Spaces" is where SDKs disagree: most trim and collapse only ASCII spaces and tabs, botocore
(``' '.join(value.split())``) every character Python counts as white space, which includes the
latin-1 no-break space and the C0 separators a header value may carry. Headers are canonicalised
the first way, and ``canonical_request(..., unicode_spaces=True)`` gives botocore's form, which
verification tries second only for a request with such a character in a signed header.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Final
from urllib.parse import quote, unquote_plus, unquote_to_bytes

from datawarehouse.api.s3.signing import ALGORITHM

_SPACES = re.compile("[ \t]+")
_OTHER_SPACES = re.compile(r"[^\S \t]")  # what str.split() splits on besides spaces and tabs
# Text that UriEncode leaves as is (the common case: SDK query values, plain keys).
_UNRESERVED = re.compile("[A-Za-z0-9_.~-]*")
_UNRESERVED_PATH = re.compile("[A-Za-z0-9_.~/-]*")
# UriEncode of ASCII text as one ``str.translate``: every character outside A-Za-z0-9-_.~ maps to
# its %XX. ``quote`` makes a Python-level pass over the bytes, a dict look-up each (a presigned
# URL's X-Amz-Credential is ~50 of them, on every request).
_ASCII_ESCAPES: Final = {c: f"%{c:02X}" for c in range(128) if not (chr(c).isalnum() or chr(c) in "-_.~")}


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """Split a raw query string into decoded pairs, order kept; ``uploads`` -> ("uploads", "").

    Decoding is form decoding, as Go's ``url.ParseQuery`` (and so most S3 servers) does it: ``+``
    is a space and ``%2B`` a plus. SDKs never send a bare ``+`` (they percent-encode everything
    outside ``A-Za-z0-9-_.~``), so for them both readings agree; for clients that form-encode
    their query (a space as ``+``) this is the reading that verifies. Undecodable bytes are kept as
    surrogate escapes so re-encoding reproduces them exactly.
    """
    pairs: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((_unquote(name), _unquote(value)))
    return pairs


def _unquote(text: str) -> str:
    if "%" not in text and "+" not in text:
        return text
    return unquote_plus(text, errors="surrogateescape")


def uri_encode(text: str) -> str:
    """AWS's UriEncode for query names and values: everything but ``A-Za-z0-9-_.~`` as ``%XX``."""
    if _UNRESERVED.fullmatch(text):
        return text
    if text.isascii():
        return text.translate(_ASCII_ESCAPES)
    return quote(text, safe="", errors="surrogateescape")


def canonical_uris(raw_path: str) -> list[str]:
    """Canonical URI candidates: the path decoded and encoded once, then the path as sent.

    SDKs sign the encoded form of the key they send, so the first usually matches; a client that
    sent a non-canonical encoding (``%7E``, lower-case hex, an encoded ``/``) and signed exactly
    what it sent matches the second. Both name the same resource, so accepting either is safe.
    """
    path = raw_path or "/"
    if _UNRESERVED_PATH.fullmatch(path):  # nothing to decode or encode
        return [path]
    encoded = quote(unquote_to_bytes(path.encode("utf-8", "surrogateescape")), safe="/")
    return [encoded] if encoded == path else [encoded, path]


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    encoded = sorted([(uri_encode(name), uri_encode(value)) for name, value in pairs])
    return "&".join([f"{name}={value}" for name, value in encoded])


def canonical_headers(
    headers: dict[str, list[str]], signed_headers: Sequence[str], *, unicode_spaces: bool = False
) -> str:
    """``name:value`` lines for the signed headers; a signed header that is absent signs as empty.
    ``unicode_spaces``: botocore's trimming (see the module's docstring)."""
    lines = []
    for name in signed_headers:
        values = headers.get(name, [])
        if unicode_spaces:
            lines.append(f"{name}:" + ",".join(" ".join(v.split()) for v in values))
        else:
            lines.append(f"{name}:" + ",".join(_SPACES.sub(" ", v.strip(" \t")) for v in values))
    return "".join(line + "\n" for line in lines)


def has_other_spaces(headers: dict[str, list[str]], signed_headers: Sequence[str]) -> bool:
    """Whether a signed header's value holds white space other than ASCII spaces and tabs: then,
    and only then, the two trimming conventions give different canonical requests."""
    joined = "".join([value for name in signed_headers for value in headers.get(name, ())])
    if joined.isascii() and joined.isprintable():  # the common case, without a regex (every request)
        return False
    return _OTHER_SPACES.search(joined) is not None


def canonical_request(
    method: str,
    uri: str,
    query: Iterable[tuple[str, str]],
    headers: dict[str, list[str]],
    signed_headers: Sequence[str],
    payload_hash: str,
    *,
    unicode_spaces: bool = False,
) -> str:
    """The six lines SigV4 hashes; ``signed_headers`` must be sorted and lower-case already."""
    return "\n".join(
        (
            method,
            uri,
            canonical_query(query),
            canonical_headers(headers, signed_headers, unicode_spaces=unicode_spaces),
            ";".join(signed_headers),
            payload_hash,
        )
    )


def string_to_sign(timestamp: str, scope: str, canonical: str) -> str:
    """What the signing key signs: algorithm, timestamp, credential scope, canonical request hash."""
    digest = hashlib.sha256(canonical.encode("utf-8", errors="surrogateescape")).hexdigest()
    return "\n".join((ALGORITHM, timestamp, scope, digest))


def header_map(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Header pairs -> lower-cased name to its values in arrival order (order matters when signed)."""
    mapped: dict[str, list[str]] = {}
    for name, value in headers:
        mapped.setdefault(name.lower(), []).append(value)
    return mapped
