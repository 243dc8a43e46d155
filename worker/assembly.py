"""Opening and closing a pipeline: `open_pipeline()` builds its parts (the source in a
`SourceSlot`, the processor chain, one runner per sink, the committer), opens every
sink (a retryable refusal never holds the start: that sink's runner keeps opening it
in the background, worker.delivery), takes the starting point (worker.commit:
checkpoints, committed position, skip-ahead gaps), opens the source at the committed
position, and hands them to `worker.pipeline.Pipeline`, which only runs the loops.
`Parts.close()` closes everything in order.

Imports: stdlib + shared + worker (never supervisor).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ConfigError, PipelineFailed, SinkError, SourceError, TidegateError, describe
from shared.spec.model import PipelineSpec, type_tag
from shared.store import LeaseLost
from worker import plugins
from worker.backoff import backoff, sleep_or_stop
from worker.checkpoints import Committer
from worker.commit import starting_point, waited_sinks
from worker.delivery import SinkRunner
from worker.health import Health
from worker.parking import Parker
from worker.processing import ProcessorChain
from worker.sinks.base import Sink, SinkContext
from worker.sources.base import Source, SourceContext


def make_source(spec: PipelineSpec, log: Any, state_dir: str, backfills: Any = None) -> Source:
    src = spec.spec.source
    cls = plugins.resolve(plugins.SOURCES, type_tag(src))
    ctx = SourceContext(
        pipeline=spec.metadata.name, log=log.bind(source=type_tag(src)), state_dir=state_dir, backfills=backfills
    )
    return cls(src.config, ctx)


@dataclass(frozen=True)
class Wiring:
    """What a pipeline's parts are built from and report to."""

    spec: PipelineSpec
    store: Any  # the state store (SQLite or PostgreSQL)
    store_pool: ThreadPoolExecutor  # the one thread the state store is used from
    log: Any
    state_dir: str
    gate: asyncio.Event  # set = running, clear = paused
    stopping: asyncio.Event
    health: Health
    on_lease_lost: Callable[[LeaseLost], None]
    backfills: Any = None  # worker.backfill.Backfills: the incremental snapshots

    @property
    def name(self) -> str:
        return self.spec.metadata.name

    async def run_store(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.store_pool, fn, *args)


class SourceSlot:
    """The pipeline's source: opened at a position with retries, a fresh instance after each
    failed attempt (a source's state derives from its position alone), reopened after a
    retryable read failure, acknowledged upstream at the committed position."""

    def __init__(self, w: Wiring) -> None:
        self.w = w
        self.current = make_source(w.spec, w.log, w.state_dir, w.backfills)
        self.key = self.current.position_key
        self.position_after = self.current.position_after

    async def open(self, position: str | None) -> None:
        attempt = 0
        while True:
            try:
                await self.current.open(position)
                return
            except (SourceError, OSError) as exc:
                info = describe(exc)
                await self._close_quietly()
                if isinstance(exc, SourceError) and not exc.retryable:
                    raise PipelineFailed(info) from exc
                self.w.health.error(info)
                self.w.log.warning("source_open_failed", error=info.message)
                await sleep_or_stop(self.w.stopping, backoff(attempt, 0.5, 10.0))
                attempt += 1
                if self.w.stopping.is_set():
                    raise asyncio.CancelledError from exc
                self.current = make_source(self.w.spec, self.w.log, self.w.state_dir, self.w.backfills)
            except ConfigError as exc:
                await self._close_quietly()
                raise PipelineFailed(exc.info()) from exc

    async def reopen(self, position: str | None) -> None:
        await self._close_quietly()
        await sleep_or_stop(self.w.stopping, backoff(0, 0.5, 10.0))
        self.current = make_source(self.w.spec, self.w.log, self.w.state_dir, self.w.backfills)
        await self.open(position)

    async def commit(self, position: str) -> None:
        if self.w.backfills is not None:
            self.w.backfills.commit(position)  # chunks committed: their progress becomes durable
        try:
            await self.current.commit(position)
        except Exception as exc:  # noqa: BLE001 - acknowledging upstream is retried at the next commit
            self.w.log.warning("source_commit_failed", error=str(exc))

    def stats(self) -> dict[str, Any]:
        try:
            return self.current.stats()
        except Exception:  # noqa: BLE001
            return {}

    async def _close_quietly(self) -> None:
        try:
            await self.current.close()
        except Exception as exc:  # noqa: BLE001
            self.w.log.warning("source_close_failed", error=str(exc))

    async def close(self, drop_state: bool) -> None:
        if drop_state:
            try:
                await self.current.drop()
            except Exception as exc:  # noqa: BLE001
                self.w.log.warning("source_drop_failed", error=str(exc))
        await self._close_quietly()


