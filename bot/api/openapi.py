"""The OpenAPI 3.1 document, built from the route table and the pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bot import __version__
from bot.api.routes import Route
from bot.api.schemas import ErrorOut

REF = "#/components/schemas/{model}"


def build_openapi(routes: list[Route], server_url: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorOut}
    for r in routes:
        if r.body:
            models.add(r.body)
        models.update(m for _, m in r.responses.values() if m)
    ordered = sorted(models, key=lambda m: m.__name__)
    _, top = models_json_schema(
        [(m, "validation" if _is_request(m, routes) else "serialization") for m in ordered],
        ref_template=REF,
    )
    paths: dict[str, Any] = {}
    for r in routes:
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": r.handler.__name__,
            "tags": [r.tag],
            "responses": {},
        }
        params = re.findall(r"{(\w+)}", r.path)
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        if r.body:
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": REF.format(model=r.body.__name__)}}
                },
            }
        for status, (desc, model) in sorted(r.responses.items()):
            resp: dict[str, Any] = {"description": desc}
            m = model if model is not None else (ErrorOut if status >= 400 else None)
            if m is not None:
                resp["content"] = {
                    "application/json": {"schema": {"$ref": REF.format(model=m.__name__)}}
                }
            op["responses"][str(status)] = resp
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "receptionist API",
            "version": __version__,
            "description": "Conversations with the receptionist bot, on any channel.",
            "license": {"name": "GPL-3.0-or-later", "identifier": "GPL-3.0-or-later"},
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {"schemas": top.get("$defs", {})},
    }


def _is_request(model: type[BaseModel], routes: list[Route]) -> bool:
    return any(r.body is model for r in routes)
