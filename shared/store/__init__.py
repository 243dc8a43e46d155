"""State stores: specs, desired states, per-sink checkpoints, sink gaps.

`open_store` is the one place that picks the store, for the supervisor and its
workers alike: SQLite at `<state-dir>/tidegate.db` by default, the Postgres
store (`shared.store.postgres`, with per-pipeline leases) for a
`postgresql://` state URL; both satisfy `shared.store.base.StateStore`. Imports:
stdlib + shared.store (psycopg2 only inside `shared.store.postgres`, loaded for a
state URL).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from shared.store.base import StateStore


class StoreUnavailable(Exception):
    """The state store cannot be reached or failed a statement; retrying may help.
    The message names the store (host:port), never a password."""


class LeaseLost(Exception):
    """A write was fenced: this pipeline's lease is held by another node (or a newer
    acquisition), so this worker must stop writing and exit."""


def where(url: str) -> str:
    """`host:port/db` of a state URL, without user or password."""
    try:
        u = urlsplit(url)
        host = u.hostname or "localhost"
        port = u.port or 5432
    except ValueError:
        return "<unparsable state URL>"
    db = u.path.lstrip("/")
    return f"{host}:{port}" + (f"/{db}" if db else "")


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def open_store(
    state_dir: str | os.PathLike[str], state_url: str | None = None, *, fence: tuple[str, int] | None = None
) -> StateStore:
    """An opened store. `fence` = (owner node, lease token): a Postgres store then
    refuses checkpoint and gap writes once that lease is no longer current."""
    if state_url:
        if not is_postgres_url(state_url):
            raise ValueError(f"state URL must start with postgresql://, got {state_url.split(':', 1)[0]}://...")
        from shared.store.postgres import PgStore

        return PgStore(state_url, fence=fence).open()
    from shared.store.sqlite import SqliteStore

    return SqliteStore(state_dir).open()
