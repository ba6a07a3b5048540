"""The API docs page (Swagger UI) served from the package, and the browser's favicon request.

FastAPI's own /docs loads Swagger UI from a public CDN, so it does not render on an
offline or air-gapped cluster, and it starts Swagger UI with an inline script, which
the Content-Security-Policy forbids. Here the page, its start-up script and Swagger
UI's files all come from the service: the files from the `fastapi-offline` package,
which ships Swagger UI 5 (the first to render OpenAPI 3.1, which FastAPI writes)
under its own licence. URLs are relative, so the docs work under a path prefix too.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

router = APIRouter(include_in_schema=False)

ASSETS = resources.files("fastapi_offline") / "static"
SERVED_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>reward-service · API</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/start.js"></script>
</body>
</html>
"""
START = """"use strict";
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  validatorUrl: null,  // no badge from validator.swagger.io: nothing leaves the service
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""


@router.get("/docs")
async def docs_page() -> HTMLResponse:
    return HTMLResponse(PAGE)


@router.get("/docs/start.js")
async def docs_start() -> Response:
    return Response(START, media_type="text/javascript")


@router.get("/docs/assets/{name}")
async def docs_asset(name: str) -> FileResponse:
    if name not in SERVED_ASSETS:
        raise HTTPException(404, "Not Found")
    return FileResponse(ASSETS / name, media_type=SERVED_ASSETS[name], headers={"Cache-Control": "max-age=86400"})


@router.get("/favicon.ico")
async def favicon() -> Response:
    """No icon: 204 instead of a 404 in every browser's console and the access log."""
    return Response(status_code=204, headers={"Cache-Control": "max-age=86400"})
