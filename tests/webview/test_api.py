"""JSON endpoints, /metrics and the live stream, against a real daemon."""

from __future__ import annotations

import threading
import time

import httpx

from tests.fix_gateway import Gateway
from tests.webview.conftest import url_of


def token(gw: Gateway) -> dict[str, str]:
    return {"Authorization": f"Bearer {(gw.data_dir / 'api-token').read_text().strip()}"}


def test_api_servers_with_session_or_token(web: Gateway, http: httpx.Client) -> None:
    with httpx.Client(base_url=url_of(web), trust_env=False) as anon:
        assert anon.get("/api/servers").status_code == 401
        assert anon.get("/api/servers/alpha").status_code == 401
        assert anon.get("/metrics").status_code == 401
        by_token = anon.get("/api/servers", headers=token(web))
    assert by_token.status_code == 200
    data = http.get("/api/servers").json()
    assert data["database_ok"] is True
    assert {s["name"] for s in data["servers"]} >= {"alpha", "beta"}
    alpha = http.get("/api/servers/alpha").json()
    assert alpha["spec"]["description"] == "first demo" and alpha["file"].endswith("alpha.toml")
    assert any(e["to_phase"] == "running" for e in alpha["events"])
    assert http.get("/api/servers/nope").status_code == 404
    assert set(data["host"]) >= {"cpu_percent", "mem_percent"} or data["host"] == {}


def test_metrics(web: Gateway) -> None:
    with httpx.Client(base_url=url_of(web), trust_env=False) as anon:
        r = anon.get("/metrics", headers=token(web))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = r.text.splitlines()
    assert "gateway_database_up 1" in lines
    assert 'gateway_server_phase{server="alpha",phase="running"} 1' in lines
    assert any(line.startswith('gateway_server_restarts_total{server="alpha"}') for line in lines)


def test_stream_sends_changed_cards(web: Gateway, http: httpx.Client) -> None:
    seen: list[str] = []
    got_stop = threading.Event()

    def listen() -> None:
        with http.stream("GET", "/stream", timeout=20) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                seen.append(line)
                if "Stopped by you" in line:
                    got_stop.set()
                    return

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while not any('id="srv-beta"' in line for line in seen) and time.monotonic() < deadline:
        time.sleep(0.05)  # the first message holds every card
    assert any(line == "event: server" for line in seen)
    http.post("/servers/beta/control", data={"verb": "stop", "csrf": http.csrf},  # type: ignore[attr-defined]
              headers={"accept": "application/json"})
    assert got_stop.wait(10), seen[-5:]
    reader.join(5)
    r = http.post("/servers/beta/control", data={"verb": "start", "csrf": http.csrf},  # type: ignore[attr-defined]
                  headers={"accept": "application/json"})
    assert r.json()["servers"][0]["phase"] == "running"


def test_the_local_api_needs_its_token(web: Gateway) -> None:
    with httpx.Client(base_url=url_of(web), trust_env=False, timeout=30) as client:
        for method, path in (("GET", "/api/status"), ("POST", "/api/control"), ("GET", "/api/events"),
                             ("POST", "/api/users")):
            assert client.request(method, path).status_code == 401, path
            wrong = client.request(method, path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401 and wrong.json() == {"error": "missing or wrong API token"}, path
        good = token(web)
        assert client.get("/api/status", headers=good).status_code == 200
        bad = client.post("/api/control", headers=good, json=["stop"])
        assert bad.status_code == 400 and bad.json() == {"error": "the body must be a JSON object"}
