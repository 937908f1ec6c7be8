"""The web page: static files shipped in the package, open without the API key (they hold no
secret; the page sends the key with each API call it makes)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.errors import NotFoundError

router = APIRouter(tags=["web"], include_in_schema=False)


@dataclass(frozen=True)
class WebFile:
    body: bytes
    media_type: str
    etag: str


# Explicit types rather than `mimetypes`, whose answer for .js depends on the host's tables.
_MEDIA_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

_HEADERS = {
    # Revalidate every time (cheap with the ETag), so a new release never mixes with old files.
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page loads nothing from elsewhere and shows results as data: URLs.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
}


@cache  # read once, on the first request: the files are part of the installed release
def web_files() -> dict[str, WebFile]:
    folder = resources.files("service") / "web"
    files = {}
    for name, media_type in _MEDIA_TYPES.items():
        body = (folder / name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        files[name] = WebFile(body, media_type, etag)
    return files


def _web_response(request: Request, name: str) -> Response:
    file = web_files()[name]
    headers = {**_HEADERS, "ETag": file.etag}
    if file.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(file.body, media_type=file.media_type, headers=headers)


@router.api_route("/", methods=["GET", "HEAD"])
async def page(request: Request) -> Response:
    return _web_response(request, "index.html")


@router.api_route("/static/{name}", methods=["GET", "HEAD"])
async def static(request: Request, name: str) -> Response:
    if name == "index.html" or name not in _MEDIA_TYPES:
        raise NotFoundError(f"no static file {name!r}")
    return _web_response(request, name)
