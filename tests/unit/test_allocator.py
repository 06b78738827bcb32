"""``tune_malloc`` in a fresh interpreter: applied on glibc, and it changes how the erasure
coder's buffers are served (reused instead of unmapped and faulted in again on every encode)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import resource, sys
if sys.argv[1] == "tune":
    from datawarehouse.allocator import tune_malloc
    print(tune_malloc())
else:
    print("skipped")
import os
from datawarehouse.core.erasure import ErasureCoder
coder = ErasureCoder(4, 2)
data = os.urandom(1 << 20)
coder.encode(data)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    coder.encode(data)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(mode: str, env: dict[str, str]) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tuning_reuses_large_buffers() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    _, faults_default = _run("plain", env)
    applied, faults_tuned = _run("tune", env)
    assert applied == "True"
    # Default glibc: each encode's buffers are fresh mappings, ~400 page faults per encode.
    assert faults_default > 10_000
    assert faults_tuned < faults_default // 10


def test_environment_settings_win() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    applied, _ = _run("tune", env)
    assert applied == "False"
