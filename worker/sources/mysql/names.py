"""Names for the mysql source: its default replication server_id, and `db.table` names of the spec.

Imports: stdlib + shared.errors.
"""

from __future__ import annotations

import hashlib

from shared.errors import SourceError


def default_server_id(pipeline: str) -> int:
    """A stable server_id per pipeline, in [2^30, 2^32): away from the small ids servers use."""
    h = int.from_bytes(hashlib.blake2b(pipeline.encode(), digest_size=8).digest(), "big")
    return (1 << 30) + h % ((1 << 32) - (1 << 30) - 1)


def split_names(tables: list[str], default_db: str | None, where: str) -> list[tuple[str, str]]:
    out = []
    for t in tables:
        db, dot, name = t.partition(".")
        if not dot:
            if not default_db:
                raise SourceError(
                    f"{where}: table {t!r} has no database: write it as db.table in "
                    "spec.source.config.tables or put the database in the dsn",
                    retryable=False,
                )
            db, name = default_db, t
        out.append((db, name))
    return out
