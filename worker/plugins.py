"""THE plugin registry: spec `type` -> "module:factory", imported lazily.

No registration by import side effect. tests/unit/test_plugins.py checks that
every tag of the spec unions has an entry here and that each entry imports.
"""

from __future__ import annotations

import importlib
from typing import Any

SOURCES: dict[str, str] = {
    "generator": "worker.sources.generator:GeneratorSource",
    "postgres": "worker.sources.postgres.source:PostgresSource",
    "mysql": "worker.sources.mysql.source:MysqlSource",
}

SINKS: dict[str, str] = {
    "file": "worker.sinks.file:FileSink",
    "stdout": "worker.sinks.stdout:StdoutSink",
    "http": "worker.sinks.http:HttpSink",
    "redis": "worker.sinks.redis:RedisSink",
    "nats": "worker.sinks.nats:NatsSink",
    "kafka": "worker.sinks.kafka:KafkaSink",
    "rabbitmq": "worker.sinks.rabbitmq:RabbitmqSink",
    "postgres": "worker.sinks.postgres:PostgresSink",
}

PROCESSORS: dict[str, str] = {
    "javascript": "worker.processors.javascript:JavascriptProcessor",
    "filter": "worker.processors.filter:FilterProcessor",
    "flatten": "worker.processors.flatten:FlattenProcessor",
    "outbox": "worker.processors.outbox:OutboxProcessor",
    "mask": "worker.processors.mask:MaskProcessor",
}


def resolve(table: dict[str, str], type_: str) -> Any:
    try:
        ref = table[type_]
    except KeyError:
        raise LookupError(f"no plugin registered for type {type_!r}") from None
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)
