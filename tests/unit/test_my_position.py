"""mysql source positions: forms, total order, snapshot entries and the handoff filter (pure)."""

from __future__ import annotations

import random

import pytest

from worker.sources.mysql.position import (
    CONTINUE,
    REREAD,
    BinlogPoint,
    BinlogPos,
    Entry,
    SnapshotPos,
    entries_after,
    filter_point,
    format_entries,
    key,
    parse,
    parse_entries,
    read_point,
)

P1 = BinlogPoint.of("mysql-bin.000003", 1000)
P2 = BinlogPoint.of("mysql-bin.000003", 5000)
P3 = BinlogPoint.of("mysql-bin.000004", 120)


def test_binlog_position_round_trip_and_order() -> None:
    p = parse("mysql-bin.000003:4567:2")
    assert p == BinlogPos("mysql-bin.000003", 4567, 2)
    assert str(p) == "mysql-bin.000003:4567:2"
    seq = [
        "mysql-bin.000003:4567:1",
        "mysql-bin.000003:4567:2",
        "mysql-bin.000003:4567:10",
        "mysql-bin.000003:9000:1",
        "mysql-bin.000010:4:1",
        "mysql-bin.000100:4:1",
    ]
    shuffled = seq[:]
    random.Random(1).shuffle(shuffled)
    assert sorted(shuffled, key=key) == seq


def test_snapshot_positions_sort_before_binlog_and_by_table_run_key() -> None:
    e1 = f"0={P1}"
    e2 = f"0={P1};1={P2}>17"
    seq = [
        f"snapshot:0:1@{e1}",
        f"snapshot:0:2@{e1}",
        f"snapshot:0:10:end@{e1}",
        f"snapshot:1:3@{e1}",
        f"snapshot:1:17@{e1}",  # interrupted here ...
        f"snapshot:1:18@{e2}",
        f"snapshot:1:40:end@{e2}",  # ... continued after key 17 at P2
        f"snapshot:2:#1@{e2}",
        f"snapshot:2:#2@{e2}",
        "mysql-bin.000001:4:1",
    ]
    mixed = seq[:]
    random.Random(2).shuffle(mixed)
    assert sorted(mixed, key=key) == seq
    s = parse(seq[2])
    assert isinstance(s, SnapshotPos) and s.end and s.pk == (10,) and s.table_index == 0
    assert str(s) == seq[2]
    o = parse(seq[7])
    assert isinstance(o, SnapshotPos) and o.pk is None and o.ordinal == 1 and str(o) == seq[7]


def test_reread_run_sorts_after_the_interrupted_one() -> None:
    first = f"snapshot:0:#500@0={P1}"
    again = f"snapshot:0:#1@0={P1};0={P2}!"
    assert key(first) < key(again)


def test_composite_keys_and_entries_round_trip() -> None:
    text = f"0={P1};2={P2}>5,7;2={P3}!"
    entries = parse_entries(text)
    assert entries == (Entry(0, P1), Entry(2, P2, CONTINUE, (5, 7)), Entry(2, P3, REREAD))
    assert format_entries(entries) == text
    pos = f"snapshot:2:5,9@{text}"
    assert str(parse(pos)) == pos


@pytest.mark.parametrize(
    "bad", ["", "x", "mysql-bin:12:1", "snapshot:0:1", "snapshot:0:1:nope@0=f.1:4", "mysql-bin.000001:abc:1"]
)
def test_bad_positions_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        key(bad)


def test_filter_point_per_table_and_key() -> None:
    # run 1 read tables 0.. at P1 and was killed in table 2 after key 17 (integer key);
    # run 2 continued table 2 above 17 at P2 and read tables 3.. at P2
    entries = (Entry(0, P1), Entry(2, P2, CONTINUE, (17,)))
    assert filter_point(entries, 0, (1,)) == P1
    assert filter_point(entries, 1, None) == P1
    assert filter_point(entries, 2, (17,)) == P1  # delivered by run 1: its changes from P1
    assert filter_point(entries, 2, (18,)) == P2  # read by run 2: changes from P2
    assert filter_point(entries, 2, None) == P1  # key unknown: the earlier point (never miss)
    assert filter_point(entries, 3, (1,)) == P2
    assert read_point(entries, 2) == P2 and read_point(entries, 1) == P1
    # table 2 has no integer key: read again in full at P2, its changes from P1 (may repeat, converges)
    again = (Entry(0, P1), Entry(2, P2, REREAD))
    assert filter_point(again, 2, None) == P1
    assert filter_point(again, 3, None) == P2
    # a table first read by a later run
    assert filter_point((Entry(3, P2),), 1, None) is None


def test_entries_after_drops_what_the_stream_has_passed() -> None:
    entries = (Entry(0, P1), Entry(2, P2, CONTINUE, (17,)), Entry(5, P3))
    assert entries_after(entries, P1) == entries[1:]
    assert entries_after(entries, BinlogPoint.of("mysql-bin.000003", 6000)) == entries[2:]
    assert entries_after(entries, P3) == ()
    # dropping passed entries never changes a decision for a transaction at or after `where`
    where = BinlogPoint.of("mysql-bin.000003", 3000)
    rest = entries_after(entries, where)
    for t in range(7):
        for pk in [(1,), (17,), (18,), None]:
            a, b = filter_point(entries, t, pk), filter_point(rest, t, pk)
            emit_a = a is None or where.sort_key >= a.sort_key
            emit_b = b is None or where.sort_key >= b.sort_key
            assert emit_a == emit_b


def test_binlog_position_with_entries_round_trip() -> None:
    p = BinlogPos("mysql-bin.000003", 2000, 4, (Entry(2, P2, CONTINUE, (17,)),))
    text = str(p)
    assert text == f"mysql-bin.000003:2000:4@2={P2}>17"
    assert parse(text) == p
    assert key(text) == key("mysql-bin.000003:2000:4")
