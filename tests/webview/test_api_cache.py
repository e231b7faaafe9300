"""`GET /api/servers` is answered from a body built at most once per change and second, with a
weak ETag: a change shows at once, an unchanged state answers 304 to If-None-Match."""

from __future__ import annotations

import gzip
import json
import time
import types
from pathlib import Path
from typing import Any

import httpx

from reconciler.core.reasons import Reason
from reconciler.core.state import Phase, ServerState
from reconciler.engine.runtime import Runtime
from reconciler.host.sampler import Figures
from tests.fix_gateway import Gateway
from tests.webview.conftest import HTTP, url_of
from webview.api import none_match
from webview.infra.views import ServersAnswer


def token(gw: Gateway) -> dict[str, str]:
    return {"Authorization": f"Bearer {(gw.data_dir / 'api-token').read_text().strip()}"}


def servers(r: httpx.Response) -> dict[str, dict[str, object]]:
    assert r.status_code == 200, r.text
    return {s["name"]: s for s in r.json()["servers"]}


def test_a_stop_shows_at_once_and_changes_the_etag(web: Gateway, http: httpx.Client) -> None:
    first = http.get("/api/servers")
    assert servers(first)["beta"]["phase"] == "running"
    etag = first.headers["etag"]
    assert etag.startswith('W/"') and first.headers["cache-control"] == "private, no-cache"
    try:
        # the page's stop waits until the loop has acted; the next read must say so, in the same second
        r = http.post("/servers/beta/control", data={"verb": "stop", "csrf": http.csrf},  # type: ignore[attr-defined]
                      headers={"accept": "application/json"})
        assert r.status_code == 200, r.text
        after = http.get("/api/servers", headers={"if-none-match": etag})
        assert after.status_code == 200
        beta = servers(after)["beta"]
        assert beta["phase"] == "stopped" and beta["stopped_by_operator"] is True and beta["pid"] is None
        assert after.headers["etag"] != etag
        # the CLI's token sees the same body
        assert servers(httpx.get(url_of(web) + "/api/servers", headers=token(web), trust_env=False))["beta"][
            "phase"] == "stopped"
    finally:
        r = http.post("/servers/beta/control", data={"verb": "start", "csrf": http.csrf},  # type: ignore[attr-defined]
                      headers={"accept": "application/json"})
        assert r.status_code == 200, r.text
    back = http.get("/api/servers", headers={"if-none-match": after.headers["etag"]})
    assert servers(back)["beta"]["phase"] == "running" and back.headers["etag"] != after.headers["etag"]


def test_unchanged_answers_304_until_something_changes(web: Gateway, http: httpx.Client) -> None:
    web.wait_phase("alpha", "running")
    # health checks move latency_ms now and then: ask until two answers in a row agree
    for _ in range(50):
        etag = http.get("/api/servers").headers["etag"]
        again = http.get("/api/servers", headers={"if-none-match": etag})
        if again.status_code == 304:
            break
    assert again.status_code == 304, "no two answers in a row had the same ETag"
    assert again.headers["etag"] == etag and again.content == b""
    # a list of tags, the strong form of the same tag and * all match (weak comparison)
    assert http.get("/api/servers", headers={"if-none-match": f'"x", {etag}'}).status_code in (200, 304)
    assert none_match(f'"x", {etag}', etag) and none_match(etag.removeprefix("W/"), etag) and none_match("*", etag)
    assert not none_match('"x"', etag) and not none_match("", etag)
    # a new server file is a change: its card appears and the tag moves
    web.write("gamma", HTTP)
    try:
        web.wait_phase("gamma", "running")
        r = http.get("/api/servers", headers={"if-none-match": etag})
        assert r.status_code == 200 and "gamma" in servers(r) and r.headers["etag"] != etag
    finally:
        (web.config_dir / "gamma.toml").unlink()
        web.wait_for(lambda s: "gamma" not in s, what="gamma gone")
    gone = http.get("/api/servers")
    assert "gamma" not in servers(gone)


