"""The processor chain of a pipeline: every processor in order on one batch,
on ONE long-lived executor thread (sandboxes are spawned from it, and their
parent-death signal follows that thread), with the retry rule of CONTRACT
section 5: 3 retries after 1 s, 2 s, 4 s (a fresh context after a breached
limit), then the pipeline fails. A failure of a processor with `on_error: dlq|skip`
is narrowed to its poison events instead (worker.narrowing): the others go on, and
the poison ones wait in `take_poison()` for the pipeline to park or skip them.
Imports: stdlib + msgspec + shared + worker.
"""

from __future__ import annotations

import asyncio
import operator
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from shared.errors import ErrorInfo, PipelineFailed, ProcessorError
from shared.spec.model import type_tag
from worker import plugins
from worker.health import Health
from worker.narrowing import Poison, narrow
from worker.processors.base import NativeProcessor, Processor, ProcessorContext

RETRY_S = (1.0, 2.0, 4.0)
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def _checked(data: bytes, last: str) -> list[dict[str, Any]]:
    """A processor's JSON output as events: an array of objects, else a ProcessorError naming it."""
    try:
        out = _decode(data)
    except msgspec.DecodeError as exc:
        raise ProcessorError(last, f"returned invalid JSON: {exc}") from exc
    if not isinstance(out, list):
        raise ProcessorError(last, f"process() must return an array, got {type(out).__name__}")
    for i, e in enumerate(out):
        if not isinstance(e, dict):
            raise ProcessorError(last, f"element {i} of the returned array is not an object")
    return out


def unchanged_encodings(
    events: list[dict[str, Any]], encoded: list[bytes], out: list[dict[str, Any]]
) -> list[bytes] | None:
    """The source encodings of `out` when it is a subsequence of the batch's own event objects
    (native steps that only kept or dropped events): the sinks then write those bytes instead
    of encoding the events again. None when any event is new or changed (or repeated)."""
    n, j = len(events), 0
    if len(out) == n:  # kept them all (the usual filter): one pass in C
        return list(encoded) if all(map(operator.is_, out, events)) else None
    picked: list[bytes] = []
    for o in out:
        while j < n and events[j] is not o:
            j += 1
        if j == n:
            return None
        picked.append(encoded[j])
        j += 1
    return picked


