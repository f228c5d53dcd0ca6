"""API docs that work offline: Swagger UI and ReDoc from assets installed with fastapi-offline.

FastAPI's own /docs and /redoc pages load their JavaScript from a CDN, so they are blank without
internet. These pages load the same UIs from the `fastapi_offline` package's files, served by the
app itself under `assets_url`.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS", "install_offline_docs"]

# Swagger UI 5 (renders OpenAPI 3.1, which FastAPI writes), ReDoc, and a favicon.
ASSETS = Path(fastapi_offline.__file__).parent / "static"


def install_offline_docs(
    app: FastAPI, *, assets_url: str = "/docs-assets", docs_url: str = "/docs"
) -> None:
    """Serve Swagger UI at `docs_url` and ReDoc at /redoc, with every asset from this app."""
    app.mount(assets_url, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{assets_url}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{assets_url}/swagger-ui.css",
            swagger_favicon_url=f"{root}{assets_url}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{assets_url}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{assets_url}/favicon.png",
            with_google_fonts=False,
        )
