"""Format v1 golden vectors: today's code must reproduce ``tests/vectors/format_v1.json`` byte for
byte, and read the stored bytes back. Some values are also recomputed straight from the spec
(format.md) with the primitives, independently of ``datawarehouse.core``."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import blake3
import pytest
import xxhash
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from datawarehouse.core import crypto, erasure, frame
from datawarehouse.core.chunking import chunk_all
from datawarehouse.records import ChunkerParams

VECTORS_DIR = Path(__file__).resolve().parents[2] / "vectors"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dwh_make_vectors", VECTORS_DIR / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stored() -> dict[str, Any]:
    result: dict[str, Any] = json.loads((VECTORS_DIR / "format_v1.json").read_text())
    return result


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    return _load_generator()


def _b(value: str) -> bytes:
    return bytes.fromhex(value)


def test_code_reproduces_every_vector(stored: dict[str, Any], gen: ModuleType) -> None:
    rebuilt = gen.build_vectors()
    assert sorted(rebuilt) == sorted(stored)
    for name in stored:
        assert rebuilt[name] == stored[name], f"vector {name!r} changed: the v1 format must not change"


def test_keys_follow_the_spec(stored: dict[str, Any]) -> None:
    inputs = stored["inputs"]
    master, secret = _b(inputs["master_key"]), _b(inputs["domain_secret"])
    key_id = blake3.blake3(derive_key_context="dwh v1 master key id")
    key_id.update(master)
    assert stored["master_key_id"] == key_id.digest()[:8].hex()
    for name, info in (
        ("enc_key", b"dwh v1 chunk seal"),
        ("id_key", b"dwh v1 chunk id"),
        ("journal_key", b"dwh v1 journal"),
    ):
        assert _b(stored[name]) == HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(secret)
    nonce = _b(inputs["wrap_nonce"])
    aad = b"dwh v1 domain secret" + struct.pack(">II", inputs["domain_id"], inputs["key_version"])
    assert _b(stored["wrapped_secret"]) == nonce + AESGCM(master).encrypt(nonce, secret, aad)
    assert _b(stored["text_chunk_id"]) == blake3.blake3(_b(inputs["text"]), key=_b(stored["id_key"])).digest()


def test_stored_bytes_read_back(stored: dict[str, Any]) -> None:
    inputs = stored["inputs"]
    master = crypto.MasterKey(_b(inputs["master_key"]))
    secret = crypto.unwrap_secret(master, inputs["domain_id"], inputs["key_version"], _b(stored["wrapped_secret"]))
    assert secret == _b(inputs["domain_secret"])
    params = crypto.Argon2Params.from_json(inputs["argon2"])
    assert crypto.master_key_from_passphrase(inputs["passphrase"], params).key.hex() == stored["passphrase_master_key"]
    keys = crypto.derive_domain_keys(inputs["domain_id"], inputs["key_version"], secret)
    chacha = crypto.derive_domain_keys(1, 1, secret, aead=crypto.CHACHA20_POLY1305)
    text, rnd = _b(inputs["text"]), _b(inputs["random"])
    text_id, random_id = _b(stored["text_chunk_id"]), _b(stored["random_chunk_id"])
    assert crypto.open_chunk(keys, text_id, _b(stored["text_frame_aes"])) == text
    assert crypto.open_chunk(chacha, text_id, _b(stored["text_frame_chacha"])) == text
    random_frame = _b(stored["random_frame_aes"])
    assert crypto.open_chunk(keys, random_id, random_frame) == rnd

    for name, k, m, chunk_id, frame_name in (
        ("shards_ec_4_2", 4, 2, random_id, "random_frame_aes"),
        ("shards_ec_1_1", 1, 1, text_id, "text_frame_aes"),
    ):
        sealed = _b(stored[frame_name])
        payloads: dict[int, bytes] = {}
        for index, blob in enumerate(stored[name]):
            header, payload = frame.parse_shard(_b(blob))
            assert (header.k, header.m, header.index, header.chunk_id) == (k, m, index, chunk_id)
            assert (header.generation, header.sealed_size, header.domain_id) == (inputs["generation"], len(sealed), 1)
            payloads[index] = bytes(payload)
        coder = erasure.ErasureCoder(k, m)
        assert coder.decode({i: payloads[i] for i in list(payloads)[-k:]}, len(sealed)) == sealed

    records, end = frame.parse_journal(_b(stored["journal"]))
    assert end == len(_b(stored["journal"]))
    assert [(t, p) for _, t, p in records[:1]] == [(1, b'{"domain":1}')]
    record_id, sealed_op = records[1][2][:32], records[1][2][32:]
    assert record_id == _b(inputs["record_id"])
    assert crypto.open_chunk(keys, record_id, sealed_op, key="journal") == _b(inputs["journal_op"])


def test_frame_layout_from_the_spec(stored: dict[str, Any]) -> None:
    """Open the stored AES frame with nothing but the spec and the primitives."""
    inputs = stored["inputs"]
    sealed = _b(stored["text_frame_aes"])
    magic, version, codec, aead, reserved, key_version, plain_size, nonce = struct.unpack(">4sBBBBII12s", sealed[:28])
    assert (magic, version, codec, aead, reserved, key_version) == (b"DWHC", 1, 1, 1, 0, 1)
    assert nonce == _b(inputs["frame_nonce"])
    aad = sealed[:28] + _b(stored["text_chunk_id"])
    payload = AESGCM(_b(stored["enc_key"])).decrypt(nonce, sealed[28:], aad)
    assert zstandard.ZstdDecompressor().decompress(payload) == _b(inputs["text"])
    assert plain_size == len(_b(inputs["text"]))
    raw = _b(stored["random_frame_aes"])
    assert raw[5] == 0 and len(raw) == 28 + len(_b(inputs["random"])) + 16

    shard = _b(stored["shards_ec_1_1"][1])
    assert shard[:9] == b"DWHS\x01\x00\x01\x01\x01"
    assert struct.unpack(">Q", shard[88:96])[0] == xxhash.xxh3_64_intdigest(shard[:88])
    assert shard[96:] == _b(stored["text_frame_aes"])

    journal = _b(stored["journal"])
    size = struct.unpack(">I", journal[8:12])[0]
    assert journal[:6] == b"DWHJ\x01\x01"
    assert struct.unpack(">Q", journal[12:20])[0] == xxhash.xxh3_64_intdigest(journal[:12] + journal[20 : 20 + size])


def test_chunk_boundaries_are_stable(stored: dict[str, Any], gen: ModuleType) -> None:
    """Boundaries are not part of the on-disk format, but changing them silently breaks dedup."""
    params = ChunkerParams(*stored["inputs"]["chunker"])
    lengths = [len(c) for c in chunk_all(gen.CHUNKER_INPUT, params)]
    assert lengths == stored["chunk_lengths"]
