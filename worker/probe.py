"""A stopped or failed pipeline's source health (CONTRACT section 8: `ops.source` is
reported for every status; a stopped pipeline's slot still pins WAL). The supervisor
runs a worker process in probe mode on a slow timer while no worker runs: it reads
the committed position from the state store, asks the source for its health probe
(built without opening the source) and returns one reading. Never raises: a failure
is a reading whose `errors` says why. Imports: stdlib + structlog + shared + worker.
"""

from __future__ import annotations

import os
from typing import Any

import structlog

from shared.errors import describe
from shared.spec.load import decode_spec
from shared.store import open_store
from worker.assembly import make_source
from worker.commit import committed_position


def probe_source(spec_bytes: bytes, state_dir: str, state_url: str | None = None) -> dict[str, Any]:
    spec = decode_spec(spec_bytes)
    name = spec.metadata.name
    log = structlog.get_logger().bind(pipeline=name, pid=os.getpid())
    try:
        source = make_source(spec, log, state_dir)
        store = open_store(state_dir, state_url)
        try:
            stored: dict[str, str | None] = {sid: pos for sid, (pos, _at) in store.checkpoints(name).items()}
        finally:
            store.close()
        policy = spec.spec.commit_policy
        sinks = [(s.config.id, s.config.required) for s in spec.spec.sinks]
        committed = committed_position(policy.mode, policy.quorum, sinks, stored, source.position_key)
        probe = source.health_probe(committed)
    except Exception as exc:  # noqa: BLE001 - the reading says why
        return {"errors": {"probe": describe(exc).message}}
    if probe is None:
        return {}
    try:
        out: dict[str, Any] = {f: None for f in probe.fields}
        out["errors"] = {}
        out.update(probe.read())
        return out
    except Exception as exc:  # noqa: BLE001 - a probe's read should not raise; say why if it does
        return {"errors": {"probe": describe(exc).message}}
    finally:
        probe.close()
