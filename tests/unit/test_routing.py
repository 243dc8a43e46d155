"""Per-event routing templates (`${source.table}`, `${op}` ...)."""

from __future__ import annotations

from worker.routing import compile_template, is_template

EVENT = {"op": "u", "source": {"db": "shop", "table": "orders", "position": 42, "meta": {"shard": 3}}}


def test_a_plain_string_is_returned_as_is() -> None:
    render = compile_template("cdc.orders")
    assert render(EVENT) == "cdc.orders" and render({}) == "cdc.orders"


def test_variables_are_looked_up_by_dotted_path_between_literal_text() -> None:
    render = compile_template("cdc.${source.db}.${source.table}-${op}!")
    assert render(EVENT) == "cdc.shop.orders-u!"
    assert compile_template("${source.meta.shard}/${source.position}")(EVENT) == "3/42"  # str() of non-strings
    assert compile_template("${op}${op}")(EVENT) == "uu"


def test_a_missing_value_or_a_path_through_a_non_object_renders_empty() -> None:
    assert compile_template("t.${source.schema}.x")(EVENT) == "t..x"
    assert compile_template("t.${op.name}")(EVENT) == "t."  # op is a string, not an object
    assert compile_template("${source.table}")({"source": None}) == ""


def test_what_is_not_a_variable_stays_literal() -> None:
    assert compile_template("${Source.table}.${}.${op")(EVENT) == "${Source.table}.${}.${op"
    assert compile_template("a-${op}-${Bad}")(EVENT) == "a-u-${Bad}"


def test_is_template() -> None:
    assert is_template("cdc.${source.table}") and is_template("${op}")
    assert not is_template("cdc.orders") and not is_template("${Op}") and not is_template("${")
