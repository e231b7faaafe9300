"""Settings pages against a real gateway: each save edits gateway.toml keeping its comments
and key order, and is in force without a restart. Alerts: a [notify] address added while a
server is already failing carries the next "down" alert to a real local receiver (apprise
json://), and the test button neither fails nor delays it. Backups download and restore
(with a confirm); start at boot reports what the system says."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.fix_gateway import Gateway, finish, port_blocks
from tests.webview.conftest import CSRF_RE, HTTP, PASSWORD, USER, cli, signed_in
from tests.wine import wine_gap

LOW, NEW_LOW = port_blocks(2)  # the module gateway's range, and the one the page saves
GATEWAY_TOML = f"""# my gateway: keep this comment
[ports]
range = "{LOW}-{LOW + 399}"  # my range

[notify]
# gather quickly in tests
group = "1s"
"""
CRASHER = ('command = ["python", "-c", "import sys; sys.exit(4)"]\n'
           '[restart]\nbackoff_start = "30s"\nbackoff_max = "30s"\nalert_after = 1\n')


class Receiver:
    """A local HTTP endpoint that records what apprise's json:// plugin POSTs to it."""

    def __init__(self) -> None:
        got = self.got = []  # type: list[dict]
        self.arrived = threading.Condition()
        arrived = self.arrived

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with arrived:
                    got.append(json.loads(body or b"{}"))
                    arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, text: str, timeout: float) -> dict:
        with self.arrived:
            ok = self.arrived.wait_for(lambda: any(text in (m.get("title", "") + m.get("message", ""))
                                                   for m in self.got), timeout)
        assert ok, f"no alert with {text!r} arrived: {self.got}"
        return next(m for m in self.got if text in (m.get("title", "") + m.get("message", "")))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> Iterator[Gateway]:
    base = tmp_path_factory.mktemp("settings")
    (base / "gateway.d").mkdir()
    (base / "home").mkdir()
    (base / "gateway.d" / "gateway.toml").write_text(GATEWAY_TOML)
    g = Gateway(base / "gateway.d", base / "data", pg_dsn, f"t_{uuid.uuid4().hex[:12]}")
    g.write("web", HTTP)
    home = os.environ.get("HOME")
    os.environ["HOME"] = str(base / "home")  # start at boot writes its file here, not in the real home
    try:
        g.start()
    finally:
        if home is not None:
            os.environ["HOME"] = home
    try:
        assert cli(g, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
        g.wait_phase("web", "running", 20)
        yield g
    finally:
        finish(g, pg_dsn)


@pytest.fixture
def http(gw: Gateway) -> Iterator[httpx.Client]:
    client = signed_in(gw)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def alerts_rows(gw: Gateway) -> list[tuple]:
    import psycopg

    with psycopg.connect(gw.dsn, options=f"-c search_path={gw.schema}") as conn:
        return conn.execute("SELECT title, ok, error FROM alerts ORDER BY at").fetchall()


def test_alert_address_added_while_failing_carries_the_next_down(gw: Gateway, http: httpx.Client,
                                                                  receiver: Receiver) -> None:
    web_pid = gw.status()["web"]["pid"]
    gw.write("first-bot", CRASHER)
    deadline = time.monotonic() + 30  # down before any address exists: recorded as not sent
    while not any("first-bot" in t and not ok for t, ok, _ in alerts_rows(gw)):
        assert time.monotonic() < deadline, alerts_rows(gw)
        time.sleep(0.2)
    page = http.get("/settings/alerts").text
    assert "No alert addresses yet" in page and "did not go out" in page

    r = http.post("/settings/alerts", data={"csrf": http.csrf, "urls": receiver.url,  # type: ignore[attr-defined]
                                            "events": ["down", "back_up", "health", "port_held"]})
    assert r.status_code == 303, r.text
    assert "In force now" in httpx.URL("/?" + "x=" + r.cookies.get("gw_flash", "")).params["x"].replace("%20", " ")
    text = (gw.config_dir / "gateway.toml").read_text()
    assert "# my gateway: keep this comment" in text and "# my range" in text and "# gather quickly" in text
    assert tomllib.loads(text)["notify"] == {"group": "1s", "urls": [receiver.url],
                                             "events": ["down", "back_up", "health", "port_held"]}
    assert text.index("[ports]") < text.index("[notify]")  # order kept

    r = http.post("/settings/alerts/test", data={"csrf": http.csrf})  # type: ignore[attr-defined]
    assert r.status_code == 303
    receiver.wait_for("a test alert", 20)

    gw.write("second-bot", CRASHER)  # the next "down": delivered, not held back by the test or the old one
    got = receiver.wait_for("second-bot", 30)
    assert "down" in got["title"]
    page = http.get("/settings/alerts").text
    assert "reached you" in page and "Alerts go to 1 address now" in page
    assert gw.status()["web"]["pid"] == web_pid  # saving settings restarted nothing


def test_bad_alert_address_is_refused_and_nothing_written(gw: Gateway, http: httpx.Client) -> None:
    before = (gw.config_dir / "gateway.toml").read_text()
    r = http.post("/settings/alerts", data={"csrf": http.csrf, "urls": "not a url at all"})  # type: ignore[attr-defined]
    assert r.status_code == 422 and "not an address alerts can go to" in r.text
    assert (gw.config_dir / "gateway.toml").read_text() == before


def test_port_range_saved_and_in_force(gw: Gateway, http: httpx.Client) -> None:
    r = http.post("/settings/ports", data={"csrf": http.csrf, "range": "70000-1"})  # type: ignore[attr-defined]
    assert r.status_code == 422 and "1024 to 65535" in r.text
    r = http.post("/settings/ports", data={"csrf": http.csrf, "range": f"{NEW_LOW}-{NEW_LOW + 399}"})  # type: ignore[attr-defined]
    assert r.status_code == 303
    text = (gw.config_dir / "gateway.toml").read_text()
    assert f'range = "{NEW_LOW}-{NEW_LOW + 399}"  # my range' in text
    assert f"In force now: {NEW_LOW}-{NEW_LOW + 399}" in http.get("/settings/ports").text


def test_settings_posts_need_session_and_csrf(gw: Gateway, http: httpx.Client) -> None:
    paths = ("/settings/alerts", "/settings/alerts/test", "/settings/ports", "/settings/backups/schedule",
             "/settings/backups/restore", "/settings/boot")
    for path in paths:
        assert http.post(path, data={"csrf": "wrong"}).status_code == 403, path
    with httpx.Client(base_url=str(http.base_url), trust_env=False, headers={"sec-fetch-site": "same-origin"}) as anon:
        for path in paths:
            assert anon.post(path, data={}).status_code in (401, 403), path
        assert anon.get("/settings/alerts").status_code == 303


def test_backup_download_and_restore(gw: Gateway, http: httpx.Client, tmp_path: Path) -> None:
    r = http.get("/settings/backups/download")
    assert r.status_code == 200 and r.content[:2] == b"\x1f\x8b", r.text[:300]  # gzip
    archive = tmp_path / "b.tar.gz"
    archive.write_bytes(r.content)
    # the temporary copy is removed once the answer is sent (a background task after the body)
    gone_by = time.monotonic() + 10
    while list(gw.data_dir.glob("download-*")) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert not list(gw.data_dir.glob("download-*"))
    files = {"file": ("b.tar.gz", archive.read_bytes(), "application/gzip")}
    r = http.post("/settings/backups/restore", data={"csrf": http.csrf}, files=files)  # type: ignore[attr-defined]
    assert r.status_code == 422 and "Nothing was restored" in r.text
    junk = {"file": ("notes.tar.gz", b"my shopping list, not a backup", "application/gzip")}
    r = http.post("/settings/backups/restore", data={"csrf": http.csrf, "confirm": "yes"},  # type: ignore[attr-defined]
                  files=junk)
    # in words, naming the file the owner chose (not Python's "ReadError('not a gzip file') - method bz2 ...")
    assert r.status_code == 422 and "Nothing was restored: notes.tar.gz: this is not a gateway backup" in r.text
    assert "ReadError" not in r.text and "restore-" not in r.text
    r = http.post("/settings/backups/restore", data={"csrf": http.csrf, "confirm": "yes"},  # type: ignore[attr-defined]
                  files=files)
    assert r.status_code == 303, r.text
    assert "Restored from b.tar.gz" in httpx.URL("/?x=" + r.cookies["gw_flash"]).params["x"]
    # no session comes back from a backup: the one who restored has a new one (and a new form token)
    http.csrf = CSRF_RE.search(http.get("/settings/backups").text).group(1)  # type: ignore[attr-defined,union-attr]
    r = http.post("/settings/backups/schedule", data={"csrf": http.csrf, "every": "1d", "keep": "3"})  # type: ignore[attr-defined]
    assert r.status_code == 303
    sync = tomllib.loads((gw.config_dir / "gateway.toml").read_text())["sync"]
    assert sync == {"backup_every": "1d", "backup_keep": 3}
    assert "# my gateway: keep this comment" in (gw.config_dir / "gateway.toml").read_text()


@wine_gap("Task Scheduler: schtasks /Create returns 0 but /Query prints nothing, so the page cannot say On")
def test_start_at_boot_tells_the_truth(gw: Gateway, http: httpx.Client) -> None:
    page = http.get("/settings/boot")
    assert page.status_code == 200 and "data-boot-status" in page.text and "gateway autostart install" in page.text
    # the file install writes: a systemd unit in the test's HOME; on Windows the task's XML, in the data folder
    # (what schtasks registered from)
    units, written = ((gw.data_dir, "omen-gateway-*.xml") if sys.platform == "win32" else
                      (gw.data_dir.parent / "home" / ".config" / "systemd" / "user", "*.service"))
    r = http.post("/settings/boot", data={"csrf": http.csrf, "verb": "install"})  # type: ignore[attr-defined]
    if r.status_code == 303:  # the system took it: the file is there and the status says on
        assert list(units.glob(written))
        assert "<b>On</b>" in http.get("/settings/boot").text
        r = http.post("/settings/boot", data={"csrf": http.csrf, "verb": "remove"})  # type: ignore[attr-defined]
        assert r.status_code == 303 and not list(units.glob(written))
    else:  # it could not: the page says why and gives the command to copy
        assert r.status_code == 409 and "Could not turn it on from the page" in r.text
        assert "gateway autostart install --config" in r.text


def test_no_events_chosen_is_said_and_saved(gw: Gateway, http: httpx.Client) -> None:
    from reconciler.ops.notify import ALL_KINDS

    before = tomllib.loads((gw.config_dir / "gateway.toml").read_text()).get("notify", {})
    try:
        r = http.post("/settings/alerts", data={"csrf": http.csrf, "urls": "json://127.0.0.1:9/x"})  # type: ignore[attr-defined]
        assert r.status_code == 303
        assert tomllib.loads((gw.config_dir / "gateway.toml").read_text())["notify"]["events"] == []
        assert "data-no-events" in http.get("/settings/alerts").text
    finally:
        r = http.post("/settings/alerts", data={"csrf": http.csrf,  # type: ignore[attr-defined]
                                                "urls": "\n".join(before.get("urls", [])),
                                                "events": list(before.get("events", ALL_KINDS))})
        assert r.status_code == 303
