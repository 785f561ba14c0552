"""The docs page: Swagger UI served by predgate itself, so /docs renders with no network.

The Swagger UI files come from the flask-swagger-ui package (a copy of the upstream swagger-ui
distribution, updated with each upstream release); only its files are used, not its blueprint,
whose page carries an inline script. The page's own start-up script is served as a file, so the
Content-Security-Policy allows scripts from 'self' only.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from flask import Response, request, send_file
from werkzeug.exceptions import NotFound

# 'self' only. Images also allow data: because Swagger UI's stylesheet draws its icons as
# data: SVG images (an image cannot run script). Styles need no 'unsafe-inline': Swagger UI sets
# element styles through the DOM, which CSP allows (the headless-Chromium test checks the page
# renders, and would show a blocked style or script as a console error).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    )
)
# Relative URLs: the page works wherever the gateway is mounted (/docs -> docs/assets/...).
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>predgate API</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/docs.js"></script>
</body>
</html>
"""
# The page's start-up script. No validator badge: it would call validator.swagger.io.
START_SCRIPT = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
"""
START_SCRIPT_NAME = "docs.js"
# The files of the flask-swagger-ui distribution the page loads, with their media types.
VENDOR_ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}
ASSET_NAMES = (*VENDOR_ASSETS, START_SCRIPT_NAME)
ASSET_MAX_AGE_SECONDS = 3600


def page_response() -> Response:
    """The docs page, under a policy that allows nothing from another origin."""
    response = Response(PAGE, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    response.cache_control.no_cache = True
    return response


def asset_response(name: str) -> Response:
    """One of ASSET_NAMES (any other name is a 404), cached for an hour, revalidated by ETag."""
    if name not in ASSET_NAMES:
        raise NotFound()
    if name == START_SCRIPT_NAME:
        response = Response(START_SCRIPT, mimetype="text/javascript")
        response.add_etag()
        response.make_conditional(request)
    else:
        response = send_file(
            _vendor_folder() / name, mimetype=VENDOR_ASSETS[name], max_age=ASSET_MAX_AGE_SECONDS
        )
    response.cache_control.public = True
    response.cache_control.max_age = ASSET_MAX_AGE_SECONDS
    return response


def _vendor_folder() -> Path:
    # flask-swagger-ui installs as plain files, so its folder is a path send_file can serve.
    folder = files("flask_swagger_ui") / "dist"
    assert isinstance(folder, Path)
    return folder
