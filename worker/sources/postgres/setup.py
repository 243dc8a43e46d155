"""PostgreSQL-side set-up for the postgres source: connections, checks, tables, publication, errors
(the slots: slot.py).

Imports: stdlib + psycopg2 + shared.errors + worker.sources.postgres.wire. Blocking calls only: run them on a
thread, never on the event loop. Every error names the cause and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras
from psycopg2 import sql

from shared.errors import SourceError
from shared.where import pg_where
from worker.sources.postgres.wire import WireError

# Text output forms the converters of values.py expect (snapshot and walsender sessions alike).
SESSION_OPTIONS = (
    "-c datestyle=ISO,YMD -c timezone=UTC -c intervalstyle=iso_8601 -c extra_float_digits=3 -c bytea_output=hex"
)
HEARTBEAT_PREFIX = "tidegate_heartbeat"
UNPARSABLE = "(unparsable dsn)"  # where a DSN libpq cannot read points at, in our messages


def fail(message: str, retryable: bool = False) -> SourceError:
    return SourceError(f"postgres source: {message}", retryable=retryable)


def _options(dsn: str) -> str:
    """Our session options after the DSN's own `options` (ours win where both set one)."""
    try:
        theirs = psycopg2.extensions.parse_dsn(dsn).get("options", "")
    except psycopg2.ProgrammingError:
        theirs = ""
    return f"{theirs} {SESSION_OPTIONS}".strip()


def connect_sql(dsn: str, app: str) -> Any:
    try:
        conn = psycopg2.connect(dsn, options=_options(dsn), application_name=app, connect_timeout=10)
    except psycopg2.OperationalError as exc:
        raise fail(f"cannot connect to {pg_where(dsn, UNPARSABLE)}: {str(exc).strip()}", retryable=True) from exc
    conn.autocommit = True
    return conn


def connect_repl(dsn: str, app: str) -> Any:
    try:
        return psycopg2.connect(
            dsn,
            options=_options(dsn),
            application_name=app,
            connect_timeout=10,
            connection_factory=psycopg2.extras.LogicalReplicationConnection,
        )
    except psycopg2.OperationalError as exc:
        text = str(exc).strip()
        if "replication" in text and ("permission" in text or "must be" in text or "pg_hba" in text):
            raise fail(
                f"replication connection to {pg_where(dsn, UNPARSABLE)} refused: {text}. Fix: ALTER ROLE <user> "
                "REPLICATION, and allow it in pg_hba.conf"
            ) from exc
        raise fail(
            f"cannot open a replication connection to {pg_where(dsn, UNPARSABLE)}: {text}", retryable=True
        ) from exc


def check_server(cur: Any) -> None:
    cur.execute("SHOW wal_level")
    level = cur.fetchone()[0]
    if level != "logical":
        raise fail(
            f"wal_level is '{level}', logical replication needs 'logical'. Fix: ALTER SYSTEM SET "
            "wal_level = logical; then restart PostgreSQL (scripts/services/postgres.sh does both)"
        )
    cur.execute("SELECT current_user, rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user")
    user, ok = cur.fetchone()
    if not ok:
        raise fail(
            f"role '{user}' lacks the REPLICATION privilege. Fix: ALTER ROLE \"{user}\" REPLICATION (as a superuser)"
        )


