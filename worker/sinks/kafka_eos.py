"""Exactly-once delivery for the Kafka sink: one transaction per batch.

Each batch (or group of batches queued together) is one Kafka transaction (`transactional.id` =
`tidegate-<pipeline>-<sink id>`) holding the batch's messages and this sink's checkpoint: a
record keyed `<pipeline>/<sink id>` in the compacted topic `checkpoint_topic`, value
`{"position", "prev", "topics", "updated_at"}` (`prev`: the position committed before this
transaction began). A read_committed reader sees a batch and its checkpoint together or not at
all. `recover()` (at open and after any failure) makes a fresh producer, whose
`init_transactions` fences a zombie and aborts its open transaction, then reads the checkpoint
back, so a replay never writes a committed batch again.

Brokers that do not hide aborted records from read_committed readers (tansu 0.6 returns no
aborted-transaction list in fetch responses) show the part of a batch whose transaction a crash
cut off, and possibly its checkpoint record. To stay duplicate-free and lossless there too, every message
carries a `tidegate-id` header (the idempotency key), and `recover()` trusts only the latest
record's `prev` (committed for sure), then scans the tail of every topic this sink wrote (listed in
the checkpoint record; a new topic is registered, and flushed, before it is first written) for ids
past it: those events are already visible and are skipped, the rest are sent again. On a broker
that filters aborted records this finds exactly the last committed batch, whose events are then
skipped too. Imports: shared, worker.sinks.kafka_common/kafka_eos_scan, confluent-kafka, msgspec.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from confluent_kafka import Consumer, Producer

from shared.errors import SinkError
from shared.events import position_of
from worker.sinks.base import SinkBatch
from worker.sinks.kafka_common import (
    ID_HEADER,
    classify,
    discard,
    flush_within,
    produce_all,
    producer_conf,
    with_messages,
)
from worker.sinks.kafka_eos_scan import TopicScan

if TYPE_CHECKING:
    from worker.sinks.kafka import KafkaSink

_CONSUMER_KEYS = ("security.", "sasl.", "ssl.", "client.", "socket.", "broker.", "api.", "metadata.")


class Checkpoint(msgspec.Struct, kw_only=True):
    position: str | None
    prev: str | None = None
    topics: list[str] = []
    updated_at: str = ""


_dec = msgspec.json.Decoder(Checkpoint)


@dataclass(frozen=True, slots=True)
class EosSettings:
    """What ExactlyOnce needs from its sink, fixed when the sink is built (`EosSettings.of(sink)`)."""

    sink_id: str
    where: str  # the brokers, for error messages
    pipeline: str
    brokers: str
    client_conf: Mapping[str, Any]
    checkpoint_topic: str
    checkpoint_scope: str  # the key of this sink's checkpoint record (SinkContext.checkpoint_scope)
    static_topic: str | None  # None: the topic is a template
    ack_timeout: float
    position_key: Callable[[str], Any]
    log: Any
    # the sink's encoding, routing and delivery-report helpers
    encoder: Any
    keys_of: Callable[[list[dict[str, Any]]], Any]
    route: Callable[[dict[str, Any]], str]
    tracker: Any
    delivery_error: Callable[[str, int], SinkError]
    closing: Callable[[], bool]  # the sink is closing: a flush stuck on a dead broker gives up

    @classmethod
    def of(cls, sink: KafkaSink) -> EosSettings:
        ctx, cfg = sink.ctx, sink.config
        return cls(
            sink_id=sink.id,
            where=sink.where,
            pipeline=ctx.pipeline,
            brokers=cfg.brokers,
            client_conf=dict(cfg.client_conf),
            checkpoint_topic=cfg.checkpoint_topic,
            checkpoint_scope=ctx.checkpoint_scope(sink.id),
            static_topic=sink.static_topic,
            ack_timeout=sink.ack_timeout,
            position_key=ctx.position_key,
            log=ctx.log,
            encoder=sink.encoder,
            keys_of=sink.keys_of,
            route=sink.route,
            tracker=sink.tracker,
            delivery_error=sink.delivery_error,
            closing=lambda: sink.closing,
        )


def _now() -> str:
    return _dt.datetime.now(tz=_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ExactlyOnce:
    def __init__(self, settings: EosSettings) -> None:
        self.s = s = settings
        self.ckpt_topic: str = s.checkpoint_topic
        self.record_key = f"{s.pipeline}/{s.checkpoint_scope}".encode()
        self.id_prefix = f"{s.pipeline}:{s.sink_id}:"
        self.txn_id = f"tidegate-{s.pipeline}-{s.sink_id}"
        self.scan = TopicScan(s.sink_id, s.where, s.ack_timeout)
        self.producer: Producer | None = None
        self.position: str | None = None
        self.pos_key: Any = None
        self.topics: set[str] = set()
        self.skip: dict[str, Any] = {}  # ids already visible past the checkpoint -> position key

    # ------------------------------------------------------------- recovery
    def recover(self) -> str | None:
        """Fresh producer (fences zombies), then the committed checkpoint and visible leftovers."""
        s = self.s
        discard(self.producer)
        self.producer = None
        timeout = s.ack_timeout
        try:
            p = Producer(producer_conf(s.brokers, s.client_conf, s.tracker, self.txn_id))
            p.init_transactions(timeout)
        except Exception as exc:  # noqa: BLE001 - classified
            raise classify(s.sink_id, s.where, exc, "init_transactions") from exc
        try:
            self._ensure_checkpoint_topic()
            consumer = Consumer(self._consumer_conf())
            try:
                ckpt = self._read_checkpoint(consumer)
                # `prev` was committed before the latest record's transaction began; whether that
                # one committed, the scan below tells by the ids it finds visible
                self.position = ckpt.prev if ckpt else None
                self.pos_key = s.position_key(self.position) if self.position is not None else None
                self.topics = set(ckpt.topics) if ckpt else set()
                self.skip = self._scan_leftovers(consumer)
            finally:
                consumer.close()
        except Exception as exc:  # noqa: BLE001 - classified
            discard(p)
            raise classify(s.sink_id, s.where, exc, f"reading checkpoint topic {self.ckpt_topic!r}") from exc
        self.producer = p
        s.log.info(
            "kafka_eos_recovered",
            sink=s.sink_id,
            checkpoint=self.position,
            latest=ckpt.position if ckpt else None,
            visible_past_checkpoint=len(self.skip),
        )
        return self.position

    def _consumer_conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = {k: v for k, v in self.s.client_conf.items() if k.startswith(_CONSUMER_KEYS)}
        conf.update(
            {
                "bootstrap.servers": self.s.brokers,
                "group.id": f"{self.txn_id}-reader",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 10,
                "topic.metadata.refresh.interval.ms": -1,
            }
        )
        return conf

    def _ensure_checkpoint_topic(self) -> None:
        conf = {
            k: v for k, v in self._consumer_conf().items() if k.startswith(_CONSUMER_KEYS) or k == "bootstrap.servers"
        }
        self.scan.ensure_compacted(conf, self.ckpt_topic)

    def _read_checkpoint(self, consumer: Consumer) -> Checkpoint | None:
        best: tuple[int, Checkpoint] | None = None
        for part in self.scan.partitions(consumer, self.ckpt_topic):
            for window in self.scan.windows(consumer, self.ckpt_topic, part):
                mine = [m for m in window if m.key() == self.record_key]
                if mine:
                    m = mine[-1]
                    # one partition holds our key; the newest record there is the checkpoint
                    if best is None or m.offset() > best[0]:
                        best = (m.offset(), _dec.decode(m.value()))
                    break
        return best[1] if best else None

    def _scan_leftovers(self, consumer: Consumer) -> dict[str, Any]:
        """Our ids visible past the checkpoint (records of transactions that did not commit)."""
        s = self.s
        topics = set(self.topics)
        if s.static_topic is not None:
            topics.add(s.static_topic)
        prefix = self.id_prefix.encode()
        skip: dict[str, Any] = {}
        for topic in sorted(topics):
            for part in self.scan.partitions(consumer, topic):
                for window in self.scan.windows(consumer, topic, part):
                    reached_committed = False
                    for m in window:
                        for hk, hv in m.headers() or ():
                            if hk == ID_HEADER and hv and hv.startswith(prefix):
                                ident = hv.decode()
                                key = s.position_key(_position_of_id(ident, len(self.id_prefix)))
                                if self.pos_key is not None and key <= self.pos_key:
                                    reached_committed = True
                                else:
                                    skip[ident] = key
                    if reached_committed:
                        break
        return skip

    # ---------------------------------------------------------------- write
    def write(self, batch: SinkBatch) -> None:
        s = self.s
        if self.producer is None:
            self.recover()
        pk = s.position_key
        if self.pos_key is not None and pk(batch.last_position) <= self.pos_key:
            return  # committed before (an ambiguous commit resolved by recover)
        events, native = batch.events, batch.native
        ids = s.encoder.keys(events)
        first = position_of(events[0]) if events else None
        if self.skip or (self.pos_key is not None and first is not None and pk(first) <= self.pos_key):
            keep = [
                i
                for i, (ev, ident) in enumerate(zip(events, ids))
                if ident not in self.skip and not self._at_or_below(position_of(ev))
            ]
            events = [events[i] for i in keep]
            ids = [ids[i] for i in keep]
            native = [native[i] for i in keep] if native is not None else None
        bodies = s.encoder.encode_all(events, native, ids)
        keys, headers = with_messages(events, s.keys_of(events), ids)
        if s.static_topic is not None:
            topics: list[str] | str = s.static_topic
            used = {s.static_topic} if events else set()
        else:
            route = s.route
            topics = [route(e) for e in events]
            used = set(topics)
        all_topics = self.topics | used
        p = self.producer
        assert p is not None
        s.tracker.reset()
        try:
            p.begin_transaction()
            if len(all_topics) != len(self.topics):  # register new topics before writing to them
                p.produce(self.ckpt_topic, self._record(self.position, self.position, all_topics), self.record_key)
                self._flush(p, "registering topics")
            p.produce(self.ckpt_topic, self._record(batch.last_position, self.position, all_topics), self.record_key)
            produce_all(p, topics, bodies, keys, headers)
            p.commit_transaction(s.ack_timeout)
            if s.tracker.failures:
                raise s.delivery_error(f"{len(bodies)} messages", 0)
        except Exception as exc:  # noqa: BLE001 - classified; the next write recovers
            discard(p)
            self.producer = None
            raise classify(s.sink_id, s.where, exc, "transaction") from exc
        self.position = batch.last_position
        self.pos_key = pk(batch.last_position)
        self.topics = all_topics
        if self.skip:
            self.skip = {k: v for k, v in self.skip.items() if v > self.pos_key}

    def _at_or_below(self, pos: str | None) -> bool:
        return pos is not None and self.pos_key is not None and self.s.position_key(pos) <= self.pos_key

    def _flush(self, p: Producer, what: str) -> None:
        s = self.s
        remaining = flush_within(p, s.ack_timeout, s.closing)
        if remaining or s.tracker.failures:
            raise s.delivery_error(what, remaining)

    def _record(self, position: str | None, prev: str | None, topics: set[str]) -> bytes:
        return msgspec.json.encode(Checkpoint(position=position, prev=prev, topics=sorted(topics), updated_at=_now()))

    def close(self) -> None:
        discard(self.producer)
        self.producer = None


def _position_of_id(ident: str, prefix_len: int) -> str:
    rest = ident[prefix_len:]
    head, sep, tail = rest.rpartition("#")
    return head if sep and tail.isdigit() else rest
