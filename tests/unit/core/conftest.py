"""Shared fixtures for the core tests: fixed keys so failures reproduce."""

from __future__ import annotations

import pytest

from datawarehouse.core import crypto

SECRET = bytes(range(32, 64))


@pytest.fixture(scope="session")
def keys() -> crypto.DomainKeys:
    return crypto.derive_domain_keys(1, 1, SECRET)


@pytest.fixture(scope="session")
def chacha_keys() -> crypto.DomainKeys:
    return crypto.derive_domain_keys(1, 1, SECRET, aead=crypto.CHACHA20_POLY1305)
