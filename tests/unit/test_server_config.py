"""The [server] section: file, environment, validation messages that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from datawarehouse.config import load_config
from datawarehouse.errors import ConfigError


def test_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "dwh.toml"
    path.write_text('[server]\naddress = "0.0.0.0:9100"\ndomain = "s3.example.lan"\n')
    cfg = load_config(path, env={})
    assert cfg.server.host_port == ("0.0.0.0", 9100) and cfg.server.domain == "s3.example.lan"
    cfg = load_config(path, env={"DWH_SERVER_ADDRESS": "127.0.0.1:9200", "DWH_SERVER_REGION": "eu-west-1"})
    assert cfg.server.host_port == ("127.0.0.1", 9200) and cfg.server.region == "eu-west-1"


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


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"DWH_SERVER_ADDRESS": "nonsense"}, "server.address"),
        ({"DWH_SERVER_ADDRESS": "127.0.0.1:99999"}, "server.address"),
        ({"DWH_SERVER_DOMAIN": ".bad"}, "server.domain"),
        ({"DWH_SERVER_REGION": "us east"}, "server.region"),
        ({"DWH_SERVER_PORT": "1"}, "server.port"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, env=env)


def test_serve_refuses_a_bad_address_cleanly(tmp_path: Path) -> None:
    dwh = Path(sys.executable).parent / "dwh"
    out = subprocess.run(
        [str(dwh), "serve", "--data-dir", str(tmp_path / "d"), "--address", "no-port"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 78 and "server.address" in out.stderr and "Traceback" not in out.stderr
