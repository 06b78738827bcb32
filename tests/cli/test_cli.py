"""The ``dwh`` command as a user runs it: a real process per command, a data directory in
``tmp_path``. Output contracts: summaries are single lines; failures are one ``error:`` line on
stderr (never a traceback) with the exit code from ``cli/common.py``.

Every ``dwh`` process costs about a second of imports, so set-up and checks that are not about
the command line go through the Python API (the CLI then reads what the library wrote, and the
library reads what the CLI wrote)."""

from __future__ import annotations

import hashlib
import json
import random
import re
import stat
from pathlib import Path

import pytest

from datawarehouse.cli.common import EXIT_CODES, exit_code
from datawarehouse.config import load_config
from datawarehouse.errors import (
    BucketAlreadyExists,
    BucketNotEmpty,
    ConfigError,
    DataDirError,
    DataDirLocked,
    InvalidInput,
    KeyError_,
    MetadataError,
    NoSuchBucket,
    NotFound,
)
from datawarehouse.service.warehouse import OpenOptions, Warehouse

KiB = 1024


def rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def code(cls: type[BaseException]) -> int:
    return dict(EXIT_CODES)[cls]


def populate(data_dir: Path, objects: dict[str, bytes], buckets: tuple[str, ...] = ("bkt",)) -> None:
    config = load_config(data_dir / "dwh.toml", env={}).engine
    with Warehouse.init(data_dir, options=OpenOptions(config=config)) as wh:
        for b in buckets:
            wh.create_bucket(b)
        for name, data in objects.items():
            bucket, key = name.split("/", 1)
            wh.put_object(bucket, key, data, md5_etag=True)  # as `dwh put` and S3 store them


def open_wh(data_dir: Path) -> Warehouse:
    return Warehouse.open(data_dir, OpenOptions(config=load_config(data_dir / "dwh.toml", env={}).engine))


def test_exit_code_table() -> None:
    assert code(NotFound) == 4
    assert code(InvalidInput) == 2
    assert code(DataDirLocked) == 75
    assert code(KeyError_) == 77
    assert code(ConfigError) == 78
    assert exit_code(NoSuchBucket("x")) == 4
    assert exit_code(BucketAlreadyExists("x")) == exit_code(BucketNotEmpty("x")) == 5
    # Most specific first: a locked directory is a DataDirError, but gets its own code.
    assert exit_code(DataDirLocked("x")) == 75 and exit_code(DataDirError("x")) == 9
    assert exit_code(ConfigError("x")) == 78


def test_put_creates_missing_data_dir(dwh, tmp_path: Path) -> None:
    src = tmp_path / "hello.txt"
    src.write_bytes(b"hello, world\n")
    fresh = tmp_path / "brand" / "new-dir"
    r = dwh("put", src, data_dir_=fresh)
    assert r.rc == 0, r.err
    etag = hashlib.md5(b"hello, world\n").hexdigest()
    assert r.lines == [f"stored default/hello.txt: 13 bytes, etag {etag}, EC(4,2)"]
    assert "created data directory" in r.err and "keys" in r.err
    # Embedded defaults: six disk directories inside the data directory, a private key file.
    disks = sorted(p.name for p in (fresh / "disks").iterdir())
    assert disks == [f"d{i}" for i in range(1, 7)]
    for d in disks:
        assert (fresh / "disks" / d / ".dwh-disk.json").exists()
    assert stat.S_IMODE((fresh / "keys" / "master.key").stat().st_mode) == 0o600
    assert len(json.loads((fresh / "datadir.json").read_text())["disks"]) == 6
    r = dwh("get", "default/hello.txt", data_dir_=fresh)
    assert (r.rc, r.out) == (0, b"hello, world\n")


