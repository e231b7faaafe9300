"""`gateway tunnel render | check | status | dns` as a user runs them (real files; dns against the
local fake API with the ledger in real PostgreSQL, through GATEWAY_DSN and a test schema)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli import main
from tests.fix_db import drop_schema
from tests.tunnel.fake_cloudflare import FakeCloudflare

TUNNEL_ID = "6ff42ae2-765d-4adf-8112-31c55c1551ef"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "gateway.d"
    config.mkdir()
    (config / "gateway.toml").write_text(f'[tunnel]\nid = "{TUNNEL_ID}"\ncloudflared = "/nonexistent/cloudflared"\n')
    (config / "blog.toml").write_text('command = ["x"]\nport = 8001\n[domain]\nhostname = "blog.example.com"\n')
    (config / "api.toml").write_text('command = ["x"]\nport = 8002\n[domain]\nhostname = "*.example.com"\n'
                                     'path = "^/api/.*$"\n')
    monkeypatch.setenv("GATEWAY_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("GATEWAY_CONFIG", str(config))
    return config


def test_render_prints_the_config(folder: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["tunnel", "render"]) == 0
    out = capsys.readouterr().out
    assert out.index("blog.example.com") < out.index("*.example.com") < out.index("http_status:404")


def test_check_ok_then_bad(folder: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["tunnel", "check"]) == 0
    captured = capsys.readouterr()
    assert "2 routes ok, 0 errors" in captured.out and "cloudflared not found" in captured.err
    (folder / "bad.toml").write_text('command = ["x"]\nport = 8003\n[domain]\nhostname = "a.*.example.com"\n')
    assert main(["tunnel", "check"]) == 1
    captured = capsys.readouterr()
    assert ('bad.toml:4: domain.hostname: Hostname patterns can have at most one wildcard character ("*") and it '
            'can only be used for subdomains, e.g. "*.example.com"') in captured.err
    assert "2 routes ok, 1 errors" in captured.out


def test_check_fails_when_a_server_file_does_not_load(folder: Path, capsys: pytest.CaptureFixture[str]):
    (folder / "shop.toml").write_text('command = ["x"]\nport = "eighty"\n[domain]\nhostname = "shop.example.com"\n')
    assert main(["tunnel", "check"]) == 1
    captured = capsys.readouterr()
    assert "shop.toml" in captured.err and "2 routes ok, 1 errors" in captured.out


def test_gateway_check_finds_domain_and_tunnel_errors(folder: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["check", str(folder)]) == 0
    capsys.readouterr()
    (folder / "bad.toml").write_text('command = ["x"]\nport = 8003\n[domain]\nhostname = "*example.com"\n')
    (folder / "gateway.toml").write_text(f'[tunnel]\nid = "{TUNNEL_ID}"\ncloudflared = "/nonexistent/cloudflared"\n'
                                         'origin = { connectTimeout = "s" }\n')
    assert main(["check", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "bad.toml:4: domain.hostname: '*example.com' only ever matches the literal text" in out
    assert "gateway.toml:4: tunnel.origin: cannot unmarshal !!str `s` into time.Duration" in out
    assert "3 servers ok, 2 errors" in out


def test_status_without_a_gateway(folder: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["tunnel", "status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tunnel: cloudflared missing: cloudflared not found at '/nonexistent/cloudflared'")
    assert "https://blog.example.com -> http://127.0.0.1:8001 (blog)" in out
    assert "no certificate files to manage" in out


def test_not_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("GATEWAY_HOME", str(tmp_path / "data"))
    assert main(["tunnel", "check", "--config", str(tmp_path / "empty")]) == 1
    assert "not configured: add a [tunnel] table to gateway.toml" in capsys.readouterr().err



def test_dns(folder: Path, pg_dsn: str, schema_name: str, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]):
    from reconciler.platform import aio

    with FakeCloudflare() as cf:
        cf.add_zone("example.com")
        with (folder / "gateway.toml").open("a") as fh:
            fh.write(f'api_url = "{cf.url}"\napi_token_env = "TEST_CF_TOKEN"\n')
        monkeypatch.setenv("GATEWAY_DSN", pg_dsn)
        monkeypatch.setenv("GATEWAY_DB_SCHEMA", schema_name)
        try:
            assert main(["tunnel", "dns"]) == 1
            assert "no API token: set $TEST_CF_TOKEN" in capsys.readouterr().err
            monkeypatch.setenv("TEST_CF_TOKEN", cf.token)
            assert main(["tunnel", "dns"]) == 0
            out = capsys.readouterr().out
            assert f"blog.example.com: created: proxied CNAME -> {TUNNEL_ID}.cfargotunnel.com in example.com" in out
            assert main(["tunnel", "dns"]) == 0
            assert "blog.example.com: unchanged" in capsys.readouterr().out
        finally:
            aio.run(drop_schema(pg_dsn, schema_name))  # the platform's loop: psycopg refuses Windows' Proactor
