"""`type: flatten`: separator, max_depth, lists, collisions (CONTRACT section 5)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shared.errors import ProcessorError
from tests.support.native import event, native

NESTED = {"id": 1, "addr": {"city": "Oslo", "geo": {"lat": 59.9, "lon": 10.7}}, "tags": ["a", {"k": 1}]}


def flat(row: dict[str, Any], **opts: Any) -> dict[str, Any]:
    evs = [event(1, "u", before=copy.deepcopy(row), after=row)]
    snapshot = copy.deepcopy(evs)
    (out,) = native({"type": "flatten", **opts}).apply(evs)
    assert evs == snapshot, "the input is never mutated"
    assert out["before"] == out["after"], "both images are flattened alike"
    assert out["source"] is evs[0]["source"] and out["op"] == "u"
    return out["after"]


def test_defaults_double_underscore_unlimited_lists_kept() -> None:
    assert flat(NESTED) == {
        "id": 1,
        "addr__city": "Oslo",
        "addr__geo__lat": 59.9,
        "addr__geo__lon": 10.7,
        "tags": ["a", {"k": 1}],
    }


def test_separator() -> None:
    assert flat({"a": {"b": 1}}, separator=".") == {"a.b": 1}


def test_max_depth() -> None:
    assert flat(NESTED, max_depth=1) == {
        "id": 1,
        "addr__city": "Oslo",
        "addr__geo": {"lat": 59.9, "lon": 10.7},
        "tags": ["a", {"k": 1}],
    }
    assert flat({"a": {"b": {"c": {"d": 1}}}}, max_depth=2) == {"a__b__c": {"d": 1}}


def test_lists_index_and_json() -> None:
    assert flat(NESTED, lists="index") == {
        "id": 1,
        "addr__city": "Oslo",
        "addr__geo__lat": 59.9,
        "addr__geo__lon": 10.7,
        "tags__0": "a",
        "tags__1__k": 1,
    }
    assert flat({"tags": ["a", {"k": 1}], "n": {"l": [1, 2]}}, lists="json") == {
        "tags": '["a",{"k":1}]',
        "n__l": "[1,2]",
    }
    assert flat({"l": [[1, 2], 3]}, lists="index", max_depth=1) == {"l__0": [1, 2], "l__1": 3}


def test_empty_objects_and_lists_stay_values() -> None:
    assert flat({"a": {}, "b": {"c": {}}, "l": []}, lists="index") == {"a": {}, "b__c": {}, "l": []}


def test_nothing_nested_reuses_the_event() -> None:
    evs = [event(1, after={"id": 1, "s": "x"}), event(2, "d", before={"id": 2}, after=None)]
    out = native({"type": "flatten"}).apply(evs)
    assert out[0] is evs[0] and out[1] is evs[1]


def test_a_collision_is_a_processor_error_never_an_overwrite() -> None:
    p = native({"type": "flatten", "id": "flat"})
    clash = event(7, after={"a__b": 1, "a": {"b": 2}})
    with pytest.raises(ProcessorError) as e:
        p.apply([event(1, after={"x": {"y": 1}}), clash])
    msg = str(e.value)
    assert msg.startswith("processor 'flat': event at position 7: flattening after gives key 'a__b' twice"), msg
    before_clash = event(8, "u", before={"a": {"b": 2}, "a__b": 1}, after={"ok": 1})
    with pytest.raises(ProcessorError, match="flattening before gives key 'a__b' twice"):
        p.apply([before_clash])
    index_clash = event(9, after={"l": ["x"], "l__0": "y"})
    with pytest.raises(ProcessorError, match="'l__0' twice"):
        native({"type": "flatten", "lists": "index"}).apply([index_clash])
    assert native({"type": "flatten", "separator": "."}).apply([clash])[0]["after"] == {"a__b": 1, "a.b": 2}
