"""packaging/systemd/tidegate.service: `systemd-analyze verify` accepts it with
no warning, and it carries the settings docs/service.md promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging" / "systemd" / "tidegate.service"
ENV_EXAMPLE = ROOT / "packaging" / "systemd" / "tidegate.env.example"


def directives() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_unit_has_the_promised_settings() -> None:
    d = directives()
    want = {
        "Type": "notify",
        "NotifyAccess": "main",
        "DynamicUser": "yes",
        "StateDirectory": "tidegate",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "Restart": "on-failure",
        "KillMode": "mixed",
        "EnvironmentFile": "-/etc/tidegate/tidegate.env",
    }
    for k, v in want.items():
        assert d.get(k) == [v], (k, d.get(k))
    assert d["WatchdogSec"] and d["TimeoutStopSec"]
    exec_start = d["ExecStart"][0]
    assert exec_start.startswith("/opt/tidegate/.venv/bin/tidegate serve ")
    assert "--config /etc/tidegate/pipelines" in exec_start and "--state-dir ${STATE_DIRECTORY}" in exec_start
    assert "--log-format json" in exec_start
    assert "TIDEGATE_API_TOKEN=" in ENV_EXAMPLE.read_text()


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd): the unit file was not verified")
    # verify checks that ExecStart exists: point it at this checkout's console script
    tidegate = Path(sys.executable).with_name("tidegate")
    unit = tmp_path / "tidegate.service"
    unit.write_text(UNIT.read_text().replace("/opt/tidegate/.venv/bin/tidegate", str(tidegate)))
    p = subprocess.run([exe, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and not p.stderr.strip() and not p.stdout.strip(), (p.returncode, p.stdout, p.stderr)
    # and it does flag a broken unit (so the check above means something)
    bad = tmp_path / "bad.service"
    bad.write_text(unit.read_text().replace("Type=notify", "Type=notfy"))
    p = subprocess.run([exe, "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "notfy" in p.stderr
