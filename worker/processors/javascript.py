"""`type: javascript` processors: user code in QuickJS, in a sandbox child process.

Imports: shared + stdlib + msgspec + structlog (QuickJS itself is imported only in the
child, `_jssandbox.py`). Each processor owns one small child process holding its one
QuickJS context for the worker's lifetime, so module-level state persists between
batches. A batch crosses as one JSON text each way (through a shared memfd; the pipe
carries only control frames), never event by event.

Why a child process: quickjs 1.19.4's `set_time_limit` counts *process* CPU (C
`clock()`), so in the worker every thread's CPU would count against `cpu_ms`, and the
binding has no wall-clock deadline at all; some native work (a catastrophic regex) is
not interruptible. In the child `cpu_ms` counts only the script (QuickJS interrupt
handler), `mem_mb` is the QuickJS heap limit, and the parent SIGKILLs the child at the
`timeout_ms` deadline or when a /proc CPU watchdog sees a native runaway. The child also
runs under its own RLIMIT_AS/RLIMIT_CPU, re-armed per call, so nothing it does can take
down the worker. `address_space_budget()` is therefore 0: the worker's own RLIMIT_AS need
not grow with `mem_mb` (but its *hard* limit must leave room for the children, which
inherit it and raise their soft limit per call).

`process` may also be async (return a promise): its jobs run to completion inside the
same call and limits.

Errors: a throw, a non-array return or a non-object element raises `ProcessorError`
naming the processor and the JS stack; a breach raises it with `limit` set to
"timeout_ms" | "cpu_ms" | "mem_mb" and the child is discarded (the next call, or
`reset()`, starts a fresh one). Retries are the runtime's job.

console.log/info/debug/warn/error go to the worker's structlog logger bound with the
processor id (event `js_console`), at most 20 lines/s per processor; the excess is
counted and reported as one `js_console_suppressed` line ("suppressed N lines"). The
binding cannot call into Python while a time limit is armed, so lines are buffered in JS
and forwarded after each call (those of a call killed at its deadline are lost).

Integers beyond 2^53: JavaScript numbers are doubles, so JSON.parse would silently round
9007199254740993 to 9007199254740992. Policy: any integer outside +-(2^53 - 1) in a batch
is handed to JavaScript as its exact decimal *string* ("9007199254740993"), and leaves the
processor as that string unless the script converts it (`BigInt(v)` works for arithmetic;
a BigInt in the result is written as its decimal string too). Nothing is ever rounded.
The check is a scan for 16+ digit runs (~0.8 ms/MB) that runs here while the child is
already in JSON.parse; the child calls process() only after our verdict ("go", or "parse
this protected batch instead"), so the scan is off the critical path and a script never
sees a rounded number. Also: JS has one number type, so an integral float (10.0) comes
back as an integer (10).
"""

from __future__ import annotations

import json
import re
import signal
import time
from typing import Any

import msgspec

from shared.errors import ProcessorError
from worker.processors import _jspipe
from worker.processors.base import Processor, ProcessorContext

MAX_SAFE_INT = 2**53 - 1
LOG_RATE = 20  # console lines per second per processor
SPAWN_TIMEOUT_S = 15.0  # interpreter start + import quickjs, before any user code runs
CPU_WATCHDOG = 1.25  # kill at 1.25 x cpu_ms (+20 ms) if the interrupt handler never fired
_MODULE_RE = re.compile(r"^[ \t]*export\s", re.M)
_DIGIT_TABLE = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_LONG_RUN = b"0" * 16  # |n| > 2^53 - 1 needs at least 16 digits
_CRASH_SIGNALS = (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL)
_LEVELS = {"debug": "debug", "info": "info", "warning": "warning", "error": "error"}


def address_space_budget(specs: list) -> int:
    """Bytes of worker address space the processors need: 0, they run in child processes."""
    return 0


def is_module(code: str) -> bool:
    """ES module form (`export function process`) vs a plain script (same rule as jscheck)."""
    return _MODULE_RE.search(code) is not None


