"""engine: the data path — chunks, shards, manifests, placement, journal, GC, scrub, heal.

Knows nothing about users or HTTP. A *data directory* holds keys, the metadata index and the disk
set; the *journal* on the disks is the durable record of metadata; a *bucket* here is only a
namespace for object keys.
"""
