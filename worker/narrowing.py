"""Narrowing a failed batch to its poison events (CONTRACT section 12): the batch is split
in halves, recursively, and each part run again; an event that still fails alone is
poison, every other event goes on in order. The work is bounded: at most 2n - 1 runs for
a batch of n events (each part splits once), and fewer than 2k log2(n) when k events are
poison. Imports: stdlib + shared.errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from shared.errors import ProcessorError

T = TypeVar("T")


@dataclass(slots=True)
class Poison:
    index: int  # in the batch
    processor_id: str
    error: str


def narrow(
    n: int,
    run: Callable[[int, int], list[T]],
    first: ProcessorError,
    policy: Callable[[str], str],
    reset: Callable[[str], None],
) -> tuple[list[T], list[Poison]]:
    """`run(lo, hi)` runs the events [lo, hi) (raising ProcessorError); `first` is the whole
    batch's failure. A failure whose processor's policy is `fail` is raised as it is."""
    out: list[T] = []
    poison: list[Poison] = []
    # a stack of parts still to run, in order: (lo, hi, the error it failed with or None)
    todo: list[tuple[int, int, ProcessorError | None]] = [(0, n, first)]
    while todo:
        lo, hi, err = todo.pop()
        if err is None:
            try:
                out.extend(run(lo, hi))
                continue
            except ProcessorError as exc:
                if policy(exc.processor_id) == "fail":
                    raise
                if exc.limit:
                    reset(exc.processor_id)
                err = exc
        if hi - lo == 1:
            poison.append(Poison(lo, err.processor_id, err.message))
            continue
        mid = (lo + hi) // 2
        todo.append((mid, hi, None))
        todo.append((lo, mid, None))
    return out, poison


def positions(events: list[dict[str, Any]], poison: list[Poison]) -> list[str]:
    return [str((events[p.index].get("source") or {}).get("position")) for p in poison]
