"""The processor contract.

A processor takes a batch as ONE JSON array (bytes) and returns one JSON array
(bytes): the chain passes JSON text from one processor to the next and the
runtime decodes it once at the end. `process` is synchronous and is run by the
runtime on the processor executor thread, never on the loop. It raises
`shared.errors.ProcessorError` (naming the processor and, for a breached limit,
the limit) on any failure. `open` builds the context (once per worker);
`reset` replaces it after a limit breach.

Native processors (`NativeProcessor`: filter, flatten, outbox, mask) run in the
worker itself on decoded events: `apply(events) -> events`, a pure function
that never changes what it is given (a changed event is a new dict sharing what
it did not change), so the chain hands consecutive native steps the batch's own
objects and encodes once. Their options are compiled in `open` (once), never
per event. Imports: shared + msgspec + structlog.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


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


class NativeProcessor(Processor):
    """A processor that runs in the worker on decoded events (CONTRACT section 5)."""

    @abc.abstractmethod
    def open(self) -> None:
        """Compile the options (once)."""

    @abc.abstractmethod
    def apply(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The batch's events after this step; raises ProcessorError. Never mutates `events`."""

    def process(self, batch_json: bytes) -> bytes:
        """The same step on JSON text (the chain calls `apply` directly)."""
        return _encode(self.apply(_decode(batch_json)))