def test_init_put_get_files_and_stdio(dwh, data_dir: Path, tmp_path: Path) -> None:
    r = dwh("init")
    assert r.rc == 0, r.err
    assert f"initialised {data_dir}" in r.text and "6 disks" in r.text and "EC(4,2)" in r.text
    assert "master.key" in r.text
    r = dwh("bucket", "create", "photos", "--storage-class", "2+1")
    assert (r.rc, r.lines) == (0, ["created bucket photos (EC(2,1))"])
    data = rand(300 * KiB + 7, 1)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    r = dwh("put", src, "photos/album/in.bin")
    assert r.rc == 0, r.err
    assert r.lines == [f"stored photos/album/in.bin: {len(data)} bytes, etag {hashlib.md5(data).hexdigest()}, EC(2,1)"]
    out = tmp_path / "out.bin"
    r = dwh("get", "photos/album/in.bin", "-o", out)
    assert r.rc == 0, r.err
    assert out.read_bytes() == data
    assert not list(tmp_path.glob("*.dwh-partial"))
    # Standard input and output.
    piped = rand(700 * KiB, 2)
    r = dwh("put", "-", "photos/from-stdin", input=piped)
    assert r.rc == 0, r.err
    assert r.lines[0].startswith(f"stored photos/from-stdin: {len(piped)} bytes")
    r = dwh("get", "photos/from-stdin")
    assert r.rc == 0 and r.out == piped
    # What the CLI stored, the library reads (and the config in dwh.toml was used).
    with open_wh(data_dir) as wh:
        v = wh.head_object("photos", "from-stdin")
        assert len(v.chunks) > 3  # 64 KiB average chunks from dwh.toml, not 1 MiB
        assert wh.get_object_bytes("photos", "album/in.bin") == data


def test_ls_and_rm(dwh, data_dir: Path) -> None:
    objects = {
        "bkt/notes.md": b"# notes",
        "bkt/docs/a.txt": rand(10 * KiB, 1),
        "bkt/docs/b.txt": rand(20 * KiB, 2),
        "bkt/reports/2026/quarterly-summary-final-version.csv": rand(123, 3),
        "other/only-in-other.bin": b"x",
    }
    populate(data_dir, objects, ("bkt", "other"))
    r = dwh("ls", "bkt")
    assert r.rc == 0, r.err
    for name in objects:
        bucket, key = name.split("/", 1)
        assert (key in r.text) == (bucket == "bkt"), key
    assert str(20 * KiB) in r.text and hashlib.md5(objects["bkt/docs/a.txt"]).hexdigest() in r.text
    assert r.text.index("docs/a.txt") < r.text.index("docs/b.txt") < r.text.index("notes.md")
    r = dwh("ls", "bkt/docs/")
    assert r.rc == 0 and "docs/a.txt" in r.text and "docs/b.txt" in r.text and "notes.md" not in r.text
    r = dwh("ls")
    assert r.rc == 0 and "bkt" in r.text and "other" in r.text
    r = dwh("rm", "bkt/notes.md")
    assert (r.rc, r.lines) == (0, ["deleted bkt/notes.md"])
    dwh("rm", "bkt/notes.md").assert_error(4, "notes.md")
    with open_wh(data_dir) as wh:
        assert [o.key for o in wh.list_objects("bkt")] == [
            "docs/a.txt",
            "docs/b.txt",
            "reports/2026/quarterly-summary-final-version.csv",
        ]


def test_bucket_commands(dwh, data_dir: Path) -> None:
    r = dwh("bucket", "create", "alpha")
    assert r.rc == 0 and r.lines == ["created bucket alpha (EC(4,2))"]
    r = dwh("bucket", "create", "beta", "--storage-class", "replica-3")
    assert r.rc == 0 and r.lines == ["created bucket beta (EC(1,2))"]
    dwh("bucket", "create", "alpha").assert_error(5, "alpha")
    dwh("bucket", "create", "Not_A_Bucket").assert_error(2, "bucket name")
    dwh("bucket", "create", "gamma", "--storage-class", "5+2").assert_error(2, "EC(5,2)", "7")
    r = dwh("bucket", "list")
    assert r.rc == 0 and "alpha" in r.text and "beta" in r.text and "EC(1,2)" in r.text and "gamma" not in r.text
    with open_wh(data_dir) as wh:
        wh.put_object("beta", "f", b"data")
    dwh("bucket", "delete", "beta").assert_error(5, "beta", "not empty")
    with open_wh(data_dir) as wh:
        wh.delete_object("beta", "f")
    r = dwh("bucket", "delete", "beta")
    assert (r.rc, r.lines) == (0, ["deleted bucket beta"])
    with open_wh(data_dir) as wh:
        assert [b.name for b in wh.list_buckets()] == ["alpha"]


