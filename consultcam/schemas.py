"""Shared schema base: JSON in camelCase (DESIGN.md, "HTTP API"), Python in snake_case."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """Serialises with camelCase aliases; accepts either spelling on input; rejects unknown fields, and
    text holding the NUL character."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", serialize_by_alias=True
    )

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """PostgreSQL text and JSONB cannot store U+0000 (SQLite can): refused as 422 on every backend, not
        a 500 on one of them."""
        if _holds_nul(value):
            raise ValueError("text must not contain the NUL character (U+0000)")
        return value


def _holds_nul(value: Any) -> bool:
    """NUL in a string, or in the keys or values of JSON-like data (nested models checked themselves)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False
