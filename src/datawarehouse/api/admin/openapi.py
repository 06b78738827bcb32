"""The OpenAPI 3.1 document, built from the operation registry (the routes' own declarations)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from datawarehouse import __version__
from datawarehouse.api.admin.registry import Operation, load_all

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "request_id": {"type": "string"},
            },
        }
    },
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _operation_doc(op: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": op.name,
        "summary": op.summary,
        "tags": [op.tag],
        "x-dwh-action": op.action,
    }
    if op.description:
        doc["description"] = op.description
    params = [
        {"name": name, "in": "path", "required": True, "schema": schema} for name, schema in op.path_params.items()
    ]
    params += [
        {"name": p.name, "in": "query", "required": p.required, "description": p.description, "schema": p.schema}
        for p in op.query
    ]
    if params:
        doc["parameters"] = params
    if op.request is not None:
        doc["requestBody"] = {"required": False, "content": {"application/json": {"schema": op.request}}}
    responses: dict[str, Any] = {}
    if op.response is None:
        responses[str(op.status)] = {"description": "done"}
    else:
        responses[str(op.status)] = {"description": "success", "content": {"application/json": {"schema": op.response}}}
    responses["default"] = {"description": "error", "content": {"application/json": {"schema": _ERROR_REF}}}
    doc["responses"] = responses
    if op.auth == "none":
        doc["security"] = []
    elif op.auth == "sigv4":
        doc["security"] = [{"sigv4": []}]
    return doc


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in load_all():
        paths.setdefault(op.full_path, {})[op.method.lower()] = _operation_doc(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "DataWarehouse admin API",
            "version": __version__,
            "description": "JSON admin API. Sign requests with AWS SigV4 (service s3, any region; the body's "
            "SHA-256 in x-amz-content-sha256), or present a bearer token from POST /admin/v1/tokens.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {
                "sigv4": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...",
                },
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"sigv4": []}, {"bearer": []}],
    }
