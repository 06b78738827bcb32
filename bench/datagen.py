"""Deterministic, streamable benchmark inputs: random bytes and compressible text.

Both sources hand out their bytes as a stream of pieces (1 MiB by default) computed on the fly,
so a multi-GiB input never sits in memory, and the same (kind, seed, size) always gives the same
bytes — in this run, in the next run, on another machine.

* ``random``: the AES-256-CTR keystream of a key derived from the seed. Piece ``i`` starts at
  counter block ``i << 32`` so any piece can be computed on its own. The keystream never repeats,
  so no content-defined chunk of it repeats either (nothing dedups by accident).
* ``text``: line-structured text — sentences of pseudo-words drawn from a seeded vocabulary with
  a Zipf-like frequency, interleaved with log lines carrying timestamps, levels, request ids and
  numbers — that zstd-3 compresses about 3x. A 32 MiB pool of such text is built once per seed
  (a few seconds); a piece is 64 slices of 16 KiB taken at seeded random line starts in the
  pool, each slice preceded by a unique ``#<piece>.<slice>`` marker. The marker every 16 KiB
  keeps every chunk (>= 256 KiB) unique, and slicing at random offsets of a large pool keeps
  zstd from finding long repeats that real text would not have. Generating it costs about one
  memcpy per byte.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
from collections.abc import Iterator

import xxhash
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MiB = 1024 * 1024
PIECE_SIZE = MiB

_TEXT_POOL_SIZE = 32 * MiB
_TEXT_SLICE = 16 * 1024
_TEXT_VOCABULARY = 16_000
_TEXT_ZIPF = 1.2
_TEXT_LOG_SHARE = 0.4


def _seed_int(kind: str, seed: str) -> int:
    return int.from_bytes(hashlib.sha256(f"dwh-bench {kind} {seed}".encode()).digest()[:8], "big")


class Source:
    """``size`` bytes of one kind, optionally after a ``prefix`` (the one-byte-shift test)."""

    kind = "abstract"

    def __init__(self, seed: str, size: int, *, piece_size: int = PIECE_SIZE, prefix: bytes = b"") -> None:
        if size < 0 or piece_size <= 0:
            raise ValueError("size must be >= 0 and piece_size > 0")
        self.seed = seed
        self.size = size
        self.piece_size = piece_size
        self.prefix = prefix

    @property
    def total_size(self) -> int:
        return len(self.prefix) + self.size

    def piece(self, index: int, length: int) -> bytes:
        """Piece ``index`` (``length`` <= ``piece_size``); independent of every other piece."""
        raise NotImplementedError

    def pieces(self) -> Iterator[bytes]:
        if self.prefix:
            yield self.prefix
        full, rest = divmod(self.size, self.piece_size)
        for index in range(full):
            yield self.piece(index, self.piece_size)
        if rest:
            yield self.piece(full, rest)

    def digest(self) -> str:
        """xxh3-128 of the whole stream (computed by generating it once more)."""
        hasher = xxhash.xxh3_128()
        for piece in self.pieces():
            hasher.update(piece)
        return hasher.hexdigest()

    def describe(self) -> str:
        shift = f" after a {len(self.prefix)}-byte prefix" if self.prefix else ""
        return f"{self.kind}(seed={self.seed!r}, {self.size} bytes{shift})"


class RandomSource(Source):
    kind = "random"

    def __init__(self, seed: str, size: int, *, piece_size: int = PIECE_SIZE, prefix: bytes = b"") -> None:
        if piece_size > (1 << 32) * 16:
            raise ValueError("piece_size too large for the counter layout")
        super().__init__(seed, size, piece_size=piece_size, prefix=prefix)
        self._key = hashlib.sha256(f"dwh-bench random {seed}".encode()).digest()
        self._zeros = bytes(piece_size)

    def piece(self, index: int, length: int) -> bytes:
        counter = (index << 32).to_bytes(16, "big")
        enc = Cipher(algorithms.AES(self._key), modes.CTR(counter)).encryptor()
        zeros = self._zeros if length == self.piece_size else bytes(length)
        return enc.update(zeros)


# --- text ----------------------------------------------------------------------------------------


def _vocabulary(rng: random.Random, count: int) -> list[str]:
    consonants = "bcdfghjklmnprstvwxyz"
    vowels = "aeiou"
    syllables = [c + v for c in consonants for v in vowels]
    syllables += [c + v + e for c in consonants[:8] for v in vowels for e in "nrst"]
    words: set[str] = set()
    while len(words) < count:
        n = rng.choice((1, 2, 2, 2, 3, 3, 4))
        words.add("".join(rng.choice(syllables) for _ in range(n)))
    ordered = sorted(words)
    rng.shuffle(ordered)
    return ordered


@functools.lru_cache(maxsize=2)
def text_pool(seed: str, size: int = _TEXT_POOL_SIZE) -> bytes:
    """``size`` bytes of line-structured text (prose and log lines), deterministic per seed."""
    rng = random.Random(_seed_int("text pool", seed))
    vocab = _vocabulary(rng, _TEXT_VOCABULARY)
    weights = list(itertools.accumulate(1.0 / (rank + 1) ** _TEXT_ZIPF for rank in range(len(vocab))))
    levels = ["INFO"] * 8 + ["DEBUG"] * 4 + ["WARN"] * 2 + ["ERROR"]
    services = rng.sample(vocab[:2000], 24)
    out: list[bytes] = []
    total = 0
    while total < size:
        words = rng.choices(vocab, cum_weights=weights, k=100_000)
        lines: list[str] = []
        pos = 0
        while pos < len(words) - 20:
            if rng.random() >= _TEXT_LOG_SHARE:
                n = rng.randint(4, 18)
                line = words[pos].capitalize() + " " + " ".join(words[pos + 1 : pos + n]) + rng.choice(".....?!;:")
            else:
                n = rng.randint(2, 6)
                r = rng.getrandbits(64)
                line = (
                    f"{r % 24:02d}:{(r >> 5) % 60:02d}:{(r >> 11) % 60:02d}.{(r >> 17) % 1000:03d} "
                    f"{levels[(r >> 27) % 15]} {services[(r >> 31) % 24]} req={r >> 32:08x} "
                    f"{' '.join(words[pos : pos + n])} ms={(r >> 13) % 5000} n={(r >> 20) % 1_000_000}"
                )
            pos += n
            lines.append(line)
        block = ("\n".join(lines) + "\n").encode()
        out.append(block)
        total += len(block)
    return b"".join(out)[:size]


class TextSource(Source):
    kind = "text"

    def __init__(self, seed: str, size: int, *, piece_size: int = PIECE_SIZE, prefix: bytes = b"") -> None:
        super().__init__(seed, size, piece_size=piece_size, prefix=prefix)
        self._pool = text_pool(seed)
        self._seed = _seed_int("text pieces", seed)

    def piece(self, index: int, length: int) -> bytes:
        pool = self._pool
        rng = random.Random(self._seed + index)
        limit = len(pool) - _TEXT_SLICE - 4096
        parts: list[bytes] = []
        produced = 0
        slot = 0
        while produced < length:
            start = pool.index(b"\n", rng.randrange(limit)) + 1
            marker = b"#%d.%d " % (index, slot)
            parts.append(marker)
            parts.append(pool[start : start + _TEXT_SLICE])
            produced += len(marker) + _TEXT_SLICE
            slot += 1
        data = b"".join(parts)
        return data if len(data) == length else data[:length]


def make_source(kind: str, seed: str, size: int, *, piece_size: int = PIECE_SIZE, prefix: bytes = b"") -> Source:
    if kind == "random":
        return RandomSource(seed, size, piece_size=piece_size, prefix=prefix)
    if kind == "text":
        return TextSource(seed, size, piece_size=piece_size, prefix=prefix)
    raise ValueError(f"unknown data kind {kind!r}")
