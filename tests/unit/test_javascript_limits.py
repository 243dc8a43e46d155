"""timeout_ms / cpu_ms / mem_mb on a real QuickJS sandbox child: each runaway stops within 2x.

CPU is measured as CPU (the sandbox's own accounting, or /proc for a killed child), not as
wall time, so a loaded test machine cannot make these flaky; the wall-clock limit is
measured on the wall clock.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from shared.errors import ProcessorError
from tests.support.js import Make, processor_factory
from worker.processors.javascript import JavascriptProcessor

BATCH = json.dumps([{"op": "c", "after": {"id": i}} for i in range(10)]).encode()


@pytest.fixture
def make() -> Iterator[Make]:
    yield from processor_factory("tg-js-limits")


def breach(proc: JavascriptProcessor) -> tuple[ProcessorError, float]:
    t0 = time.monotonic()
    with pytest.raises(ProcessorError) as ei:
        proc.process(BATCH)
    return ei.value, time.monotonic() - t0


def test_infinite_loop_stopped_by_timeout_ms_within_2x(make: Make) -> None:
    p = make(
        "let calls = 0;\nexport function process(batch) {\n  calls++;\n"
        "  if (batch.length > 5) while (true) {}\n  return batch.map(e => ({...e, calls}));\n}\n",
        id="enrich",
        timeout_ms=200,
        cpu_ms=60000,
    )
    pid = p.sandbox_pid
    err, took = breach(p)
    assert err.limit == "timeout_ms" and took < 0.4, (err, took)
    assert str(err).startswith("processor 'enrich': timeout_ms 200 exceeded")
    assert not os.path.exists(f"/proc/{pid}"), "the runaway sandbox must be killed"
    out = json.loads(p.process(b'[{"id": 1}]'))  # a fresh context took over: state starts again
    assert out == [{"id": 1, "calls": 1}] and p.sandbox_pid != pid


def test_cpu_burner_stopped_by_cpu_ms_within_2x(make: Make) -> None:
    p = make(
        "export function process(batch) {\n  let x = 0;\n  for (;;) x = (x * 31 + 7) % 1000003;\n}\n",
        id="burn",
        cpu_ms=300,
        timeout_ms=20000,
    )
    err, took = breach(p)
    assert err.limit == "cpu_ms", err
    assert str(err).startswith("processor 'burn': cpu_ms 300 exceeded")
    used = p.last_error_stats["cpu_ms_used"]
    assert 250 <= used < 600, used
    assert took < 20, took


def test_native_cpu_runaway_stopped_by_the_watchdog_within_2x(make: Make) -> None:
    # QuickJS's regex engine never checks the interrupt handler: the parent's /proc watchdog kills it.
    p = make(
        "export function process(batch) {\n  /(a+)+$/.test('a'.repeat(60) + 'b');\n  return batch;\n}\n",
        id="regex",
        cpu_ms=300,
        timeout_ms=20000,
    )
    err, _ = breach(p)
    assert err.limit == "cpu_ms" and "cpu_ms 300 exceeded" in str(err), err
    assert p.last_error_stats["cpu_ms_used"] < 600, p.last_error_stats


def test_native_runaway_stopped_by_timeout_ms(make: Make) -> None:
    p = make(
        "export function process(batch) {\n  /(a+)+$/.test('a'.repeat(60) + 'b');\n  return batch;\n}\n",
        cpu_ms=60000,
        timeout_ms=200,
    )
    err, took = breach(p)
    assert err.limit == "timeout_ms" and took < 0.4, (err, took)


@pytest.mark.parametrize(
    "bomb",
    [
        "const a = []; for (;;) a.push('x'.repeat(1000) + a.length);",
        "const a = []; for (;;) a.push({n: a.length, s: [1, 2, 3]});",
        "let s = 'x'; for (;;) s = s + s;",
        "const big = new Array(1 << 26).fill(1.5); return big;",
    ],
)
def test_memory_bomb_stopped_by_mem_mb_16_within_2x(make: Make, bomb: str) -> None:
    # Several batch sizes: where exactly the heap runs out varies, and QuickJS 2021 sometimes
    # crashes (SIGSEGV) in its out-of-memory path instead of throwing; both must read mem_mb.
    p = make(f"export function process(batch) {{\n  {bomb}\n}}\n", id="bomb", mem_mb=16, timeout_ms=20000)
    for n in (1, 7, 40):
        p.open()
        base_kb = p.init_stats["peak_rss_kb"]
        with pytest.raises(ProcessorError) as ei:
            p.process(json.dumps([{"op": "c", "after": {"id": i, "pad": "p" * i}} for i in range(n)]).encode())
        err = ei.value
        assert err.limit == "mem_mb", err
        assert str(err).startswith("processor 'bomb': mem_mb 16 exceeded")
        grew_mb = (p.last_error_stats["peak_rss_kb"] - base_kb) / 1024
        assert grew_mb < 32, f"sandbox grew {grew_mb:.1f} MiB for a 16 MiB heap"


def test_state_counts_against_mem_mb(make: Make) -> None:
    p = make(
        "const keep = [];\nexport function process(batch) {\n  keep.push('y'.repeat(6 << 20));\n  return batch;\n}\n",
        mem_mb=16,
    )
    p.process(BATCH)
    p.process(BATCH)
    err, _ = breach(p)  # the third 6 MiB string does not fit in 16 MiB with the two kept
    assert err.limit == "mem_mb"


def test_runaway_top_level_code_is_limited_too(make: Make) -> None:
    p = make("while (true) {}\nexport function process(b) { return b; }", timeout_ms=200, cpu_ms=60000, open=False)
    t0 = time.monotonic()
    with pytest.raises(ProcessorError) as ei:
        p.open()
    assert ei.value.limit == "timeout_ms" and time.monotonic() - t0 < 1.0
    p2 = make("const t = []; for (;;) t.push(t.length);\nfunction process(b) { return b; }", mem_mb=16, open=False)
    with pytest.raises(ProcessorError) as ei:
        p2.open()
    assert ei.value.limit == "mem_mb" and "while loading the script" in str(ei.value)


def test_the_sandbox_runs_under_kernel_rlimits(make: Make) -> None:
    p = make("export function process(b) { return b; }", mem_mb=32)
    p.process(BATCH)
    with open(f"/proc/{p.sandbox_pid}/limits") as f:
        limits = {line[:26].strip(): line[26:].split() for line in f.read().splitlines()[1:]}
    address_space, cpu = limits["Max address space"][0], limits["Max cpu time"][0]
    assert address_space != "unlimited" and int(address_space) < (1 << 30), address_space
    assert cpu != "unlimited" and int(cpu) < 60, cpu


def test_endless_async_jobs_are_stopped(make: Make) -> None:
    # every job is its own QuickJS call (the per-call interrupt clock restarts): the watchdog counts them all
    p = make("export async function process(batch) {\n  for (;;) await 0;\n}\n", cpu_ms=300, timeout_ms=20000)
    err, _ = breach(p)
    assert err.limit == "cpu_ms" and p.last_error_stats["cpu_ms_used"] < 600, (err, p.last_error_stats)
