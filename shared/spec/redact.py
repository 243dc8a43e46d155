"""Secret redaction for API responses and log lines (CONTRACT section 2).

Secrets: passwords in DSNs/URLs, fields named password/token/secret or
`*_key` at any depth, and Authorization header values. Imports: stdlib only.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
_URL_PW = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_KV_PW = re.compile(r"(?i)\b(password|passwd|pwd)=([^\s&;]+)")


def is_secret_key(key: str) -> bool:
    k = key.lower()
    return k in ("password", "passwd", "token", "secret", "authorization") or k.endswith("_key")


def redact_text(text: str) -> str:
    if "@" in text:
        text = _URL_PW.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    if "=" in text:
        text = _KV_PW.sub(lambda m: f"{m.group(1)}={MASK}", text)
    return text


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and is_secret_key(k) and v is not None and not isinstance(v, (dict, list)):
                out[k] = MASK
            else:
                out[k] = redact(v)
        return out
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
