"""The ctypes path to liberasurecode (``core/ecnative.py``) must give pyeclib's bytes exactly,
hand out views that die with their ``Fragments``, and step aside when it cannot match."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyeclib.ec_iface import ECDriver

from datawarehouse.core import ecnative
from datawarehouse.core.erasure import EC_TYPE, ErasureCoder

CLASSES = [(2, 1), (2, 2), (4, 2), (8, 4)]


def _native(k: int, m: int) -> ecnative.NativeEncoder:
    encoder = ecnative.native_encoder(k, m, ECDriver(k=k, m=m, ec_type=EC_TYPE))
    assert encoder is not None, "the pyeclib wheel's liberasurecode should load through ctypes here"
    return encoder


@pytest.mark.parametrize(("k", "m"), CLASSES)
@settings(max_examples=25, deadline=None)
@given(data=st.binary(min_size=1, max_size=70_000) | st.integers(1, 3 * 1024 * 1024).map(os.urandom))
def test_fragments_are_pyeclibs_bytes(k: int, m: int, data: bytes) -> None:
    expected = ECDriver(k=k, m=m, ec_type=EC_TYPE).encode(data)
    with _native(k, m).encode(data) as fragments:
        assert [bytes(v) for v in fragments.views] == expected


@pytest.mark.parametrize(("k", "m"), [*CLASSES, (1, 2)])
def test_encode_views_matches_encode_and_decodes(k: int, m: int) -> None:
    coder = ErasureCoder(k, m)
    sealed = os.urandom(1_234_567)
    with coder.encode_views(sealed) as views:
        payloads = [bytes(v) for v in views]
    assert payloads == coder.encode(sealed)
    survivors = {i: payloads[i] for i in range(m, k + m)}  # the first m shards lost
    assert coder.decode(survivors, len(sealed)) == sealed


def test_views_die_with_their_fragments() -> None:
    fragments = _native(4, 2).encode(os.urandom(100_000))
    views = fragments.views
    assert len(views) == 6 and all(v.nbytes == views[0].nbytes for v in views)
    fragments.close()
    with pytest.raises(ValueError):
        bytes(views[0])  # released, not a dangling pointer
    fragments.close()  # twice is harmless


def test_an_encoder_that_differs_from_pyeclib_is_refused() -> None:
    class Other:
        def encode(self, data: bytes) -> list[bytes]:
            return [b"x" * 10] * 6

    assert ecnative._reproduces(_native(4, 2), Other()) is False
    assert ecnative._reproduces(_native(4, 2), ECDriver(k=4, m=2, ec_type=EC_TYPE)) is True
