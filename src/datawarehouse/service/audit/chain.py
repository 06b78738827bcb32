"""Hash chaining: each record's ``prev`` is the hash of the record before it, so changing,
removing, adding or moving any record breaks a link that ``verify`` finds.

Hashes are BLAKE3 (hex, 32 bytes) of a domain-separation prefix and the record's canonical body;
the first record links to the *genesis* hash, bound to the data directory id, so a log cannot be
passed off as another installation's.
"""

from __future__ import annotations

from dataclasses import dataclass

import blake3

from datawarehouse.service.audit.record import AuditRecord

RECORD_CONTEXT = b"dwh-audit-record-v1\x00"
GENESIS_CONTEXT = b"dwh-audit-genesis-v1\x00"
SEGMENT_CONTEXT = b"dwh-audit-segment-v1\x00"


def genesis_hash(datadir_id: str) -> str:
    return blake3.blake3(GENESIS_CONTEXT + datadir_id.encode()).hexdigest()


def record_hash(record: AuditRecord) -> str:
    """The hash a record must carry: of its canonical bytes without ``hash`` (``prev`` included)."""
    return blake3.blake3(RECORD_CONTEXT + record.body_bytes()).hexdigest()


def segment_digest(data: bytes) -> str:
    """A digest of a segment object's exact bytes (a checkpoint names it)."""
    return blake3.blake3(SEGMENT_CONTEXT + data).hexdigest()


@dataclass(frozen=True)
class ChainHead:
    """Where the chain stands: the last seq written (0: none) and its hash (or genesis)."""

    seq: int
    hash: str

    def link(self, record: AuditRecord) -> tuple[AuditRecord, ChainHead]:
        """``record`` as the next one: seq, prev and hash set; and the new head."""
        unsealed = record.with_chain(self.seq + 1, self.hash, "")
        linked = unsealed.with_chain(unsealed.seq, unsealed.prev, record_hash(unsealed))
        return linked, ChainHead(linked.seq, linked.hash)
