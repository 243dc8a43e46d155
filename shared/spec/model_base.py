"""The building blocks of the spec's Structs (shared.spec.model): the base Struct that forbids
unknown fields, the constrained scalar types, `type_tag`. Imports: stdlib + msgspec only.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

PosInt = Annotated[int, Meta(ge=1)]
NonNegInt = Annotated[int, Meta(ge=0)]
NonNegFloat = Annotated[float, Meta(ge=0)]
SinkId = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]
OnError = Literal["fail", "dlq", "skip"]  # CONTRACT section 12: what a bad event does


def type_tag(struct: msgspec.Struct) -> str:
    """The `type` tag of a source, sink or processor spec ("postgres", "kafka"...)."""
    return str(type(struct).__struct_config__.tag)


class _Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass
