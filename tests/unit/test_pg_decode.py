"""pgoutput decoder on hand-built protocol-1 messages (the byte layout of PostgreSQL's proto.c)."""

from __future__ import annotations

import struct
from typing import Any

import structlog

from worker.sources.postgres.decode import PG_EPOCH_MS, Decoder
from worker.sources.postgres.position import StreamPos
from worker.sources.postgres.values import Types

TYPES = Types([(23, 0, 0, "N", ","), (25, 0, 0, "S", ","), (16, 0, 0, "B", ",")])


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def relation(relid: int, schema: str, table: str, cols: list[tuple[str, int, bool]]) -> bytes:
    out = b"R" + struct.pack(">I", relid) + cstr(schema) + cstr(table) + b"d" + struct.pack(">H", len(cols))
    for name, oid, key in cols:
        out += bytes([1 if key else 0]) + cstr(name) + struct.pack(">Ii", oid, -1)
    return out


def tup(*vals: Any) -> bytes:
    out = struct.pack(">H", len(vals))
    for v in vals:
        if v is None:
            out += b"n"
        elif v is ...:
            out += b"u"
        else:
            raw = str(v).encode()
            out += b"t" + struct.pack(">i", len(raw)) + raw
    return out


def begin(lsn: int, xid: int, ts_us: int = 1_000_000) -> bytes:
    return b"B" + struct.pack(">QqI", lsn, ts_us, xid)


def commit(lsn: int, end: int) -> bytes:
    return b"C" + struct.pack(">BQQq", 0, lsn, end, 0)


def insert(relid: int, *vals: Any) -> bytes:
    return b"I" + struct.pack(">I", relid) + b"N" + tup(*vals)


def update(relid: int, new: tuple[Any, ...], old: tuple[Any, ...] | None = None, kind: bytes = b"K") -> bytes:
    head = b"U" + struct.pack(">I", relid)
    if old is not None:
        head += kind + tup(*old)
    return head + b"N" + tup(*new)


def delete(relid: int, old: tuple[Any, ...], kind: bytes = b"K") -> bytes:
    return b"D" + struct.pack(">I", relid) + kind + tup(*old)


class Out:
    def __init__(self) -> None:
        self.pieces: list[tuple[list[dict[str, Any]], bool, StreamPos]] = []

    def __call__(self, events: list[dict[str, Any]], tx_end: bool, pos: StreamPos) -> None:
        self.pieces.append((events, tx_end, pos))

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for p in self.pieces for e in p[0]]


def make(**kw: Any) -> tuple[Decoder, Out]:
    out = Out()
    d = Decoder(types=TYPES, db="shop", publish=out, log=structlog.get_logger(), **kw)
    d.feed(relation(1, "public", "orders", [("id", 23, True), ("note", 25, False), ("ok", 16, False)]), 0)
    return d, out


def test_insert_update_delete_events() -> None:
    d, out = make()
    for m in (
        begin(0x500, 77, ts_us=2_000_000),
        insert(1, 1, "a", "t"),
        update(1, (1, "b", "f")),
        update(1, (2, "b", None), old=(1, None, None)),
        delete(1, (2, None, None)),
        commit(0x500, 0x540),
    ):
        d.feed(m, 0x480)
    ev = out.events
    assert [e["op"] for e in ev] == ["c", "u", "u", "d"]
    assert ev[0]["after"] == {"id": 1, "note": "a", "ok": True} and ev[0]["before"] is None
    assert ev[1]["before"] == {"id": 1}  # key unchanged: key from the new row
    assert ev[2]["before"] == {"id": 1} and ev[2]["after"]["ok"] is None
    assert ev[3]["before"] == {"id": 2} and ev[3]["after"] is None
    src = ev[0]["source"]
    assert src == {
        "connector": "postgres",
        "db": "shop",
        "schema": "public",
        "table": "orders",
        "position": "0/500:0",
        "tx_id": "77",
        "ts_ms": PG_EPOCH_MS + 2000,
        "lsn": 0x480,
    }
    assert [e["source"]["position"] for e in ev] == ["0/500:0", "0/500:1", "0/500:2", "0/500:3"]
    assert len(out.pieces) == 1 and out.pieces[0][1] is True and out.pieces[0][2] == StreamPos(0x500, 3, ())
    assert not d.in_tx and d.last_commit_end == 0x540


