"""JSON merge patch (RFC 7386). Imports: stdlib + shared.spec.redact.

A value exactly as a redacted GET shows it ("***" for a secret field, a URL or DSN
with its password as "***") keeps the stored value, also inside arrays (the sinks
list is replaced whole, as RFC 7386 says): a GET -> edit -> PATCH round trip never
overwrites a secret with its mask. Array items are paired with the stored ones by
their `id` (or `config.id`), else by position. Recursive over the patch, which
`shared.spec.decode.parse` capped at MAX_DEPTH.
"""

from __future__ import annotations

from typing import Any

from shared.spec.redact import MASK, is_secret_key, redact_text


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return _unmask(patch, target, None)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif value == MASK and key in result:
            continue
        elif isinstance(value, dict):
            result[key] = merge_patch(result.get(key), value)
        else:
            result[key] = _unmask(value, result.get(key), key)
    return result


def _shown(stored: str, key: Any) -> str:
    return MASK if isinstance(key, str) and is_secret_key(key) else redact_text(stored)


def _unmask(new: Any, old: Any, key: Any) -> Any:
    """`new` (a whole replacement value) with every masked secret put back from `old`."""
    if isinstance(new, str):
        return old if isinstance(old, str) and new != old and new == _shown(old, key) else new
    if isinstance(new, list) and isinstance(old, list):
        return [_unmask(n, o, key) for n, o in _pairs(new, old)]
    if isinstance(new, dict) and isinstance(old, dict):
        return {k: _unmask(v, old.get(k), k) for k, v in new.items()}
    return new


def _ident(item: Any) -> Any:
    if not isinstance(item, dict):
        return None
    cfg = item.get("config")
    ident = item.get("id", cfg.get("id") if isinstance(cfg, dict) else None)
    return ident if isinstance(ident, str) else None


def _pairs(new: list[Any], old: list[Any]) -> list[tuple[Any, Any]]:
    by_id = {i: o for o in old if (i := _ident(o)) is not None}
    out = []
    for pos, n in enumerate(new):
        ident = _ident(n)
        out.append((n, by_id.get(ident) if ident is not None else (old[pos] if pos < len(old) else None)))
    return out
