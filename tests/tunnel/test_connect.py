"""Connect with one API token, against the local stand-in of Cloudflare's v4 API: token ->
account and zones -> tunnel created (POST /accounts/{id}/cfd_tunnel with a generated secret)
or an existing one picked -> credentials JSON 0600 in the data folder -> [tunnel] in
gateway.toml (comments kept) -> token in the data folder, never in gateway.d. Errors in words."""

from __future__ import annotations

import base64
import json
import tomllib
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.tunnel.cfapi import Client
from reconciler.tunnel.connect import ConnectError, connect, template_url
from tests.fix_children import private
from tests.tunnel.fake_cloudflare import FakeCloudflare


@pytest.fixture
def cf():
    with FakeCloudflare(per_page_max=2) as fake:  # two per page: every list is paged
        yield fake


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "gateway.d"
    config.mkdir()
    (config / "gateway.toml").write_text("# my settings\n[web]\nlisten = \"127.0.0.1:8765\"  # the page\n")
    monkeypatch.setenv("GATEWAY_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("GATEWAY_CONFIG", str(config))
    return tmp_path


def _token_file(home: Path, token: str) -> Path:
    path = home / "token.txt"
    path.write_text(token + "\n")
    return path


def test_connect_creates_the_tunnel_writes_credentials_and_records_it(cf, home, capsys):
    account = cf.add_account("Ada's account")
    for name in ("example.com", "example.org", "bücher.example"):
        cf.add_zone(name, account)
    for i in range(3):
        cf.add_tunnel(account, f"old-{i}")
    token = _token_file(home, cf.token)
    assert main(["tunnel", "connect", "--token-file", str(token), "--api-url", cf.url]) == 0
    out = capsys.readouterr().out
    assert "connected to Ada's account: created the tunnel omen-gateway-" in out
    assert "example.com, example.org" in out  # all zones, found over two pages

    [made] = [t for t in cf.tunnels.values() if t["name"].startswith("omen-gateway-")]
    assert made["config_src"] == "local" and len(base64.b64decode(made["secret"])) == 32
    settings = tomllib.loads((home / "gateway.d" / "gateway.toml").read_text())["tunnel"]
    assert settings["id"] == made["id"] and settings["account_id"] == account and settings["api_url"] == cf.url
    creds = Path(settings["credentials_file"])
    assert creds.parent == home / "data" / "tunnel" and private(creds)
    assert json.loads(creds.read_text()) == {"AccountTag": account, "TunnelSecret": made["secret"],
                                             "TunnelID": made["id"]}
    token_file = Path(settings["api_token_file"])
    assert token_file.read_text().strip() == cf.token and private(token_file)
    text = (home / "gateway.d" / "gateway.toml").read_text()
    assert text.startswith("# my settings\n") and "# the page" in text and cf.token not in text
    assert not any(cf.token in p.read_text() for p in (home / "gateway.d").iterdir())


async def test_an_existing_tunnel_is_picked_with_its_secret(cf, home):
    account = cf.add_account()
    cf.add_zone("example.com", account)
    tid = cf.add_tunnel(account, "laptop")
    async with Client(cf.url, cf.token) as client:
        done = await connect(client, home / "data", home / "gateway.d" / "gateway.toml", token=cf.token,
                             tunnel="laptop", api_url=cf.url)
    assert not done.created and done.tunnel_id == tid and len(cf.tunnels) == 1
    assert json.loads(done.credentials_file.read_text())["TunnelSecret"] == cf.tunnels[tid]["secret"]


@pytest.mark.parametrize("perms, words", [
    (set(), "this token cannot see the tunnels of the account Ada's account: add the Cloudflare Tunnel edit "
            "permission (Account → Cloudflare Tunnel → Edit)"),
    ({"zone"}, "this token cannot see the tunnels of the account Ada's account"),
])
async def test_token_errors_in_words(cf, home, perms, words):
    account = cf.add_account("Ada's account")
    cf.add_zone("example.com", account)
    cf.tokens["weak"] = perms
    async with Client(cf.url, "weak") as client:
        with pytest.raises(ConnectError) as err:
            await connect(client, home / "data", home / "gateway.d" / "gateway.toml", token="weak", api_url=cf.url)
    assert str(err.value).startswith(words)
    assert not (home / "data" / "tunnel").exists()  # nothing written


@pytest.mark.parametrize("perms, words, detail", [
    ({"tunnel"}, "this token cannot see the domains of Ada's account: add the DNS edit permission (Zone → DNS → "
                 "Edit) with Zone Resources “All zones”", "requires permission 'com.cloudflare.api.account.zone.list'"),
    ({"tunnel", "zone"}, "this token can see your domains but cannot change their DNS records, so your servers' "
                         "names cannot point at the tunnel: add the DNS edit permission (Zone → DNS → Edit)", ""),
])
async def test_a_token_without_the_dns_permission_is_told_at_connect(cf, home, perms, words, detail):
    """Not "connected, domains: none": the missing permission is named (Cloudflare reports it as
    a 403 naming com.cloudflare.api.account.zone.list for the zone list, and refuses a DNS change
    before looking the record up), and nothing is created or written."""
    account = cf.add_account("Ada's account")
    cf.add_zone("example.com", account)
    cf.tokens["nodns"] = perms
    async with Client(cf.url, "nodns") as client:
        with pytest.raises(ConnectError) as err:
            await connect(client, home / "data", home / "gateway.d" / "gateway.toml", token="nodns", api_url=cf.url)
    assert str(err.value).startswith(words), str(err.value)
    assert detail in err.value.detail
    assert not cf.tunnels and not cf.records and not (home / "data" / "tunnel").exists()
    probe = ("PATCH", f"/client/v4/zones/{next(iter(cf.zones))}/dns_records/{'0' * 32}")  # changes nothing
    assert (probe in cf.calls) == ("zone" in perms)


async def test_an_account_without_a_domain_is_told_to_add_one(cf, home):
    cf.add_account("Ada's account")
    async with Client(cf.url, cf.token) as client:
        with pytest.raises(ConnectError) as err:
            await connect(client, home / "data", home / "gateway.d" / "gateway.toml", token=cf.token, api_url=cf.url)
    assert str(err.value).startswith("Cloudflare shows this token no domain in Ada's account: if your domain is "
                                     "there, the token lacks the DNS permission")
    assert "add your domain to Cloudflare first" in str(err.value) and not cf.tunnels


async def test_wrong_token_several_accounts_and_no_account(cf, home):
    async with Client(cf.url, "nope") as client:
        with pytest.raises(ConnectError) as err:
            await connect(client, home / "data", home / "x.toml", token="nope")
    assert str(err.value) == "Cloudflare did not accept this token (mistyped, expired or deleted?): create a new one"
    assert "10000: Authentication error" in err.value.detail
    async with Client(cf.url, cf.token) as client:
        with pytest.raises(ConnectError) as err:
            await connect(client, home / "data", home / "x.toml", token=cf.token)
        assert str(err.value).startswith("this token reaches no Cloudflare account")
        a, b = cf.add_account("Home"), cf.add_account("Work")
        cf.add_zone("example.com", b)
        with pytest.raises(ConnectError) as err:
            await connect(client, home / "data", home / "x.toml", token=cf.token)
        assert str(err.value) == "this token reaches 2 accounts: pick one"
        assert {c["id"] for c in err.value.choices} == {a, b}
        done = await connect(client, home / "data", home / "x.toml", token=cf.token, account_id=b)
        assert done.account_name == "Work"


def test_template_url_fills_in_the_permissions():
    from urllib.parse import parse_qs, urlparse

    url = urlparse(template_url())
    assert (url.scheme, url.netloc, url.path) == ("https", "dash.cloudflare.com", "/profile/api-tokens")
    query = parse_qs(url.query)
    assert json.loads(query["permissionGroupKeys"][0]) == [
        {"key": "argotunnel", "type": "edit"}, {"key": "zone_dns", "type": "edit"},
        {"key": "notification", "type": "edit"}]
    assert query["accountId"] == ["*"] and query["zoneId"] == ["all"]


async def test_the_outside_alarm_once_per_tunnel_and_in_words(cf, home):
    from reconciler.tunnel.connect import read_summary, set_alarm

    account = cf.add_account("Ada's account")
    cf.add_zone("example.com", account)
    async with Client(cf.url, cf.token) as client:
        done = await connect(client, home / "data", home / "gateway.d" / "gateway.toml", token=cf.token,
                             api_url=cf.url)
        said = await set_alarm(client, home / "data", account, done.tunnel_id, "ada@example.com")
        assert said == "Outside alarm on: Cloudflare tells ada@example.com when this laptop cannot be reached."
        await set_alarm(client, home / "data", account, done.tunnel_id, "ada@example.com")  # again: still one
        [policy] = cf.policies
        assert policy["alert_type"] == "tunnel_health_event" and policy["filters"] == {"tunnel_id": [done.tunnel_id]}
        assert policy["mechanisms"] == {"email": [{"id": "ada@example.com"}]}
        assert read_summary(home / "data")["alarm"]["to"] == "ada@example.com"
        cf.policies.clear()
        await set_alarm(client, home / "data", account, done.tunnel_id, "https://ntfy.sh/ada-secret")
        assert cf.webhooks[0]["url"] == "https://ntfy.sh/ada-secret"
        assert cf.policies[0]["mechanisms"] == {"webhooks": [{"id": cf.webhooks[0]["id"]}]}
        with pytest.raises(ConnectError) as err:
            await set_alarm(client, home / "data", account, done.tunnel_id, "ntfy://topic")
        assert "neither an email address nor an https:// address" in str(err.value)
    cf.tokens["no-notify"] = {"zone", "dns", "tunnel"}
    async with Client(cf.url, "no-notify") as client:
        with pytest.raises(ConnectError) as err:
            await set_alarm(client, home / "data", account, done.tunnel_id, "ada@example.com")
    assert str(err.value) == ("this token cannot set up notifications in the account Ada's account: add the "
                              "Notifications edit permission (Account → Notifications → Edit)")
