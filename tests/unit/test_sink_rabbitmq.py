"""RabbitmqSink pure parts: error sorting, messages that hide secrets, no I/O in the constructor."""

from __future__ import annotations

import aiormq.exceptions as aexc
import pamqp.commands
import pytest

from shared.spec.model import RabbitmqSinkConfig
from worker import plugins
from worker.sinks.base import SinkContext
from worker.sinks.rabbitmq import RabbitmqSink, amqp_where


def sink() -> RabbitmqSink:
    return RabbitmqSink(
        RabbitmqSinkConfig(id="mq", url="amqp://u:s3cret@mq.local:5673/", exchange="cdc"), SinkContext("p", int)
    )


@pytest.mark.parametrize(
    "exc, retryable, text",
    [
        (aexc.ProbableAuthenticationError("ACCESS_REFUSED"), False, "credentials"),
        (aexc.ChannelNotFoundEntity("NOT_FOUND - no exchange 'cdc'"), False, "does not exist"),
        (aexc.ChannelAccessRefused("ACCESS_REFUSED"), False, "permission"),
        (aexc.ChannelPreconditionFailed("PRECONDITION_FAILED - size"), False, ": PRECONDITION_FAILED - size"),
        (aexc.ConnectionNotAllowed("NOT_ALLOWED - vhost"), False, "vhost"),
        (aexc.DeliveryError(None, pamqp.commands.Basic.Nack(delivery_tag=7)), True, "nack"),
        (TimeoutError(), True, "in time"),
        (aexc.AMQPConnectionError("CONNECTION_FORCED - broker forced connection closure"), True, "reconnect"),
        (ConnectionRefusedError(111, "refused"), True, "reconnect"),
        (aexc.ChannelInvalidStateError("channel closed"), True, "reopen"),
    ],
)
def test_classify(exc: BaseException, retryable: bool, text: str) -> None:
    err = sink().classify(exc)
    assert err.retryable is retryable and text in err.message, err.message
    assert err.message.startswith("sink 'mq': rabbitmq mq.local:5673") and "s3cret" not in err.message


def test_where_never_shows_the_password() -> None:
    assert amqp_where("amqp://guest:guest@127.0.0.1/") == "127.0.0.1:5672"


def test_constructor_does_no_io_and_registry_points_here() -> None:
    s = sink()
    assert s._conn is None and s._static_rk is None
    assert s._rk_of({"source": {"table": "orders"}}) == "orders"
    assert plugins.resolve(plugins.SINKS, "rabbitmq") is RabbitmqSink


def test_a_refusal_names_what_the_broker_said_and_no_guess() -> None:
    err = sink().classify(aexc.ChannelPreconditionFailed("PRECONDITION_FAILED - inequivalent arg 'durable'"))
    assert "inequivalent arg 'durable'" in err.message
    assert "max_message_size" not in err.message and " or " not in err.message
