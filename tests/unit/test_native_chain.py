"""Native processors in the processor chain: mixed with JavaScript in any order, one decode,
the batch's own objects never changed, and the processor error rules of CONTRACT section 5."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import msgspec
import pytest
import structlog

from shared.errors import ErrorInfo, PipelineFailed
from shared.spec.model import ProcessorSpec
from tests.support.health import Recording
from tests.support.native import event
from worker.processing import ProcessorChain, unchanged_encodings

ENRICH = "export function process(batch) { for (const e of batch) e.after.js = true; return batch; }"


def chain_of(*docs: dict[str, Any]) -> tuple[ProcessorChain, list[ErrorInfo]]:
    errors: list[ErrorInfo] = []
    specs = [msgspec.convert(d, ProcessorSpec) for d in docs]
    return ProcessorChain(specs, "t", structlog.get_logger(), Recording(infos=errors)), errors


async def no_wait(_seconds: float) -> bool:
    return False


def run(chain: ProcessorChain, events: list[dict[str, Any]], *, pass_events: bool = True) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        await chain.open()
        try:
            encoded = [msgspec.json.encode(e) for e in events]
            return await chain.run(encoded, no_wait, events if pass_events else None)
        finally:
            await chain.close()

    return asyncio.run(go())


BATCH = [event(i, after={"id": i, "email": f"u{i}@x.org", "status": "paid" if i % 2 else "new"}) for i in (1, 2, 3)]
FILTER = {"type": "filter", "id": "paid", "where": [{"path": "after.status", "eq": "paid"}]}
MASK = {"type": "mask", "id": "pii", "fields": ["after.email"]}


def test_native_steps_run_on_the_batch_objects_without_decoding() -> None:
    chain, _ = chain_of(FILTER, MASK)
    events = copy.deepcopy(BATCH)

    async def go() -> list[dict[str, Any]]:
        await chain.open()
        try:  # the encoded batch is never read when the events are given
            return await chain.run([b"not json"] * 3, no_wait, events)
        finally:
            await chain.close()

    out = asyncio.run(go())
    assert [(e["after"]["id"], e["after"]["email"]) for e in out] == [(1, "***"), (3, "***")]
    assert events == BATCH, "the batch's own events are unchanged"


def test_without_events_the_batch_is_decoded_once() -> None:
    chain, _ = chain_of(FILTER)
    out = run(chain, BATCH, pass_events=False)
    assert out == [BATCH[0], BATCH[2]]


def test_a_filter_that_keeps_everything_returns_a_new_list() -> None:
    chain, _ = chain_of({"type": "filter", "id": "all"})
    events = list(BATCH)
    out = run(chain, events)
    assert out == events and out is not events


def test_mixed_with_javascript_in_any_order() -> None:
    chain, _ = chain_of(FILTER, {"type": "javascript", "id": "js", "inline": ENRICH}, MASK)
    out = run(chain, copy.deepcopy(BATCH))
    assert [e["after"] for e in out] == [
        {"id": 1, "email": "***", "status": "paid", "js": True},
        {"id": 3, "email": "***", "status": "paid", "js": True},
    ]
    chain, _ = chain_of({"type": "javascript", "id": "js", "inline": ENRICH}, FILTER)
    assert [e["after"]["js"] for e in run(chain, copy.deepcopy(BATCH))] == [True, True]


def test_a_bad_javascript_result_before_a_native_step_names_the_javascript_processor() -> None:
    bad = {"type": "javascript", "id": "bad", "inline": "function process(batch) { return [1]; }"}
    chain, errors = chain_of(bad, FILTER)
    with pytest.raises(PipelineFailed) as e:
        run(chain, BATCH)
    assert errors[0].message == "processor 'bad': process(batch) returned a number at index 0, expected an event object"
    assert "(failed 4 times)" in str(e.value)


def test_a_native_error_follows_the_processor_retry_rules() -> None:
    chain, errors = chain_of({"type": "flatten", "id": "flat"})
    with pytest.raises(PipelineFailed) as e:
        run(chain, [event(5, after={"a__b": 1, "a": {"b": 2}})])
    assert len(errors) == 4, "tried once and retried 3 times, like a JavaScript processor"
    assert all(i.kind == "processor" and i.message.startswith("processor 'flat': event at position 5") for i in errors)
    assert str(e.value).endswith("(failed 4 times)")


def test_an_unexpected_failure_in_a_native_step_is_that_processors_error() -> None:
    """An event a JavaScript step shaped oddly (a non-string key path in `source`)."""
    js = {"type": "javascript", "id": "js", "inline": "function process(b) { b[0].source = 'x'; return b; }"}
    chain, errors = chain_of(js, {"type": "outbox", "id": "ob", "tables": ["*.*"]})
    with pytest.raises(PipelineFailed):
        run(chain, BATCH)
    assert errors[0].message.startswith("processor 'ob': ")


def test_unchanged_events_keep_their_source_encodings() -> None:
    events = copy.deepcopy(BATCH)
    encoded = [msgspec.json.encode(e) for e in events]
    assert unchanged_encodings(events, encoded, [events[0], events[2]]) == [encoded[0], encoded[2]]
    assert unchanged_encodings(events, encoded, []) == []
    assert unchanged_encodings(events, encoded, [dict(events[0])]) is None, "a changed (new) event"
    assert unchanged_encodings(events, encoded, [events[1], events[1]]) is None, "a repeat"
    assert unchanged_encodings(events, encoded, [events[2], events[0]]) is None, "out of order"
    assert unchanged_encodings(events, encoded, list(events)) == encoded, "all kept"
    assert unchanged_encodings(events, encoded, [events[0], events[2], events[1]]) is None, "all, out of order"
    assert unchanged_encodings(events, encoded, [events[0], events[1], dict(events[2])]) is None, "all, one new"
    chain, _ = chain_of(FILTER, MASK)
    assert unchanged_encodings(events, encoded, run(chain, events)) is None
    chain, _ = chain_of(FILTER)
    assert unchanged_encodings(events, encoded, run(chain, events)) == [encoded[0], encoded[2]]


def test_each_processor_s_time_is_counted_and_they_sum_to_the_total() -> None:
    chain, _ = chain_of(FILTER, {"type": "javascript", "id": "js", "inline": ENRICH}, MASK)

    async def go() -> None:
        await chain.open()
        try:
            for _ in range(3):
                events = copy.deepcopy(BATCH)
                await chain.run([msgspec.json.encode(e) for e in events], no_wait, events)
            chain.run_one(msgspec.json.encode(BATCH[0]), BATCH[0])  # a DLQ replay is not batch time
        finally:
            await chain.close()

    asyncio.run(go())
    assert set(chain.busy_by_id) == {"paid", "js", "pii"}
    assert all(ms > 0 for ms in chain.busy_by_id.values())
    assert chain.busy_ms == pytest.approx(sum(chain.busy_by_id.values()))
    assert chain.busy_by_id["js"] > chain.busy_by_id["paid"], "a sandbox round trip costs more than a filter"


def test_a_failed_attempt_is_not_counted() -> None:
    chain, _ = chain_of({"type": "flatten", "id": "flat"})
    with pytest.raises(PipelineFailed):
        run(chain, [event(5, after={"a__b": 1, "a": {"b": 2}})])
    assert chain.busy_by_id == {} and chain.busy_ms == 0.0
