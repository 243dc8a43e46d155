"""Reading topics back for the Kafka sink's exactly-once recovery (worker/sinks/kafka_eos.py).

`TopicScan` creates the compacted checkpoint topic when missing and reads a partition's committed
records backwards, one window at a time (newest first), bounded by SCAN_LIMIT records.
Imports: shared.errors, confluent-kafka.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from shared.errors import SinkError

WINDOW = 2000  # records read per step when scanning a partition backwards
SCAN_LIMIT = 500_000  # records scanned per partition at most


@dataclass(frozen=True, slots=True)
class TopicScan:
    sink_id: str
    where: str
    timeout: float

    def ensure_compacted(self, admin_conf: dict[str, Any], topic: str) -> None:
        """Create `topic` (one partition, compacted) unless it exists."""
        admin = AdminClient(admin_conf)
        # create first: asking a broker with auto-create for the topic's metadata would make it
        # with the default partition count and no compaction
        futures = admin.create_topics(
            [NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})], operation_timeout=self.timeout
        )
        for fut in futures.values():
            try:
                fut.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise

    def partitions(self, consumer: Consumer, topic: str) -> list[int]:
        md = consumer.list_topics(topic, timeout=self.timeout)
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            return []
        return sorted(t.partitions)

    def windows(self, consumer: Consumer, topic: str, part: int) -> Iterator[list[Any]]:
        """The partition's committed records, newest window first (each in offset order)."""
        lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=self.timeout, cached=False)
        end, scanned = hi, 0
        while end > lo and scanned < SCAN_LIMIT:
            start = max(lo, end - WINDOW)
            yield self.read_range(consumer, topic, part, start, end)
            scanned += end - start
            end = start

    def read_range(self, consumer: Consumer, topic: str, part: int, start: int, end: int) -> list[Any]:
        consumer.assign([TopicPartition(topic, part, start)])
        out: list[Any] = []
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            m = consumer.poll(0.1)
            if m is None:
                continue
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    return out
                raise KafkaException(err)
            if m.offset() >= end:  # type: ignore[operator]  # a consumed message has an offset
                return out
            out.append(m)
            if m.offset() >= end - 1:  # type: ignore[operator]
                return out
        raise SinkError(
            self.sink_id,
            f"kafka {self.where}: timed out reading {topic}[{part}] offsets {start}..{end}; will retry",
            retryable=True,
        )
