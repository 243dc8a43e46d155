"""Helpers for the mysql source tests (integration and e2e): a scratch database on the local MariaDB,
a driver for the source plugin, and a strict replay of change events against the table's real state.

(No tests here; the name keeps it inside the mysql source's test files.)
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pymysql

from tests.support import require_service
from tests.support.cdc import dedupe  # noqa: F401 - re-exported for the mysql source tests
from worker.sources.base import Chunk, SourceContext

HOST, PORT = "127.0.0.1", 3306


def connect(db: str | None = None) -> pymysql.connections.Connection:
    return pymysql.connect(host=HOST, port=PORT, user="root", database=db, autocommit=True, ssl_disabled=True)


def scratch_db() -> Iterator[str]:
    """A fresh database tg_my_<random>, dropped afterwards."""
    require_service("mariadb", HOST, PORT)
    name = f"tg_my_{secrets.token_hex(4)}"
    with connect() as c, c.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with connect() as c, c.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")


def sql(db: str, *statements: str, args: Any = None) -> None:
    with connect(db) as c, c.cursor() as cur:
        for s in statements:
            cur.execute(s, args)


def tx(db: str, statements: list[tuple[str, Any]]) -> None:
    """One transaction."""
    c = connect(db)
    try:
        c.begin()
        with c.cursor() as cur:
            for s, a in statements:
                cur.execute(s, a)
        c.commit()
    finally:
        c.close()


def rows(db: str, table: str, cols: str = "*") -> dict[Any, dict[str, Any]]:
    with connect(db) as c, c.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SELECT {cols} FROM {table}")
        return {r["id"]: r for r in cur.fetchall()}


async def drain(
    src: Any, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0, chunks: list[Chunk] | None = None
) -> list[dict[str, Any]]:
    """Read chunks until `until(events)`; fail after `timeout` s."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not until(events):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s with {len(events)} events; last: {events[-1:]}; stats: {src.stats()}"
            )
        chunk = await src.read()
        if chunk is not None:
            events.extend(chunk.events)
            if chunks is not None:
                chunks.append(chunk)
    return events


def ctx(name: str) -> SourceContext:
    return SourceContext(pipeline=name)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def replay(
    events: list[dict[str, Any]], strict: bool = True, rereads: bool = False, cols: tuple[str, ...] = ("id", "v")
) -> dict[tuple[str, Any], dict[str, Any]]:
    """Apply events in order. strict: each row arrives once (r or c), every update/delete's `before`
    equals what the replay holds (a missed or doubled change breaks that). rereads: a snapshot row may
    come again while no change of it came in between (at-least-once after a worker crash: the rows
    delivered but not checkpointed are read again, at the new snapshot point; the later one wins)."""
    state: dict[tuple[str, Any], dict[str, Any]] = {}
    from_snapshot: set[tuple[str, Any]] = set()
    pick = (lambda r: {c: r[c] for c in cols}) if cols else (lambda r: dict(r))
    for i, e in enumerate(events):
        k_after = (e["source"]["table"], e["after"]["id"]) if e["after"] else None
        k_before = (e["source"]["table"], e["before"]["id"]) if e["before"] else None
        where = f"event #{i} {e['op']} {e['source']['position']}"
        if e["op"] in ("r", "c"):
            again = rereads and e["op"] == "r" and k_after in from_snapshot
            if strict and not again:
                assert k_after not in state, f"{where}: row {k_after} arrives twice"
            state[k_after] = pick(e["after"])
            if e["op"] == "r":
                from_snapshot.add(k_after)
            continue
        from_snapshot.discard(k_before)
        from_snapshot.discard(k_after)
        if e["op"] == "u":
            if strict:
                assert state.get(k_before) == pick(e["before"]), (
                    f"{where}: before {pick(e['before'])} but replay holds {state.get(k_before)}"
                )
            state.pop(k_before, None)
            state[k_after] = pick(e["after"])
        else:
            if strict:
                assert state.get(k_before) == pick(e["before"]), (
                    f"{where}: before {pick(e['before'])} but replay holds {state.get(k_before)}"
                )
            state.pop(k_before, None)
    return state


def table_state(db: str, tables: list[str], cols: tuple[str, ...] = ("id", "v")) -> dict[tuple[str, Any], Any]:
    out = {}
    for t in tables:
        for rid, r in rows(db, t, ", ".join(cols)).items():
            out[(t, rid)] = {c: r[c] for c in cols}
    return out


def fold(events: list[dict[str, Any]]) -> dict[tuple[str, Any], dict[str, Any]]:
    """The table a consumer holds after these events, checked on the way (the tests never insert
    an id again): a `u`/`d` whose `before` is not what is held, a change of a deleted row, an `r`
    of a deleted row (a chunk row older than the delete): a chunk row older than a change emitted
    before it, or a stream row skipped or doubled, fails here. A row the table held before the
    pipeline started is unknown until its `r` or first change; an `r` upserts (a chunk read again
    after a crash comes again)."""
    state: dict[tuple[str, Any], dict[str, Any]] = {}
    gone: set[tuple[str, Any]] = set()
    for i, e in enumerate(events):
        t, before, after = e["source"]["table"], e["before"], e["after"]
        where = f"event #{i} {e['op']} {e['source']['position']}"
        k = (t, (after or before)["id"])
        assert k not in gone, f"{where}: row {k} was deleted before"
        if before is not None:
            held = state.pop(k, None)
            assert held in (None, {"id": before["id"], "v": before["v"]}), f"{where}: before {before}, held {held}"
        if e["op"] == "c":
            assert k not in state, f"{where}: row {k} exists already"
        if after is None:
            gone.add(k)
        else:
            state[k] = {"id": after["id"], "v": after["v"]}
    return state
