"""docs/s3-compatibility.md, generated from the ``@pytest.mark.s3op`` markers of the S3 tests.

    .venv/bin/python -m tests.integration.s3.compat_matrix           # rewrite the document
    .venv/bin/python -m tests.integration.s3.compat_matrix --check   # exit 1 when it is stale

A test declares what it proves::

    @pytest.mark.s3op("GetObject", "HeadObject", note="single ranges a-b, a-, -n; 416 InvalidRange")
    @pytest.mark.s3op("ListObjectVersions", status="NotImplemented")
    @pytest.mark.s3op("auth:sigv4a", status="refused")

Names are the router's operation names (``router.OPERATIONS``) or the feature names of
``FEATURES`` below. The markers are read from the test sources (no server, no collection), so the
document can be regenerated anywhere; ``test_s3_compat_doc.py`` fails when it is out of date.

The status of an operation is decided here, not only by the markers: an operation the router
knows but no handler serves is NotImplemented whatever the tests say (their markers then show as
pending); a served operation with no marker is "untested", which the doc test refuses. A marker
with ``status="partial"`` makes the operation partial, its note saying what is missing.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
DOC = ROOT / "docs" / "s3-compatibility.md"
STATUSES = ("supported", "partial", "NotImplemented", "refused")

# Features that are not operations: (name, what it is). Order is the document's.
FEATURES: tuple[tuple[str, str], ...] = (
    ("auth:sigv4-header", "SigV4, `Authorization` header, signed payload (x-amz-content-sha256 = hex)"),
    ("auth:presigned", "SigV4 presigned URLs (query string, X-Amz-Expires up to 7 days)"),
    ("auth:unsigned-payload", "x-amz-content-sha256: UNSIGNED-PAYLOAD"),
    ("auth:streaming-signed", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD (aws-chunked, per-chunk signatures)"),
    ("auth:streaming-signed-trailer", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER (signed chunks and trailer)"),
    (
        "auth:streaming-unsigned-trailer",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER (aws-chunked with a CRC trailer: what SDKs send over HTTPS)",
    ),
    ("auth:content-sha256", "x-amz-content-sha256 verified against the body (XAmzContentSHA256Mismatch)"),
    ("auth:clock-skew", "request time within 15 minutes of the server's (RequestTimeTooSkewed)"),
    ("auth:sigv2", "Signature Version 2 (header, query string and POST forms; `server.signature_v2`)"),
    ("auth:sigv4a", "SigV4a (AWS4-ECDSA-P256-SHA256)"),
    ("auth:anonymous", "unsigned (anonymous) requests"),
    ("addressing:path-style", "path-style addressing (`http://host/bucket/key`)"),
    ("addressing:virtual-hosted", "virtual-hosted style (`http://bucket.<domain>/key`, needs `--domain`)"),
    ("checksums", "Content-MD5 and x-amz-checksum-{crc32,crc32c,crc64nvme,sha1,sha256} verified and stored"),
    ("conditional-writes", "If-None-Match: * and If-Match on PutObject"),
    ("hostile-input", "malformed/hostile XML, truncated bodies, huge headers, path tricks: clean S3 errors"),
    ("crash-safety", "SIGKILL/SIGTERM during uploads: acknowledged data kept, no partial object"),
    ("subresources:unsupported", "other subresources (`?acl`, `?policy`, `?versioning`, ...)"),
    ("client:awscli", "AWS CLI v1 (`s3 cp/sync/ls/rm`, `s3api`)"),
    ("client:rclone", "rclone (Debian's 1.60: copy, sync, check, server-side copy, versions)"),
    ("client:s3cmd", "s3cmd (Debian's 2.3: put/get, sync, cp/mv, setacl, lifecycle)"),
)

FEATURE_NAMES = frozenset(name for name, _ in FEATURES)


@dataclass
class Claim:
    test: str  # path::function, relative to ROOT
    status: str
    note: str
    pending: bool  # the test is marked xfail (the operation is not served yet)


@dataclass
class Row:
    name: str
    status: str
    notes: list[str] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)


def _literal(node: ast.expr) -> object:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def _mark_name(dec: ast.expr) -> str | None:
    """``pytest.mark.NAME(...)`` or ``pytest.mark.NAME`` -> NAME."""
    target = dec.func if isinstance(dec, ast.Call) else dec
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute):
        if target.value.attr == "mark":
            return target.attr
    return None


def collect(test_dir: Path = HERE) -> dict[str, list[Claim]]:
    """name -> the claims the markers make about it, from every test_*.py of ``test_dir``."""
    claims: dict[str, list[Claim]] = {}
    for path in sorted(test_dir.glob("test_*.py")):
        tree = ast.parse(path.read_text(), str(path))
        module_pending = False
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets):
                module_pending = "xfail" in ast.unparse(node.value)
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        for fn in functions:
            if not fn.name.startswith("test_"):
                continue
            pending = module_pending or any(_mark_name(d) == "xfail" for d in fn.decorator_list)
            test = f"{path.name}::{fn.name}"
            for dec in fn.decorator_list:
                if _mark_name(dec) != "s3op" or not isinstance(dec, ast.Call):
                    continue
                kw = {k.arg: _literal(k.value) for k in dec.keywords}
                status = str(kw.get("status") or "supported")
                if status not in STATUSES:
                    raise ValueError(f"{test}: unknown s3op status {status!r}")
                names = [_literal(arg) for arg in dec.args]
                if not all(isinstance(n, str) for n in names):
                    raise ValueError(f"{test}: s3op names must be string literals")
                # A marker naming a feature describes that feature: its note goes to the feature
                # rows only (the operations it also names just list the test).
                featured = {n for n in names if n in FEATURE_NAMES}
                note = str(kw.get("note") or "")
                for name in names:
                    assert isinstance(name, str)
                    applies = not featured or name in featured
                    claims.setdefault(name, []).append(Claim(test, status, note if applies else "", pending))
    return claims


def _row(name: str, claims: list[Claim], served: bool | None) -> Row:
    """``served``: whether a handler is registered (None for features)."""
    row = Row(name, "untested")
    for c in claims:
        if c.note and c.note not in row.notes:
            row.notes.append(c.note)
        label = f"{c.test} (pending: xfail)" if c.pending else c.test
        if label not in row.tests:
            row.tests.append(label)
    statuses = {c.status for c in claims if not c.pending}
    if served is False:
        row.status = "NotImplemented"
    elif "partial" in statuses:
        row.status = "partial"
    elif "refused" in statuses:
        row.status = "refused"
    elif "NotImplemented" in statuses:
        row.status = "NotImplemented"
    elif statuses:
        row.status = "supported"
    return row


def build(claims: dict[str, list[Claim]] | None = None) -> tuple[list[Row], list[Row]]:
    from datawarehouse.api.s3.handlers import HANDLERS, load_all
    from datawarehouse.api.s3.router import OPERATIONS

    load_all()
    claims = collect() if claims is None else claims
    ops = [_row(op, claims.get(op, []), op in HANDLERS) for op in OPERATIONS]
    features = [_row(name, claims.get(name, []), None) for name, _ in FEATURES]
    return ops, features


def unknown_names(claims: dict[str, list[Claim]]) -> list[str]:
    from datawarehouse.api.s3.router import OPERATIONS

    known = set(OPERATIONS) | {name for name, _ in FEATURES}
    return sorted(set(claims) - known)


def _cell(items: list[str]) -> str:
    return "<br>".join(items).replace("|", "\\|")


def render(ops: list[Row], features: list[Row]) -> str:
    from datawarehouse.api.s3.router import (
        _UNSUPPORTED_BUCKET,
        _UNSUPPORTED_OBJECT,
        UNCONFIGURED_BUCKET_READS,
        UNCONFIGURED_BUCKET_WRITES,
    )

    described = dict(FEATURES)
    counts = {s: sum(1 for r in ops if r.status == s) for s in ("supported", "partial", "NotImplemented")}
    out = [
        "# S3 compatibility",
        "",
        "<!-- Generated by `python -m tests.integration.s3.compat_matrix` from the `@pytest.mark.s3op`",
        "     markers of tests/integration/s3/test_*.py; test_s3_compat_doc.py fails when stale. Do not edit. -->",
        "",
        "What `dwh serve` answers, operation by operation, and the tests that prove it (files in",
        "`tests/integration/s3/`; each runs a real `dwh serve` and real clients). Every operation the",
        "router knows is listed; one that no handler serves is NotImplemented (the server answers",
        "`501 NotImplemented` with an S3 error document).",
        "",
        f"Summary: {len(ops)} operations — {counts['supported']} supported, {counts['partial']} partial, "
        f"{counts['NotImplemented']} NotImplemented.",
        "",
        "## Operations",
        "",
        "| operation | status | notes | proven by |",
        "|---|---|---|---|",
    ]
    for r in ops:
        out.append(f"| {r.name} | {r.status} | {_cell(r.notes)} | {_cell(r.tests)} |")
    out += [
        "",
        "## Authentication, addressing and behaviour",
        "",
        "| feature | what | status | notes | proven by |",
        "|---|---|---|---|---|",
    ]
    for r in features:
        out.append(f"| {r.name} | {_cell([described[r.name]])} | {r.status} | {_cell(r.notes)} | {_cell(r.tests)} |")
    out += [
        "",
        "## Subresources answered NotImplemented",
        "",
        "Bucket: " + ", ".join(f"`?{n}`" for n in _UNSUPPORTED_BUCKET) + ".",
        "Of these, a GET of "
        + ", ".join(f"`?{n}`" for n, _ in UNCONFIGURED_BUCKET_READS)
        + " answers as S3 does for a bucket that never configured the feature, and "
        + ", ".join(f"{m} `?{n}`" for m, n, _ in UNCONFIGURED_BUCKET_WRITES)
        + " are accepted when they restate that (the operations above); turning a feature on, and every other"
        " method, is NotImplemented.",
        "Object: " + ", ".join(f"`?{n}`" for n in _UNSUPPORTED_OBJECT) + ".",
        "",
        "## Versioning notes",
        "",
        "`x-amz-version-id` is returned for every version written while versioning is Enabled, for delete",
        "markers, and for the `null` version when a request names it (`versionId=null`); writes of a",
        "`null` version (unversioned or Suspended bucket) answer without it. A DELETE naming a version the",
        "key does not have succeeds (204), as a DELETE of a missing key does; in DeleteObjects, a version",
        "id this server cannot have issued is reported per key as NoSuchVersion.",
        "",
        "## ETags",
        "",
        "An object written through S3 (PutObject, a POST upload) or `dwh put` has the MD5 of its bytes as",
        "its ETag, a part has its MD5, a completed multipart upload the usual `<md5 of part md5s>-<parts>`.",
        "An object written through the Python API without `md5_etag=True` (audit segments, for example)",
        "carries a content ETag shaped like a multipart one, `<32 hex>-<chunks>` (docs/format.md): equal",
        "for equal content, never mistaken for an MD5 by S3 tools; UploadPartCopy of such an object",
        "computes the part's MD5 from its bytes.",
        "",
        "## Clients tested",
        "",
        "boto3 and the AWS CLI v1 (`aws s3`, `aws s3api`) with their default configuration apart from",
        "`signature_version=s3v4` (over plain HTTP they sign the payload's SHA-256 and send a CRC32",
        "checksum header; aws-chunked bodies, which they use over HTTPS, are tested by hand-built",
        "requests), and plain HTTP clients (urllib, aiohttp, http.client, raw sockets) with presigned",
        "URLs or requests signed with botocore's signer.",
        "",
    ]
    return "\n".join(out)


def generate() -> str:
    return render(*build())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 when the document is out of date")
    args = ap.parse_args(argv)
    text = generate()
    if args.check:
        if DOC.read_text() != text:
            print(f"{DOC} is out of date: run python -m tests.integration.s3.compat_matrix", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