def test_gzip_when_asked(web: Gateway, http: httpx.Client) -> None:
    plain = http.get("/api/servers", headers={"accept-encoding": "identity"})
    zipped = http.get("/api/servers", headers={"accept-encoding": "gzip, deflate"})
    assert "content-encoding" not in plain.headers and zipped.headers["content-encoding"] == "gzip"
    assert plain.headers["vary"] == zipped.headers["vary"] == "accept-encoding"
    assert [s["name"] for s in zipped.json()["servers"]] == [s["name"] for s in plain.json()["servers"]]
    assert int(zipped.headers["content-length"]) < len(plain.content)


def test_not_signed_in_gets_no_body_and_no_etag(web: Gateway) -> None:
    with httpx.Client(base_url=url_of(web), trust_env=False) as anon:
        r = anon.get("/api/servers", headers={"if-none-match": "*"})
    assert r.status_code == 401 and "etag" not in r.headers


def test_unchanged_across_a_second_boundary_still_304(web: Gateway, http: httpx.Client) -> None:
    """The uptimes tick (a new body each second) but the tag stays: what a phone polls."""
    for _ in range(20):  # a health check may move a latency in between: try again
        etag = http.get("/api/servers").headers["etag"]
        time.sleep(1.1)  # the next second's body
        again = http.get("/api/servers", headers={"if-none-match": etag})
        if again.status_code == 304:
            return
    raise AssertionError("the tag moved every second")


def _daemon(tmp_path: Path) -> Any:
    rt = Runtime(tmp_path, tmp_path, put=lambda op: None)
    sink = types.SimpleNamespace(unreachable_since=None, db_ok=True, pending=0)
    settings = types.SimpleNamespace(config_dir=tmp_path, data_dir=tmp_path)
    return types.SimpleNamespace(settings=settings, rt=rt, reconciler=types.SimpleNamespace(result=None), store=None,
                                 sink=sink, url="http://127.0.0.1:1", token="", db_label="test", figures=Figures())


def test_answer_is_built_once_per_change_and_second(tmp_path: Path) -> None:
    daemon = _daemon(tmp_path)
    rt = daemon.rt
    t0 = time.monotonic()
    for name in ("a", "b"):
        rt.states[name] = ServerState(name, phase=Phase.RUNNING, pid=4242, port=18000, started_at=t0 - 5)
    answer = ServersAnswer()
    now = float(int(t0))
    body, etag = answer.current(daemon, now)
    assert {s["name"]: s["phase"] for s in json.loads(body)["servers"]} == {"a": "running", "b": "running"}
    assert answer.current(daemon, now + 0.5)[0] is body  # same second, nothing changed: the same bytes
    assert gzip.decompress(answer.gzipped()) == body and answer.gzipped() is answer.gzipped()
    # a phase change shows at once, in the same second, and moves the tag
    rt.set_phase("b", Phase.STOPPING, Reason.OPERATOR_STOP)
    body2, etag2 = answer.current(daemon, now + 0.5)
    assert {s["name"]: s["phase"] for s in json.loads(body2)["servers"]}["b"] == "stopping" and etag2 != etag
    # the clock alone: a new body (its uptimes) with the same tag
    body3, etag3 = answer.current(daemon, now + 3)
    assert body3 is not body2 and etag3 == etag2 and gzip.decompress(answer.gzipped()) == body3
    # a figure the loop sets without announcing (a check's latency): in the next second's body and tag
    rt.update("a", last_latency_ms=3.5)
    assert answer.current(daemon, now + 3.2) == (body3, etag3)
    body4, etag4 = answer.current(daemon, now + 4)
    assert json.loads(body4)["servers"][0]["latency_ms"] == 3.5 and etag4 != etag3


def test_clock_fields_are_left_out_of_the_tag_and_nothing_else() -> None:
    assert ServersAnswer.CLOCK == {"uptime_s", "started_at", "since_epoch", "ended_at", "next_try_in_s",
                                   "next_try_at_epoch", "status"}
