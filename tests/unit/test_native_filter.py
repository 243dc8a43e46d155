"""`type: filter`: every condition and operator of CONTRACT section 5, and its edge cases."""

from __future__ import annotations

import copy
from typing import Any

from tests.support.native import event, native

MISSING = object()


def kept(doc: dict[str, Any], events: list[dict[str, Any]]) -> list[str]:
    """The positions of the events the filter lets through (and it never changes its input)."""
    before = copy.deepcopy(events)
    out = native({"type": "filter", **doc}).apply(events)
    assert events == before, "a native step never mutates the batch it is given"
    assert all(any(o is e for e in events) for o in out), "kept events are the same objects"
    return [e["source"]["position"] for e in out]


def where(cond: dict[str, Any], values: list[Any], path: str = "after.v") -> list[str]:
    """Events 1..n with after.v = each value (MISSING: no v column), through one condition."""
    evs = [event(i, after={} if v is MISSING else {"v": v}) for i, v in enumerate(values, 1)]
    return kept({"where": [{"path": path, **cond}]}, evs)


def test_no_condition_matches_everything_keep_and_drop() -> None:
    evs = [event(1), event(2, "u"), event(3, "d")]
    assert kept({}, evs) == ["1", "2", "3"]
    assert kept({"action": "drop"}, evs) == []


def test_ops() -> None:
    evs = [event(1, "c"), event(2, "u"), event(3, "d"), event(4, "r")]
    assert kept({"ops": ["u", "d"]}, evs) == ["2", "3"]
    assert kept({"ops": ["u", "d"], "action": "drop"}, evs) == ["1", "4"]


def test_tables_globs_db_and_schema_names() -> None:
    evs = [
        event(1, table="orders"),
        event(2, table="order_items"),
        event(3, table="users"),
        event(4, db="crm", schema=None, table="orders"),
        event(5, table="ordersX"),
    ]
    assert kept({"tables": ["shop.orders"]}, evs) == ["1"]
    assert kept({"tables": ["public.orders"]}, evs) == ["1"], "PostgreSQL: schema.table matches too"
    assert kept({"tables": ["*.orders"]}, evs) == ["1", "4"]
    assert kept({"tables": ["shop.order*"]}, evs) == ["1", "2", "5"]
    assert kept({"tables": ["shop.order?"]}, evs) == ["1"]
    assert kept({"tables": ["shop.orders?"]}, evs) == ["5"]
    assert kept({"tables": ["shop.users", "crm.*"]}, evs) == ["3", "4"]
    assert kept({"tables": ["*.*"], "action": "drop"}, evs) == []
    no_source = {"op": "c", "source": None, "before": None, "after": {}}
    assert native({"type": "filter", "tables": ["*.*"]}).apply([no_source]) == [], "no table, no match"


def test_all_conditions_must_match() -> None:
    evs = [
        event(1, "u", table="orders", after={"status": "paid"}),
        event(2, "c", table="orders", after={"status": "paid"}),
        event(3, "u", table="users", after={"status": "paid"}),
        event(4, "u", table="orders", after={"status": "new"}),
    ]
    doc = {"ops": ["u"], "tables": ["shop.orders"], "where": [{"path": "after.status", "eq": "paid"}]}
    assert kept(doc, evs) == ["1"]
    assert kept({**doc, "action": "drop"}, evs) == ["2", "3", "4"]


def test_eq_and_ne_are_json_equality() -> None:
    vals = ["paid", 1, 1.0, True, None, MISSING, {"a": 1}, [1]]
    assert where({"eq": "paid"}, vals) == ["1"]
    assert where({"eq": 1}, vals) == ["2", "3"], "1 == 1.0, but true is not 1"
    assert where({"eq": True}, vals) == ["4"]
    assert where({"eq": None}, vals) == ["5"], "null equals null, not a missing column"
    assert where({"eq": {"a": 1}}, vals) == ["7"]
    assert where({"eq": [1]}, vals) == ["8"]
    assert where({"ne": "paid"}, vals) == ["2", "3", "4", "5", "6", "7", "8"], "a missing path is not equal"


def test_in_and_not_in() -> None:
    vals = ["a", "b", 2, False, None, MISSING]
    assert where({"in": ["a", 2, None]}, vals) == ["1", "3", "5"]
    assert where({"in": [0]}, vals) == [], "false is not 0"
    assert where({"not_in": ["a", 2]}, vals) == ["2", "4", "5", "6"]


def test_ordering_numbers_and_numeric_strings() -> None:
    vals = [5, 10, 10.5, "12.50", "abc", None, MISSING, True]
    assert where({"gt": 10}, vals) == ["3", "4"]
    assert where({"gte": 10}, vals) == ["2", "3", "4"]
    assert where({"lt": 10}, vals) == ["1"]
    assert where({"lte": 10.5}, vals) == ["1", "2", "3"]


def test_ordering_iso_timestamps_and_epoch_ms() -> None:
    vals = [
        "2024-01-01T00:00:00Z",
        "2024-06-01T12:00:00+02:00",
        "2024-06-01T11:00:00",  # no offset: UTC, so after 10:00Z
        "2023-12-31",
        1717236000000,  # epoch ms of 2024-06-01T10:00:00Z
        "not a time",
        None,
    ]
    assert where({"gt": "2024-06-01T10:00:00Z"}, vals) == ["3"]
    assert where({"gte": "2024-06-01T10:00:00Z"}, vals) == ["2", "3", "5"]
    assert where({"lt": "2024-01-01"}, vals) == ["4"]
    assert where({"lte": "2024-01-01T00:00:00.000Z"}, vals) == ["1", "4"]
    assert kept({"where": [{"path": "ts_ms", "gt": "2024-11-28T00:00:00Z"}]}, [event(1)]) == ["1"]


