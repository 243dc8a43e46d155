"""The `postgres` source: PostgreSQL logical replication (pgoutput) with an initial snapshot.

The same file names for the same roles as worker/sources/mysql/:
  source.py     the Source class (PostgresSource, registered in worker/plugins.py): open/read/commit/close
  setup.py      connections, server checks, tables and the publication, errors (classify)
  position.py   the position strings and their total order (position_key)
  snapshot.py   the snapshot phase: each table read inside one exported snapshot
  stream.py     the source's thread: snapshot, then pgoutput streaming, with reconnects and flush feedback
  decode.py     pgoutput messages -> change events (pure)
  columns.py    per-relation column decoders of decode.py (pure)
  values.py     PostgreSQL text values -> JSON-ready values, by type oid
postgres only: slot.py (the replication slot), wire.py (CopyBoth status updates and keepalives),
heartbeat.py (pg_logical_emit_message while idle). The thread hands events to the loop through
worker/sources/handoff.py, as the mysql source's does.
Nothing is imported here: the registry imports source.py lazily.
"""
