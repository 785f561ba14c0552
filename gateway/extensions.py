"""Flask extensions, created without an app and bound in create_app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask_jwt_extended import JWTManager
from spectree import SecurityScheme, SpecTree
from spectree.models import InType, SecureType, SecuritySchemeData

ViewT = TypeVar("ViewT", bound=Callable[..., Any])

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
        SecurityScheme(
            name="OAuth2",
            data=SecuritySchemeData(
                type=SecureType.OAUTH_TWO,
                description="Client credentials; the access token goes in Authorization: Bearer",
                flows={
                    "clientCredentials": {
                        "tokenUrl": "/oauth/token",
                        "scopes": {
                            "predict": "predict with the tenant's model",
                            "model:read": "read the tenant's model description",
                            "admin": "the admin API",
                            "audit:read": "the compliance API",
                        },
                    }
                },
            ),
        ),
    ],
    security={"ApiKeyBearer": [], "ApiKeyHeader": [], "OAuth2": []},
)

# Verifies OAuth2 access tokens; its loaders live in gateway.access_tokens.
jwt_manager = JWTManager()


def documented(**kwargs: Any) -> Callable[[ViewT], ViewT]:
    """Document a view in the OpenAPI spec from its pydantic models without letting spectree
    validate: views validate with `parse_json_body`, which answers in problem+json."""
    decorator: Callable[[ViewT], ViewT] = spec.validate(skip_validation=True, **kwargs)
    return decorator
