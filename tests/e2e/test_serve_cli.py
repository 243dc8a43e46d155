"""`tidegate serve --config` (+ SIGHUP reload), `tidegate validate`, `tidegate version`,
worker process titles."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support import wait_until
from tests.support.supervisor import ROOT, Supervisor, file_sink, generator_spec

CLI = [sys.executable, "-m", "supervisor.cli"]


def write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def test_validate_and_version(tmp_path: Path) -> None:
    good = write(tmp_path / "good.yaml", generator_spec("good", [file_sink("o", "/tmp/x")]))
    bad = write(
        tmp_path / "bad.yaml",
        {
            "metadata": {"name": "bad"},
            "spec": {
                "source": {"type": "generator"},
                "sinks": [{"type": "file", "config": {"id": "o", "path": "/x"}}],
                "batch": {"max_events": 0},
            },
        },
    )
    r = subprocess.run([*CLI, "validate", str(good)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([*CLI, "validate", str(good), str(bad)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1
    assert "spec.batch.max_events: must be >= 1" in r.stdout
    r = subprocess.run(
        [*CLI, "validate", str(ROOT / "specs"), str(ROOT / "specs" / "examples")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(": ok") >= 5, "the demo and every example spec are valid"
    r = subprocess.run([*CLI, "version"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("tidegate ")


def test_config_at_start_and_sighup_reload(tmp_path: Path) -> None:
    cfg = tmp_path / "specs"
    cfg.mkdir()
    write(cfg / "one.yaml", generator_spec("one", [file_sink("o", tmp_path / "one.jsonl")], rate=100))
    with Supervisor(tmp_path, configs=[str(cfg)]) as sup:
        info = sup.wait_status("one", "running")
        pid = info["ops"]["pid"]
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
        assert title.startswith(b"tidegate: pipeline one"), title
        # change one, add another, then SIGHUP
        doc = generator_spec("one", [file_sink("o", tmp_path / "one.jsonl")], rate=100)
        doc["spec"]["batch"] = {"max_events": 5}
        write(cfg / "one.yaml", doc)
        write(cfg / "two.json", generator_spec("two", [file_sink("o", tmp_path / "two.jsonl")], rate=100))
        assert sup.proc is not None
        sup.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: sup.client.get("/pipelines/two").status_code == 200, message="two created by SIGHUP")
        wait_until(lambda: sup.info("one")["spec"]["spec"]["batch"]["max_events"] == 5, message="one updated")
        sup.wait_status("two", "running")
        wait_until(lambda: sup.info("one")["ops"]["pid"] not in (None, pid), message="one restarted with new spec")
    # an invalid config file stops the start with the error named
    write(cfg / "three.yaml", {"metadata": {"name": "three"}, "spec": {"sinks": []}})
    r = subprocess.run(
        [
            *CLI,
            "serve",
            "--config",
            str(cfg),
            "--state-dir",
            str(tmp_path / "s2"),
            "--api-addr",
            "127.0.0.1:1",
            "--log-format",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert "spec.source" in r.stderr and "three.yaml" in r.stderr
