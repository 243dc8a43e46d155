"""Pieces of the Kafka sink shared by its plain and exactly-once paths.

Message keys (the row's key columns as a JSON object), producer settings,
delivery tracking and the sorting of librdkafka errors into retryable and
fatal `SinkError`s. Everything here runs on the sink's own thread.
Imports: shared, worker.envelope, confluent-kafka.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from shared.errors import SinkError
from worker.envelope import encode, message_headers, message_key, messages

DEFAULT_MESSAGE_TIMEOUT_MS = 10000
ID_HEADER = "tidegate-id"

# Errors a retry cannot fix: the spec, the credentials or the broker's set-up must change.
_FATAL = {
    KafkaError.MSG_SIZE_TOO_LARGE: "a message is larger than the broker accepts (message.max.bytes)",
    KafkaError.RECORD_LIST_TOO_LARGE: "a record batch is larger than the broker accepts",
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "not authorized to write the topic",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "not authorized on the cluster",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "not authorized to use the transactional.id",
    KafkaError.SASL_AUTHENTICATION_FAILED: "the broker rejected the credentials",
    KafkaError._AUTHENTICATION: "the broker rejected the credentials",
    KafkaError.UNKNOWN_TOPIC_OR_PART: "the topic does not exist and the broker does not create topics "
    "automatically; create it",
    KafkaError._UNKNOWN_TOPIC: "the topic does not exist and the broker does not create topics "
    "automatically; create it",
    KafkaError.TOPIC_EXCEPTION: "invalid topic name",
    KafkaError.INVALID_RECORD: "the broker rejected a record as invalid",
    KafkaError.POLICY_VIOLATION: "the broker's policy rejected the request",
    KafkaError._INVALID_ARG: "invalid client setting or argument",
    KafkaError.PRODUCER_FENCED: "fenced: another producer with the same transactional.id is active "
    "(a second worker of this pipeline?)",
    KafkaError._FENCED: "fenced: another producer with the same transactional.id is active "
    "(a second worker of this pipeline?)",
}


def classify(sink_id: str, where: str, exc: BaseException, what: str = "") -> SinkError:
    """A KafkaException (or other error) as a retryable or fatal SinkError with its cause."""
    if isinstance(exc, SinkError):
        return exc
    prefix = f"kafka {where}" + (f" {what}" if what else "")
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        err: KafkaError = exc.args[0]
        return classify_error(sink_id, prefix, err)
    if isinstance(exc, BufferError):
        return SinkError(sink_id, f"{prefix}: local queue full ({exc}); will retry", retryable=True)
    return SinkError(sink_id, f"{prefix}: {exc.__class__.__name__}: {exc}", retryable=True)


def classify_error(sink_id: str, prefix: str, err: KafkaError, extra: str = "") -> SinkError:
    hint = _FATAL.get(err.code())
    text = f"{prefix}: {err.name()}: {err.str()}{extra}"
    if hint is not None:
        return SinkError(sink_id, f"{text} ({hint})", retryable=False)
    return SinkError(sink_id, f"{text}; will retry", retryable=True)


class Tracker:
    """Delivery failures and client errors of one producer (callbacks run on the sink thread)."""

    def __init__(self) -> None:
        self.failures = 0
        self.first_failure: KafkaError | None = None
        self.client_error: KafkaError | None = None

    def reset(self) -> None:
        self.failures = 0
        self.first_failure = None

    def on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.failures += 1
            if self.first_failure is None or (err.code() in _FATAL and self.first_failure.code() not in _FATAL):
                self.first_failure = err

    def on_error(self, err: KafkaError) -> None:
        self.client_error = err


def producer_conf(
    brokers: str, client_conf: Mapping[str, Any], tracker: Tracker, transactional_id: str | None
) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": brokers,
        "enable.idempotence": True,
        "acks": "all",
        "message.timeout.ms": DEFAULT_MESSAGE_TIMEOUT_MS,
        "linger.ms": 5,
        "log.connection.close": False,
    }
    conf.update(client_conf)
    conf["delivery.report.only.error"] = True
    conf["on_delivery"] = tracker.on_delivery
    conf["error_cb"] = tracker.on_error
    conf.pop("transactional.id", None)
    if transactional_id is not None:
        conf["transactional.id"] = transactional_id
        conf["enable.idempotence"] = True
    return conf


def message_timeout_s(conf: dict[str, Any]) -> float:
    raw = conf.get("message.timeout.ms", conf.get("delivery.timeout.ms", DEFAULT_MESSAGE_TIMEOUT_MS))
    try:
        ms = float(raw)
    except (TypeError, ValueError):
        ms = DEFAULT_MESSAGE_TIMEOUT_MS
    return (ms if ms > 0 else DEFAULT_MESSAGE_TIMEOUT_MS) / 1000.0


def build_key_fn(key_columns: list[str] | None) -> Callable[[dict[str, Any]], bytes | None]:
    """Key = the row's key columns as a JSON object, from `after` (`before` for deletes).

    Columns: `key_columns` when set, else the event's `source.pk` list when a
    source provides one, else `id`. No row image at all gives a null key.
    """
    fixed = tuple(key_columns) if key_columns else None
    heads: dict[str, bytes] = {}

    def one(c: str, v: Any) -> bytes:  # == encode({c: v}), without building the dict
        head = heads.get(c)
        if head is None:
            head = heads[c] = b"{" + encode(c) + b":"
        return head + encode(v) + b"}"

    def key_of(ev: dict[str, Any]) -> bytes | None:
        if ev.get("op") == "d":
            row = ev.get("before") or ev.get("after")
        else:
            row = ev.get("after") or ev.get("before")
        if not isinstance(row, dict):
            return None
        cols = fixed
        if cols is None:
            src = ev.get("source")
            pk = src.get("pk") if isinstance(src, dict) else None
            if not pk:
                return one("id", row.get("id"))
            cols = tuple(pk) if isinstance(pk, (list, tuple)) else ("id",)
        if len(cols) == 1:
            return one(cols[0], row.get(cols[0]))
        return encode({c: row.get(c) for c in cols})

    return key_of


def build_keys_fn(key_columns: list[str] | None) -> Callable[[list[dict[str, Any]]], list[bytes | None]]:
    """The keys of a whole batch, as `build_key_fn` gives them, with a fast path for one
    integer key column (the common `id`)."""
    key_of = build_key_fn(key_columns)
    col = key_columns[0] if key_columns and len(key_columns) == 1 else None
    if key_columns and col is None:
        return lambda events: [key_of(e) for e in events]
    name = col or "id"
    head = b"{" + encode(name) + b":"
    int_fmt = head + b"%d}"
    check_pk = col is None  # without configured columns a source's `source.pk` decides

    def keys_of(events: list[dict[str, Any]]) -> list[bytes | None]:
        out: list[bytes | None] = []
        append = out.append
        for ev in events:
            row = ev.get("before") if ev.get("op") == "d" else ev.get("after")
            if row.__class__ is not dict:
                append(key_of(ev))
                continue
            if check_pk:
                src = ev.get("source")
                if src.__class__ is dict and src.get("pk"):
                    append(key_of(ev))
                    continue
            v = row.get(name)
            append(int_fmt % v if v.__class__ is int else head + encode(v) + b"}")
        return out

    return keys_of


Headers = list[list[tuple[str, str | bytes | None]]]


def with_messages(
    events: list[dict[str, Any]], keys: list[bytes | None], ids: list[str] | None = None
) -> tuple[list[bytes | None], Headers | None]:
    """Keys and headers as produced: a message event's own key and headers (worker.envelope)
    replace the row key; `ids` (exactly-once) adds the `tidegate-id` header to every message.
    Headers are None when there are neither ids nor message events."""
    msgs = messages(events)
    if msgs is None:
        return keys, None if ids is None else [[(ID_HEADER, i)] for i in ids]
    keys = [message_key(m) if m is not None else k for m, k in zip(msgs, keys)]
    headers: Headers = []
    for j, m in enumerate(msgs):
        h: list[tuple[str, str | bytes | None]] = [] if ids is None else [(ID_HEADER, ids[j])]
        if m is not None:
            h.extend(message_headers(m).items())
        headers.append(h)
    return keys, headers


def produce_all(
    producer: Producer,
    topics: list[str] | str,
    bodies: list[bytes],
    keys: list[bytes | None],
    headers: Headers | None = None,
) -> None:
    """produce() every message (`headers`: each one's list, see `with_messages`); waits for
    room when librdkafka's local queue is full."""
    produce = producer.produce
    n = len(bodies)
    i = 0
    static = topics if isinstance(topics, str) else None
    while i < n:
        try:
            if headers is None:
                if static is not None:
                    while i < n:
                        produce(static, bodies[i], keys[i])
                        i += 1
                else:
                    while i < n:
                        produce(topics[i], bodies[i], keys[i])
                        i += 1
            else:
                while i < n:
                    produce(static or topics[i], bodies[i], keys[i], headers=headers[i] or None)
                    i += 1
        except BufferError:
            producer.poll(0.05)


def flush_within(producer: Producer, timeout_s: float, stop: Callable[[], bool] | None = None) -> int:
    """flush() until done, `timeout_s` passed or `stop()` says so; returns the messages still outstanding."""
    deadline = time.monotonic() + timeout_s
    remaining = len(producer)
    while remaining:
        left = deadline - time.monotonic()
        if left <= 0 or (stop is not None and stop()):
            break
        remaining = producer.flush(min(left, 0.5))
    return remaining


def discard(producer: Producer | None) -> None:
    """Drop a producer that may be wedged (for example after the broker lost its state)."""
    if producer is None:
        return
    try:
        producer.purge(in_queue=True, in_flight=True, blocking=False)
        producer.flush(0)
    except Exception:  # noqa: BLE001 - best effort on a broken client
        pass
