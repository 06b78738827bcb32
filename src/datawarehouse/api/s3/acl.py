"""The ACL a request asks for, as one of the canned ACLs this server keeps.

Access here is given by IAM and bucket policies; an ACL only adds a public grant. So the ACLs
kept are the two canned ones that mean something without AWS's global accounts: ``private``
(the owner alone) and ``public-read`` (the owner, and anyone may read). A client may ask for
them three ways, and all three are read here:

* ``x-amz-acl: public-read`` (a canned ACL), on CreateBucket, the object writes and Put*Acl;
* ``x-amz-grant-*`` headers (``x-amz-grant-read: uri="http://acs.amazonaws.com/groups/global/
  AllUsers"``), on the same requests;
* an ``AccessControlPolicy`` document, the body of Put*Acl: what ``s3cmd setacl``, Cyberduck and
  boto3's ``AccessControlPolicy=`` send, usually the document GetBucketAcl returned with one
  grant added.

Grants are accepted when they are equal to one of the two canned ACLs: the owner has
FULL_CONTROL, and AllUsers READ may be added. Anything else (a grant to another account, to
AuthenticatedUsers, WRITE, an owner without FULL_CONTROL) answers NotImplemented, naming the
grant: never a silent acceptance of an ACL the server would not enforce.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final
from xml.etree.ElementTree import Element

from datawarehouse.api.s3.errors import S3Error, invalid_argument, invalid_request, not_implemented, s3_error
from datawarehouse.api.s3.xml import child_text, children, parse_document
from datawarehouse.service.public_access import OWNER_ONLY_ACL

ALL_USERS: Final = "http://acs.amazonaws.com/groups/global/AllUsers"
MAX_ACL_DOCUMENT: Final = 64 * 1024
_GRANT_HEADERS: Final = {
    "x-amz-grant-read": "READ",
    "x-amz-grant-write": "WRITE",
    "x-amz-grant-read-acp": "READ_ACP",
    "x-amz-grant-write-acp": "WRITE_ACP",
    "x-amz-grant-full-control": "FULL_CONTROL",
}
_PERMISSIONS: Final = frozenset(_GRANT_HEADERS.values())
# grantee kinds, as the header form names them, by the element that carries them in a document
_GRANTEE_ELEMENTS: Final = {"ID": "id", "URI": "uri", "EmailAddress": "emailAddress"}

Grant = tuple[str, str, str]  # (grantee kind: id / uri / emailAddress, grantee, permission)


def requested_acl(headers: Mapping[str, str], owner_id: str) -> str | None:
    """The canned ACL a write's headers ask for: ``x-amz-acl`` as given (checked later against
    what is supported, ``service.access.check_canned_acl``), or the one its ``x-amz-grant-*``
    headers are equal to; None when it names no ACL (S3's default, ``private``)."""
    grants = list(_header_grants(headers)) if names_grants(headers) else []
    canned = headers.get("x-amz-acl")
    if grants and canned is not None:
        raise invalid_request("Specifying both Canned ACLs and Header Grants is not allowed")
    if grants:
        return canned_for(grants, owner_id)
    return canned.strip() if canned is not None else None


def acl_from_document(body: bytes, owner_id: str) -> str:
    """The canned ACL an ``AccessControlPolicy`` document is equal to. Its Owner, when given,
    must be the owner GetBucketAcl/GetObjectAcl shows (an ACL cannot hand an object over)."""
    root = parse_document(body, "AccessControlPolicy", limit=MAX_ACL_DOCUMENT)
    owner = children(root, "Owner")
    if len(owner) > 1:
        raise malformed_acl()
    if owner:
        given = child_text(owner[0], "ID")
        if given is not None and given.strip() != owner_id:
            raise s3_error("AccessDenied", "The ACL's Owner is not the owner of the resource.")
    lists = children(root, "AccessControlList")
    if len(lists) != 1:
        raise malformed_acl()
    return canned_for([_document_grant(g) for g in children(lists[0], "Grant")], owner_id)


def canned_for(grants: list[Grant], owner_id: str) -> str:
    """``public-read``, or ``bucket-owner-full-control`` for the owner's FULL_CONTROL alone (the
    same as ``private`` here, and the form a bucket with ACLs off still takes), when ``grants``
    are equal to it; NotImplemented otherwise."""
    owner_full = public_read = False
    for kind, grantee, permission in grants:
        if permission not in _PERMISSIONS:
            raise malformed_acl()
        if kind == "id" and grantee == owner_id and permission == "FULL_CONTROL":
            owner_full = True
        elif kind == "uri" and grantee == ALL_USERS and permission == "READ":
            public_read = True
        else:
            raise not_implemented(
                f"the grant of {permission} to {kind} {grantee[:200]!r} is not supported: only the owner's "
                "FULL_CONTROL and AllUsers READ (the canned ACLs private and public-read); use a bucket policy"
            )
    if not owner_full:
        raise not_implemented(
            "an ACL must grant its owner FULL_CONTROL here (access is given by IAM and bucket policies); "
            "only ACLs equal to the canned ACLs private and public-read are supported"
        )
    return "public-read" if public_read else OWNER_ONLY_ACL


def names_grants(headers: Mapping[str, str]) -> bool:
    """Whether the request carries an ``x-amz-grant-*`` header: one set test against the five
    names S3 defines, since every object write asks it twice (authorization and ``requested_acl``).
    Other ``x-amz-grant-`` names are not S3 headers and are ignored like any unknown header."""
    return not _GRANT_HEADERS.keys().isdisjoint(headers)


def malformed_acl() -> S3Error:
    return s3_error("MalformedACLError")


def _header_grants(headers: Mapping[str, str]) -> Iterator[Grant]:
    """The grants of ``x-amz-grant-<permission>: kind="grantee", kind="grantee", ...`` headers."""
    for name, permission in _GRANT_HEADERS.items():
        value = headers.get(name)
        if value is None:
            continue
        for item in value.split(","):
            kind, sep, grantee = item.strip().partition("=")
            grantee = grantee.strip()
            if len(grantee) >= 2 and grantee[0] == grantee[-1] == '"':
                grantee = grantee[1:-1]
            if not sep or kind not in ("id", "uri", "emailAddress") or not grantee:
                raise invalid_argument('a grant is kind="grantee", kind one of id, uri, emailAddress', name=name)
            yield kind, grantee, permission


def _document_grant(grant: Element) -> Grant:
    grantees = children(grant, "Grantee")
    permission = child_text(grant, "Permission")
    if len(grantees) != 1 or permission is None:
        raise malformed_acl()
    grantee = grantees[0]
    found = [(kind, text.strip()) for name, kind in _GRANTEE_ELEMENTS.items() if (text := child_text(grantee, name))]
    if len(found) != 1:
        raise malformed_acl()
    return found[0][0], found[0][1], permission.strip()
