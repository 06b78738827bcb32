"""The HTTP protocol of the S3 door: uvicorn's httptools protocol, writing through a
``CoalescingTransport``, that answers a request httptools cannot parse with an S3 error.

httptools refuses what HTTP/1.1 does not allow (a control character in a header value, a
malformed request line, bad chunked framing) before any ASGI app sees it, and uvicorn then
answers a plain-text "Invalid HTTP request received.". An S3 client expects every error as an
S3 error document, so this one is too: ``400 InvalidRequest`` with a request id, then the
connection is closed (where the bad request ends is unknown, so nothing after it can be read).
"""

from __future__ import annotations

from datawarehouse.api.coalesce import CoalescingHttpToolsProtocol
from datawarehouse.api.s3.app import new_request_id
from datawarehouse.api.s3.errors import S3Error
from datawarehouse.api.s3.http import HOST_ID

UNPARSABLE = "The request is not valid HTTP/1.1 (its request line, a header or its framing)."


class S3HttpProtocol(CoalescingHttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        request_id = new_request_id()
        body = S3Error("InvalidRequest", UNPARSABLE).to_xml(request_id)
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"x-amz-request-id: " + request_id.encode() + b"\r\n",
            b"x-amz-id-2: " + HOST_ID + b"\r\n",
            b"content-type: application/xml\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
