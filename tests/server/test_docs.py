"""``/docs`` (Swagger UI) works offline: its script, style and icon come from this server, not a CDN.

The browser test blocks every request that is not for the server itself (route interception), so a
page that still needed the internet would stay blank here, online or not.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import requests

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def test_docs_assets_served_locally(server):
    html = requests.get(server.url + "/docs", timeout=10)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "cdn.jsdelivr.net" not in html.text and "fastapi.tiangolo.com" not in html.text
    for asset, kind in (
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui.css", "text/css"),
        ("favicon.png", "image/png"),
    ):
        assert f'"/docs-static/{asset}"' in html.text
        resp = requests.get(f"{server.url}/docs-static/{asset}", timeout=30)
        assert resp.status_code == 200, asset
        assert kind in resp.headers["content-type"], (asset, resp.headers["content-type"])
        assert len(resp.content) > 500, asset
    assert b"SwaggerUIBundle" in requests.get(server.url + "/docs-static/swagger-ui-bundle.js", timeout=30).content


def test_docs_render_offline_in_browser(server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    outside: list[str] = []
    local: list[str] = []
    errors: list[str] = []

    def only_loopback(route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOOPBACK or url.startswith(("data:", "blob:")):
            local.append(url)
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.route("**/*", only_loopback)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/docs")
    # Swagger UI fetched /openapi.json and drew the operations from it
    analyze = page.locator('.opblock-post .opblock-summary-path[data-path="/v1/analyze"]')
    analyze.wait_for(timeout=60_000)
    assert analyze.is_visible()
    assert page.locator(".opblock-get .opblock-summary-path[data-path='/v1/models']").is_visible()
    assert "melcnn" in page.inner_text(".information-container .title")
    assert page.locator(".errors-wrapper").count() == 0, page.inner_text(".errors-wrapper")
    # the operation opens and shows its multipart form
    page.locator(".opblock-post .opblock-summary").first.click()
    page.wait_for_selector(".opblock-post .opblock-body", timeout=30_000)
    assert "media" in page.inner_text(".opblock-post .opblock-body")
    page.screenshot(path=str(ARTIFACTS / "server-docs.png"), full_page=True)

    assert outside == [], "the docs page must not load anything from elsewhere"
    assert any("/docs-static/swagger-ui-bundle.js" in u for u in local)
    assert any(u.endswith("/openapi.json") for u in local)
    assert errors == []
    page.close()
