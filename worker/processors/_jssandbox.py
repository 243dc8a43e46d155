"""The JavaScript sandbox child: one QuickJS context in its own small process.

Started by `worker.processors.javascript` as
`python -I _jssandbox.py <memfd> <pipeline> <processor> <parent pid>`;
talks to it over stdin/stdout with length-prefixed frames (5-byte header: kind, u32 length).
Batch data lives in the shared memfd; `B`/`R` frames carry only its length (u64).
Imports: stdlib + quickjs ONLY (never tidegate packages; the child must start lean).

Parent -> child: b"I" init (JSON config: code, module, cpu_ms, mem_mb, log_rate), then per
batch b"B" (a JSON array as UTF-8 in the memfd; the child starts JSON.parse) followed by the
verdict of the parent's unsafe-integer scan: b"G" go, b"P" + a protected batch to parse
instead, or b"A" + a reason to reject the batch. Child -> parent: b"S" started, b"O" init ok
(JSON stats), b"R" result (JSON array, UTF-8, in the memfd), b"E" error (JSON {kind, limit, message, peak_rss_kb}),
b"L" console line (JSON [level, text]; level "suppressed" carries a count).

Limits, enforced here: `cpu_ms` through QuickJS's interrupt handler (`set_time_limit`
counts this process's CPU time; the child is single-threaded, so only the script's own
CPU counts), `mem_mb` through the QuickJS heap limit. Kernel backstops set per call:
RLIMIT_CPU (a little above the call's budget; SIGXCPU ends a native-level runaway) and
RLIMIT_AS (current size + room for the heap and the batch strings). The wall-clock
`timeout_ms` (and a CPU watchdog) live in the parent, which SIGKILLs this process.
SIGINT/SIGTERM are ignored: the child ends on EOF of stdin (its worker closed or died),
and PR_SET_PDEATHSIG kills it if the worker dies mid-call.
"""

import json
import mmap
import os
import resource
import signal
import struct
import sys
import time

HEADER = struct.Struct(">cI")
SIZE = struct.Struct(">Q")
MAX_LOG_CHARS = 4096
MAX_STACK_LINES = 12
EXIT_PROTOCOL = 3
EXIT_MEMORY = 4

