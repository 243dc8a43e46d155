"""PipelineSpec as msgspec Structs: the document of CONTRACT section 2.

Imports: stdlib + msgspec + shared.spec.model_base/model_native (the building blocks and
the native processors' specs, re-exported here). Every Struct forbids unknown fields; sources,
sinks and processors are tagged unions keyed by `type`. Defaults here are the
contract's defaults. Cross-field rules live in `shared.spec.load`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from shared.spec.model_base import NonNegFloat, NonNegInt, OnError, PosInt, SinkId, _Base, type_tag
from shared.spec.model_native import (
    Bound,
    Column,
    FilterConditionSpec,
    FilterProcessorSpec,
    FlattenProcessorSpec,
    MaskProcessorSpec,
    OutboxProcessorSpec,
)

NAME_RE = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"

__all__ = [
    "Bound",
    "Column",
    "FilterConditionSpec",
    "FilterProcessorSpec",
    "FlattenProcessorSpec",
    "MaskProcessorSpec",
    "NonNegFloat",
    "NonNegInt",
    "OnError",
    "OutboxProcessorSpec",
    "PosInt",
    "SinkId",
    "type_tag",
]


# --------------------------------------------------------------------- metadata
class Metadata(_Base):
    name: Annotated[str, Meta(pattern=NAME_RE)]
    tenant: str | None = None
    labels: dict[str, str] = {}


# ---------------------------------------------------------------------- sources
Snapshot = Literal["initial", "never"]


class GeneratorSourceConfig(_Base):
    tables: Annotated[list[str], Meta(min_length=1)] = msgspec.field(default_factory=lambda: ["demo.events"])
    rate: NonNegFloat = 0.0
    count: NonNegInt = 0
    tx_size: PosInt = 1
    payload_bytes: NonNegInt = 100
    seed: int = 0


class PostgresSourceConfig(_Base):
    dsn: str
    tables: list[str] = []
    slot: str | None = None  # default: tidegate_<pipeline name with - as _>
    publication: str | None = None  # default: tidegate_<pipeline name with - as _>
    snapshot: Snapshot = "initial"
    snapshot_chunk: PosInt = 10000
    heartbeat_ms: NonNegInt = 10000  # 0 disables
    drop_slot_on_delete: bool = True
    status_interval_ms: PosInt = 10000
    # the WAL the slot may pin on the server before tidegate acts (shared.spec.sizes: 4096, "50GiB")
    max_retained_wal: int | str | None = None
    on_retained_wal: Literal["warn", "pause_best_effort"] = "warn"


class MysqlSourceConfig(_Base):
    dsn: str
    tables: list[str] = []
    server_id: Annotated[int, Meta(ge=1, le=4294967295)] | None = None  # default derived from name
    snapshot: Snapshot = "initial"
    snapshot_chunk: PosInt = 10000


class GeneratorSourceSpec(_Base, tag="generator", tag_field="type"):
    config: GeneratorSourceConfig = msgspec.field(default_factory=GeneratorSourceConfig)


class PostgresSourceSpec(_Base, tag="postgres", tag_field="type"):
    config: PostgresSourceConfig


class MysqlSourceSpec(_Base, tag="mysql", tag_field="type"):
    config: MysqlSourceConfig


SourceSpec = GeneratorSourceSpec | PostgresSourceSpec | MysqlSourceSpec


# ------------------------------------------------------------------- processors
class Limits(_Base):
    cpu_ms: PosInt = 1000
    mem_mb: PosInt = 128
    timeout_ms: PosInt = 2000


class JavascriptProcessorSpec(_Base, tag="javascript", tag_field="type"):
    id: SinkId
    inline: Annotated[str, Meta(min_length=1)]
    limits: Limits = msgspec.field(default_factory=Limits)
    on_error: OnError = "fail"


ProcessorSpec = (
    JavascriptProcessorSpec | FilterProcessorSpec | FlattenProcessorSpec | OutboxProcessorSpec | MaskProcessorSpec
)


# ------------------------------------------------------------------------ sinks
Envelope = Literal["native", "debezium", "cloudevents"]


class SinkConfigBase(_Base, kw_only=True):
    id: SinkId
    required: bool = True
    on_error: OnError = "fail"
    envelope: Envelope = "native"
    backlog_events: PosInt = 100000


class FileSinkConfig(SinkConfigBase, kw_only=True):
    path: Annotated[str, Meta(min_length=1)]
    fsync: Literal["batch", "never"] = "batch"


class StdoutSinkConfig(SinkConfigBase, kw_only=True):
    pass


class HttpSinkConfig(SinkConfigBase, kw_only=True):
    url: Annotated[str, Meta(min_length=1)]
    mode: Literal["batch", "event"] = "batch"
    headers: dict[str, str] = {}
    timeout_ms: PosInt = 10000


class RedisSinkConfig(SinkConfigBase, kw_only=True):
    url: str = "redis://127.0.0.1:6379/0"
    stream: Annotated[str, Meta(min_length=1)]
    maxlen: PosInt | None = None


class NatsSinkConfig(SinkConfigBase, kw_only=True):
    url: str = "nats://127.0.0.1:4222"
    subject: Annotated[str, Meta(min_length=1)]
    stream: str | None = None  # name of the JetStream stream (for create_stream)
    create_stream: bool = False


class KafkaSinkConfig(SinkConfigBase, kw_only=True):
    brokers: Annotated[str, Meta(min_length=1)]
    topic: Annotated[str, Meta(min_length=1)]
    exactly_once: bool = False
    key_columns: list[str] | None = None  # default: the row's key columns as the source knows them, else `id`
    client_conf: dict[str, str | int | float | bool] = {}
    checkpoint_topic: Annotated[str, Meta(min_length=1)] = "__tidegate_checkpoints"  # exactly_once only


class RabbitmqSinkConfig(SinkConfigBase, kw_only=True):
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    exchange: str = ""
    routing_key: str = "${source.table}"
    exchange_type: Literal["direct", "topic", "fanout", "headers"] = "topic"
    declare: bool = True


class PostgresSinkConfig(SinkConfigBase, kw_only=True):
    dsn: Annotated[str, Meta(min_length=1)]
    table: Annotated[str, Meta(min_length=1)]
    key_columns: list[str] | None = None  # default: the target table's primary key


class FileSinkSpec(_Base, tag="file", tag_field="type"):
    config: FileSinkConfig


class StdoutSinkSpec(_Base, tag="stdout", tag_field="type"):
    config: StdoutSinkConfig


class HttpSinkSpec(_Base, tag="http", tag_field="type"):
    config: HttpSinkConfig


class RedisSinkSpec(_Base, tag="redis", tag_field="type"):
    config: RedisSinkConfig


class NatsSinkSpec(_Base, tag="nats", tag_field="type"):
    config: NatsSinkConfig


class KafkaSinkSpec(_Base, tag="kafka", tag_field="type"):
    config: KafkaSinkConfig


class RabbitmqSinkSpec(_Base, tag="rabbitmq", tag_field="type"):
    config: RabbitmqSinkConfig


class PostgresSinkSpec(_Base, tag="postgres", tag_field="type"):
    config: PostgresSinkConfig


SinkSpec = (
    FileSinkSpec
    | StdoutSinkSpec
    | HttpSinkSpec
    | RedisSinkSpec
    | NatsSinkSpec
    | KafkaSinkSpec
    | RabbitmqSinkSpec
    | PostgresSinkSpec
)


# ------------------------------------------------------------- batch & commit
class BatchSpec(_Base):
    max_events: PosInt = 2000
    max_bytes: PosInt = 16777216
    max_ms: PosInt = 50
    respect_source_tx: bool = True
    max_inflight: Annotated[int, Meta(ge=1, le=64)] = 1


class CommitPolicy(_Base):
    mode: Literal["all", "required", "quorum"] = "required"
    quorum: PosInt | None = None


class DlqSpec(_Base):
    max_events: PosInt = 100000
    max_bytes: PosInt = 268435456


class PipelineBody(_Base):
    source: SourceSpec
    sinks: Annotated[list[SinkSpec], Meta(min_length=1)]
    processors: list[ProcessorSpec] = []
    batch: BatchSpec = msgspec.field(default_factory=BatchSpec)
    commit_policy: CommitPolicy = msgspec.field(default_factory=CommitPolicy)
    dlq: DlqSpec = msgspec.field(default_factory=DlqSpec)


class PipelineSpec(_Base):
    metadata: Metadata
    spec: PipelineBody
    apiVersion: Literal["tidegate/v1"] = "tidegate/v1"
    kind: Literal["Pipeline"] = "Pipeline"

    @property
    def name(self) -> str:
        return self.metadata.name
