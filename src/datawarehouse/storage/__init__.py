"""storage: bytes by opaque key on one disk (or, later, one remote).

Vocabulary: a *blob store* holds *blobs* under *keys* (relative, slash-separated, validated so
nothing escapes the store's root). Puts are atomic and durable; stores know nothing of chunks.
"""
