"""The `mysql` source: MySQL 8 / MariaDB 10.11+ binlog (row format) with an optional initial snapshot.

The same file names for the same roles as worker/sources/postgres/:
  source.py     the Source class (MysqlSource, registered in worker/plugins.py): open/read/commit/close,
                and the reader thread's reconnect loop
  setup.py      the dsn, connections, server and privilege checks, the tables' columns, errors
  position.py   the position strings and their total order (key), and what a resume must skip
  snapshot.py   the snapshot phase: each table read inside a consistent snapshot
  stream.py     binlog streaming: binlog events -> chunks of change events
  decode.py     rows events -> (before, after) images (generated decoders or mysql-replication's
                rows) -> change events
  columns.py    per-column binary decoders (rowcode.py inlines the common types, calls the rest)
  values.py     MySQL column values -> JSON-ready values
mysql only: binlog.py (the server's binlog points, the readers' connection); wire.py (the own
binlog reader: COM_BINLOG_DUMP, packets); events.py (binlog events parsed: GTID, QUERY, XID,
ROTATE, rows); tablemap.py (TABLE_MAP events parsed); rowcode.py (one generated decoder per table
map); libreader.py (mysql-replication's reader, where the own decoder cannot read a table). The
thread hands events to the loop through worker/sources/handoff.py, as the postgres source's does.
Nothing is imported here: the registry imports source.py lazily.
"""
