"""The web console's assets through a real gateway: the page at /console and /console/, every
asset with its content type and the strict security headers, nothing outside the package."""

from __future__ import annotations

from tests.integration.conftest import Stack
from xrouter_gateway.console import ASSETS, CSP

SECURITY = {"content-security-policy": CSP, "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer", "x-frame-options": "DENY"}


async def test_the_page_is_served_with_the_strict_headers(stack: Stack) -> None:
    for path in ("/console", "/console/"):
        resp = await stack.http.get(f"{stack.url}{path}")
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/html; charset=utf-8"
        assert {k: resp.headers[k] for k in SECURITY} == SECURITY
        assert '<script type="module" src="/console/js/app.js">' in resp.text
        assert "<style" not in resp.text and "style=" not in resp.text  # CSP: no inline styles


async def test_every_asset_has_its_content_type(stack: Stack) -> None:
    kinds = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
             ".html": "text/html; charset=utf-8"}
    files = [p for p in ASSETS.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} == set(kinds)
    for path in files:
        name = path.relative_to(ASSETS).as_posix()
        resp = await stack.http.get(f"{stack.url}/console/{name}")
        assert resp.status_code == 200, name
        assert resp.headers["content-type"] == kinds[path.suffix]
        assert resp.content == path.read_bytes()
        assert {k: resp.headers[k] for k in SECURITY} == SECURITY


async def test_names_outside_the_assets_are_not_found(stack: Stack) -> None:
    for path in ("/console/nope.js", "/console/js/../../console.py", "/console/..%2Fconsole.py",
                 "/console/%2e%2e/app.py", "/console/js"):
        resp = await stack.http.get(f"{stack.url}{path}")
        assert resp.status_code == 404, path
        assert resp.json()["error"]["code"] == 404
