"""Compile-time check of a JavaScript processor for spec validation (422 at POST/PATCH).

`check_javascript(code)` returns None when the code compiles and declares `process`
(as `export function process` or a top-level `function process`), else one message with
line and column, e.g. "SyntaxError: unexpected token in expression: '}' at line 3, column 5".

It never runs the user's code (QuickJS's regex engine, for one, cannot be interrupted,
and this runs inside the supervisor). The code is compiled as the body of a function
expression that is never called; QuickJS compiles nested bodies eagerly, so every syntax
error surfaces. Whether `process` is declared is an early error too: the wrapper ends with
`let process;`, which is a SyntaxError ("invalid redefinition") exactly when the code
declares `process` at its top level. `export` keywords are blanked (same length, so
columns hold) and module-form code is compiled in strict mode inside an async function
(top-level await). QuickJS 2021 reports only a line; the column is where the token quoted
in the message sits on that line, else found by bisecting the shortest prefix of the line
that reproduces the same error. Typically < 1 ms (a 100 KB script: a few ms per compile).

Imports: stdlib + quickjs only (nothing from worker/).
"""

from __future__ import annotations

import re

import quickjs

CHECK_MEMORY = 64 << 20
BISECT_MAX_CHARS = 100_000  # above this the column is the line's first non-blank (no re-compiles)
_MODULE_RE = re.compile(r"^[ \t]*export\s", re.M)  # same rule as the worker's loader
_IMPORT_RE = re.compile(r"^[ \t]*(import\s*[\w{*'\"]|export\s[^;\n]*\bfrom\s*['\"])", re.M)
_EXPORT_LIST_RE = re.compile(r"^[ \t]*export\s*\{[^}]*\}\s*;?", re.M)
_EXPORT_KW_RE = re.compile(r"^([ \t]*)export(\s+default)?(?=\s)", re.M)
_NAMED_DECL_RE = re.compile(r"\s+(?:async\s+)?function\s*\*?\s*[\w$]|\s+class\s+[\w$]")
_LINE_RE = re.compile(r"at <input>:(\d+)")
_TOKEN_RE = re.compile(r"(?:'(.+)'|: ([\w$]+))$")
NO_PROCESS = (
    "no function process(batch) defined: write `export function process(batch) { ... }` "
    "or a top-level `function process(batch) { ... }`"
)


def is_module(code: str) -> bool:
    return _MODULE_RE.search(code) is not None


def _blank(match: re.Match[str]) -> str:
    return re.sub(r"[^\n]", " ", match.group(0))


def _strip_exports(body: str) -> str:
    """Blank `export` (a declaration stays a declaration); `export default <expr>` becomes
    `0, <expr>`. Same lengths, so lines and columns hold."""

    def repl(m: re.Match[str]) -> str:
        indent, width = m.group(1), len(m.group(0)) - len(m.group(1))
        if m.group(2) and not _NAMED_DECL_RE.match(body, m.end()):
            return indent + "0,".ljust(width)
        return indent + " " * width

    return _EXPORT_KW_RE.sub(repl, _EXPORT_LIST_RE.sub(_blank, body))


def _prepare(code: str) -> tuple[str, str]:
    """(wrapper prefix, body) with export syntax blanked out, columns preserved."""
    if not is_module(code):
        return "(function(){", code
    return '(async function(){"use strict";', _strip_exports(code)


def _compile(source: str) -> tuple[str, int] | None:
    """(first message line, line number) of the compile error, or None when it compiles."""
    ctx = quickjs.Context()
    ctx.set_memory_limit(CHECK_MEMORY)
    try:
        ctx.eval(source)  # evaluates a function *expression*: nothing inside runs
    except quickjs.JSException as exc:
        text = str(exc)
        found = _LINE_RE.search(text)
        return text.split("\n", 1)[0], int(found.group(1)) if found else 0
    return None


def _column(prefix: str, lines: list[str], lineno: int, message: str) -> int:
    """1-based column of the error on `lineno`, by bisecting the shortest reproducing prefix."""
    line = lines[lineno - 1]
    found = _TOKEN_RE.search(message)
    token = (found.group(1) or found.group(2)) if found else ""
    if message.startswith("SyntaxError: unexpected token") and token and line.count(token) == 1:
        return line.index(token) + 1
    before = "".join(line + "\n" for line in lines[: lineno - 1])
    if len(before) > BISECT_MAX_CHARS:  # each probe recompiles everything before the line
        return len(line) - len(line.lstrip()) + 1

    def same(p: int) -> bool:
        return _compile(prefix + before + line[:p] + "\n})") == (message, lineno)

    if not same(len(line)):
        return len(line) - len(line.lstrip()) + 1
    lo, hi = 0, len(line)
    while lo < hi:
        mid = (lo + hi) // 2
        if same(mid):
            hi = mid
        else:
            lo = mid + 1
    width = len(token) if token and line[:lo].endswith(token) else 1
    return max(1, lo - width + 1)


def check_javascript(code: str) -> str | None:
    """None if `code` compiles and declares process(batch); else a message with line and column."""
    imported = _IMPORT_RE.search(code)
    if imported:
        lineno = code.count("\n", 0, imported.start()) + 1
        col = len(imported.group(0)) - len(imported.group(0).lstrip()) + 1
        return (
            f"import/export-from is not supported (processors run without a module loader) "
            f"at line {lineno}, column {col}"
        )
    prefix, body = _prepare(code)
    lines = body.split("\n")
    error = _compile(prefix + body + "\n;let process;})")
    if error is None:
        return NO_PROCESS
    message, lineno = error
    if lineno == len(lines) + 1:
        if "redefinition" in message:
            return None
        last = max((i for i, line in enumerate(lines) if line.strip()), default=0)
        return (
            f"{message} at end of script (line {last + 1}, column {len(lines[last].rstrip()) + 1}); "
            "check for unbalanced braces or an unterminated string, template or comment"
        )
    if not 1 <= lineno <= len(lines):
        return message
    if message.endswith("out of memory"):
        return f"{message}: the script is too large to check"
    return f"{message} at line {lineno}, column {_column(prefix, lines, lineno, message)}"
