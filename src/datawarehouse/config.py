"""Configuration: an optional TOML file plus ``DWH_*`` environment variables, validated on load
into frozen dataclasses. Messages name the key (``engine.compression_level: must be 0..19``).

Only *policy* lives here (how new data is written). Format parameters that reads depend on are
stored with the data itself, so reads never depend on today's config.
"""

from __future__ import annotations

import functools
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from datawarehouse.errors import ConfigError, InvalidInput
from datawarehouse.records import ChunkerParams, parse_storage_class

CIPHERS = ("aes-256-gcm", "chacha20-poly1305")
_TRUE = ("1", "true", "yes", "on")  # how a DWH_* variable spells a boolean
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class EngineConfig:
    chunk_min_size: int = 256 * 1024
    chunk_avg_size: int = 1024 * 1024
    chunk_max_size: int = 4 * 1024 * 1024
    inline_max_size: int = 64 * 1024
    compression_level: int = 3
    # Per-chunk work (id, seal, encode, buffered shard writes: CPU, no fsync). 0: one thread per
    # CPU this process may use (at least 2). More threads than cores measured slower on 2 vCPUs
    # (6 threads against 2: PUT 325-351 against 337-387 MB/s, GET 700-980 against 1150-1540).
    threads: int = 0
    gc_grace_seconds: int = 24 * 3600
    storage_class: str = ""  # empty: follow the number of disks
    cipher: str = "aes-256-gcm"  # or "chacha20-poly1305" (for CPUs without AES instructions)
    # Parity shards (read only to repair) written around the page cache with O_DIRECT. Off: on a
    # pack file, direct writes of parity and buffered writes of data shards queue on the same
    # inode lock, and a random PUT measured 20-25 % slower with them than all buffered
    # (docs/benchmarks.md). On keeps parity out of the page cache where memory is scarce.
    direct_parity: bool = False
    # Journal appends (write + fdatasync of the segment on every disk) made by a small process of
    # their own instead of threads of this one: in a busy server those threads wait for the GIL
    # (engine/journal_process.py). Off: in-process threads, one process fewer.
    journal_process: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.compression_level <= 19:
            raise ConfigError("engine.compression_level: must be 0..19 (0 disables compression)")
        if not 0 <= self.inline_max_size <= 1024 * 1024:
            raise ConfigError("engine.inline_max_size: must be 0..1048576 bytes")
        if not 0 <= self.threads <= 64:
            raise ConfigError("engine.threads: must be 0..64 (0: one per CPU core)")
        if self.cipher not in CIPHERS:
            raise ConfigError(f"engine.cipher: must be one of {', '.join(CIPHERS)}")
        if self.gc_grace_seconds < 0:
            raise ConfigError("engine.gc_grace_seconds: must be >= 0")
        if self.storage_class:
            try:  # syntax and validity only; whether it fits is checked against the disks at use
                parse_storage_class(self.storage_class, 6)
            except InvalidInput as exc:
                raise ConfigError(f"engine.storage_class: {exc}") from exc
        try:
            _ = self.chunker
        except InvalidInput as exc:
            raise ConfigError(f"engine.chunk_*_size: {exc}") from exc

    @functools.cached_property
    def chunk_threads(self) -> int:
        """``threads``, with 0 resolved to the CPUs this process may run on (at least 2, so a
        chunk is sealed while the caller cuts the next one). Resolved once: every writer asks
        for it (a PUT's in-flight bound), and the CPU set is a system call away."""
        if self.threads:
            return self.threads
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not on every platform
            cpus = os.cpu_count() or 2
        return min(64, max(2, cpus))

    @property
    def aead(self) -> int:
        """The AEAD id (format.md) new chunks are sealed with; reads use the id in each frame."""
        return CIPHERS.index(self.cipher) + 1

    @functools.cached_property
    def chunker(self) -> ChunkerParams:
        """Built once (a PUT asks for it; validating the bounds each time showed in profiles)."""
        return ChunkerParams(self.chunk_min_size, self.chunk_avg_size, self.chunk_max_size)


