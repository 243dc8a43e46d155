"""Why the sandbox is a child process: what a busy worker or a runaway script cannot do to it.

- CPU burnt by other threads of the worker does not count against a script's cpu_ms
  (in-process, quickjs's set_time_limit counts the whole process's CPU).
- A runaway processor does not stall another processor of the same worker process.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator

import pytest
import structlog

from shared.errors import ProcessorError
from shared.spec.model import JavascriptProcessorSpec as JsSpec
from shared.spec.model import Limits
from worker.processors.base import ProcessorContext
from worker.processors.javascript import JavascriptProcessor

BATCH = json.dumps([{"op": "c", "after": {"id": i}} for i in range(100)]).encode()


def make(code: str, id: str, **limits: int) -> JavascriptProcessor:
    proc = JavascriptProcessor(
        JsSpec(id=id, inline=code, limits=Limits(**limits)),
        ProcessorContext(pipeline="tg-js-iso", log=structlog.get_logger()),
    )
    proc.open()
    return proc


@pytest.fixture
def burners() -> Iterator[None]:
    """Two threads hashing (hashlib drops the GIL): the worker process burns 2 cores of CPU."""
    stop = threading.Event()
    data = b"x" * (1 << 20)

    def burn() -> None:
        while not stop.is_set():
            hashlib.sha256(data).digest()

    threads = [threading.Thread(target=burn, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    yield
    stop.set()
    for t in threads:
        t.join()


def test_other_threads_cpu_does_not_count_against_cpu_ms(burners: None) -> None:
    # ~100-200 ms of CPU for the script itself; 2 busy threads would add ~2x that to process CPU.
    p = make(
        "export function process(batch) {\n  let x = 0;\n"
        "  for (let i = 0; i < 3e6; i++) x = (x * 31 + i) % 1000003;\n"
        "  return batch.map(e => ({...e, x}));\n}\n",
        id="steady",
        cpu_ms=600,
        timeout_ms=30000,
    )
    try:
        for _ in range(2):
            t0 = time.process_time()
            out = json.loads(p.process(BATCH))
            assert len(out) == 100
            assert time.process_time() - t0 > 0  # the burners really ran meanwhile
    finally:
        p.close()


def test_a_runaway_processor_does_not_stall_another() -> None:
    bad = make("export function process(b) { for (;;) {} }", id="runaway", timeout_ms=1500, cpu_ms=60000)
    good = make("export function process(b) { return b.filter(e => e.after.id % 2 === 0); }", id="good")
    result: dict[str, BaseException] = {}

    def run_bad() -> None:
        try:
            bad.process(BATCH)
        except ProcessorError as exc:
            result["err"] = exc

    try:
        t = threading.Thread(target=run_bad)
        t.start()
        done, t0 = 0, time.monotonic()
        while t.is_alive():
            assert len(json.loads(good.process(BATCH))) == 50
            done += 1
        elapsed = time.monotonic() - t0
        t.join()
        assert isinstance(result.get("err"), ProcessorError) and result["err"].limit == "timeout_ms"
        assert done >= 10 and elapsed / done < 0.2, f"{done} batches in {elapsed:.2f}s beside the runaway"
    finally:
        bad.close()
        good.close()


WORKER = r"""
import sys, json, structlog
from shared.spec.model import JavascriptProcessorSpec as JsSpec, Limits
from worker.processors.base import ProcessorContext
from worker.processors.javascript import JavascriptProcessor
code = sys.argv[1]
p = JavascriptProcessor(JsSpec(id="orphan", inline=code, limits=Limits(cpu_ms=60000, timeout_ms=60000)),
                        ProcessorContext(pipeline="tg-js-orphan", log=structlog.get_logger()))
p.open()
print(p.sandbox_pid, flush=True)
p.process(b"[]")
print("done", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize(
    "code",
    [
        "export function process(b) { return b; }",  # idle sandbox
        "export function process(b) { for (;;) {} }",
    ],
)  # busy in JS
def test_the_sandbox_never_outlives_its_worker(code: str) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.support import wait_until
    from tests.support.js import process_gone

    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    try:
        assert worker.stdout is not None
        pid = int(worker.stdout.readline())
        assert os.path.exists(f"/proc/{pid}")
        if "for (;;)" in code:  # make sure it is inside the runaway call when its worker dies

            def cpu_s() -> float:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

            wait_until(lambda: cpu_s() > 0.2, timeout=10, message="the sandbox to be spinning")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(5)
        wait_until(lambda: process_gone(pid), timeout=2, message=f"sandbox {pid} to exit after its worker was killed")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        for pipe in (worker.stdin, worker.stdout):
            if pipe is not None:
                pipe.close()
