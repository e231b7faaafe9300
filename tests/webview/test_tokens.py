"""Read-only API tokens (issue 25, item 11), made and revoked on the page of a real gateway: one
reads /metrics and the status API at the laptop's door and does nothing else (no server
settings with their env values, no history, no user made, no server stopped, no page); the
tunnel door takes none; a revoked one stops working at once; none is in a backup."""

from __future__ import annotations

import io
import re
import tarfile

import httpx

from tests.fix_gateway import Gateway
from tests.webview.conftest import url_of
from tests.webview.test_doors import tunnel_of


def make(http: httpx.Client, name: str) -> str:
    r = http.post("/settings/tokens", data={"csrf": http.csrf, "name": name})  # type: ignore[attr-defined]
    assert r.status_code == 200 and "shown only this once" in r.text, r.text[:300]
    return re.search(r"<code data-token>(gwr_[A-Za-z0-9_-]+)</code>", r.text).group(1)  # type: ignore[union-attr]


def test_a_read_only_token_reads_the_status_and_nothing_else(web: Gateway, http: httpx.Client) -> None:
    token = make(http, "prometheus")
    bearer = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url_of(web), trust_env=False, headers=bearer) as scraper:
        r = scraper.get("/metrics")
        assert r.status_code == 200 and 'gateway_server_up{server="alpha"} 1' in r.text
        assert scraper.get("/api/status").status_code == 200
        assert scraper.get("/api/servers").json()["servers"]
        refused = {
            "a server's settings (env)": scraper.get("/api/servers/alpha"),
            "the history": scraper.get("/api/events"),
            "a page": scraper.get("/", follow_redirects=False),
            "making a user": scraper.post("/api/users", json={"name": "mallory", "password": "long enough pw"}),
            "stopping a server": scraper.post("/api/control", json={"verb": "stop", "names": ["alpha"]}),
            "a form": scraper.post("/servers/alpha/control", data={"verb": "stop"}),
        }
        for what, answer in refused.items():
            assert answer.status_code in (303, 401, 403), (what, answer.status_code)
    assert web.status()["alpha"]["phase"] == "running"
    assert "mallory" not in http.get("/users").text
    with httpx.Client(base_url=tunnel_of(web), trust_env=False, headers=bearer) as outside:
        assert outside.get("/metrics").status_code == 401  # no API token of any kind through the tunnel
    page = http.get("/settings/tokens")
    assert "prometheus" in page.text and token not in page.text  # shown once, never again
    assert "last used" in page.text
    backup = http.get("/settings/backups/download")
    with tarfile.open(fileobj=io.BytesIO(backup.content)) as archive:
        names = archive.getnames()
    assert "db/users.csv" in names and "db/api_tokens.csv" not in names  # a machine's keys stay on it


def test_a_revoked_token_stops_at_once(web: Gateway, http: httpx.Client) -> None:
    token = make(http, "grafana agent")
    bearer = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url_of(web), trust_env=False, headers=bearer) as scraper:
        assert scraper.get("/metrics").status_code == 200
        listed = http.get("/settings/tokens").text
        mine = re.search(r'<b>grafana agent</b>.*?name="id" value="([0-9a-f]{64})"', listed, re.S).group(1)  # type: ignore[union-attr]
        r = http.post("/settings/tokens/revoke", data={"csrf": http.csrf, "id": mine})  # type: ignore[attr-defined]
        assert r.status_code == 303
        assert "no longer works" in http.get("/settings/tokens").text
        assert scraper.get("/metrics").status_code == 401
    assert any(e["kind"] == "account_changed" and "revoked the read-only API token" in e["reason"]
               for e in web.events())


def test_the_api_token_file_still_does_everything_and_a_made_up_token_nothing(web: Gateway) -> None:
    full = {"authorization": "Bearer " + (web.data_dir / "api-token").read_text().strip()}
    with httpx.Client(base_url=url_of(web), trust_env=False) as client:
        assert client.get("/api/servers/alpha", headers=full).status_code == 200
        assert client.get("/metrics", headers=full).status_code == 200
        assert client.get("/metrics", headers={"authorization": "Bearer gwr_made-up"}).status_code == 401
