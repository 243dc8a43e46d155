"""supervisor.jscheck: compile-only validation with line and column, never running the code."""

from __future__ import annotations

import time

import pytest

from supervisor import jscheck
from supervisor.jscheck import NO_PROCESS, check_javascript
from worker.processors import javascript


@pytest.mark.parametrize(
    "code",
    [
        "export function process(batch) { return batch; }",
        "function process(batch) { return batch; }",
        "const process = (batch) => batch;",
        "export const process = (batch) => batch;",
        "let n = 0;\nexport function process(batch) {\n  n += batch.length;\n  return batch;\n}\n",
        "export async function process(b) { await 1; return b; }\nawait Promise.resolve();",
        "function process(b) { with (b) {} return b; }",  # sloppy script form is fine
        "export default function process(b) { return b; }",  # a named default export declares it
        "export function helper(e) { return e; }\nexport { helper as h2 };\nexport function process(b) { return b; }",
    ],
)
def test_valid_code(code: str) -> None:
    assert check_javascript(code) is None


@pytest.mark.parametrize(
    "code",
    [
        "function transform(batch) { return batch; }",
        "function outer() { function process(b) { return b; } }",  # not top level
        "// function process(batch) {}\n",
        "export default function (batch) { return batch; }",
        "export default (batch) => batch;",
    ],
)
def test_missing_process(code: str) -> None:
    assert check_javascript(code) == NO_PROCESS
    assert NO_PROCESS.startswith("no function process(batch) defined")


@pytest.mark.parametrize(
    "code,expected",
    [
        (
            "function process(batch) {\n  return batch.map(e => {\n    e.x = ;\n  });\n}\n",
            "SyntaxError: unexpected token in expression: ';' at line 3, column 11",
        ),
        (
            "function process(batch) {\n  let a = 1\n  let b = 2 3;\n}",
            "SyntaxError: expecting ';' at line 3, column 13",
        ),
        ("function process(batch) {\n  foo bar;\n}", "SyntaxError: expecting ';' at line 2, column 7"),
        (
            "export function process(batch) {\n  with (batch) {}\n}",
            "SyntaxError: invalid keyword: with at line 2, column 3",
        ),
        (
            "function process(b) {\n  return b.filter(e => e.id %% 2);\n}",
            "SyntaxError: unexpected token in expression: '%' at line 2, column 30",
        ),
        (
            "x = 1 +;\nfunction process(b) { return b; }",
            "SyntaxError: unexpected token in expression: ';' at line 1, column 8",
        ),
    ],
)
def test_syntax_error_line_and_column(code: str, expected: str) -> None:
    assert check_javascript(code) == expected


@pytest.mark.parametrize(
    "code,line",
    [
        ("function process(batch) {\n  return batch;\n", 2),
        ("function process(batch) {\n  return batch;\n}}\n\n", 3),
        ("function process(batch) {\n  return `abc;\n}", 3),
        ("function process(batch) {\n  /* unclosed\n}", 3),
    ],
)
def test_unterminated_code_points_at_the_end(code: str, line: int) -> None:
    msg = check_javascript(code)
    assert msg is not None and msg.startswith("SyntaxError") and f"at end of script (line {line}, column" in msg
    assert "unbalanced braces" in msg


def test_imports_are_rejected_with_position() -> None:
    msg = check_javascript("const a = 1;\n  import x from 'lib';\nexport function process(b) { return b; }")
    assert msg == ("import/export-from is not supported (processors run without a module loader) at line 2, column 3")
    assert check_javascript("export * from 'x';\nexport function process(b) { return b; }") is not None


def test_hostile_code_is_never_run() -> None:
    for code in [
        "for (;;) {}\nfunction process(b) { return b; }",
        "/(a+)+$/.test('a'.repeat(60) + 'b');\nfunction process(b) { return b; }",
        "const a = []; for (;;) a.push(a.length);\nexport function process(b) { return b; }",
    ]:
        t0 = time.perf_counter()
        assert check_javascript(code) is None
        assert time.perf_counter() - t0 < 0.05


def test_pathological_nesting_is_bounded() -> None:
    t0 = time.perf_counter()
    msg = check_javascript("(" * 100000)
    assert msg is not None and "stack overflow" in msg
    assert time.perf_counter() - t0 < 0.5


def test_typical_check_is_fast() -> None:
    code = (
        "let n = 0;\n"
        + "".join(f"function f{i}(e) {{ return e.after.id + {i}; }}\n" for i in range(200))
        + "export function process(batch) {\n  return batch.map(e => ({...e, v: f1(e)}));\n}\n"
    )
    broken = code.replace("return e.after.id + 150;", "return e.after.id + ;")
    for c in (code, broken):
        t0 = time.perf_counter()
        check_javascript(c)
        assert time.perf_counter() - t0 < 0.05
    assert check_javascript(broken) == "SyntaxError: unexpected token in expression: ';' at line 152, column 40"


def test_module_rule_matches_the_worker() -> None:
    assert jscheck._MODULE_RE.pattern == javascript._MODULE_RE.pattern
    for code in [
        "export function process(b) {}",
        "  export const process = 1",
        "function process(b) {}",
        "// export function process(b) {}",
        "const exported = 1;",
    ]:
        assert jscheck.is_module(code) == javascript.is_module(code)


def test_large_script_stays_bounded() -> None:
    code = (
        "".join(
            f"function f{i}(e) {{ const x = e.after.id + {i}; return x > 3 ? {{...e, v: x}} : e; }}\n"
            for i in range(3000)
        )
        + "export function process(batch) {\n  return batch.map(e => f1(e) +);\n}\n"
    )
    t0 = time.perf_counter()
    msg = check_javascript(code)
    assert msg is not None and msg.startswith("SyntaxError: unexpected token in expression: ')' at line 3002, column")
    assert time.perf_counter() - t0 < 1.0  # ~300 KB: no bisecting re-compiles
