"""The chaos rig: the private servers, the sinks' endpoints, a real `tidegate serve` and the
pipelines it runs.

- gen-http:    generator -> file `out` (required) + http `web` (best-effort, small backlog)
- pg-redis:    private PostgreSQL (the writer's table) -> file `out` + redis `cache` (both
               required; the redis goes through a TCP proxy that faults can cut or stall)
- gen-js-nats: generator -> JavaScript -> NATS JetStream `bus` (the shared server, a stream of
               its own; left out when NATS is not reachable)
- gen-quorum:  generator -> file `a`, file `b`, http `c`; commit policy quorum 2
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from tests.chaos import writer as w
from tests.integration.test_pg_source_resume import PrivateCluster
from tests.support import port_open
from tests.support.httpserver import RecordingServer
from tests.support.redisserver import PrivateRedis
from tests.support.supervisor import Supervisor, file_sink
from tests.support.tcpproxy import TcpProxy

NATS_URL = "nats://127.0.0.1:4222"
HEARTBEAT_TIMEOUT_S = 4
JS_CODE = (
    "export function process(batch) {\n  for (const e of batch) e.after.js = e.after.id * 2;\n  return batch;\n}\n"
)


def _gen(rate: int) -> dict[str, Any]:
    return {"type": "generator", "config": {"rate": rate, "payload_bytes": 40, "tables": ["chaos.a", "chaos.b"]}}


def _http(sid: str, url: str, required: bool) -> dict[str, Any]:
    return {"type": "http", "config": {"id": sid, "url": url, "required": required, "backlog_events": 300}}


async def _nats(fn: Any) -> Any:
    import nats

    nc = await nats.connect(NATS_URL, connect_timeout=5, max_reconnect_attempts=3)
    try:
        return await fn(nc.jetstream())
    finally:
        await nc.close()


class Rig:
    def __init__(self, workdir: Path, seed: int) -> None:
        self.dir, self.seed = Path(workdir), seed
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_id = uuid.uuid4().hex[:12]
        self.pg = PrivateCluster()
        self.redis = PrivateRedis()
        self.proxy: TcpProxy | None = None
        self.web = RecordingServer()
        self.qweb = RecordingServer()
        self.nats_stream: str | None = None
        env = {"TIDEGATE_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S)}
        self.sup = Supervisor(self.dir / "sup", env=env)
        self.writer: w.ChaosWriter | None = None

    # ------------------------------------------------------------------ set-up
    def start(self) -> None:
        self.pg.start()
        w.prepare(self.pg.dsn)
        self.redis.start()
        self.proxy = TcpProxy(self.redis.port).start()
        for server in (self.web.start(), self.qweb.start()):
            assert server._server is not None  # a client killed mid-request is no news here
            server._server.handle_error = lambda *a: None  # type: ignore[method-assign]
        if port_open("127.0.0.1", 4222):
            self.nats_stream = f"tg_chaos_{self.run_id}"
            stream = self.nats_stream

            async def add(j: Any) -> None:
                await j.add_stream(name=stream, subjects=[f"{stream}.>"], storage="file")

            asyncio.run(_nats(add))
        self.sup.start()
        for spec in self.specs():
            self.sup.create(spec)
        self.writer = w.ChaosWriter(self.pg.dsn, self.seed)

    def path(self, name: str, sid: str) -> Path:
        return self.dir / f"{name}.{sid}.jsonl"

    def specs(self) -> list[dict[str, Any]]:
        assert self.proxy is not None
        batch = {"max_events": 50, "max_ms": 50}
        out = [
            {
                "metadata": {"name": "gen-http"},
                "spec": {
                    "source": _gen(150),
                    "sinks": [file_sink("out", self.path("gen-http", "out")), _http("web", self.web.url, False)],
                    "batch": batch,
                },
            },
            {
                "metadata": {"name": "pg-redis"},
                "spec": {
                    "source": {
                        "type": "postgres",
                        "config": {
                            "dsn": self.pg.dsn,
                            "tables": [w.TABLE],
                            "snapshot": "initial",
                            "snapshot_chunk": 500,
                        },
                    },
                    "sinks": [
                        file_sink("out", self.path("pg-redis", "out")),
                        {
                            "type": "redis",
                            "config": {
                                "id": "cache",
                                "url": f"redis://127.0.0.1:{self.proxy.port}/0",
                                "stream": "chaos",
                            },
                        },
                    ],
                    "batch": {"max_events": 200, "max_ms": 50},
                },
            },
            {
                "metadata": {"name": "gen-quorum"},
                "spec": {
                    "source": _gen(150),
                    "sinks": [
                        file_sink("a", self.path("gen-quorum", "a")),
                        file_sink("b", self.path("gen-quorum", "b")),
                        _http("c", self.qweb.url, True),
                    ],
                    "batch": batch,
                    "commit_policy": {"mode": "quorum", "quorum": 2},
                },
            },
        ]
        if self.nats_stream:
            out.append(self._nats_spec(self.nats_stream, batch))
        return out

    @staticmethod
    def _nats_spec(stream: str, batch: dict[str, Any]) -> dict[str, Any]:
        nats_sink = {"type": "nats", "config": {"id": "bus", "url": NATS_URL, "subject": f"{stream}.ev"}}
        return {
            "metadata": {"name": "gen-js-nats"},
            "spec": {
                "source": _gen(100),
                "processors": [{"type": "javascript", "id": "double", "inline": JS_CODE}],
                "sinks": [nats_sink],
                "batch": batch,
            },
        }

    def pipelines(self) -> list[str]:
        return [s["metadata"]["name"] for s in self.specs()]

    # ------------------------------------------------------------------ reading back
    def redis_events(self) -> list[dict[str, Any]]:
        import json

        import redis

        r = redis.Redis(port=self.redis.port)
        out = [json.loads(fields[b"event"]) for _id, fields in r.xrange("chaos")]
        r.close()
        return out

    def nats_events(self) -> list[dict[str, Any]]:
        import msgspec

        stream = self.nats_stream
        if stream is None:
            return []

        async def read(j: Any) -> list[Any]:
            total = (await j.stream_info(stream)).state.messages
            sub = await j.subscribe(f"{stream}.>", ordered_consumer=True, stream=stream)
            got = [msgspec.json.decode((await sub.next_msg(timeout=10)).data) for _ in range(total)]
            await sub.unsubscribe()
            return got

        return list(asyncio.run(_nats(read)))

    # ------------------------------------------------------------------ tear-down
    def close(self) -> None:
        if self.writer is not None:
            self.writer.stop.set()
        self.sup.close()
        for fn in (self.web.stop, self.qweb.stop, self.redis.close, self.pg.close):
            try:
                fn()
            except Exception:  # noqa: BLE001 - best effort at tear-down
                pass
        if self.proxy is not None:
            self.proxy.close()
        if self.nats_stream:
            stream = self.nats_stream

            async def drop(j: Any) -> None:
                await j.delete_stream(stream)

            try:
                asyncio.run(_nats(drop))
            except Exception:  # noqa: BLE001
                pass
