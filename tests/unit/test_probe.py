"""worker.probe.probe_source: one reading of a stopped pipeline's source health, never an
exception (the reading's `errors` says why)."""

from __future__ import annotations

import json
from pathlib import Path

from shared.spec.load import encode_spec, load_bytes
from tests.support import free_port
from worker.probe import probe_source


def spec(source: dict) -> bytes:
    sinks = [{"type": "stdout", "config": {"id": "o"}}]
    doc = {"metadata": {"name": "probe-p"}, "spec": {"source": source, "sinks": sinks}}
    return encode_spec(load_bytes(json.dumps(doc)))


def test_a_generator_has_nothing_to_report(tmp_path: Path) -> None:
    assert probe_source(spec({"type": "generator", "config": {}}), str(tmp_path)) == {}


def test_a_postgres_server_that_is_down_is_a_reading_that_says_why(tmp_path: Path) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?connect_timeout=2"
    got = probe_source(spec({"type": "postgres", "config": {"dsn": dsn, "tables": ["public.t"]}}), str(tmp_path))
    assert got["slot"] == "tidegate_probe_p" and got["retained_wal_bytes"] is None
    assert "slot" in got["errors"] and "Connection refused" in got["errors"]["slot"]


def test_a_mysql_server_that_is_down_is_a_reading_that_says_why(tmp_path: Path) -> None:
    dsn = f"mysql://root@127.0.0.1:{free_port()}/test"
    got = probe_source(spec({"type": "mysql", "config": {"dsn": dsn, "tables": ["test.t"]}}), str(tmp_path))
    assert got["behind_bytes"] is None and got["binlog_file"] is None and got["errors"]
