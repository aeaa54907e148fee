"""The leaders' cockpit page (领导驾驶舱) at ``/dashboard`` and its static files.

The page itself needs no token: it asks for one and reads everything it shows
from ``/api/dashboard/summary`` with it. Its HTML, script and style ship inside
the package (``api/static``) and its Content-Security-Policy lets the browser
load nothing from anywhere else, so the cockpit works on a network with no
internet and cannot leak a request to one.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "static"
# Every fetch, script, style, image and font from this origin only (images
# also from blob: URLs, the evidence frames the page fetched with its token);
# no inline code, no framing, no <base> rewriting.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; "
                               "base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/dashboard")
async def dashboard() -> FileResponse:
    """The cockpit page; it polls the summary with the token it is given."""
    return FileResponse(STATIC / "dashboard.html", media_type="text/html",
                        headers=SECURITY_HEADERS)


def static_files() -> StaticFiles:
    """The page's script, style and icon, mounted at ``/static``."""
    return StaticFiles(directory=STATIC)
