"""supervisor.managed: the Registry of pipelines this node runs, and a pipeline's own ops view."""

from __future__ import annotations

import asyncio

import pytest

from shared.spec.load import validate_document
from shared.states import Desired, Status
from supervisor.managed import Managed, NotFound, Registry


def _managed(name: str) -> Managed:
    spec = validate_document(
        {
            "metadata": {"name": name},
            "spec": {"source": {"type": "generator"}, "sinks": [{"type": "stdout", "config": {"id": "out"}}]},
        }
    )
    return Managed(name, spec, Desired.RUNNING)


def test_add_get_require_remove() -> None:
    async def go() -> None:
        reg = Registry()
        a = _managed("a")
        reg.add(a)
        assert "a" in reg and len(reg) == 1 and reg.get("a") is a and reg.require("a") is a and reg["a"] is a
        assert reg.values() == [a] and reg.items() == [("a", a)] and list(reg) == ["a"]
        with pytest.raises(NotFound, match="'b' not found"):
            reg.require("b")
        assert reg.get("b") is None
        reg.remove("a")
        reg.remove("a")  # gone already: no error
        assert "a" not in reg and len(reg) == 0

    asyncio.run(go())


def test_changed_wakes_waiters_and_calls_on_change() -> None:
    async def go() -> None:
        reg = Registry()
        m = _managed("a")
        calls: list[int] = []
        reg.on_change = lambda: calls.append(1)
        ev = m.changed
        reg.changed(m)
        assert ev.is_set() and not m.changed.is_set() and calls == [1]

    asyncio.run(go())


def test_ops_of_a_pipeline_with_no_worker() -> None:
    async def go() -> None:
        m = _managed("a")
        m.status, m.restarts, m.last_error = Status.STOPPED, 3, "boom"
        ops = m.ops()
        assert ops["pid"] is None and ops["uptime_s"] == 0.0 and ops["restarts"] == 3 and ops["last_error"] == "boom"
        assert list(ops) == [
            "pid",
            "restarts",
            "uptime_s",
            "last_error",
            "events_in",
            "events_out",
            "batches",
            "inflight",
            "lag_ms",
            "sink_errors",
            "skipped",
            "source",
            "sink_lag",
        ]
        assert ops["sink_lag"] == {}

    asyncio.run(go())
