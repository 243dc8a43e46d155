"""Postgres sink (CONTRACT section 6): a replica of the source table in `table` at `dsn`.

`c`/`u`/`r` upsert `after` (INSERT ... ON CONFLICT (key) DO UPDATE), `d` deletes by
the key in `before` (or `after`). Key columns: `key_columns`, else the target
table's primary key (read at open). Each batch is one transaction (one
multi-statement query: one round trip; batches queued together, with max_inflight > 1,
share one) that also upserts this sink's checkpoint into `tidegate_checkpoints(pipeline, sink_id,
position, updated_at)` (created in the target table's schema), so `open()`
returns it and a replay never applies a batch twice: exactly-once for this sink.
Event columns the target table lacks are ignored, with one warning per column.
A batch is folded to its final state per key before it is applied.

psycopg2 blocks, so every call runs on this sink's own thread.
Imports: shared, worker.sinks (base, pg_table), psycopg2.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg2
import psycopg2.errors

from shared.errors import SinkError
from shared.events import position_of
from shared.spec.model import PostgresSinkConfig
from shared.where import pg_where
from worker.sinks.base import Sink, SinkBatch, SinkContext, merge_batches
from worker.sinks.pg_table import (
    TableError,
    TableInfo,
    convert_keys,
    delete_sql,
    load_table,
    plan,
    quote_ident,
    split_table,
    upsert_sql,
    values_literal,
)

CHECKPOINT_TABLE = "tidegate_checkpoints"
CONNECT_TIMEOUT_S = 10
_FATAL_CONNECT = (
    "password authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "not permitted to log in",
    "permission denied",
    "invalid dsn",
    "invalid connection option",
    "SSL is not enabled",
    "authentication",
)
_RETRYABLE_SQLSTATE_CLASSES = ("08", "40", "53", "55", "57", "58")


class PostgresSink(Sink[PostgresSinkConfig]):
    def __init__(self, config: Any, ctx: SinkContext) -> None:
        super().__init__(config, ctx)
        self.where = pg_where(config.dsn)
        try:
            self._schema, self._table = split_table(config.table)
        except ValueError as exc:
            raise SinkError(self.id, str(exc), retryable=False) from None
        self._ckpt_table = f"{quote_ident(self._schema)}.{quote_ident(CHECKPOINT_TABLE)}"
        self._ckpt_sql = (
            f"INSERT INTO {self._ckpt_table} (pipeline, sink_id, position, updated_at) "
            "VALUES (%s, %s, %s, now()) ON CONFLICT (pipeline, sink_id) "
            "DO UPDATE SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at"
        )
        self._conn: Any = None
        self._info: TableInfo | None = None
        self._position: str | None = None
        self._pos_key: Any = None
        self._warned: set[str] = set()
        self._sql: dict[tuple[str, ...], tuple[bytes, bytes, str]] = {}
        self._exec: ThreadPoolExecutor | None = None
        self._opened = False
        self._fast_literals = False

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._exec is None:
            self._exec = ThreadPoolExecutor(1, thread_name_prefix=f"sink-postgres-{self.id}")
        return await asyncio.get_running_loop().run_in_executor(self._exec, fn, *args)

    # ----------------------------------------------------------- connection
    async def open(self) -> str | None:
        return await self._run(self._connect)

    def _connect(self) -> str | None:
        """Connect, read the table and this sink's checkpoint (also after every failure)."""
        self._drop()
        try:
            conn = psycopg2.connect(
                self.config.dsn,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name=f"tidegate-{self.ctx.pipeline}-{self.id}"[:63],
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
            )
        except psycopg2.Error as exc:
            raise self._classify_connect(exc) from exc
        conn.autocommit = True
        try:
            conn.set_client_encoding("UTF8")
            with conn.cursor() as cur:
                cur.execute("SHOW standard_conforming_strings")
                fast = cur.fetchone()[0] == "on"  # type: ignore[index]  # SHOW returns one row
                try:
                    info = load_table(cur, self._schema, self._table, self.config.key_columns)
                except TableError as exc:
                    raise SinkError(self.id, f"postgres {self.where}: {exc}", retryable=False) from None
                if info is None:
                    raise SinkError(
                        self.id,
                        f"postgres {self.where}: table {self._schema}.{self._table} does not "
                        "exist; create the replica table first",
                        retryable=self._opened,
                    )
                cur.execute(f"""CREATE TABLE IF NOT EXISTS {self._ckpt_table} (
                    pipeline text NOT NULL, sink_id text NOT NULL, position text NOT NULL,
                    updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, sink_id))""")
                cur.execute(
                    f"SELECT position FROM {self._ckpt_table} WHERE pipeline = %s AND sink_id = %s",
                    (self.ctx.pipeline, self.ctx.checkpoint_scope(self.id)),
                )
                row = cur.fetchone()
        except psycopg2.errors.UniqueViolation:  # two sinks created the checkpoint table at once
            conn.close()
            return self._connect()
        except Exception as exc:  # noqa: BLE001 - classified
            conn.close()
            raise self._classify(exc) from exc
        self._conn, self._info, self._sql, self._fast_literals = conn, info, {}, fast
        self._position = row[0] if row else None
        self._pos_key = self.ctx.position_key(self._position) if self._position is not None else None
        self._opened = True
        return self._position

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass

    def _classify_connect(self, exc: psycopg2.Error) -> SinkError:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        if "not currently accepting connections" in text or "starting up" in text or "shutting down" in text:
            return SinkError(self.id, f"postgres {self.where}: {text}; will retry", retryable=True)
        if any(s in text for s in _FATAL_CONNECT):
            return SinkError(
                self.id, f"postgres {self.where} refused the connection: {text} (fix `dsn`)", retryable=False
            )
        return SinkError(self.id, f"postgres {self.where} connection failed: {text}; will retry", retryable=True)

    def _classify(self, exc: BaseException) -> SinkError:
        if isinstance(exc, SinkError):
            return exc
        if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) and not getattr(exc, "pgcode", None):
            return SinkError(
                self.id,
                f"postgres {self.where}: connection lost: {str(exc).strip() or exc!r}; will retry",
                retryable=True,
            )
        code = getattr(exc, "pgcode", None) or ""
        text = (getattr(exc, "pgerror", None) or str(exc)).strip().replace("\n", " ")
        if code.startswith(_RETRYABLE_SQLSTATE_CLASSES) or code in ("42P01", "42703"):
            # connection, rollback, resources, operator intervention; a table renamed or altered
            # meanwhile is read again on reconnect
            return SinkError(self.id, f"postgres {self.where}: {text} [{code}]; will retry", retryable=True)
        return SinkError(self.id, f"postgres {self.where}: {text} [{code or exc.__class__.__name__}]", retryable=False)

    # ---------------------------------------------------------------- write
    async def write(self, batch: SinkBatch) -> None:
        await self._run(self._write_sync, batch)

    async def write_many(self, batches: list[SinkBatch]) -> None:
        """Consecutive queued batches as one transaction with the last one's checkpoint:
        the same all-or-nothing rule, one commit instead of several."""
        await self._run(self._write_sync, merge_batches(batches))

    def _write_sync(self, batch: SinkBatch) -> None:
        if self._conn is None:
            self._connect()  # also re-reads the checkpoint: resolves a commit whose reply was lost
        pk = self.ctx.position_key
        if not batch.replay and self._pos_key is not None and pk(batch.last_position) <= self._pos_key:
            return
        events = batch.events
        if not batch.replay and self._pos_key is not None and events:
            first = position_of(events[0])
            if first is not None and pk(first) <= self._pos_key:
                events = [e for e in events if not self._at_or_below(position_of(e))]
        info = self._info
        assert info is not None
        try:
            p = plan(info, events)
        except TableError as exc:
            raise SinkError(self.id, f"postgres {self.where}: {exc}", retryable=False) from None
        self._warn_once(p.ignored_columns, p.ignored_ops)
        conn = self._conn
        try:
            with conn.cursor() as cur:
                mog = cur.mogrify
                parts: list[bytes] = []
                if p.deletes:
                    head, tail, tpl = self._statement(("\0delete",), lambda: delete_sql(info))
                    parts.append(head + b",".join([mog(tpl, k) for k in convert_keys(info, p.deletes)]) + tail)
                for cols, rows in p.upserts.items():
                    head, tail, tpl = self._statement(cols, lambda: upsert_sql(info, cols))  # noqa: B023
                    if self._fast_literals:
                        parts.append(head + values_literal(rows, mog).encode() + tail)
                    else:
                        parts.append(head + b",".join([mog(tpl, r) for r in rows]) + tail)
                if not batch.replay:  # a DLQ replay leaves the checkpoint where it is
                    parts.append(
                        mog(
                            self._ckpt_sql, (self.ctx.pipeline, self.ctx.checkpoint_scope(self.id), batch.last_position)
                        )
                    )
                # one round trip: a multi-statement query runs as one transaction (autocommit mode)
                cur.execute(b";\n".join(parts))
        except Exception as exc:  # noqa: BLE001 - classified; the next write reconnects
            self._drop()
            raise self._classify(exc) from exc
        if not batch.replay:
            self._position = batch.last_position
            self._pos_key = pk(batch.last_position)

    def _statement(self, cols: tuple[str, ...], build: Callable[[], tuple[str, str, str]]) -> tuple[bytes, bytes, str]:
        sql = self._sql.get(cols)
        if sql is None:
            head, tail, tpl = build()
            sql = self._sql[cols] = (head.encode(), tail.encode(), tpl)
        return sql

    def _at_or_below(self, pos: str | None) -> bool:
        return pos is not None and self.ctx.position_key(pos) <= self._pos_key

    def _warn_once(self, columns: set[str], ops: set[str]) -> None:
        new_cols = sorted(c for c in columns if c not in self._warned)
        if new_cols:
            self._warned.update(new_cols)
            self.ctx.log.warning(
                "pg_sink_columns_ignored",
                sink=self.id,
                table=f"{self._schema}.{self._table}",
                columns=new_cols,
                hint="the target table has no such columns",
            )
        new_ops = sorted(f"op:{o}" for o in ops if f"op:{o}" not in self._warned)
        if new_ops:
            self._warned.update(new_ops)
            self.ctx.log.warning("pg_sink_ops_ignored", sink=self.id, ops=[o[3:] for o in new_ops])

    # ---------------------------------------------------------------- close
    async def close(self) -> None:
        if self._exec is None:
            return
        try:
            await self._run(self._drop)
        finally:
            self._exec.shutdown(wait=False)
            self._exec = None
