"""The ops CLI (`.venv/bin/tidegate get|apply|pause|resume|stop|restart|delete`)
round-trips against a live supervisor with a token, with the documented exit
codes: 0 ok, 1 error, 3 not found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support import free_port
from tests.support.supervisor import Supervisor

TOKEN = "tg-cli-" + "c0ffee" * 4
TIDEGATE = str(Path(sys.executable).with_name("tidegate"))


@pytest.fixture(scope="module")
def sup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisor]:
    s = Supervisor(tmp_path_factory.mktemp("cli"), token=TOKEN)
    s.start()
    try:
        yield s
    finally:
        s.close()


def tg(
    sup: Supervisor | None, *args: str, token: str | None = TOKEN, stdin: str | None = None, server: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
    if token is not None:
        env["TIDEGATE_API_TOKEN"] = token
    env["TIDEGATE_SERVER"] = server or (sup.url if sup else "http://127.0.0.1:1")
    return subprocess.run([TIDEGATE, *args], env=env, capture_output=True, text=True, timeout=60, input=stdin)


def ok(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p.stdout


SPEC_YAML = """\
metadata:
  name: cli-demo
  labels: {team: ops}
spec:
  source: {type: generator, config: {rate: 500}}
  processors:
    - type: javascript
      id: keep
      inline: "export function process(b) { return b; }"
  sinks:
    - type: file
      config: {id: out, path: "OUT"}
"""


def test_apply_get_pause_resume_stop_restart_delete(sup: Supervisor, tmp_path: Path) -> None:
    spec = tmp_path / "cli-demo.yaml"
    spec.write_text(SPEC_YAML.replace("OUT", str(tmp_path / "out.jsonl")))

    assert ok(tg(sup, "apply", "-f", str(spec))).strip() == "pipeline/cli-demo created"
    assert ok(tg(sup, "apply", "-f", str(spec))).strip() == "pipeline/cli-demo unchanged"
    sup.wait_status("cli-demo", "running")
    pid = sup.info("cli-demo")["ops"]["pid"]

    info = json.loads(ok(tg(sup, "get", "cli-demo", "-o", "json")))
    assert info["name"] == "cli-demo" and info["spec"]["spec"]["processors"][0]["id"] == "keep"
    listed = yaml.safe_load(ok(tg(sup, "get", "-o", "yaml")))
    assert [p["name"] for p in listed] == ["cli-demo"]
    table = ok(tg(sup, "get"))
    assert table.splitlines()[0].split()[:2] == ["NAME", "STATUS"] and "cli-demo" in table
    assert "cli-demo" in ok(tg(sup, "get", "-l", "team=ops"))
    assert "cli-demo" not in ok(tg(sup, "get", "-l", "team=other"))

    # update with the full document, as JSON this time: the processor and the label are gone
    doc = yaml.safe_load(spec.read_text())
    del doc["spec"]["processors"]
    doc["metadata"]["labels"] = {"tier": "gold"}
    doc["spec"]["batch"] = {"max_events": 100}
    spec_json = tmp_path / "cli-demo.json"
    spec_json.write_text(json.dumps(doc))
    assert ok(tg(sup, "apply", "-f", str(spec_json))).strip() == "pipeline/cli-demo configured"
    info = sup.info("cli-demo")
    assert info["spec"]["spec"]["processors"] == []
    assert info["spec"]["metadata"]["labels"] == {"tier": "gold"}
    assert info["spec"]["spec"]["batch"]["max_events"] == 100
    sup.wait_status("cli-demo", "running")
    assert sup.info("cli-demo")["ops"]["pid"] != pid  # the worker restarted with the new spec
    # apply from stdin, -o json prints the PipeInfo
    out = json.loads(ok(tg(sup, "apply", "-f", "-", "-o", "json", stdin=spec_json.read_text())))
    assert out["name"] == "cli-demo"

    assert ok(tg(sup, "pause", "cli-demo")).strip() == "pipeline/cli-demo paused"
    assert ok(tg(sup, "pause", "cli-demo")).strip() == "pipeline/cli-demo paused"  # idempotent
    assert ok(tg(sup, "resume", "cli-demo")).strip() == "pipeline/cli-demo running"
    assert ok(tg(sup, "stop", "cli-demo")).strip() == "pipeline/cli-demo stopped"
    assert sup.info("cli-demo")["status"] == "stopped"
    assert json.loads(ok(tg(sup, "restart", "cli-demo", "-o", "json")))["status"] in ("starting", "running")
    sup.wait_status("cli-demo", "running")
    assert ok(tg(sup, "delete", "cli-demo")).strip() == "pipeline/cli-demo deleted"

    for args in (("get", "cli-demo"), ("delete", "cli-demo"), ("pause", "cli-demo"), ("restart", "cli-demo")):
        p = tg(sup, *args)
        assert p.returncode == 3, (args, p.returncode, p.stderr)
        assert "not_found" in p.stderr and "cli-demo" in p.stderr


def test_error_exit_codes(sup: Supervisor, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "metadata: {name: cli-bad}\nspec:\n  source: {type: generator}\n  sinks: []\n  batch: {max_events: 0}\n"
    )
    p = tg(sup, "apply", "-f", str(bad))
    assert p.returncode == 1 and "invalid_spec" in p.stderr
    assert "spec.batch.max_events" in p.stderr and "spec.sinks" in p.stderr  # every error with its path
    p = tg(sup, "apply", "-f", str(tmp_path / "missing.yaml"))
    assert p.returncode == 1 and "cannot read" in p.stderr
    (tmp_path / "broken.yaml").write_text("metadata: {name: [\n")
    assert tg(sup, "apply", "-f", str(tmp_path / "broken.yaml")).returncode == 1
    p = tg(sup, "get", token=None)
    assert p.returncode == 1 and "unauthorized" in p.stderr and "TIDEGATE_API_TOKEN" in p.stderr
    assert tg(sup, "get", token="wrong").returncode == 1
    p = tg(None, "get", server=f"http://127.0.0.1:{free_port()}")
    assert p.returncode == 1 and "cannot reach tidegate" in p.stderr
    assert tg(sup, "pause").returncode == 1  # usage error: NAME missing
    assert tg(sup, "get", "--server", sup.url).returncode == 0  # --server beats the environment
