"""Property-based API test: Schemathesis generates requests (valid and invalid) for every
operation of the live server's OpenAPI document, authenticated with a bearer token, and checks
that no answer is a server error and every answer conforms to the document (status codes,
content types, response schemas). Bounded: a few examples per operation."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from s3server import DwhServer
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from datawarehouse.cli.admin_client import AdminClient

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def admin_schema(server: DwhServer) -> Any:
    return schemathesis.openapi.from_url(server.endpoint + "/admin/v1/openapi.json")


@pytest.fixture(scope="module")
def bearer(server: DwhServer, admin: AdminClient) -> str:
    # a tenant, user and bucket for generated requests to find now and then
    admin.request("POST", "/tenants", body={"name": "prop"})
    admin.request("POST", "/tenants/prop/users", body={"name": "user"})
    return str(admin.request("POST", "/tokens", body={"ttl_seconds": 3600})["token"])


schema = schemathesis.pytest.from_fixture("admin_schema")


# Revoking the token would end the run's authentication; it has its own tests.
@schema.exclude(operation_id="RevokeToken").parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_admin_api_has_no_server_errors(case: Any, server: DwhServer, bearer: str) -> None:
    case.call_and_validate(
        base_url=server.endpoint, headers={"Authorization": f"Bearer {bearer}"}, checks=CHECKS, timeout=30
    )
