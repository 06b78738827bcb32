"""api.s3: the S3 adapter — pure building blocks first, the ASGI app on top of them.

Vocabulary: a *request* here is the transport-neutral value the app builds from the ASGI scope
(method, raw path, decoded query pairs, lower-cased headers); *verifying* it means SigV4
(``sigv4``, over the ``canonical`` request and the ``signing`` keys); an *aws-chunked* body is the
framed upload encoding SDKs stream (``chunked``); an *additional checksum* is one of the
x-amz-checksum-* values (``checksums``); every failure a client sees is an ``S3Error``
(``errors``), rendered as S3's error XML. XML request bodies are parsed in ``xml``, responses
rendered in ``xmlrender``, both over the records of ``xmlmodel``. Nothing here does I/O.
"""
