"""Building blocks of the two OpenAPI documents (ingest_api/openapi.py, viewer/openapi.py),
so that both spell a reference, a JSON response and Retry-After the same way."""

from __future__ import annotations

from typing import Any

SCHEMAS = "#/components/schemas/"
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}}


def ref(name: str) -> dict[str, str]:
    """A reference to the schema ``name`` of the document's components."""
    return {"$ref": SCHEMAS + name}


def json_response(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response
