"""JSON merge patch (RFC 7386). Imports: stdlib only.

A patch value of "***" (what a redacted GET shows) keeps the stored value, so a
GET -> edit -> PATCH round trip never overwrites a secret with its mask.
Recursive over the patch, which `shared.spec.decode.parse` capped at MAX_DEPTH.
"""

from __future__ import annotations

from typing import Any

from shared.spec.redact import MASK


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif value == MASK and key in result:
            continue
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
