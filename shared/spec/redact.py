"""Secret redaction for API responses and log lines (CONTRACT section 2).

Secrets: passwords in DSNs/URLs, fields named password/token/secret/key or
`*_key` at any depth (except `routing_key`, which routes and hides nothing),
and Authorization header values. `key` covers the `mask` processor's HMAC key
(and client settings such as `ssl.key`). Imports: stdlib only.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
MAX_DEPTH = 100  # deeper than any spec may be (shared.spec.decode): below it, everything is masked
NOT_SECRET = frozenset({"routing_key"})
_SEP = re.compile(r"[._-]")
_URL_PW = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_KV_PW = re.compile(r"(?i)\b(password|passwd|pwd)=([^\s&;]+)")


def is_secret_key(key: str) -> bool:
    k = key.lower()
    if k in NOT_SECRET:
        return False
    last = _SEP.split(k)[-1]  # client_conf's `sasl.password`, `ssl.key.password` too
    return last in ("password", "passwd", "token", "secret", "authorization", "key") or k.endswith("_key")


def redact_text(text: str) -> str:
    if "@" in text:
        text = _URL_PW.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    if "=" in text:
        text = _KV_PW.sub(lambda m: f"{m.group(1)}={MASK}", text)
    return text


def redact(value: Any, depth: int = 0) -> Any:
    """A copy with secrets masked; recursion is bounded (a log line may carry any value)."""
    if isinstance(value, (dict, list)) and depth >= MAX_DEPTH:
        return MASK
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and is_secret_key(k) and v is not None and not isinstance(v, (dict, list)):
                out[k] = MASK
            else:
                out[k] = redact(v, depth + 1)
        return out
    if isinstance(value, list):
        return [redact(v, depth + 1) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
