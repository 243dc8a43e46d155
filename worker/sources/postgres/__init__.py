"""The `postgres` source: PostgreSQL logical replication (pgoutput) with an initial snapshot.

The same file names for the same roles as worker/sources/mysql/:
  source.py    the Source class (PostgresSource, registered in worker/plugins.py): open/read/commit/close
  setup.py     connections, server and slot checks, publication and slot set-up, error classification
  position.py  the position strings and their total order (position_key)
  snapshot.py  reading the tables inside an exported snapshot
  stream.py    the source's thread: snapshot, then pgoutput streaming, with reconnects
  decode.py    pgoutput messages -> change events (pure)
  values.py    PostgreSQL text values -> JSON-ready values, by type oid
  wire.py      (postgres only) the CopyBoth wire helpers for status updates and keepalives
Nothing is imported here: the registry imports source.py lazily.
"""
