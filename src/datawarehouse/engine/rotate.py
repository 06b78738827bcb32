"""Master key rotation: rewrap every domain secret under a new master key; no chunk is touched.

Phases, each safe to interrupt: (1) the new key is written beside the current one
(``master.key.new``); (2) each secret, rewrapped, is journaled and replaces its row in the index;
(3) the new key file replaces the old. A process that opens the directory between (1) and (3)
loads both keys and unwraps whichever wrapping it finds; running the rotation again finishes it.
With a passphrase, the new passphrase derives the new key (fresh Argon2id salt) and its
parameters file is written last.
"""

from __future__ import annotations

from datawarehouse.core import crypto
from datawarehouse.core.crypto import MasterKey
from datawarehouse.engine import journal as jr
from datawarehouse.engine.engine import Engine, _secret_from_json, domain_secret_record
from datawarehouse.errors import KeyError_
from datawarehouse.meta.repo import DomainSecretRecord, MetaTx


def rotate_master_key(engine: Engine, new_passphrase: str | None = None) -> tuple[str, str]:
    """Return (old key id, new key id)."""
    store = engine.datadir.keys
    old_id = engine.keyring.master_ids()[0]
    old = engine.keyring.master(old_id)
    if old is None:  # pragma: no cover
        raise KeyError_("no master key loaded")
    if store.uses_passphrase:
        if new_passphrase is None or len(new_passphrase) < 8:
            raise KeyError_("this data directory uses a passphrase: give a new one of at least 8 characters")
        new: MasterKey | None = None
    else:
        if new_passphrase is not None:
            raise KeyError_("this data directory uses a key file; rotation makes a new key file")
        new = store.stage_rotation()
    if new is None:
        params = crypto.new_argon2_params()
        new = crypto.master_key_from_passphrase(new_passphrase or "", params)
    with engine.repo.transaction() as tx:
        records = tx.list_domain_secrets()
    for rec in records:
        master = engine.keyring.master(rec.master_key_id)
        if master is None:
            # An earlier rotation stopped after rewrapping under a key that is not loaded (a
            # passphrase rotation interrupted before its parameters file was written): the journal
            # still holds this secret wrapped by a loaded key, as ``Engine`` found when opening.
            rec = _journaled_wrapping(engine, rec)
            master = engine.keyring.master(rec.master_key_id)
        if master is None:  # pragma: no cover - _journaled_wrapping returns a loaded wrapping
            raise KeyError_(f"domain {rec.domain_id}: wrapped by an unknown master key {rec.master_key_id}")
        secret = crypto.unwrap_secret(master, rec.domain_id, rec.key_version, rec.wrapped)
        rewrapped = DomainSecretRecord(
            rec.domain_id,
            rec.key_version,
            crypto.wrap_secret(new, rec.domain_id, rec.key_version, secret),
            new.key_id,
            engine.now(),
        )
        _commit_secret(engine, rewrapped)
    # From here on everything is sealed under the new key; secrets other services sealed under
    # the old one (IAM access keys) are resealed before the old key goes away.
    engine.keyring.make_current(new)
    for hook in engine.master_rotation_hooks:
        hook()
    if store.uses_passphrase:
        derived = store.replace_passphrase(new_passphrase or "", params)
        if derived.key_id != new.key_id:  # pragma: no cover - same inputs, same key
            raise KeyError_("passphrase rotation: derived key mismatch")
    else:
        store.finish_rotation()
    return old_id, new.key_id


def _journaled_wrapping(engine: Engine, rec: DomainSecretRecord) -> DomainSecretRecord:
    """The same domain secret (domain, key version) as journaled under a loaded master key."""
    for entry in jr.read_all(engine.disks.stores()):
        if entry.rtype == jr.RECORD_DOMAIN_SECRET:
            cand = _secret_from_json(entry.payload)
            if (cand.domain_id, cand.key_version) == (rec.domain_id, rec.key_version) and engine.keyring.master(
                cand.master_key_id
            ):
                return cand
    raise KeyError_(f"domain {rec.domain_id}: wrapped by an unknown master key {rec.master_key_id}")


def _commit_secret(engine: Engine, rec: DomainSecretRecord) -> None:
    def apply(tx: MetaTx) -> None:
        tx.put_domain_secret(rec)

    engine.committer.submit(apply, lambda: domain_secret_record(rec))