def test_exists() -> None:
    vals = ["x", 0, "", None, MISSING]
    assert where({"exists": True}, vals) == ["1", "2", "3"], "null does not exist"
    assert where({"exists": False}, vals) == ["4", "5"]
    deleted = event(9, "d", before={"v": 1}, after=None)
    assert kept({"where": [{"path": "after.v", "exists": False}]}, [deleted]) == ["9"]


def test_regex_searches_strings_only() -> None:
    vals = ["alice@example.com", "bob@test.org", 42, None, MISSING]
    assert where({"regex": r"@example\.com$"}, vals) == ["1"]
    assert where({"regex": "^b"}, vals) == ["2"]
    assert where({"regex": "4"}, vals) == [], "a number is not a string"


def test_paths_go_anywhere_in_the_event() -> None:
    evs = [event(1, table="orders", after={"a": {"b": {"c": 3}}}), event(2, after={"a": "flat"})]
    assert kept({"where": [{"path": "source.table", "eq": "orders"}]}, evs) == ["1", "2"]
    assert kept({"where": [{"path": "after.a.b.c", "gte": 3}]}, evs) == ["1"]
    assert kept({"where": [{"path": "after.a.b.c", "exists": False}]}, evs) == ["2"], "through a non-object"
    assert kept({"where": [{"path": "op", "in": ["c"]}]}, evs) == ["1", "2"]


def test_changed_compares_before_and_after() -> None:
    evs = [
        event(1, "u", before={"id": 1, "status": "new"}, after={"id": 1, "status": "paid"}),
        event(2, "u", before={"id": 2, "status": "new"}, after={"id": 2, "status": "new"}),
        event(3, "u", before={"id": 3, "n": 1}, after={"id": 3, "n": 1.0}),
    ]
    assert kept({"where": [{"path": "after.status", "changed": True}]}, evs[:2]) == ["1"]
    assert kept({"where": [{"path": "before.status", "changed": False}]}, evs[:2]) == ["2"]
    assert kept({"where": [{"path": "after.n", "changed": True}]}, evs[2:]) == [], "1 and 1.0 are equal"


def test_changed_without_a_before_image_is_unknown() -> None:
    no_before = event(1, "u", before=None, after={"id": 1, "status": "paid"})
    keys_only = event(2, "u", before={"id": 2}, after={"id": 2, "status": "paid"})  # REPLICA IDENTITY DEFAULT
    insert = event(3, "c", after={"id": 3, "status": "new"})
    delete = event(4, "d", before={"id": 4, "status": "x"}, after=None)
    evs = [no_before, keys_only, insert, delete]
    changed = {"path": "after.status", "changed": True}
    assert kept({"where": [changed]}, evs) == ["1", "2", "3", "4"], "unknown counts as changed by default"
    assert kept({"where": [{**changed, "unknown_changed": True}]}, evs) == ["1", "2", "3", "4"]
    assert kept({"where": [{**changed, "unknown_changed": False}]}, evs) == []
    unchanged = {"path": "after.status", "changed": False}
    assert kept({"where": [unchanged]}, evs) == []
    assert kept({"where": [{**unchanged, "unknown_changed": False}]}, evs) == ["1", "2", "3", "4"]


def test_drop_noisy_updates_keeps_the_rest() -> None:
    """The common use: drop updates where only updated_at moved."""
    evs = [
        event(1, "u", before={"s": "a", "t": 1}, after={"s": "a", "t": 2}),
        event(2, "u", before={"s": "a", "t": 1}, after={"s": "b", "t": 2}),
        event(3, "c", after={"s": "a", "t": 1}),
    ]
    doc = {"action": "drop", "ops": ["u"], "where": [{"path": "after.s", "changed": False}]}
    assert kept(doc, evs) == ["2", "3"]


def test_conditions_on_one_image_read_it_once_and_a_missing_image_matches_as_missing_paths() -> None:
    conds = [
        {"path": "after.id", "ne": 5},
        {"path": "after.x", "exists": False},
        {"path": "after.y", "not_in": [1]},
        {"path": "after.id", "lte": 10},
    ]
    evs = [
        event(1, after={"id": 3}),
        event(2, after={"id": 5}),
        event(3, after={"id": 4, "x": 0}),
        event(4, after={"id": "7.5", "y": 2}),  # a numeric string compares as a number
        event(5, after={"id": 11}),
        event(6, after={"id": True}),  # a boolean is not a number
    ]
    assert kept({"where": conds}, evs) == ["1", "4"]
    assert native({"type": "filter", "where": conds}).run.source.count("e.get('after')") == 1
    gone = [event(7, "d", before={"id": 1}, after=None), {"op": "c", "source": {}, "after": "not an object"}]
    assert kept({"where": conds[:3]}, [*gone[:1], dict(gone[1], source={"position": "8"})]) == ["7", "8"]
    assert kept({"where": conds}, gone[:1]) == [], "lte on a missing path does not match"
    assert kept({"where": conds[:3], "action": "drop"}, evs) == ["2", "3"]


def test_exists_on_one_two_and_three_part_paths() -> None:
    evs = [
        event(1, after={"a": {"b": 1}}),
        event(2, after={"a": {"b": None}}),
        event(3, after={"a": None}),
        event(4, after=None),
    ]
    for path, present in (("after", ["1", "2", "3"]), ("after.a", ["1", "2"]), ("after.a.b", ["1"])):
        assert kept({"where": [{"path": path, "exists": True}]}, evs) == present
        assert kept({"where": [{"path": path, "exists": False}]}, evs) == [p for p in "1234" if p not in present]
