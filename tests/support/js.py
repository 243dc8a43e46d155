"""Shared helpers for the JavaScript processor tests: a factory of opened processors that the
fixture closes afterwards, and a check that a sandbox process has exited.

May import: shared.spec.model, worker.processors, structlog, the standard library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import structlog

from shared.spec.model import JavascriptProcessorSpec as JsSpec
from shared.spec.model import Limits
from worker.processors.base import ProcessorContext
from worker.processors.javascript import JavascriptProcessor

Make = Callable[..., JavascriptProcessor]


def processor_factory(pipeline: str) -> Iterator[Make]:
    """Fixture body: yield `make(code, id=, log=, open=, **limits)`; close every processor made."""
    opened: list[JavascriptProcessor] = []

    def _make(code: str, *, id: str = "p", log: Any = None, open: bool = True, **limits: int) -> JavascriptProcessor:
        ctx = ProcessorContext(pipeline=pipeline, log=log or structlog.get_logger())
        proc = JavascriptProcessor(JsSpec(id=id, inline=code, limits=Limits(**limits)), ctx)
        opened.append(proc)
        if open:
            proc.open()
        return proc

    yield _make
    for p in opened:
        p.close()


def process_gone(pid: int) -> bool:
    """True once `pid` has exited (gone, or a zombie waiting for its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
