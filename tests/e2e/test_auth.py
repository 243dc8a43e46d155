"""TIDEGATE_API_TOKEN bearer auth against a real supervisor: every protected
route (taken from the route table itself, so a new route cannot slip through)
rejects a missing or wrong token with 401 and the JSON error body; /healthz,
/readyz, /metrics and /openapi.json stay open."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from supervisor.api.routes import ROUTES
from tests.support.supervisor import Supervisor, file_sink, generator_spec

TOKEN = "tg-auth-" + "7f3a9c" * 5
OPEN = {"/healthz", "/readyz", "/metrics", "/openapi.json"}
PROTECTED = sorted(
    {(m, r.path) for r in ROUTES for m in (r.methods or set()) if m != "HEAD"}
    - {(m, p) for m in ("GET",) for p in OPEN}
)
WRONG = [
    None,
    "",
    "Bearer",
    "Bearer wrong",
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}",
    f"bearer{TOKEN}",
    TOKEN,
    f"Basic {TOKEN}",
    f"Bearer  {TOKEN}",
]


@pytest.fixture(scope="module")
def sup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisor]:
    tmp = tmp_path_factory.mktemp("auth")
    s = Supervisor(tmp, token=TOKEN)
    s.start()
    s.create(generator_spec("auth-p", [file_sink("out", tmp / "out.jsonl")], rate=100))
    try:
        yield s
    finally:
        s.close()


def _url(path: str) -> str:
    return re.sub(r"\{name\}", "auth-p", path)


def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, (r.request.method, r.request.url, r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == "unauthorized", body
    assert body["error"]["message"] and body["error"]["details"] == []
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in r.text


def test_route_table_is_covered() -> None:
    paths = {p for _, p in PROTECTED}
    assert {
        "/pipelines",
        "/pipelines/{name}",
        "/pipelines/{name}/pause",
        "/pipelines/{name}/resume",
        "/pipelines/{name}/stop",
        "/pipelines/{name}/restart",
        "/pipelines/{name}/checkpoints",
    } <= paths
    assert len(PROTECTED) >= 11


@pytest.mark.parametrize("header", WRONG, ids=lambda h: "missing" if h is None else repr(h)[:24])
def test_every_protected_route_rejects_missing_or_wrong_token(sup: Supervisor, header: str | None) -> None:
    headers = {} if header is None else {"authorization": header}
    with httpx.Client(base_url=sup.url, timeout=10) as c:
        for method, path in PROTECTED:
            assert_401(c.request(method, _url(path), headers=headers, json={"metadata": {"name": "x"}}))
    # nothing was changed by the rejected calls
    info = sup.info("auth-p")
    assert info["status"] in ("starting", "running")


def test_open_routes_need_no_token(sup: Supervisor) -> None:
    with httpx.Client(base_url=sup.url, timeout=10) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready"
        assert "tidegate_events_in" in c.get("/metrics").text
        assert c.get("/openapi.json").json()["openapi"].startswith("3.1")
        # a wrong token on an open route is ignored, not rejected
        assert c.get("/healthz", headers={"authorization": "Bearer nope"}).status_code == 200


def test_right_token_passes_and_auth_comes_before_the_body(sup: Supervisor) -> None:
    with httpx.Client(base_url=sup.url, timeout=30) as c:
        ok = {"authorization": f"Bearer {TOKEN}"}
        assert c.get("/pipelines", headers=ok).status_code == 200
        assert c.get("/pipelines/auth-p/checkpoints", headers=ok).status_code == 200
        assert c.get("/pipelines/nope", headers=ok).status_code == 404
        # an unauthenticated client cannot make the server read (or size-check) a body
        big = b"x" * (11 * 1024 * 1024)
        assert_401(c.post("/pipelines", content=big, headers={"content-type": "application/json"}))
        r = c.post("/pipelines", content=big, headers={**ok, "content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        # unknown routes: 401 without a token too (no route discovery for anonymous clients)
        assert_401(c.get("/nope"))


def test_rejected_bodies_do_not_break_keepalive(sup: Supervisor) -> None:
    """A 401 (or 404/415) answered before the body is read closes the connection
    cleanly (Connection: close), so a keep-alive client never hits a dead socket."""
    ok = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=sup.url, timeout=10) as c:
        for _ in range(60):
            r = c.post("/pipelines/auth-p/pause", json={"pad": "x" * 2000})
            assert_401(r)
            assert r.headers.get("connection") == "close"
            assert c.patch("/pipelines/nope", json={}, headers=ok).status_code == 404
            assert c.get("/pipelines", headers=ok).status_code == 200
