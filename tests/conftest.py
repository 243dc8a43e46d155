"""Shared fixtures: a real supervisor per test (`supervisor`), on a temp state dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.supervisor import Supervisor


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    sup = Supervisor(tmp_path)
    sup.start()
    try:
        yield sup
    finally:
        sup.close()
