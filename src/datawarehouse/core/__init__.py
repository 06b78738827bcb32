"""core: pure functions on bytes — chunking, digests, compression, AEAD, erasure coding, frames.

No I/O, no asyncio, no SQL; everything here is property-tested. A *chunk* is a content-defined
piece of an object; *sealing* compresses and encrypts it into a *frame*; *encoding* splits a
frame into k data + m parity *shards*.
"""
