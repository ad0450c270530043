"""Pydantic glue: models to JSON Schema and JSON, and answers back to models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import InvalidAnswer, InvalidArgument


def is_model_class(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def payload_parts(payload: Any) -> tuple[Any, dict[str, Any] | None]:
    """The payload as JSON and its schema (a Pydantic instance carries one; a dict does not)."""
    if isinstance(payload, BaseModel):
        return (
            payload.model_dump(mode="json"),
            type(payload).model_json_schema(mode="serialization"),
        )
    return payload, None


def response_schema(response: Any) -> dict[str, Any]:
    """The JSON Schema of the expected answer. Validation mode: fields with defaults are
    optional for the human, and the model fills them in when the answer is parsed."""
    if is_model_class(response):
        schema: dict[str, Any] = response.model_json_schema(mode="validation")
        return schema
    if isinstance(response, dict):
        return response
    raise InvalidArgument(
        "response must be a Pydantic model class or a JSON Schema dict, "
        f"not {type(response).__name__}"
    )


def to_json(value: Any) -> Any:
    """An answer as JSON: Pydantic instances are dumped, anything else is taken as is."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def parse_response(response: Any, value: Any) -> Any:
    """The accepted answer as the caller's type."""
    if not is_model_class(response):
        return value
    try:
        return response.model_validate(value)
    except ValidationError as e:
        # The core accepted it against the JSON Schema; the model is stricter (a custom
        # validator). Say so rather than hand back a half-typed value.
        raise InvalidAnswer(
            f"the accepted answer does not fit {response.__name__}: {e}",
            details={
                "errors": [
                    {"path": "/" + "/".join(str(p) for p in err["loc"]), "message": err["msg"]}
                    for err in e.errors()
                ]
            },
        ) from e
