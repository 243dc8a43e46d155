"""Text output of PostgreSQL types -> JSON values (pgoutput bytes and snapshot strings alike)."""

from __future__ import annotations

from worker.sources.postgres.values import Types, parse_array

ROWS = [  # oid, typelem, typbasetype, typcategory, typdelim (as pg_type has them)
    (16, 0, 0, "B", ","),
    (17, 0, 0, "U", ","),
    (20, 0, 0, "N", ","),
    (23, 0, 0, "N", ","),
    (25, 0, 0, "S", ","),
    (114, 0, 0, "U", ","),
    (701, 0, 0, "N", ","),
    (1007, 23, 0, "A", ","),
    (1009, 25, 0, "A", ","),
    (1001, 17, 0, "A", ","),
    (3807, 3802, 0, "A", ","),
    (3802, 0, 0, "U", ","),
    (1184, 0, 0, "D", ","),
    (1114, 0, 0, "D", ","),
    (1700, 0, 0, "N", ","),
    (1082, 0, 0, "D", ","),
    (90001, 0, 23, "N", ","),  # a domain over int4
    (1020, 603, 0, "A", ";"),  # box[]: semicolon-delimited, stays text
]
T = Types(ROWS)


def conv(oid: int, text: str) -> object:
    b, s = T.bytes_conv(oid)(text.encode()), T.str_conv(oid)(text)
    assert b == s, (oid, text, b, s)
    return b


def test_scalars() -> None:
    assert conv(23, "42") == 42 and conv(20, "-9223372036854775808") == -(2**63)
    assert conv(16, "t") is True and conv(16, "f") is False
    assert conv(1700, "12345678901234567890.000000001") == "12345678901234567890.000000001"
    assert conv(701, "1.5") == 1.5 and conv(701, "NaN") == "NaN" and conv(701, "-Infinity") == "-Infinity"
    assert conv(25, "héllo") == "héllo"
    assert conv(114, '{"a": [1, null]}') == {"a": [1, None]}
    assert conv(3802, "[1, 2]") == [1, 2]
    assert conv(17, "\\x0102ff") == "AQL/"
    assert conv(90001, "7") == 7  # domain -> base type
    assert conv(424242, "whatever") == "whatever"  # unknown type -> string


def test_times_are_iso_8601() -> None:
    assert conv(1184, "2024-01-02 03:04:05.123456+00") == "2024-01-02T03:04:05.123456Z"
    assert conv(1184, "2024-01-02 03:04:05+05:30") == "2024-01-02T03:04:05+05:30"
    assert conv(1184, "2024-01-02 03:04:05-07") == "2024-01-02T03:04:05-07:00"
    assert conv(1184, "infinity") == "infinity"
    assert conv(1114, "2024-01-02 03:04:05") == "2024-01-02T03:04:05"
    assert conv(1082, "2024-01-02") == "2024-01-02"


def test_bool_cast_form_in_snapshot_strings() -> None:
    assert T.str_conv(16)("true") is True


def test_arrays() -> None:
    assert conv(1007, "{1,2,NULL}") == [1, 2, None]
    assert conv(1007, "{{1,2},{3,4}}") == [[1, 2], [3, 4]]
    assert conv(1007, "{}") == []
    assert conv(1007, "[0:1]={5,6}") == [5, 6]
    assert conv(1009, '{"a b","q\\"uote","back\\\\slash",NULL,"NULL",plain}') == [
        "a b",
        'q"uote',
        "back\\slash",
        None,
        "NULL",
        "plain",
    ]
    assert conv(1001, '{"\\\\x01ff"}') == ["Af8="]
    assert conv(3807, '{"{\\"k\\": 1}"}') == [{"k": 1}]
    assert conv(1020, "{(1,1),(0,0);(2,2),(1,1)}") == "{(1,1),(0,0);(2,2),(1,1)}"


def test_parse_array_with_custom_element_conv() -> None:
    assert parse_array("{a,{b,c}}", str.upper) == ["A", ["B", "C"]]
