"""PostgreSQL logical replication source (pgoutput), with an initial snapshot.

Imports: stdlib + psycopg2 + shared + worker.sources.base + the sibling modules of this package. The async face of
the source: ``open`` runs the checks and slot set-up on a worker thread, then
starts ``stream.StreamThread`` which owns every blocking PostgreSQL call; the
loop only takes chunks from the bounded hand-off (worker.sources.handoff) and passes commits back.

Behaviour (see position, stream, decode, values for details):
- Slot and publication default to ``tidegate_<pipeline name, - as _>``; the
  publication is created when missing (FOR TABLE the listed tables, else FOR ALL
  TABLES) and marked as ours with a comment, so ``drop()`` removes only what it
  created (when ``drop_slot_on_delete``).
- open(None) with ``snapshot: initial``: (re)creates the slot with EXPORT_SNAPSHOT,
  reads every table in that snapshot (op ``r``), then streams from the slot's
  consistent point: nothing missed or doubled. ``snapshot: never``: creates the
  slot when missing and streams from it (an existing slot is reused, so changes
  since it was created are not lost).
- open(snapshot position): resumes the snapshot at table granularity (see
  stream). open(stream position): the slot must still exist.
- A slot the server invalidated (wal_status ``lost``, past ``max_slot_wal_keep_size``): open()
  at a checkpoint fails for good (``setup.slot_lost``: names the slot and the way back); with no
  checkpoint the slot is dropped and made anew. While streaming, ``failed()`` reports it from the
  slot health poll and ``worker.walguard`` fails the pipeline; START_REPLICATION says it too.
- ``commit(position)`` is the only source of flush feedback: the commit LSN of the
  committed event (so a transaction committed only in part is sent again and its
  delivered prefix skipped by index).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import psycopg2

from shared.errors import SourceError
from shared.spec.model import PostgresSourceConfig
from worker.sources.base import Chunk, Source, SourceContext
from worker.sources.handoff import Handoff
from worker.sources.health import HealthPoller
from worker.sources.postgres import position as pg_position
from worker.sources.postgres.backfill import PgBackfill
from worker.sources.postgres.health import SlotProbe
from worker.sources.postgres.health import slot_lost as health_slot_lost
from worker.sources.postgres.position import SnapshotPos, StreamPos
from worker.sources.postgres.setup import (
    check_server,
    connect_repl,
    connect_sql,
    drop_publication_if_ours,
    ensure_publication,
    fail,
    slot_lost,
    split_table,
    tables_dropped,
)
from worker.sources.postgres.slot import check_slot, create_slot, drop_slot, slot_info, wait_slot_free
from worker.sources.postgres.stream import Feedback, StreamParams, StreamThread
from worker.sources.postgres.values import TYPES_SQL, Types

MAX_CHUNK = 5000  # events per Chunk handed to the batcher
BUFFER_EVENTS = 20000  # bounded hand-off; the thread stops reading the socket beyond it
READ_WAIT_S = 0.1  # read() returns None after this long without events


def default_name(pipeline: str) -> str:
    return "tidegate_" + pipeline.replace("-", "_")


class PostgresSource(Source[PostgresSourceConfig]):
    def __init__(self, config: Any, ctx: SourceContext) -> None:
        super().__init__(config, ctx)
        self.slot = config.slot or default_name(ctx.pipeline)
        self.publication = config.publication or default_name(ctx.pipeline)
        self.log = ctx.log.bind(source="postgres", slot=self.slot)
        self._handoff = Handoff(BUFFER_EVENTS)
        self._feedback = Feedback()
        self._thread: StreamThread | None = None
        self._health: HealthPoller | None = None  # the slot's retained WAL, on a slow timer
        self._tables: dict[str, Any] = {}  # the captured tables (TableInfo), once open
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-source-setup")

    position_key = staticmethod(pg_position.position_key)

    # ------------------------------------------------------------------ open
    async def open(self, position: str | None) -> None:
        loop = asyncio.get_running_loop()
        self._handoff.bind(loop)
        try:
            start = pg_position.parse(position) if position is not None else None
        except ValueError as exc:
            raise fail(str(exc)) from None
        if position is not None:  # already durable: counts as committed, and may be confirmed upstream
            key = pg_position.position_key(position)
            self._feedback.committed_key = key
            if key[0] == 1:
                self._feedback.flush_target = key[1]
        thread = await loop.run_in_executor(self._pool, self._prepare, start)
        self._thread = thread
        thread.start()
        named = {t.oid: t.full for t in self._tables.values()} if self.config.tables else None
        if self._health is None:
            probe = SlotProbe(self.config.dsn, self.slot, self.ctx.pipeline, named)
            self._health = HealthPoller(probe, f"pg-{self.ctx.pipeline}").start()
        else:  # opened again: the tables as they are now
            self._health.probe.tables = named or {}  # type: ignore[attr-defined]

    def health_probe(self, committed: str | None) -> SlotProbe:
        return SlotProbe(self.config.dsn, self.slot, self.ctx.pipeline)

    def _prepare(self, start: SnapshotPos | StreamPos | None) -> StreamThread:
        cfg = self.config
        conn = connect_sql(cfg.dsn, f"tidegate_{self.ctx.pipeline}_setup")
        exported = None
        try:
            cur = conn.cursor()
            check_server(cur)
            tables = ensure_publication(cur, self.publication, list(cfg.tables), self.ctx.pipeline, self.log)
            cur.execute(TYPES_SQL)
            types = Types(cur.fetchall())
            db = conn.info.dbname
            start, exported = self._slot(cur, start, db)
            params = StreamParams(
                dsn=cfg.dsn,
                slot=self.slot,
                publication=self.publication,
                pipeline=self.ctx.pipeline,
                snapshot_chunk=cfg.snapshot_chunk,
                heartbeat_ms=cfg.heartbeat_ms,
                status_interval_ms=cfg.status_interval_ms,
                server_version=conn.server_version,
                db=db,
            )
            filter_ = {t.full for t in tables} if cfg.tables else None
            self._tables = {t.full: t for t in tables}
            backfill = None
            if self.ctx.backfills is not None and conn.server_version >= 140000:  # pgoutput messages: 14+
                backfill = PgBackfill(
                    dsn=cfg.dsn, pipeline=self.ctx.pipeline, db=db, tables=tables, types=types, jobs=self.ctx.backfills
                )
            return StreamThread(
                params=params,
                handoff=self._handoff,
                feedback=self._feedback,
                start=start,
                exported=exported,
                tables=tables,
                filter_=filter_,
                types=types,
                log=self.log,
                backfill=backfill,
            )
        except psycopg2.Error as exc:
            if exported is not None:
                exported[0].close()
            raise fail(f"set-up failed: {exc.__class__.__name__}: {str(exc).strip()}", retryable=True) from exc
        except BaseException:
            if exported is not None:
                exported[0].close()
            raise
        finally:
            conn.close()

    def _slot(
        self, cur: Any, start: SnapshotPos | StreamPos | None, db: str
    ) -> tuple[SnapshotPos | StreamPos | None, tuple[Any, str, int] | None]:
        """Check, (re)create or keep the slot for `start`: the position to stream from, and the
        exported snapshot (replication connection, name, consistent point) when a snapshot starts."""
        cfg, exported = self.config, None
        info = slot_info(cur, self.slot)
        if info is not None:
            check_slot(info, self.slot, db)
            info = wait_slot_free(cur, self.slot, info)
        if info is not None and info.lost:
            if start is not None:  # the checkpoint's changes are gone with the slot's WAL
                raise slot_lost(self.slot, self.ctx.pipeline)
            drop_slot(cur, self.slot)  # no checkpoint: start over with a new slot
            info = None
            self.log.warning("pg_slot_dropped", reason="invalidated by the server (wal_status=lost), no checkpoint")
        if (start is None and cfg.snapshot == "initial") or (isinstance(start, SnapshotPos) and info is None):
            if info is not None:
                drop_slot(cur, self.slot)
                self.log.info("pg_slot_dropped", reason="no checkpoint: a fresh snapshot needs a fresh slot")
            elif start is not None:
                self.log.warning("pg_slot_missing_restarting_snapshot", resume_after=start.format())
            repl = connect_repl(cfg.dsn, f"tidegate_{self.ctx.pipeline}_snapshot")
            epoch, snap_name = create_slot(repl, self.slot, temporary=False, export=True)
            exported = (repl, snap_name or "", epoch)
            start = SnapshotPos(-1, 0, ((0, epoch),), True)
            self.log.info("pg_slot_created", consistent_point=pg_position.lsn_str(epoch), snapshot=True)
        elif start is None:
            if info is None:
                repl = connect_repl(cfg.dsn, f"tidegate_{self.ctx.pipeline}_setup")
                try:
                    point, _ = create_slot(repl, self.slot, temporary=False, export=False)
                finally:
                    repl.close()
                self.log.info("pg_slot_created", consistent_point=pg_position.lsn_str(point), snapshot=False)
        elif isinstance(start, StreamPos) and info is None:
            raise fail(
                f"replication slot {self.slot} no longer exists, so changes after {start.format()} "
                "cannot be read. Fix: delete the pipeline's checkpoints "
                "(DELETE /pipelines/<name>/checkpoints) to start over with a new snapshot"
            )
        return start, exported

    def backfill_check(self, tables: list[str]) -> tuple[list[str], int, str | None]:
        thread = self._thread
        if thread is None or thread.backfill is None:
            return [], 0, "incremental snapshots need PostgreSQL 14 or later (logical messages in pgoutput)"
        names, estimate = [], 0
        for name in tables:
            full = "{}.{}".format(*split_table(name))
            t = self._tables.get(full)
            if t is None:
                return [], 0, f"table {name!r} is not captured by this pipeline's source"
            if not t.pk:
                return [], 0, f"table {full} has no primary key, so it cannot be read in key chunks"
            names.append(full)
            estimate += max(0, t.estimate)
        return names, estimate, None

    # ------------------------------------------------------------------ read
    async def read(self) -> Chunk | None:
        return await self._handoff.get(MAX_CHUNK, READ_WAIT_S)

    # ---------------------------------------------------------------- commit
    async def commit(self, position: str) -> None:
        key = pg_position.position_key(position)
        fb = self._feedback
        if fb.committed_key is None or key > fb.committed_key:
            fb.committed_key = key
        if key[0] == 1 and key[1] > fb.flush_target:
            fb.flush_target = key[1]
            self._handoff.wake_thread()

    # ----------------------------------------------------------------- close
    async def _stop_thread(self) -> None:
        if self._health is not None:
            self._health.stop()
            self._health = None
        thread = self._thread
        if thread is not None:
            thread.stop()
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 10.0)

    async def close(self) -> None:
        await self._stop_thread()
        self._thread = None
        self._pool.shutdown(wait=False)
        self._handoff.close()

    async def drop(self) -> None:
        """Stop streaming first (the runtime may call drop() before close()), then drop the slot."""
        await self._stop_thread()
        if not self.config.drop_slot_on_delete:
            return
        await asyncio.get_running_loop().run_in_executor(None, self._drop)

    def _drop(self) -> None:
        conn = connect_sql(self.config.dsn, f"tidegate_{self.ctx.pipeline}_drop")
        try:
            cur = conn.cursor()
            if drop_slot(cur, self.slot):
                self.log.info("pg_slot_dropped", reason="pipeline deleted")
            if drop_publication_if_ours(cur, self.publication, self.ctx.pipeline):
                self.log.info("pg_publication_dropped", publication=self.publication)
        except psycopg2.Error as exc:
            raise fail(f"dropping slot {self.slot}: {str(exc).strip()}", retryable=True) from exc
        finally:
            conn.close()

    def failed(self) -> SourceError | None:
        """The slot health poll found the slot invalidated by the server (wal_status lost), or a
        captured table dropped."""
        values = self._health.values() if self._health is not None else {}
        if health_slot_lost(values):
            return slot_lost(self.slot, self.ctx.pipeline)
        if values.get("tables_dropped"):
            return tables_dropped(values["tables_dropped"], self.ctx.pipeline)
        return None

    def stats(self) -> dict[str, Any]:
        thread = self._thread
        out: dict[str, Any] = {} if thread is None else {k: dict(v) for k, v in thread.stats.items()}
        if thread is not None:
            out["stream"]["slot"] = self.slot
        if self._health is not None:
            out.update(self._health.values())  # slot, restart_lsn, retained_wal_bytes, ... (CONTRACT section 8)
        return out


__all__ = ["PostgresSource"]