def test_disks_and_maintenance(dwh, data_dir: Path, tmp_path: Path) -> None:
    objects = {f"bkt/o{i}": rand(400 * KiB + i, i) for i in range(4)}
    populate(data_dir, objects)
    r = dwh("disk", "status")
    assert r.rc == 0, r.err
    for i in range(1, 7):
        assert str(data_dir / "disks" / f"d{i}") in r.text  # full paths, never truncated
    for column in ("disk", "path", "state", "size", "free", "shards", "errors"):
        assert column in r.text
    assert r.text.count("active") == 6
    assert "default storage class: EC(4,2)" in r.text

    r = dwh("scrub")
    assert r.rc == 0, r.err
    (line,) = r.lines
    m = re.fullmatch(
        r"scrub: (\d+) chunks, (\d+) shards checked, [\d.]+ \w+ read; 0 bad, 0 repaired, "
        r"\d+ journal copies restored, 0 unrecoverable",
        line,
    )
    assert m, line
    chunks = int(m.group(1))
    assert chunks > 4 and int(m.group(2)) == 6 * chunks

    r = dwh("gc")
    assert r.rc == 0 and r.lines == [
        "gc: 0 chunks (0 shards) and 0 orphan shards removed, 0 B freed; 0 packs compacted, 0 B reclaimed"
    ]

    new_disk = tmp_path / "disk7"
    r = dwh("disk", "add", new_disk)
    assert r.rc == 0, r.err
    assert r.lines[0].startswith(f"added disk {new_disk} (")
    r = dwh("rebalance")
    assert r.rc == 0, r.err
    (line,) = r.lines
    m = re.fullmatch(r"rebalance: (\d+) chunks checked, (\d+) shards moved \(.+\), 0 failed", line)
    assert m and int(m.group(1)) == chunks and int(m.group(2)) > 0, line
    r = dwh("disk", "remove", new_disk)
    assert r.rc == 0, r.err
    assert re.fullmatch(rf"removed {re.escape(str(new_disk))}: \d+ shards moved \(.+\)", r.lines[0]), r.text
    dwh("disk", "remove", data_dir / "disks" / "d1").assert_error(2, "cannot remove")

    # Delete an object, then collect its chunks with no grace period.
    with open_wh(data_dir) as wh:
        wh.delete_object("bkt", "o0")
    r = dwh("gc", "--grace-hours", "0")
    assert r.rc == 0, r.err
    m = re.fullmatch(
        r"gc: (\d+) chunks \((\d+) shards\) and \d+ orphan shards removed, .+ freed; "
        r"\d+ packs compacted, .+ reclaimed",
        r.lines[0],
    )
    assert m and int(m.group(1)) > 0 and int(m.group(2)) == 6 * int(m.group(1)), r.text
    with open_wh(data_dir) as wh:
        assert len(wh.engine.disks.active()) == 6
        for name in ("o1", "o2", "o3"):
            assert wh.get_object_bytes("bkt", name) == objects[f"bkt/{name}"]


def test_key_rotate(dwh, data_dir: Path) -> None:
    populate(data_dir, {"bkt/k": rand(200 * KiB, 1)})
    old = json.loads((data_dir / "keys" / "master.key").read_text())["key_id"]
    r = dwh("key", "rotate")
    assert r.rc == 0, r.err
    new = json.loads((data_dir / "keys" / "master.key").read_text())["key_id"]
    assert old != new
    assert r.lines[0].startswith(f"master key rotated: {old} -> {new}")
    r = dwh("get", "bkt/k")
    assert r.rc == 0 and r.out == rand(200 * KiB, 1)


