"""RedisSink pure parts: error sorting, messages that hide secrets, no I/O in the constructor."""

from __future__ import annotations

import pytest
from redis import exceptions as rexc

from shared.spec.model import RedisSinkConfig
from worker import plugins
from worker.sinks.base import SinkContext
from worker.sinks.redis import RedisSink, classify, redis_where


@pytest.mark.parametrize(
    "exc, retryable",
    [
        (rexc.AuthenticationError("invalid username-password pair"), False),
        (rexc.ResponseError("WRONGPASS invalid username-password pair"), False),
        (rexc.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), False),
        (rexc.ResponseError("NOPERM this user has no permissions"), False),
        (rexc.DataError("Invalid input of type: 'dict'"), False),
        (rexc.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."), True),
        (rexc.TimeoutError("Timeout reading from socket"), True),
        (TimeoutError(), True),
        (ConnectionResetError("reset by peer"), True),
        (rexc.BusyLoadingError("Redis is loading the dataset in memory"), True),
        (rexc.ResponseError("OOM command not allowed when used memory > 'maxmemory'"), True),
        (rexc.ResponseError("READONLY You can't write against a read only replica."), True),
    ],
)
def test_classify(exc: BaseException, retryable: bool) -> None:
    err = classify("cache", "127.0.0.1:6379", exc)
    assert err.retryable is retryable
    assert err.message.startswith("sink 'cache': redis 127.0.0.1:6379")


def test_where_never_shows_the_password() -> None:
    assert redis_where("redis://user:s3cret@cache.local:6380/2") == "cache.local:6380"
    assert redis_where("redis://127.0.0.1") == "127.0.0.1:6379"


def test_constructor_does_no_io_and_registry_points_here() -> None:
    cfg = RedisSinkConfig(id="cache", url="redis://10.255.255.1:1/0", stream="s_${source.table}")
    sink = RedisSink(cfg, SinkContext("p", int))
    assert sink._client is None and sink._static_stream is None
    assert sink._stream_of({"source": {"table": "orders"}}) == "s_orders"
    assert plugins.resolve(plugins.SINKS, "redis") is RedisSink
