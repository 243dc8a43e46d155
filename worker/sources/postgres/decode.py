"""pgoutput (protocol version 1) decoder: replication messages -> tidegate events.

Imports: stdlib + worker.sources.postgres.columns/position/values. Pure: no I/O, so it is
unit-tested on hand-built messages. Fed one XLogData payload at a time by the
stream thread (``stream``); publishes events in pieces through a callback.

Handles Relation, Begin, Commit, Insert, Update, Delete, Truncate, Message,
Type and Origin. Choices:
- TRUNCATE is skipped with a warning log (``pg_truncate_skipped``) and counted in
  ``truncates``: the contract has no op for it, and a ``d`` per row is not known.
- An unchanged TOAST value (``u``) is omitted from ``after``: the row keeps that
  column's old value, which the source was not sent (consumers upserting by key
  keep theirs). NULL is ``null``.
- ``before``: the old row under REPLICA IDENTITY FULL; else the key columns (from
  the old key when the key changed, else from the new row); null for inserts.
- ``source.lsn`` is the change's own LSN as an integer (as Debezium's); the
  position carries the commit LSN.
- Big transactions are published in pieces of ``piece`` events with
  ``tx_end=False``; the last piece (published at COMMIT, never empty) has
  ``tx_end=True``.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

from worker.sources.postgres.columns import Relation
from worker.sources.postgres.position import Runs, StreamPos, epoch_of, format_runs, lsn_str, max_epoch
from worker.sources.postgres.values import Types

PG_EPOCH_MS = 946_684_800_000  # 2000-01-01 in unix ms
_BEGIN = struct.Struct(">QqI").unpack_from
_COMMIT = struct.Struct(">BQQq").unpack_from
_U32 = struct.Struct(">I").unpack_from
_H = struct.Struct(">H").unpack_from
_MSG = struct.Struct(">BQ").unpack_from

Publish = Callable[[list[dict[str, Any]], bool, StreamPos], None]


def _cstring(buf: bytes, p: int) -> tuple[str, int]:
    end = buf.index(0, p)
    return buf[p:end].decode(), end + 1


class Decoder:
    def __init__(
        self,
        *,
        types: Types,
        db: str,
        publish: Publish,
        log: Any,
        tables: set[str] | None = None,
        table_index: dict[str, int] | None = None,
        runs: Runs = (),
        resume: StreamPos | None = None,
        piece: int = 1000,
        on_message: Callable[[str, bytes, int], None] | None = None,
    ) -> None:
        self.types, self.db, self.publish, self.log = types, db, publish, log
        self.filter, self.table_index = tables, table_index or {}
        self.runs, self.piece = runs, piece
        self.on_message = on_message  # logical messages (prefix, content, LSN): backfill watermarks
        self._max_epoch = max_epoch(runs)
        self._suffix_runs = ":" + format_runs(runs) if runs else ""
        self.rels: dict[int, Relation] = {}
        self.resume = resume
        self.in_tx = False
        self.truncates = 0
        self.last_commit_end = 0
        self.last_message_lsn = 0
        # per-transaction state
        self.lsn = 0
        self._lsn_s = ""
        self._xid = ""
        self._ts = 0
        self._now = 0
        self._idx = 0
        self._skip_upto = -1
        self._suffix = ""
        self._events: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ entry
    def feed(self, buf: bytes, data_start: int) -> None:
        t = buf[0]
        if t == 73:  # 'I': the hot path, inlined (_take + decode + _emit)
            rel = self.rels[_U32(buf, 1)[0]]
            if not rel.wanted or self.lsn < rel.skip_below:
                return
            idx = self._idx
            self._idx = idx + 1
            if idx <= self._skip_upto:
                return
            events = self._events
            events.append(
                {
                    "op": "c",
                    "ts_ms": self._now,
                    "source": {
                        "connector": "postgres",
                        "db": self.db,
                        "schema": rel.schema,
                        "table": rel.table,
                        "position": f"{self._lsn_s}:{idx}{self._suffix}",
                        "tx_id": self._xid,
                        "ts_ms": self._ts,
                        "lsn": data_start,
                    },
                    "before": None,
                    "after": rel.dec(buf, 6)[0],
                }
            )
            if len(events) > self.piece:
                self._split(idx)
        elif t == 85:  # 'U'
            self._update(buf, data_start)
        elif t == 68:  # 'D'
            self._delete(buf, data_start)
        elif t == 66:  # 'B'
            self._begin(buf)
        elif t == 67:  # 'C'
            self._commit(buf)
        elif t == 82:  # 'R'
            self._relation(buf)
        elif t == 84:  # 'T'
            self._truncate(buf)
        elif t == 77:  # 'M'
            self.last_message_lsn = _MSG(buf, 1)[1]
            if self.on_message is not None:
                prefix, p = _cstring(buf, 10)
                n = _U32(buf, p)[0]
                self.on_message(prefix, buf[p + 4 : p + 4 + n], self.last_message_lsn)
        elif t in (89, 79):  # 'Y' type, 'O' origin
            pass
        else:
            raise ValueError(f"pgoutput: unknown message type {chr(t)!r}")

    # ------------------------------------------------------------ transaction
    def _begin(self, buf: bytes) -> None:
        final_lsn, ts, xid = _BEGIN(buf, 1)
        self.in_tx = True
        self.lsn = final_lsn
        self._lsn_s = lsn_str(final_lsn)
        self._xid = str(xid)
        self._ts = ts // 1000 + PG_EPOCH_MS
        self._now = int(time.time() * 1000)
        self._idx = 0
        self._events = []
        self._suffix = self._suffix_runs if final_lsn < self._max_epoch else ""
        resume = self.resume
        if resume is None:
            self._skip_upto = -1
        elif final_lsn < resume.lsn:
            self._skip_upto = 1 << 62  # delivered before the resume position
        elif final_lsn == resume.lsn:
            self._skip_upto = resume.index
        else:
            self._skip_upto = -1
            self.resume = None

    def _commit(self, buf: bytes) -> None:
        _flags, _commit_lsn, end_lsn, _ts = _COMMIT(buf, 1)
        self.in_tx = False
        self.last_commit_end = end_lsn
        if self._events:
            events, self._events = self._events, []
            self.publish(events, True, StreamPos(self.lsn, self._idx - 1, self.runs))

    def _emit(self, rel: Relation, op: str, before: Any, after: Any, data_start: int, idx: int) -> None:
        events = self._events
        events.append(
            {
                "op": op,
                "ts_ms": self._now,
                "source": {
                    "connector": "postgres",
                    "db": self.db,
                    "schema": rel.schema,
                    "table": rel.table,
                    "position": f"{self._lsn_s}:{idx}{self._suffix}",
                    "tx_id": self._xid,
                    "ts_ms": self._ts,
                    "lsn": data_start,
                },
                "before": before,
                "after": after,
            }
        )
        if len(events) > self.piece:
            self._split(idx)

    def _split(self, idx: int) -> None:
        """Publish all but the newest event (so the COMMIT piece is never empty)."""
        events = self._events
        last = events.pop()
        self.publish(events, False, StreamPos(self.lsn, idx - 1, self.runs))
        self._events = [last]

    def _take(self, buf: bytes) -> tuple[Relation | None, int]:
        """The relation of a change and its index in the transaction; (None, -1) when not emitted."""
        rel = self.rels[_U32(buf, 1)[0]]
        if not rel.wanted or self.lsn < rel.skip_below:
            return None, -1
        idx = self._idx
        self._idx = idx + 1
        if idx <= self._skip_upto:
            return None, -1
        return rel, idx

    # ---------------------------------------------------------------- changes
    def _update(self, buf: bytes, data_start: int) -> None:
        rel, idx = self._take(buf)
        if rel is None:
            return
        kind = buf[5]
        old = None
        p = 6
        if kind == 75 or kind == 79:  # 'K' old key / 'O' old row
            old, p = rel.dec(buf, 6)
            p += 1  # 'N'
        after, _ = rel.dec(buf, p)
        if kind == 79:
            before = old
        elif old is not None:
            before = {k: old.get(k) for k in rel.keys}
        else:
            before = {k: after.get(k) for k in rel.keys} if rel.keys else None
        self._emit(rel, "u", before, after, data_start, idx)

    def _delete(self, buf: bytes, data_start: int) -> None:
        rel, idx = self._take(buf)
        if rel is None:
            return
        old, _ = rel.dec(buf, 6)
        before = old if buf[5] == 79 else {k: old.get(k) for k in rel.keys}
        self._emit(rel, "d", before, None, data_start, idx)

    # -------------------------------------------------------------- metadata
    def _relation(self, buf: bytes) -> None:
        relid = _U32(buf, 1)[0]
        schema, p = _cstring(buf, 5)
        table, p = _cstring(buf, p)
        p += 1  # replica identity setting
        ncols = _H(buf, p)[0]
        p += 2
        cols: list[tuple[str, Any]] = []
        keys: list[str] = []
        for _ in range(ncols):
            flags = buf[p]
            name, p = _cstring(buf, p + 1)
            oid = _U32(buf, p)[0]
            p += 8  # type oid + typmod
            cols.append((name, self.types.bytes_conv(oid)))
            if flags & 1:
                keys.append(name)
        full = f"{schema}.{table}"
        wanted = self.filter is None or full in self.filter
        ti = self.table_index.get(full)
        skip_below = epoch_of(self.runs, ti) if (ti is not None and self.runs) else 0
        self.rels[relid] = Relation(relid, schema, table, cols, keys, wanted, skip_below)

    def _truncate(self, buf: bytes) -> None:
        nrels = _U32(buf, 1)[0]
        names = []
        for i in range(nrels):
            rel = self.rels.get(_U32(buf, 6 + 4 * i)[0])
            if rel is not None and rel.wanted:
                names.append(f"{rel.schema}.{rel.table}")
        if names:
            self.truncates += 1
            self.log.warning(
                "pg_truncate_skipped",
                tables=names,
                tx_id=self._xid,
                lsn=self._lsn_s,
                reason="TRUNCATE has no event op; rows removed by it are not emitted",
            )
