"""Golden vectors for on-disk format v1 (docs/format.md).

Everything is built from fixed inputs (keys, nonces, generation, seeded data), so the output is
fully deterministic. ``format_v1.json`` is the frozen result; ``tests/unit/core/
test_golden_vectors.py`` rebuilds it with the current code and demands byte equality, and also
reads the stored bytes back. Regenerate only for a deliberate format change (which bumps the
format version and adds a *new* vector file): ``python tests/vectors/make_vectors.py``.

The EC shards embed liberasurecode's fragment header, which carries the liberasurecode and ISA-L
version numbers: a pyeclib upgrade that changes them shows up here first.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from datawarehouse.core import crypto, digest, erasure, frame
from datawarehouse.core.chunking import chunk_all
from datawarehouse.records import ChunkerParams

OUT = Path(__file__).with_name("format_v1.json")

MASTER = bytes(range(32))
SECRET = bytes(range(32, 64))
DOMAIN_ID = 1
KEY_VERSION = 1
WRAP_NONCE = bytes.fromhex("000102030405060708090a0b")
FRAME_NONCE = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaab")
GENERATION = 0x0123456789ABCDEF
RECORD_ID = bytes(range(100, 132))
PASSPHRASE = "correct horse battery staple"
ARGON2 = crypto.Argon2Params(salt=bytes(range(16)), time_cost=1, memory_cost_kib=256, parallelism=1)
CHUNKER = ChunkerParams(min_size=256, avg_size=1024, max_size=4096)

TEXT = b"DataWarehouse golden vector: compressible text. " * 64
RANDOM = random.Random(20240601).randbytes(1500)
CHUNKER_INPUT = random.Random(7).randbytes(16 * 1024)
JOURNAL_OP = b'{"op":"put","bucket":1,"key":"a"}'


def _shards(k: int, m: int, chunk_id: bytes, sealed: bytes) -> list[str]:
    coder = erasure.ErasureCoder(k, m)
    return [
        (
            frame.shard_header(coder.scheme, k, m, i, DOMAIN_ID, chunk_id, GENERATION, len(sealed), payload) + payload
        ).hex()
        for i, payload in enumerate(coder.encode(sealed))
    ]


def build_vectors() -> dict[str, Any]:
    """The vector set as JSON-ready data (hex strings for bytes)."""
    master = crypto.MasterKey(MASTER)
    keys = crypto.derive_domain_keys(DOMAIN_ID, KEY_VERSION, SECRET)
    chacha = crypto.derive_domain_keys(DOMAIN_ID, KEY_VERSION, SECRET, aead=crypto.CHACHA20_POLY1305)
    text_id = digest.chunk_id(keys.id_key, TEXT)
    random_id = digest.chunk_id(keys.id_key, RANDOM)
    text_frame = crypto.seal_chunk(keys, text_id, TEXT, nonce=FRAME_NONCE)
    random_frame = crypto.seal_chunk(keys, random_id, RANDOM, nonce=FRAME_NONCE)
    chacha_frame = crypto.seal_chunk(chacha, text_id, TEXT, nonce=FRAME_NONCE)
    journal_frame = crypto.seal_chunk(keys, RECORD_ID, JOURNAL_OP, 1, nonce=FRAME_NONCE, key="journal")
    return {
        "format_version": frame.FORMAT_VERSION,
        "inputs": {
            "master_key": MASTER.hex(),
            "domain_secret": SECRET.hex(),
            "domain_id": DOMAIN_ID,
            "key_version": KEY_VERSION,
            "wrap_nonce": WRAP_NONCE.hex(),
            "frame_nonce": FRAME_NONCE.hex(),
            "generation": GENERATION,
            "record_id": RECORD_ID.hex(),
            "passphrase": PASSPHRASE,
            "argon2": ARGON2.to_json(),
            "chunker": [CHUNKER.min_size, CHUNKER.avg_size, CHUNKER.max_size],
            "text": TEXT.hex(),
            "random": RANDOM.hex(),
            "journal_op": JOURNAL_OP.hex(),
        },
        "master_key_id": master.key_id,
        "passphrase_master_key": crypto.master_key_from_passphrase(PASSPHRASE, ARGON2).key.hex(),
        "wrapped_secret": crypto.wrap_secret(master, DOMAIN_ID, KEY_VERSION, SECRET, nonce=WRAP_NONCE).hex(),
        "enc_key": keys.enc_key.hex(),
        "id_key": keys.id_key.hex(),
        "journal_key": keys.journal_key.hex(),
        "text_chunk_id": text_id.hex(),
        "random_chunk_id": random_id.hex(),
        "text_frame_aes": text_frame.hex(),
        "text_frame_chacha": chacha_frame.hex(),
        "random_frame_aes": random_frame.hex(),
        "shards_ec_4_2": _shards(4, 2, random_id, random_frame),
        "shards_ec_1_1": _shards(1, 1, text_id, text_frame),
        "journal": (
            frame.pack_journal_record(1, b'{"domain":1}') + frame.pack_journal_record(2, RECORD_ID + journal_frame)
        ).hex(),
        "chunk_lengths": [len(c) for c in chunk_all(CHUNKER_INPUT, CHUNKER)],
    }


def main() -> None:
    OUT.write_text(json.dumps(build_vectors(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
