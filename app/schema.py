"""Pieces the request models of both services share: field types and example bodies
(one helper, so every model shows its examples the same way; Swagger UI's "Try it
out" starts from the first)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, JsonValue

#: A fraction from 0 to 1 (levels as percentile fractions, positions across a picture).
Fraction = Annotated[float, Field(ge=0, le=1)]


def example(*bodies: JsonValue) -> ConfigDict:
    """A model configuration whose JSON schema lists ``bodies`` as its examples."""
    return ConfigDict(json_schema_extra={"examples": list(bodies)})
