"""The ``[audit]`` configuration section: environment overrides, messages naming the key, the
HEC token kept out of repr, and reserved system bucket names."""

from __future__ import annotations

from pathlib import Path

import pytest

from datawarehouse.config import load_config
from datawarehouse.errors import ConfigError, InvalidBucketName
from datawarehouse.service.naming import check_bucket_name, is_system_bucket


def test_env_overrides_retention(tmp_path: Path) -> None:
    (tmp_path / "dwh.toml").write_text("[audit]\nretention_days = 30\n")
    assert load_config(tmp_path / "dwh.toml", env={}).audit.retention_days == 30
    assert load_config(tmp_path / "dwh.toml", env={"DWH_AUDIT_RETENTION_DAYS": "400"}).audit.retention_days == 400
    assert load_config(None, env={}).audit.retention_days == 365


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"DWH_AUDIT_RETENTION_DAYS": "0"}, "audit.retention_days"),
        ({"DWH_AUDIT_SYSLOG_ADDRESS": "host:514"}, "audit.syslog_address"),
        ({"DWH_AUDIT_WEBHOOK_URL": "ftp://x"}, "audit.webhook_url"),
        ({"DWH_AUDIT_HEC_URL": "https://splunk:8088"}, "audit.hec_token"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config(None, env=env)


def test_hec_token_is_not_in_repr() -> None:
    cfg = load_config(None, env={"DWH_AUDIT_HEC_URL": "https://s:8088", "DWH_AUDIT_HEC_TOKEN": "tok-secret-123"})
    assert cfg.audit.hec_token == "tok-secret-123"
    assert "tok-secret-123" not in repr(cfg)


def test_system_bucket_names_are_reserved() -> None:
    for name in ("dwh--audit", "dwh--other", "logs--audit", "x--audit-y"):
        assert is_system_bucket(name)
        with pytest.raises(InvalidBucketName, match="reserved for system buckets"):
            check_bucket_name(name)
    assert check_bucket_name("dwh--audit", allow_system=True) == "dwh--audit"
    assert not is_system_bucket("dwh-audit") and check_bucket_name("dwh-audit") == "dwh-audit"
