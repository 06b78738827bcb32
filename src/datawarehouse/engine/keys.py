"""Master key files and the key ring of domain secrets.

The master key never touches a data disk: it lives in ``<data-dir>/keys/master.key`` (0600) or
is derived from a passphrase (Argon2id, parameters in ``keys/passphrase.json``). It only wraps
the per-domain secrets, so rotating it rewraps a few rows and never touches a chunk.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path

from datawarehouse.core import crypto
from datawarehouse.core.crypto import Argon2Params, DomainKeys, MasterKey
from datawarehouse.errors import KeyError_, WrongKey
from datawarehouse.ids import DomainId

KEY_FILE = "master.key"
NEW_KEY_FILE = "master.key.new"
PASSPHRASE_FILE = "passphrase.json"  # noqa: S105 - a file name, not a secret


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable only by its owner, atomically and durably."""
    tmp = path.with_name(path.name + f".tmp{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _key_file_bytes(master: MasterKey) -> bytes:
    doc = {"format": 1, "key_id": master.key_id, "key": base64.b64encode(master.key).decode()}
    return (json.dumps(doc) + "\n").encode()


def _read_key_file(path: Path) -> MasterKey:
    try:
        doc = json.loads(path.read_text())
        key = base64.b64decode(doc["key"], validate=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeyError_(f"master key file {path} is unreadable or malformed") from exc
    if len(key) != 32:
        raise KeyError_(f"master key file {path}: key must be 32 bytes")
    master = MasterKey(key)
    if doc.get("key_id") != master.key_id:
        raise KeyError_(f"master key file {path}: key id does not match the key (file damaged?)")
    return master


def check_passphrase(passphrase: str) -> None:
    if len(passphrase) < 8:
        raise KeyError_("passphrase: must be at least 8 characters")


class KeyStore:
    """The ``keys/`` folder of a data directory: creates, loads and replaces the master key."""

    def __init__(self, keys_dir: Path) -> None:
        self.dir = keys_dir

    @property
    def uses_passphrase(self) -> bool:
        return (self.dir / PASSPHRASE_FILE).exists()

    def exists(self) -> bool:
        return (self.dir / KEY_FILE).exists() or self.uses_passphrase

    def create(self, passphrase: str | None = None) -> MasterKey:
        """Create the master key: random in a 0600 file, or derived from ``passphrase``."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        if self.exists():
            raise KeyError_(f"{self.dir} already holds a master key")
        if passphrase is None:
            master = crypto.generate_master_key()
            write_private(self.dir / KEY_FILE, _key_file_bytes(master))
            return master
        return self._set_passphrase(passphrase)

    def _set_passphrase(self, passphrase: str, params: Argon2Params | None = None) -> MasterKey:
        check_passphrase(passphrase)
        params = params or crypto.new_argon2_params()
        master = crypto.master_key_from_passphrase(passphrase, params)
        doc = {"format": 1, "kdf": "argon2id", "params": params.to_json(), "key_id": master.key_id}
        write_private(self.dir / PASSPHRASE_FILE, (json.dumps(doc) + "\n").encode())
        return master

    def load(self, passphrase: str | None = None) -> list[MasterKey]:
        """The current master key, plus the new one of a rotation that was interrupted."""
        if self.uses_passphrase:
            if passphrase is None:
                raise KeyError_("this data directory is protected by a passphrase: set DWH_PASSPHRASE")
            try:
                doc = json.loads((self.dir / PASSPHRASE_FILE).read_text())
                params = Argon2Params.from_json(doc["params"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise KeyError_(f"{self.dir / PASSPHRASE_FILE} is unreadable or malformed") from exc
            master = crypto.master_key_from_passphrase(passphrase, params)
            if not secrets.compare_digest(master.key_id, str(doc.get("key_id", ""))):
                raise WrongKey("wrong passphrase")
            keys = [master]
        else:
            path = self.dir / KEY_FILE
            if not path.exists():
                raise KeyError_(f"no master key at {path} (restore it from your key backup)")
            keys = [_read_key_file(path)]
        new = self.dir / NEW_KEY_FILE
        if new.exists():
            keys.append(_read_key_file(new))
        return keys

    def stage_rotation(self, passphrase: str | None = None) -> MasterKey:
        """Write the next master key beside the current one (phase 1 of a rotation)."""
        if passphrase is not None:
            raise KeyError_("passphrase rotation: use `dwh key rotate --new-passphrase`")
        master = crypto.generate_master_key()
        write_private(self.dir / NEW_KEY_FILE, _key_file_bytes(master))
        return master

    def finish_rotation(self) -> None:
        """Make the staged key current (phase 3, after every domain secret is rewrapped)."""
        new = self.dir / NEW_KEY_FILE
        if new.exists():
            os.replace(new, self.dir / KEY_FILE)
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def replace_passphrase(self, new_passphrase: str, params: Argon2Params) -> MasterKey:
        """Write the parameters of a new passphrase (after the caller rewrapped every secret)."""
        return self._set_passphrase(new_passphrase, params)


class KeyRing:
    """Unwrapped domain keys, cached. Thread-safe; never prints a key."""

    def __init__(self, masters: Iterable[MasterKey], aead: int = crypto.AES_256_GCM) -> None:
        self._masters = {m.key_id: m for m in masters}
        self._aead = aead
        self._domains: dict[tuple[int, int], DomainKeys] = {}
        self._current: dict[int, int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyRing(masters={sorted(self._masters)}, domains={sorted(self._current)})"

    def master_ids(self) -> list[str]:
        """Loaded master key ids, the current one first."""
        return list(self._masters)

    def master(self, key_id: str) -> MasterKey | None:
        return self._masters.get(key_id)

    def current_master_id(self) -> str:
        """The master key new wrappings and sealed secrets are made under."""
        ids = self.master_ids()
        if not ids:  # pragma: no cover - a ring is built from at least one loaded key
            raise KeyError_("no master key loaded")
        return ids[0]

    def make_current(self, master: MasterKey) -> None:
        """Load ``master`` (if it is not) and make it the current one (a rotation in progress:
        what is sealed from now on is sealed under the new key)."""
        with self._lock:
            others = {k: m for k, m in self._masters.items() if k != master.key_id}
            self._masters = {master.key_id: master, **others}

    def seal_secret(self, label: str, aad: bytes, plaintext: bytes) -> tuple[str, bytes]:
        """Seal a small secret under (a key derived with ``label`` from) the current master key;
        return (master key id, ciphertext). Callers never see master key bytes."""
        key_id = self.current_master_id()
        master = self._masters[key_id]
        return key_id, crypto.seal_under_master(master, label.encode(), aad, plaintext)

    def open_secret(self, label: str, aad: bytes, master_key_id: str, sealed: bytes) -> bytes:
        """Open what :meth:`seal_secret` made. ``KeyError_`` if that master key is not loaded,
        ``AuthenticationFailed`` if the bytes, the ``aad`` or the label do not match."""
        master = self._masters.get(master_key_id)
        if master is None:
            raise KeyError_(f"secret sealed under master key {master_key_id}, which is not loaded")
        return crypto.open_under_master(master, label.encode(), aad, sealed)

    def add_wrapped(self, domain_id: int, key_version: int, wrapped: bytes, master_key_id: str) -> bool:
        """Unwrap and remember a domain secret; ``False`` if it is wrapped by an unknown master key."""
        master = self._masters.get(master_key_id)
        if master is None:
            return False
        secret = crypto.unwrap_secret(master, domain_id, key_version, wrapped)
        keys = crypto.derive_domain_keys(domain_id, key_version, secret, self._aead)
        with self._lock:
            self._domains[(domain_id, key_version)] = keys
            if key_version >= self._current.get(domain_id, 0):
                self._current[domain_id] = key_version
        return True

    def has_domain(self, domain_id: int) -> bool:
        return domain_id in self._current

    def has_version(self, domain_id: int, key_version: int) -> bool:
        return (domain_id, key_version) in self._domains

    def current(self, domain_id: DomainId | int) -> DomainKeys:
        with self._lock:
            version = self._current.get(domain_id)
            if version is None:
                raise KeyError_(f"no key for domain {domain_id}")
            return self._domains[(domain_id, version)]

    def version(self, domain_id: int, key_version: int) -> DomainKeys:
        with self._lock:
            keys = self._domains.get((domain_id, key_version))
        if keys is None:
            raise KeyError_(f"no key version {key_version} for domain {domain_id}")
        return keys
