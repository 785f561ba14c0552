"""Flask extensions, created without an app and bound in create_app."""

from __future__ import annotations

from flask_jwt_extended import JWTManager
from spectree import SecurityScheme, SpecTree
from spectree.models import InType, SecureType, SecuritySchemeData

# OpenAPI 3.1 generated from the same pydantic models the request path validates with. Only the
# document: requests never pass through spectree (gateway.pipeline.endpoint), and spectree
# serves nothing (gateway.openapi completes the document, gateway.api.docs serves it and the
# page). spectree leaves every route under /<path> out of the document: "spectree" names none.
spec = SpecTree(
    "flask",
    title="predgate",
    version="v1",
    path="spectree",
    page_templates={},
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
            name="ClientSecretBasic",
            data=SecuritySchemeData(
                type=SecureType.HTTP,
                scheme="basic",
                description="An OAuth client's id and secret (client_secret_basic)",
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
                            "receipts:read": "receipts of the tenant's requests and the "
                            "transparency log's signed heads and proofs",
                            "admin": "the admin API",
                            "audit:read": "the compliance API",
                        },
                    }
                },
            ),
        ),
    ],
    # One credential per request, any of the three (each operation names its scope).
    security=[{"ApiKeyBearer": []}, {"ApiKeyHeader": []}, {"OAuth2": []}],
)

# Verifies OAuth2 access tokens; its loaders live in gateway.pipeline.tokens.
jwt_manager = JWTManager()
