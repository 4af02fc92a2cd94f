"""Base models for data."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AIPerfBaseModel(BaseModel):
    """Base for data models: unknown fields are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
