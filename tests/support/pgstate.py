"""A fresh PostgreSQL database for the shared state store tests (`--state-url`),
dropped afterwards. May import: tests.support, psycopg2, the standard library.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg2

from tests.support import require_service

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def fresh_database(prefix: str = "tg_state") -> Iterator[str]:
    """Create `<prefix>_<hex>`; yield its URL; drop it (WITH FORCE: workers may still hold connections)."""
    require_service("postgresql", "127.0.0.1", 5432)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(ADMIN)
    admin.autocommit = True
    try:
        admin.cursor().execute(f"CREATE DATABASE {name}")
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
