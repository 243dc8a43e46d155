"""Pipeline statuses and desired states. Imports: stdlib only."""

from __future__ import annotations

from enum import Enum


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
