"""Flask extensions, created without an app and bound in create_app."""

from __future__ import annotations

from spectree import SecurityScheme, SpecTree
from spectree.models import InType, SecureType, SecuritySchemeData

# OpenAPI 3.1 generated from the same pydantic models the views validate with.
spec = SpecTree(
    "flask",
    title="predgate",
    version="v1",
    path="docs",
    filename="openapi.json",
    mode="strict",
    annotations=False,
    security_schemes=[
        SecurityScheme(
            name="ApiKeyBearer",
            data=SecuritySchemeData(
                type=SecureType.HTTP, scheme="bearer", description="pgk_... API key"
            ),
        ),
        SecurityScheme(
            name="ApiKeyHeader",
            data=SecuritySchemeData(
                type=SecureType.API_KEY, field_in=InType.HEADER, name="X-API-Key"
            ),
        ),
    ],
    security={"ApiKeyBearer": [], "ApiKeyHeader": []},
)
