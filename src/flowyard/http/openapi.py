"""The OpenAPI 3.1 document, generated from the route table (``http/operations.py``).

Nothing here is hand-written JSON Schema. The error statuses an operation lists follow from its
auth, body, query and path, plus the ``errors`` it names itself.
"""

import re
from typing import Any

import msgspec

from flowyard import __version__
from flowyard.http import api_types as api
from flowyard.http.operations import OPERATIONS, Operation, Param

REF = "#/components/schemas/{name}"
_CLIENT = "Client writes and reads cost tokens; the pull and push protocols are free."

REASONS = {
    400: "bad_request: malformed JSON, a bad field or query parameter (`details` names each)",
    401: "unauthorized: no key, an unknown key or a revoked key",
    402: "insufficient_tokens: the call's price exceeds the project's balance",
    403: "forbidden: the key lacks the scope (named in the message) or is not an admin key",
    404: "not_found: no such object in the caller's project",
    409: "conflict: the object's state does not allow this",
    413: "payload_too_large: a body over 1 MiB, or a payload or result over 256 KiB",
    415: "unsupported_media_type: the body is not sent as application/json",
    429: "rate_limited: the project is over its request rate",
    503: "unavailable: not ready, shutting down, or overloaded",
}
_CODES = {status: reason.split(":")[0] for status, reason in REASONS.items()}
_RETRY_AFTER = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
_RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def error_statuses(op: Operation) -> list[int]:
    """Every error status ``op`` can answer."""
    found = set(op.errors)
    if op.auth in ("key", "admin"):
        found |= {401, 503}
    if op.auth == "key":
        found.add(429)
    if op.scope is not None or op.auth == "admin":
        found.add(403)
    if op.auth == "signed":
        found.add(503)
    if op.billed:
        found.add(402)
    if op.body is not None:
        found |= {400, 413, 415}
    if op.query:
        found.add(400)
    if "{" in op.path:
        found.add(404)
    return sorted(found)


def document(operations: tuple[Operation, ...] = OPERATIONS) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``."""
    types = list(
        dict.fromkeys(
            [api.Error]
            + [op.response for op in operations]
            + [op.body for op in operations if op.body is not None]
            + [p.type for op in operations for p in op.query]
        )
    )
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    schema = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        out = paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, schema)
        if op.makes is not None:
            out["responses"][str(op.status)]["links"] = _links(op.makes, operations)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Flowyard",
            "version": __version__,
            "description": "Jobs, queues and DAG workflows over one SQLite file. Send a key as "
            "`Authorization: Bearer <key>` or `X-API-Key: <key>`. Every error is "
            "`{code, message, details?}`; an unknown route is 404, a known route with another "
            f"method 405. {_CLIENT}",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": _error_responses(schema[api.Error]),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API key"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "headers": {
                "Retry-After": {
                    "description": "seconds to wait before trying again",
                    "required": True,
                    "schema": {"type": "string"},
                },
                **{
                    name: {
                        "description": "present while the project has a rate limit",
                        "schema": {"type": "string"},
                    }
                    for name in _RATE_HEADERS
                },
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }


def _operation(op: Operation, schema: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    """One operation object."""
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", op.path)
    ]
    parameters += [_parameter(p, schema[p.type]) for p in op.query]
    out: dict[str, Any] = {
        "operationId": _operation_id(op),
        "summary": op.summary,
        "tags": [_tag(op.path)],
        "parameters": parameters,
        "responses": _responses(op, schema),
    }
    notes = [op.description] if op.description else []
    if op.scope is not None:
        notes.append(f"Needs scope `{op.scope}` (or `*`).")
    elif op.auth == "admin":
        notes.append("Needs an admin key.")
    if op.billed:
        notes.append("Costs tokens (402 when the balance is short).")
    if notes:
        out["description"] = " ".join(notes)
    if op.auth in ("none", "signed"):
        out["security"] = []
    if op.body is not None:
        out["requestBody"] = {
            "required": not op.body_optional,
            "content": {"application/json": {"schema": schema[op.body]}},
        }
    return out


def _links(makes: tuple[str, str], operations: tuple[Operation, ...]) -> dict[str, Any]:
    """Links from an answer naming ``makes`` to every operation under its path."""
    prefix, pointer = makes
    [name] = re.findall(r"{(\w+)}", prefix)
    return {
        _operation_id(op): {
            "operationId": _operation_id(op),
            "parameters": {f"path.{name}": f"$response.body#{pointer}"},
        }
        for op in operations
        if op.path == prefix or op.path.startswith(f"{prefix}/")
    }


def _parameter(param: Param, schema: dict[str, Any]) -> dict[str, Any]:
    if param.default is not None:
        schema = {**schema, "default": param.default}
    return {
        "name": param.name,
        "in": "query",
        "required": param.required,
        "description": param.description,
        "schema": schema,
    }


def _responses(op: Operation, schema: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    success: dict[str, Any] = {
        "description": op.summary,
        "content": {op.media_type: {"schema": schema[op.response]}},
    }
    if op.auth == "key":
        success["headers"] = {n: {"$ref": f"#/components/headers/{n}"} for n in _RATE_HEADERS}
    responses = {str(op.status): success}
    for status in error_statuses(op):
        responses[str(status)] = {"$ref": f"#/components/responses/{_CODES[status]}"}
    return responses


def _error_responses(error: dict[str, Any]) -> dict[str, Any]:
    """``components.responses``: one error answer per status, named by its code."""
    responses = {}
    for status, reason in REASONS.items():
        answer: dict[str, Any] = {
            "description": reason,
            "content": {"application/json": {"schema": error}},
        }
        if status in (429, 503):
            answer["headers"] = _RETRY_AFTER
        responses[_CODES[status]] = answer
    return responses


def _operation_id(op: Operation) -> str:
    words = re.sub(r"[{}]", "", op.path).replace("/infra/", "/").strip("/")
    return f"{op.method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', words)}".rstrip("_")


def _tag(path: str) -> str:
    parts = path.strip("/").split("/")
    if parts[0] == "infra":
        return parts[2] if parts[1] == "workflows" else parts[1]
    if parts[0] == "core":
        return "tokens"
    if parts[0] == "admin":
        return "admin"
    return "service"
