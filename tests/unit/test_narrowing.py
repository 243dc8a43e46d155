"""Narrowing a failed batch to its poison events (CONTRACT section 12): halves, recursively,
bounded work, the others in order; `fail` raises as before; in the chain with real
JavaScript and native processors."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
import structlog

from shared.errors import ErrorInfo, PipelineFailed, ProcessorError
from shared.spec.model import ProcessorSpec
from tests.support.health import Recording
from tests.support.native import event
from worker.narrowing import narrow
from worker.processing import ProcessorChain


def _runner(bad: set[int], calls: list[tuple[int, int]], who: str = "js") -> Any:
    def run(lo: int, hi: int) -> list[int]:
        calls.append((lo, hi))
        hit = sorted(bad & set(range(lo, hi)))
        if hit:
            raise ProcessorError(who, f"bad id {hit[0]}")
        return list(range(lo, hi))

    return run


@pytest.mark.parametrize("n, bad", [(1, {0}), (2000, {1234}), (2000, {0, 1999}), (37, set(range(37))), (10, {3, 4})])
def test_only_the_poison_events_are_kept_back_the_rest_in_order(n: int, bad: set[int]) -> None:
    calls: list[tuple[int, int]] = []
    run = _runner(bad, calls)
    out, poison = narrow(n, run, ProcessorError("js", "first"), lambda _p: "dlq", lambda _p: None)
    assert out == [i for i in range(n) if i not in bad]
    assert [p.index for p in poison] == sorted(bad)
    assert all(p.processor_id == "js" and p.error == f"processor 'js': bad id {p.index}" for p in poison if n > 1)
    assert len(calls) <= 2 * n - 1  # bounded: every part splits once at most
    if len(bad) == 1 and n > 1:
        assert len(calls) <= 2 * n.bit_length()


def test_a_processor_whose_policy_is_fail_raises_as_before() -> None:
    run = _runner({5}, [], who="strict")
    with pytest.raises(ProcessorError, match="strict"):
        narrow(10, run, ProcessorError("lenient", "x"), {"lenient": "dlq", "strict": "fail"}.get, lambda _p: None)


THROW_7 = (
    "export function process(batch) {\n"
    "  for (const e of batch) { if (e.after.id === 7) throw new Error('no seven'); e.after.js = 1; }\n"
    "  return batch;\n}\n"
)


def _chain(on_error: str) -> tuple[ProcessorChain, list[ErrorInfo]]:
    errors: list[ErrorInfo] = []
    docs = [
        {"type": "javascript", "id": "js", "inline": THROW_7, "on_error": on_error},
        {"type": "filter", "id": "f", "where": [{"path": "after.id", "ne": 3}]},
    ]
    specs = [msgspec.convert(d, ProcessorSpec) for d in docs]
    return ProcessorChain(specs, "t", structlog.get_logger(), Recording(infos=errors)), errors


def _go(chain: ProcessorChain, events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    async def no_wait(_s: float) -> bool:
        return False

    async def go() -> tuple[list[dict[str, Any]], list[Any]]:
        await chain.open()
        try:
            out = await chain.run([msgspec.json.encode(e) for e in events], no_wait, events)
            return out, chain.take_poison()
        finally:
            await chain.close()

    return asyncio.run(go())


def test_the_chain_narrows_a_throwing_javascript_step() -> None:
    events = [event(i, after={"id": i}) for i in range(1, 21)]
    chain, _ = _chain("dlq")
    out, poison = _go(chain, events)
    assert [e["after"]["id"] for e in out] == [i for i in range(1, 21) if i not in (3, 7)]
    assert all(e["after"]["js"] == 1 for e in out)
    assert [(p.index, p.processor_id) for p in poison] == [(6, "js")] and "no seven" in poison[0].error
    assert chain.take_poison() == []


def test_fail_is_todays_behaviour() -> None:
    chain, errors = _chain("fail")
    events = [event(i, after={"id": i}) for i in range(1, 10)]

    async def no_wait(_s: float) -> bool:
        return False

    async def go() -> None:
        await chain.open()
        try:
            await chain.run([msgspec.json.encode(e) for e in events], no_wait, events)
        finally:
            await chain.close()

    with pytest.raises(PipelineFailed, match="no seven"):
        asyncio.run(go())
    assert len(errors) == 4
