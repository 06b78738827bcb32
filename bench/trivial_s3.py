"""The ceiling: a bare ASGI server that keeps PUT bodies in a dict and returns them on GET.
No auth, no durability — only what HTTP in Python costs here. Run: python bench/trivial_s3.py PORT"""

from __future__ import annotations

import sys
from typing import Any

STORE: dict[str, bytes] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if scope["method"] == "PUT":
        parts = []
        while True:
            msg = await receive()
            parts.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        STORE[path] = b"".join(parts)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"etag", b'"x"')]})
        await send({"type": "http.response.body", "body": b""})
        return
    body = STORE.get(path)
    status = 200 if body is not None else 404
    body = body or b""
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
