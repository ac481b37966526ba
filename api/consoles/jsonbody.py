"""JSON bodies for console API routes, read only after the route's RoleGate has passed.

FastAPI parses a declared body model before it runs dependencies, so a malformed body would
get a 422 even from a role that has no business on the route. Declaring ``JsonBody`` after the
identity parameter keeps the order: who you are first (401/403), then what you sent (422).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from api.errors import InvalidInput

Model = TypeVar("Model", bound=BaseModel)


async def json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    return body


JsonBody = Annotated[dict[str, Any], Depends(json_object)]


def parse(model: type[Model], body: dict[str, Any]) -> Model:
    """Validate ``body`` against ``model``; the first problem becomes a clear InvalidInput."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise InvalidInput(f"{where}: {first['msg']}") from None
