"""Answers that carry secrets are not kept by a browser's or a proxy's cache (issue 25, item 13):
`Cache-Control: no-store` on the backup download, a server's settings with its env values,
its log, /metrics, the status API and the Cloudflare page's JSON. The page's own static files
stay cacheable; the overview's JSON keeps its ETag (it asks each time, answered 304)."""

from __future__ import annotations

import httpx
import pytest

from tests.fix_gateway import Gateway
from tests.webview.conftest import url_of

SECRET_ANSWERS = ["/settings/backups/download", "/api/servers/alpha", "/servers/alpha/log", "/servers/alpha",
                  "/metrics", "/api/status", "/api/events", "/cloudflare/state.json", "/cloudflare/zones.json",
                  "/security", "/users"]


def token(gw: Gateway) -> dict[str, str]:
    return {"authorization": "Bearer " + (gw.data_dir / "api-token").read_text().strip()}


@pytest.mark.parametrize("path", SECRET_ANSWERS)
def test_answers_with_secrets_are_not_stored(web: Gateway, http: httpx.Client, path: str) -> None:
    r = http.get(path)
    if r.status_code == 401:  # the command line's: with the API token
        with httpx.Client(base_url=url_of(web), trust_env=False, headers=token(web)) as api:
            r = api.get(path)
    assert r.status_code == 200, (path, r.status_code, r.text[:200])
    assert r.headers.get("cache-control") == "no-store", (path, r.headers.get("cache-control"))


def test_static_files_stay_cacheable_and_the_overview_asks_each_time(web: Gateway, http: httpx.Client) -> None:
    r = http.get("/static/style.css")
    assert r.status_code == 200 and "no-store" not in r.headers.get("cache-control", "")
    r = http.get("/api/servers")
    assert r.status_code == 200 and r.headers["cache-control"] == "private, no-cache" and r.headers["etag"]
    assert http.get("/api/servers", headers={"if-none-match": r.headers["etag"]}).status_code in (200, 304)
