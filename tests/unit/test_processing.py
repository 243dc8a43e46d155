"""ProcessorChain: the retry rule of CONTRACT section 5 (3 retries after 1 s, 2 s, 4 s, a
fresh context only for the processor that breached a limit, then the pipeline fails) and
the checks on what the chain returns.

The JavaScript processors are real QuickJS sandboxes; the wait between attempts is the
injected `sleep_or_stop`, which records the delay asked for instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
import structlog

from shared.errors import ErrorInfo, PipelineFailed
from shared.spec.model import JavascriptProcessorSpec as JsSpec
from shared.spec.model import Limits
from tests.support.health import Recording
from worker.processing import RETRY_S, ProcessorChain
from worker.processors.base import Processor, ProcessorContext

EVENTS = [msgspec.json.encode({"op": "c", "source": {"position": str(i)}, "after": {"id": i}}) for i in (1, 2)]

COUNTS = "let n = 0;\nexport function process(batch) {\n  n += 1;\n  {body}\n}\n"


def js(pid: str, body: str, **limits: int) -> JsSpec:
    return JsSpec(id=pid, inline=COUNTS.replace("{body}", body), limits=Limits(**limits))


class Waits:
    """The injected wait: records each delay; answers `stop` (True: a stop cut the wait)."""

    def __init__(self, stop: bool = False) -> None:
        self.delays: list[float] = []
        self.stop = stop

    async def __call__(self, seconds: float) -> bool:
        self.delays.append(seconds)
        return self.stop


def run_chain(specs: list[Any], waits: Waits, errors: list[ErrorInfo]) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        chain = ProcessorChain(specs, "p", structlog.get_logger(), Recording(infos=errors))
        await chain.open()
        try:
            return await chain.run(EVENTS, waits)
        finally:
            await chain.close()

    return asyncio.run(go())


def test_retries_after_1_2_4_seconds_then_fails_the_pipeline() -> None:
    waits, errors = Waits(), []
    with pytest.raises(PipelineFailed) as failed:
        run_chain([js("boom", "throw new Error('no ' + n);")], waits, errors)
    assert RETRY_S == (1.0, 2.0, 4.0) and waits.delays == [1.0, 2.0, 4.0]
    info = failed.value.info()
    assert info.kind == "processor" and info.retryable is False
    assert info.message.startswith("processor 'boom': process(batch) threw Error: no 4\n")
    assert info.message.endswith(" (failed 4 times)")
    # every attempt was reported as it happened, in the same (kept) context: n counted on
    assert [e.message.split(": ", 1)[1].splitlines()[0] for e in errors] == [
        f"process(batch) threw Error: no {i}" for i in (1, 2, 3, 4)
    ]
    assert all(e.retryable for e in errors)


def test_a_batch_that_succeeds_on_a_retry_keeps_the_context_of_a_plain_error() -> None:
    waits, errors = Waits(), []
    out = run_chain(
        [js("flaky", "if (n <= 2) throw new Error('not yet');\n  return batch.map(e => ({...e, n}));")], waits, errors
    )
    assert waits.delays == [1.0, 2.0] and len(errors) == 2
    assert [(e["after"]["id"], e["n"]) for e in out] == [(1, 3), (2, 3)]


def test_a_breached_limit_gives_only_that_processor_a_fresh_context() -> None:
    waits, errors = Waits(), []
    first = js("a", "return batch.map(e => ({...e, n}));")
    spin = js("b", "if (batch[0].n === 1) { for (;;) {} }\n  return batch.map(e => ({...e, m: n}));", cpu_ms=100)
    out = run_chain([first, spin], waits, errors)
    assert waits.delays == [1.0] and len(errors) == 1 and "cpu_ms 100 exceeded" in errors[0].message
    # `a` kept its context (its 2nd call), `b` got a fresh one (its 1st call in it)
    assert [(e["n"], e["m"]) for e in out] == [(2, 1), (2, 1)]


def test_a_stop_during_the_wait_cancels_the_batch_without_another_attempt() -> None:
    waits, errors = Waits(stop=True), []
    with pytest.raises(asyncio.CancelledError):
        run_chain([js("boom", "throw new Error('no');")], waits, errors)
    assert waits.delays == [1.0] and len(errors) == 1


class Returns(Processor):
    """A processor whose output is fixed bytes: what the chain does with a bad result."""

    def __init__(self, pid: str, out: bytes) -> None:
        super().__init__(SimpleNamespace(id=pid), ProcessorContext(pipeline="p"))
        self.out = out

    def open(self) -> None:
        pass

    def process(self, batch_json: bytes) -> bytes:
        json.loads(batch_json)
        return self.out


@pytest.mark.parametrize(
    ("out", "message"),
    [
        (b"[{", "returned invalid JSON"),
        (b'{"a": 1}', "process() must return an array, got dict"),
        (b'[{"a": 1}, 2]', "element 1 of the returned array is not an object"),
    ],
)
def test_the_chains_output_must_be_an_array_of_objects_named_by_the_last_processor(out: bytes, message: str) -> None:
    waits, errors = Waits(), []

    async def go() -> None:
        chain = ProcessorChain([object()], "p", structlog.get_logger(), Recording(infos=errors))
        chain.processors = [Returns("first", b"[]"), Returns("last", out)]
        try:
            await chain.run(EVENTS, waits)
        finally:
            await chain.close()

    with pytest.raises(PipelineFailed) as failed:
        asyncio.run(go())
    assert failed.value.info().message.startswith(f"processor 'last': {message}")
    assert waits.delays == [1.0, 2.0, 4.0] and len(errors) == 4
