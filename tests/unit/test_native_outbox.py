"""`type: outbox`: message events from outbox rows (CONTRACT section 5), and how every
sink reads them (worker/envelope.py, the Kafka keys and headers)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import ProcessorError
from tests.support.native import event, native
from worker.envelope import Encoder, message_headers, messages
from worker.sinks.kafka_common import ID_HEADER, build_keys_fn, with_messages

OUTBOX = {"type": "outbox", "id": "ob", "tables": ["public.outbox"], "header_columns": ["event_type", "id"]}


def row(n: int, payload: Any = '{"order": 1, "total": 9.5}', **cols: Any) -> dict[str, Any]:
    return {
        "id": f"e{n}",
        "aggregate_type": "order",
        "aggregate_id": 100 + n,
        "event_type": "OrderCreated",
        "payload": payload,
        **cols,
    }


def outbox_event(n: int, op: str = "c", **cols: Any) -> dict[str, Any]:
    r = row(n, **cols)
    return event(n, op, table="outbox", after=None if op == "d" else r, before=r if op == "d" else None)


def test_outbox_rows_become_messages() -> None:
    out = native(OUTBOX).apply([outbox_event(1)])
    src = outbox_event(1)["source"]
    assert out == [
        {
            "op": "c",
            "ts_ms": 1732800000000,
            "source": src,
            "route": "order",
            "message": {
                "key": "101",
                "headers": {"event_type": "OrderCreated", "id": "e1"},
                "body": {"order": 1, "total": 9.5},
            },
        }
    ]


def test_other_tables_pass_unchanged_and_deletes_are_dropped() -> None:
    other = event(2, after={"id": 1})
    evs = [outbox_event(1), other, outbox_event(3, "d"), outbox_event(4, "u"), outbox_event(5, "r")]
    out = native(OUTBOX).apply(evs)
    assert [e["source"]["position"] for e in out] == ["1", "2", "4", "5"]
    assert out[1] is other
    assert [e["op"] for e in out] == ["c", "c", "u", "r"]


def test_payloads_json_text_parsed_json_columns_as_they_are_non_json_kept_as_a_string() -> None:
    bodies = [
        ('{"a": [1, 2]}', {"a": [1, 2]}),
        ({"already": "parsed"}, {"already": "parsed"}),  # a json/jsonb column
        ([1, 2], [1, 2]),
        ("not json at all", "not json at all"),
        ('{"broken": ', '{"broken": '),
        (None, None),
        ("42", 42),
    ]
    evs = [outbox_event(i, payload=p) for i, (p, _) in enumerate(bodies)]
    out = native(OUTBOX).apply(evs)
    assert [e["message"]["body"] for e in out] == [b for _, b in bodies]
    enc = Encoder("native", "p", "s")
    assert enc.encode_all(out)[3] == b'"not json at all"', "a non-JSON payload goes out as a JSON string"


def test_route_template_key_and_header_texts() -> None:
    headers = ["count", "meta", "gone"]
    doc = dict(OUTBOX, route="${aggregate_type}.${event_type}", key_column="id", header_columns=headers)
    (m,) = native(doc).apply([outbox_event(1, count=3, meta={"v": True}, gone=None)])
    assert m["route"] == "order.OrderCreated" and m["message"]["key"] == "e1"
    assert m["message"]["headers"] == {"count": "3", "meta": '{"v":true}'}, "a null column gives no header"
    (m,) = native(dict(OUTBOX, route="events")).apply([outbox_event(1, aggregate_id=None)])
    assert m["route"] == "events" and m["message"]["key"] is None


def test_columns_the_row_lacks_are_processor_errors() -> None:
    cases = [
        (dict(OUTBOX, payload_column="body"), "no payload column 'body'"),
        (dict(OUTBOX, key_column="agg"), "no key column 'agg'"),
        (dict(OUTBOX, header_columns=["trace"]), "no header column 'trace'"),
        (dict(OUTBOX, route="${kind}"), "no route column 'kind'"),
    ]
    for doc, text in cases:
        with pytest.raises(ProcessorError, match=f"processor 'ob': event at position 1: the outbox row has {text}"):
            native(doc).apply([outbox_event(1)])
    with pytest.raises(ProcessorError, match="route column 'aggregate_type' is null"):
        native(OUTBOX).apply([outbox_event(1, aggregate_type=None)])


def test_sinks_deliver_the_body_in_every_envelope() -> None:
    (m,) = native(OUTBOX).apply([outbox_event(1)])
    change = event(2, after={"id": 2})
    assert Encoder("native", "p", "s").encode_all([m, change]) == [
        b'{"order":1,"total":9.5}',
        Encoder("native", "p", "s").encode_all([change])[0],
    ]
    assert Encoder("debezium", "p", "s").encode_all([m])[0] == b'{"order":1,"total":9.5}'
    (ce,) = Encoder("cloudevents", "p", "s").encode_all([m], keys=["p:s:1"])
    assert b'"data":{"order":1,"total":9.5}' in ce and b'"subject":"order"' in ce and b'"id":"p:s:1"' in ce


def test_kafka_keys_and_headers_of_message_events() -> None:
    (m,) = native(OUTBOX).apply([outbox_event(1)])
    change = event(2, after={"id": 2})
    evs = [m, change]
    keys, headers = with_messages(evs, build_keys_fn(None)(evs))
    assert keys == [b"101", b'{"id":2}']
    assert headers == [[("event_type", "OrderCreated"), ("id", "e1")], []]
    keys, headers = with_messages(evs, build_keys_fn(None)(evs), ids=["p:s:1", "p:s:2"])
    assert headers == [[(ID_HEADER, "p:s:1"), ("event_type", "OrderCreated"), ("id", "e1")], [(ID_HEADER, "p:s:2")]]
    assert with_messages([change], [b"k"]) == ([b"k"], None), "no message events: nothing changes"


def test_message_helpers_for_events_a_javascript_step_built() -> None:
    js_built = {"op": "c", "source": {"position": "1"}, "message": {"body": 1, "headers": {"n": 2, "x": None}}}
    not_one = {"op": "c", "source": {"position": "2"}, "message": "hello"}
    assert messages([not_one]) is None
    ms = messages([js_built, not_one])
    assert ms is not None and ms[1] is None and message_headers(ms[0]) == {"n": "2"}
