"""Pure batch cutting with an injected clock."""

from __future__ import annotations

from worker.batcher import Batcher
from worker.sources.base import Chunk


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def events(first: int, n: int, tx_size: int = 1, payload: str = "x") -> list[dict]:
    return [
        {
            "op": "c",
            "source": {"position": str(i), "tx_id": str((i + tx_size - 1) // tx_size), "ts_ms": 1},
            "after": {"id": i, "p": payload},
        }
        for i in range(first, first + n)
    ]


def ids(batch) -> list[int]:
    return [e["after"]["id"] for e in batch.events]


def test_max_events_cuts_exactly() -> None:
    b = Batcher(3, 10**9, 10**6, True, Clock())
    out = b.add(Chunk(events(1, 10)))
    assert [ids(x) for x in out] == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert b.pending == 1
    assert [x.seq for x in out] == [1, 2, 3]
    assert out[0].first_position == "1" and out[0].last_position == "3"


def test_max_bytes_is_reached_or_exceeded() -> None:
    evs = events(1, 10)
    size = len(__import__("msgspec").json.encode(evs[0]))
    b = Batcher(1000, size * 2 + 1, 10**6, True, Clock())
    out = b.add(Chunk(evs))
    assert [len(x.events) for x in out] == [3, 3, 3]
    assert all(x.nbytes >= size * 2 + 1 for x in out)


def test_max_ms_with_clock() -> None:
    clock = Clock()
    b = Batcher(1000, 10**9, 50, True, clock)
    assert b.add(Chunk(events(1, 5))) == []
    assert b.due() is None
    clock.t = 0.049
    assert b.due() is None
    clock.t = 0.05
    batch = b.due()
    assert batch is not None and ids(batch) == [1, 2, 3, 4, 5]
    assert b.deadline() is None


def test_respect_tx_grows_past_max_events() -> None:
    b = Batcher(2, 10**9, 10**6, True, Clock())
    out = b.add(Chunk(events(1, 10, tx_size=5)))
    assert [ids(x) for x in out] == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]


def test_respect_tx_across_chunks_waits_for_the_end() -> None:
    clock = Clock()
    b = Batcher(2, 10**9, 10, True, clock)
    assert b.add(Chunk(events(1, 3, tx_size=6), tx_end=False)) == []
    clock.t = 1.0
    assert b.due() is None, "max_ms never cuts inside a transaction"
    out = b.add(Chunk(events(4, 3, tx_size=6), tx_end=True))
    assert [ids(x) for x in out] == [[1, 2, 3, 4, 5, 6]]


def test_without_respect_tx_cuts_inside_transactions() -> None:
    b = Batcher(4, 10**9, 10**6, False, Clock())
    out = b.add(Chunk(events(1, 10, tx_size=5)))
    assert [len(x.events) for x in out] == [4, 4]


def test_flush_only_at_boundary_and_discard() -> None:
    b = Batcher(100, 10**9, 10**6, True, Clock())
    b.add(Chunk(events(1, 3, tx_size=5), tx_end=False))
    assert b.flush() is None
    b.discard()
    assert b.pending == 0
    b.add(Chunk(events(1, 3)))
    batch = b.flush()
    assert batch is not None and ids(batch) == [1, 2, 3]


def test_preencoded_chunks_are_used() -> None:
    evs = events(1, 3)
    enc = [b"A", b"B", b"C"]
    b = Batcher(100, 10**9, 0, True, Clock())
    out = b.add(Chunk(evs, encoded=enc))
    assert out and out[0].encoded == enc
