"""State stores: specs, desired states, per-sink checkpoints, sink gaps.

`open_store` is the one place that picks the store, for the supervisor and its
workers alike: SQLite at `<state-dir>/tidegate.db` by default, the Postgres
store (`shared.store.postgres`, with per-pipeline leases) for a
`postgresql://` state URL. Its errors (StoreUnavailable, LeaseLost) are in
shared.errors, re-exported here. Imports: stdlib + shared.errors + shared.store
(psycopg2 only inside `shared.store.postgres`, loaded for a state URL).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.store.base import StateStore

from shared.errors import LeaseLost as LeaseLost  # re-exported: the store's errors
from shared.errors import StoreUnavailable as StoreUnavailable


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
