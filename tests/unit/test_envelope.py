"""Message bodies per sink envelope (CONTRACT section 6) and idempotency keys."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from worker.envelope import Encoder, idempotency_keys

TS = 1732800000123  # 2024-11-28T13:20:00.123Z


def ev(pos: Any, op: str = "c", **extra: Any) -> dict[str, Any]:
    return {
        "op": op,
        "ts_ms": TS,
        "source": {"db": "shop", "table": "orders", "position": pos},
        "before": None,
        "after": {"id": 1},
        **extra,
    }


def test_keys_are_pipeline_sink_position_and_a_repeat_is_numbered() -> None:
    evs = [ev("10"), ev("11"), ev("11"), ev("11"), ev(12), ev("10")]
    assert idempotency_keys("p", "s", evs) == ["p:s:10", "p:s:11", "p:s:11#1", "p:s:11#2", "p:s:12", "p:s:10#1"]


def test_an_event_without_a_position_has_an_empty_one() -> None:
    evs = [{"op": "c"}, {"op": "c", "source": "not an object"}, {"op": "c", "source": {"position": None}}]
    assert idempotency_keys("p", "s", evs) == ["p:s:", "p:s:#1", "p:s:#2"]


def test_native_is_the_event_itself_and_reuses_pre_encoded_bodies() -> None:
    enc = Encoder("native", "p", "s")
    e = ev("1")
    assert enc.wrap(e) is e
    native = [b'{"pre":"encoded"}']
    assert enc.encode_all([e], native=native) is native
    assert [json.loads(b) for b in enc.encode_all([e])] == [e]


def test_debezium_wraps_the_change_in_a_payload() -> None:
    e = ev("7", op="u", before={"id": 1, "v": 0}, extra_field="dropped")
    (body,) = Encoder("debezium", "p", "s").encode_all([e], native=[b"ignored"])
    assert json.loads(body) == {
        "schema": None,
        "payload": {"before": {"id": 1, "v": 0}, "after": {"id": 1}, "source": e["source"], "op": "u", "ts_ms": TS},
    }


def test_cloudevents_carries_the_idempotency_key_as_its_id() -> None:
    enc = Encoder("cloudevents", "orders-pipe", "bus")
    evs = [ev("5"), ev("5", op="d")]
    bodies = [json.loads(b) for b in enc.encode_all(evs, native=[b"x", b"y"])]
    assert bodies[0] == {
        "specversion": "1.0",
        "id": "orders-pipe:bus:5",
        "source": "tidegate/orders-pipe",
        "type": "io.tidegate.change.c",
        "subject": "shop.orders",
        "time": "2024-11-28T13:20:00.123Z",
        "datacontenttype": "application/json",
        "data": evs[0],
    }
    assert bodies[1]["id"] == "orders-pipe:bus:5#1" and bodies[1]["type"] == "io.tidegate.change.d"
    assert enc.keys(evs) == ["orders-pipe:bus:5", "orders-pipe:bus:5#1"]
    given = [json.loads(b)["id"] for b in enc.encode_all(evs, keys=["k1", "k2"])]
    assert given == ["k1", "k2"]


def test_cloudevents_time_falls_back_to_now_and_subject_to_none_without_a_source() -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    body = Encoder("cloudevents", "p", "s").wrap({"op": "r", "ts_ms": "not a number", "source": None})
    t = dt.datetime.fromisoformat(body["time"].replace("Z", "+00:00"))
    assert body["time"].endswith("Z") and before <= t <= dt.datetime.now(dt.UTC)
    assert body["subject"] == "None.None" and body["id"] == "p:s:"
