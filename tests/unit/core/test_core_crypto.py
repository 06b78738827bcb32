from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datawarehouse.core import compression, crypto, digest
from datawarehouse.core.crypto import DomainKeys, open_chunk, seal_chunk
from datawarehouse.errors import (
    AuthenticationFailed,
    CorruptFrame,
    IntegrityError,
    InvalidInput,
    KeyError_,
    WrongKey,
)

TEXT = b"DataWarehouse stores objects as content-defined chunks. " * 500
RANDOM = os.urandom(70_000)
FAST_ARGON2 = {"time_cost": 1, "memory_cost_kib": 64, "parallelism": 1}


def _seal(keys: DomainKeys, data: bytes) -> tuple[bytes, bytes]:
    cid = digest.chunk_id(keys.id_key, data)
    return cid, seal_chunk(keys, cid, data)


# --- sealing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("aead", [crypto.AES_256_GCM, crypto.CHACHA20_POLY1305])
@pytest.mark.parametrize("data", [TEXT, RANDOM, b"", b"x"], ids=["text", "random", "empty", "one"])
def test_seal_open_round_trip(aead: int, data: bytes) -> None:
    keys = crypto.derive_domain_keys(3, 2, os.urandom(32), aead=aead)
    cid, frame = _seal(keys, data)
    assert frame[:4] == b"DWHC" and frame[4] == 1 and frame[6] == aead and frame[7] == 0
    assert int.from_bytes(frame[8:12], "big") == 2
    assert crypto.frame_plain_size(frame) == len(data)
    assert crypto.frame_key_version(frame) == 2
    expected_codec = compression.ZSTD if data is TEXT else compression.NONE
    assert frame[5] == expected_codec
    if data is TEXT:
        assert len(frame) < len(data) // 10
    else:
        assert len(frame) == crypto.FRAME_HEADER_SIZE + len(data) + crypto.TAG_SIZE
    assert open_chunk(keys, cid, frame) == data
    assert open_chunk(keys, cid, memoryview(frame)) == data
    assert open_chunk(keys, cid, bytearray(frame)) == data  # type: ignore[arg-type]


def test_seal_accepts_memoryview_and_random_nonces(keys: DomainKeys) -> None:
    cid = digest.chunk_id(keys.id_key, RANDOM)
    f1 = seal_chunk(keys, cid, memoryview(RANDOM))
    f2 = seal_chunk(keys, cid, RANDOM)
    assert f1 != f2  # fresh nonce each time
    assert open_chunk(keys, cid, f1) == open_chunk(keys, cid, f2) == RANDOM


def test_journal_key_seals_records_under_a_record_id(keys: DomainKeys) -> None:
    record_id = os.urandom(32)
    payload = b'{"op":"put","key":"a"}'
    frame = seal_chunk(keys, record_id, payload, key="journal")
    assert open_chunk(keys, record_id, frame, key="journal") == payload
    with pytest.raises(AuthenticationFailed):
        open_chunk(keys, record_id, frame)  # not the chunk key
    with pytest.raises(InvalidInput):
        seal_chunk(keys, record_id, payload, key="master")


def test_wrong_chunk_id_raises(keys: DomainKeys) -> None:
    cid, frame = _seal(keys, TEXT)
    other = bytes(b ^ 1 for b in cid)
    with pytest.raises(AuthenticationFailed):
        open_chunk(keys, other, frame)
    with pytest.raises(InvalidInput):
        open_chunk(keys, cid[:31], frame)


def test_id_mismatch_is_detected(keys: DomainKeys) -> None:
    """A frame sealed under an id that is not its content's id opens only without verification."""
    wrong_id = os.urandom(32)
    frame = seal_chunk(keys, wrong_id, TEXT)
    with pytest.raises(IntegrityError) as info:
        open_chunk(keys, wrong_id, frame)
    assert type(info.value) is IntegrityError
    assert open_chunk(keys, wrong_id, frame, verify_id=False) == TEXT


