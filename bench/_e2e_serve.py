"""The tidegate side of bench/bench_e2e.py: a real `tidegate serve` (tests/support/supervisor.py)
driven over its public HTTP API only, pipelines created or resumed with the request timed.

Imports: the standard library, tests.support.supervisor (a `tidegate serve` subprocess + httpx).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _e2e_util import ROOT, LineCounter, wait_lines

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.supervisor import Supervisor  # noqa: E402


@contextmanager
def serve(prefix: str) -> Iterator[tuple[Supervisor, Path]]:
    """A fresh `tidegate serve` in a temporary state dir, and that dir (for the sinks' files)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"tg-e2e-{prefix}-"))
    sup = Supervisor(tmp / "sup")
    try:
        sup.start()
        yield sup, tmp
    finally:
        sup.close()
        shutil.rmtree(tmp, ignore_errors=True)


def spec(name: str, source: dict[str, Any], out: Path, **extra: Any) -> dict[str, Any]:
    """A pipeline `source` -> file sink `out` at the spec's defaults; `extra` adds spec fields
    (`processors=[...]`, `batch={...}` only where a row says so)."""
    return {
        "metadata": {"name": name},
        "spec": {"source": source, "sinks": [{"type": "file", "config": {"id": "out", "path": str(out)}}], **extra},
    }


def failed_check(sup: Supervisor, name: str) -> Callable[[], None]:
    def check() -> None:
        info = sup.info(name)
        if info["status"] == "failed":
            raise SystemExit(f"pipeline {name} failed: {info['ops'].get('last_error')}\n{sup.log_tail(30)}")

    return check


def create_until(sup: Supervisor, doc: dict[str, Any], out: Path, n: int) -> float:
    """Seconds from `POST /pipelines` until `out` holds `n` lines."""
    name = doc["metadata"]["name"]
    t0 = time.perf_counter()
    r = sup.client.post("/pipelines", json=doc)
    if r.status_code != 201:
        raise SystemExit(f"POST /pipelines {name}: {r.status_code} {r.text}")
    return wait_lines(out, n, failed_check(sup, name)) - t0


def resume_until(sup: Supervisor, name: str, out: Path, n: int) -> float:
    """Seconds from `POST /pipelines/{name}/resume` until `out` holds `n` lines."""
    counter = LineCounter(out)
    counter.poll()
    t0 = time.perf_counter()
    sup.action(name, "resume")
    return wait_lines(out, n, failed_check(sup, name), counter=counter) - t0


def stop_after(sup: Supervisor, doc: dict[str, Any], out: Path, first: Callable[[], None]) -> None:
    """Create the pipeline, let `first()` make one change, wait for its line, stop: a checkpoint
    before the backlog, so that a resume starts from there."""
    name = doc["metadata"]["name"]
    sup.create(doc)
    sup.wait_status(name, "running", timeout=120)
    first()
    wait_lines(out, 1, failed_check(sup, name), timeout=120)
    sup.action(name, "stop")
    sup.wait_status(name, "stopped", timeout=120)


def delete(sup: Supervisor, name: str) -> None:
    r = sup.client.delete(f"/pipelines/{name}")
    if r.status_code not in (204, 404):
        print(f"DELETE {name}: {r.status_code} {r.text}", file=sys.stderr)
