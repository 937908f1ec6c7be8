"""The web page: static files shipped in the package, open without the API key (they hold no
secret; the page sends the key with each API call it makes)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.errors import NotFoundError

router = APIRouter(tags=["web"], include_in_schema=False)

# Explicit types rather than `mimetypes`, whose answer for .js depends on the host's tables.
HTML = "text/html; charset=utf-8"
JAVASCRIPT = "text/javascript; charset=utf-8"
CSS = "text/css; charset=utf-8"
SVG = "image/svg+xml"

# Every page and file the service serves to browsers (the docs' too) carries these.
BROWSER_HEADERS = {
    # Revalidate every time (cheap with the ETag), so a new release never mixes with old files.
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Shared by the page's policy and the docs' (service/routes/docs.py), which add to it.
BASE_POLICY = "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


@dataclass(frozen=True)
class WebFile:
    body: bytes
    media_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, media_type: str) -> WebFile:
        return cls(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def file_response(request: Request, file: WebFile, headers: Mapping[str, str]) -> Response:
    """`file`, or a 304 when the browser already holds this version of it."""
    headers = {**headers, "ETag": file.etag}
    if file.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(file.body, media_type=file.media_type, headers=headers)


_MEDIA_TYPES = {
    "index.html": HTML,
    "app.js": JAVASCRIPT,
    "style.css": CSS,
    "favicon.svg": SVG,
}

_HEADERS = {
    **BROWSER_HEADERS,
    # The page loads nothing from elsewhere and shows results as data: URLs.
    "Content-Security-Policy": f"default-src 'self'; img-src 'self' data:; {BASE_POLICY}",
}


@cache  # read once, on the first request: the files are part of the installed release
def web_files() -> dict[str, WebFile]:
    folder = resources.files("service") / "web"
    return {
        name: WebFile.of((folder / name).read_bytes(), media_type)
        for name, media_type in _MEDIA_TYPES.items()
    }


@router.api_route("/", methods=["GET", "HEAD"])
async def page(request: Request) -> Response:
    return file_response(request, web_files()["index.html"], _HEADERS)


@router.api_route("/static/{name}", methods=["GET", "HEAD"])
async def static(request: Request, name: str) -> Response:
    if name == "index.html" or name not in _MEDIA_TYPES:
        raise NotFoundError(f"no static file {name!r}")
    return file_response(request, web_files()[name], _HEADERS)
