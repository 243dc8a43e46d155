"""`type: mask`: hide the values at `fields` (CONTRACT section 5).

`fields` are dotted paths into the event (`after.email`); the last part may be a glob
over column names (`after.*_ssn`, `before.card_?`). Mask `before.<column>` as well as
`after.<column>` when updates and deletes carry full before images: each path names one
place. `action`:
- `redact`: the value becomes the fixed marker "***";
- `hash`: HMAC-SHA256 with `key` (a secret, usually `${MASK_KEY}`), as lowercase hex: a
  string's UTF-8 bytes, any other value's compact JSON (`42`, `{"a":1}`), so the same value
  and key give the same hash in every run and joins on hashed columns still work;
- `truncate`: a string keeps its first `length` characters; other values are left alone.
A null stays null (there is nothing to hide), and a path that does not exist is left alone.
The event and the objects on the way to a masked value are copied (`dict.copy`, only when
a value changes); nothing else is. The common shape, every field `<image>.<column or glob>`,
is compiled at open into one generated function (`two_level`); deeper paths walk a tree.

Imports: stdlib + msgspec + shared + worker.processors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec

from shared.spec.native import glob_regex, has_wildcard, split_path
from worker.processors._paths import MISSING
from worker.processors.base import NativeProcessor

MARKER = "***"
_encode = msgspec.json.Encoder().encode

Action = Callable[[Any], Any]


def hmac_sha256_hex(key: bytes) -> Callable[[bytes], str]:
    """HMAC-SHA256 (RFC 2104) hex of a message, with the key's inner and outer pads hashed
    once: the same digest as `hmac.new(key, msg, "sha256")`, about twice as fast per value."""
    if len(key) > 64:  # SHA-256's block size
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def mac(msg: bytes) -> str:
        i = inner.copy()
        i.update(msg)
        o = outer.copy()
        o.update(i.digest())
        return o.hexdigest()

    return mac


def build_action(action: str, key: str | None, length: int | None) -> Action:
    if action == "redact":
        return lambda v: v if v is None else MARKER
    if action == "hash":
        assert key is not None
        mac = hmac_sha256_hex(key.encode())

        def hashed(v: Any) -> Any:
            if v is None:
                return None
            return mac(v.encode() if v.__class__ is str else _encode(v))

        return hashed
    assert length is not None
    n = length
    return lambda v: v[:n] if v.__class__ is str and len(v) > n else v


class Node:
    """The fields below one object: exact child paths, exact leaves, glob leaves."""

    def __init__(self) -> None:
        self.children: dict[str, Node] = {}
        self.names: set[str] = set()
        self.globs: list[Any] = []

    def add(self, parts: tuple[str, ...]) -> None:
        node = self
        for p in parts[:-1]:
            node = node.children.setdefault(p, Node())
        last = parts[-1]
        if has_wildcard(last):
            node.globs.append(glob_regex(last).fullmatch)
        else:
            node.names.add(last)


def mask(obj: dict[str, Any], node: Node, act: Action) -> dict[str, Any]:
    """`obj` with the fields of `node` masked: a copy if anything changed, else `obj` itself."""
    out: dict[str, Any] | None = None
    for name, child in node.children.items():
        v = obj.get(name)
        if v.__class__ is dict:
            nv = mask(v, child, act)
            if nv is not v:
                if out is None:
                    out = obj.copy()
                out[name] = nv
    leaves = [k for k in obj if k in node.names or any(g(k) for g in node.globs)] if node.globs else node.names
    for name in leaves:
        cur = (out if out is not None else obj).get(name, MISSING)
        if cur is MISSING:
            continue
        nv = act(cur)
        if nv is not cur:
            if out is None:
                out = obj.copy()
            out[name] = nv
    return out if out is not None else obj


class Columns:
    """Which columns of a row the exact names and globs of one image pick, decided once per
    column name (cached; the cache is emptied when it grows past 10000 names)."""

    def __init__(self, names: set[str], globs: list[Any]) -> None:
        self.names, self.globs = names, globs
        self.cache: dict[str, bool] = {}

    def pick(self, row: dict[str, Any]) -> list[str]:
        cache = self.cache
        return [k for k in row if cache.get(k) or (k not in cache and self._decide(k))]

    def _decide(self, k: str) -> bool:
        hit = k in self.names or any(g(k) for g in self.globs)
        if len(self.cache) >= 10000:
            self.cache.clear()
        self.cache[k] = hit
        return hit


def _masked_value(key: str, redact: bool, pad: str) -> list[str]:
    """The lines for one value `r[key]` (a null or missing one is left alone, as every action does)."""
    if redact:  # the action inlined: "***" for anything but null (and the marker itself)
        test, value = "v is not None and v is not MARKER", "MARKER"
    else:
        test, value = "v is not None and (nv := ACT(v)) is not v", "nv"
    return [
        f"{pad}v = r.get({key})",
        f"{pad}if {test}:",
        f"{pad}    if n is None:",
        f"{pad}        n = r.copy()",
        f"{pad}    n[{key}] = {value}",
    ]


def two_level(root: Node, act: Action, redact: bool) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """`apply` for the common shape, every field `<image>.<column or glob>`, as the source of one
    generated function: each image read once per event, the exact columns by name, the event
    and the image copied (`dict.copy`) only when a value changes. Built once, at open."""
    names: dict[str, Any] = {"MARKER": MARKER, "ACT": act}
    code = ["def apply(events):", "    out = []", "    ap = out.append", "    for e in events:", "        o = None"]
    for i, (top, node) in enumerate(root.children.items()):
        code += [f"        r = e.get({top!r})", "        if r.__class__ is dict:", "            n = None"]
        if node.globs:
            names[f"C{i}"] = Columns(node.names, node.globs)
            code += [f"            for k in C{i}.pick(r):", *_masked_value("k", redact, " " * 16)]
        else:
            for name in sorted(node.names):
                code += _masked_value(repr(name), redact, " " * 12)
        code += [
            "            if n is not None:",
            "                if o is None:",
            "                    o = e.copy()",
            f"                o[{top!r}] = n",
        ]
    code += ["        ap(e if o is None else o)", "    return out", ""]
    source = "\n".join(code)
    exec(compile(source, "<mask>", "exec"), names)  # noqa: S102 - our own source
    fn: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] = names["apply"]
    fn.source = source  # type: ignore[attr-defined]  # for tests and debugging
    return fn


class MaskProcessor(NativeProcessor):
    def open(self) -> None:
        s = self.spec
        self.root = Node()
        paths = [split_path(f) for f in s.fields]
        for parts in paths:
            self.root.add(parts)
        self.act = build_action(s.action, s.key, s.length)
        if all(len(p) == 2 for p in paths):
            self.run = two_level(self.root, self.act, s.action == "redact")
        else:
            root, act = self.root, self.act
            self.run = lambda events: [mask(e, root, act) for e in events]

    def apply(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.run(events)
