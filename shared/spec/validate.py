"""Validate a raw spec document against the Structs, collecting EVERY error.

msgspec stops at the first error; this walker follows msgspec's own type info
(`msgspec.inspect`) and reports each problem with its field path
(`spec.sinks[0].config.id: required field missing`). Imports: stdlib + msgspec + shared.spec.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from msgspec import inspect as mi

from shared.spec.model import PipelineSpec, type_tag
from shared.spec.native import native_errors
from shared.spec.sizes import parse_bytes

Error = tuple[str, str]  # (path, message)

_TYPE_INFO = mi.type_info(PipelineSpec)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _bounds(t: Any, value: Any, path: str, errs: list[Error]) -> None:
    if t.ge is not None and value < t.ge:
        errs.append((path, f"must be >= {t.ge}"))
    if t.gt is not None and value <= t.gt:
        errs.append((path, f"must be > {t.gt}"))
    if t.le is not None and value > t.le:
        errs.append((path, f"must be <= {t.le}"))
    if t.lt is not None and value >= t.lt:
        errs.append((path, f"must be < {t.lt}"))


def _check_struct(value: Any, t: mi.StructType, path: str, errs: list[Error]) -> None:
    if not isinstance(value, dict):
        errs.append((path or "$", f"expected an object, got {kind_of(value)}"))
        return
    names = {f.encode_name: f for f in t.fields}
    for key in value:
        if key == t.tag_field:
            if value[key] != t.tag:
                errs.append((_join(path, str(key)), f"must be {t.tag!r}"))
            continue
        if key not in names:
            known = ", ".join(sorted(names)) or "none"
            errs.append((_join(path, str(key)), f"unknown field (known fields: {known})"))
    for name, f in names.items():
        if name not in value:
            if f.required:
                errs.append((_join(path, name), "required field missing"))
            continue
        check(value[name], f.type, _join(path, name), errs)


def _check_union(value: Any, t: mi.UnionType, path: str, errs: list[Error]) -> None:
    structs = [u for u in t.types if isinstance(u, mi.StructType) and u.tag_field]
    if structs:
        if not isinstance(value, dict):
            errs.append((path, f"expected an object, got {kind_of(value)}"))
            return
        tag_field = structs[0].tag_field
        assert tag_field is not None  # structs are filtered on it
        tags: dict[Any, mi.StructType] = {u.tag: u for u in structs}  # the spec's tags are strings
        tag = value.get(tag_field)
        if tag is None:
            errs.append((_join(path, tag_field), f"required field missing (one of: {', '.join(tags)})"))
            return
        if not isinstance(tag, str) or tag not in tags:
            errs.append((_join(path, tag_field), f"unknown type {tag!r} (one of: {', '.join(tags)})"))
            return
        _check_struct(value, tags[tag], path, errs)
        return
    others = [u for u in t.types if not isinstance(u, mi.NoneType)]
    if value is None:
        if len(others) != len(t.types):
            return
        errs.append((path, "must not be null"))
        return
    if len(others) == 1:
        check(value, others[0], path, errs)
        return
    for u in others:  # first member that accepts the value wins
        sub: list[Error] = []
        check(value, u, path, sub)
        if not sub:
            return
    errs.append((path, f"unexpected {kind_of(value)}"))


def check(value: Any, t: Any, path: str, errs: list[Error]) -> None:  # noqa: C901 - one flat dispatch
    if isinstance(t, mi.StructType):
        _check_struct(value, t, path, errs)
    elif isinstance(t, mi.UnionType):
        _check_union(value, t, path, errs)
    elif isinstance(t, mi.BoolType):
        if not isinstance(value, bool):
            errs.append((path, f"expected a boolean, got {kind_of(value)}"))
    elif isinstance(t, mi.IntType):
        if not isinstance(value, int) or isinstance(value, bool):
            errs.append((path, f"expected an integer, got {kind_of(value)}"))
        else:
            _bounds(t, value, path, errs)
    elif isinstance(t, mi.FloatType):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errs.append((path, f"expected a number, got {kind_of(value)}"))
        else:
            _bounds(t, value, path, errs)
    elif isinstance(t, mi.StrType):
        if not isinstance(value, str):
            errs.append((path, f"expected a string, got {kind_of(value)}"))
            return
        if t.min_length and len(value) < t.min_length:
            errs.append(
                (path, "must not be empty" if t.min_length == 1 else f"must be at least {t.min_length} characters")
            )
        if t.max_length is not None and len(value) > t.max_length:
            errs.append((path, f"must be at most {t.max_length} characters"))
        if t.pattern and (value or not t.min_length) and not re.search(t.pattern, value):
            errs.append((path, f"must match {t.pattern}"))
    elif isinstance(t, mi.LiteralType):
        if value not in t.values:
            errs.append((path, f"must be one of: {', '.join(map(str, sorted(t.values, key=str)))}"))
    elif isinstance(t, mi.ListType):
        if not isinstance(value, list):
            errs.append((path, f"expected an array, got {kind_of(value)}"))
            return
        if t.min_length and len(value) < t.min_length:
            errs.append((path, f"must have at least {t.min_length} item{'s' if t.min_length > 1 else ''}"))
        for i, item in enumerate(value):
            check(item, t.item_type, f"{path}[{i}]", errs)
    elif isinstance(t, mi.DictType):
        if not isinstance(value, dict):
            errs.append((path, f"expected an object, got {kind_of(value)}"))
            return
        for k, v in value.items():
            if not isinstance(k, str):
                errs.append((path, "keys must be strings"))
            check(v, t.value_type, _join(path, str(k)), errs)
    elif isinstance(t, mi.NoneType):
        if value is not None:
            errs.append((path, f"expected null, got {kind_of(value)}"))
    # AnyType and others: anything goes


def structural_errors(doc: Any) -> list[Error]:
    errs: list[Error] = []
    check(doc, _TYPE_INFO, "", errs)
    return errs


def semantic_errors(spec: PipelineSpec) -> list[Error]:
    """Cross-field rules the types cannot say."""
    errs: list[Error] = []
    body = spec.spec
    seen: dict[str, int] = {}
    for i, s in enumerate(body.sinks):
        if s.config.id in seen:
            errs.append(
                (
                    f"spec.sinks[{i}].config.id",
                    f"duplicate sink id {s.config.id!r} (also spec.sinks[{seen[s.config.id]}])",
                )
            )
        seen.setdefault(s.config.id, i)
    pseen: dict[str, int] = {}
    for i, p in enumerate(body.processors):
        if p.id in pseen:
            errs.append(
                (f"spec.processors[{i}].id", f"duplicate processor id {p.id!r} (also spec.processors[{pseen[p.id]}])")
            )
        pseen.setdefault(p.id, i)
    errs.extend(native_errors(body.processors))
    cp = body.commit_policy
    n = len(body.sinks)
    if cp.mode == "quorum":
        if cp.quorum is None:
            errs.append(("spec.commit_policy.quorum", "required when mode is quorum"))
        elif not 1 <= cp.quorum <= n:
            errs.append(("spec.commit_policy.quorum", f"must be between 1 and the number of sinks ({n})"))
    elif cp.quorum is not None:
        errs.append(("spec.commit_policy.quorum", "only allowed when mode is quorum"))
    if cp.mode == "required" and not any(s.config.required for s in body.sinks):
        errs.append(("spec.commit_policy.mode", "mode required needs at least one sink with required: true"))
    src = body.source
    cfg = getattr(src, "config", None)
    dsn = getattr(cfg, "dsn", None)
    if type_tag(src) == "postgres" and dsn is not None and not dsn.startswith(("postgresql://", "postgres://")):
        errs.append(("spec.source.config.dsn", "must be a postgresql:// URL"))
    if type_tag(src) == "postgres":
        errs.extend(_retained_wal_errors(cfg))
    if type_tag(src) == "mysql" and dsn is not None and not dsn.startswith(("mysql://", "mariadb://")):
        errs.append(("spec.source.config.dsn", "must be a mysql:// URL"))
    for i, t in enumerate(getattr(cfg, "tables", []) or []):
        if t.count(".") != 1 or t.startswith(".") or t.endswith("."):
            what = "schema.table" if type_tag(src) == "postgres" else "db.table"
            errs.append((f"spec.source.config.tables[{i}]", f"must be {what}, got {t!r}"))
    return errs


def _retained_wal_errors(cfg: Any) -> list[Error]:
    if cfg.max_retained_wal is None:
        if cfg.on_retained_wal != "warn":
            return [("spec.source.config.on_retained_wal", f"{cfg.on_retained_wal} needs max_retained_wal")]
        return []
    try:
        parse_bytes(cfg.max_retained_wal)
    except ValueError as exc:
        return [("spec.source.config.max_retained_wal", str(exc))]
    return []


def convert(doc: Any) -> PipelineSpec:
    return msgspec.convert(doc, PipelineSpec)
