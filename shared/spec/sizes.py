"""Byte sizes in a spec: an integer (bytes) or a string with a unit, e.g. `50GiB`, `512MB`,
`10MiB`, `1.5 GiB`, `4096`. IEC units are powers of 1024 (KiB MiB GiB TiB), SI units powers
of 1000 (kB MB GB TB); `B` or no unit is bytes; units are case-insensitive.
Imports: stdlib only.
"""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
HINT = "a byte count or a size with a unit: B, kB, MB, GB, TB (x1000) or KiB, MiB, GiB, TiB (x1024), e.g. 512MiB"


def parse_bytes(value: int | str) -> int:
    """The number of bytes `value` says; ValueError (with the reason) when it says none >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected {HINT}")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.match(value)
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(f"{value!r} is not {HINT}")
        n = int(float(m.group(1)) * _UNITS[unit]) if "." in m.group(1) else int(m.group(1)) * _UNITS[unit]
    if n < 1:
        raise ValueError(f"must be at least 1 byte, got {value!r}")
    return n


def format_bytes(n: int) -> str:
    """`n` bytes for a person: 1.5 MiB, 3 GiB, 512 B."""
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} B"