def test_wrong_keys_raise(keys: DomainKeys, chacha_keys: DomainKeys) -> None:
    cid, frame = _seal(keys, RANDOM)
    stranger = crypto.derive_domain_keys(1, 1, os.urandom(32))
    with pytest.raises(AuthenticationFailed):
        open_chunk(stranger, cid, frame)
    # the frame names its AEAD; the domain's current AEAD only matters for new seals
    assert open_chunk(chacha_keys, cid, frame) == RANDOM
    newer = crypto.derive_domain_keys(1, 2, bytes(range(32, 64)))
    with pytest.raises(AuthenticationFailed):
        open_chunk(newer, cid, frame)


@pytest.fixture(scope="module")
def small_frames(keys: DomainKeys) -> list[tuple[bytes, bytes]]:
    return [_seal(keys, b"hello hello hello hello hello hello hello!" * 3), _seal(keys, os.urandom(60))]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 1), pos=st.integers(0, 10_000), flip=st.integers(1, 255))
def test_any_flipped_byte_is_detected(
    keys: DomainKeys, small_frames: list[tuple[bytes, bytes]], which: int, pos: int, flip: int
) -> None:
    cid, frame = small_frames[which]
    tampered = bytearray(frame)
    tampered[pos % len(frame)] ^= flip
    with pytest.raises(IntegrityError):
        open_chunk(keys, cid, bytes(tampered))


def test_truncated_and_extended_frames_are_detected(keys: DomainKeys) -> None:
    cid, frame = _seal(keys, TEXT)
    for cut in range(len(frame)):
        with pytest.raises(IntegrityError):
            open_chunk(keys, cid, frame[:cut])
    with pytest.raises(IntegrityError):
        open_chunk(keys, cid, frame + b"\x00")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.one_of(
        st.binary(max_size=200),
        # past the header checks, so the AEAD and size paths see garbage too
        st.tuples(
            st.integers(0, 1),
            st.sampled_from([1, 2]),
            st.integers(0, 2**32 - 1),
            st.binary(min_size=28, max_size=200),
        ).map(lambda t: b"DWHC\x01" + bytes([t[0], t[1], 0]) + b"\x00\x00\x00\x01" + t[2].to_bytes(4, "big") + t[3]),
    )
)
def test_open_garbage_raises_only_integrity_errors(keys: DomainKeys, data: bytes) -> None:
    with pytest.raises(IntegrityError):
        open_chunk(keys, bytes(32), data)
    try:
        crypto.frame_plain_size(data)
    except CorruptFrame:
        pass


def test_seal_rejects_bad_arguments(keys: DomainKeys) -> None:
    with pytest.raises(InvalidInput):
        seal_chunk(keys, b"short", b"x")
    with pytest.raises(InvalidInput):
        seal_chunk(keys, bytes(32), b"x", nonce=b"123")
    with pytest.raises(InvalidInput):
        seal_chunk(keys, bytes(32), b"x", level=0)


def test_fixed_nonce_is_deterministic(keys: DomainKeys) -> None:
    cid = digest.chunk_id(keys.id_key, TEXT)
    nonce = bytes(range(12))
    assert seal_chunk(keys, cid, TEXT, nonce=nonce) == seal_chunk(keys, cid, TEXT, nonce=nonce)


# --- keys --------------------------------------------------------------------------------------


def test_derive_domain_keys() -> None:
    secret = os.urandom(32)
    a = crypto.derive_domain_keys(1, 1, secret)
    assert a == crypto.derive_domain_keys(1, 1, secret)
    assert len({a.enc_key, a.id_key, a.journal_key}) == 3
    assert all(len(k) == 32 for k in (a.enc_key, a.id_key, a.journal_key))
    assert crypto.derive_domain_keys(1, 1, os.urandom(32)).enc_key != a.enc_key
    bad_args: list[tuple[int, int, bytes, int]] = [
        (1, 1, b"short", crypto.AES_256_GCM),
        (-1, 1, secret, crypto.AES_256_GCM),
        (1, 2**32, secret, crypto.AES_256_GCM),
        (1, 1, secret, 9),
    ]
    for domain_id, key_version, bad_secret, aead in bad_args:
        with pytest.raises(InvalidInput):
            crypto.derive_domain_keys(domain_id, key_version, bad_secret, aead)


