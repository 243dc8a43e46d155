"""shared.states: the one list of status names, and the status a pipeline starts in."""

from __future__ import annotations

from typing import get_args

from shared.states import STATUS_NAMES, Desired, Status, StatusName, initial_status, initial_status_of, runs
from supervisor.api.models import PipeInfo, ReadyPipeline


def test_status_names_come_from_the_enum() -> None:
    assert STATUS_NAMES == ("starting", "running", "paused", "stopping", "stopped", "failed")
    assert get_args(StatusName) == STATUS_NAMES
    assert PipeInfo.__annotations__["status"] in ("StatusName", StatusName)
    assert ReadyPipeline.__annotations__["status"] in ("StatusName", StatusName)


def test_initial_status_follows_desired() -> None:
    assert initial_status(Desired.RUNNING) is Status.STARTING
    assert initial_status(Desired.PAUSED) is Status.PAUSED  # a worker started paused moves no data
    assert initial_status(Desired.STOPPED) is Status.STOPPED
    assert initial_status(Desired.FAILED) is Status.FAILED


def test_initial_status_of_a_stored_string() -> None:
    assert initial_status_of("running") is Status.STARTING
    assert initial_status_of("paused") is Status.PAUSED
    assert initial_status_of("stopped") is Status.STOPPED
    assert initial_status_of("failed") is Status.FAILED
    assert initial_status_of("something-else") is Status.STARTING


def test_runs_only_running_and_paused() -> None:
    assert [d for d in Desired if runs(d)] == [Desired.RUNNING, Desired.PAUSED]
