"""A DLQ entry is unique per (stage, position, digest of the event): the digest must not see the
times a re-read after a crash stamps anew, or the same event is parked twice."""

from __future__ import annotations

import json

from shared.store.dlq import DlqNew


def _new(ev: dict) -> DlqNew:
    return DlqNew(stage="processor:p", error="bad", position=str(ev["after"]["id"]), event=json.dumps(ev).encode())


def test_the_same_generator_event_read_again_later_has_the_same_digest() -> None:
    src = {"connector": "generator", "db": "d", "table": "t", "position": "97", "ts_ms": 1}
    first = {"op": "c", "ts_ms": 1, "source": src, "before": None, "after": {"id": 97, "payload": "x"}}
    again = {**first, "ts_ms": 2, "source": {**src, "ts_ms": 2}}
    assert _new(first).digest == _new(again).digest


def test_other_content_has_another_digest() -> None:
    src = {"connector": "postgres", "db": "d", "table": "t", "position": "0/1:0", "ts_ms": 1}
    a = {"op": "c", "ts_ms": 1, "source": src, "before": None, "after": {"id": 97, "payload": "x"}}
    assert _new(a).digest != _new({**a, "after": {"id": 97, "payload": "y"}}).digest
    assert _new(a).digest != _new({**a, "source": {**src, "ts_ms": 2}}).digest  # a CDC commit time is the event's