def test_repair_rebuild_meta(dwh, data_dir: Path) -> None:
    objects = {"bkt/a": rand(300 * KiB, 1), "bkt/b": b"small", "bkt/c": rand(5000, 2)}
    populate(data_dir, objects)
    meta = data_dir / "meta" / "meta.sqlite3"
    for side in (meta, Path(f"{meta}-wal"), Path(f"{meta}-shm")):
        side.unlink(missing_ok=True)
    dwh("ls", "bkt").assert_error(code(MetadataError), "rebuild-meta")
    r = dwh("repair", "rebuild-meta")
    assert r.rc == 0, r.err
    m = re.fullmatch(
        r"rebuilt: (\d+) journal records replayed, (\d+) object versions, (\d+) chunks, (\d+) shards found on disk",
        r.lines[0],
    )
    assert m, r.text
    assert int(m.group(2)) == 3 and int(m.group(3)) > 1 and int(m.group(4)) == 6 * int(m.group(3))
    r = dwh("get", "bkt/a")
    assert r.rc == 0 and r.out == objects["bkt/a"]
    with open_wh(data_dir) as wh:
        for name, data in objects.items():
            assert wh.get_object_bytes(*name.split("/", 1)) == data, name


def test_error_cases(dwh, data_dir: Path, tmp_path: Path) -> None:
    populate(data_dir, {"bkt/k": b"value"})
    src = tmp_path / "f"
    src.write_bytes(b"data")
    dwh("ls", "nosuch").assert_error(4, "nosuch")
    dwh("get", "bkt/missing").assert_error(4, "missing")
    dwh("put", src, "nosuch/key").assert_error(4, "nosuch")
    dwh("put", src, "bkt/").assert_error(2, "key")
    dwh("scrub", "--rate", "fast").assert_error(2, "--rate")
    dwh("ls", env={"DWH_ENGINE_COMPRESSION_LEVEL": "99"}).assert_error(78, "engine.compression_level")
    # A long message (a deep path) is still one line, whatever the width of the output.
    deep = tmp_path / ("a-rather-long-directory-name-" * 4) / "and-another-level-below-it"
    dwh("ls", data_dir_=deep).assert_error(9, str(deep), "dwh init")
    # The data directory is locked by another process (here: this one).
    with Warehouse.open(data_dir):
        dwh("ls", "bkt").assert_error(75, "in use")
    # A missing master key.
    key = data_dir / "keys" / "master.key"
    key.rename(tmp_path / "backup.key")
    dwh("get", "bkt/k").assert_error(77, "master.key")
    (tmp_path / "backup.key").rename(key)
    with open_wh(data_dir) as wh:
        assert wh.get_object_bytes("bkt", "k") == b"value"  # nothing was disturbed


def test_passphrase_data_dir(dwh, data_dir: Path) -> None:
    good = {"DWH_PASSPHRASE": "a long enough passphrase"}
    r = dwh("init", "--passphrase", env=good)
    assert r.rc == 0, r.err
    assert not (data_dir / "keys" / "master.key").exists()
    assert dwh("put", "-", "default/k", input=b"secret stuff", env=good).rc == 0
    dwh("get", "default/k").assert_error(77, "DWH_PASSPHRASE")
    dwh("get", "default/k", env={"DWH_PASSPHRASE": "not the passphrase"}).assert_error(77, "passphrase")
    r = dwh("get", "default/k", env=good)
    assert (r.rc, r.out) == (0, b"secret stuff")


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", 1048576), ("500MB", 500 * 10**6), ("10GiB", 10 * 2**30), ("1.5 tb", 15 * 10**11), ("2k", 2000)],
)
def test_parse_size_units(text: str, size: int) -> None:
    from datawarehouse.cli.common import parse_size

    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "5 XB", "-3", "1e", "MiB"])
def test_parse_size_refuses_what_is_not_a_size(text: str) -> None:
    from datawarehouse.cli.common import parse_size
    from datawarehouse.errors import InvalidInput

    with pytest.raises(InvalidInput, match="not a size"):
        parse_size(text)
