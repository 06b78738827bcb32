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