GLUE = r"""
(function (rate) {
  const parse = JSON.parse, stringify = JSON.stringify, isArray = Array.isArray, now = Date.now;
  // console.* cannot call into Python while a time limit is set (binding rule), so lines
  // are buffered here under a token bucket (`rate` lines/s) and drained after each call.
  let lines = [], suppressed = 0, tokens = rate, stamp = now();
  function fmt(args) {
    let out = "";
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      let t;
      if (typeof a === "string") t = a;
      else if (a instanceof Error) t = String(a) + (a.stack ? "\n" + a.stack : "");
      else { try { t = stringify(a); } catch (e) { t = undefined; } if (t === undefined) t = String(a); }
      out += (i ? " " : "") + t;
    }
    return out.length > MAX_CHARS ? out.slice(0, MAX_CHARS) + "... (" + (out.length - MAX_CHARS) + " more chars)" : out;
  }
  const mk = (level) => function () {
    const t = now();
    tokens = Math.min(rate, tokens + (t - stamp) * rate / 1000);
    stamp = t;
    if (tokens < 1) { suppressed++; return; }
    tokens -= 1;
    if (suppressed) { lines.push(["suppressed", suppressed]); suppressed = 0; }
    lines.push([level, fmt(arguments)]);
  };
  globalThis.console = { log: mk("info"), info: mk("info"), debug: mk("debug"),
                         warn: mk("warning"), error: mk("error"), trace: mk("debug") };
  function describe(v) {
    if (v === null) return "null";
    if (isArray(v)) return "an array";
    const t = typeof v;
    return (t === "object" ? "an " : "a ") + t;
  }
  class ContractError extends Error {}
  ContractError.prototype.name = "TidegateContractError";
  // BigInts (e.g. BigInt(e.after.big) + 1n) leave as decimal strings, like unsafe integers enter.
  if (typeof BigInt === "function" && !BigInt.prototype.toJSON)
    Object.defineProperty(BigInt.prototype, "toJSON", { value: function () { return this.toString(); },
                                                        writable: true, configurable: true });
  let pending, settled;
  globalThis.__tg_parse = function __tidegate_parse(text) { pending = undefined; pending = parse(text); };
  function finish(out) {
    if (!isArray(out))
      throw new ContractError("process(batch) must return an array of events, got " + describe(out));
    for (let i = 0; i < out.length; i++) {
      const e = out[i];
      if (e === null || typeof e !== "object" || isArray(e))
        throw new ContractError("process(batch) returned " + describe(e) + " at index " + i +
                                ", expected an event object");
    }
    return stringify(out);
  }
  // Returns the JSON text, or null when process() returned a promise (an async process):
  // the host then runs the job queue and calls __tg_settle.
  globalThis.__tg_run = function __tidegate_run() {
    const batch = pending;
    pending = undefined;
    const out = globalThis.__tg_process(batch);
    if (out !== null && typeof out === "object" && typeof out.then === "function") {
      settled = undefined;
      out.then((v) => { settled = { ok: true, v }; }, (e) => { settled = { ok: false, e }; });
      return null;
    }
    return finish(out);
  };
  globalThis.__tg_settle = function __tidegate_settle() {
    const s = settled;
    settled = undefined;
    if (s === undefined)
      throw new ContractError("process(batch) returned a promise that never settled");
    if (!s.ok) throw s.e;
    return finish(s.v);
  };
  globalThis.__tg_drain = function (final) {
    if (final && suppressed) { lines.push(["suppressed", suppressed]); suppressed = 0; }
    if (!lines.length) return "";
    const out = stringify(lines);
    lines = [];
    return out;
  };
})(RATE);
"""

BRIDGE = "\n;globalThis.__tg_process = (typeof process === 'function') ? process : undefined;\n"


class Shared:
    """The memfd both sides map; whoever writes a bigger payload grows it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.mm = mmap.mmap(fd, os.fstat(fd).st_size)

    def _remap(self, size: int) -> None:
        self.mm.close()
        self.mm = mmap.mmap(self.fd, size)

    def read_text(self, payload: bytes | bytearray) -> str:
        (size,) = SIZE.unpack(payload)
        if size > len(self.mm):
            self._remap(os.fstat(self.fd).st_size)
        with memoryview(self.mm) as view:
            return str(view[:size], "utf-8")

    def write(self, data: bytes) -> bytes:
        if len(data) > len(self.mm):
            size = max(len(data), 2 * len(self.mm))
            os.ftruncate(self.fd, size)
            self._remap(size)
        self.mm[: len(data)] = data
        return SIZE.pack(len(data))


class Channel:
    def __init__(self, fd_in: int, fd_out: int) -> None:
        self.fd_in, self.fd_out = fd_in, fd_out

    def send(self, kind: bytes, payload: bytes) -> None:
        view = memoryview(HEADER.pack(kind, len(payload)) + payload)  # frames here are small
        while view:
            view = view[os.write(self.fd_out, view) :]

    def _read_exact(self, n: int) -> bytearray | None:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = os.readv(self.fd_in, [view[got:]])
            if k == 0:
                return None
            got += k
        return buf

    def recv(self) -> tuple[bytes, bytearray] | None:
        head = self._read_exact(HEADER.size)
        if head is None:
            return None
        kind, size = HEADER.unpack(head)
        body = self._read_exact(size) if size else bytearray()
        return None if body is None else (kind, body)


def vm_size() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[0]) * resource.getpagesize()
    except OSError:
        return 0


def set_call_limits(cfg: dict, input_len: int) -> None:
    """Kernel backstops for the next call (both are per process, so re-armed per call)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    budget_s = 2 * max(cfg["cpu_ms"], cfg.get("timeout_ms", 0)) / 1000 + 1
    _soft_limit(resource.RLIMIT_CPU, int(usage.ru_utime + usage.ru_stime + budget_s) + 1)
    size = vm_size()
    if size:
        _soft_limit(resource.RLIMIT_AS, size + 3 * (cfg["mem_mb"] << 20) + 6 * input_len + (64 << 20))


