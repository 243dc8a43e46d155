"""The chaos writer: transactions of varying size (inserts, updates, deletes) on one PostgreSQL
table, every insert and update stamped with a fresh sequence number, so that each change event
has an identity a checker can look for: ("c"|"u", seq), ("d", id), ("r", id) for snapshot rows.

It rides out server restarts: a transaction that fails before COMMIT was rolled back (its
changes are not expected); one whose COMMIT got no answer is uncertain (neither expected nor
unexpected); then it reconnects and re-reads which rows exist.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import psycopg2

TABLE = "public.chaos"
INITIAL_ROWS = 20000  # the snapshot: long enough to kill a worker in it

Ident = tuple[str, int]


def prepare(dsn: str) -> None:
    """The table with its snapshot rows (seq 0), REPLICA IDENTITY FULL (deletes carry the row)."""
    c = psycopg2.connect(dsn)
    c.autocommit = True
    with c.cursor() as cur:
        cur.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, seq bigint NOT NULL, v int NOT NULL)")
        cur.execute(f"ALTER TABLE {TABLE} REPLICA IDENTITY FULL")
        cur.execute(f"INSERT INTO {TABLE} SELECT g, 0, 0 FROM generate_series(1, {INITIAL_ROWS}) g")
    c.close()


class ChaosWriter(threading.Thread):
    def __init__(self, dsn: str, seed: int, rate_tx_s: float = 40.0) -> None:
        super().__init__(daemon=True, name="chaos-writer")
        self.dsn, self.rng, self.pause_s = dsn, random.Random(seed), 1.0 / rate_tx_s
        self.stop = threading.Event()
        self.live: list[int] = list(range(1, INITIAL_ROWS + 1))
        self.next_id, self.next_seq = INITIAL_ROWS + 1, 1
        self.expected: set[Ident] = {("r", i) for i in self.live}
        self.uncertain: set[Ident] = set()
        self.txs = self.rolled_back = self.reconnects = 0
        self.error: str | None = None

    def run(self) -> None:
        conn: Any = None
        try:
            while not self.stop.is_set():
                if conn is None:
                    conn = self._connect()
                    if conn is None:
                        continue
                if not self._one_tx(conn):
                    _close(conn)
                    conn = None
                    self.reconnects += 1
                self.stop.wait(self.pause_s)
        except Exception as exc:  # noqa: BLE001 - reported by the run, never silent
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            if conn is not None:
                _close(conn)

    def _connect(self) -> Any:
        try:
            conn = psycopg2.connect(self.dsn, connect_timeout=3)
            with conn.cursor() as cur:
                cur.execute(f"SELECT id FROM {TABLE} ORDER BY id")
                self.live = [r[0] for r in cur.fetchall()]
            conn.commit()
            return conn
        except psycopg2.Error:
            time.sleep(0.5)
            return None

    def _plan(self) -> list[tuple[str, int, int]]:
        """(op, id, seq) for one transaction: 1 to 25 statements, no row touched twice."""
        size = self.rng.choice([1, 1, 2, 3, 5, 8, 13, 25])
        touched: set[int] = set()
        plan = []
        for _ in range(size):
            r = self.rng.random()
            if r < 0.55 or len(self.live) < 50:
                plan.append(("c", self.next_id, self.next_seq))
                self.next_id += 1
                self.next_seq += 1
                continue
            rid = self.rng.choice(self.live)
            if rid in touched:
                continue
            touched.add(rid)
            if r < 0.85:
                plan.append(("u", rid, self.next_seq))
                self.next_seq += 1
            else:
                plan.append(("d", rid, 0))
        return plan

    def _one_tx(self, conn: Any) -> bool:
        plan = self._plan()
        try:
            with conn.cursor() as cur:
                for op, rid, seq in plan:
                    if op == "c":
                        cur.execute(f"INSERT INTO {TABLE} VALUES (%s, %s, 0)", (rid, seq))
                    elif op == "u":
                        cur.execute(f"UPDATE {TABLE} SET seq = %s, v = v + 1 WHERE id = %s", (seq, rid))
                    else:
                        cur.execute(f"DELETE FROM {TABLE} WHERE id = %s", (rid,))
        except psycopg2.Error:
            self.rolled_back += 1
            return False
        idents = {(op, seq) if op != "d" else ("d", rid) for op, rid, seq in plan}
        try:
            conn.commit()
        except psycopg2.Error:
            self.uncertain |= idents
            return False
        self.expected |= idents
        self.txs += 1
        gone = {rid for op, rid, _ in plan if op == "d"}
        self.live = [i for i in self.live if i not in gone] + [rid for op, rid, _ in plan if op == "c"]
        return True


def table_state(dsn: str) -> dict[int, int]:
    """{id: seq} of the table now."""
    c = psycopg2.connect(dsn)
    with c.cursor() as cur:
        cur.execute(f"SELECT id, seq FROM {TABLE}")
        out = {r[0]: r[1] for r in cur.fetchall()}
    c.close()
    return out


def _close(conn: Any) -> None:
    try:
        conn.close()
    except psycopg2.Error:
        pass
