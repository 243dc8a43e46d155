"""The mysql source's own binlog reader, the pure parts: packet framing (wire.Packets over a real socket
pair) and generated row decoders (rowcode) on DECIMAL of every shape, NULLs and column runs, held to
the values of columns.py's per-column decoders."""

from __future__ import annotations

import random
import socket
import threading
from decimal import Decimal
from types import SimpleNamespace

from pymysqlreplication.constants import FIELD_TYPE as T

from worker.sources.mysql.columns import column_decoder
from worker.sources.mysql.decode import change_events
from worker.sources.mysql.rowcode import compile_rows
from worker.sources.mysql.tablemap import Col
from worker.sources.mysql.wire import Packets

DIG2BYTES = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4]


def encode_decimal(text: str, precision: int, scale: int) -> bytes:
    """The binlog form of a DECIMAL(precision, scale) value (MySQL's decimal2bin)."""
    neg = text.startswith("-")
    ip, _, fp = text.lstrip("-").partition(".")
    ip, fp = ip.rjust(precision - scale, "0"), fp.ljust(scale, "0")
    ui, ci = divmod(precision - scale, 9)
    uf, cf = divmod(scale, 9)
    out = int(ip[:ci]).to_bytes(DIG2BYTES[ci], "big") if ci else b""
    out += b"".join(int(ip[ci + 9 * k : ci + 9 * k + 9]).to_bytes(4, "big") for k in range(ui))
    out += b"".join(int(fp[9 * k : 9 * k + 9]).to_bytes(4, "big") for k in range(uf))
    out += int(fp[9 * uf :]).to_bytes(DIG2BYTES[cf], "big") if cf else b""
    raw = bytearray(out)
    raw[0] ^= 0x80
    return bytes(x ^ 0xFF for x in raw) if neg else bytes(raw)


def col(t: int, name: str, nullable: bool = False, **attrs: object) -> Col:
    c = Col(t)
    c.name, c.nullable = name, nullable
    for k, v in attrs.items():
        setattr(c, k, v)
    return c


def test_decimal_of_every_precision_and_scale_as_columns_py_and_python() -> None:
    rnd = random.Random(17)
    for precision in range(1, 66):
        for scale in sorted({0, 1, 2, 9, 10, precision // 2, min(precision, 30)}):
            if scale > precision or scale > 30:
                continue
            c = col(T.NEWDECIMAL, "d", precision=precision, decimals=scale)
            rows = compile_rows([c], b"\x01", b"", "c", set())
            assert rows is not None
            old = column_decoder(c, False)
            assert old is not None
            for _ in range(6):
                digits = "".join(rnd.choice("0123456789") for _ in range(precision))
                text = (rnd.choice(["", "-"]) + digits[: precision - scale] + "." + digits[precision - scale :]).rstrip(
                    "."
                )
                data = b"\0" + encode_decimal(text, precision, scale)
                got = rows(data, 0, len(data))[0][1]["d"]
                assert got == old(data, 1)[0], (precision, scale, text)
                assert Decimal(got) == Decimal(text) and got.count(".") == (1 if scale else 0)
                assert len(got.rpartition(".")[2]) == scale or not scale


def test_nulls_runs_and_images_of_an_update() -> None:
    cols = [
        col(T.LONG, "id"),
        col(T.LONGLONG, "u", unsigned=True),
        col(T.SHORT, "s", nullable=True),
        col(T.VARCHAR, "v", nullable=True, max_length=40, character_set_name="utf8"),
        col(T.TINY, "t"),
        col(T.FLOAT, "f"),
    ]
    rows = compile_rows(cols, b"\x3f", b"\x3f", "u", set())
    assert rows is not None

    def image(s: int | None, v: str | None) -> bytes:
        nulls = (4 if s is None else 0) | (8 if v is None else 0)
        out = bytes([nulls]) + (7).to_bytes(4, "little", signed=True) + (2**64 - 1).to_bytes(8, "little")
        out += b"" if s is None else s.to_bytes(2, "little", signed=True)
        out += b"" if v is None else bytes([len(v.encode())]) + v.encode()
        return out + (-3).to_bytes(1, "little", signed=True) + bytes.fromhex("cdcc8c3f")  # 1.1 as float

    data = image(-2, None) + image(None, "é") + image(5, "x") + image(None, None)
    got = rows(data, 0, len(data))
    base = {"id": 7, "u": 2**64 - 1, "t": -3, "f": 1.1}
    assert got == [
        ({**base, "s": -2, "v": None}, {**base, "s": None, "v": "é"}),
        ({**base, "s": 5, "v": "x"}, {**base, "s": None, "v": None}),
    ]
    partial = compile_rows(cols, b"\x09", b"\x09", "d", set())  # only id and v present
    assert partial is not None and partial(b"\x02" + (1).to_bytes(4, "little"), 0, 5) == [({"id": 1, "v": None}, None)]


def test_events_made_in_one_pass_equal_change_events_of_the_pairs() -> None:
    cols = [col(T.LONG, "id"), col(T.VARCHAR, "v", nullable=True, max_length=10, character_set_name="utf8")]
    data = b"\x00" + (1).to_bytes(4, "little") + b"\x01x" + b"\x02" + (2).to_bytes(4, "little")
    for op, image2 in (("c", b""), ("d", b""), ("u", b"\x03")):
        pairs_of = compile_rows(cols, b"\x03", image2, op, set())
        assert pairs_of is not None
        body = data + data if op == "u" else data
        pairs = pairs_of(body, 0, len(body))
        ev = SimpleNamespace(op=op, timestamp=1700000000)
        for gtid in ("", "0-1-7"):
            one_pass = compile_rows(cols, b"\x03", image2, op, set(), ("db", "t", bool(gtid)))
            assert one_pass is not None
            got = one_pass(body, 0, len(body), 4, 123, 1700000000000, "f.000001:4:", "@x", "0-1-7", gtid)
            want = change_events(SimpleNamespace(db="db", name="t"), ev, pairs, 4, ("f.000001:4:", "@x", "0-1-7", gtid))  # type: ignore[arg-type]
            for e in want:
                e["ts_ms"] = 123
            assert got == want and [list(e["source"]) for e in got] == [list(e["source"]) for e in want]
            assert got[-1]["source"]["position"] == f"f.000001:4:{4 + len(pairs)}@x"


def test_unknown_column_types_and_missing_names_are_refused() -> None:
    assert compile_rows([col(T.GEOMETRY, "g", length_size=4)], b"\x01", b"", "c", set()) is None
    assert compile_rows([col(T.LONG, "")], b"\x01", b"", "c", set()) is None
    assert compile_rows([col(T.VARCHAR, "v", max_length=3)], b"\x01", b"", "c", set()) is None  # no charset


def test_packets_are_read_whole_and_joined_across_16_mb() -> None:
    a, b = socket.socketpair()
    big = bytes(range(256)) * (0xFFFFFF // 256 + 10)
    payloads = [b"\x00first", big[:0xFFFFFF] + big[0xFFFFFF:], b"", b"\xfe\x00\x00"]

    def frame(p: bytes) -> bytes:
        out, seq = b"", 0
        while True:
            part, p = p[:0xFFFFFF], p[0xFFFFFF:]
            out += len(part).to_bytes(3, "little") + bytes([seq]) + part
            seq += 1
            if len(part) < 0xFFFFFF:
                return out

    def write() -> None:
        b.sendall(b"".join(frame(p) for p in payloads))
        b.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        packets = Packets(a)
        assert [packets.next() for _ in payloads] == payloads
        writer.join()
    finally:
        a.close()
