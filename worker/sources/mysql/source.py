"""The `mysql` source: MySQL 8 / MariaDB 10.11+ binlog (row format) with an optional initial snapshot.

Imports: stdlib, shared, worker.sources.base and the sibling modules (pymysql, mysql-replication).
Shape: `open()` checks the server and the tables (on a thread) and starts one reader thread,
`mysql-source-<pipeline>`, that runs the snapshot (snapshot) and then the binlog stream (stream);
chunks reach the loop through the bounded hand-off (worker.sources.handoff): back-pressure stops it.
Positions and their order: position. Values: values. Reconnects are internal: when the server
restarts or the link drops, the reader backs off (0.5 s to 10 s) and resumes after the last event it
handed over (in a snapshot: at the interrupted table), so read() returns None meanwhile; `stats()`
shows `connected: false` and the error, and the log has `mysql_reconnect`. Errors that a retry cannot
fix (binlog purged, missing privilege, table gone) are raised from read() as SourceError(retryable=False).
Incremental snapshots (CONTRACT 13): backfill.py on the stream's thread, watermark rows in the signal table.
Nothing is acknowledged upstream (a binlog has no consumer state): commit() records the position.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pymysql

from shared.errors import SourceError
from shared.spec.model import MysqlSourceConfig
from worker.sources.base import Chunk, Source, SourceContext
from worker.sources.handoff import Handoff, Stopped
from worker.sources.mysql.backfill import MyBackfill
from worker.sources.mysql.binlog import current_point, require_binlog
from worker.sources.mysql.chunks import check
from worker.sources.mysql.decode import LibraryNeeded
from worker.sources.mysql.health import binlog_health, committed_probe, stop_health
from worker.sources.mysql.names import default_server_id, split_names
from worker.sources.mysql.position import (
    CONTINUE,
    PLAIN,
    REREAD,
    BinlogPos,
    Entries,
    SnapshotPos,
    entries_after,
    key,
    parse,
)
from worker.sources.mysql.setup import (
    Dsn,
    ServerInfo,
    TableInfo,
    all_tables,
    check_privileges,
    check_server,
    connect,
    error,
    load_tables,
    parse_dsn,
)
from worker.sources.mysql.snapshot import Snapshot
from worker.sources.mysql.stream import BinlogStream

READ_WAIT_S = 0.1
HANDOFF_CHUNKS = 8  # chunks of max_chunk events waiting for the loop at most (back-pressure)
BACKOFF_S = (0.5, 10.0)


class MysqlSource(Source[MysqlSourceConfig]):
    max_chunk = 2000  # events per chunk at most (a bigger transaction spans chunks)

    def __init__(self, config: Any, ctx: SourceContext) -> None:
        super().__init__(config, ctx)
        self.log = ctx.log.bind(source="mysql") if hasattr(ctx.log, "bind") else ctx.log
        self.server_id = config.server_id or default_server_id(ctx.pipeline)
        self._handoff: Handoff | None = None
        self._thread: threading.Thread | None = None
        self._stream: BinlogStream | None = None
        self._progress: dict[str, Any] = {}
        self._status: dict[str, Any] = {
            "connected": False,
            "file": None,
            "pos": None,
            "last_error": None,
            "reconnects": 0,
        }
        self._committed: str | None = None
        self._fast = True  # the own binlog decoder, until a table needs mysql-replication's
        self._health: Any = None  # binlog distance on a slow timer (worker.sources.health)
        self._backfill: MyBackfill | None = None  # incremental snapshots, once open

    @staticmethod
    def position_key(position: str) -> Any:
        return key(position)

    # -- open -------------------------------------------------------------------------------------
    async def open(self, position: str | None) -> None:
        self._handoff = Handoff(self.max_chunk * HANDOFF_CHUNKS)
        self._handoff.bind(asyncio.get_running_loop())
        dsn, server, tables, start = await asyncio.to_thread(self._prepare, position)
        self._thread = threading.Thread(
            target=self._run, args=(dsn, server, tables, start), name=f"mysql-source-{self.ctx.pipeline}", daemon=True
        )
        self._thread.start()
        self._health = self._health or binlog_health(dsn, self._status, self.ctx.pipeline)

    def _prepare(self, position: str | None) -> tuple[Dsn, ServerInfo, list[TableInfo], Any]:
        dsn = parse_dsn(self.config.dsn)
        where = dsn.where
        try:
            start = parse(position) if position is not None else None
        except ValueError as exc:
            raise SourceError(
                f"{where}: checkpoint {position!r} is not a mysql position: "
                "DELETE /pipelines/<name>/checkpoints to start over",
                retryable=False,
            ) from exc
        conn = connect(dsn)
        try:
            with conn.cursor() as cur:
                server = check_server(cur, where)
                if server.server_id == self.server_id:
                    raise SourceError(
                        f"{where}: server_id {self.server_id} is the server's own: set "
                        "spec.source.config.server_id to another value",
                        retryable=False,
                    )
                warnings = server.warnings + check_privileges(cur, where)
                names = self.config.tables
                if names:
                    pairs = split_names(names, dsn.db, where)
                elif dsn.db:
                    pairs = all_tables(cur, dsn.db)
                else:
                    raise SourceError(
                        f"{where}: no tables: list them in spec.source.config.tables "
                        "(db.table) or put a database in the dsn",
                        retryable=False,
                    )
                tables = load_tables(cur, pairs, server.flavor, where)
                start = self._start(cur, where, start, position, len(tables))
        except pymysql.MySQLError as exc:
            raise error(where, exc, "open") from exc
        finally:
            conn.close()
        for w in warnings:
            self.log.warning("mysql_source_config", problem=w)
        self.log.info(
            "mysql_source_opened",
            server=f"{server.flavor} {server.version}",
            position=position,
            start=str(start) if start is not None else "snapshot",
            server_id=self.server_id,
            tables=[t.full_name for t in tables],
        )
        self._backfill = MyBackfill.of(dsn, self.ctx, tables, self.log)
        if self.config.snapshot == "initial":
            self._progress.update(
                table=None, rows_done=0, rows_estimated=0, done=not (start is None or isinstance(start, SnapshotPos))
            )
        return dsn, server, tables, start

    def _start(self, cur: Any, where: str, start: Any, position: str | None, n_tables: int) -> Any:
        """Where the reader starts: `start` checked against the server's binlogs (or, with `snapshot:
        never` and no checkpoint, the current binlog point)."""
        if start is None and self.config.snapshot == "never":
            point = current_point(cur, where)
            start = BinlogPos(point.file, point.pos, 0)
        elif isinstance(start, BinlogPos):
            require_binlog(cur, where, start.tx_start)
        elif isinstance(start, SnapshotPos) and start.table_index >= n_tables:
            raise SourceError(
                f"{where}: checkpoint {position} names table #{start.table_index} "
                f"but {n_tables} are configured: DELETE the checkpoints to start "
                "over",
                retryable=False,
            )
        if isinstance(start, SnapshotPos):
            require_binlog(cur, where, start.entries[0].point)
        return start

    # -- the reader thread ------------------------------------------------------------------------
    def _run(self, dsn: Dsn, server: ServerInfo, tables: list[TableInfo], start: Any) -> None:
        feed = self._handoff
        assert feed is not None
        delay = BACKOFF_S[0]
        resume = start
        try:
            while True:
                before = feed.handed
                try:
                    self._run_once(dsn, server, tables, resume)
                except Stopped:
                    return
                except Exception as exc:  # noqa: BLE001 - sorted into retryable or not
                    err = error(dsn.where, exc)
                    self._fast = self._fast and not isinstance(exc, LibraryNeeded)
                    if not err.retryable:
                        self.log.error("mysql_source_failed", error=err.message)
                        feed.fail(err)
                        return
                    if feed.handed > before:
                        delay = BACKOFF_S[0]
                    self._status.update(connected=False, last_error=err.message)
                    self._status["reconnects"] += 1
                    self.log.warning(
                        "mysql_reconnect", error=err.message, in_s=delay, resume=feed.last_position or str(start)
                    )
                    feed.sleep(delay)
                    delay = min(delay * 2, BACKOFF_S[1])
                    resume = parse(feed.last_position) if feed.last_position else start
        except Stopped:
            return
        finally:
            if self._backfill is not None:
                self._backfill.close()

    def _run_once(self, dsn: Dsn, server: ServerInfo, tables: list[TableInfo], resume: Any) -> None:
        feed = self._handoff
        assert feed is not None
        if resume is None or isinstance(resume, SnapshotPos):
            after: tuple[int, ...]
            entries: Entries
            mode, after = PLAIN, ()
            if resume is None:
                first, entries = 0, ()
            elif resume.end:
                first, entries = resume.table_index + 1, resume.entries
            else:  # interrupted inside a table: continue after its key, or read it again
                first, entries = resume.table_index, resume.entries
                t = tables[first]
                if resume.pk is not None and t.int_pk and len(resume.pk) == len(t.pk):
                    mode, after = CONTINUE, resume.pk
                else:
                    mode = REREAD
            snap = Snapshot(dsn, server, tables, self.config.snapshot_chunk, feed, self._progress, self.log)
            entries = snap.run(first, entries, mode, after)
            begin = entries[0].point
            resume = BinlogPos(begin.file, begin.pos, 0, entries_after(entries, begin))
        self._stream = BinlogStream(
            dsn,
            server,
            tables,
            self.server_id,
            feed,
            self._status,
            self.log,
            self.max_chunk,
            self._fast,
            self._backfill,
        )
        self._status["last_error"] = None
        self._stream.run(resume)

    def backfill_check(self, tables: list[str]) -> tuple[list[str], int, str | None]:
        bf = self._backfill
        return check(bf.by_name, tables, bf.dsn.db) if bf else ([], 0, "the mysql source is not open yet")

    # -- loop side --------------------------------------------------------------------------------
    async def read(self) -> Chunk | None:
        feed = self._handoff
        if feed is None:
            raise SourceError("mysql source: read() before open()", retryable=False)
        return await feed.get(self.max_chunk, READ_WAIT_S)

    async def commit(self, position: str) -> None:
        self._committed = position

    async def close(self) -> None:
        self._health = stop_health(self._health)
        feed, thread = self._handoff, self._thread
        if feed is not None:
            feed.stop()
        if self._stream is not None:
            self._stream.interrupt()
        if thread is not None and thread.is_alive():
            await asyncio.to_thread(thread.join, 10.0)
            if thread.is_alive():
                self.log.warning("mysql_source_thread_stuck", thread=thread.name)
                return  # it may still wait on the hand-off's pipe
        if feed is not None:
            feed.close()

    def health_probe(self, committed: str | None) -> Any:  # while no worker runs (CONTRACT 8)
        return committed_probe(self.config.dsn, committed)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"binlog": dict(self._status), "server_id": self.server_id, "committed": self._committed}
        out.update(self._health.values() if self._health else {})  # binlog_file, behind_bytes, ... (CONTRACT 8)
        out.update(self._backfill.stats() if self._backfill else {})
        if self._progress:
            p = self._progress
            out["snapshot"] = {
                "table": p.get("table"),
                "rows_done": p.get("rows_done", 0),
                "rows_estimated": p.get("rows_estimated", 0),
                "done": bool(p.get("done")),
                "tables_done": p.get("tables_done"),
                "tables_total": p.get("tables_total"),
            }
        return out
