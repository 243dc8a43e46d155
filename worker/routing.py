"""Per-event routing templates: `${source.table}`, `${source.db}`, `${op}` ...

A template is compiled once per sink; a string without `${` is returned as is.
Imports: stdlib only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_VAR = re.compile(r"\$\{([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)\}")


def compile_template(template: str) -> Callable[[dict[str, Any]], str]:
    if "${" not in template:
        return lambda _event: template
    parts: list[Any] = []
    pos = 0
    for m in _VAR.finditer(template):
        if m.start() > pos:
            parts.append(template[pos : m.start()])
        parts.append(tuple(m.group(1).split(".")))
        pos = m.end()
    if pos < len(template):
        parts.append(template[pos:])

    def render(event: dict[str, Any]) -> str:
        out: list[str] = []
        for p in parts:
            if isinstance(p, str):
                out.append(p)
                continue
            v: Any = event
            for k in p:
                v = v.get(k) if isinstance(v, dict) else None
            out.append("" if v is None else str(v))
        return "".join(out)

    return render


def is_template(s: str) -> bool:
    return bool(_VAR.search(s))
