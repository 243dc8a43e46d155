"""The console (CONTRACT section 8a): `GET /ui` and its static files, shipped in
the package (supervisor/ui/), no build step and nothing fetched from elsewhere.

The page embeds no data: everything it shows comes from the REST API, called by
its script with the bearer token the operator typed in (when one is set). So the
page and its files are public like /healthz, and show only what the API shows.
Imports: stdlib + starlette.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

# file name -> media type; nothing else under /ui/ is served
FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
# the page may talk to its own origin only (the API), and runs no inline script
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
OPEN_PATHS = {"/ui", "/ui/", *(f"/ui/{f}" for f in FILES)}


def read(name: str) -> bytes:
    return resources.files("supervisor").joinpath("ui", name).read_bytes()


def build_routes() -> list[Route]:
    body = {name: read(name) for name in FILES}

    def serve(name: str) -> Response:
        return Response(body[name], media_type=FILES[name], headers=HEADERS)

    async def page(request: Request) -> Response:
        return serve("index.html")

    async def slash(request: Request) -> Response:
        return RedirectResponse("/ui", status_code=308)

    async def static(request: Request) -> Response:
        name = request.path_params["file"]
        if name not in FILES or name == "index.html":
            return Response(b"not found\n", status_code=404, media_type="text/plain", headers=HEADERS)
        return serve(name)

    return [
        Route("/ui", page, methods=["GET"]),
        Route("/ui/", slash, methods=["GET"]),
        Route("/ui/{file}", static, methods=["GET"]),
    ]
