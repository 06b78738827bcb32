"""aws-chunked decoding: AWS's published vectors, a test-side encoder, botocore's own encoder."""

from __future__ import annotations

import hashlib
import hmac
import io
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum, CrtCrc32cChecksum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datawarehouse.api.s3.checksums import ChecksumAlgorithm, compute_checksum
from datawarehouse.api.s3.chunked import ChunkedDecoder, parse_trailer_header
from datawarehouse.api.s3.errors import S3Error
from datawarehouse.api.s3.signing import SigningContext, derive_signing_key
from datawarehouse.api.s3.sigv4 import PayloadMode, verify_request

if TYPE_CHECKING:
    from conftest import BotoSigner

SIGNED = PayloadMode.STREAMING_SIGNED
SIGNED_TRAILER = PayloadMode.STREAMING_SIGNED_TRAILER
UNSIGNED_TRAILER = PayloadMode.STREAMING_UNSIGNED_TRAILER
EMPTY = hashlib.sha256(b"").hexdigest()

# --- a test-side encoder, written from the AWS documentation --------------------------------------


def _hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def encode(
    payload: bytes,
    chunk_sizes: Iterable[int],
    mode: PayloadMode,
    context: SigningContext | None = None,
    trailers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """Frame ``payload`` in chunks of the given sizes (the rest in one last chunk), then trailers."""
    pieces: list[bytes] = []
    offset = 0
    for size in chunk_sizes:
        if offset >= len(payload):
            break
        pieces.append(payload[offset : offset + size])
        offset += size
    if offset < len(payload):
        pieces.append(payload[offset:])
    pieces = [p for p in pieces if p] + [b""]
    signed = mode in (SIGNED, SIGNED_TRAILER)
    previous = context.seed_signature if context else ""
    out = bytearray()
    for piece in pieces:
        if signed:
            assert context is not None
            sts = "\n".join(
                [
                    "AWS4-HMAC-SHA256-PAYLOAD",
                    context.timestamp,
                    context.scope,
                    previous,
                    EMPTY,
                    hashlib.sha256(piece).hexdigest(),
                ]
            )
            previous = _hmac_hex(context.signing_key, sts)
            out += f"{len(piece):x};chunk-signature={previous}\r\n".encode()
        else:
            out += f"{len(piece):x}\r\n".encode()
        if piece:
            out += piece + b"\r\n"
    for name, value in trailers:
        out += f"{name}:{value}\r\n".encode()
    if mode is SIGNED_TRAILER and trailers:
        assert context is not None
        canonical = "".join(f"{name}:{value}\n" for name, value in trailers)
        sts = "\n".join(
            [
                "AWS4-HMAC-SHA256-TRAILER",
                context.timestamp,
                context.scope,
                previous,
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        out += f"x-amz-trailer-signature:{_hmac_hex(context.signing_key, sts)}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


def decode(decoder: ChunkedDecoder, body: bytes, cuts: Iterable[int] = ()) -> bytes:
    out = bytearray()
    start = 0
    for cut in [*sorted(set(cuts)), len(body)]:
        for piece in decoder.feed(body[start:cut]):
            out += piece
        start = max(start, cut)
    decoder.finish()
    return bytes(out)


def crc32_trailer(payload: bytes) -> list[tuple[str, str]]:
    return [("x-amz-checksum-crc32", compute_checksum(ChecksumAlgorithm.CRC32, payload))]


@pytest.fixture(scope="module")
def context(signer: BotoSigner) -> SigningContext:
    """A real seed: a botocore-signed STREAMING request, verified by sigv4."""
    request = signer.sign_header(
        "PUT", "http://localhost:9000/bucket/key", payload="STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    )
    result = verify_request(request, now=signer.signed_at + timedelta(seconds=1), lookup_secret=signer.lookup)
    assert result is not None
    return result.signing


def decoder_for(mode: PayloadMode, context: SigningContext, **kwargs: object) -> ChunkedDecoder:
    return ChunkedDecoder(mode, context if mode is not UNSIGNED_TRAILER else None, **kwargs)  # type: ignore[arg-type]


def refused(decoder: ChunkedDecoder, body: bytes, code: str) -> S3Error:
    with pytest.raises(S3Error) as caught:
        decoder.feed(body)
        decoder.finish()
    assert caught.value.code == code, (caught.value.code, caught.value.message)
    return caught.value


# --- AWS's published vectors ------------------------------------------------------------------------

DOC_KEY = derive_signing_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1", "s3")
DOC_DATA = b"a" * 66560


def doc_body(signatures: Sequence[str], trailer: bytes = b"") -> bytes:
    return (
        f"10000;chunk-signature={signatures[0]}\r\n".encode()
        + DOC_DATA[:65536]
        + f"\r\n400;chunk-signature={signatures[1]}\r\n".encode()
        + DOC_DATA[65536:]
        + f"\r\n0;chunk-signature={signatures[2]}\r\n".encode()
        + trailer
        + b"\r\n"
    )


def doc_context(seed: str) -> SigningContext:
    return SigningContext(DOC_KEY, "20130524T000000Z", "20130524/us-east-1/s3/aws4_request", seed)


DOC_SIGNED = doc_body(
    [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ]
)
DOC_SIGNED_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
DOC_TRAILER = doc_body(
    [
        "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
        "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
        "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
    ],
    b"x-amz-checksum-crc32c:sOO8/Q==\r\n"
    b"x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n",
)
DOC_TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"


@pytest.mark.parametrize("step", [1, 7, 1000, 65536, 70000])
def test_aws_signed_vector(step: int) -> None:
    assert len(DOC_SIGNED) == 66824  # the documented Content-Length
    decoder = ChunkedDecoder(SIGNED, doc_context(DOC_SIGNED_SEED), decoded_content_length=66560)
    assert decode(decoder, DOC_SIGNED, range(step, len(DOC_SIGNED), step)) == DOC_DATA
    assert decoder.decoded_size == 66560


@pytest.mark.parametrize("step", [3, 4096, 100000])
def test_aws_signed_trailer_vector(step: int) -> None:
    decoder = ChunkedDecoder(
        SIGNED_TRAILER, doc_context(DOC_TRAILER_SEED), declared_trailers=parse_trailer_header("x-amz-checksum-crc32c")
    )
    assert decode(decoder, DOC_TRAILER, range(step, len(DOC_TRAILER), step)) == DOC_DATA
    assert decoder.trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}
    assert compute_checksum(ChecksumAlgorithm.CRC32C, DOC_DATA) == "sOO8/Q=="


def test_aws_vector_matches_test_encoder() -> None:
    assert encode(DOC_DATA, [65536], SIGNED, doc_context(DOC_SIGNED_SEED)) == DOC_SIGNED
    trailers = [("x-amz-checksum-crc32c", "sOO8/Q==")]
    assert encode(DOC_DATA, [65536], SIGNED_TRAILER, doc_context(DOC_TRAILER_SEED), trailers) == DOC_TRAILER


@pytest.mark.parametrize("index", [0, 1, 2])
def test_aws_vector_with_any_signature_altered_fails(index: int) -> None:
    signatures = [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ]
    signatures[index] = signatures[index][:-1] + ("0" if signatures[index][-1] != "0" else "1")
    refused(ChunkedDecoder(SIGNED, doc_context(DOC_SIGNED_SEED)), doc_body(signatures), "SignatureDoesNotMatch")


# --- round trips at every split ---------------------------------------------------------------------

SMALL = b"hello, chunked world!"


@pytest.mark.parametrize("mode", [SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER])
def test_every_single_split_point(mode: PayloadMode, context: SigningContext) -> None:
    trailers = crc32_trailer(SMALL) if mode is not SIGNED else []
    body = encode(SMALL, [5, 7], mode, context, trailers)
    for cut in range(len(body) + 1):
        decoder = decoder_for(mode, context, decoded_content_length=len(SMALL))
        assert decode(decoder, body, [cut]) == SMALL, cut
        assert decoder.trailers == dict(trailers)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.binary(max_size=3000),
    sizes=st.lists(st.integers(1, 700), max_size=8),
    cuts=st.lists(st.integers(0, 4000), max_size=12),
    mode=st.sampled_from([SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER]),
    with_trailer=st.booleans(),
)
def test_decode_at_any_splits(
    context: SigningContext, payload: bytes, sizes: list[int], cuts: list[int], mode: PayloadMode, with_trailer: bool
) -> None:
    trailers = crc32_trailer(payload) if with_trailer and mode is not SIGNED else []
    body = encode(payload, sizes, mode, context, trailers)
    decoder = decoder_for(mode, context, decoded_content_length=len(payload))
    assert decode(decoder, body, [c for c in cuts if c <= len(body)]) == payload
    assert decoder.trailers == dict(trailers)


@pytest.mark.parametrize("mode", [SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER])
def test_every_truncation_is_incomplete(mode: PayloadMode, context: SigningContext) -> None:
    trailers = crc32_trailer(SMALL) if mode is not SIGNED else []
    body = encode(SMALL, [8], mode, context, trailers)
    for end in range(len(body)):
        decoder = decoder_for(mode, context)
        decoder.feed(body[:end])
        with pytest.raises(S3Error) as caught:
            decoder.finish()
        assert caught.value.code == "IncompleteBody", end


# --- signed chunks: tampering -----------------------------------------------------------------------


def test_tampered_chunk_data_fails(context: SigningContext) -> None:
    body = bytearray(encode(SMALL, [5], SIGNED, context))
    position = body.index(b"hello")
    body[position] ^= 0x01
    refused(ChunkedDecoder(SIGNED, context), bytes(body), "SignatureDoesNotMatch")


def test_reordered_or_dropped_chunks_fail(context: SigningContext) -> None:
    body = encode(b"aaaabbbbcccc", [4, 4], SIGNED, context)
    lines = body.split(b"\r\n")  # [h1, aaaa, h2, bbbb, h3, cccc, h0, "", ""]
    swapped = b"\r\n".join([lines[2], lines[3], lines[0], lines[1], *lines[4:]])
    refused(ChunkedDecoder(SIGNED, context), swapped, "SignatureDoesNotMatch")
    dropped = b"\r\n".join(lines[2:])
    refused(ChunkedDecoder(SIGNED, context), dropped, "SignatureDoesNotMatch")


def test_wrong_seed_fails(context: SigningContext) -> None:
    other = SigningContext(context.signing_key, context.timestamp, context.scope, "0" * 64)
    refused(ChunkedDecoder(SIGNED, other), encode(SMALL, [5], SIGNED, context), "SignatureDoesNotMatch")


def test_missing_chunk_signature_fails(context: SigningContext) -> None:
    refused(ChunkedDecoder(SIGNED, context), b"5\r\nhello\r\n0\r\n\r\n", "SignatureDoesNotMatch")
    refused(ChunkedDecoder(SIGNED, context), b"5;chunk-sig=abc\r\nhello\r\n", "SignatureDoesNotMatch")


def test_signed_data_is_released_only_after_verification(context: SigningContext) -> None:
    body = encode(b"x" * 100, [100], SIGNED, context)
    decoder = ChunkedDecoder(SIGNED, context)
    header_end = body.index(b"\r\n") + 2
    assert decoder.feed(body[: header_end + 99]) == []
    pieces = decoder.feed(body[header_end + 99 :])
    assert b"".join(bytes(p) for p in pieces) == b"x" * 100
    decoder.finish()


def test_unsigned_data_is_released_early(context: SigningContext) -> None:
    body = encode(b"x" * 100, [100], UNSIGNED_TRAILER)
    decoder = ChunkedDecoder(UNSIGNED_TRAILER)
    header_end = body.index(b"\r\n") + 2
    assert b"".join(bytes(p) for p in decoder.feed(body[: header_end + 40])) == b"x" * 40


# --- trailers ---------------------------------------------------------------------------------------


def test_signed_trailer_tampering_fails(context: SigningContext) -> None:
    body = encode(SMALL, [5], SIGNED_TRAILER, context, crc32_trailer(SMALL))
    altered = body.replace(b"x-amz-checksum-crc32:", b"x-amz-checksum-crc32:A")
    refused(ChunkedDecoder(SIGNED_TRAILER, context), altered, "SignatureDoesNotMatch")
    without = b"".join(
        line for line in body.splitlines(keepends=True) if not line.startswith(b"x-amz-trailer-signature")
    )
    # Without its signature the trailer section never ends (a blank line before the signature is
    # tolerated), so the body is incomplete.
    refused(ChunkedDecoder(SIGNED_TRAILER, context), without, "IncompleteBody")


def test_signed_trailer_tolerates_blank_line_before_signature(context: SigningContext) -> None:
    body = encode(SMALL, [5], SIGNED_TRAILER, context, crc32_trailer(SMALL))
    quirky = body.replace(b"\r\nx-amz-trailer-signature", b"\n\r\nx-amz-trailer-signature")
    assert decode(ChunkedDecoder(SIGNED_TRAILER, context), quirky) == SMALL


def test_trailers_in_plain_signed_mode_refused(context: SigningContext) -> None:
    body = encode(SMALL, [5], SIGNED, context).removesuffix(b"\r\n") + b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    refused(ChunkedDecoder(SIGNED, context), body, "InvalidRequest")


def test_declared_trailers_enforced() -> None:
    body = encode(SMALL, [5], UNSIGNED_TRAILER, None, crc32_trailer(SMALL))
    refused(ChunkedDecoder(UNSIGNED_TRAILER, declared_trailers={"x-amz-checksum-crc32c"}), body, "InvalidRequest")
    bare = encode(SMALL, [5], UNSIGNED_TRAILER)
    refused(ChunkedDecoder(UNSIGNED_TRAILER, declared_trailers={"x-amz-checksum-crc32"}), bare, "InvalidRequest")


def test_trailer_signature_in_unsigned_mode_refused() -> None:
    body = (
        encode(SMALL, [5], UNSIGNED_TRAILER).removesuffix(b"\r\n")
        + b"x-amz-trailer-signature:"
        + b"0" * 64
        + b"\r\n\r\n"
    )
    refused(ChunkedDecoder(UNSIGNED_TRAILER), body, "InvalidRequest")


def test_repeated_or_malformed_trailers_refused() -> None:
    base = encode(SMALL, [5], UNSIGNED_TRAILER).removesuffix(b"\r\n")
    refused(ChunkedDecoder(UNSIGNED_TRAILER), base + b"a:1\r\na:2\r\n\r\n", "InvalidRequest")
    refused(ChunkedDecoder(UNSIGNED_TRAILER), base + b"no-colon\r\n\r\n", "IncompleteBody")
    refused(ChunkedDecoder(UNSIGNED_TRAILER), base + b"x:\xff\r\n\r\n", "InvalidRequest")


@pytest.mark.parametrize(
    "checksum_cls, name", [(Crc32Checksum, "x-amz-checksum-crc32"), (CrtCrc32cChecksum, "x-amz-checksum-crc32c")]
)
@pytest.mark.parametrize("size", [0, 1, 1000, 300_000])
def test_botocore_aws_chunked_wrapper_decodes(checksum_cls: type, name: str, size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    wrapper = AwsChunkedWrapper(
        io.BytesIO(payload), checksum_cls=checksum_cls, checksum_name=name, chunk_size=64 * 1024
    )
    body = wrapper.read()
    decoder = ChunkedDecoder(UNSIGNED_TRAILER, decoded_content_length=size, declared_trailers={name})
    assert decode(decoder, body, range(0, len(body), 9999)) == payload
    algorithm = ChecksumAlgorithm.CRC32 if name.endswith("crc32") else ChecksumAlgorithm.CRC32C
    assert decoder.trailers[name] == compute_checksum(algorithm, payload)


def test_botocore_wrapper_without_checksum_decodes() -> None:
    body = AwsChunkedWrapper(io.BytesIO(b"abc" * 10)).read()
    decoder = ChunkedDecoder(UNSIGNED_TRAILER)
    assert decode(decoder, body) == b"abc" * 10
    assert decoder.trailers == {}


# --- framing and limits ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, code",
    [
        (b"zz\r\nhello\r\n0\r\n\r\n", "IncompleteBody"),
        (b"\r\n", "IncompleteBody"),
        (b"5\nhello\r\n0\r\n\r\n", "IncompleteBody"),
        (b"5\r\nhelloXX0\r\n\r\n", "IncompleteBody"),
        (b"5\r\nhello\n0\r\n\r\n", "IncompleteBody"),
        (b"5;ext=1\r\nhello\r\n0\r\n\r\n", "IncompleteBody"),
        (b"-5\r\nhello\r\n", "IncompleteBody"),
        (b"5\r\nhello\r\n0\r\n\r\nextra", "InvalidRequest"),
        (b"0\r\n\r\n0\r\n\r\n", "InvalidRequest"),
        (b"1000001\r\n", "InvalidRequest"),
        (b"F" * 5000, "InvalidRequest"),
        (b"0\r\n" + b"x" * 20000, "InvalidRequest"),
        (b"0\r\n" + b"".join(b"a%d:b\r\n" % i for i in range(5000)), "InvalidRequest"),
    ],
)
def test_malformed_unsigned_bodies(body: bytes, code: str) -> None:
    refused(ChunkedDecoder(UNSIGNED_TRAILER), body, code)


def test_chunk_size_limit_is_configurable(context: SigningContext) -> None:
    body = encode(b"x" * 100, [100], SIGNED, context)
    refused(ChunkedDecoder(SIGNED, context, max_chunk_size=99), body, "InvalidRequest")
    assert decode(ChunkedDecoder(SIGNED, context, max_chunk_size=100), body) == b"x" * 100


def test_decoded_content_length_checked(context: SigningContext) -> None:
    body = encode(SMALL, [5], SIGNED, context)
    refused(ChunkedDecoder(SIGNED, context, decoded_content_length=len(SMALL) + 1), body, "IncompleteBody")
    refused(ChunkedDecoder(SIGNED, context, decoded_content_length=len(SMALL) - 1), body, "InvalidRequest")


def test_decoder_refuses_use_after_error(context: SigningContext) -> None:
    decoder = ChunkedDecoder(UNSIGNED_TRAILER)
    with pytest.raises(S3Error):
        decoder.feed(b"zz\r\n")
    with pytest.raises(S3Error):
        decoder.feed(b"0\r\n\r\n")
    with pytest.raises(S3Error):
        decoder.finish()


def test_constructor_guards(context: SigningContext) -> None:
    with pytest.raises(ValueError):
        ChunkedDecoder(PayloadMode.UNSIGNED)
    with pytest.raises(ValueError):
        ChunkedDecoder(SIGNED)
    assert context.seed_signature not in repr(ChunkedDecoder(SIGNED, context))


def test_accepts_bytearray_and_memoryview(context: SigningContext) -> None:
    body = encode(SMALL, [5], SIGNED, context)
    decoder = ChunkedDecoder(SIGNED, context)
    out = b"".join(bytes(p) for p in decoder.feed(bytearray(body[:10])) + decoder.feed(memoryview(body)[10:]))
    decoder.finish()
    assert out == SMALL


def test_parse_trailer_header() -> None:
    assert parse_trailer_header(" x-amz-checksum-CRC32 , ,x-amz-checksum-sha256") == {
        "x-amz-checksum-crc32",
        "x-amz-checksum-sha256",
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    junk=st.binary(max_size=600), mode=st.sampled_from([SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER]), prefix=st.booleans()
)
def test_arbitrary_bytes_only_raise_s3_errors(
    context: SigningContext, junk: bytes, mode: PayloadMode, prefix: bool
) -> None:
    body = (b"5\r\nhello\r\n" if prefix else b"") + junk
    decoder = decoder_for(mode, context)
    try:
        decoder.feed(body)
        decoder.finish()
    except S3Error:
        pass
