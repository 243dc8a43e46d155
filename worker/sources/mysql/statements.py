"""Statements in the binlog that a row-based reader must not pass over (issue #12: nothing is
silently skipped). A Query event other than BEGIN/COMMIT is DDL in ROW format; two kinds touching
a captured table stop the source instead:

- DML written as a statement (INSERT/UPDATE/DELETE/REPLACE: a session or server with binlog_format
  STATEMENT or MIXED): its rows are not in the binlog, so the change cannot be read at all;
- DROP TABLE of a captured table: the pipeline would go on without it.

Table names are matched as MySQL writes them: optional backquotes, optional `db.` qualifier
(an unqualified name matches a captured table of that name in any database). Pure; stdlib + shared.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from shared.errors import SourceError

_NAME = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_QUALIFIED = rf"{_NAME}(?:\s*\.\s*{_NAME})?"
_COMMENT = re.compile(r"/\*.*?\*/|--[^\n]*|#[^\n]*", re.S)
_DML = re.compile(
    rf"^\s*(?:(?:insert|replace)\s+(?:(?:low_priority|delayed|high_priority|ignore)\s+)*(?:into\s+)?"
    rf"|update\s+(?:(?:low_priority|ignore)\s+)*|delete\s+(?:(?:low_priority|quick|ignore)\s+)*from\s+)"
    rf"({_QUALIFIED})",
    re.I,
)
_DROP = re.compile(rf"^\s*drop\s+(?:temporary\s+)?tables?\s+(?:if\s+exists\s+)?((?:{_QUALIFIED}\s*,?\s*)+)", re.I)


def _split(name: str) -> tuple[str | None, str]:
    parts = [p.strip().strip("`").replace("``", "`") for p in re.findall(_NAME, name)]
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def _ours(name: str, tables: Iterable[tuple[str, str]]) -> str | None:
    db, table = _split(name)
    for t_db, t_name in tables:
        if t_name.lower() == table.lower() and (db is None or db.lower() == t_db.lower()):
            return f"{t_db}.{t_name}"
    return None


def check(query: str, tables: Iterable[tuple[str, str]], where: str, at: str, pipeline: str = "") -> None:
    """Raise SourceError (not retryable) when `query` (a Query event at binlog position `at`) is
    DML on, or a DROP of, a captured table (`tables`: (db, name) pairs)."""
    text = _COMMENT.sub(" ", query)
    tables = list(tables)
    n = pipeline or "<name>"
    m = _DML.match(text)
    if m is not None and (hit := _ours(m.group(1), tables)) is not None:
        raise SourceError(
            f"{where}: a change to {hit} reached the binlog as a statement at {at} (binlog_format is not ROW "
            "for the session that wrote it): its rows are not in the binlog, so it cannot be read, and the "
            "source stops rather than skip it. Fix: binlog_format=ROW for the server and every session; then "
            f"re-read the table (POST /pipelines/{n}/snapshots, or DELETE /pipelines/{n}/checkpoints)",
            retryable=False,
        )
    m = _DROP.match(text)
    if m is not None:
        hits = [h for name in m.group(1).split(",") if name.strip() and (h := _ours(name, tables))]
        if hits:
            raise SourceError(
                f"{where}: captured table {', '.join(hits)} was dropped at {at} (its changes up to the drop "
                f"were read). To go on: remove it from source.config.tables (PATCH /pipelines/{n}; the "
                f"pipeline restarts from its checkpoint), or re-create it and POST /pipelines/{n}/resume",
                retryable=False,
            )
