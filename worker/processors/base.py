"""The processor contract.

A processor takes a batch as ONE JSON array (bytes) and returns one JSON array
(bytes): the chain passes JSON text from one processor to the next and the
runtime decodes it once at the end. `process` is synchronous and is run by the
runtime on the processor executor thread, never on the loop. It raises
`shared.errors.ProcessorError` (naming the processor and, for a breached limit,
the limit) on any failure. `open` builds the context (once per worker);
`reset` replaces it after a limit breach. Imports: shared + quickjs.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import structlog


@dataclass(slots=True)
class ProcessorContext:
    pipeline: str
    log: Any = field(default_factory=lambda: structlog.get_logger())


class Processor(abc.ABC):
    def __init__(self, spec: Any, ctx: ProcessorContext) -> None:
        self.spec = spec
        self.ctx = ctx
        self.id: str = spec.id

    @abc.abstractmethod
    def open(self) -> None:
        """Build the sandbox (called once, on the processor thread)."""

    @abc.abstractmethod
    def process(self, batch_json: bytes) -> bytes:
        """Run on one batch: JSON array in, JSON array out."""

    def reset(self) -> None:
        """Throw the context away and build a fresh one (after a limit breach)."""
        self.close()
        self.open()

    def close(self) -> None:
        """Release the sandbox."""
