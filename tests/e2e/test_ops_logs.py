"""`tidegate serve --log-format json`: one JSON object per line from the
supervisor and from its workers (worker lines carry pipeline and pid), and no
secret from a spec (DSN/URL passwords, Authorization headers, ${VAR} secrets)
ever reaches the log, even in error messages."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import free_port, wait_until
from tests.support.supervisor import Supervisor, file_sink, generator_spec

SECRETS = ("UrlPw-5ecret", "HdrT0ken-5ecret", "PgPw-5ecret", "EnvPw-5ecret")


def parse_lines(text: str) -> list[dict]:
    out = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError(f"log line {i + 1} is not JSON: {line[:300]!r}") from None
        assert isinstance(obj, dict), line
        out.append(obj)
    return out


def test_json_logs_one_object_per_line_bound_and_redacted(tmp_path: Path) -> None:
    dead = free_port()
    web = {
        "type": "http",
        "config": {
            "id": "web",
            "required": False,
            "url": f"http://tg_ops:{SECRETS[0]}@127.0.0.1:{dead}/hook",
            "headers": {"Authorization": f"Bearer {SECRETS[1]}"},
        },
    }
    gen = generator_spec("logs-gen", [file_sink("out", tmp_path / "out.jsonl"), web], rate=500)
    pg = {
        "metadata": {"name": "logs-pg"},
        "spec": {
            "source": {
                "type": "postgres",
                "config": {
                    "dsn": f"postgresql://tg_ops:{SECRETS[2]}@127.0.0.1:{dead}/tg_ops?password=${{TG_OPS_PW}}",
                    "tables": ["public.t"],
                },
            },
            "sinks": [file_sink("out", tmp_path / "pg.jsonl")],
        },
    }
    with Supervisor(tmp_path, env={"TG_OPS_PW": SECRETS[3]}) as sup:
        sup.create(gen)
        sup.create(pg)
        sup.wait_position("logs-gen", "out", 200)
        # wait for the failures that put URLs and DSNs into error messages
        wait_until(
            lambda: '"sink": "web"' in sup.log_path.read_text() and sup.info("logs-pg")["ops"]["last_error"],
            timeout=30,
            message=lambda: f"sink and source errors logged; log:\n{sup.log_tail()}",
        )
        assert sup.stop() == 0
    text = sup.log_path.read_text()
    lines = parse_lines(text)
    for secret in SECRETS:
        assert secret not in text, f"secret {secret} leaked into the log"
    assert f"tg_ops:***@127.0.0.1:{dead}" in text  # the URL was logged, with its password masked
    for obj in lines:
        assert {"event", "level", "timestamp"} <= set(obj), obj
    sup_lines = [o for o in lines if o.get("component") in ("supervisor", "manager")]
    assert any(o["event"] == "supervisor_ready" for o in sup_lines)
    assert any(o["event"] == "supervisor_stopped" for o in sup_lines)
    worker = [o for o in lines if "component" not in o and "pipeline" in o]
    assert {o["pipeline"] for o in worker} >= {"logs-gen", "logs-pg"}, worker[:5]
    for o in worker:
        assert isinstance(o.get("pid"), int) and o["pid"] != sup.pid, o
    web_errors = [o for o in worker if o.get("sink") == "web"]
    assert web_errors and any("***" in json.dumps(o) for o in web_errors), web_errors[:3]
    # per worker, lines arrive in time order (one writer per process, line-buffered)
    for name in ("logs-gen", "logs-pg"):
        by_pid: dict[int, list[str]] = {}
        for o in worker:
            if o["pipeline"] == name:
                by_pid.setdefault(o["pid"], []).append(o["timestamp"])
        for stamps in by_pid.values():
            assert stamps == sorted(stamps)
