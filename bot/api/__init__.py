"""The public HTTP API (``/api/v1``), health endpoints and the OpenAPI document."""