def _apply(p: NativeProcessor, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A native step; any failure is that processor's error (same retry rules as JavaScript)."""
    try:
        return p.apply(events)
    except ProcessorError:
        raise
    except Exception as exc:  # noqa: BLE001 - an event the step cannot handle (say, from a JS step)
        raise ProcessorError(p.id, f"{exc.__class__.__name__}: {exc}") from exc


class ProcessorChain:
    def __init__(self, specs: list[Any], pipeline: str, log: Any, health: Health | None = None) -> None:
        self.specs = specs
        self.pipeline = pipeline
        self.log = log
        self.processors: list[Processor] = []
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="processors")
        self.busy_ms = 0.0  # the sum of busy_by_id
        self.busy_by_id: dict[str, float] = {}  # ms in each processor, over the batches it ran
        self.health = health  # told of each failed attempt, as it happens (ops.last_error)
        self.on_error = {getattr(s, "id", ""): getattr(s, "on_error", "fail") for s in specs}
        self._poison: list[Poison] = []

    def __bool__(self) -> bool:
        return bool(self.specs)

    def _open(self) -> None:
        for spec in self.specs:
            cls = plugins.resolve(plugins.PROCESSORS, type_tag(spec))
            proc = cls(spec, ProcessorContext(pipeline=self.pipeline, log=self.log.bind(processor=spec.id)))
            proc.open()
            self.processors.append(proc)

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.pool, self._open)

    def _run(
        self, encoded: list[bytes], events: list[dict[str, Any]] | None = None, spent: dict[str, float] | None = None
    ) -> list[dict[str, Any]]:
        """Every processor in order. Consecutive native steps share one list of decoded events
        (the batch's own objects when the chain starts with one: native steps never mutate
        them); JSON text is made only for a JavaScript step, and decoded once after it. Each
        step's time (ms) is added to `spent[id]`."""
        objs: list[dict[str, Any]] | None = None
        data: bytes | None = None
        made_by: str | None = None  # the processor whose output `data` is (None: the batch itself)
        spent, clock = {} if spent is None else spent, time.perf_counter
        t = clock()
        for p in self.processors:
            if isinstance(p, NativeProcessor):
                if objs is None:
                    if data is None:
                        objs = events if events is not None else _decode(b"[" + b",".join(encoded) + b"]")
                    else:
                        objs = _checked(data, made_by or p.id)
                objs = _apply(p, objs)
            else:
                if objs is not None:
                    data, objs = _encode(objs), None
                elif data is None:
                    data = b"[" + b",".join(encoded) + b"]"
                data = p.process(data)
                made_by = p.id
            now = clock()  # a step's time includes making its input (JSON text or events)
            spent[p.id] = spent.get(p.id, 0.0) + (now - t) * 1000
            t = now
        last = self.processors[-1].id
        if objs is not None:
            out = objs if objs is not events else list(objs)
        else:
            assert data is not None
            out = _checked(data, last)
        spent[last] += (clock() - t) * 1000  # decoding the last step's output
        return out

    def _count(self, spent: dict[str, float]) -> None:
        """Add a batch's time (every run of its successful attempt, narrowing included: the
        failed attempts before it are not counted) to each processor's and the total."""
        for pid, ms in spent.items():
            self.busy_by_id[pid] = self.busy_by_id.get(pid, 0.0) + ms
        self.busy_ms = sum(self.busy_by_id.values())

    def policy(self, processor_id: str) -> str:
        return self.on_error.get(processor_id, "fail")

    def _run_narrowed(
        self, encoded: list[bytes], events: list[dict[str, Any]] | None, spent: dict[str, float]
    ) -> tuple[list[dict[str, Any]], list[Poison]]:
        try:
            return self._run(encoded, events, spent), []
        except ProcessorError as exc:
            if self.policy(exc.processor_id) == "fail":
                raise
            if exc.limit:
                self._reset(exc.processor_id)

            def part(lo: int, hi: int) -> list[dict[str, Any]]:
                return self._run(encoded[lo:hi], None if events is None else events[lo:hi], spent)

            return narrow(len(encoded), part, exc, self.policy, self._reset)

    def run_one(self, encoded: bytes, event: dict[str, Any]) -> list[dict[str, Any]]:
        """One event through every processor, once (a DLQ replay; on the chain's thread)."""
        if not self.processors:
            return [event]
        try:
            return self._run([encoded], [event])
        except ProcessorError as exc:
            if exc.limit:
                self._reset(exc.processor_id)
            raise

    def take_poison(self) -> list[Poison]:
        """The poison events of the last batch run (indexes into it), once."""
        out, self._poison = self._poison, []
        return out

    def _reset(self, processor_id: str) -> None:
        for p in self.processors:
            if p.id == processor_id:
                p.reset()

    async def run(
        self,
        encoded: list[bytes],
        sleep_or_stop: Callable[[float], Awaitable[bool]],
        events: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """The chain's output for one batch (its events as compact JSON; `events`, the same
        events decoded, spare a leading native step the decode). Raises PipelineFailed when
        retries are exhausted, CancelledError when a stop cuts a wait."""
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            spent: dict[str, float] = {}
            try:
                out, self._poison = await loop.run_in_executor(self.pool, self._run_narrowed, encoded, events, spent)
                self._count(spent)
                if attempt:
                    self.log.info("processor_recovered", attempts=attempt)
                return out
            except ProcessorError as exc:
                info = exc.info()
                if self.health is not None:
                    self.health.error(info)
                if attempt >= len(RETRY_S):
                    self.log.error("processor_failed", error=info.message, attempts=attempt + 1)
                    raise PipelineFailed(
                        ErrorInfo(
                            kind="processor", retryable=False, message=f"{info.message} (failed {attempt + 1} times)"
                        )
                    ) from exc
                self.log.warning("processor_error", error=info.message, retry_in_s=RETRY_S[attempt])
                if exc.limit:
                    await loop.run_in_executor(self.pool, self._reset, exc.processor_id)
                if await sleep_or_stop(RETRY_S[attempt]):
                    raise asyncio.CancelledError from exc
                attempt += 1

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for p in self.processors:
            try:
                await loop.run_in_executor(self.pool, p.close)
            except Exception:  # noqa: BLE001 - closing a dead sandbox
                pass
        self.pool.shutdown(wait=False)
