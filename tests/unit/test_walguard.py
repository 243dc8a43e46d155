"""The replication guard's pure parts (issue #14): byte sizes in a spec, the spec rules for
max_retained_wal / on_retained_wal (422 material with their paths), what a slot health reading
means (lost, over the limit), which best-effort sinks hold the committed position back, and
how a best-effort sink skips its whole backlog ahead (a gap, a write being retried abandoned)."""

from __future__ import annotations

import asyncio
import time

import pytest
import structlog

from shared.spec.load import SpecInvalid, load_bytes
from shared.spec.sizes import format_bytes, parse_bytes
from tests.support.health import Recording, batch
from tests.unit.test_delivery_backlog import Case
from worker.commit import holders
from worker.sources.postgres.health import slot_lost
from worker.sources.postgres.setup import classify
from worker.sources.postgres.setup import slot_lost as lost_error
from worker.walguard import WalGuard, assess


@pytest.mark.parametrize(
    ("given", "n"),
    [
        (4096, 4096),
        ("4096", 4096),
        ("1B", 1),
        ("10MiB", 10 * 1024**2),
        ("512MB", 512 * 1000**2),
        ("50GiB", 50 * 1024**3),
        ("1.5 GiB", 3 * 1024**3 // 2),
        ("2kb", 2000),
        ("1TiB", 1024**4),
        (" 7 mib ", 7 * 1024**2),
    ],
)
def test_byte_sizes(given: int | str, n: int) -> None:
    assert parse_bytes(given) == n


@pytest.mark.parametrize("bad", [0, -1, "0MB", "", "MB", "12 parsecs", "1e6", "-5MiB", "1,5GiB", True, 1.5])
def test_bad_byte_sizes_say_why(bad: object) -> None:
    with pytest.raises(ValueError, match="byte"):
        parse_bytes(bad)  # type: ignore[arg-type]


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (512, 1024, 1536 * 1024, 3 * 1024**3)] == ["512 B", "1 KiB", "1.5 MiB", "3 GiB"]


def _spec(extra: str) -> bytes:
    return (
        "metadata: {name: pg}\nspec:\n  source: {type: postgres, config: {dsn: 'postgresql://x/y'"
        + extra
        + "}}\n  sinks: [{type: file, config: {id: out, path: /tmp/x}}]\n"
    ).encode()


def test_spec_takes_max_retained_wal_as_int_or_unit_string() -> None:
    cfg = load_bytes(_spec(", max_retained_wal: 50GiB, on_retained_wal: pause_best_effort")).spec.source.config
    assert cfg.max_retained_wal == "50GiB" and cfg.on_retained_wal == "pause_best_effort"  # type: ignore[union-attr]
    cfg = load_bytes(_spec(", max_retained_wal: 1048576")).spec.source.config
    assert cfg.max_retained_wal == 1048576 and cfg.on_retained_wal == "warn"  # type: ignore[union-attr]
    assert load_bytes(_spec("")).spec.source.config.max_retained_wal is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("extra", "path", "words"),
    [
        (", max_retained_wal: 12 parsecs", "spec.source.config.max_retained_wal", "KiB"),
        (", max_retained_wal: 0", "spec.source.config.max_retained_wal", "at least 1 byte"),
        (", max_retained_wal: true", "spec.source.config.max_retained_wal", "boolean"),
        (", max_retained_wal: 1MiB, on_retained_wal: drop", "spec.source.config.on_retained_wal", "warn"),
        (", on_retained_wal: pause_best_effort", "spec.source.config.on_retained_wal", "needs max_retained_wal"),
    ],
)
def test_bad_retained_wal_settings_name_their_path(extra: str, path: str, words: str) -> None:
    with pytest.raises(SpecInvalid) as e:
        load_bytes(_spec(extra))
    errs = dict(e.value.errors)
    assert path in errs and words in errs[path], errs


# ------------------------------------------------------------------------------ slot readings
ROW = {
    "slot": "s1",
    "restart_lsn": "0/1500000",
    "retained_wal_bytes": 10,
    "wal_status": "reserved",
    "slot_active": True,
}


def test_a_lost_slot_is_told_apart_from_an_unread_one() -> None:
    assert slot_lost({**ROW, "restart_lsn": None, "wal_status": "lost", "retained_wal_bytes": None})
    assert slot_lost({**ROW, "restart_lsn": None, "wal_status": None})  # before PostgreSQL 13
    assert not slot_lost(ROW) and not slot_lost({**ROW, "wal_status": "unreserved"})
    unread = dict.fromkeys(ROW, None)
    assert not slot_lost(unread)  # before the first poll, or the query failed: nothing known
    assert not slot_lost({**unread, "slot": "s1", "errors": {"slot": "replication slot s1 does not exist"}})


def test_the_lost_error_names_the_slot_and_the_recovery_and_is_never_retried() -> None:
    err = lost_error("tidegate_orders", "orders")
    assert not err.retryable and err.kind == "source"
    for words in ("tidegate_orders", "wal_status=lost", "POST /pipelines/orders/stop",
                  "DELETE /pipelines/orders/checkpoints", "resume"):  # fmt: skip
        assert words in err.message
    # START_REPLICATION on an invalidated slot, as the server words it (15) and as 16+ does
    for text in ('cannot read from logical replication slot "s1"\nDETAIL:  This slot has been invalidated',
                 'can no longer get changes from replication slot "s1"'):  # fmt: skip
        got = classify(Exception(text), "s1", "orders")
        assert not got.retryable and "wal_status=lost" in got.message and "/pipelines/orders/" in got.message


