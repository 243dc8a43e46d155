"""The `mysql` source: MySQL 8 / MariaDB 10.11+ binlog (row format) with an optional initial snapshot.

The same file names for the same roles as worker/sources/postgres/:
  source.py     the Source class (MysqlSource, registered in worker/plugins.py): open/read/commit/close,
                and the reader thread's reconnect loop
  setup.py      the dsn, connections, server and privilege checks, the tables' columns, errors
  position.py   the position strings and their total order (key), and what a resume must skip
  snapshot.py   the snapshot phase: each table read inside a consistent snapshot
  stream.py     binlog streaming: mysql-replication events -> chunks of change events
  decode.py     rows events -> (before, after) images, by the fast decoder or mysql-replication
  columns.py    per-column binary decoders of decode.py
  values.py     MySQL column values -> JSON-ready values
mysql only: binlog.py (the server's binlog points; opening mysql-replication's reader). The thread
hands events to the loop through worker/sources/handoff.py, as the postgres source's does.
Nothing is imported here: the registry imports source.py lazily.
"""
