"""``send_response``'s header encoding: latin-1 as is, text beyond latin-1 RFC 2047-encoded (as S3
sends UTF-8 metadata), and control characters that escaped every check replaced by spaces, so
that the answer is still valid HTTP (uvicorn would otherwise drop the connection unanswered)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from datawarehouse.api.s3.http import Response, send_response


def sent_headers(response: Response) -> dict[bytes, bytes]:
    messages: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        messages.append(message)

    asyncio.run(send_response(send, response, "REQ0123456789ABC"))
    assert messages[0]["type"] == "http.response.start"
    return dict(messages[0]["headers"])


def test_latin1_values_are_sent_as_they_are() -> None:
    resp = Response(200, body=b"x", content_type="text/plain; charset=latin-1")
    resp.header("x-amz-meta-city", "Zürich\tcafé")
    headers = sent_headers(resp)
    assert headers[b"x-amz-meta-city"] == "Zürich\tcafé".encode("latin-1")
    assert headers[b"content-type"] == b"text/plain; charset=latin-1"
    assert headers[b"x-amz-request-id"] == b"REQ0123456789ABC"


def test_text_beyond_latin1_is_rfc2047_encoded() -> None:
    resp = Response(200, body=b"x", content_type="text/✓")
    resp.header("x-amz-meta-note", "café ✓")
    resp.header("x-amz-meta-plain", "plain")
    headers = sent_headers(resp)
    assert headers[b"x-amz-meta-note"] == b"=?UTF-8?B?" + base64.b64encode("café ✓".encode()) + b"?="
    assert headers[b"content-type"] == b"=?UTF-8?B?" + base64.b64encode("text/✓".encode()) + b"?="
    assert headers[b"x-amz-meta-plain"] == b"plain"


def test_control_characters_that_escaped_the_checks_become_spaces() -> None:
    resp = Response(200, body=b"x", content_type="text/\x7fplain")
    resp.header("access-control-expose-headers", "x-a\nx-b")
    resp.header("x-amz-meta-bell", "\x07ding\x00")
    resp.header("x-amz-meta-fine", "tab\tkept")
    headers = sent_headers(resp)
    assert headers[b"access-control-expose-headers"] == b"x-a x-b"
    assert headers[b"x-amz-meta-bell"] == b" ding "
    assert headers[b"content-type"] == b"text/ plain"
    assert headers[b"x-amz-meta-fine"] == b"tab\tkept"