def _soft_limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    try:
        resource.setrlimit(which, (value, hard))
    except (ValueError, OSError):
        pass


def classify(text: str) -> tuple[str, str | None]:
    first = text.split("\n", 1)[0]
    if first.startswith("InternalError: interrupted"):
        return "limit", "cpu_ms"
    if first.startswith("InternalError: out of memory"):
        return "limit", "mem_mb"
    if text.rstrip("\n") in ("null", "null\nundefined") or first.lstrip("(").startswith(
        "Failed obtaining QuickJS error"
    ):
        # QuickJS throws `null` when it runs out of memory while building the "out of memory"
        # error itself (a nested OOM), and the binding cannot stringify an error without
        # memory. A script may also `throw null` (or throw an object whose toString throws);
        # those rare cases are reported as the memory limit too (and retried in a fresh context).
        return "limit", "mem_mb"
    if first.startswith("TidegateContractError"):
        return "contract", None
    return "throw", None


def trim_stack(text: str, name: str) -> str:
    lines = [ln for ln in text.rstrip("\n").replace("<input>", name).split("\n") if "__tidegate_" not in ln]
    if lines and lines[-1] == "undefined":  # a thrown non-Error has no stack
        lines = lines[:-1]
    if len(lines) > MAX_STACK_LINES:
        lines = lines[:MAX_STACK_LINES] + [f"    ... {len(lines) - MAX_STACK_LINES} more frames"]
    return "\n".join(lines)


CALL_START = [0.0]  # process CPU seconds when the current call (or the load) began


def error_payload(kind: str, limit: str | None, message: str) -> bytes:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    used_ms = round((time.process_time() - CALL_START[0]) * 1000, 1)
    return json.dumps(
        {"kind": kind, "limit": limit, "message": message, "peak_rss_kb": peak, "cpu_ms_used": used_ms}
    ).encode()


def load(quickjs, cfg: dict, holder: list):
    ctx = quickjs.Context()
    ctx.set_memory_limit(cfg["mem_mb"] << 20)
    ctx.set_time_limit(cfg["cpu_ms"] / 1000)
    ctx.eval(GLUE.replace("RATE", str(int(cfg.get("log_rate", 20)))).replace("MAX_CHARS", str(MAX_LOG_CHARS)))
    run, drain = (ctx.get("__tg_parse"), ctx.get("__tg_run"), ctx.get("__tg_settle")), ctx.get("__tg_drain")
    holder.append(drain)
    if cfg["module"]:
        ctx.module(cfg["code"] + BRIDGE)
        while ctx.execute_pending_job():
            pass
    else:
        ctx.eval(cfg["code"])
        ctx.eval(BRIDGE)
    if ctx.eval("typeof globalThis.__tg_process") != "function":
        raise LookupError(
            "no function process(batch) defined (write `export function process(batch)`"
            " or a top-level `function process(batch)`)"
        )
    return ctx, run, drain


def flush_console(chan: Channel, drain) -> None:
    """Send the console lines buffered in JS during the last call (never raises)."""
    if drain is None:
        return
    try:
        text = drain(True)
    except Exception:  # noqa: BLE001 - a broken context must not hide the call's own outcome
        return
    if text:
        for level, line in json.loads(text):
            chan.send(b"L", json.dumps([level, line]).encode())