def test_assess_warns_only_over_the_limit() -> None:
    assert not assess({**ROW, "retained_wal_bytes": 2 * 1024**2}, None).over
    assert not assess({**ROW, "retained_wal_bytes": 1024**2}, 1024**2).over  # at the limit: fine
    assert not assess({**ROW, "retained_wal_bytes": None}, 1).over  # unknown: no claim
    v = assess({**ROW, "retained_wal_bytes": 3 * 1024**2}, 1024**2)
    assert v.over and v.warning is not None and v.warning.kind == "source" and v.warning.retryable
    for words in ("s1", "3 MiB", "3145728 bytes", "max_retained_wal 1 MiB", "1048576 bytes", "warn"):
        assert words in v.warning.message
    v = assess({**ROW, "retained_wal_bytes": 3 * 1024**2}, 1024**2, "pause_best_effort")
    assert v.warning is not None and "pause_best_effort" in v.warning.message


# ------------------------------------------------------------------------------ who holds it
SINKS = [("file", True), ("http", False), ("cache", False)]


def test_under_required_or_all_no_best_effort_sink_holds_the_committed_position() -> None:
    ck = {"file": "100", "http": "10", "cache": "100"}
    assert holders("required", None, SINKS, ck, {"http": "100"}, int) == []
    assert holders("all", None, SINKS, ck, {}, int) == []  # `all` waits for every sink: none is best-effort
    assert holders("required", None, SINKS, {**ck, "http": None}, {"http": "100"}, int) == []


def test_a_quorum_is_held_by_the_sink_it_needs() -> None:
    ck = {"file": "100", "http": "10", "cache": "100"}
    assert holders("quorum", 3, SINKS, ck, {"http": "100"}, int) == ["http"]
    assert holders("quorum", 2, SINKS, ck, {"http": "100"}, int) == []  # two are there already
    both = {"file": "100", "http": "10", "cache": None}
    assert holders("quorum", 2, SINKS, both, {"http": "100", "cache": "100"}, int) == ["cache"]  # one is enough
    three = {"file": "10", "http": "10", "cache": "10"}
    lag = {"file": "50", "http": "60", "cache": "70"}
    assert holders("quorum", 3, SINKS, three, lag, int) == ["file", "http", "cache"]  # none alone: all together
    assert holders("quorum", 3, SINKS, ck, {"http": "10"}, int) == []  # given nothing newer: nothing to skip


# ------------------------------------------------------------------------------ skip ahead
def test_skip_ahead_drops_the_whole_backlog_as_one_gap_and_abandons_the_write() -> None:
    async def body() -> Case:
        case = Case(limit=100, committed="0")
        task = asyncio.create_task(case.r.run())
        try:
            case.submit(1, 2, 3)
            deadline = time.monotonic() + 5
            while case.r.writing != 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.002)
            assert case.r.skip_ahead() == "9"
            assert case.r.checkpoint == "9" and case.queued() == [] and case.r.queued_events == 0
            case.sink.permits.release()  # the write in flight returns: not checkpointed again
            case.submit(4)
            case.sink.permits.release()
            while case.delivered != [4]:
                assert time.monotonic() < deadline, case.delivered
                await asyncio.sleep(0.002)
            assert case.r.skip_ahead() is None  # nothing behind
        finally:
            task.cancel()
        return case

    case = asyncio.run(body())
    assert case.gaps == [("rec", "1", "9", False)]
    assert case.r.checkpoint == "12" and case.sink.calls == [[1], [4]]


def test_the_guard_fails_on_a_lost_slot_warns_and_clears() -> None:
    from shared.errors import PipelineFailed

    class Src:
        values = dict(ROW)
        lost = False

        def failed(self):  # noqa: ANN202
            return lost_error("s1", "p") if self.lost else None

        def stats(self):  # noqa: ANN202
            return self.values

    class Slot:
        current = Src()

        def stats(self):  # noqa: ANN202
            return self.current.stats()

    class Parts:
        source = Slot()

    class Spec:
        class spec:  # noqa: N801
            class source:  # noqa: N801
                class config:  # noqa: N801
                    max_retained_wal = "1KiB"
                    on_retained_wal = "warn"

    health = Recording()
    g = WalGuard(Spec, Parts, health, structlog.get_logger())
    g.check()
    assert health.last_error is None
    Parts.source.current.values = {**ROW, "retained_wal_bytes": 4096}
    g.check()
    assert health.last_error is not None and "max_retained_wal 1 KiB" in health.last_error.message
    Parts.source.current.values = dict(ROW)
    g.check()
    assert health.last_error is None
    Parts.source.current.lost = True
    with pytest.raises(PipelineFailed) as e:
        g.check()
    assert not e.value.info().retryable and "wal_status=lost" in e.value.info().message


_ = batch  # the factory the Case uses
