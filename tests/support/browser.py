"""Headless Chromium for the console's tests: Debian's `chromium` package (installed
by `make browser`, part of `make test`), driven by Playwright for Python with
`executable_path`, so no browser is downloaded. A missing browser fails the test
with the command to run (never a silent skip).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TIDEGATE_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))
# no GPU, no sandbox (root in CI), and nothing that phones home
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    for cand in (os.environ.get("TIDEGATE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if cand and os.access(cand, os.X_OK):
            return cand
    pytest.fail(
        "chromium is not installed; `make browser` (part of `make test`) installs it: apt-get install -y chromium"
    )


@contextmanager
def browser() -> Iterator[Any]:
    """A fresh headless Chromium (Playwright gives each launch its own temporary profile)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed; `make install` installs the test extras")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