def call(quickjs, ctx, run, chan: Channel, shared: Shared, cfg: dict, body: bytes | bytearray):
    """One batch. JSON.parse starts at once; meanwhile the parent scans the batch for unsafe
    integers and then sends `G` (go), `P` + a protected batch to parse instead, or `A` +
    a reason (abort). Returns the reply frame, or None on EOF."""
    parse, apply, settle = run
    limit_s = cfg["cpu_ms"] / 1000
    failure: BaseException | None = None
    try:
        text = shared.read_text(body)
        set_call_limits(cfg, len(text))
        CALL_START[0] = time.process_time()
        ctx.set_time_limit(limit_s)
        parse(text)
        del text
    except (quickjs.JSException, MemoryError) as exc:
        failure = exc
    verdict = chan.recv()
    if verdict is None:
        return None
    if verdict[0] == b"A":  # the parent could not vet the batch: drop it, keep the context
        parse("[]")
        return b"E", error_payload("contract", None, verdict[1].decode("utf-8", "replace"))
    if verdict[0] not in (b"G", b"P"):
        return b"E", error_payload("contract", None, f"sandbox protocol error: frame {verdict[0]!r}")
    try:
        if verdict[0] == b"P":
            parse(verdict[1].decode("utf-8"))
            failure = None
        if failure is not None:
            raise failure
        ctx.set_time_limit(max(0.001, limit_s - (time.process_time() - CALL_START[0])))
        text = apply()
        if text is None:  # an async process(): run its jobs, then take the settled value
            while True:  # each job is its own call: re-arm the interrupt with what is left
                left = limit_s - (time.process_time() - CALL_START[0])
                if left <= 0:
                    raise quickjs.JSException("InternalError: interrupted (async jobs)")
                ctx.set_time_limit(left)
                if not ctx.execute_pending_job():
                    break
            text = settle()
        out = text.encode("utf-8")
        return b"R", shared.write(out)
    except quickjs.JSException as exc:
        kind, limit = classify(str(exc))
        return b"E", error_payload(kind, limit, trim_stack(str(exc), cfg.get("name", "processor")))
    except MemoryError:
        return b"E", error_payload("limit", "mem_mb", "out of memory (sandbox address space)")


def die_with_parent(parent: int) -> None:
    """SIGKILL us when the thread that spawned us (the worker's processor thread) exits."""
    try:
        import ctypes  # noqa: PLC0415

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before prctl
        os._exit(0)


def main() -> int:
    die_with_parent(int(sys.argv[4]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    fd_out = os.dup(1)
    os.dup2(2, 1)  # stray prints go to stderr, never into the protocol
    chan = Channel(0, fd_out)
    shared = Shared(int(sys.argv[1]))
    import quickjs  # noqa: PLC0415 (after the fds are safe)

    chan.send(b"S", b"")
    msg = chan.recv()
    if msg is None or msg[0] != b"I":
        return EXIT_PROTOCOL
    cfg = json.loads(msg[1])
    name = cfg.get("name", "processor")
    set_call_limits(cfg, len(cfg["code"]))
    CALL_START[0] = time.process_time()
    holder: list = []
    try:
        ctx, run, drain = load(quickjs, cfg, holder)
    except quickjs.JSException as exc:
        kind, limit = classify(str(exc))
        flush_console(chan, holder[0] if holder else None)
        chan.send(b"E", error_payload("init" if limit is None else kind, limit, trim_stack(str(exc), name)))
        return 0
    except LookupError as exc:
        chan.send(b"E", error_payload("init", None, str(exc)))
        return 0
    except MemoryError:
        chan.send(b"E", error_payload("limit", "mem_mb", "out of memory while loading the script"))
        return EXIT_MEMORY
    flush_console(chan, drain)
    chan.send(
        b"O",
        json.dumps({"peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "pid": os.getpid()}).encode(),
    )
    while True:
        msg = chan.recv()
        if msg is None:
            return 0
        frame, body = msg
        if frame != b"B":
            return EXIT_PROTOCOL
        result = call(quickjs, ctx, run, chan, shared, cfg, body)
        if result is None:
            return 0  # EOF while waiting for the verdict
        flush_console(chan, drain)
        chan.send(*result)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # the worker went away mid-reply
        os._exit(0)
