"""Checkpoint signing: keys created on first use (private 0600, public beside it), a verifier
needs only the public key, and any change to a signed checkpoint breaks its signature."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from datawarehouse.errors import CorruptFrame, KeyError_
from datawarehouse.service.audit.checkpoint import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    Checkpoint,
    CheckpointSigner,
    load_public_key,
    signature_valid,
)


def sample() -> Checkpoint:
    return Checkpoint(1, 10, 10, "aa" * 32, "bb" * 32, "segments/x", "cc" * 32, "2026-01-01T00:00:00.000000Z", "", "")


def test_keys_are_created_once_with_private_permissions(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    signer = CheckpointSigner.load_or_create(keys)
    mode = stat.S_IMODE((keys / PRIVATE_KEY_FILE).stat().st_mode)
    assert mode == 0o600
    assert (keys / PUBLIC_KEY_FILE).read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    again = CheckpointSigner.load_or_create(keys)
    assert again.key_id == signer.key_id
    assert "PRIVATE" not in repr(signer) and signer.key_id in repr(signer)


def test_signature_verifies_with_only_the_public_key_and_breaks_on_any_change(tmp_path: Path) -> None:
    signer = CheckpointSigner.load_or_create(tmp_path)
    cp = signer.sign(sample())
    public = load_public_key(tmp_path / PUBLIC_KEY_FILE)
    assert signature_valid(cp, public)
    assert Checkpoint.from_bytes(cp.to_bytes()) == cp
    for change in ({"count": 11}, {"last_hash": "bd" * 32}, {"sealed_at": "2027-01-01T00:00:00.000000Z"}):
        assert not signature_valid(dataclasses.replace(cp, **change), public)  # type: ignore[arg-type]
    assert not signature_valid(dataclasses.replace(cp, signature="not base64!"), public)
    other = CheckpointSigner.load_or_create(tmp_path / "other")
    assert not signature_valid(other.sign(sample()), public)


def test_malformed_checkpoints_and_keys_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CorruptFrame):
        Checkpoint.from_bytes(b'{"first_seq": 1}')
    with pytest.raises(CorruptFrame):
        Checkpoint.from_bytes(b"\xff")
    with pytest.raises(KeyError_, match="not found"):
        load_public_key(tmp_path / "missing.pub")
    (tmp_path / "bad.pub").write_text("junk")
    with pytest.raises(KeyError_):
        load_public_key(tmp_path / "bad.pub")
