"""The gateway gets cloudflared itself, against a local stand-in of GitHub's releases of
cloudflare/cloudflared (`fake_releases.py`): the asset for this computer, checked against the
checksum Cloudflare publishes (and GitHub's digest) before it is used, kept in the data
folder, run. A newer release is offered on the page; an update that fails to download or does
not match changes nothing and says so; one that works moves the tunnel to it through the
two-connector handover (visitors' requests through the edge stand-in fail none); a new one that
does not come up is given back, and the previous one keeps serving."""

from __future__ import annotations

import json
import sys
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from reconciler.tunnel import fetch
from reconciler.tunnel.release import asset_for
from tests.fix_gateway import Gateway
from tests.tunnel.fake_cloudflare import FakeCloudflare
from tests.tunnel.fake_edge import ENV, FakeEdge, cloudflare_dns
from tests.tunnel.fake_releases import FakeReleases
from tests.tunnel.test_connector import wait, with_tunnel
from tests.tunnel.test_handover_requests import Visitor, settled, web_file
from tests.webview.conftest import PASSWORD, USER, cli, signed_in

ASSET = asset_for(platform.system(), platform.machine()).name
OTHERS = ["cloudflared-windows-amd64.exe", "cloudflared-darwin-arm64.tgz", "cloudflared-linux-arm64"]


