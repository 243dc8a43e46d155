"""schemathesis against a live supervisor's /openapi.json: no 5xx, no response
that violates the documented schema, auth enforced, 405 with Allow.

The same file is the schemathesis hooks module (loaded by `st` through
SCHEMATHESIS_HOOKS when TG_ST_SANDBOX is set): generated pipeline specs are run
for real by the supervisor, so the hook keeps them harmless without changing
their validity: file sink paths go under the test's temp dir, every network
endpoint points at a closed loopback port, generators are throttled and events
kept small. Only values that are already valid are replaced, and only by valid
values of the same type, so a negative case stays negative.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DEAD = "127.0.0.1:9"  # discard port: nothing listens on loopback
ENDPOINTS = {"dsn": f"postgresql://tg_ops_st:x@{DEAD}/none", "url": f"http://{DEAD}/", "brokers": DEAD}
URL_BY_SINK = {
    "redis": f"redis://{DEAD}/0",
    "nats": f"nats://{DEAD}",
    "rabbitmq": f"amqp://guest:guest@{DEAD}/",
    "http": f"http://{DEAD}/",
}


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _sandbox_config(cfg: dict[str, Any], kind: Any, out_dir: str) -> None:
    for key, safe in ENDPOINTS.items():
        if isinstance(cfg.get(key), str) and cfg[key]:
            cfg[key] = URL_BY_SINK.get(kind, safe) if key == "url" and isinstance(kind, str) else safe
    if isinstance(kind, str) and kind in URL_BY_SINK and "url" not in cfg:
        cfg["url"] = URL_BY_SINK[kind]
    if isinstance(cfg.get("path"), str) and cfg["path"]:
        cfg["path"] = os.path.join(out_dir, hashlib.sha1(cfg["path"].encode()).hexdigest()[:12] + ".jsonl")


def sandbox(doc: Any, out_dir: str) -> Any:
    """Make a generated spec document (or merge patch) harmless to run; see the module docstring."""
    body = doc.get("spec") if isinstance(doc, dict) else None
    if not isinstance(body, dict):
        return doc
    src = body.get("source")
    if isinstance(src, dict):
        if src.get("type") == "generator" and "config" not in src:
            src["config"] = {}
        cfg = src.get("config")
        if isinstance(cfg, dict):
            _sandbox_config(cfg, None, out_dir)
            if src.get("type") == "generator":
                rate = cfg.get("rate", 0)
                if _num(rate) and (rate == 0 or rate > 20):
                    cfg["rate"] = 20.0
                for key, cap in (("payload_bytes", 200), ("tx_size", 50)):
                    if isinstance(cfg.get(key), int) and not isinstance(cfg[key], bool) and cfg[key] > cap:
                        cfg[key] = cap
    sinks = body.get("sinks")
    for sink in sinks if isinstance(sinks, list) else []:
        if isinstance(sink, dict) and isinstance(sink.get("config"), dict):
            _sandbox_config(sink["config"], sink.get("type"), out_dir)
    return doc


if os.environ.get("TG_ST_SANDBOX"):  # loaded by `st` as its hooks module
    import schemathesis

    if os.environ.get("TG_ST_HOOK") == "case":
        # the coverage phase applies case hooks only (not map_body)
        @schemathesis.hook
        def map_case(context: Any, case: Any) -> Any:
            if isinstance(case.body, dict):
                case.body = sandbox(case.body, os.environ["TG_ST_SANDBOX"])
            return case
    else:
        # fuzzing: a body hook (a map_case hook makes hypothesis generation ~20x slower)
        @schemathesis.hook
        def map_body(context: Any, body: Any) -> Any:
            return sandbox(body, os.environ["TG_ST_SANDBOX"])


ST_CONFIG = """
# The JSON Schema of a spec cannot say everything the API checks (quorum <= number
# of sinks, unique sink/processor ids, JavaScript that compiles, ${VAR} set): a
# schema-valid body may get 422 with field paths, and a name taken by an earlier
# case 409.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

# The DLQ of a generated pipeline is empty: 404 is the right answer for every entry id.
[[operations]]
include-operation-id = "getDlqEntry"
warnings = false
# Incremental snapshots: no pipeline the fuzzer can make has a source that supports them (every
# database endpoint is a dead port), so each schema-valid request is answered 404, 409 or 422 by
# design; the checks still run, only the "mostly rejected" and "no test data" notes are left out.
[[operations]]
include-path-regex = '^/pipelines/.+/snapshots'
warnings = ["missing_auth", "base_url_mismatch", "missing_deserializer", "unsupported_regex", "method_not_allowed"]
"""


# a hang guard, not a speed check: on a loaded 2-core machine one phase took over 2 minutes
@pytest.mark.timeout(900)
def test_schemathesis_no_5xx_no_schema_violation(tmp_path: Path, monkeypatch: Any) -> None:
    from tests.support import supervisor as supmod
    from tests.support.supervisor import Supervisor

    token = "st-" + os.urandom(6).hex()
    out_dir = tmp_path / "sinks"
    run_dir = tmp_path / "cwd"
    out_dir.mkdir()
    run_dir.mkdir()
    monkeypatch.setattr(supmod, "ROOT", run_dir)  # a relative path can only land in the temp dir
    (tmp_path / "st.toml").write_text(ST_CONFIG)
    st = str(Path(sys.executable).with_name("st"))
    with Supervisor(tmp_path, token=token) as sup:
        runs = []
        for phase, hook, examples in (("coverage", "case", 1), ("fuzzing", "body", 15)):
            env = dict(os.environ, SCHEMATHESIS_HOOKS=__file__, TG_ST_SANDBOX=str(out_dir), TG_ST_HOOK=hook)
            cmd = [
                st,
                "--config-file",
                str(tmp_path / "st.toml"),
                "run",
                f"{sup.url}/openapi.json",
                "-H",
                f"Authorization: Bearer {token}",
                "--checks",
                "all",
                "--phases",
                phase,
                "--max-examples",
                str(examples),
                "--seed",
                "20261129",
                "--generation-database",
                "none",
                "--workers",
                "1",
                "--no-color",
                "--max-failures",
                "20",
                "--request-timeout",
                "40",
                "--suppress-health-check",
                "all",
            ]
            runs.append(
                (phase, subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=420))
            )
        # what the fuzzer created must not outlive the test
        for p in sup.client.get("/pipelines").json():
            sup.client.delete(f"/pipelines/{p['name']}")
        assert sup.client.get("/healthz").status_code == 200
        log = sup.log_tail(30)
    for phase, proc in runs:
        assert proc.returncode == 0, (
            f"schemathesis ({phase}) found problems:\n{proc.stdout[-12000:]}\n"
            f"{proc.stderr[-3000:]}\nsupervisor log tail:\n{log}"
        )
        assert "No issues found" in proc.stdout, proc.stdout[-3000:]
    assert not list(run_dir.iterdir()), "a generated spec wrote into the supervisor's working directory"
