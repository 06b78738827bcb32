"""meta: the only package with SQL.

Vocabulary: a ``MetaRepo`` opens ``MetaTx`` transactions; every read and write of metadata goes
through one. The metadata database is an *index*: the journal on the data disks is the durable
source it can be rebuilt from (see ``docs/invariants.md``).
"""
