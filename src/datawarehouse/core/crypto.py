"""Keys and sealing: master key, wrapped domain secrets, per-domain keys, sealed chunk frames.

Layouts are in format.md ("Keys and identifiers", "Sealed chunk frame"). The master key only
wraps domain secrets; everything else uses keys derived from a domain secret, so a tenant's data
can be crypto-shredded by forgetting one secret, and rotating the master key rewraps 32-byte
secrets instead of re-encrypting data.

Nothing in this module puts key bytes into an exception message or a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import os
import struct
from dataclasses import dataclass
from typing import Any, Final

from argon2.exceptions import HashingError
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from datawarehouse.core import compression, digest
from datawarehouse.errors import (
    AuthenticationFailed,
    CorruptFrame,
    IntegrityError,
    InvalidInput,
    KeyError_,
    WrongKey,
)

AES_256_GCM: Final = 1
CHACHA20_POLY1305: Final = 2
AEADS: Final = frozenset({AES_256_GCM, CHACHA20_POLY1305})

KEY_SIZE: Final = 32
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
FRAME_MAGIC: Final = b"DWHC"
FRAME_VERSION: Final = 1
FRAME_HEADER_SIZE: Final = 28
MIN_FRAME_SIZE: Final = FRAME_HEADER_SIZE + TAG_SIZE
MAX_PLAIN_SIZE: Final = 0xFFFFFFFF

_FRAME_HEADER = struct.Struct(">4sBBBBII12s")
_U32_PAIR = struct.Struct(">II")

_WRAP_AAD: Final = b"dwh v1 domain secret"
_INFO_SEAL: Final = b"dwh v1 chunk seal"
_INFO_ID: Final = b"dwh v1 chunk id"
_INFO_JOURNAL: Final = b"dwh v1 journal"

_U32_MAX: Final = 0xFFFFFFFF


# --- master key --------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class MasterKey:
    """The 32-byte key that wraps domain secrets. Its ``repr`` names it by key id only."""

    key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != KEY_SIZE:
            raise KeyError_(f"master key must be {KEY_SIZE} bytes")

    @property
    def key_id(self) -> str:
        return digest.master_key_id(self.key)

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"

    __str__ = __repr__


def generate_master_key() -> MasterKey:
    return MasterKey(os.urandom(KEY_SIZE))


@dataclass(frozen=True)
class Argon2Params:
    """Argon2id parameters for a passphrase-derived master key, stored next to it (not secret).

    The defaults (t=3, 64 MiB, p=2) follow RFC 9106's second recommended option scaled to a
    small server; they are stored so a later change of defaults never locks out an old datadir.
    """

    salt: bytes
    time_cost: int = 3
    memory_cost_kib: int = 65536
    parallelism: int = 2

    def to_json(self) -> dict[str, Any]:
        return {
            "salt": base64.b64encode(self.salt).decode("ascii"),
            "time_cost": self.time_cost,
            "memory_cost_kib": self.memory_cost_kib,
            "parallelism": self.parallelism,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Argon2Params:
        """Parse :meth:`to_json` output; anything malformed is a ``KeyError_`` naming the field."""
        if not isinstance(d, dict):
            raise KeyError_("argon2 parameters: expected a JSON object")
        salt_text = d.get("salt")
        if not isinstance(salt_text, str):
            raise KeyError_("argon2 parameters: salt must be a base64 string")
        try:
            salt = base64.b64decode(salt_text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KeyError_("argon2 parameters: salt is not valid base64") from exc
        values: dict[str, int] = {}
        for name in ("time_cost", "memory_cost_kib", "parallelism"):
            value = d.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise KeyError_(f"argon2 parameters: {name} must be a positive integer")
            values[name] = value
        return cls(salt=salt, **values)


def new_argon2_params() -> Argon2Params:
    return Argon2Params(salt=os.urandom(16))


def master_key_from_passphrase(passphrase: str, params: Argon2Params) -> MasterKey:
    """Argon2id(passphrase, salt, t, m, p) -> 32 bytes. Deliberately slow (that is the point)."""
    try:
        raw = hash_secret_raw(
            secret=passphrase.encode("utf-8"),
            salt=params.salt,
            time_cost=params.time_cost,
            memory_cost=params.memory_cost_kib,
            parallelism=params.parallelism,
            hash_len=KEY_SIZE,
            type=Type.ID,
        )
    except (HashingError, ValueError, TypeError) as exc:
        # argon2's messages describe parameters (e.g. "Salt is too short"), never the passphrase.
        raise InvalidInput(f"argon2 parameters rejected: {exc}") from exc
    return MasterKey(raw)


# --- wrapped domain secrets --------------------------------------------------------------------


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= _U32_MAX:
        raise InvalidInput(f"{name} must fit in 32 bits (got {value})")


def _wrap_aad(domain_id: int, key_version: int) -> bytes:
    _check_u32("domain id", domain_id)
    _check_u32("key version", key_version)
    return _WRAP_AAD + _U32_PAIR.pack(domain_id, key_version)


def wrap_secret(
    master: MasterKey,
    domain_id: int,
    key_version: int,
    secret: bytes,
    *,
    nonce: bytes | None = None,
) -> bytes:
    """``nonce ‖ AES-256-GCM(master, secret)`` with the domain id and key version in the AAD, so
    a wrapped secret copied onto another domain or version fails to unwrap.

    ``nonce`` is for golden vectors only; leave it ``None`` (random) everywhere else.
    """
    if len(secret) != KEY_SIZE:
        raise InvalidInput(f"domain secret must be {KEY_SIZE} bytes (got {len(secret)})")
    aad = _wrap_aad(domain_id, key_version)
    if nonce is None:
        nonce = os.urandom(NONCE_SIZE)
    elif len(nonce) != NONCE_SIZE:
        raise InvalidInput(f"nonce must be {NONCE_SIZE} bytes")
    return nonce + _aead(AES_256_GCM, master.key).encrypt(nonce, secret, aad)


def unwrap_secret(master: MasterKey, domain_id: int, key_version: int, wrapped: bytes) -> bytes:
    """Inverse of :func:`wrap_secret`; a wrong master key (or a moved secret) raises ``WrongKey``."""
    aad = _wrap_aad(domain_id, key_version)
    if len(wrapped) != NONCE_SIZE + KEY_SIZE + TAG_SIZE:
        raise KeyError_(f"wrapped domain secret must be {NONCE_SIZE + KEY_SIZE + TAG_SIZE} bytes (got {len(wrapped)})")
    try:
        return _aead(AES_256_GCM, master.key).decrypt(wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:], aad)
    except InvalidTag:
        raise WrongKey(
            f"domain {domain_id} key version {key_version}: secret does not unwrap under master key "
            f"{master.key_id} (wrong key or passphrase)"
        ) from None


# --- small secrets sealed under the master key ---------------------------------------------------


def seal_under_master(
    master: MasterKey, label: bytes, aad: bytes, plaintext: bytes, *, nonce: bytes | None = None
) -> bytes:
    """``nonce ‖ AES-256-GCM(HKDF-SHA256(master, info=label), plaintext, aad)``.

    For small secrets that must survive the loss of every domain key and be useless without the
    master key (access-key secrets). ``label`` separates uses (each gets its own derived key);
    ``aad`` binds the ciphertext to what it belongs to (an access key id), so a ciphertext moved
    to another row fails to open. ``nonce`` is for golden vectors only.
    """
    if nonce is None:
        nonce = os.urandom(NONCE_SIZE)
    elif len(nonce) != NONCE_SIZE:
        raise InvalidInput(f"nonce must be {NONCE_SIZE} bytes")
    return nonce + _aead(AES_256_GCM, _hkdf(master.key, label)).encrypt(nonce, plaintext, aad)


def open_under_master(master: MasterKey, label: bytes, aad: bytes, sealed: bytes) -> bytes:
    """Inverse of :func:`seal_under_master`; altered bytes, another ``aad`` or another master
    key raise ``AuthenticationFailed`` (the message names the master key id only)."""
    if len(sealed) < NONCE_SIZE + TAG_SIZE:
        raise CorruptFrame("sealed secret: too short")
    try:
        return _aead(AES_256_GCM, _hkdf(master.key, label)).decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], aad)
    except InvalidTag:
        raise AuthenticationFailed(f"sealed secret does not open under master key {master.key_id}") from None


# --- domain keys -------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class DomainKeys:
    """The keys derived from one domain secret at one key version. ``repr`` shows no key bytes."""

    domain_id: int
    key_version: int
    enc_key: bytes
    id_key: bytes
    journal_key: bytes
    aead: int = AES_256_GCM

    def __repr__(self) -> str:
        return f"DomainKeys(domain_id={self.domain_id}, key_version={self.key_version}, aead={self.aead})"

    __str__ = __repr__


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=KEY_SIZE, salt=None, info=info).derive(secret)


def derive_domain_keys(domain_id: int, key_version: int, secret: bytes, aead: int = AES_256_GCM) -> DomainKeys:
    """HKDF-SHA256 the secret into independent keys for sealing, chunk ids and the journal."""
    _check_u32("domain id", domain_id)
    _check_u32("key version", key_version)
    if len(secret) != KEY_SIZE:
        raise InvalidInput(f"domain secret must be {KEY_SIZE} bytes (got {len(secret)})")
    if aead not in AEADS:
        raise InvalidInput(f"unknown AEAD id {aead}")
    return DomainKeys(
        domain_id=domain_id,
        key_version=key_version,
        enc_key=_hkdf(secret, _INFO_SEAL),
        id_key=_hkdf(secret, _INFO_ID),
        journal_key=_hkdf(secret, _INFO_JOURNAL),
        aead=aead,
    )


# --- sealed chunk frames -----------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _aead(aead: int, key: bytes) -> AESGCM | ChaCha20Poly1305:
    """AEAD objects are cached: building one runs the key schedule (measurable per 1 MiB chunk).

    The objects are immutable and safe to share between threads.
    """
    if aead == AES_256_GCM:
        return AESGCM(key)
    if aead == CHACHA20_POLY1305:
        return ChaCha20Poly1305(key)
    raise CorruptFrame(f"unknown AEAD id {aead}")


def _select_key(keys: DomainKeys, key: str) -> bytes:
    if key == "enc":
        return keys.enc_key
    if key == "journal":
        return keys.journal_key
    raise InvalidInput(f"key must be 'enc' or 'journal' (got {key!r})")


def _check_chunk_id(chunk_id: bytes) -> None:
    if len(chunk_id) != digest.CHUNK_ID_SIZE:
        raise InvalidInput(f"chunk id must be {digest.CHUNK_ID_SIZE} bytes (got {len(chunk_id)})")


def seal_chunk(
    keys: DomainKeys,
    chunk_id: bytes,
    plaintext: bytes | memoryview,
    level: int | None = 3,
    *,
    nonce: bytes | None = None,
    key: str = "enc",
) -> bytes:
    """Compress (when it pays) and encrypt a chunk into a sealed frame.

    The AAD binds the header and the chunk id, so a frame cannot be replayed under another id,
    another key version or with its compression flag or size flipped. ``key="journal"`` seals a
    journal record; its 32-byte "chunk id" is the caller's record id. ``nonce`` is for golden
    vectors only.
    """
    _check_chunk_id(chunk_id)
    enc_key = _select_key(keys, key)
    plain_size = plaintext.nbytes if isinstance(plaintext, memoryview) else len(plaintext)
    if plain_size > MAX_PLAIN_SIZE:
        raise InvalidInput(f"chunk of {plain_size} bytes exceeds the frame limit of {MAX_PLAIN_SIZE}")
    if nonce is None:
        nonce = os.urandom(NONCE_SIZE)
    elif len(nonce) != NONCE_SIZE:
        raise InvalidInput(f"nonce must be {NONCE_SIZE} bytes")
    # level None: compression disabled (``engine.compression_level = 0``).
    codec, payload = (compression.NONE, plaintext) if level is None else compression.compress_view(plaintext, level)
    header = _FRAME_HEADER.pack(FRAME_MAGIC, FRAME_VERSION, codec, keys.aead, 0, keys.key_version, plain_size, nonce)
    sealed = _aead(keys.aead, enc_key).encrypt(nonce, payload, header + chunk_id)
    return b"".join((header, sealed))


@dataclass(frozen=True)
class _FrameHeader:
    codec: int
    aead: int
    key_version: int
    plain_size: int
    nonce: bytes


def _parse_frame_header(frame: bytes | memoryview) -> _FrameHeader:
    size = frame.nbytes if isinstance(frame, memoryview) else len(frame)
    if size < MIN_FRAME_SIZE:
        raise CorruptFrame(f"sealed frame of {size} bytes is shorter than the minimum {MIN_FRAME_SIZE}")
    magic, version, codec, aead, reserved, key_version, plain_size, nonce = _FRAME_HEADER.unpack_from(frame)
    if magic != FRAME_MAGIC:
        raise CorruptFrame("sealed frame: bad magic")
    if version != FRAME_VERSION:
        raise CorruptFrame(f"sealed frame: unsupported format version {version}")
    if codec not in (compression.NONE, compression.ZSTD):
        raise CorruptFrame(f"sealed frame: unknown compression {codec}")
    if aead not in AEADS:
        raise CorruptFrame(f"sealed frame: unknown AEAD id {aead}")
    if reserved != 0:
        raise CorruptFrame("sealed frame: reserved byte is not zero")
    return _FrameHeader(codec, aead, key_version, plain_size, nonce)


def frame_plain_size(frame: bytes | memoryview) -> int:
    """The plaintext size recorded in a sealed frame's header (unauthenticated until opened)."""
    return _parse_frame_header(frame).plain_size


