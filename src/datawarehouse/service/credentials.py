"""Root credentials of the S3 endpoint: made on first start (or taken from the environment).

Kept in ``keys/root-credentials.json`` (0600) beside the master key — IAM (a later issue) stores
user keys encrypted in the metadata; the root pair is what bootstraps it.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from datawarehouse.engine.keys import write_private
from datawarehouse.errors import ConfigError

FILE = "root-credentials.json"
_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str

    def __repr__(self) -> str:
        return f"Credentials(access_key={self.access_key!r}, secret_key=<hidden>)"


def generate() -> Credentials:
    access = "DWH" + "".join(secrets.choice(_ALPHABET) for _ in range(17))
    return Credentials(access, secrets.token_urlsafe(30)[:40])


def load_or_create(keys_dir: Path, env: Mapping[str, str] | None = None) -> tuple[Credentials, bool]:
    """The root credentials and whether they were just created (to print them once)."""
    env = os.environ if env is None else env
    access, secret = env.get("DWH_ROOT_ACCESS_KEY"), env.get("DWH_ROOT_SECRET_KEY")
    if access or secret:
        if not access or not secret:
            raise ConfigError("DWH_ROOT_ACCESS_KEY and DWH_ROOT_SECRET_KEY: set both or neither")
        if not 3 <= len(access) <= 128 or not access.isprintable() or " " in access:
            raise ConfigError("DWH_ROOT_ACCESS_KEY: 3-128 printable characters without spaces")
        if len(secret) < 8:
            raise ConfigError("DWH_ROOT_SECRET_KEY: at least 8 characters")
        return Credentials(access, secret), False
    path = keys_dir / FILE
    if path.exists():
        try:
            doc = json.loads(path.read_text())
            return Credentials(str(doc["access_key"]), str(doc["secret_key"])), False
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"{path}: unreadable or malformed") from exc
    creds = generate()
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(path, (json.dumps({"access_key": creds.access_key, "secret_key": creds.secret_key}) + "\n").encode())
    return creds, True