@dataclass
class TableInfo:
    schema: str
    name: str
    oid: int
    relkind: str
    columns: list[tuple[str, int]] = field(default_factory=list)  # (name, type oid), in order
    pk: list[tuple[str, str]] = field(default_factory=list)  # (name, format_type) of the primary key
    estimate: int = 0

    @property
    def full(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Composed:
        return sql.SQL(".").join([sql.Identifier(self.schema), sql.Identifier(self.name)])


def split_table(name: str) -> tuple[str, str]:
    schema, dot, table = name.partition(".")
    return (schema, table) if dot else ("public", name)


def describe_table(cur: Any, schema: str, name: str) -> TableInfo:
    cur.execute(
        """SELECT c.oid, c.relkind, c.relreplident, GREATEST(c.reltuples, 0)::bigint
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')""",
        (schema, name),
    )
    row = cur.fetchone()
    if row is None:
        raise fail(
            f"table {schema}.{name} not found in database {cur.connection.info.dbname}. Fix: create "
            "it, or correct `tables` (schema.table)"
        )
    oid, relkind, replident, estimate = row
    cur.execute(
        """SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s AND attnum > 0
                   AND NOT attisdropped AND attgenerated = '' ORDER BY attnum""",
        (oid,),
    )
    columns = [(n, int(t)) for n, t in cur.fetchall()]
    cur.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_index i
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                   WHERE i.indrelid = %s AND i.indisprimary
                   ORDER BY array_position(i.indkey::int2[], a.attnum)""",
        (oid,),
    )
    pk = [(n, t) for n, t in cur.fetchall()]
    has_identity_index = False
    if replident == "i":
        cur.execute("SELECT 1 FROM pg_index WHERE indrelid = %s AND indisreplident", (oid,))
        has_identity_index = cur.fetchone() is not None
    if replident == "n" or (replident == "d" and not pk) or (replident == "i" and not has_identity_index):
        raise fail(
            f"table {schema}.{name} has no primary key and no replica identity: once published, "
            "PostgreSQL rejects its UPDATEs and DELETEs and its changes cannot be keyed. Fix: add a "
            f"primary key, or ALTER TABLE {schema}.{name} REPLICA IDENTITY FULL"
        )
    return TableInfo(schema, name, int(oid), relkind, columns, pk, int(estimate))


def _publication(cur: Any, pub: str) -> tuple[bool, bool]:
    cur.execute("SELECT puballtables FROM pg_publication WHERE pubname = %s", (pub,))
    row = cur.fetchone()
    return (row is not None, bool(row and row[0]))


def ensure_publication(cur: Any, pub: str, tables: list[str], pipeline: str, log: Any) -> list[TableInfo]:
    """Create/extend the publication; return the tables to capture, sorted, described and checked."""
    exists, all_tables = _publication(cur, pub)
    marker = sql.Literal(f"created by tidegate pipeline {pipeline}")
    if tables:
        infos = [describe_table(cur, *split_table(t)) for t in tables]
        if not exists:
            cur.execute(
                sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
                    sql.Identifier(pub), sql.SQL(", ").join(i.ident for i in infos)
                )
            )
            cur.execute(sql.SQL("COMMENT ON PUBLICATION {} IS {}").format(sql.Identifier(pub), marker))
            log.info("pg_publication_created", publication=pub, tables=[i.full for i in infos])
        elif not all_tables:
            cur.execute("SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s", (pub,))
            have = {r[0] for r in cur.fetchall()}
            missing = [i for i in infos if i.full not in have]
            if missing:
                try:
                    cur.execute(
                        sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                            sql.Identifier(pub), sql.SQL(", ").join(i.ident for i in missing)
                        )
                    )
                except psycopg2.Error as exc:
                    raise fail(
                        f"publication {pub} lacks {[i.full for i in missing]} and adding them failed: "
                        f"{str(exc).strip()}. Fix: ALTER PUBLICATION {pub} ADD TABLE ..."
                    ) from exc
                log.info("pg_publication_extended", publication=pub, added=[i.full for i in missing])
    else:
        if not exists:
            try:
                cur.execute(sql.SQL("CREATE PUBLICATION {} FOR ALL TABLES").format(sql.Identifier(pub)))
            except psycopg2.Error as exc:
                raise fail(
                    f"creating publication {pub} FOR ALL TABLES failed: {str(exc).strip()}. Fix: list "
                    "`tables`, or create the publication as a superuser"
                ) from exc
            cur.execute(sql.SQL("COMMENT ON PUBLICATION {} IS {}").format(sql.Identifier(pub), marker))
            log.info("pg_publication_created", publication=pub, tables="ALL")
        cur.execute("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s ORDER BY 1, 2", (pub,))
        infos = [describe_table(cur, s, t) for s, t in cur.fetchall()]
    return infos


def drop_publication_if_ours(cur: Any, pub: str, pipeline: str) -> bool:
    cur.execute("SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = %s", (pub,))
    row = cur.fetchone()
    if row and row[0] == f"created by tidegate pipeline {pipeline}":
        cur.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(pub)))
        return True
    return False


def slot_in_use(slot: str, pid: Any) -> SourceError:
    return fail(
        f"replication slot {slot} is active for PID {pid}: another process streams from it. Fix: stop "
        f"that consumer (SELECT pg_terminate_backend({pid})) or set another `slot`",
        retryable=True,
    )


# what the server says when it invalidated a slot (max_slot_wal_keep_size) and it is asked to stream
_LOST = ("can no longer get changes", "has been invalidated")


def slot_lost(slot: str, pipeline: str) -> SourceError:
    """The server invalidated the slot: never retried, the message says how to start over."""
    n = pipeline or "<name>"
    return fail(
        f"replication slot {slot} was invalidated by the server (wal_status=lost): its WAL is gone, events "
        f"were lost upstream. To recover: POST /pipelines/{n}/stop, DELETE /pipelines/{n}/checkpoints "
        f"(drops the slot state), then POST /pipelines/{n}/resume to re-snapshot"
    )


def tables_dropped(names: list[str], pipeline: str) -> SourceError:
    """Captured tables were dropped under the running pipeline: it halts rather than go on
    without them, and says how to go on."""
    n, which = pipeline or "<name>", ", ".join(names)
    return fail(
        f"captured table {which} was dropped while the pipeline ran (its changes up to the drop "
        f"were read). To go on: remove it from source.config.tables (PATCH /pipelines/{n}; the "
        f"pipeline restarts from its checkpoint), or re-create it and POST /pipelines/{n}/resume"
    )


def classify(exc: BaseException, slot: str, pipeline: str = "") -> SourceError:
    """Any failure of the stream thread as a SourceError; retryable = reconnect with backoff."""
    if isinstance(exc, SourceError):
        return exc
    text = str(exc).strip()
    if any(s in text for s in _LOST):
        return slot_lost(slot, pipeline)
    if isinstance(exc, psycopg2.errors.ObjectInUse):
        return slot_in_use(slot, text.rsplit(" ", 1)[-1] if "PID" in text else "?")
    if isinstance(exc, psycopg2.errors.UndefinedObject):
        return fail(
            f"{text}. Fix: the slot or publication was dropped behind tidegate's back; delete the "
            "pipeline's checkpoints (DELETE /pipelines/<name>/checkpoints) to start over with a new "
            "snapshot"
        )
    if isinstance(exc, WireError):
        if exc.sqlstate in ("42704", "42P01", "55000"):  # undefined object/table, object not in state
            return fail(
                f"{text}. Fix: the slot or publication was dropped or changed behind tidegate's back; "
                "delete the pipeline's checkpoints (DELETE /pipelines/<name>/checkpoints) to start over"
            )
        return fail(f"replication stream lost: {text}", retryable=True)
    if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return fail(f"connection lost: {text}", retryable=True)
    if isinstance(exc, psycopg2.Error):
        return fail(f"{exc.__class__.__name__}: {text}")
    return fail(f"internal error {exc.__class__.__name__}: {text}")
