"""The API's documentation: Swagger UI at /docs and ReDoc at /redoc, behind the API key, when one
is set, unless VAEGAN_PROTECT_DOCS=false.

FastAPI's pages load Swagger UI and ReDoc from a CDN, which leaves them blank on a machine
without internet (an air-gapped GPU cluster). Here their JavaScript and CSS come from the
installed fastapi-standalone-docs package and are served by this service, and each page's
Content-Security-Policy lets it load nothing from anywhere else.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response

from service.deps import require_api_key_for_docs
from service.errors import NotFoundError
from service.routes.web import (
    BASE_POLICY,
    BROWSER_HEADERS,
    CSS,
    JAVASCRIPT,
    SVG,
    WebFile,
    file_response,
)

router = APIRouter(
    tags=["docs"], include_in_schema=False, dependencies=[Depends(require_api_key_for_docs)]
)
# The pages' scripts and styles: the same public files a CDN would send, open like the web
# page's, so a proxy that adds the key to the pages alone still serves working docs.
assets_router = APIRouter(tags=["docs"], include_in_schema=False)

ASSETS_PACKAGE = "fastapi_standalone_docs"
# URL -> (file under the package's static/ folder, media type)
ASSETS = {
    "/docs/swagger-ui-bundle.js": ("swagger/swagger-ui-bundle.js", JAVASCRIPT),
    "/docs/swagger-ui.css": ("swagger/swagger-ui.css", CSS),
    "/redoc/redoc.standalone.js": ("redoc/redoc.standalone.js", JAVASCRIPT),
    # The package's ReDoc asks for its "API docs by Redocly" logo beside the page instead of
    # on Redocly's CDN.
    "/redoc/logo-mini.svg": ("redoc/logo-mini.svg", SVG),
}
FAVICON = "/static/favicon.svg"  # the web page's

# Swagger UI shows response images (a /reconstruct PNG) as blob: URLs, and its CSS draws icons
# as data: URLs.
_IMAGES = "img-src 'self' data: blob:"
# ReDoc styles itself at run time with <style> elements. styled-components' could carry a
# nonce, but the bundle's own style loader inserts one before ReDoc reads any option, and a hash
# of that one would have to be dug out of each ReDoc release's bundle. Inline styles are
# therefore allowed on /redoc alone; its scripts stay 'self' only (it has no inline script).
# Its search runs in a worker made from a blob: URL.
_REDOC_POLICY = (
    f"default-src 'self'; style-src 'self' 'unsafe-inline'; worker-src blob:; {_IMAGES}; "
    f"{BASE_POLICY}"
)
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL)


@cache  # read once, on the first request: the files are part of the installed release
def docs_assets() -> dict[str, WebFile]:
    folder = resources.files(ASSETS_PACKAGE) / "static"
    return {
        url: WebFile.of((folder / path).read_bytes(), media_type)
        for url, (path, media_type) in ASSETS.items()
    }


def _script_hashes(html: str) -> str:
    """CSP sources for the page's inline scripts: Swagger UI starts from one."""
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )


def _text(body: bytes | memoryview) -> str:
    return bytes(body).decode()


def _page(html: str, policy: str) -> HTMLResponse:
    return HTMLResponse(html, headers={**BROWSER_HEADERS, "Content-Security-Policy": policy})


@router.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    html = _text(
        get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{request.app.title} - docs",
            swagger_js_url="/docs/swagger-ui-bundle.js",
            swagger_css_url="/docs/swagger-ui.css",
            swagger_favicon_url=FAVICON,
            # Swagger UI's default sends the schema's URL to validator.swagger.io for a badge.
            swagger_ui_parameters={"validatorUrl": None},
        ).body
    )
    policy = f"default-src 'self'; script-src 'self' {_script_hashes(html)}; {_IMAGES}; "
    return _page(html, policy + BASE_POLICY)


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    html = _text(
        get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{request.app.title} - ReDoc",
            redoc_js_url="/redoc/redoc.standalone.js",
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        ).body
    )
    return _page(html, _REDOC_POLICY)


def _asset(request: Request, url: str) -> Response:
    file = docs_assets().get(url)
    if file is None:
        raise NotFoundError(f"no documentation file {url!r}")
    return file_response(request, file, BROWSER_HEADERS)


@assets_router.api_route("/docs/{name}", methods=["GET", "HEAD"])
async def swagger_asset(request: Request, name: str) -> Response:
    return _asset(request, f"/docs/{name}")


@assets_router.api_route("/redoc/{name}", methods=["GET", "HEAD"])
async def redoc_asset(request: Request, name: str) -> Response:
    return _asset(request, f"/redoc/{name}")
