"""Decode a spec document (JSON or YAML) from untrusted bytes, with bounded work.

Every body and every spec file goes through `parse`: the API, `tidegate validate`,
`serve --config` and SIGHUP reload. What it refuses, with a message naming why:
input that is not UTF-8; nesting deeper than MAX_DEPTH (checked without recursion,
so every walker after it recurses at most that deep); duplicate keys; numbers that
are not finite or do not fit 64 bits; NUL characters in strings; YAML aliases (an alias bomb
expands a few kB into billions of nodes), explicit YAML tags other than the JSON
core types, and non-string mapping keys. YAML is parsed by libyaml's event stream
when it is built in (PyYAML's pure-Python scanner is about 10x slower) and the
document is built from those events iteratively.

Imports: stdlib + pyyaml + shared.errors (SpecMalformed, SpecInvalid, re-exported).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import yaml
from yaml import events as ev

from shared.errors import SpecInvalid, SpecMalformed

MAX_DEPTH = 64  # a real spec nests about 8 deep
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what msgspec (the worker's decoder) takes

Error = tuple[str, str]  # (path, message)


class _Resolver(yaml.resolver.Resolver):
    pass


# YAML 1.1 would turn `on`/`off`/`yes`/`no` into booleans and `2026-01-01` into a date:
# keep the JSON-like YAML 1.2 core types only (booleans true/false, no timestamps, no merge keys).
_DROP = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:merge"}
_Resolver.yaml_implicit_resolvers = {
    k: [r for r in v if r[0] not in _DROP] for k, v in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

_TAG = "tag:yaml.org,2002:"
_SEQ, _MAP, _STR = _TAG + "seq", _TAG + "map", _TAG + "str"
_CORE = {_TAG + t for t in ("str", "int", "float", "bool", "null")}

try:
    from yaml.cyaml import CParser  # type: ignore[attr-defined]  # the stubs re-export it privately
except ImportError:  # PyYAML built without libyaml
    CParser = None  # type: ignore[assignment, misc]

if CParser is not None:

    class _Events(CParser, yaml.constructor.SafeConstructor, _Resolver):
        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            yaml.constructor.SafeConstructor.__init__(self)
            _Resolver.__init__(self)

else:

    class _Events(  # type: ignore[no-redef]
        yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.constructor.SafeConstructor, _Resolver
    ):
        def __init__(self, text: str) -> None:
            yaml.reader.Reader.__init__(self, text)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            _Resolver.__init__(self)


def _line(e: Any) -> str:
    return f"line {e.start_mark.line + 1}" if getattr(e, "start_mark", None) else "?"


def _refuse_tag(e: Any, tag: str | None, default: str) -> None:
    if tag not in (None, "!", default) and not (default == _STR and tag in _CORE):
        raise SpecMalformed(f"YAML tag {tag} is not allowed ({_line(e)}); use plain JSON-like values")


def _scalar(p: _Events, e: Any) -> Any:
    _refuse_tag(e, e.tag, _STR)
    tag = e.tag if e.tag not in (None, "!") else p.resolve(yaml.ScalarNode, e.value, e.implicit)  # type: ignore[no-untyped-call]
    if tag == _STR or tag not in _CORE:
        return e.value
    node = yaml.ScalarNode(tag, e.value, e.start_mark, e.end_mark)
    try:
        return p.construct_object(node)
    except ValueError as exc:  # an integer over 4300 digits, say
        raise SpecMalformed(f"YAML value at {_line(e)}: {exc}") from None


def _add(stack: list[list[Any]], value: Any, e: Any) -> None:
    top = stack[-1]
    if isinstance(top[0], list):
        top[0].append(value)
    elif top[1] is _NOKEY:
        if not isinstance(value, str):
            raise SpecMalformed(f"YAML mapping keys must be strings ({_line(e)})")
        if value in top[0]:
            raise SpecMalformed(f"duplicate key {value!r} ({_line(e)})")
        top[1] = value
    else:
        top[0][top[1]] = value
        top[1] = _NOKEY


_NOKEY = object()


def parse_yaml(text: str) -> Any:
    """One YAML document, built from parser events without recursion."""
    stack: list[list[Any]] = [[[], _NOKEY]]
    p = None
    try:
        p = _Events(text)
        while True:
            e = p.get_event()
            if isinstance(e, (ev.StreamStartEvent, ev.DocumentStartEvent, ev.DocumentEndEvent)):
                continue
            if isinstance(e, ev.StreamEndEvent):
                break
            if isinstance(e, ev.AliasEvent):
                raise SpecMalformed(f"YAML aliases (*{e.anchor}) are not allowed ({_line(e)}); write the value out")
            if isinstance(e, (ev.SequenceStartEvent, ev.MappingStartEvent)):
                seq = isinstance(e, ev.SequenceStartEvent)
                _refuse_tag(e, e.tag, _SEQ if seq else _MAP)
                if len(stack) > MAX_DEPTH:
                    raise SpecMalformed(f"nesting deeper than {MAX_DEPTH} levels ({_line(e)})")
                stack.append([[] if seq else {}, _NOKEY])
                continue
            value = stack.pop()[0] if isinstance(e, ev.CollectionEndEvent) else _scalar(p, e)
            _add(stack, value, e)
    except yaml.YAMLError as exc:
        raise SpecMalformed(f"malformed YAML: {exc}".replace("\n", " ")) from None
    finally:
        if p is not None:
            p.dispose()
    docs = stack[0][0]
    if len(docs) > 1:
        raise SpecMalformed(f"a spec is one YAML document, got {len(docs)}")
    return docs[0] if docs else None


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise SpecMalformed(f"duplicate key {dup!r}")
    return out


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise SpecMalformed(f"number {text[:40]} is out of range")
    return value


def _constant(name: str) -> Any:
    raise SpecMalformed(f"{name} is not JSON")


def parse_json(text: str) -> Any:
    """Raises json.JSONDecodeError when the text is not JSON at all, SpecMalformed when refused."""
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_float=_number, parse_constant=_constant)
    except RecursionError:
        raise SpecMalformed(f"nesting deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # an integer over 4300 digits
        if isinstance(exc, SpecMalformed):
            raise
        raise SpecMalformed(f"malformed JSON: {exc}") from None


def check_tree(doc: Any, *, strings: bool = True) -> None:
    """Depth, NUL and lone surrogates, non-finite and over-64-bit numbers, iteratively (no
    recursion on user data). `strings=False`: the text had no backslash, so no string can
    hold NUL or a surrogate (only escapes make them; raw ones are refused by both parsers)."""
    root = (doc, 0, None, None)
    _check_value(root, doc, None, strings)
    stack: list[tuple[Any, int, Any, Any]] = [root] if isinstance(doc, (dict, list)) else []
    while stack:
        entry = stack.pop()
        value, depth = entry[0], entry[1] + 1
        if depth > MAX_DEPTH:
            raise SpecMalformed(f"nesting deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            if strings:
                bad = next((k for k in value if isinstance(k, str) and _bad_text(k)), None)
                if bad is not None:
                    raise SpecInvalid([(_path(entry), f"keys {_bad_text(bad)}")])
            pairs: Any = value.items()
        else:
            pairs = enumerate(value)
        for key, v in pairs:
            t = type(v)
            if t is dict or t is list:
                stack.append((v, depth, entry, key))
            elif t is not bool and t is not type(None) and (strings or t is not str):
                _check_value(entry, v, key, strings)


def _check_value(parent: Any, value: Any, key: Any, strings: bool) -> None:
    problem = None
    if isinstance(value, str):
        problem = _bad_text(value) if strings else None
    elif isinstance(value, float):
        problem = None if math.isfinite(value) else "must be a finite number"
    elif isinstance(value, int) and not isinstance(value, bool):
        problem = None if _INT_MIN <= value <= _INT_MAX else "integer out of range (64 bits)"
    if problem:
        where = _path(parent) if key is None else _path((value, 0, parent, key))
        raise SpecInvalid([(where, problem)])


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL characters"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode (a lone surrogate escape)"
    return None


def _path(item: Any) -> str:
    parts: list[str] = []
    while item is not None and item[2] is not None:
        key = item[3]
        part = f"[{key}]" if isinstance(key, int) else f".{key}"
        parts.append(part.encode("utf-8", "backslashreplace").decode())
        item = item[2]
    return "".join(reversed(parts)).lstrip(".") or "$"


def parse(data: bytes | str, *, yaml_ok: bool = True) -> Any:
    """JSON first (it is a YAML subset, and faster), then YAML when allowed."""
    try:
        text = data.decode("utf-8", errors="strict") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise SpecMalformed(f"not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise SpecMalformed("empty document; a pipeline spec is a JSON or YAML object")
    try:
        doc = parse_json(text)
    except json.JSONDecodeError as exc:
        if not yaml_ok:
            raise SpecMalformed(f"malformed JSON: {exc}") from None
        doc = parse_yaml(text)
    check_tree(doc, strings="\\" in text)
    return doc
