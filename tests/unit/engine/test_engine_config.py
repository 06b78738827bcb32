"""Configuration: TOML plus ``DWH_ENGINE_*`` environment variables, validated on load; every
message names the offending key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from datawarehouse.config import EngineConfig, load_config
from datawarehouse.errors import ConfigError
from datawarehouse.records import ChunkerParams


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dwh.toml"
    path.write_text(text)
    return path


def test_defaults_without_file(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "missing.toml", env={})
    assert cfg.engine == EngineConfig()
    assert load_config(None, env={}).engine == EngineConfig()
    assert cfg.engine.chunker == ChunkerParams(256 * 1024, 1024 * 1024, 4 * 1024 * 1024)


def test_file_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[engine]
chunk_min_size = 16384
chunk_avg_size = 65536
chunk_max_size = 262144
inline_max_size = 4096
compression_level = 0
threads = 2
gc_grace_seconds = 60
storage_class = "replica-3"
""",
    )
    e = load_config(path, env={}).engine
    assert e.chunker == ChunkerParams(16384, 65536, 262144)
    assert (e.inline_max_size, e.compression_level, e.threads, e.gc_grace_seconds) == (4096, 0, 2, 60)
    assert e.storage_class == "replica-3"


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[engine]\ncompression_level = 5\nthreads = 4\n")
    env = {"DWH_ENGINE_COMPRESSION_LEVEL": "9", "DWH_PASSPHRASE": "ignored here", "DWH_DATA_DIR": "/x", "HOME": "/"}
    e = load_config(path, env=env).engine
    assert (e.compression_level, e.threads) == (9, 4)


def test_boolean_settings_from_file_and_environment(tmp_path: Path) -> None:
    assert load_config(None, env={}).engine.direct_parity is False
    path = tmp_path / "dwh.toml"
    path.write_text("[engine]\ndirect_parity = true\n")
    assert load_config(path, env={}).engine.direct_parity is True
    for word, value in (("1", True), ("On", True), ("yes", True), ("false", False), ("0", False), ("off", False)):
        assert load_config(path, env={"DWH_ENGINE_DIRECT_PARITY": word}).engine.direct_parity is value
    path.write_text("[engine]\ndirect_parity = 1\n")  # TOML has real booleans: an integer is a mistake
    with pytest.raises(ConfigError, match=r"engine\.direct_parity: expected true or false"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match=r"engine\.direct_parity: expected true or false, got 'maybe'"):
        load_config(None, env={"DWH_ENGINE_DIRECT_PARITY": "maybe"})


def test_threads_zero_means_one_per_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert EngineConfig().threads == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4}, raising=False)
    assert EngineConfig().chunk_threads == 5 and EngineConfig(threads=3).chunk_threads == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert EngineConfig().chunk_threads == 2  # the caller cuts while a chunk thread seals
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(200)), raising=False)
    assert EngineConfig().chunk_threads == 64


def test_env_is_read_from_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DWH_ENGINE_THREADS", "7")
    assert load_config(None).engine.threads == 7


@pytest.mark.parametrize(
    "env,key",
    [
        ({"DWH_ENGINE_COMPRESSION_LEVEL": "99"}, "engine.compression_level"),
        ({"DWH_ENGINE_COMPRESSION_LEVEL": "-1"}, "engine.compression_level"),
        ({"DWH_ENGINE_COMPRESSION_LEVEL": "three"}, "engine.compression_level"),
        ({"DWH_ENGINE_THREADS": "-1"}, "engine.threads"),
        ({"DWH_ENGINE_THREADS": "65"}, "engine.threads"),
        ({"DWH_ENGINE_INLINE_MAX_SIZE": "2000000"}, "engine.inline_max_size"),
        ({"DWH_ENGINE_GC_GRACE_SECONDS": "-5"}, "engine.gc_grace_seconds"),
        ({"DWH_ENGINE_CHUNK_AVG_SIZE": "100"}, "engine.chunk_"),
        ({"DWH_ENGINE_CHUNK_MIN_SIZE": "8388608"}, "engine.chunk_"),
        ({"DWH_ENGINE_NO_SUCH_SETTING": "1"}, "engine.no_such_setting"),
        ({"DWH_ENGINE_STORAGE_CLASS": "bogus"}, "engine.storage_class"),
        ({"DWH_ENGINE_STORAGE_CLASS": "4+0"}, "engine.storage_class"),
        ({"DWH_ENGINE_STORAGE_CLASS": "6+5"}, "engine.storage_class"),
    ],
)
def test_bad_env_values_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, env=env)
    assert key in str(exc.value)


@pytest.mark.parametrize(
    "text,key",
    [
        ("[engine]\ncompression_level = 20\n", "engine.compression_level"),
        ("[engine]\ncompression_level = true\n", "engine.compression_level"),
        ('[engine]\ncompression_level = "3"\n', None),  # strings of digits are accepted
        ("[engine]\nthreads = 2.5\n", "engine.threads"),  # not silently truncated to 2
        ("[engine]\nthreads = 2\n", None),
        ("[engine]\nstorage_class = 3\n", "engine.storage_class"),
        ("[engine]\nchunk_size = 1024\n", "engine.chunk_size"),
        ("[engine]\nchunk_min_size = 4096\nchunk_avg_size = 2048\n", "engine.chunk_"),
        ("[server]\nport = 9000\n", "server"),
        ("[engine\n", "dwh.toml"),
    ],
)
def test_bad_file_values_name_the_key(tmp_path: Path, text: str, key: str | None) -> None:
    path = write(tmp_path, text)
    if key is None:
        load_config(path, env={})
        return
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert key in str(exc.value)


def test_valid_storage_classes_load() -> None:
    for text in ("", "replica-2", "EC(4,2)", "8+4", "raid6", "raidz3"):
        assert load_config(None, env={"DWH_ENGINE_STORAGE_CLASS": text}).engine.storage_class == text


def test_engine_config_is_validated_directly() -> None:
    with pytest.raises(ConfigError, match=r"engine\.compression_level"):
        EngineConfig(compression_level=99)
    with pytest.raises(ConfigError, match=r"engine\.chunk_"):
        EngineConfig(chunk_min_size=1, chunk_avg_size=2, chunk_max_size=3)
