"""Kafka sink, pure parts: message keys, error sorting, producer settings, no I/O at build."""

from __future__ import annotations

import time

import msgspec
from confluent_kafka import KafkaError, KafkaException

from shared.errors import SinkError
from shared.spec.model import KafkaSinkConfig
from worker.sinks.base import SinkContext
from worker.sinks.kafka import KafkaSink
from worker.sinks.kafka_common import Tracker, build_key_fn, build_keys_fn, classify, message_timeout_s, producer_conf
from worker.sinks.kafka_eos import _position_of_id


def ev(op: str, before: dict | None, after: dict | None, **src: object) -> dict:
    return {"op": op, "ts_ms": 1, "source": {"table": "t", "position": "1", **src}, "before": before, "after": after}


def test_key_is_the_id_column_as_json_by_default() -> None:
    key_of = build_key_fn(None)
    assert key_of(ev("c", None, {"id": 7, "x": 1})) == b'{"id":7}'
    assert msgspec.json.decode(key_of(ev("u", {"id": 7}, {"id": 7, "x": 2}))) == {"id": 7}


def test_delete_key_comes_from_before() -> None:
    key_of = build_key_fn(None)
    assert key_of(ev("d", {"id": 9, "x": 1}, None)) == b'{"id":9}'


def test_key_columns_from_config_then_source_pk() -> None:
    assert build_key_fn(["a", "b"])(ev("c", None, {"a": 1, "b": "x", "id": 3})) == b'{"a":1,"b":"x"}'
    assert build_key_fn(None)(ev("c", None, {"k": "z", "id": 3}, pk=["k"])) == b'{"k":"z"}'
    # a configured key wins over the source's
    assert build_key_fn(["id"])(ev("c", None, {"k": "z", "id": 3}, pk=["k"])) == b'{"id":3}'


def test_key_without_row_is_null_and_missing_column_is_null() -> None:
    key_of = build_key_fn(None)
    assert key_of(ev("c", None, None)) is None
    assert key_of(ev("c", None, {"other": 1})) == b'{"id":null}'


def test_batch_keys_equal_the_per_event_keys() -> None:
    evs = [
        ev("c", None, {"id": 1}),
        ev("c", None, {"id": 's"x'}),
        ev("d", {"id": 3}, None),
        ev("u", {"id": 4}, {"id": 4}),
        ev("c", None, None),
        ev("c", None, {"k": 5, "id": 6}, pk=["k"]),
        ev("c", None, {"id": 1.5, "a": 2, "b": None}),
        ev("c", None, {"id": True}),
    ]
    for cols in (None, ["a"], ["id"], ["a", "b"]):
        one = build_key_fn(cols)
        assert build_keys_fn(cols)(evs) == [one(e) for e in evs], cols
    assert build_keys_fn(None)(evs)[:3] == [b'{"id":1}', b'{"id":"s\\"x"}', b'{"id":3}']


def test_fatal_errors_are_not_retryable() -> None:
    for code in (
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError.PRODUCER_FENCED,
    ):
        err = classify("k", "b:9092", KafkaException(KafkaError(code)))
        assert isinstance(err, SinkError) and err.retryable is False, code
        assert err.message.startswith("sink 'k': kafka b:9092")


def test_transient_errors_are_retryable() -> None:
    for code in (
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError.NOT_ENOUGH_REPLICAS,
    ):
        err = classify("k", "b:9092", KafkaException(KafkaError(code)))
        assert err.retryable is True and "will retry" in err.message, code
    assert classify("k", "b", BufferError("full")).retryable is True


def test_producer_conf_passes_client_conf_through_and_owns_callbacks() -> None:
    t = Tracker()
    conf = producer_conf("h:1", {"linger.ms": 20, "transactional.id": "x", "acks": 1}, t, None)
    assert conf["linger.ms"] == 20 and conf["acks"] == 1 and conf["bootstrap.servers"] == "h:1"
    assert "transactional.id" not in conf and conf["enable.idempotence"] is True
    assert conf["delivery.report.only.error"] is True and conf["on_delivery"] == t.on_delivery
    conf = producer_conf("h:1", {}, t, "tidegate-p-s")
    assert conf["transactional.id"] == "tidegate-p-s"
    assert message_timeout_s({"message.timeout.ms": 3000}) == 3.0
    assert message_timeout_s({}) == 10.0


def test_tracker_keeps_the_fatal_failure() -> None:
    t = Tracker()
    t.on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), None)
    t.on_delivery(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)
    t.on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), None)
    assert t.failures == 3 and t.first_failure.code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_position_is_parsed_back_from_the_idempotency_key() -> None:
    prefix = "pipe:sink:"
    assert _position_of_id("pipe:sink:0/16B3748:3", len(prefix)) == "0/16B3748:3"
    assert _position_of_id("pipe:sink:42#2", len(prefix)) == "42"
    assert _position_of_id("pipe:sink:a#b", len(prefix)) == "a#b"


def test_constructor_does_no_io() -> None:
    cfg = KafkaSinkConfig(id="k", brokers="10.255.255.1:9", topic="t_${source.table}", exactly_once=True)
    t0 = time.monotonic()
    sink = KafkaSink(cfg, SinkContext(pipeline="p", position_key=int))
    assert time.monotonic() - t0 < 0.5
    assert sink.static_topic is None and sink.route(ev("c", None, {"id": 1})) == "t_t"
    assert sink._eos is not None and sink._eos.txn_id == "tidegate-p-k"
    assert sink._eos.record_key == b"p/k" and sink._eos.ckpt_topic == "__tidegate_checkpoints"
