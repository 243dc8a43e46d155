"""The `mysql` source: MySQL 8 / MariaDB 10.11+ binlog (row format) with an optional initial snapshot.

The same file names for the same roles as worker/sources/postgres/:
  source.py    the Source class (MysqlSource, registered in worker/plugins.py): open/read/commit/close
  setup.py     the dsn, connections, server and privilege checks, loading the tables' columns, errors
  position.py  the position strings and their total order (position_key)
  snapshot.py  reading the tables inside a consistent snapshot
  stream.py    binlog streaming: mysql-replication events -> chunks of change events
  decode.py    the fast rows-event decoder (bytes -> values)
  values.py    MySQL column values -> JSON-ready values
Nothing is imported here: the registry imports source.py lazily.
"""