def test_wrap_unwrap_round_trip() -> None:
    master = crypto.generate_master_key()
    secret = os.urandom(32)
    wrapped = crypto.wrap_secret(master, 7, 3, secret)
    assert len(wrapped) == 12 + 32 + 16
    assert crypto.unwrap_secret(master, 7, 3, wrapped) == secret
    assert crypto.wrap_secret(master, 7, 3, secret) != wrapped  # random nonce


def test_unwrap_with_wrong_key_or_context_raises_wrong_key() -> None:
    master = crypto.generate_master_key()
    secret = os.urandom(32)
    wrapped = crypto.wrap_secret(master, 7, 3, secret)
    other = crypto.generate_master_key()
    with pytest.raises(WrongKey) as info:
        crypto.unwrap_secret(other, 7, 3, wrapped)
    text = str(info.value)
    for key in (master.key, other.key, secret):
        assert key.hex() not in text and repr(key) not in text
    with pytest.raises(WrongKey):
        crypto.unwrap_secret(master, 8, 3, wrapped)  # moved to another domain
    with pytest.raises(WrongKey):
        crypto.unwrap_secret(master, 7, 4, wrapped)  # replayed as another version
    with pytest.raises(KeyError_):
        crypto.unwrap_secret(master, 7, 3, wrapped[:-1])
    with pytest.raises(InvalidInput):
        crypto.wrap_secret(master, 7, 3, b"short")


def _assert_no_key_material(text: str, *keys: bytes) -> None:
    for key in keys:
        assert key.hex() not in text
        assert key.hex().upper() not in text
        assert repr(key) not in text
        assert str(list(key)) not in text


def test_reprs_hide_key_bytes() -> None:
    master = crypto.generate_master_key()
    keys = crypto.derive_domain_keys(4, 5, os.urandom(32))
    for obj in (master, keys):
        for text in (repr(obj), str(obj), f"{obj}", repr([obj])):
            _assert_no_key_material(text, master.key, keys.enc_key, keys.id_key, keys.journal_key)
    assert master.key_id in repr(master)
    assert "domain_id=4" in repr(keys) and "key_version=5" in repr(keys)


def test_master_key_validation() -> None:
    with pytest.raises(KeyError_):
        crypto.MasterKey(b"short")
    assert len(crypto.generate_master_key().key) == 32
    assert crypto.generate_master_key().key_id != crypto.generate_master_key().key_id


def test_passphrase_key() -> None:
    params = crypto.Argon2Params(salt=bytes(16), **FAST_ARGON2)
    a = crypto.master_key_from_passphrase("correct horse", params)
    assert a == crypto.master_key_from_passphrase("correct horse", params)
    assert a != crypto.master_key_from_passphrase("correct horsf", params)
    salted = crypto.Argon2Params(salt=b"\x01" * 16, **FAST_ARGON2)
    assert a != crypto.master_key_from_passphrase("correct horse", salted)
    with pytest.raises(InvalidInput):
        crypto.master_key_from_passphrase("x", crypto.Argon2Params(salt=b"", **FAST_ARGON2))


def test_argon2_params_json() -> None:
    params = crypto.new_argon2_params()
    assert len(params.salt) == 16
    assert (params.time_cost, params.memory_cost_kib, params.parallelism) == (3, 65536, 2)
    assert crypto.Argon2Params.from_json(params.to_json()) == params
    good = params.to_json()
    for bad in (
        {**good, "salt": "not base64!"},
        {**good, "salt": 5},
        {**good, "time_cost": 0},
        {**good, "parallelism": "2"},
        {**good, "memory_cost_kib": True},
        {k: v for k, v in good.items() if k != "time_cost"},
    ):
        with pytest.raises(KeyError_):
            crypto.Argon2Params.from_json(bad)
