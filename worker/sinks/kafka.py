"""Kafka sink (CONTRACT section 6): `topic` at `brokers`, any Kafka-protocol broker.

The message key is the row's key columns as a JSON object (`{"id": 7}`), so one
row's changes stay in order on one partition; the value is the event in the
sink's envelope; `topic` may be a routing template (`${source.table}`...). A
message event (the outbox processor's, worker/envelope.py) goes out with its own
key, headers and body.
Default: an idempotent producer, at-least-once (a failed batch is produced again
on retry). `exactly_once: true`: one transaction per batch with the sink's
checkpoint inside it (worker/sinks/kafka_eos.py). Batches queued together
(max_inflight > 1) go out as one group: one flush, or one transaction.
`client_conf` passes librdkafka settings through (`message.timeout.ms`, default
10000, bounds how long one write waits for acknowledgements before it reports
a retryable error).

librdkafka calls block, so produce/flush/commit run on this sink's own thread.
Imports: shared, worker.envelope/routing (through base), confluent-kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import KafkaError, Producer

from shared.errors import SinkError
from shared.spec.model import KafkaSinkConfig
from worker.routing import compile_template, is_template
from worker.sinks.base import Sink, SinkBatch, SinkContext, merge_batches
from worker.sinks.kafka_common import (
    Tracker,
    build_keys_fn,
    classify,
    classify_error,
    discard,
    flush_within,
    message_timeout_s,
    produce_all,
    producer_conf,
    with_messages,
)
from worker.sinks.kafka_eos import EosSettings, ExactlyOnce

_TOPIC_WAIT_TRIES = 10


class KafkaSink(Sink[KafkaSinkConfig]):
    def __init__(self, config: Any, ctx: SinkContext) -> None:
        super().__init__(config, ctx)
        self.where: str = config.brokers
        self.route: Callable[[dict[str, Any]], str] = compile_template(config.topic)
        self.static_topic: str | None = None if is_template(config.topic) else config.topic
        self.keys_of = build_keys_fn(config.key_columns)
        self.tracker = Tracker()
        self.ack_timeout: float = message_timeout_s(dict(config.client_conf)) + 2.0
        self._producer: Producer | None = None
        self._eos: ExactlyOnce | None = ExactlyOnce(EosSettings.of(self)) if config.exactly_once else None
        self._exec: ThreadPoolExecutor | None = None
        self.closing = False  # set by close(): a write stuck on a dead broker gives up

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._exec is None:
            self._exec = ThreadPoolExecutor(1, thread_name_prefix=f"sink-kafka-{self.id}")
        return await asyncio.get_running_loop().run_in_executor(self._exec, fn, *args)

    # ----------------------------------------------------------------- open
    async def open(self) -> str | None:
        return await self._run(self._open_sync)

    def _open_sync(self) -> str | None:
        if self._eos is not None:
            return self._eos.recover()
        p = self._new_producer()
        try:
            if self.static_topic is None:
                p.list_topics(timeout=self.ack_timeout)
            else:
                self._check_topic(p, self.static_topic)
        except Exception as exc:  # noqa: BLE001 - classified
            raise classify(self.id, self.where, exc, "metadata") from exc
        return None

    def _check_topic(self, p: Producer, topic: str) -> None:
        """Asking for the topic's metadata lets a broker with auto-create make it."""
        err = None
        for _ in range(_TOPIC_WAIT_TRIES):
            t = p.list_topics(topic, timeout=self.ack_timeout).topics.get(topic)
            err = t.error if t is not None else None
            if t is not None and err is None and t.partitions:
                return
            if err is not None and err.code() not in (
                KafkaError.UNKNOWN_TOPIC_OR_PART,
                KafkaError.LEADER_NOT_AVAILABLE,
            ):
                break
            p.poll(0.2)
        if err is not None:
            raise classify_error(self.id, f"kafka {self.where} topic {topic!r}", err)

    def _new_producer(self) -> Producer:
        if self._producer is None:
            conf = producer_conf(self.config.brokers, self.config.client_conf, self.tracker, None)
            try:
                self._producer = Producer(conf)
            except Exception as exc:  # noqa: BLE001 - bad client_conf
                raise SinkError(self.id, f"kafka client_conf rejected: {exc}", retryable=False) from exc
        return self._producer

    def _drop_producer(self) -> None:
        discard(self._producer)
        self._producer = None

    def can_replay(self) -> str | None:
        if self._eos is not None:  # its checkpoint goes with each transaction: not built for replays yet
            return f"sink '{self.id}': DLQ replay into an exactly_once Kafka sink is not supported yet"
        return None

    # ---------------------------------------------------------------- write
    async def write(self, batch: SinkBatch) -> None:
        if not batch.events:
            return
        await self._run(self._write_sync, batch)

    async def write_many(self, batches: list[SinkBatch]) -> None:
        """Plain: produce several batches, then one flush waits for all their acks.
        exactly_once: the batches as one transaction, with the last one's checkpoint."""
        if self._eos is not None:
            merged = merge_batches(batches)
            if merged.events:
                await self._run(self._eos.write, merged)
        else:
            await self._run(self._write_plain, batches)

    def _write_sync(self, batch: SinkBatch) -> None:
        if self._eos is not None:
            self._eos.write(batch)
        else:
            self._write_plain([batch])

    def _write_plain(self, batches: list[SinkBatch]) -> None:
        p = self._new_producer()
        self.tracker.reset()
        count = 0
        for batch in batches:
            events = batch.events
            if not events:
                continue
            bodies = self.encoder.encode_all(events, batch.native)
            keys: list[bytes | None] = self.keys_of(events)
            headers = None
            if batch.native is None:  # processors ran: message events may carry key and headers
                keys, headers = with_messages(events, keys)
            if self.static_topic is not None:
                topics: list[str] | str = self.static_topic
            else:
                route = self.route
                topics = [route(e) for e in events]
            try:
                produce_all(p, topics, bodies, keys, headers)
            except Exception as exc:  # noqa: BLE001 - classified
                self._drop_producer()
                raise classify(self.id, self.where, exc, "produce") from exc
            count += len(bodies)
        remaining = flush_within(p, self.ack_timeout, lambda: self.closing)
        if remaining or self.tracker.failures:
            # the producer may be wedged (a broker that lost its state answers UNKNOWN_PRODUCER_ID
            # forever): start afresh; the retry produces the whole batch again (at-least-once)
            self._drop_producer()
            raise self.delivery_error(f"{count} messages", remaining)

    def delivery_error(self, what: str, remaining: int) -> SinkError:
        t = self.tracker
        last = t.client_error
        last_text = f"; last client error: {last.name()}: {last.str()}" if last is not None else ""
        if t.first_failure is not None:
            err = t.first_failure
            return classify_error(
                self.id, f"kafka {self.where}", err, f" ({t.failures} of {what} not delivered{last_text})"
            )
        return SinkError(
            self.id,
            f"kafka {self.where}: {remaining} of {what} not acknowledged within "
            f"{self.ack_timeout:.0f}s (broker unreachable?{last_text}); will retry",
            retryable=True,
        )

    # ---------------------------------------------------------------- close
    async def close(self) -> None:
        if self._exec is None:
            return
        self.closing = True
        try:
            await self._run(self._close_sync)
        finally:
            self._exec.shutdown(wait=False)
            self._exec = None

    def _close_sync(self) -> None:
        if self._eos is not None:
            self._eos.close()
        p, self._producer = self._producer, None
        if p is not None:
            flush_within(p, min(self.ack_timeout, 2.0))
            discard(p)