@dataclass
class Parts:
    source: SourceSlot
    chain: ProcessorChain
    commits: Committer
    parker: Parker
    runners: list[SinkRunner] = field(default_factory=list)

    async def close(self, log: Any, drop_source_state: bool = False) -> None:
        for r in self.runners:
            try:
                await r.sink.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("sink_close_failed", sink=r.id, error=str(exc))
        await self.source.close(drop_source_state)
        await self.chain.close()


async def open_pipeline(w: Wiring) -> Parts:
    """The pipeline's parts, open, at their starting point. On failure what was opened is closed."""
    body = w.spec.spec
    source = SourceSlot(w)
    chain = ProcessorChain(list(body.processors), w.name, w.log, w.health)
    commits = Committer(
        w.name,
        w.store,
        w.store_pool,
        body.commit_policy,
        body.batch.max_inflight,
        w.health,
        w.log,
        on_commit=source.commit,
        on_lease_lost=w.on_lease_lost,
    )
    parker = Parker(w.name, w.store, w.store_pool, body.dlq, w.health, w.log, w.stopping)
    parts = Parts(source, chain, commits, parker)
    try:
        parker.generation = await w.run_store(w.store.generation, w.name)
        try:
            await chain.open()
        except TidegateError as exc:
            raise PipelineFailed(exc.info()) from exc
        own = await _open_sinks(w, parts)
        stored = await w.run_store(w.store.checkpoints, w.name)
        heads = await w.run_store(w.store.heads, w.name)
        policy = body.commit_policy
        start = starting_point(
            policy.mode,
            policy.quorum,
            [(r.id, r.sink.config.required) for r in parts.runners],
            {sid: pos for sid, (pos, _at) in stored.items()},
            own,
            heads,
            source.position_after,
            source.key,
        )
        for r in parts.runners:
            r.checkpoint = start.checkpoints[r.id]
        for skip in start.skips:
            w.health.gap(skip.sink_id, skip.from_pos, skip.to_pos, False)
        commits.start(parts.runners, source.key)
        for skip in start.skips:
            commits.store_later(skip.sink_id, skip.to_pos)  # the skip is durable like a delivery
        if w.backfills is not None:  # active incremental snapshots resume from their durable progress
            w.backfills.load(await w.run_store(w.store.snapshots, w.name))
            w.backfills.key = source.key
        await source.open(commits.committed)
    except BaseException:
        await parts.close(w.log)
        raise
    return parts


async def _open_sinks(w: Wiring, parts: Parts) -> dict[str, str | None]:
    """One runner per sink, each sink opened once; their own checkpoints (None: none kept)."""
    own: dict[str, str | None] = {}
    specs = w.spec.spec.sinks
    key = parts.source.key
    epoch = await w.run_store(w.store.epoch, w.name)
    waited = waited_sinks(w.spec.spec.commit_policy.mode, [(s.config.id, s.config.required) for s in specs])
    for s in specs:
        cls = plugins.resolve(plugins.SINKS, type_tag(s))
        ctx = SinkContext(
            pipeline=w.name, position_key=key, log=w.log.bind(sink=s.config.id), state_dir=w.state_dir, epoch=epoch
        )
        sink = cls(s.config, ctx)
        opened, own[s.config.id] = await _try_open(sink, w)
        runner = SinkRunner(
            sink,
            waited=s.config.id in waited,
            key=key,
            gate=w.gate,
            checkpoint=None,
            on_delivered=parts.commits.on_delivered,
            committed=lambda: parts.commits.committed,
            health=w.health,
            log=w.log,
        )
        runner.opened = opened
        runner.parker = parts.parker
        parts.runners.append(runner)
    return own


async def _try_open(sink: Sink, w: Wiring) -> tuple[bool, str | None]:
    """Open a sink once. A retryable refusal never holds the start (CONTRACT 7): the pipeline
    starts, the reason is in ops.sink_errors, and the sink's runner keeps opening it in the
    background. A non-retryable one (bad config) fails the pipeline. A sink not opened yet
    starts from its stored checkpoint (its own, maybe further on, is taken when it opens): the
    committed position is never computed further on than what the sinks have."""
    try:
        return True, await sink.open()
    except SinkError as exc:
        if not exc.retryable:
            raise PipelineFailed(exc.info()) from exc
        msg = exc.message
    except OSError as exc:
        msg = f"sink '{sink.id}': cannot open: {exc.__class__.__name__}: {exc}"
    w.health.sink_error(sink.id, msg)
    w.log.warning("sink_open_failed", sink=sink.id, error=msg)
    return False, None
