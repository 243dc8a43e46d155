"""`type: mask`: redact, hash (HMAC-SHA256 hex), truncate; globs; missing paths (CONTRACT section 5)."""

from __future__ import annotations

import copy
import hashlib
import hmac
from typing import Any

from tests.support.native import event, native

ROW = {"id": 7, "email": "ann@example.com", "card_no": "4111111111111111", "card_cvv": "123", "note": None}


def masked(doc: dict[str, Any], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    snapshot = copy.deepcopy(events)
    out = native({"type": "mask", **doc}).apply(events)
    assert events == snapshot, "the input is never mutated"
    return out


def hexmac(key: str, data: bytes) -> str:
    return hmac.new(key.encode(), data, hashlib.sha256).hexdigest()


def test_redact_is_the_default_action() -> None:
    (out,) = masked({"fields": ["after.email"]}, [event(1, after=dict(ROW))])
    assert out["after"] == dict(ROW, email="***")


def test_glob_on_the_last_part_and_both_images() -> None:
    e = event(1, "u", before=dict(ROW), after=dict(ROW))
    (out,) = masked({"fields": ["after.card_*", "before.card_?vv"]}, [e])
    assert out["after"] == dict(ROW, card_no="***", card_cvv="***")
    assert out["before"] == dict(ROW, card_cvv="***")


def test_hash_is_hmac_sha256_hex_stable_across_runs() -> None:
    doc = {"fields": ["after.email", "after.id", "after.meta"], "action": "hash", "key": "s3cret"}
    row = dict(ROW, meta={"a": 1})
    (one,) = masked(doc, [event(1, after=row)])
    (two,) = masked(doc, [event(2, after=dict(row))])  # a fresh processor: another run
    assert one["after"]["email"] == hexmac("s3cret", b"ann@example.com") == two["after"]["email"]
    assert one["after"]["id"] == hexmac("s3cret", b"7"), "a number hashes its JSON text"
    assert one["after"]["meta"] == hexmac("s3cret", b'{"a":1}')
    assert masked({**doc, "key": "other"}, [event(1, after=row)])[0]["after"]["email"] != one["after"]["email"]


def test_truncate_keeps_length_characters_of_strings() -> None:
    doc = {"fields": ["after.*"], "action": "truncate", "length": 3}
    (out,) = masked(doc, [event(1, after=dict(ROW, word="ab", city="Zürich"))])
    assert out["after"] == {
        "id": 7,
        "email": "ann",
        "card_no": "411",
        "card_cvv": "123",
        "note": None,
        "word": "ab",
        "city": "Zür",
    }
    assert masked({**doc, "length": 0}, [event(1, after={"s": "abc"})])[0]["after"] == {"s": ""}


def test_null_stays_null_and_a_missing_path_is_left_alone() -> None:
    e = event(1, after=dict(ROW))
    for action in ({"action": "redact"}, {"action": "hash", "key": "k"}, {"action": "truncate", "length": 1}):
        out = masked({"fields": ["after.note", "after.nope", "before.email", "after.email.deeper"], **action}, [e])
        assert out[0] is e, f"nothing to mask: the very same event ({action})"
    deleted = event(2, "d", before=dict(ROW), after=None)
    (out,) = masked({"fields": ["after.email", "before.email"]}, [deleted])
    assert out["after"] is None and out["before"]["email"] == "***"


def test_nested_paths_copy_only_what_they_change() -> None:
    e = event(1, after={"id": 1, "profile": {"ssn": "123-45", "name": "Ann"}, "other": {"x": 1}})
    (out,) = masked({"fields": ["after.profile.ssn", "source.db"]}, [e])
    assert out["after"]["profile"] == {"ssn": "***", "name": "Ann"}
    assert out["source"]["db"] == "***"
    assert out["after"]["other"] is e["after"]["other"], "untouched parts are shared"
    assert out["ts_ms"] == e["ts_ms"]


def test_a_whole_object_and_a_field_inside_it() -> None:
    e = event(1, after={"profile": {"ssn": "1", "name": "Ann"}})
    (out,) = masked({"fields": ["after.profile", "after.profile.ssn"]}, [e])
    assert out["after"]["profile"] == "***"


def test_the_fast_hmac_is_hmac_sha256() -> None:
    from worker.processors.mask import hmac_sha256_hex

    for key in (b"", b"k", b"x" * 64, b"y" * 65, "clé".encode() * 40):
        for msg in (b"", b"ann@example.com", b"z" * 1000):
            assert hmac_sha256_hex(key)(msg) == hmac.new(key, msg, hashlib.sha256).hexdigest()


def test_image_column_fields_copy_only_the_events_and_images_they_change() -> None:
    """The common shape (`<image>.<column or glob>`, compiled into one function)."""
    first = event(1, "u", before=dict(ROW), after=dict(ROW))
    events = [first, event(2, after={"id": 2, "note": None}), event(3, "d", before=dict(ROW), after=None)]
    for action in ({"action": "redact"}, {"action": "hash", "key": "k"}, {"action": "truncate", "length": 1}):
        for fields in (["after.email", "after.note", "after.nope"], ["after.e*", "after.no?e", "after.zz*"]):
            out = masked({"fields": fields, **action}, events)
            assert out[1] is events[1] and out[2] is events[2], f"nothing to mask: the same event ({action})"
            assert out[0] is not first and out[0]["after"]["email"] != ROW["email"]
            assert out[0]["before"] is first["before"] and out[0]["source"] is first["source"]
            assert out[0]["after"]["note"] is None and "nope" not in out[0]["after"]
    twice = native({"type": "mask", "fields": ["after.email"]})
    once = twice.apply([first])
    assert twice.apply(once)[0] is once[0], "a redacted value is not redacted again"


def test_globs_decide_once_per_column_name_with_a_bounded_cache() -> None:
    p = native({"type": "mask", "fields": ["after.x_*", "after.id"]})
    rows = [{"id": i, f"x_{i}": "secret", f"y_{i}": "kept"} for i in range(10050)]
    out = p.apply([event(i, after=r) for i, r in enumerate(rows)])
    assert all(o["after"] == {"id": "***", f"x_{i}": "***", f"y_{i}": "kept"} for i, o in enumerate(out))
