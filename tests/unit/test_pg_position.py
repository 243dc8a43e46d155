"""Positions of the postgres source: parse/format round trips and their total order."""

from __future__ import annotations

import pytest

from worker.sources.postgres.position import SnapshotPos, StreamPos, epoch_of, lsn_str, lsn_to_int, parse, position_key


def test_lsn_round_trip() -> None:
    for text in ("0/0", "0/16B3748", "1/FFFFFFFF", "AB/1"):
        assert lsn_str(lsn_to_int(text)) == text
    assert lsn_to_int("1/0") == 1 << 32


def test_stream_positions_order_by_commit_lsn_then_index() -> None:
    ps = ["0/16B3748:0", "0/16B3748:1", "0/16B3748:10", "0/16B3749:0", "1/0:0"]
    assert sorted(ps, key=position_key) == ps


def test_snapshot_sorts_before_stream_and_reexport_after_the_interrupted_run() -> None:
    first = SnapshotPos(1, 500, ((0, 0x100),), False).format()
    other_table = SnapshotPos(2, 1, ((0, 0x100),), False).format()
    rerun = SnapshotPos(1, 1, ((0, 0x100), (1, 0x200)), False).format()
    stream = StreamPos(0x50, 0, ()).format()  # even a lower LSN than the snapshot epoch
    assert position_key(first) < position_key(other_table) < position_key(rerun) < position_key(stream)


def test_parse_format_round_trip() -> None:
    for p in (
        SnapshotPos(0, 3, ((0, 0x1A00),), True),
        SnapshotPos(4, 7, ((0, 0x1A00), (2, 0x1C00)), False),
        StreamPos(0x16B3748, 3, ()),
    ):
        assert parse(p.format()) == p
    assert SnapshotPos(0, 3, ((0, 0x1A00),), True).format() == "snapshot:0:3:0@0/1A00:last"


def test_stream_position_carries_runs_only_inside_the_skip_window() -> None:
    runs = ((0, 0x100), (2, 0x300))
    inside = StreamPos(0x200, 5, runs)
    assert inside.format() == "0/200:5:0@0/100,2@0/300" and parse(inside.format()) == inside
    assert StreamPos(0x300, 0, runs).format() == "0/300:0"
    assert position_key(inside.format()) == (1, 0x200, 5)


def test_epoch_of_runs() -> None:
    runs = ((0, 10), (2, 20), (5, 30))
    assert [epoch_of(runs, t) for t in range(7)] == [10, 10, 20, 20, 20, 30, 30]


@pytest.mark.parametrize("bad", ["", "x", "snapshot:1", "0/1", "0/1:a", "snapshot:0:1:0@0/1:first"])
def test_bad_positions_are_rejected_with_the_position_named(bad: str) -> None:
    with pytest.raises(ValueError, match="not a postgres source position"):
        parse(bad)
