"""Pure commit policy and checkpoint rules."""

from __future__ import annotations

from typing import Any

from worker.commit import (
    Skip,
    StartingPoint,
    committed_position,
    position_le,
    skip_delivered,
    starting_point,
    waited_sinks,
)

SINKS = [("a", True), ("b", False), ("c", True)]
K = int


def test_all_is_the_oldest_of_every_sink() -> None:
    assert committed_position("all", None, SINKS, {"a": "10", "b": "5", "c": "7"}, K) == "5"
    assert committed_position("all", None, SINKS, {"a": "10", "c": "7"}, K) is None


def test_required_ignores_best_effort() -> None:
    assert committed_position("required", None, SINKS, {"a": "10", "b": "1", "c": "7"}, K) == "7"
    assert committed_position("required", None, SINKS, {"a": "10", "b": "99"}, K) is None


def test_quorum_is_the_nth_most_advanced() -> None:
    cks = {"a": "10", "b": "5", "c": "7"}
    assert committed_position("quorum", 1, SINKS, cks, K) == "10"
    assert committed_position("quorum", 2, SINKS, cks, K) == "7"
    assert committed_position("quorum", 3, SINKS, cks, K) == "5"
    assert committed_position("quorum", 2, SINKS, {"a": "3"}, K) is None


def test_positions_order_by_key_not_text() -> None:
    assert committed_position("all", None, [("a", True), ("b", True)], {"a": "9", "b": "10"}, K) == "9"
    assert position_le("9", "10", K) and not position_le("10", "9", K)
    assert position_le(None, "1", K) and not position_le("1", None, K)


def test_waited_sinks() -> None:
    assert waited_sinks("all", SINKS) == {"a", "b", "c"}
    assert waited_sinks("required", SINKS) == {"a", "c"}
    assert waited_sinks("quorum", SINKS) == set()


def test_skip_delivered() -> None:
    evs = [{"source": {"position": str(i)}} for i in range(1, 6)] + [{"no": "position"}]
    assert [e.get("source", {}).get("position") for e in skip_delivered(evs, "3", K)] == ["4", "5", None]
    assert skip_delivered(evs, None, K) is evs


def _start(mode: str = "required", quorum: int | None = None, **kw: Any) -> StartingPoint:
    sinks = kw.pop("sinks", [("req", True), ("be", False)])
    return starting_point(
        mode,
        quorum,
        sinks,
        kw.pop("stored", {}),
        kw.pop("own", {}),
        kw.pop("heads", {}),
        kw.pop("position_after", lambda p: None),
        int,
    )


def test_a_sinks_own_checkpoint_wins_only_when_further_on() -> None:
    s = _start(stored={"req": "10", "be": "14"}, own={"req": "12", "be": "8"})
    assert s.checkpoints == {"req": "12", "be": "14"} and s.committed == "12" and s.skips == []


def test_nothing_stored_is_nothing_committed_and_no_skip() -> None:
    s = _start()
    assert s.checkpoints == {"req": None, "be": None} and s.committed is None and s.skips == []


def test_a_best_effort_sink_behind_skips_ahead_from_its_stored_head() -> None:
    s = _start(stored={"req": "20", "be": "5"}, heads={"be": "7"})
    assert s.skips == [Skip("be", "7", "20")]
    assert s.checkpoints["be"] == "20" and s.committed == "20"


def test_a_stale_head_is_not_trusted() -> None:
    for head in ("5", "3", "21"):  # at or before the sink's checkpoint, or past the committed position
        s = _start(stored={"req": "20", "be": "5"}, heads={"be": head}, position_after=lambda p: str(int(p or 0) + 1))
        assert s.skips == [Skip("be", "6", "20")], head


def test_without_head_or_position_after_the_old_form_names_the_checkpoint() -> None:
    assert _start(stored={"req": "20", "be": "5"}).skips == [Skip("be", "after 5", "20")]
    assert _start(stored={"req": "20"}).skips == [Skip("be", "start", "20")]


def test_a_waited_for_sink_never_skips_and_holds_the_committed_position() -> None:
    s = _start("all", stored={"req": "20", "be": "5"}, heads={"be": "6"})
    assert s.skips == [] and s.committed == "5" and s.checkpoints == {"req": "20", "be": "5"}


def test_quorum_skips_the_sinks_behind_the_nth_and_keeps_it() -> None:
    sinks = [("a", True), ("b", True), ("c", True)]
    s = _start("quorum", 2, sinks=sinks, stored={"a": "30", "b": "20", "c": "9"}, heads={"c": "10"})
    assert s.committed == "20" and s.skips == [Skip("c", "10", "20")]
    assert committed_position("quorum", 2, sinks, s.checkpoints, int) == "20"  # the skip moves nothing else
