"""worker/sources/handoff.py: the reader-thread -> loop hand-off of the postgres and mysql sources."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from tests.support import wait_until
from worker.sources.handoff import Handoff, Stopped


def evs(*positions: str) -> list[dict[str, Any]]:
    return [{"op": "c", "source": {"position": p}} for p in positions]


def positions(chunk: Any) -> list[str]:
    return [e["source"]["position"] for e in chunk.events]


def test_pieces_are_joined_up_to_max_events_in_order() -> None:
    async def main() -> None:
        h = Handoff(100)
        h.bind(asyncio.get_running_loop())
        h.put(evs("1", "2"), False, position="P2", key=(2,))
        h.put(evs("3"), True, position="P3", key=(3,))
        h.put(evs("4", "5"), True, position="P5", key=(5,))
        assert (h.count, h.handed, h.published, h.published_key, h.last_position) == (5, 5, "P5", (5,), "5")
        first = await h.get(3, 1.0)
        assert first is not None and positions(first) == ["1", "2", "3"] and first.tx_end is True
        second = await h.get(3, 1.0)
        assert second is not None and positions(second) == ["4", "5"] and second.tx_end is True
        assert h.count == 0 and h.handed == 5
        h.close()

    asyncio.run(main())


def test_a_piece_bigger_than_max_events_is_not_split() -> None:
    async def main() -> None:
        h = Handoff(100)
        h.bind(asyncio.get_running_loop())
        h.put(evs("1", "2", "3"), False)
        h.put(evs("4"), True)
        got = await h.get(2, 1.0)
        assert got is not None and positions(got) == ["1", "2", "3"] and got.tx_end is False
        h.close()

    asyncio.run(main())


def test_get_returns_none_after_the_wait_and_wakes_on_a_thread_put() -> None:
    async def main() -> None:
        h = Handoff(100)
        h.bind(asyncio.get_running_loop())
        t0 = time.monotonic()
        assert await h.get(10, 0.05) is None
        assert time.monotonic() - t0 >= 0.04
        timer = threading.Timer(0.1, lambda: h.put(evs("a"), True))
        timer.start()
        got = await h.get(10, 30.0)
        assert got is not None and positions(got) == ["a"]
        timer.join()
        h.close()

    asyncio.run(main())


def test_an_error_surfaces_after_the_pieces_handed_over_before_it() -> None:
    async def main() -> None:
        h = Handoff(100)
        h.bind(asyncio.get_running_loop())
        h.put(evs("1"), True)
        h.fail(RuntimeError("slot gone"))
        got = await h.get(10, 1.0)
        assert got is not None and positions(got) == ["1"]
        with pytest.raises(RuntimeError, match="slot gone"):
            await h.get(10, 1.0)
        h.close()

    asyncio.run(main())


def test_an_error_from_the_thread_wakes_a_waiting_get() -> None:
    async def main() -> None:
        h = Handoff(100)
        h.bind(asyncio.get_running_loop())
        timer = threading.Timer(0.1, lambda: h.fail(ValueError("fatal")))
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(ValueError, match="fatal"):
            await h.get(10, 30.0)
        assert time.monotonic() - t0 < 20
        timer.join()
        h.close()

    asyncio.run(main())


def test_send_blocks_while_full_and_goes_on_once_the_loop_took_half() -> None:
    async def main() -> None:
        h = Handoff(4)
        h.bind(asyncio.get_running_loop())
        sent: list[str] = []

        def reader() -> None:
            for i in range(4):
                h.send(evs(f"{i}a", f"{i}b"), True)
                sent.append(str(i))

        t = threading.Thread(target=reader)
        t.start()
        await asyncio.to_thread(wait_until, lambda: h.thread_blocked, timeout=10, message="send blocks when full")
        assert sent == ["0", "1"] and h.count == 4
        got: list[str] = []
        while len(got) < 8:
            chunk = await h.get(2, 1.0)
            if chunk is not None:
                got += positions(chunk)
        await asyncio.to_thread(t.join, 10)
        assert not t.is_alive() and sent == ["0", "1", "2", "3"]
        assert got == ["0a", "0b", "1a", "1b", "2a", "2b", "3a", "3b"]
        h.close()

    asyncio.run(main())


def test_stop_ends_a_blocked_send_and_a_sleep_with_stopped() -> None:
    h = Handoff(1)
    h.put(evs("1"), True)
    outcome: list[str] = []

    def reader() -> None:
        try:
            h.send(evs("2"), True)
            outcome.append("sent")
        except Stopped:
            outcome.append("stopped")

    t = threading.Thread(target=reader)
    t.start()
    wait_until(lambda: h.thread_blocked, timeout=10, message="send blocks when full")
    h.stop()
    t.join(10)
    assert outcome == ["stopped"] and h.count == 1
    assert h.wait_room() is False
    with pytest.raises(Stopped):
        h.sleep(30)
    with pytest.raises(Stopped):
        h.send(evs("3"), True)
    h.close()


def test_wake_thread_ends_a_wait_on_the_pipe() -> None:
    h = Handoff(10)
    threading.Timer(0.1, h.wake_thread).start()
    t0 = time.monotonic()
    h.wait_wake(30.0)
    assert time.monotonic() - t0 < 20
    h.close()
