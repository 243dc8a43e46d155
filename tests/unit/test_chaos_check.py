"""The chaos checker's duplicate bound (tests.chaos.check.gen_row): a duplicate is allowed only
within DUP_WINDOW events after a checkpoint read before a fault; any other is an excess."""

from __future__ import annotations

from tests.chaos.check import DUP_WINDOW, gen_row


def test_a_duplicate_just_past_a_fault_checkpoint_is_allowed() -> None:
    ids = [*range(1, 5001), *range(3001, 3101), *range(5001, 6001)]  # 3001..3100 again after a crash
    row = gen_row("p", "s", "required", ids, 6000, [], marks=[0, 3000])
    assert row.dup == 100 and row.excess == 0 and not row.bad()


def test_a_duplicate_far_from_every_fault_is_an_excess() -> None:
    far = 3000 + DUP_WINDOW + 1
    ids = [*range(1, 8001), far, far + 1]
    row = gen_row("p", "s", "required", ids, 8000, [], marks=[0, 3000])
    assert row.dup == 2 and row.excess == 2 and row.bad()


def test_without_marks_duplicates_are_only_counted() -> None:
    row = gen_row("p", "s", "required", [1, 2, 2, 3], 3, [])
    assert row.dup == 1 and row.excess == 0 and not row.bad()
