"""The web console: static assets shipped in this package (console_assets/), read once at start
and served from memory at /console with a strict Content-Security-Policy. The console is plain
ES modules, CSS and HTML: no build step, nothing fetched from another origin. It talks to the
same /v1 API as every client, signed in through the session cookie (/console/session)."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from xrouter_gateway.errors import APIError

ASSETS = Path(__file__).resolve().parent / "console_assets"

CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'self'")

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Assets change with the package; a revalidation costs nothing on 127.0.0.1 or a LAN.
    "Cache-Control": "no-cache",
}


def load_assets(root: Path = ASSETS) -> dict[str, tuple[bytes, str]]:
    """Every file under `root` with a known type, by its path relative to `root` ('js/app.js').
    Only these names are ever served: a request path is a dictionary key, never a file path."""
    found: dict[str, tuple[bytes, str]] = {}
    for path in sorted(root.rglob("*")):
        kind = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and kind is not None:
            found[path.relative_to(root).as_posix()] = (path.read_bytes(), kind)
    return found


class ConsoleAssets:
    """GET /console, /console/ (the page) and /console/<asset>."""

    def __init__(self, assets: dict[str, tuple[bytes, str]] | None = None) -> None:
        self._assets = load_assets() if assets is None else assets
        if "index.html" not in self._assets:
            raise RuntimeError(f"the console's index.html is missing from {ASSETS}")

    def _serve(self, name: str) -> Response:
        found = self._assets.get(name)
        if found is None:
            raise APIError(404, "Not found")
        body, kind = found
        return Response(body, media_type=kind, headers=SECURITY_HEADERS)

    async def index(self, request: Request) -> Response:
        return self._serve("index.html")

    async def asset(self, request: Request) -> Response:
        return self._serve(request.path_params["name"])