@pytest.fixture
def fetched(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Gateway, FakeEdge, FakeReleases,
                                                                                 Path]]:
    """A gateway with [tunnel] and no cloudflared anywhere but the release server's."""
    if sys.platform == "win32":
        pytest.skip("the release stand-in serves a Python script as cloudflared, and Windows runs only a real .exe "
                    "(the asset's choice, the download and the checksum are this file's other tests)")
    with FakeCloudflare() as cf, FakeEdge(resolve=cloudflare_dns(lambda: cf.records.values())) as edge, \
            FakeReleases() as releases:
        cf.add_zone("example.com")
        releases.publish("2026.8.2", [ASSET, *OTHERS])
        monkeypatch.setenv("CLOUDFLARE_API_TOKEN", cf.token)
        monkeypatch.setenv(ENV, edge.address)
        monkeypatch.setenv("GATEWAY_CLOUDFLARED_RELEASES", releases.url)
        monkeypatch.setenv("GATEWAY_CLOUDFLARED_CHECK_EVERY", "3")  # a newer release is seen in seconds, not a day
        config_yml = with_tunnel(gateway, None, extra=f'api_url = "{cf.url}"\n')
        gateway.write("web", web_file(0))
        gateway.start()
        done = cli(gateway, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
        assert done.returncode == 0, done.stderr
        yield gateway, edge, releases, config_yml


def flash(r: httpx.Response) -> str:
    cookie = r.headers.get("set-cookie", "")
    return unquote(cookie.split("gw_flash=", 1)[1].split(";", 1)[0]) if "gw_flash=" in cookie else ""


def version_of(path: str) -> str:
    return subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout


def test_the_gateway_fetches_checks_keeps_and_runs_cloudflared(fetched):
    gw, edge, releases, config_yml = fetched
    up = gw.wait_phase("cloudflared", "running", timeout=60)
    command = gw.client.status()  # the running connector's argv, as the API shows it
    exe = gw.data_dir / "cloudflared" / "2026.8.2" / "cloudflared"
    assert json.loads((gw.data_dir / "cloudflared" / "installed.json").read_text())["version"] == "2026.8.2"
    assert releases.downloads == [ASSET]  # only this computer's asset
    assert "cloudflared version 2026.8.2" in version_of(str(exe))
    tunnel = command["gateway"]["tunnel"]
    assert tunnel["cloudflared"] == str(exe) and up["pid"]
    settled(gw, edge, config_yml, "0")
    said = [e for e in gw.events("cloudflared") if e["kind"] == "cloudflared_installed"]
    assert said and said[0]["reason"].startswith("cloudflared 2026.8.2 is installed (checked against the checksum "
                                                 "Cloudflare published)")
    http = signed_in(gw)
    try:
        assert "cloudflared 2026.8.2" in http.get("/cloudflare").text
    finally:
        http.close()


def test_updates_that_fail_change_nothing_and_one_that_works_has_no_gap(fetched):
    gw, edge, releases, config_yml = fetched
    gw.wait_phase("cloudflared", "running", timeout=60)
    settled(gw, edge, config_yml, "0")
    first = gw.status()["cloudflared"]["pid"]
    state = gw.data_dir / "cloudflared" / "installed.json"
    releases.publish("2026.9.0", [ASSET, *OTHERS], checksums={ASSET: "0" * 64})
    http = signed_in(gw)
    try:
        wait(lambda: "Update cloudflared to 2026.9.0" in http.get("/cloudflare").text, timeout=40,
             what="the newer release offered")
        # the published checksum does not match what downloads
        r = http.post("/cloudflare/update", data={"csrf": http.csrf})  # type: ignore[attr-defined]
        assert r.status_code == 303
        assert flash(r).startswith("cloudflared was not installed: the downloaded cloudflared 2026.9.0 does not match "
                                   f"the checksum Cloudflare published for {ASSET} (expected 000000000000…")
        assert flash(r).endswith("cloudflared 2026.8.2 stays in use.")
        # the download breaks off, or the server fails
        releases.publish("2026.9.0", [ASSET, *OTHERS])
        for mode, words in (("truncate", "broke off"), ("500", "failed (HTTP 500)"), ("tamper", "GitHub's checksum")):
            releases.broken[ASSET] = mode
            r = http.post("/cloudflare/update", data={"csrf": http.csrf})  # type: ignore[attr-defined]
            assert words in flash(r) and flash(r).endswith("cloudflared 2026.8.2 stays in use."), (mode, flash(r))
            assert json.loads(state.read_text())["version"] == "2026.8.2", mode
        assert not (gw.data_dir / "cloudflared" / "2026.9.0").exists()
        assert gw.status()["cloudflared"]["pid"] == first
        assert [n for n in (gw.data_dir / "cloudflared").iterdir() if n.name.startswith(".")] == []  # no leftovers
        failed = [e for e in gw.events("cloudflared") if e["kind"] == "cloudflared_failed"]
        assert len(failed) == 4

        # a good one: the tunnel moves to it without a gap
        del releases.broken[ASSET]
        mark = max(e["seq"] for e in gw.events())
        with Visitor(edge) as visitor:
            wait(lambda: visitor.ok > 5, what="answers before the update")
            r = http.post("/cloudflare/update", data={"csrf": http.csrf})  # type: ignore[attr-defined]
            assert flash(r).startswith("cloudflared 2026.9.0 is installed"), flash(r)
            assert "the tunnel moves to it from 2026.8.2 without a gap" in flash(r)
            wait(lambda: any(e["kind"] == "tunnel_handover" and e["reason"].startswith("done") and e["seq"] > mark
                             for e in gw.events("cloudflared")), timeout=60, what="the handover done")
            seen = visitor.ok
            wait(lambda: visitor.ok > seen + 10, what="answers after the update")
        assert not visitor.failures, visitor.failures[:5]
        new = gw.client.status()["gateway"]["tunnel"]["cloudflared"]
        assert new == str(gw.data_dir / "cloudflared" / "2026.9.0" / "cloudflared")
        assert "cloudflared version 2026.9.0" in version_of(new)
        assert gw.status()["cloudflared"]["pid"] != first
        assert "Update cloudflared" not in http.get("/cloudflare").text
    finally:
        http.close()


def test_a_new_cloudflared_that_does_not_come_up_is_given_back(fetched):
    gw, edge, releases, config_yml = fetched
    gw.wait_phase("cloudflared", "running", timeout=60)
    settled(gw, edge, config_yml, "0")
    first = gw.status()["cloudflared"]["pid"]
    releases.publish("2026.9.0", [ASSET, *OTHERS], broken=True)
    http = signed_in(gw)
    try:
        with Visitor(edge) as visitor:
            wait(lambda: visitor.ok > 5, what="answers before the update")
            r = http.post("/cloudflare/update", data={"csrf": http.csrf})  # type: ignore[attr-defined]
            assert flash(r).startswith("cloudflared 2026.9.0 is installed"), flash(r)
            wait(lambda: any(e["kind"] == "cloudflared_failed" for e in gw.events("cloudflared")), timeout=60,
                 what="the new one given up")
            seen = visitor.ok
            wait(lambda: visitor.ok > seen + 10, what="answers after")
        assert not visitor.failures, visitor.failures[:5]
        [given_up] = [e for e in gw.events("cloudflared") if e["kind"] == "cloudflared_failed"]
        assert given_up["reason"].startswith("cloudflared 2026.9.0 did not connect (the second connector exited "
                                             "before it was ready")
        assert given_up["reason"].endswith("cloudflared 2026.8.2 is back in use, and the tunnel kept serving")
        state = json.loads((gw.data_dir / "cloudflared" / "installed.json").read_text())
        assert state["version"] == "2026.8.2" and state["rejected"] == "2026.9.0"
        assert gw.status()["cloudflared"]["pid"] == first
        assert fetch.installed(gw.data_dir) is not None
        assert "Update cloudflared to 2026.9.0" not in http.get("/cloudflare").text  # not offered again
    finally:
        http.close()
