"""Hostile request bodies on every route that takes one, against a real supervisor:
depth, sizes around the 10 MiB limit, invalid UTF-8, NUL, duplicate keys, huge
numbers, YAML aliases and tags, wrong content types, non-object tops. Every answer
is a 4xx with the error body of CONTRACT section 8 (never a 5xx, never a hang), and
`/healthz` answers within 1 s throughout (probed from a thread meanwhile)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.supervisor import Supervisor, file_sink, generator_spec

MIB = 1024 * 1024
JSON, YAML, MERGE = "application/json", "application/yaml", "application/merge-patch+json"
BOMB = b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + b"".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
    f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n".encode()
    for i in range(8)
)
LABELS = b",".join(b'"k%d": "v"' % i for i in range(300_000))  # 300,000 keys in one object


def padded(total: int) -> bytes:
    """A JSON object of exactly `total` bytes (valid JSON, invalid spec)."""
    head, tail = b'{"metadata": {"nope": "', b'"}}'
    return head + b"x" * (total - len(head) - len(tail)) + tail


# (label, content-type or None, body, expected status)
CASES: list[tuple[str, str | None, bytes, int]] = [
    ("deep json arrays", JSON, b"[" * 100_000 + b"]" * 100_000, 400),
    ("deep json objects", JSON, b'{"a":' * 100_000 + b"1" + b"}" * 100_000, 400),
    ("deep json, no content type", None, b"[" * 100_000 + b"]" * 100_000, 400),
    ("deep yaml flow", YAML, b"a: " + b"[" * 100_000 + b"]" * 100_000, 400),
    ("deep yaml block", YAML, b"- " * 50_000 + b"x\n", 400),
    ("deep but parseable json", JSON, b'{"metadata": ' + b"[" * 500 + b"]" * 500 + b"}", 400),
    ("yaml alias bomb", YAML, BOMB, 400),
    ("yaml alias", YAML, b"metadata: &m {name: a}\nspec: *m\n", 400),
    ("yaml python tag", YAML, b'metadata: !!python/object/apply:os.system ["touch /tmp/tidegate-pwned"]\n', 400),
    ("yaml binary tag", YAML, b"metadata: {name: !!binary aGk=}\n", 400),
    ("yaml set tag", YAML, b"metadata: !!set {a, b}\n", 400),
    ("yaml local tag", YAML, b"metadata: !x {name: a}\n", 400),
    ("yaml two documents", YAML, b"metadata: {name: a}\n---\nmetadata: {name: b}\n", 400),
    ("yaml non-string key", YAML, b"metadata: {name: a}\n1: x\n", 400),
    ("yaml huge int", YAML, b"metadata: {name: " + b"9" * 5000 + b"}\n", 400),
    ("yaml inf", YAML, b"metadata: {name: a}\nspec: {batch: {max_ms: .inf}}\n", 422),
    ("yaml NUL byte", YAML, b"metadata: {name: a\x00}\n", 400),
    ("yaml duplicate key", YAML, b"metadata: {name: a}\nmetadata: {name: b}\n", 400),
    ("json duplicate key", JSON, b'{"metadata": {"name": "a"}, "metadata": {"name": "b"}}', 400),
    ("json 1e400", JSON, b'{"spec": {"batch": {"max_ms": 1e400}}}', 400),
    ("json 5000 digits", JSON, b'{"spec": {"batch": {"max_ms": ' + b"9" * 5000 + b"}}}", 400),
    ("json 2**70", JSON, b'{"spec": {"batch": {"max_ms": %d}}}' % 2**70, 422),
    ("json NaN", JSON, b'{"spec": {"batch": {"max_ms": NaN}}}', 400),
    ("json Infinity", JSON, b'{"spec": {"batch": {"max_ms": -Infinity}}}', 400),
    ("json NUL escape", JSON, b'{"metadata": {"name": "a\\u0000"}}', 422),
    ("json NUL escape in key", JSON, b'{"metadata": {"labels": {"a\\u0000": "b"}}}', 422),
    ("raw NUL byte", JSON, b'{"metadata": {"name": "a\x00"}}', 400),
    ("invalid utf-8", JSON, b'{"metadata": {"name": "\xff\xfe"}}', 400),
    ("invalid utf-8 yaml", YAML, b"metadata: {name: \xc3\x28}\n", 400),
    ("lone surrogate escape", JSON, b'{"metadata": {"name": "\\ud800"}}', 422),
    ("lone surrogate in key", JSON, b'{"metadata": {"labels": {"\\udfff": "a"}}}', 422),
    ("empty body", JSON, b"", 400),
    ("blank body", YAML, b" \n\t\n", 400),
    ("comment-only yaml", YAML, b"# nothing\n", 422),
    ("json string", JSON, b'"a pipeline"', 422),
    ("json array", JSON, b"[1, 2]", 422),
    ("json number", JSON, b"42", 422),
    ("json null", JSON, b"null", 422),
    ("json true", None, b"true", 422),
    ("truncated json", JSON, b'{"metadata": {', 400),
    ("text/plain", "text/plain", b'{"metadata": {}}', 415),
    ("xml", "application/xml", b"<pipeline/>", 415),
    ("form", "application/x-www-form-urlencoded", b"a=b", 415),
    ("multipart", "multipart/form-data; boundary=x", b"--x--", 415),
    ("just under 10 MiB", JSON, padded(10 * MIB - 64), 422),
    ("just under 10 MiB yaml", YAML, b"metadata: {nope: '" + b"x" * (10 * MIB - 64) + b"'}\n", 422),
    ("4 MiB of labels", JSON, b'{"metadata": {"nope": 1, "labels": {' + LABELS + b"}}}", 422),
    ("10 MiB + 1", JSON, padded(10 * MIB + 1), 413),
]


class HealthProbe:
    """GET /healthz in a loop from a thread; records every answer slower than 1 s or not 200."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=5.0)
        self.bad: list[str] = []
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                r = self.client.get("/healthz")
                took = time.monotonic() - t0
                if r.status_code != 200 or took > 1.0:
                    self.bad.append(f"/healthz {r.status_code} after {took:.2f} s")
            except httpx.HTTPError as exc:
                self.bad.append(f"/healthz {exc!r} after {time.monotonic() - t0:.2f} s")
            self.count += 1
            self._stop.wait(0.05)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()


