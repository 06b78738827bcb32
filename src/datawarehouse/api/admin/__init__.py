"""The admin API: JSON over HTTP under ``/admin/v1`` on the S3 port, described by an OpenAPI 3.1
document at ``/admin/v1/openapi.json``.

Vocabulary: an *operation* is one declared route (``registry.operation``: method, path, name,
schemas); its name is the policy action ``dwh-admin:<Name>`` and the audit operation
``admin:<Name>``. A *caller* is who signed the request (SigV4) or presented a bearer *token* the
API issued (``tokens``). Handlers call services only; every answer is JSON, errors included
(``{"error": {"code", "message", "request_id"}}``).
"""
