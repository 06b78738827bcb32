"""Where ``dwh admin`` finds its endpoint and credentials: flags, then ``DWH_*`` variables, then
the AWS variables, then a profile of ``~/.config/dwh/credentials`` (INI; refused unless only its
owner can read it, as it holds secrets)."""

from __future__ import annotations

import configparser
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from datawarehouse.errors import ConfigError

DEFAULT_ENDPOINT = "http://127.0.0.1:9000"  # what `dwh serve` listens on by default
DEFAULT_PROFILE = "default"


def credentials_path(env: Mapping[str, str]) -> Path:
    given = env.get("DWH_CREDENTIALS_FILE")
    if given:
        return Path(given)
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "dwh" / "credentials"


@dataclass(frozen=True)
class AdminSettings:
    endpoint: str
    access_key: str | None
    secret_key: str | None = field(repr=False)
    region: str = "us-east-1"


def read_profile(path: Path, profile: str) -> dict[str, str]:
    """The profile's keys, or {} if the file does not exist (a named profile must exist)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if profile != DEFAULT_PROFILE:
            raise ConfigError(f"{path}: no such file (profile {profile!r} was asked for)") from None
        return {}
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path}: readable by others (mode {stat.S_IMODE(st.st_mode):04o}); run chmod 600 {path}")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: not a readable INI file ({type(exc).__name__})") from None
    if not parser.has_section(profile):
        if profile != DEFAULT_PROFILE:
            raise ConfigError(f"{path}: no profile named {profile!r}")
        return {}
    return dict(parser.items(profile))


def _env_pair(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    for access, secret in (("DWH_ACCESS_KEY", "DWH_SECRET_KEY"), ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")):
        if env.get(access):
            return env.get(access), env.get(secret)
    return None, None


def resolve(
    *,
    endpoint: str | None,
    access_key: str | None,
    secret_key: str | None,
    profile: str | None,
    region: str | None,
    env: Mapping[str, str] | None = None,
) -> AdminSettings:
    """Flags win; then an explicitly named profile (``--profile`` or DWH_PROFILE); then the
    environment's key pair; then the default profile."""
    env = os.environ if env is None else env
    named = profile or env.get("DWH_PROFILE")
    from_file = read_profile(credentials_path(env), named or DEFAULT_PROFILE)
    file_pair = (from_file.get("access_key"), from_file.get("secret_key"))
    env_pair = _env_pair(env)
    pair = file_pair if named else (env_pair if env_pair[0] else file_pair)
    return AdminSettings(
        endpoint=endpoint or env.get("DWH_ENDPOINT") or from_file.get("endpoint") or DEFAULT_ENDPOINT,
        access_key=access_key or pair[0],
        secret_key=secret_key or pair[1],
        region=region or from_file.get("region") or "us-east-1",
    )
