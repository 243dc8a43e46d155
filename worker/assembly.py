"""Opening and closing a pipeline: build the source (its plugin), open every sink
(a retryable refusal never holds the start: that sink's runner keeps opening it in
the background, worker.delivery), take the starting
checkpoints (the state store's, or a sink's own when it is further on; best-effort
sinks behind the committed position skip ahead, recorded as a gap), open the
source at the committed position (a fresh instance after each failed attempt),
and close everything in order. A mixin of `worker.pipeline.Pipeline`, whose
fields these are.

Imports: stdlib + shared + worker (never supervisor).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.errors import ConfigError, ErrorInfo, PipelineFailed, SinkError, SourceError, TidegateError, describe
from shared.spec.model import PipelineSpec, type_tag
from worker import plugins
from worker.backoff import backoff
from worker.checkpoints import Committer
from worker.commit import committed_position, position_le, waited_sinks
from worker.delivery import SinkRunner
from worker.processing import ProcessorChain
from worker.sinks.base import SinkContext
from worker.sources.base import Source, SourceContext


class Assembly:
    """Mixed into Pipeline."""

    spec: PipelineSpec
    name: str
    store: Any
    log: Any
    state_dir: str
    policy: Any
    gate: asyncio.Event
    stopping: asyncio.Event
    drop_source_state: bool
    source: Source | None
    chain: ProcessorChain
    runners: list[SinkRunner]
    key: Any
    store_pool: ThreadPoolExecutor
    commits: Committer
    sink_errors: dict[str, str]
    last_error: ErrorInfo | None
    _on_sink_error: Callable[[str, str | None], None]
    _on_gap: Callable[[str, str, str, bool], None]

    def _source(self) -> Source:
        src = self.spec.spec.source
        cls = plugins.resolve(plugins.SOURCES, type_tag(src))
        return cls(
            src.config,
            SourceContext(pipeline=self.name, log=self.log.bind(source=type_tag(src)), state_dir=self.state_dir),
        )

    async def _run_store(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.store_pool, fn, *args)

    async def _open_sinks(self) -> dict[str, str | None]:
        cls_key = self.key
        own: dict[str, str | None] = {}
        specs = self.spec.spec.sinks
        epoch = await self._run_store(self.store.epoch, self.name)
        waited = waited_sinks(self.policy.mode, [(s.config.id, s.config.required) for s in specs])
        for s in specs:
            cls = plugins.resolve(plugins.SINKS, type_tag(s))
            sink = cls(
                s.config,
                SinkContext(
                    pipeline=self.name,
                    position_key=cls_key,
                    log=self.log.bind(sink=s.config.id),
                    state_dir=self.state_dir,
                    epoch=epoch,
                ),
            )
            opened, own[s.config.id] = await self._try_open(sink)
            self.runners.append(
                SinkRunner(
                    sink,
                    waited=s.config.id in waited,
                    key=cls_key,
                    gate=self.gate,
                    checkpoint=None,
                    on_delivered=self.commits.on_delivered,
                    on_error=self._on_sink_error,
                    committed=lambda: self.commits.committed,
                    on_gap=self._on_gap,
                    log=self.log,
                )
            )
            self.runners[-1].opened = opened
        return own

    async def _try_open(self, sink: Any) -> tuple[bool, str | None]:
        """Open a sink once. A retryable refusal never holds the start (CONTRACT 7): the
        pipeline starts, the reason is in ops.sink_errors, and the sink's runner keeps
        opening it in the background. A non-retryable one (bad config) fails the pipeline.
        A sink not opened yet starts from its stored checkpoint (its own, maybe further on,
        is taken when it opens): the committed position is never computed further on than
        what the sinks have."""
        try:
            return True, await sink.open()
        except SinkError as exc:
            if not exc.retryable:
                raise PipelineFailed(exc.info()) from exc
            msg = exc.message
        except OSError as exc:
            msg = f"sink '{sink.id}': cannot open: {exc.__class__.__name__}: {exc}"
        self.sink_errors[sink.id] = msg
        self.last_error = ErrorInfo(kind="sink", message=msg, retryable=True)
        self.log.warning("sink_open_failed", sink=sink.id, error=msg)
        return False, None

    async def _sleep_or_stop(self, seconds: float) -> bool:
        """Sleep, cut short by a stop; True when stopping."""
        try:
            async with asyncio.timeout(seconds):
                await self.stopping.wait()
        except TimeoutError:
            pass
        return self.stopping.is_set()

    async def build(self) -> None:
        self.source = self._source()
        self.key = self.source.position_key
        try:
            await self.chain.open()
        except TidegateError as exc:
            raise PipelineFailed(exc.info()) from exc
        own = await self._open_sinks()
        stored = await self._run_store(self.store.checkpoints, self.name)
        for r in self.runners:
            ck = stored.get(r.id, (None, ""))[0]
            mine = own.get(r.id)
            if mine is not None and not position_le(mine, ck, self.key):
                ck = mine
            r.checkpoint = ck
        committed = committed_position(
            self.policy.mode,
            self.policy.quorum,
            [(r.id, r.sink.config.required) for r in self.runners],
            {r.id: r.checkpoint for r in self.runners},
            self.key,
        )
        heads = await self._run_store(self.store.heads, self.name)
        skipped = self._skip_ahead(committed, heads)
        self.commits.start(self.runners, self.key)
        for sid in skipped:
            self.commits.store_later(sid, committed)
        await self._open_source()

    def _skip_ahead(self, committed: str | None, heads: dict[str, str]) -> list[str]:
        """Best-effort sinks behind the committed position skip ahead, never silently; the
        ids of those that did.

        The skipped events (after the sink's checkpoint, up to `committed`) were read by an
        earlier worker, not this one: the source resumes after `committed`. The gap is
        recorded at once as {from: the first skipped event's own position, to: `committed`}
        (inclusive). `from` is the sink's stored head (the first event the earlier worker gave
        it and it never acknowledged, stored with the checkpoints that moved past it), or, for a
        state dir without one, the position the source names (`Source.position_after`)."""
        if committed is None:
            return []
        skipped = []
        for r in self.runners:
            if r.waited or position_le(committed, r.checkpoint, self.key):
                continue
            assert self.source is not None
            first: str | None = heads.get(r.id)
            if first is not None and (
                position_le(first, r.checkpoint, self.key) or not position_le(first, committed, self.key)
            ):
                first = None  # stale: from before the sink's checkpoint moved
            if first is None:
                first = self.source.position_after(r.checkpoint)
            if first is None:
                first = f"after {r.checkpoint}" if r.checkpoint else "start"
            self._on_gap(r.id, first, committed, False)
            r.checkpoint = committed
            skipped.append(r.id)
        return skipped

    async def _open_source(self) -> None:
        """Open `self.source` at the committed position; after a failed attempt a fresh
        instance is built (a source's state derives from its position alone)."""
        attempt = 0
        while True:
            assert self.source is not None
            try:
                await self.source.open(self.commits.committed)
                return
            except (SourceError, OSError) as exc:
                info = describe(exc)
                await self._close_quietly(self.source)
                if isinstance(exc, SourceError) and not exc.retryable:
                    raise PipelineFailed(info) from exc
                self.last_error = info
                self.log.warning("source_open_failed", error=info.message)
                await self._sleep_or_stop(backoff(attempt, 0.5, 10.0))
                attempt += 1
                if self.stopping.is_set():
                    raise asyncio.CancelledError from exc
                self.source = self._source()
            except ConfigError as exc:
                await self._close_quietly(self.source)
                raise PipelineFailed(exc.info()) from exc

    async def _close_quietly(self, source: Source) -> None:
        try:
            await source.close()
        except Exception as exc:  # noqa: BLE001
            self.log.warning("source_close_failed", error=str(exc))

    async def close(self) -> None:
        for r in self.runners:
            try:
                await r.sink.close()
            except Exception as exc:  # noqa: BLE001
                self.log.warning("sink_close_failed", sink=r.id, error=str(exc))
        if self.source is not None:
            if self.drop_source_state:
                try:
                    await self.source.drop()
                except Exception as exc:  # noqa: BLE001
                    self.log.warning("source_drop_failed", error=str(exc))
            await self._close_quietly(self.source)
        await self.chain.close()
        self.store_pool.shutdown(wait=True)
