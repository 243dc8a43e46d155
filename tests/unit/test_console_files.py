"""The console's files (CONTRACT section 8a) ship in the package and reference no
URL outside the supervisor: no CDN, no web font, no absolute URL at all (the one
`http://www.w3.org/2000/svg` is the SVG namespace name, which is never fetched)."""

from __future__ import annotations

import re

from supervisor import console

SVG_NS = "http://www.w3.org/2000/svg"


def test_every_file_is_in_the_package() -> None:
    for name in console.FILES:
        assert console.read(name), name


def test_no_external_url() -> None:
    for name in console.FILES:
        text = console.read(name).decode().replace(SVG_NS, "")
        assert not re.search(r"(?i)\b[a-z][a-z0-9+.-]*://|(?<![\w:])//[\w.-]+\.\w", text), name
        assert "@import" not in text and "url(" not in text, name
        for ref in re.findall(r'(?:src|href)="([^"]*)"', text):
            assert ref.startswith(("/ui/", "#")) or ref == "data:,", (name, ref)


def test_the_page_embeds_no_inline_script_or_style() -> None:
    html = console.read("index.html").decode()
    assert (
        "<style" not in html
        and "style=" not in html
        and re.findall(r"<script[^>]*>", html) == ['<script src="/ui/console.js" defer>']
    )
    assert "script-src 'self'" in console.CSP and "connect-src 'self'" in console.CSP
