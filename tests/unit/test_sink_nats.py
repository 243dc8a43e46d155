"""NatsSink pure parts: subject wildcards, stream names, error sorting, no I/O in the constructor."""

from __future__ import annotations

import pytest
from nats import errors as nerr
from nats.js import errors as jerr

from shared.spec.model import NatsSinkConfig
from worker import plugins
from worker.sinks.base import SinkContext
from worker.sinks.nats import NatsSink, default_stream_name, nats_where, wildcard_subject


def test_wildcard_subject() -> None:
    assert wildcard_subject("cdc.${source.db}.${source.table}") == "cdc.*.*"
    assert wildcard_subject("cdc.t_${source.table}.${op}") == "cdc.*.*"
    assert wildcard_subject("cdc.events") == "cdc.events"


def test_default_stream_name_is_a_valid_stream_name() -> None:
    assert default_stream_name("orders-to-nats", "bus.1") == "TIDEGATE_orders-to-nats_bus_1"


def test_where_never_shows_credentials() -> None:
    assert nats_where("nats://u:pw@bus.local:4223") == "bus.local:4223"
    assert nats_where("nats://127.0.0.1") == "127.0.0.1:4222"


def sink() -> NatsSink:
    return NatsSink(NatsSinkConfig(id="bus", url="nats://10.255.255.1:1", subject="a.${op}"), SinkContext("p", int))


@pytest.mark.parametrize(
    "exc, retryable, text",
    [
        (nerr.MaxPayloadError(), False, "max_payload"),
        (nerr.AuthorizationError(), False, "credentials"),
        (nerr.Error("nats: 'Authorization Violation'"), False, "credentials"),
        (jerr.ServiceUnavailableError(code=503, description="JetStream not ready"), True, "unavailable"),
        (jerr.APIError(code=400, err_code=10060, description="expected stream does not match"), False, "10060"),
        (jerr.APIError(code=500, description="internal"), True, "internal"),
        (TimeoutError(), True, "in time"),
        (nerr.ConnectionClosedError(), True, "connection lost"),
        (nerr.OutboundBufferLimitError(), True, "connection lost"),
        (ConnectionRefusedError(111, "refused"), True, "refused"),
    ],
)
def test_classify(exc: BaseException, retryable: bool, text: str) -> None:
    err = sink().classify(exc)
    assert err.retryable is retryable and text in err.message
    assert err.message.startswith("sink 'bus': nats 10.255.255.1:1")


def test_constructor_does_no_io_and_registry_points_here() -> None:
    s = sink()
    assert s._nc is None and s._filter == "a.*"
    assert plugins.resolve(plugins.SINKS, "nats") is NatsSink