@pytest.fixture(scope="module")
def sup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisor]:
    tmp = tmp_path_factory.mktemp("hostile")
    with Supervisor(tmp) as s:
        s.create(generator_spec("target", [file_sink("out", tmp / "out.jsonl")], rate=50))
        yield s


def assert_error(r: httpx.Response, status: int, what: str) -> None:
    assert r.status_code == status, f"{what}: {r.status_code} {r.text[:300]}"
    body = r.json()
    assert set(body) == {"error"}, f"{what}: {body}"
    err = body["error"]
    assert set(err) == {"code", "message", "details"} and err["message"], f"{what}: {body}"
    assert isinstance(err["details"], list), f"{what}: {body}"


def send(sup: Supervisor, method: str, path: str, ctype: str | None, body: bytes) -> httpx.Response:
    headers = {"content-type": ctype} if ctype else {}
    with httpx.Client(base_url=sup.url, timeout=30.0) as c:  # a fresh connection: a 413 closes it
        return c.request(method, path, content=body, headers=headers)


@pytest.mark.parametrize("route", ["POST /pipelines", "PATCH /pipelines/target"])
def test_hostile_bodies_answer_4xx_and_healthz_keeps_answering(sup: Supervisor, route: str) -> None:
    method, path = route.split()
    before = sup.info("target")["spec"]
    with HealthProbe(sup.url) as probe:
        for label, ctype, body, status in CASES:
            t0 = time.monotonic()
            r = send(sup, method, path, ctype, body)
            took = time.monotonic() - t0
            assert_error(r, status, f"{route} {label}")
            if "alias" in label or "deep" in label:
                assert took < 5, f"{route} {label} took {took:.1f} s"  # hung for minutes before
        # a merge patch type is fine on PATCH only
        r = send(sup, method, path, MERGE, b"[" * 100_000 + b"]" * 100_000)
        assert_error(r, 400 if method == "PATCH" else 415, f"{route} merge-patch deep")
        # over the limit without a Content-Length (chunked): still 413
        r = sup.client.request(method, path, content=iter([b" " * MIB] * 11), headers={"content-type": JSON})
        assert_error(r, 413, f"{route} chunked over 10 MiB")
    assert probe.count > 0 and not probe.bad, probe.bad[:10]
    assert not Path("/tmp/tidegate-pwned").exists()
    assert sup.info("target")["spec"] == before
    assert [p["name"] for p in sup.client.get("/pipelines").json()] == ["target"]


def test_action_routes_ignore_hostile_bodies(sup: Supervisor) -> None:
    """POSTs that take no body: a hostile one changes nothing and never makes a 5xx."""
    bodies = [(c, b) for label, c, b, _ in CASES if len(b) < MIB]
    with HealthProbe(sup.url) as probe:
        for op in ("pause", "resume", "stop", "restart"):
            for ctype, body in bodies[:12]:
                r = send(sup, "POST", f"/pipelines/nope/{op}", ctype, body)
                assert_error(r, 404, f"POST /pipelines/nope/{op}")
    assert not probe.bad, probe.bad[:10]


@pytest.mark.parametrize(
    "ctype,body",
    [
        (JSON, b"[" * 100_000 + b"]" * 100_000),
        (JSON, b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
        (YAML, b"a: " + b"[" * 100_000 + b"]" * 100_000),
        (YAML, b"- " * 50_000 + b"x\n"),
    ],
    ids=["json-arrays", "json-objects", "yaml-flow", "yaml-block"],
)
def test_deep_bodies_are_400_on_post_and_patch(sup: Supervisor, ctype: str, body: bytes) -> None:
    for method, path in (("POST", "/pipelines"), ("PATCH", "/pipelines/target")):
        r = send(sup, method, path, ctype, body)
        assert_error(r, 400, f"{method} {path}")
        assert "nesting" in r.json()["error"]["message"]


def test_alias_bomb_is_refused_while_healthz_answers(sup: Supervisor) -> None:
    with HealthProbe(sup.url) as probe:
        for method, path in (("POST", "/pipelines"), ("PATCH", "/pipelines/target")):
            with httpx.Client(base_url=sup.url, timeout=10.0) as c:
                r = c.request(method, path, content=BOMB, headers={"content-type": YAML})
            assert_error(r, 400, f"{method} {path} alias bomb")
            assert "YAML aliases" in r.json()["error"]["message"]
    assert not probe.bad, probe.bad[:10]


def test_empty_name_is_one_422_with_the_field_path(sup: Supervisor, tmp_path: Path) -> None:
    """The same message as `tidegate validate` (one conversion path), not msgspec's."""
    doc = generator_spec("", [file_sink("out", tmp_path / "o.jsonl")])
    r = sup.client.post("/pipelines", json=doc)
    assert_error(r, 422, "empty name")
    assert r.json()["error"]["details"] == [
        {"path": "metadata.name", "message": "must match ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"}
    ]