def test_replica_identity_full_before_and_unchanged_toast_is_omitted() -> None:
    d, out = make()
    for m in (
        begin(0x600, 78),
        update(1, (1, ..., "t"), old=(1, "big", "f"), kind=b"O"),
        delete(1, (1, "big", "t"), kind=b"O"),
        commit(0x600, 0x640),
    ):
        d.feed(m, 0)
    u, dl = out.events
    assert u["before"] == {"id": 1, "note": "big", "ok": False}
    assert u["after"] == {"id": 1, "ok": True}  # 'note' unchanged TOAST: omitted
    assert dl["before"] == {"id": 1, "note": "big", "ok": True}


def test_big_transaction_is_published_in_pieces_with_tx_end_only_at_commit() -> None:
    d, out = make(piece=100)
    d.feed(begin(0x700, 79), 0)
    for i in range(250):
        d.feed(insert(1, i, "x", "t"), 0)
    assert all(not p[1] for p in out.pieces) and sum(len(p[0]) for p in out.pieces) == 200
    d.feed(commit(0x700, 0x740), 0)
    assert [p[1] for p in out.pieces] == [False, False, True]
    assert [e["after"]["id"] for e in out.events] == list(range(250))
    assert [p[2].index for p in out.pieces] == [99, 199, 249]


def test_resume_mid_transaction_skips_exactly_the_delivered_prefix() -> None:
    d, out = make(resume=StreamPos(0x800, 2, ()))
    for lsn in (0x700, 0x800, 0x900):  # 0x700 was fully delivered before
        d.feed(begin(lsn, lsn), 0)
        for i in range(5):
            d.feed(insert(1, i, "x", "t"), 0)
        d.feed(commit(lsn, lsn + 0x40), 0)
    assert [e["source"]["position"] for e in out.events] == [
        "0/800:3",
        "0/800:4",
        "0/900:0",
        "0/900:1",
        "0/900:2",
        "0/900:3",
        "0/900:4",
    ]


def test_table_filter_and_resnapshot_window_skip() -> None:
    out = Out()
    runs = ((0, 0x100), (1, 0x900))  # table 1 (public.items) was re-snapshotted at 0x900
    d = Decoder(
        types=TYPES,
        db="shop",
        publish=out,
        log=structlog.get_logger(),
        tables={"public.orders", "public.items"},
        runs=runs,
        table_index={"public.orders": 0, "public.items": 1},
    )
    d.feed(relation(1, "public", "orders", [("id", 23, True)]), 0)
    d.feed(relation(2, "public", "items", [("id", 23, True)]), 0)
    d.feed(relation(3, "public", "other", [("id", 23, True)]), 0)
    for lsn in (0x800, 0x900):
        d.feed(begin(lsn, 1), 0)
        for rel in (1, 2, 3):
            d.feed(insert(rel, rel), 0)
        d.feed(commit(lsn, lsn + 8), 0)
    got = [(e["source"]["table"], e["source"]["position"]) for e in out.events]
    assert got == [("orders", "0/800:0:0@0/100,1@0/900"), ("orders", "0/900:0"), ("items", "0/900:1")]


def test_truncate_is_skipped_and_counted_messages_are_ignored() -> None:
    d, out = make()
    d.feed(begin(0xA00, 80), 0)
    d.feed(b"T" + struct.pack(">IBI", 1, 0, 1), 0)
    d.feed(b"M" + struct.pack(">BQ", 0, 0xA10) + cstr("tidegate_heartbeat") + struct.pack(">I", 0), 0)
    d.feed(commit(0xA00, 0xA40), 0)
    assert out.events == [] and d.truncates == 1 and d.last_message_lsn == 0xA10


def test_generated_tuple_decoder_matches_the_loop_and_odd_column_names() -> None:
    from worker.sources.postgres.columns import decode_tuple, tuple_decoder

    cols = [("we'ird\"name", int), ("x\\y", bytes.decode), ("z", bytes.decode)]
    dec = tuple_decoder(cols)
    for vals in ((1, "a", None), (2, ..., "b"), (None, None, None)):
        buf = b"xx" + tup(*vals)
        assert dec(buf, 2) == decode_tuple(buf, 2, cols)
    short = b"xx" + tup(5, "a")  # fewer columns: falls back to the loop
    assert dec(short, 2) == decode_tuple(short, 2, cols) == ({"we'ird\"name": 5, "x\\y": "a"}, len(short))
