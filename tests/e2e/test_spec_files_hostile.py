"""Spec files through `tidegate validate`, `serve --config` and SIGHUP reload: every
invalid or hostile file is one line per problem naming the file and the field, exit 1
(validate) or 2 (serve), never a traceback and never a hang (issue 10, items 2-4)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_hostile_bodies import BOMB
from tests.support import wait_until
from tests.support.supervisor import ROOT, TIDEGATE, Supervisor, file_sink, generator_spec

GOOD = generator_spec("good", [file_sink("o", "/tmp/tidegate-good.jsonl")])


def validate(*paths: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TIDEGATE, "validate", *map(str, paths)], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def with_name(name: object) -> bytes:
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    doc["metadata"]["name"] = name
    return yaml.safe_dump(doc).encode()


CASES: list[tuple[str, bytes, str]] = [
    ("empty-name.yaml", with_name(""), "metadata.name: must match ^[a-z0-9]"),
    ("int-name.yaml", with_name(5), "metadata.name: expected a string, got an integer"),
    ("null-name.yaml", with_name(None), "metadata.name: expected a string, got null"),
    ("list-name.yaml", with_name([1]), "metadata.name: expected a string, got an array"),
    ("top-list.json", b"[1, 2]", "$: a pipeline spec must be an object, got an array"),
    ("top-null.json", b"null", "$: a pipeline spec must be an object, got null"),
    ("top-string.yaml", b"just text\n", "$: a pipeline spec must be an object, got a string"),
    ("empty.yaml", b"", "empty document"),
    ("binary.json", bytes(range(256)) * 4, "not UTF-8"),
    ("latin1.yaml", b"metadata: {name: caf\xe9}\n", "not UTF-8"),
    ("deep.json", b"[" * 100_000 + b"]" * 100_000, "nesting deeper than 64 levels"),
    ("deep.yaml", b"a: " + b"{a: " * 100_000 + b"1" + b"}" * 100_000, "nesting deeper than 64 levels"),
    ("bomb.yaml", BOMB, "YAML aliases (*a) are not allowed"),
    ("tag.yaml", b"metadata: !!python/object/apply:os.getcwd []\n", "YAML tag tag:yaml.org,2002:python/object"),
    ("dup.yaml", b"metadata: {name: a}\nmetadata: {name: b}\n", "duplicate key 'metadata'"),
    ("big.json", b'{"spec": {"batch": {"max_ms": 1e400}}}', "number 1e400 is out of range"),
    ("huge-int.yaml", b"spec: {batch: {max_ms: " + b"9" * 5000 + b"}}\n", "Exceeds the limit"),
    ("int64.json", b'{"spec": {"batch": {"max_ms": %d}}}' % 2**70, "spec.batch.max_ms: integer out of range"),
]


@pytest.mark.parametrize("name,content,expected", CASES, ids=[c[0] for c in CASES])
def test_validate_names_the_problem_without_a_traceback(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    f = tmp_path / name
    f.write_bytes(content)
    r = validate(f)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert f"{f}: " in r.stdout and expected in r.stdout, r.stdout + r.stderr


def test_validate_missing_file_directory_and_good_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    assert validate(good).returncode == 0
    r = validate(tmp_path / "missing.yaml", good)
    assert r.returncode == 1 and "missing.yaml: No such file or directory" in r.stdout and f"{good}: ok" in r.stdout
    d = tmp_path / "specs"
    d.mkdir()
    (d / "bomb.yaml").write_bytes(BOMB)
    (d / "empty-name.yaml").write_bytes(with_name(""))
    r = validate(d)
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr
    assert "bomb.yaml: YAML aliases" in r.stdout and "empty-name.yaml: metadata.name: must match" in r.stdout


def test_validate_alias_bomb_answers_at_once(tmp_path: Path) -> None:
    f = tmp_path / "bomb.yaml"
    f.write_bytes(
        b"metadata: {name: bomb}\nspec:\n  labels:\n" + b"".join(b"    " + ln + b"\n" for ln in BOMB.split(b"\n"))
    )
    t0 = time.monotonic()
    r = validate(f, timeout=60)
    assert r.returncode == 1 and "YAML aliases" in r.stdout, r.stdout + r.stderr
    assert time.monotonic() - t0 < 30  # minutes (and gigabytes) before


def test_serve_config_and_sighup_refuse_hostile_files(tmp_path: Path) -> None:
    cfg = tmp_path / "specs"
    cfg.mkdir()
    (cfg / "bomb.yaml").write_bytes(BOMB)
    r = subprocess.run(
        [*TIDEGATE, "serve", "--config", str(cfg), "--state-dir", str(tmp_path / "s1"), "--api-addr", "127.0.0.1:1"]
        + ["--log-format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "bomb.yaml: YAML aliases" in r.stderr and "Traceback" not in r.stderr, r.stderr
    (cfg / "bomb.yaml").unlink()
    (cfg / "good.yaml").write_text(yaml.safe_dump(GOOD))
    with Supervisor(tmp_path, configs=[str(cfg)]) as sup:
        sup.wait_status("good", "running")
        (cfg / "bomb.yaml").write_bytes(BOMB)
        (cfg / "deep.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
        (cfg / "empty-name.yaml").write_bytes(with_name(""))
        assert sup.proc is not None
        sup.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: all(
                s in sup.log_tail(200) for s in ("YAML aliases", "nesting deeper", "metadata.name: must match")
            ),
            timeout=30,
            message="SIGHUP reload names every bad file",
        )
        assert sup.client.get("/healthz", timeout=5).status_code == 200
        assert sup.info("good")["status"] == "running"
        assert "Traceback" not in sup.log_tail(400)
