"""The dead-letter queue's rows (CONTRACT section 12), shared by both state stores.

`DlqNew` is an event to park; `DlqEntry` a parked one. An entry is unique per
(pipeline, stage, position, digest of the event): parking the same event again (a
batch read again after a crash) changes nothing, so a crash never parks it twice.
`DlqFull` is raised, and nothing of that call is stored, when the new entries would
take the pipeline's DLQ past `max_events` or `max_bytes`. Imports: stdlib + shared.errors.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from shared.errors import TidegateError


class DlqFull(TidegateError):
    """The pipeline's DLQ has no room: the pipeline holds (nothing the policy keeps is dropped)."""

    kind = "dlq"
    retryable = True


@dataclass(slots=True)
class DlqNew:
    stage: str  # "processor:<id>" | "sink:<id>"
    error: str
    position: str
    event: bytes  # the event's JSON
    generation: int = 0

    @property
    def digest(self) -> str:
        """The event without the times a re-read stamps anew (`ts_ms`, and the generator's
        `source.ts_ms`): the same event parked again after a crash is the same entry."""
        try:
            ev = json.loads(self.event)
        except ValueError:
            return hashlib.sha1(self.event).hexdigest()
        if isinstance(ev, dict):
            ev.pop("ts_ms", None)
            if isinstance(ev.get("source"), dict) and ev["source"].get("connector") == "generator":
                ev["source"] = {k: v for k, v in ev["source"].items() if k != "ts_ms"}
        return hashlib.sha1(json.dumps(ev, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(slots=True)
class DlqEntry:
    id: str
    stage: str
    error: str
    position: str
    event: bytes
    attempts: int
    first_seen: str
    last_seen: str
    generation: int

    def document(self, decode: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "stage": self.stage,
            "error": self.error,
            "position": self.position,
            "event": decode(self.event),
            "attempts": self.attempts,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "generation": self.generation,
        }


COLS = "id, stage, error, position, event, attempts, first_seen, last_seen, generation"


def entry(r: tuple[Any, ...]) -> DlqEntry:
    return DlqEntry(str(r[0]), r[1], r[2], r[3], bytes(r[4]), int(r[5]), r[6], r[7], int(r[8]))


def full_message(pipeline: str, events: int, nbytes: int, max_events: int, max_bytes: int) -> str:
    return (
        f"pipeline {pipeline!r}: the DLQ is full ({events} entries, {nbytes} bytes; spec.dlq allows "
        f"{max_events} entries, {max_bytes} bytes): holding until entries are replayed or purged"
    )
