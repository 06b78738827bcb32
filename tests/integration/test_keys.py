"""Master keys: rotation (key file and passphrase), interrupted rotations, wrong and missing keys."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import stat
from pathlib import Path

import pytest
from dwh_testkit import read_location, shard_locations

from datawarehouse.config import EngineConfig
from datawarehouse.engine.rotate import rotate_master_key
from datawarehouse.errors import KeyError_, WrongKey
from datawarehouse.service.warehouse import OpenOptions, Warehouse
from datawarehouse.storage.packstore import PackedLocation

KiB = 1024
SMALL = EngineConfig(
    chunk_min_size=16 * KiB,
    chunk_avg_size=64 * KiB,
    chunk_max_size=256 * KiB,
    inline_max_size=4 * KiB,
    threads=2,
)
PASS1 = "correct horse battery staple"
PASS2 = "tr0ub4dor & 3, but longer"


def rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


OBJECTS = {"big": rand(700 * KiB, 1), "small": b"inline object", "mid": rand(40 * KiB, 2)}


def fill(wh: Warehouse) -> None:
    wh.create_bucket("bkt")
    for key, data in OBJECTS.items():
        wh.put_object("bkt", key, data)


def assert_readable(wh: Warehouse) -> None:
    for key, data in OBJECTS.items():
        assert wh.get_object_bytes("bkt", key) == data, key


def shard_snapshot(root: Path) -> dict[str, tuple[PackedLocation, int, str]]:
    """Every stored shard: (where its record is, its pack's modification time, sha256 of its
    bytes). A shard rewritten would be a new record elsewhere; a pack written to, a new mtime."""
    out = {}
    for name, loc in shard_locations(root).items():
        out[name] = (loc, loc.path.stat().st_mtime_ns, hashlib.sha256(read_location(loc)).hexdigest())
    assert out
    return out


def key_id_on_file(root: Path, name: str = "master.key") -> str:
    return json.loads((root / "keys" / name).read_text())["key_id"]


def opts(passphrase: str | None = None) -> OpenOptions:
    return OpenOptions(passphrase=passphrase, config=SMALL)


def test_key_file_rotation(tmp_path: Path) -> None:
    root = tmp_path / "dwh"
    with Warehouse.init(root, options=opts()) as wh:
        fill(wh)
        old_id = wh.engine.keyring.master_ids()[0]
    assert key_id_on_file(root) == old_id
    before = shard_snapshot(root)
    with Warehouse.open(root, opts()) as wh:
        old, new = rotate_master_key(wh.engine)
        assert old == old_id and new != old_id
        assert_readable(wh)  # usable at once, in the same process
    assert key_id_on_file(root) == new
    assert not (root / "keys" / "master.key.new").exists()
    assert stat.S_IMODE((root / "keys" / "master.key").stat().st_mode) == 0o600
    assert sorted(p.name for p in (root / "keys").iterdir()) == ["master.key"]
    # No chunk was touched: same records, same bytes, no pack written to.
    assert shard_snapshot(root) == before
    with Warehouse.open(root, opts()) as wh:
        assert wh.engine.keyring.master_ids() == [new]
        assert old_id not in wh.engine.keyring.master_ids()
        with wh.engine.repo.transaction() as tx:
            assert {s.master_key_id for s in tx.list_domain_secrets()} == {new}
        assert_readable(wh)
        wh.put_object("bkt", "after", b"written under the new key" * 1000)
    # Rotating twice works as well, and objects from both eras read back.
    with Warehouse.open(root, opts()) as wh:
        _, newer = rotate_master_key(wh.engine)
    with Warehouse.open(root, opts()) as wh:
        assert wh.engine.keyring.master_ids() == [newer]
        assert_readable(wh)
        assert wh.get_object_bytes("bkt", "after") == b"written under the new key" * 1000


def test_passphrase_mode(tmp_path: Path) -> None:
    root = tmp_path / "dwh"
    with Warehouse.init(root, options=opts(PASS1)) as wh:
        fill(wh)
    assert not (root / "keys" / "master.key").exists()
    params = json.loads((root / "keys" / "passphrase.json").read_text())
    assert params["kdf"] == "argon2id"
    assert PASS1 not in (root / "keys" / "passphrase.json").read_text()
    with Warehouse.open(root, opts(PASS1)) as wh:
        assert_readable(wh)
    with pytest.raises(WrongKey):
        Warehouse.open(root, opts("not the passphrase"))
    with pytest.raises(KeyError_) as exc:
        Warehouse.open(root, opts(None))
    assert "passphrase" in str(exc.value)
    # A refused open leaves the directory unlocked and intact.
    with Warehouse.open(root, opts(PASS1)) as wh:
        old, new = rotate_master_key(wh.engine, new_passphrase=PASS2)
        assert old != new
        assert_readable(wh)
    before = json.loads((root / "keys" / "passphrase.json").read_text())
    assert before["key_id"] == new and before["params"]["salt"] != params["params"]["salt"]
    with pytest.raises(WrongKey):
        Warehouse.open(root, opts(PASS1))
    with Warehouse.open(root, opts(PASS2)) as wh:
        assert wh.engine.keyring.master_ids() == [new]
        assert_readable(wh)


def test_passphrase_rotation_refusals(tmp_path: Path) -> None:
    root = tmp_path / "dwh"
    with Warehouse.init(root, options=opts(PASS1)) as wh:
        fill(wh)
        with pytest.raises(KeyError_):
            rotate_master_key(wh.engine)  # a passphrase directory needs a new passphrase
        with pytest.raises(KeyError_):
            rotate_master_key(wh.engine, new_passphrase="short")
    with Warehouse.open(root, opts(PASS1)) as wh:
        assert_readable(wh)
    with Warehouse.init(tmp_path / "keyfile", options=opts()) as wh, pytest.raises(KeyError_):
        rotate_master_key(wh.engine, new_passphrase=PASS2)  # a key-file directory makes a new file


def test_interrupted_rotation_after_staging(tmp_path: Path) -> None:
    """Phase 1 only: the new key file was written, nothing rewrapped yet."""
    root = tmp_path / "dwh"
    with Warehouse.init(root, options=opts()) as wh:
        fill(wh)
        old_id = wh.engine.keyring.master_ids()[0]
        staged = wh.engine.datadir.keys.stage_rotation()
    assert (root / "keys" / "master.key.new").exists()
    assert stat.S_IMODE((root / "keys" / "master.key.new").stat().st_mode) == 0o600
    with Warehouse.open(root, opts()) as wh:
        assert wh.engine.keyring.master_ids() == [old_id, staged.key_id]
        assert_readable(wh)
        _, new = rotate_master_key(wh.engine)  # re-running completes it
    assert not (root / "keys" / "master.key.new").exists()
    with Warehouse.open(root, opts()) as wh:
        assert wh.engine.keyring.master_ids() == [new]
        assert_readable(wh)


def test_interrupted_rotation_before_key_swap(tmp_path: Path) -> None:
    """Phases 1-2 done (every secret rewrapped under the new key), phase 3 not: master.key is
    still the old key and master.key.new the new one."""
    root = tmp_path / "dwh"
    keys = root / "keys"
    with Warehouse.init(root, options=opts()) as wh:
        fill(wh)
    old_copy = tmp_path / "old.key"
    shutil.copy2(keys / "master.key", old_copy)
    with Warehouse.open(root, opts()) as wh:
        old_id, new_id = rotate_master_key(wh.engine)
    # Undo phase 3 only.
    (keys / "master.key").rename(keys / "master.key.new")
    shutil.copy2(old_copy, keys / "master.key")
    with Warehouse.open(root, opts()) as wh:
        assert wh.engine.keyring.master_ids() == [old_id, new_id]
        with wh.engine.repo.transaction() as tx:
            assert {s.master_key_id for s in tx.list_domain_secrets()} == {new_id}
        assert_readable(wh)
        wh.put_object("bkt", "during", b"written while both keys are present")
        _, final = rotate_master_key(wh.engine)
    assert sorted(p.name for p in keys.iterdir()) == ["master.key"]
    assert key_id_on_file(root) == final
    with Warehouse.open(root, opts()) as wh:
        assert wh.engine.keyring.master_ids() == [final]
        assert_readable(wh)
        assert wh.get_object_bytes("bkt", "during") == b"written while both keys are present"


def test_interrupted_rotation_new_key_lost(tmp_path: Path) -> None:
    """Secrets rewrapped under a staged key that then vanished (crash before the swap, staged
    file lost): the journal still holds each secret under the old key, so opening recovers."""
    root = tmp_path / "dwh"
    keys = root / "keys"
    with Warehouse.init(root, options=opts()) as wh:
        fill(wh)
    old_copy = tmp_path / "old.key"
    shutil.copy2(keys / "master.key", old_copy)
    with Warehouse.open(root, opts()) as wh:
        old_id, _ = rotate_master_key(wh.engine)
    shutil.copy2(old_copy, keys / "master.key")
    with Warehouse.open(root, opts()) as wh:
        assert wh.engine.keyring.master_ids() == [old_id]
        assert_readable(wh)
        _, final = rotate_master_key(wh.engine)
    with Warehouse.open(root, opts()) as wh:
        assert wh.engine.keyring.master_ids() == [final]
        assert_readable(wh)


def test_missing_key_file(tmp_path: Path) -> None:
    root = tmp_path / "dwh"
    with Warehouse.init(root, options=opts()) as wh:
        fill(wh)
    (root / "keys" / "master.key").rename(tmp_path / "elsewhere.key")
    with pytest.raises(KeyError_) as exc:
        Warehouse.open(root, opts())
    msg = str(exc.value)
    assert "master.key" in msg and "backup" in msg
    # The failed open released the lock; restoring the key restores access.
    (tmp_path / "elsewhere.key").rename(root / "keys" / "master.key")
    with Warehouse.open(root, opts()) as wh:
        assert_readable(wh)


def test_damaged_key_file(tmp_path: Path) -> None:
    root = tmp_path / "dwh"
    with Warehouse.init(root, options=opts()) as wh:
        fill(wh)
    path = root / "keys" / "master.key"
    good = path.read_bytes()
    path.write_text("{not json")
    with pytest.raises(KeyError_) as exc:
        Warehouse.open(root, opts())
    assert "malformed" in str(exc.value)
    doc = json.loads(good)
    doc["key_id"] = "0" * 16
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyError_):
        Warehouse.open(root, opts())
    # Another directory's key is refused, and says so without printing key material.
    other = tmp_path / "other"
    Warehouse.init(other, options=opts()).close()
    shutil.copy2(other / "keys" / "master.key", path)
    with pytest.raises(WrongKey) as exc2:
        Warehouse.open(root, opts())
    assert json.loads(path.read_text())["key"] not in str(exc2.value)
    path.write_bytes(good)
    with Warehouse.open(root, opts()) as wh:
        assert_readable(wh)


@pytest.mark.parametrize("passphrase", ["", "1234567", "short"])
def test_short_passphrase_refused(tmp_path: Path, passphrase: str) -> None:
    root = tmp_path / "dwh"
    with pytest.raises(KeyError_) as exc:
        Warehouse.init(root, options=opts(passphrase))
    assert "8" in str(exc.value)
    # The refusal leaves nothing half-made: a retry with a proper passphrase works.
    with Warehouse.init(root, options=opts(PASS1)) as wh:
        fill(wh)
    with Warehouse.open(root, opts(PASS1)) as wh:
        assert_readable(wh)


def test_interrupted_passphrase_rotation(tmp_path: Path) -> None:
    """Every secret rewrapped under the new passphrase's key, but the crash came before the new
    parameters file was written: the old passphrase still opens, and rotating again completes."""
    root = tmp_path / "dwh"
    keys = root / "keys"
    with Warehouse.init(root, options=opts(PASS1)) as wh:
        fill(wh)
    old_params = tmp_path / "passphrase.json"
    shutil.copy2(keys / "passphrase.json", old_params)
    with Warehouse.open(root, opts(PASS1)) as wh:
        rotate_master_key(wh.engine, new_passphrase=PASS2)
    shutil.copy2(old_params, keys / "passphrase.json")  # phase 3 never happened
    with Warehouse.open(root, opts(PASS1)) as wh:
        assert_readable(wh)
        _, final = rotate_master_key(wh.engine, new_passphrase="third passphrase, at last")
    with pytest.raises(WrongKey):
        Warehouse.open(root, opts(PASS1))
    with Warehouse.open(root, opts("third passphrase, at last")) as wh:
        assert wh.engine.keyring.master_ids() == [final]
        with wh.engine.repo.transaction() as tx:
            assert {s.master_key_id for s in tx.list_domain_secrets()} == {final}
        assert_readable(wh)
