"""Checkpoints: signed statements that seal a segment of the chain.

A checkpoint names the seq range it covers, the hash before the range (``prev_hash``: a verifier
anchors there once older segments have expired), the hash of the last record, the record count,
the digest of the segment object's bytes, when it was sealed and when the checkpoint before it
was sealed (so an early removal of old segments is told from their expiry). Its canonical JSON
without ``signature`` is signed with Ed25519.

The signing key is created on first use as ``keys/audit-signing.key`` (0600, PKCS#8 PEM) next to
``keys/audit-signing.pub`` (SubjectPublicKeyInfo PEM): a verifier needs only the public key.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from datawarehouse.engine.keys import write_private
from datawarehouse.errors import CorruptFrame, KeyError_
from datawarehouse.service.audit.record import canonical_json

PRIVATE_KEY_FILE = "audit-signing.key"
PUBLIC_KEY_FILE = "audit-signing.pub"
FORMAT = 1


@dataclass(frozen=True)
class Checkpoint:
    first_seq: int
    last_seq: int
    count: int
    prev_hash: str  # the hash the first record links to
    last_hash: str
    segment: str  # object key of the segment in the audit bucket
    segment_digest: str
    sealed_at: str
    prev_sealed_at: str  # '' for the first checkpoint
    key_id: str  # which public key signed (its fingerprint)
    format: int = FORMAT
    signature: str = ""  # base64 Ed25519 over body_bytes()

    def to_doc(self, *, with_signature: bool = True) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        if not with_signature:
            del doc["signature"]
        return doc

    def body_bytes(self) -> bytes:
        return canonical_json(self.to_doc(with_signature=False))

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_doc()) + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        try:
            doc = json.loads(data)
            names = {f.name for f in dataclasses.fields(cls)}
            if not isinstance(doc, dict) or set(doc) != names:
                raise ValueError("fields")
            cp = cls(**doc)
            ints = (cp.first_seq, cp.last_seq, cp.count, cp.format)
            strs = (cp.prev_hash, cp.last_hash, cp.segment, cp.segment_digest, cp.sealed_at, cp.prev_sealed_at)
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints) or not all(
                isinstance(v, str) for v in (*strs, cp.key_id, cp.signature)
            ):
                raise ValueError("types")
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise CorruptFrame("audit checkpoint: malformed") from exc
        return cp


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return blake3.blake3(raw).hexdigest()[:16]


class CheckpointSigner:
    """Holds the private signing key (never in repr, never logged)."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)

    def __repr__(self) -> str:
        return f"CheckpointSigner(key_id={self.key_id})"

    @classmethod
    def load_or_create(cls, keys_dir: Path) -> CheckpointSigner:
        path = keys_dir / PRIVATE_KEY_FILE
        if path.exists():
            try:
                private = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except (ValueError, TypeError) as exc:
                raise KeyError_(f"{path}: not an Ed25519 private key") from exc
            if not isinstance(private, Ed25519PrivateKey):
                raise KeyError_(f"{path}: not an Ed25519 private key")
        else:
            keys_dir.mkdir(parents=True, exist_ok=True)
            private = Ed25519PrivateKey.generate()
            pem = private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            write_private(path, pem)
        signer = cls(private)
        pub_path = keys_dir / PUBLIC_KEY_FILE
        pub_pem = signer.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if not pub_path.exists() or pub_path.read_bytes() != pub_pem:
            tmp = pub_path.with_name(pub_path.name + f".tmp{os.getpid()}")
            tmp.write_bytes(pub_pem)
            os.chmod(tmp, 0o644)
            os.replace(tmp, pub_path)
        return signer

    def sign(self, cp: Checkpoint) -> Checkpoint:
        unsigned = dataclasses.replace(cp, key_id=self.key_id, signature="")
        sig = self._private.sign(unsigned.body_bytes())
        return dataclasses.replace(unsigned, signature=base64.b64encode(sig).decode())


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError as exc:
        raise KeyError_(f"{path}: audit public key not found") from exc
    except (ValueError, TypeError) as exc:
        raise KeyError_(f"{path}: not an Ed25519 public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyError_(f"{path}: not an Ed25519 public key")
    return key


def signature_valid(cp: Checkpoint, public: Ed25519PublicKey) -> bool:
    try:
        sig = base64.b64decode(cp.signature, validate=True)
        public.verify(sig, cp.body_bytes())
    except (InvalidSignature, ValueError):
        return False
    return True
