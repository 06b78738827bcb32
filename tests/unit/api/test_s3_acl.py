"""ACL grants read as canned ACLs (``api.s3.acl``): header grammar, documents, refusals."""

from __future__ import annotations

import pytest

from datawarehouse.api.s3.acl import ALL_USERS, acl_from_document, names_grants, requested_acl
from datawarehouse.api.s3.errors import S3Error

OWNER = "arn:dwh:iam::default:root"


def code(call: object) -> str:
    assert callable(call)
    with pytest.raises(S3Error) as exc:
        call()
    return exc.value.code


@pytest.mark.parametrize(
    ("headers", "canned"),
    [
        ({}, None),
        ({"x-amz-acl": " public-read "}, "public-read"),
        ({"x-amz-grant-full-control": f'id="{OWNER}"'}, "bucket-owner-full-control"),
        ({"x-amz-grant-full-control": f"id={OWNER}", "x-amz-grant-read": f"uri={ALL_USERS}"}, "public-read"),
        # several grantees in one header, white space around them
        (
            {"x-amz-grant-full-control": f' id="{OWNER}" , id={OWNER}', "x-amz-grant-read": f' uri="{ALL_USERS}"'},
            "public-read",
        ),
    ],
)
def test_requested_acl(headers: dict[str, str], canned: str | None) -> None:
    assert requested_acl(headers, OWNER) == canned
    assert names_grants(headers) == any(name.startswith("x-amz-grant-") for name in headers)


def test_names_that_s3_does_not_define_are_not_grants() -> None:
    """Like any unknown header: ignored, asks for no ACL and needs no ACL permission."""
    headers = {"x-amz-grant-everything": f"uri={ALL_USERS}", "x-amz-granted": "x"}
    assert not names_grants(headers)
    assert requested_acl(headers, OWNER) is None
    assert requested_acl({**headers, "x-amz-grant-full-control": f"id={OWNER}"}, OWNER) == "bucket-owner-full-control"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-amz-grant-read": f"uri={ALL_USERS}"}, "NotImplemented"),  # the owner's grant is missing
        ({"x-amz-grant-full-control": f"id={OWNER}", "x-amz-grant-write": f"uri={ALL_USERS}"}, "NotImplemented"),
        ({"x-amz-grant-full-control": f"id={OWNER}, id=other"}, "NotImplemented"),
        ({"x-amz-grant-full-control": f"id={OWNER}", "x-amz-grant-read": "emailAddress=a@b.c"}, "NotImplemented"),
        ({"x-amz-grant-full-control": f"id={OWNER}", "x-amz-acl": "private"}, "InvalidRequest"),
        ({"x-amz-grant-read": "everyone"}, "InvalidArgument"),
        ({"x-amz-grant-read": "name=x"}, "InvalidArgument"),
        ({"x-amz-grant-read": 'id=""'}, "InvalidArgument"),
    ],
)
def test_requested_acl_refusals(headers: dict[str, str], expected: str) -> None:
    assert code(lambda: requested_acl(headers, OWNER)) == expected


def _document(*grants: str, owner: str = f"<Owner><ID>{OWNER}</ID></Owner>") -> bytes:
    xsi = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    body = "".join(grants)
    text = f'<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/" {xsi}>{owner}'
    return f"{text}<AccessControlList>{body}</AccessControlList></AccessControlPolicy>".encode()


OWNER_FULL = (
    f'<Grant><Grantee xsi:type="CanonicalUser"><ID>{OWNER}</ID><DisplayName>root</DisplayName></Grantee>'
    "<Permission>FULL_CONTROL</Permission></Grant>"
)
ALL_READ = f'<Grant><Grantee xsi:type="Group"><URI>{ALL_USERS}</URI></Grantee><Permission>READ</Permission></Grant>'


def test_documents() -> None:
    assert acl_from_document(_document(OWNER_FULL), OWNER) == "bucket-owner-full-control"
    assert acl_from_document(_document(OWNER_FULL, ALL_READ), OWNER) == "public-read"
    assert acl_from_document(_document(ALL_READ, OWNER_FULL, owner=""), OWNER) == "public-read"  # Owner optional
    assert code(lambda: acl_from_document(_document(ALL_READ), OWNER)) == "NotImplemented"
    assert code(lambda: acl_from_document(_document(OWNER_FULL, owner="<Owner><ID>x</ID></Owner>"), OWNER)) == (
        "AccessDenied"
    )
    assert code(lambda: acl_from_document(_document(OWNER_FULL.replace("FULL_CONTROL", "ALL")), OWNER)) == (
        "MalformedACLError"
    )
    two_ids = OWNER_FULL.replace("<DisplayName>", f"<URI>{ALL_USERS}</URI><DisplayName>")
    assert code(lambda: acl_from_document(_document(two_ids), OWNER)) == "MalformedACLError"
    assert code(lambda: acl_from_document(b"<AccessControlPolicy/>", OWNER)) == "MalformedACLError"
    assert code(lambda: acl_from_document(b"<AccessControlPolicy>", OWNER)) == "MalformedXML"
    entity = b'<!DOCTYPE a [<!ENTITY e "x">]><AccessControlPolicy>&e;</AccessControlPolicy>'
    assert code(lambda: acl_from_document(entity, OWNER)) == "MalformedXML"
