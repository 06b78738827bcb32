"""A writer process for ``test_crash.py``, meant to be SIGKILLed at a random point.

    python crash_writer.py ROOT SEED mixed     many puts (varied sizes, duplicates, overwrites)
                                               and deletes, forever
    python crash_writer.py ROOT SEED large     one 30 MiB object, streamed in 1 MiB writes
    python crash_writer.py ROOT SEED journal-kill N
                                               as ``mixed``, but the process SIGKILLs itself
                                               right after the N-th journal append returns:
                                               the operation is durable in the journal, its
                                               database transaction never commits

Protocol on stdout, one line each, flushed at once (the test reads it after the kill):

    READY                  the data directory is open
    PUT <key> <sha256>     a put starts (the object may or may not exist if killed before ACK)
    ACK <key> <sha256>     put_object / finish returned: the object is acknowledged
    DELSTART <key>         a delete starts
    DEL <key>              delete_object returned
    WROTE <MiB>            (large) that many MiB were handed to the upload
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from dwh_testkit import BUCKET, open_wh, options, text_bytes

from datawarehouse.config import EngineConfig
from datawarehouse.service.warehouse import Warehouse

KEYS = [f"obj-{i:02d}" for i in range(40)]
SIZES = [0, 1, 100, 3000, 4096, 4097, 20_000, 90_000, 300_000, 1_000_000, 2_500_000]
WEIGHTS = [1, 1, 3, 3, 1, 1, 3, 4, 4, 2, 1]
LARGE_KEY = "large/object"
LARGE_SIZE = 30 * 1024 * 1024
# Bigger chunks for the large object: it is about atomicity, not about chunk counts.
LARGE_CHUNKS = EngineConfig(
    chunk_min_size=256 * 1024, chunk_avg_size=1024 * 1024, chunk_max_size=4 * 1024 * 1024, inline_max_size=4 * 1024
)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def content(rng: random.Random, pool: list[bytes]) -> bytes:
    roll = rng.random()
    if pool and roll < 0.25:
        return rng.choice(pool)  # a duplicate of earlier content (dedup across keys)
    size = rng.choices(SIZES, WEIGHTS)[0]
    data = text_bytes(rng, size) if roll < 0.5 else rng.randbytes(size)
    if size >= 20_000 and rng.random() < 0.3:
        pool.append(data)
    return data


def mixed(wh: Warehouse, seed: int) -> None:
    rng = random.Random(seed)
    pool = [rng.randbytes(200_000), text_bytes(rng, 150_000)]
    present = {s.key for s in wh.iter_objects(BUCKET)}
    while True:
        if present and rng.random() < 0.15:
            key = rng.choice(sorted(present))
            say(f"DELSTART {key}")
            wh.delete_object(BUCKET, key)
            present.discard(key)
            say(f"DEL {key}")
            continue
        key = rng.choice(KEYS)
        data = content(rng, pool)
        sha = hashlib.sha256(data).hexdigest()
        say(f"PUT {key} {sha}")
        wh.put_object(BUCKET, key, data, md5_etag=True)
        present.add(key)
        say(f"ACK {key} {sha}")


def large(wh: Warehouse, seed: int) -> None:
    data = random.Random(seed).randbytes(LARGE_SIZE)
    sha = hashlib.sha256(data).hexdigest()
    say(f"PUT {LARGE_KEY} {sha}")
    upload = wh.open_upload(BUCKET, LARGE_KEY, md5_etag=True)
    step = 1024 * 1024
    for i in range(0, LARGE_SIZE, step):
        upload.write(data[i : i + step])
        say(f"WROTE {(i + step) // step}")
    upload.finish()
    say(f"ACK {LARGE_KEY} {sha}")


def die_after_journal_appends(wh: Warehouse, count: int) -> None:
    """Wrap the real journal append: once ``count`` appends have returned (fsynced on the disks),
    SIGKILL this process before the committer can commit the database transaction."""
    journal = wh.engine.journal
    real = journal.append
    done = 0

    def append(records: list[tuple[int, bytes]]) -> list[tuple[str, int]]:
        nonlocal done
        out = real(records)
        done += 1
        if done >= count:
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    journal.append = append  # type: ignore[method-assign]


def main() -> None:
    root, seed, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    wh = Warehouse.open(root, options(config=LARGE_CHUNKS)) if mode == "large" else open_wh(root)
    if mode == "journal-kill":
        die_after_journal_appends(wh, int(sys.argv[4]))
    say("READY")
    if mode == "large":
        large(wh, seed)
        wh.close()
    else:
        mixed(wh, seed)


if __name__ == "__main__":
    main()
