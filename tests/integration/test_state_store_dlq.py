"""The dead-letter queue in both state stores (SqliteStore and PgStore, the fixtures of
test_state_store): park idempotently, list paged and by stage, get, delete by ids, stage or
all, counts per stage, bounds that store nothing when exceeded; the spec's generation."""

from __future__ import annotations

from typing import Any

import pytest

from shared.store.dlq import DlqFull, DlqNew
from tests.integration.test_state_store import make_store, pg_url  # noqa: F401 - fixtures


def _new(stage: str, pos: int, body: str = "x") -> DlqNew:
    return DlqNew(stage, f"boom at {pos}", str(pos), b'{"id": %d, "b": "%s"}' % (pos, body.encode()), 3)


def test_dlq_park_list_get_delete_counts(make_store: Any) -> None:
    s = make_store()
    new = [_new("processor:js", i) for i in range(1, 6)] + [_new("sink:pg", 7)]
    assert s.dlq_add("a", new, 100, 10**6, "2026-12-07T00:00:00Z") == 6
    # the same events again (a batch read again after a crash): nothing is parked twice
    assert s.dlq_add("a", new[:2], 100, 10**6, "2026-12-07T00:00:01Z") == 0
    assert s.dlq_add("b", [_new("sink:pg", 1)], 100, 10**6, "t") == 1
    assert s.dlq_counts("a") == {"processor:js": 5, "sink:pg": 1} and s.dlq_counts("b") == {"sink:pg": 1}
    page, nxt = s.dlq_list("a", limit=4)
    assert [e.position for e in page] == ["1", "2", "3", "4"] and nxt == page[-1].id
    rest, end = s.dlq_list("a", limit=4, after=nxt)
    assert [e.position for e in rest] == ["5", "7"] and end is None
    only, _ = s.dlq_list("a", stage="sink:pg")
    assert [(e.stage, e.position) for e in only] == [("sink:pg", "7")]
    e = s.dlq_get("a", page[0].id)
    assert e is not None and e.event == b'{"id": 1, "b": "x"}' and e.error == "boom at 1"
    assert (e.attempts, e.generation, e.first_seen, e.last_seen) == (1, 3, "2026-12-07T00:00:00Z", e.first_seen)
    assert s.dlq_get("b", page[0].id) is None and s.dlq_get("a", "nope") is None
    s.dlq_failed("a", e.id, "still bad", "2026-12-07T01:00:00Z")
    e2 = s.dlq_get("a", e.id)
    assert (e2.error, e2.attempts, e2.last_seen) == ("still bad", 2, "2026-12-07T01:00:00Z")
    assert s.dlq_delete("a", ids=[page[0].id, "nope"]) == 1
    assert s.dlq_delete("a", stage="sink:pg") == 1
    assert s.dlq_counts("a") == {"processor:js": 4}
    assert s.dlq_delete("a") == 4 and s.dlq_counts("a") == {} and s.dlq_counts("b") == {"sink:pg": 1}
    s.put_pipeline("b", b"spec", "running")
    s.delete_pipeline("b")
    assert s.dlq_counts("b") == {}


def test_generation_counts_the_specs_versions(make_store: Any) -> None:
    s = make_store()
    assert s.generation("g") == 0
    s.put_pipeline("g", b"v1", "running")
    s.put_pipeline("g", b"v1", "paused")  # the same spec: the same version
    assert s.generation("g") == 1
    s.put_pipeline("g", b"v2", "running")
    assert s.generation("g") == 2


def test_dlq_is_bounded_and_a_full_one_stores_nothing(make_store: Any) -> None:
    s = make_store()
    assert s.dlq_add("a", [_new("sink:pg", i) for i in range(3)], 4, 10**6, "t") == 3
    with pytest.raises(DlqFull, match="DLQ is full"):
        s.dlq_add("a", [_new("sink:pg", i) for i in range(3, 5)], 4, 10**6, "t")
    assert s.dlq_counts("a") == {"sink:pg": 3}
    assert s.dlq_add("a", [_new("sink:pg", 0)], 3, 10**6, "t") == 0  # parked already: no room needed
    size = len(_new("sink:pg", 9).event)
    with pytest.raises(DlqFull):
        s.dlq_add("a", [_new("sink:pg", 9)], 100, 4 * size - 1, "t")
    assert s.dlq_add("a", [_new("sink:pg", 9)], 100, 4 * size, "t") == 1
    # another process's store sees the same queue
    assert make_store().dlq_counts("a") == {"sink:pg": 4}
