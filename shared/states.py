"""Pipeline statuses and desired states, the one place their names are written
(the API's `StatusName`, the metrics' status labels, the worker's heartbeat
state and the lease rows all come from here), and the status a pipeline starts
in. Imports: stdlib only.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal


class Status(str, Enum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class Desired(str, Enum):
    """What the operator asked for; persisted so it survives supervisor restarts."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    FAILED = "failed"  # failed for good until resume/restart/patch


STATUS_NAMES: tuple[str, ...] = tuple(s.value for s in Status)
# the API's status field (`Literal["starting", "running", ...]`), built from Status
StatusName = Literal[STATUS_NAMES]  # type: ignore[valid-type]


def runs(desired: Desired) -> bool:
    """A pipeline desired so has a worker (paused ones too: a paused worker holds its place)."""
    return desired in (Desired.RUNNING, Desired.PAUSED)


def initial_status(desired: Desired) -> Status:
    """The status a pipeline shows as it is taken up (adopted at start, spawned, or
    leased by a node): a paused one moves no data from its first instant, a running
    one is starting until its worker is ready, the others are what they are."""
    if desired == Desired.PAUSED:
        return Status.PAUSED
    if desired == Desired.STOPPED:
        return Status.STOPPED
    if desired == Desired.FAILED:
        return Status.FAILED
    return Status.STARTING


def initial_status_of(desired: str) -> Status:
    """`initial_status` of a stored desired state (a string; an unknown one is starting)."""
    try:
        return initial_status(Desired(desired))
    except ValueError:
        return Status.STARTING