def protect_big_ints(batch_json: bytes) -> bytes:
    """Return the batch with every integer outside +-(2^53-1) replaced by its decimal string."""
    if batch_json.translate(_DIGIT_TABLE).find(_LONG_RUN) < 0:
        return batch_json
    data = msgspec.json.decode(batch_json)
    changed = False
    stack: list[Any] = [data]
    while stack:
        node = stack.pop()
        items = enumerate(node) if isinstance(node, list) else node.items() if isinstance(node, dict) else ()
        for key, value in items:
            if type(value) is int and not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
                node[key] = str(value)
                changed = True
            elif isinstance(value, (list, dict)):
                stack.append(value)
    return msgspec.json.encode(data) if changed else batch_json


class JavascriptProcessor(Processor):
    def __init__(self, spec: Any, ctx: ProcessorContext) -> None:
        super().__init__(spec, ctx)
        self.limits = spec.limits
        self.log = ctx.log.bind(pipeline=ctx.pipeline, processor=self.id)
        self._sandbox: _jspipe.SandboxProcess | None = None
        self.init_stats: dict[str, Any] = {}
        self.last_error_stats: dict[str, Any] = {}

    @property
    def sandbox_pid(self) -> int | None:
        return self._sandbox.pid if self._sandbox is not None else None

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        if self._sandbox is not None:
            return
        try:
            sandbox = _jspipe.SandboxProcess(self.ctx.pipeline, self.id)
        except OSError as exc:
            raise ProcessorError(self.id, f"cannot start the JavaScript sandbox process: {exc}") from exc
        self._sandbox = sandbox
        try:
            self._await_started(sandbox)
            cfg = {
                "code": self.spec.inline,
                "module": is_module(self.spec.inline),
                "name": self.id,
                "cpu_ms": self.limits.cpu_ms,
                "mem_mb": self.limits.mem_mb,
                "timeout_ms": self.limits.timeout_ms,
                "log_rate": LOG_RATE,
            }
            kind, body = self._call(b"I", json.dumps(cfg).encode())
            if kind == b"O":
                self.init_stats = json.loads(body)
                return
            raise self._failure(body, loading=True)
        except BaseException:
            self._discard()
            raise

    def close(self) -> None:
        self._discard()

    def reset(self) -> None:
        self.close()
        self.open()

    # ------------------------------------------------------------------ the call
    def process(self, batch_json: bytes) -> bytes:
        if self._sandbox is not None and not self._sandbox.alive():
            died = self._sandbox.death()
            self._discard()  # the next call starts a fresh context
            raise ProcessorError(
                self.id,
                f"the JavaScript sandbox died between batches ({died}); "
                "module-level state is lost, a fresh context takes over",
            )
        if self._sandbox is None:
            self.open()  # after a limit breach discarded the sandbox (or before open())
        sandbox = self._sandbox
        assert sandbox is not None
        deadline = time.monotonic() + self.limits.timeout_ms / 1000
        start_cpu = sandbox.cpu_seconds()
        sandbox.send(b"B", sandbox.put(batch_json))  # the child starts JSON.parse now...
        try:
            protected = protect_big_ints(batch_json)  # ...while we scan for unsafe integers
            verdict = (b"G", b"") if protected is batch_json else (b"P", protected)
        except (msgspec.DecodeError, RecursionError, ValueError) as exc:
            verdict = (b"A", f"the batch is not valid JSON for a processor: {exc}".encode())
        kind, body = self._call(*verdict, deadline=deadline, start_cpu=start_cpu)
        if kind == b"R":
            return sandbox.take(body)
        raise self._failure(body, loading=False)

    # ---------------------------------------------------------------- internals
    def _await_started(self, sandbox: _jspipe.SandboxProcess) -> None:
        """Wait for the child's `S` frame (interpreter up, quickjs imported, no user code yet)."""
        try:
            sandbox.wait_started(time.monotonic() + SPAWN_TIMEOUT_S)
        except _jspipe.Deadline:
            raise ProcessorError(
                self.id, f"the JavaScript sandbox process did not start within {SPAWN_TIMEOUT_S:.0f} s"
            ) from None
        except _jspipe.Died as died:
            raise ProcessorError(self.id, f"cannot start the JavaScript sandbox: {died}") from None

    def _call(
        self, kind: bytes, payload: bytes, deadline: float | None = None, start_cpu: float | None = None
    ) -> tuple[bytes, bytes]:
        assert self._sandbox is not None
        lim = self.limits
        if deadline is None:
            deadline = time.monotonic() + lim.timeout_ms / 1000
        cpu_budget = lim.cpu_ms * CPU_WATCHDOG / 1000 + 0.02
        try:
            return self._sandbox.exchange(kind, payload, deadline, self._on_log, cpu_budget, start_cpu)
        except _jspipe.Deadline:
            self._discard()
            raise self._limit(
                "timeout_ms",
                f"process(batch) ran longer than {lim.timeout_ms} ms of "
                "wall-clock time; raise limits.timeout_ms or make the script faster",
            ) from None
        except _jspipe.CpuExceeded as exc:
            self.last_error_stats = {"cpu_ms_used": round(exc.used_s * 1000, 1)}
            self._discard()
            raise self._limit(
                "cpu_ms",
                f"the script used more than {lim.cpu_ms} ms of CPU time "
                "(in native code); raise limits.cpu_ms or make the script cheaper",
            ) from None
        except _jspipe.Died as died:
            peak = self._sandbox.peak_rss_kb if self._sandbox is not None else None
            self._discard()
            if died.signum in _CRASH_SIGNALS:
                # QuickJS 2021 can crash in its own out-of-memory path (build_backtrace while
                # throwing "out of memory"); no other crash of it is known, so name the limit.
                self.last_error_stats = {"peak_rss_kb": peak}
                raise self._limit(
                    "mem_mb",
                    f"the sandbox crashed ({died}), as QuickJS does when a script "
                    f"exhausts its {lim.mem_mb} MiB heap; raise limits.mem_mb or keep less "
                    "state",
                ) from None
            if died.signum == signal.SIGXCPU:  # the RLIMIT_CPU backstop
                raise self._limit("cpu_ms", f"the sandbox hit its CPU rlimit ({died})") from None
            if died.code == _jspipe.EXIT_MEMORY:
                raise self._limit("mem_mb", "the sandbox ran out of address space") from None
            raise ProcessorError(self.id, f"JavaScript sandbox failed: {died}") from None

    def _limit(self, limit: str, detail: str) -> ProcessorError:
        value = getattr(self.limits, limit)
        return ProcessorError(self.id, f"{limit} {value} exceeded: {detail}", limit=limit)

    def _failure(self, body: bytes, *, loading: bool) -> ProcessorError:
        err = json.loads(body)
        self.last_error_stats = {"peak_rss_kb": err.get("peak_rss_kb"), "cpu_ms_used": err.get("cpu_ms_used")}
        limit, message = err.get("limit"), err.get("message", "")
        if limit:
            self._discard()
            detail = {
                "cpu_ms": f"the script used more than {self.limits.cpu_ms} ms of CPU time; "
                "raise limits.cpu_ms or make the script cheaper",
                "mem_mb": f"the JS heap reached {self.limits.mem_mb} MiB; raise limits.mem_mb or keep less state",
            }[limit]
            where = " while loading the script" if loading else ""
            first = message.splitlines()[0] if message else ""
            cause = "InternalError: out of memory" if first in ("", "null") else first
            return self._limit(limit, f"{detail}{where} ({cause})")
        if loading:
            self._discard()
            return ProcessorError(self.id, f"cannot load the script: {message}")
        if err.get("kind") == "contract":
            return ProcessorError(self.id, message.splitlines()[0].removeprefix("TidegateContractError: "))
        return ProcessorError(self.id, f"process(batch) threw {message}")

    def _on_log(self, payload: bytes) -> None:
        level, text = json.loads(payload)
        if level == "suppressed":
            self.log.warning("js_console_suppressed", suppressed=text, message=f"suppressed {text} lines")
        else:
            getattr(self.log, _LEVELS.get(level, "info"))("js_console", message=text)

    def _discard(self) -> None:
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            sandbox.kill()