@dataclass(frozen=True)
class ServerConfig:
    address: str = "127.0.0.1:9000"
    domain: str = ""  # set to enable virtual-hosted-style addressing (BUCKET.<domain>)
    region: str = "us-east-1"
    lifecycle_interval: int = 3600  # seconds between runs of the lifecycle job; 0: never
    # Accept AWS Signature Version 2 (old SDKs, s3cmd --signature-v2), as MinIO does; version 4
    # is always accepted. A bucket policy can refuse it per bucket (s3:signatureversion).
    signature_v2: bool = True

    def __post_init__(self) -> None:
        if self.lifecycle_interval < 0:
            raise ConfigError("server.lifecycle_interval: seconds, 0 or more (0 disables the lifecycle job)")
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"server.address: expected HOST:PORT such as 127.0.0.1:9000 (got {self.address!r})")
        if self.domain and (self.domain.startswith(".") or " " in self.domain):
            raise ConfigError("server.domain: a DNS name such as s3.example.lan")
        if not self.region or not all(c.isalnum() or c == "-" for c in self.region):
            raise ConfigError("server.region: letters, digits and '-' (e.g. us-east-1)")

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.address.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class AuditConfig:
    """The audit log (service/audit): how long sealed segments are kept under COMPLIANCE lock,
    how often a segment is sealed, and where records are forwarded (empty: nowhere)."""

    retention_days: int = 365
    checkpoint_records: int = 10000  # seal a segment after this many records ...
    checkpoint_seconds: int = 300  # ... or this many seconds, whichever comes first
    webhook_url: str = ""
    syslog_address: str = ""  # udp://HOST:PORT or tcp://HOST:PORT (RFC 5424; TCP octet-counted)
    hec_url: str = ""  # Splunk HEC base URL, e.g. https://splunk.lan:8088
    hec_token: str = field(default="", repr=False)  # a secret: never in repr or messages

    def __post_init__(self) -> None:
        if not 1 <= self.retention_days <= 36500:
            raise ConfigError("audit.retention_days: must be 1..36500")
        if not 1 <= self.checkpoint_records <= 1_000_000:
            raise ConfigError("audit.checkpoint_records: must be 1..1000000")
        if not 1 <= self.checkpoint_seconds <= 86400:
            raise ConfigError("audit.checkpoint_seconds: must be 1..86400")
        for name in ("webhook_url", "hec_url"):
            url = getattr(self, name)
            if url and not url.startswith(("http://", "https://")):
                raise ConfigError(f"audit.{name}: expected an http:// or https:// URL")
        if self.syslog_address and not self.syslog_address.startswith(("udp://", "tcp://")):
            raise ConfigError("audit.syslog_address: expected udp://HOST:PORT or tcp://HOST:PORT")
        if self.hec_url and not self.hec_token:
            raise ConfigError("audit.hec_token: required with audit.hec_url (or DWH_AUDIT_HEC_TOKEN)")


@dataclass(frozen=True)
class Config:
    engine: EngineConfig = EngineConfig()
    server: ServerConfig = ServerConfig()
    audit: AuditConfig = AuditConfig()


def _coerce(section: str, name: str, kind: Any, value: Any) -> Any:
    key = f"{section}.{name}"
    if kind in (int, "int"):
        if isinstance(value, bool | float):  # int(2.5) would silently make it 2
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from exc
    if kind in (bool, "bool"):
        if isinstance(value, bool):
            return value
        word = value.strip().lower() if isinstance(value, str) else None
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if kind in (str, "str"):
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string")
        return value
    raise ConfigError(f"{key}: unsupported type")


def _section(section: str, cls: Any, data: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    known = {f.name: f.type for f in fields(cls)}
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name not in known:
            raise ConfigError(f"{section}.{name}: unknown setting")
        values[name] = _coerce(section, name, known[name], value)
    prefix = f"DWH_{section.upper()}_"
    for env_name, value in env.items():
        if env_name.startswith(prefix):
            name = env_name[len(prefix) :].lower()
            if name not in known:
                raise ConfigError(f"{env_name}: unknown setting {section}.{name}")
            values[name] = _coerce(section, name, known[name], value)
    return cls(**values)


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (if it exists) and the environment; raise ConfigError naming the bad key."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None and path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    unknown = set(data) - {"engine", "server", "audit"}
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown section")
    return Config(
        engine=_section("engine", EngineConfig, data.get("engine", {}), env),
        server=_section("server", ServerConfig, data.get("server", {}), env),
        audit=_section("audit", AuditConfig, data.get("audit", {}), env),
    )
