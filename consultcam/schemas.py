"""Shared schema base: JSON in camelCase (DESIGN.md, "HTTP API"), Python in snake_case."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """Serialises with camelCase aliases; accepts either spelling on input; rejects unknown fields."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", serialize_by_alias=True
    )