def frame_key_version(frame: bytes | memoryview) -> int:
    """The domain key version a frame was sealed under, to pick the keys for :func:`open_chunk`."""
    return _parse_frame_header(frame).key_version


def open_chunk(
    keys: DomainKeys,
    chunk_id: bytes,
    frame: bytes | memoryview,
    *,
    key: str = "enc",
    verify_id: bool = True,
) -> bytes:
    """Authenticate, decrypt and decompress a sealed frame; then (``verify_id``, ``key="enc"``)
    check that the plaintext really hashes to ``chunk_id``.

    Every failure is an ``IntegrityError``: ``CorruptFrame`` (unparseable), ``AuthenticationFailed``
    (tag, i.e. altered bytes or wrong key/id) or plain ``IntegrityError`` (id mismatch).
    """
    _check_chunk_id(chunk_id)
    dec_key = _select_key(keys, key)
    header = _parse_frame_header(frame)
    if header.key_version != keys.key_version:
        raise AuthenticationFailed(
            f"frame sealed under key version {header.key_version}, keys are version {keys.key_version}"
        )
    view = memoryview(frame)
    try:
        payload = _aead(header.aead, dec_key).decrypt(
            header.nonce, view[FRAME_HEADER_SIZE:], bytes(view[:FRAME_HEADER_SIZE]) + chunk_id
        )
    except InvalidTag:
        raise AuthenticationFailed(f"sealed frame of chunk {bytes(chunk_id).hex()} failed authentication") from None
    plaintext = compression.decompress(header.codec, payload, header.plain_size)
    if verify_id and key == "enc":
        actual = digest.chunk_id(keys.id_key, plaintext)
        if not hmac.compare_digest(actual, chunk_id):
            raise IntegrityError(f"chunk {bytes(chunk_id).hex()}: plaintext does not match its id")
    return plaintext
