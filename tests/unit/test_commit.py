"""Pure commit policy and checkpoint rules."""

from __future__ import annotations

from worker.commit import committed_position, position_le, skip_delivered, waited_sinks

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
