"""The registry covers every tag of the spec unions, and every entry imports."""

from __future__ import annotations

import typing

from shared.spec import model
from worker import plugins


def tags(union: object) -> set[str]:
    members = typing.get_args(union) or (union,)  # a one-member Union is the member itself
    return {t.__struct_config__.tag for t in members}  # type: ignore[attr-defined]


def test_registry_covers_spec_unions() -> None:
    assert tags(model.SourceSpec) == set(plugins.SOURCES)
    assert tags(model.SinkSpec) == set(plugins.SINKS)
    assert tags(model.ProcessorSpec) == set(plugins.PROCESSORS)


def test_every_entry_resolves() -> None:
    for table in (plugins.SOURCES, plugins.SINKS, plugins.PROCESSORS):
        for type_ in table:
            assert callable(plugins.resolve(table, type_))
