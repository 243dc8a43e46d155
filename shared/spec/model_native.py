"""The native processors' specs (CONTRACT section 5), part of shared.spec.model (which
re-exports them). Imports: stdlib + msgspec + shared.spec.model_base.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from shared.spec.model_base import NonNegInt, OnError, PosInt, SinkId, _Base

# Native processors (CONTRACT section 5) run in the worker itself. Their options are checked
# (regexes, globs, paths, templates) by shared.spec.native and compiled once when the worker
# opens them; UNSET marks an operator that a condition does not use.
Bound = int | float | str  # a number, or an ISO 8601 timestamp
Column = Annotated[str, Meta(min_length=1)]


class FilterConditionSpec(_Base):
    """One `where` item: `path` and exactly one operator."""

    path: Annotated[str, Meta(min_length=1)]
    eq: Any | UnsetType = UNSET
    ne: Any | UnsetType = UNSET
    in_: list[Any] | UnsetType = msgspec.field(default=UNSET, name="in")
    not_in: list[Any] | UnsetType = UNSET
    gt: Bound | UnsetType = UNSET
    gte: Bound | UnsetType = UNSET
    lt: Bound | UnsetType = UNSET
    lte: Bound | UnsetType = UNSET
    exists: bool | UnsetType = UNSET
    regex: str | UnsetType = UNSET
    changed: bool | UnsetType = UNSET
    unknown_changed: bool | UnsetType = UNSET  # with `changed` only; true when not given


class FilterProcessorSpec(_Base, tag="filter", tag_field="type"):
    id: SinkId
    action: Literal["keep", "drop"] = "keep"
    ops: Annotated[list[Literal["c", "u", "d", "r"]], Meta(min_length=1)] | None = None  # None: any op
    tables: Annotated[list[str], Meta(min_length=1)] | None = None  # `db.table` globs; None: any table
    where: list[FilterConditionSpec] = []
    on_error: OnError = "fail"


class FlattenProcessorSpec(_Base, tag="flatten", tag_field="type"):
    id: SinkId
    separator: Annotated[str, Meta(min_length=1)] = "__"
    max_depth: PosInt | None = None  # None: unlimited
    lists: Literal["keep", "index", "json"] = "keep"
    on_error: OnError = "fail"


class OutboxProcessorSpec(_Base, tag="outbox", tag_field="type"):
    id: SinkId
    tables: Annotated[list[str], Meta(min_length=1)]
    payload_column: Column = "payload"
    route: Annotated[str, Meta(min_length=1)] = "${aggregate_type}"  # a template over columns
    key_column: Column = "aggregate_id"
    header_columns: list[Column] = []
    on_error: OnError = "fail"


class MaskProcessorSpec(_Base, tag="mask", tag_field="type"):
    id: SinkId
    fields: Annotated[list[Annotated[str, Meta(min_length=1)]], Meta(min_length=1)]
    action: Literal["redact", "hash", "truncate"] = "redact"
    key: Annotated[str, Meta(min_length=1)] | None = None  # hash only; a secret
    length: NonNegInt | None = None  # truncate only
    on_error: OnError = "fail"
