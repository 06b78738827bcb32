"""The tamper-evident audit log.

Vocabulary: a *record* is one S3 request or admin action (``record.AuditRecord``), carrying its
``seq`` (1, 2, 3 ... without gaps), ``prev`` (the hash of the record before it; the first one's
is the *genesis* hash bound to the data directory id) and its own ``hash`` (BLAKE3 of its
canonical JSON). Records are appended to the *spool* (``<datadir>/audit/spool-*.jsonl``); a
*checkpoint* (Ed25519-signed) *seals* the spool's records into a *segment*, stored as an object
in the hidden, object-locked system bucket ``dwh--audit``. ``verify`` recomputes everything.
"""
