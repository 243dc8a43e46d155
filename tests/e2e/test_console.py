"""The console (CONTRACT section 8a) in a real headless Chromium against a real
`tidegate serve`: the overview lists the pipelines with live counters, the pause
button pauses (the API says so within 2 s) while the other pipeline flows on, and
with TIDEGATE_API_TOKEN set the page shows a sign-in prompt and no data until the
token is given. The page fetches nothing from outside the supervisor. A screenshot
of the overview is saved under build/test-artifacts/ (TIDEGATE_TEST_ARTIFACTS)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.support import wait_until
from tests.support.browser import artifact, browser
from tests.support.supervisor import Supervisor, file_sink, generator_spec

TOKEN = "tg-console-" + "5e1c0a" * 5


def shown_events(page: Any, name: str) -> int:
    cell = page.query_selector(f'#pipes tbody tr[data-name="{name}"] td[data-col="events_out"]')
    text = cell.text_content() if cell is not None else ""
    return int(text.replace(",", "")) if text and text != "—" else -1


def shown_status(page: Any, name: str) -> str:
    cell = page.query_selector(f'#pipes tbody tr[data-name="{name}"] td[data-col="status"]')
    return cell.text_content() if cell is not None else ""


def spark_points(page: Any, name: str) -> int:
    line = page.query_selector(f'#pipes tbody tr[data-name="{name}"] polyline')
    return len((line.get_attribute("points") or "").split()) if line is not None else 0


def own_origin_only(urls: list[str], origin: str) -> None:
    outside = [u for u in urls if not u.startswith(origin + "/")]
    assert not outside, f"the console fetched from outside the supervisor: {outside}"
    assert any(u.endswith("/ui/console.js") for u in urls) and any("/pipelines" in u for u in urls), urls


def test_overview_live_and_pause(tmp_path: Path) -> None:
    with Supervisor(tmp_path) as sup, browser() as b:
        names = ("ui-orders", "ui-users")
        for n in names:
            sup.create(generator_spec(n, [file_sink("out", tmp_path / f"{n}.jsonl")], rate=200))
        for n in names:
            sup.wait_status(n, "running")
        page = b.new_page(viewport={"width": 1280, "height": 520})
        urls: list[str] = []
        page.on("request", lambda r: urls.append(r.url))
        page.goto(sup.url + "/ui")
        for n in names:
            wait_until(lambda n=n: shown_events(page, n) > 0, timeout=15, message=f"{n} on the page")
        first = {n: shown_events(page, n) for n in names}
        for n in names:  # the counters change without a reload
            wait_until(lambda n=n: shown_events(page, n) > first[n], timeout=10, message=f"{n}'s counter moving")
            assert shown_status(page, n) == "running"
        wait_until(
            lambda: all(
                page.text_content(f'#pipes tr[data-name="{n}"] td[data-col="rate"]') not in ("—", "0.0") for n in names
            ),
            timeout=10,
            message="events/s on the page",
        )
        wait_until(  # a few seconds of history in every sparkline
            lambda: all(spark_points(page, n) >= 4 for n in names),
            timeout=15,
            message="the sparklines",
        )
        page.screenshot(path=str(artifact("console-overview.png")))

        page.click('a[href="#/p/ui-orders"]')
        page.wait_for_selector("#detail:not([hidden])")
        wait_until(lambda: '"name": "ui-orders"' in (page.text_content("#d-spec") or ""), message="the spec")
        wait_until(lambda: page.query_selector('#d-sinks tr[data-sink="out"]') is not None, message="the sink row")
        clicked = time.monotonic()
        page.click('.actions button[data-op="pause"]')
        wait_until(lambda: sup.info("ui-orders")["status"] == "paused", timeout=2, message="paused in the API")
        wait_until(lambda: page.text_content("#d-status") == "paused", timeout=2, message="paused on the page")
        assert time.monotonic() - clicked < 2.5
        page.screenshot(path=str(artifact("console-pipeline.png")))

        page.click('a[href="#/"]')
        wait_until(lambda: shown_status(page, "ui-orders") == "paused", timeout=2, message="paused in the list")
        other = shown_events(page, "ui-users")
        wait_until(lambda: shown_events(page, "ui-users") > other, timeout=10, message="the other pipeline flowing")
        assert sup.info("ui-users")["status"] == "running"

        page.click('a[href="#/p/ui-orders"]')
        page.click('.actions button[data-op="resume"]')
        wait_until(lambda: sup.info("ui-orders")["status"] == "running", timeout=10, message="resumed in the API")
        own_origin_only(urls, sup.url)


def test_token_required_before_any_data(tmp_path: Path) -> None:
    doc = generator_spec("ui-secret-pipe", [file_sink("out", tmp_path / "o.jsonl")], rate=50)
    doc["spec"]["sinks"].append(
        {
            "type": "kafka",
            "config": {
                "id": "k",
                "required": False,
                "brokers": "127.0.0.1:1",
                "topic": "t",
                "client_conf": {"sasl.password": "uipass1"},
            },
        }
    )
    with Supervisor(tmp_path, token=TOKEN) as sup, browser() as b:
        sup.create(doc)
        raw = httpx.get(sup.url + "/ui")  # the page is public and embeds nothing
        assert raw.status_code == 200 and "ui-secret-pipe" not in raw.text
        page = b.new_page()
        urls: list[str] = []
        page.on("request", lambda r: urls.append(r.url))
        page.goto(sup.url + "/ui")
        page.wait_for_selector("#signin:not([hidden])")
        assert page.is_hidden("#overview") and page.is_hidden("#detail")
        assert "ui-secret-pipe" not in page.content()

        page.fill("#token", "wrong-token")
        page.click('#signin-form button[type="submit"]')
        wait_until(lambda: "refused" in (page.text_content("#signin-error") or ""), message="the refusal")
        assert page.is_visible("#signin") and page.is_hidden("#overview")
        assert "ui-secret-pipe" not in page.content()

        page.fill("#token", TOKEN)
        page.click('#signin-form button[type="submit"]')
        page.wait_for_selector('#pipes tbody tr[data-name="ui-secret-pipe"]')
        assert page.is_hidden("#signin")
        page.click('a[href="#/p/ui-secret-pipe"]')
        wait_until(lambda: "client_conf" in (page.text_content("#d-spec") or ""), message="the spec")
        html = page.content()
        assert "uipass1" not in html and TOKEN not in html and '"sasl.password": "***"' in html

        page.click("#signout")
        page.wait_for_selector("#signin:not([hidden])")
        assert "ui-secret-pipe" not in page.content()
        own_origin_only(urls, sup.url)
