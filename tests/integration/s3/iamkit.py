"""Helpers of the S3 IAM suites (test_s3_iam.py, test_s3_policies.py, test_s3_tenants.py).

There is no admin endpoint yet, so tenants, users, policies and keys are provisioned the way an
operator's tool would: with the server stopped, the data directory is opened in-process and
changed through ``Warehouse.iam``; then ``dwh serve`` starts (again) on it. Requests go through
real boto3 clients (one per access key) or raw signed/unsigned HTTP (``s3http``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import botocore.handlers
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from s3server import DwhServer

from datawarehouse.engine.datadir import DataDir
from datawarehouse.service.warehouse import Warehouse

T = TypeVar("T")


@contextmanager
def offline(server: DwhServer) -> Iterator[Warehouse]:
    """The server's data directory opened in-process (the server stopped; restarted after).
    Creates the data directory when the server never ran."""
    was_running = server.running
    if was_running:
        stop(server)
    root = server.data_dir.absolute()
    wh = Warehouse.open(root) if DataDir.exists(root) else Warehouse.init(root)
    try:
        yield wh
    finally:
        wh.close()
    server.start()


GRACEFUL = (0,)  # a graceful stop closes everything and exits 0 (cli/workers.py: exit_cleanly_on_sigterm)


def stop(server: DwhServer) -> None:
    """A graceful stop (everything flushed and closed)."""
    rc = server.terminate()
    assert rc in GRACEFUL, server.log()[-3000:]


def client(server: DwhServer, access_key: str, secret: str, *, any_bucket_name: bool = False, **config: Any) -> Any:
    """A boto3 S3 client speaking for one access key. ``any_bucket_name``: botocore's bucket-name
    validation is switched off so that ``tenant:bucket`` names reach the server."""
    import boto3

    config.setdefault("signature_version", "s3v4")
    config.setdefault("retries", {"max_attempts": 1, "mode": "standard"})
    config.setdefault("s3", {"addressing_style": "path"})
    c = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        region_name=server.region,
        config=Config(**config),
    )
    if any_bucket_name:
        c.meta.events.unregister("before-parameter-build.s3", botocore.handlers.validate_bucket_name)
    return c


def anonymous(server: DwhServer, *, any_bucket_name: bool = False) -> Any:
    """An unsigned boto3 client (botocore sends no Authorization at all)."""
    return client(server, "unused", "unused", any_bucket_name=any_bucket_name, signature_version=UNSIGNED)


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def error_code(call: Callable[[], T]) -> str:
    """The S3 error code ``call`` fails with (AssertionError when it succeeds)."""
    try:
        call()
    except ClientError as err:
        return str(err.response["Error"]["Code"])
    raise AssertionError("the call succeeded")


def status_of(call: Callable[[], T]) -> int:
    try:
        call()
    except ClientError as err:
        return int(err.response["ResponseMetadata"]["HTTPStatusCode"])
    return 200


def denied(call: Callable[[], T]) -> bool:
    """True when the call fails with AccessDenied (HEAD: a bare 403)."""
    try:
        call()
    except ClientError as err:
        code = str(err.response["Error"]["Code"])
        return code in ("AccessDenied", "403")
    return False


def data_files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file():
            yield path


class UsersEnv:
    """A server with IAM users of one tenant (an access key each), and boto3 clients for its
    root, for anonymous requests and for each user."""

    def __init__(self, server: DwhServer, keys: dict[str, tuple[str, str]]) -> None:
        self.server = server
        self.keys = keys
        self.root = server.boto3_client()
        self.anon = anonymous(server)

    def s3(self, user: str) -> Any:
        access, secret = self.keys[user]
        return client(self.server, access, secret)


@contextmanager
def users_env(data_dir: Path, users: Mapping[str, str | None], tenant: str = "default") -> Iterator[UsersEnv]:
    """A server on ``data_dir`` whose ``users`` (name -> built-in policy attached, or None) exist
    in ``tenant``; stopped afterwards."""
    server = DwhServer(data_dir)
    keys: dict[str, tuple[str, str]] = {}
    with offline(server) as wh:
        for user, builtin in users.items():
            wh.iam.create_user(tenant, user)
            made = wh.iam.create_access_key(tenant, user)
            keys[user] = (made.access_key_id, made.secret_key)
            if builtin is not None:
                wh.iam.attach_policy(tenant, builtin, user=user)
    try:
        yield UsersEnv(server, keys)
    finally:
        server.terminate()
