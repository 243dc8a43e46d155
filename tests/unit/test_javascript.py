"""JavascriptProcessor against a real QuickJS sandbox child: behaviour, errors, logs, big ints.

(The limit tests are in test_javascript_limits.py.)
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import CapturingLogger

from shared.errors import ProcessorError
from shared.spec.model import JavascriptProcessorSpec as JsSpec
from tests.support import wait_until
from tests.support.js import Make, process_gone, processor_factory
from worker.processors import javascript
from worker.processors.javascript import JavascriptProcessor, address_space_budget, protect_big_ints


@pytest.fixture
def make() -> Iterator[Make]:
    yield from processor_factory("tg-js-unit")


def run(proc: JavascriptProcessor, events: list[dict]) -> list[dict]:
    return json.loads(proc.process(json.dumps(events).encode()))


def ev(i: int, **after: Any) -> dict:
    return {
        "op": "c",
        "ts_ms": 1732800000000,
        "source": {"table": "t", "position": str(i)},
        "before": None,
        "after": {"id": i, **after},
    }


BATCH = [ev(i) for i in range(1, 7)]


def test_filter_drops_odd_ids(make: Make) -> None:
    p = make("export function process(batch) {\n  return batch.filter(e => e.after.id % 2 === 0);\n}\n")
    assert [e["after"]["id"] for e in run(p, BATCH)] == [2, 4, 6]


def test_enrich_adds_a_field(make: Make) -> None:
    p = make(
        "export function process(batch) {\n"
        "  for (const e of batch) e.after.region = 'eu-' + e.after.id;\n  return batch;\n}\n"
    )
    out = run(p, BATCH)
    assert [e["after"]["region"] for e in out] == [f"eu-{i}" for i in range(1, 7)]
    assert out[0]["source"] == BATCH[0]["source"]


def test_fan_out_one_event_to_two(make: Make) -> None:
    p = make(
        "export function process(batch) {\n"
        "  return batch.flatMap(e => [e, {...e, after: {...e.after, copy: true}}]);\n}\n"
    )
    out = run(p, BATCH[:3])
    assert [(e["after"]["id"], e["after"].get("copy", False)) for e in out] == [
        (1, False),
        (1, True),
        (2, False),
        (2, True),
        (3, False),
        (3, True),
    ]


def test_drop_all_returns_empty_array(make: Make) -> None:
    p = make("export function process(batch) { return []; }")
    assert p.process(json.dumps(BATCH).encode()) == b"[]"


def test_chain_of_three_applied_in_order(make: Make) -> None:
    chain = [
        make("export function process(b) { return b.filter(e => e.after.id > 2); }", id="keep"),
        make("export function process(b) { b.forEach(e => e.after.trail = ['a']); return b; }", id="tag"),
        make(
            "export function process(b) { b.forEach(e => e.after.trail.push('b:' + b.length)); return b; }", id="count"
        ),
    ]
    data = json.dumps(BATCH).encode()
    for p in chain:
        data = p.process(data)
    out = json.loads(data)
    assert [e["after"]["id"] for e in out] == [3, 4, 5, 6]
    assert all(e["after"]["trail"] == ["a", "b:4"] for e in out)


def test_module_level_state_persists_between_batches(make: Make) -> None:
    p = make(
        "let seen = 0;\nconst byTable = {};\n"
        "export function process(batch) {\n"
        "  for (const e of batch) { seen++; e.after.seq = seen; }\n  return batch;\n}\n"
    )
    assert [e["after"]["seq"] for e in run(p, BATCH[:2])] == [1, 2]
    assert [e["after"]["seq"] for e in run(p, BATCH[:3])] == [3, 4, 5]


@pytest.mark.parametrize(
    "code",
    [
        "export function process(batch) { return batch.map(e => ({...e, form: 'export'})); }",
        "function process(batch) { return batch.map(e => ({...e, form: 'script'})); }",
        "const process = (batch) => batch.map(e => ({...e, form: 'const'}));",
        "export const process = (batch) => batch.map(e => ({...e, form: 'export const'}));",
        "export default function process(batch) { return batch.map(e => ({...e, form: 'default'})); }",
    ],
)
def test_both_function_forms(make: Make, code: str) -> None:
    out = run(make(code), BATCH[:1])
    assert out[0]["form"] in ("export", "script", "const", "export const", "default")


def test_script_form_may_use_sloppy_mode(make: Make) -> None:
    p = make("function process(batch) { with (batch[0]) { after.sloppy = true; } return batch; }")
    assert run(p, BATCH[:1])[0]["after"]["sloppy"] is True


def test_syntax_error_fails_open_with_line(make: Make) -> None:
    p = make("export function process(batch) {\n  return batch +;\n}\n", id="broken", open=False)
    with pytest.raises(ProcessorError) as ei:
        p.open()
    assert "processor 'broken'" in str(ei.value) and "SyntaxError" in str(ei.value)
    assert "broken:2" in str(ei.value) and ei.value.limit is None


def test_missing_process_fails_open(make: Make) -> None:
    p = make("function other(batch) { return batch; }", id="noproc", open=False)
    with pytest.raises(ProcessorError, match="no function process\\(batch\\) defined"):
        p.open()


def test_throw_reports_the_js_stack(make: Make) -> None:
    p = make(
        "function check(e) {\n  if (e.after.id > 1)\n    throw new Error('bad id ' + e.after.id);\n"
        "  return e;\n}\nexport function process(batch) {\n  return batch.map(check);\n}\n",
        id="enrich",
    )
    with pytest.raises(ProcessorError) as ei:
        p.process(json.dumps(BATCH).encode())
    msg = str(ei.value)
    assert msg.startswith("processor 'enrich': process(batch) threw Error: bad id 2")
    assert "at check (enrich:3)" in msg and "at process (enrich:7)" in msg
    assert "__tidegate" not in msg and ei.value.limit is None and ei.value.retryable


def test_thrown_non_error_value(make: Make) -> None:
    p = make("export function process(batch) { throw 'plain string'; }")
    with pytest.raises(ProcessorError, match="threw plain string$"):
        p.process(b"[]")


@pytest.mark.parametrize(
    "ret,expect",
    [
        ("5", "got a number"),
        ("null", "got null"),
        ("({events: batch})", "got an object"),
        ("undefined", "got a undefined"),
    ],
)
def test_non_array_return(make: Make, ret: str, expect: str) -> None:
    p = make(f"export function process(batch) {{ return {ret}; }}")
    with pytest.raises(ProcessorError) as ei:
        p.process(json.dumps(BATCH).encode())
    assert "must return an array of events" in str(ei.value) and expect in str(ei.value)
    assert ei.value.limit is None


@pytest.mark.parametrize("elem,expect", [("1", "a number"), ("null", "null"), ("[]", "an array"), ("'x'", "a string")])
def test_non_object_elements(make: Make, elem: str, expect: str) -> None:
    p = make(f"export function process(batch) {{ return [batch[0], {elem}]; }}")
    with pytest.raises(ProcessorError) as ei:
        p.process(json.dumps(BATCH).encode())
    assert f"returned {expect} at index 1, expected an event object" in str(ei.value)


def test_context_survives_a_throw(make: Make) -> None:
    p = make(
        "let n = 0;\nexport function process(b) { n++; if (n === 1) throw new Error('once'); "
        "return b.map(e => ({...e, n})); }"
    )
    with pytest.raises(ProcessorError):
        p.process(b"[]")
    assert run(p, BATCH[:1])[0]["n"] == 2  # same context, state kept: a throw is not a limit


def test_big_integers_cross_as_exact_strings(make: Make) -> None:
    p = make(
        "export function process(batch) {\n"
        "  for (const e of batch) e.after.types = [typeof e.after.big, typeof e.after.safe,\n"
        "    typeof e.after.nested.neg, String(BigInt(e.after.big) + 1n)];\n  return batch;\n}\n"
    )
    big, neg, safe = 2**53 + 1, -(2**63), 2**53 - 1
    src = [
        {
            **ev(1),
            "after": {
                "id": 1,
                "big": big,
                "safe": safe,
                "nested": {"neg": neg, "list": [big, 1.5]},
                "digits": "123456789012345678901",
                "float": 1e300,
            },
        }
    ]
    after = json.loads(p.process(json.dumps(src).encode()))[0]["after"]
    assert after["big"] == str(big) and after["nested"]["neg"] == str(neg)
    assert after["nested"]["list"] == [str(big), 1.5]
    assert after["safe"] == safe and after["digits"] == "123456789012345678901" and after["float"] == 1e300
    assert after["types"] == ["string", "number", "string", str(big + 1)]


def test_protect_big_ints_is_a_no_op_without_long_digit_runs() -> None:
    data = json.dumps(BATCH).encode()
    assert protect_big_ints(data) is data
    long_string = json.dumps([{"s": "1" * 30}]).encode()
    assert protect_big_ints(long_string) is long_string
    assert json.loads(protect_big_ints(b'[{"a":[9007199254740992,9007199254740991]}]')) == [
        {"a": ["9007199254740992", 9007199254740991]}
    ]


def capturing_logger() -> tuple[Any, CapturingLogger]:
    cap = CapturingLogger()
    return structlog.wrap_logger(cap, processors=[]), cap


def test_console_log_reaches_the_worker_log(make: Make) -> None:
    log, cap = capturing_logger()
    p = make(
        "console.log('loaded', {v: 1});\n"
        "export function process(batch) {\n  console.log('batch of', batch.length);\n"
        "  console.error('oops', new Error('x').message);\n  return batch;\n}\n",
        id="logger",
        log=log,
    )
    run(p, BATCH)
    lines = [
        (c.method_name, c.kwargs.get("message"), c.kwargs.get("processor"), c.kwargs.get("pipeline"))
        for c in cap.calls
        if c.kwargs.get("event") == "js_console"
    ]
    assert lines == [
        ("info", 'loaded {"v":1}', "logger", "tg-js-unit"),
        ("info", "batch of 6", "logger", "tg-js-unit"),
        ("error", "oops x", "logger", "tg-js-unit"),
    ]


def test_console_is_rate_limited(make: Make) -> None:
    log, cap = capturing_logger()
    p = make(
        "export function process(batch) {\n  for (let i = 0; i < 500; i++) console.log('line', i);\n"
        "  return batch;\n}\n",
        log=log,
    )
    run(p, BATCH)
    lines = [c for c in cap.calls if c.kwargs.get("event") == "js_console"]
    notes = [c for c in cap.calls if c.kwargs.get("event") == "js_console_suppressed"]
    assert 15 <= len(lines) <= 25
    assert len(notes) == 1 and notes[0].kwargs["suppressed"] == 500 - len(lines)
    assert notes[0].kwargs["message"] == f"suppressed {500 - len(lines)} lines"


def test_reset_gives_a_fresh_context(make: Make) -> None:
    p = make("let n = 0;\nexport function process(b) { n++; return b.map(e => ({...e, n})); }")
    run(p, BATCH[:1])
    pid = p.sandbox_pid
    p.reset()
    assert p.sandbox_pid != pid
    assert run(p, BATCH[:1])[0]["n"] == 1


def test_a_killed_sandbox_fails_the_batch_then_restarts(make: Make) -> None:
    p = make("export function process(b) { return b; }", id="victim")
    pid = p.sandbox_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: process_gone(pid), timeout=5, message="sandbox gone")
    with pytest.raises(ProcessorError, match="processor 'victim'.*SIGKILL"):
        p.process(b"[]")
    assert run(p, BATCH[:2]) == BATCH[:2]
    assert p.sandbox_pid not in (None, pid)


def test_close_ends_the_sandbox(make: Make) -> None:
    p = make("export function process(b) { return b; }")
    pid = p.sandbox_pid
    p.close()
    assert p.sandbox_pid is None
    assert not os.path.exists(f"/proc/{pid}")


def test_large_batch_grows_the_shared_memory(make: Make) -> None:
    p = make("export function process(b) { return b.concat(b); }", mem_mb=256)
    batch = [ev(i, payload="x" * 1000) for i in range(3000)]  # ~3.3 MB in, ~6.6 MB out
    out = run(p, batch)
    assert len(out) == 6000 and out[5999]["after"]["id"] == 2999


def test_unicode_round_trip(make: Make) -> None:
    p = make("export function process(b) { b[0].after.echo = b[0].after.s + '✓'; return b; }")
    out = run(p, [ev(1, s="héllo 世界 🚀")])
    assert out[0]["after"]["echo"] == "héllo 世界 🚀✓"


def test_no_worker_address_space_needed() -> None:
    assert address_space_budget([JsSpec(id="a", inline="function process(b){return b}")]) == 0
    assert javascript.is_module("export function process(b) {}") and not javascript.is_module("function process(b){}")


def test_invalid_json_batch_fails_without_losing_state(make: Make) -> None:
    p = make("let n = 0;\nexport function process(b) { n++; return b.map(e => ({...e, n})); }", id="strict")
    with pytest.raises(ProcessorError, match="processor 'strict': the batch is not valid JSON"):
        p.process(b'[{"a": 12345678901234567890')  # the unsafe-integer scan cannot decode it
    with pytest.raises(ProcessorError, match="processor 'strict': process\\(batch\\) threw SyntaxError"):
        p.process(b'[{"a": 1')  # JSON.parse in the sandbox reports it
    assert run(p, BATCH[:1])[0]["n"] == 1  # neither reached process(); the context lives on


def test_bigint_results_leave_as_decimal_strings(make: Make) -> None:
    p = make(
        "export function process(b) {\n  for (const e of b) e.after.tripled = BigInt(e.after.big) * 3n;\n"
        "  return b;\n}\n"
    )
    out = run(p, [ev(1, big=12345678901234567890)])
    assert out[0]["after"]["big"] == "12345678901234567890"
    assert out[0]["after"]["tripled"] == str(3 * 12345678901234567890)


def test_top_level_throw_fails_open_with_its_stack(make: Make) -> None:
    p = make(
        "const table = {};\nthrow new Error('bad init');\nfunction process(b) { return b; }", id="init", open=False
    )
    with pytest.raises(
        ProcessorError, match="processor 'init': cannot load the script: Error: bad init\n    at .*init:2"
    ):
        p.open()


def test_the_sandbox_gets_a_minimal_environment(make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_JS_DB_PASSWORD", "hunter2")
    p = make("export function process(b) { return b; }")
    with open(f"/proc/{p.sandbox_pid}/environ", "rb") as f:
        env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if item)
    assert b"TG_JS_DB_PASSWORD" not in env and env[b"MALLOC_ARENA_MAX"] == b"2"


def test_async_process_is_awaited(make: Make) -> None:
    p = make(
        "async function lookup(id) { return 'name-' + id; }\n"
        "export async function process(batch) {\n"
        "  for (const e of batch) e.after.name = await lookup(e.after.id);\n  return batch;\n}\n"
    )
    assert [e["after"]["name"] for e in run(p, BATCH[:2])] == ["name-1", "name-2"]
    q = make("export async function process(batch) {\n  await null;\n  throw new Error('async boom');\n}\n", id="aq")
    with pytest.raises(ProcessorError, match="processor 'aq': process\\(batch\\) threw Error: async boom"):
        q.process(b"[]")
    r = make("export function process(batch) { return new Promise(() => {}); }", id="never")
    with pytest.raises(ProcessorError, match="returned a promise that never settled"):
        r.process(b"[]")
