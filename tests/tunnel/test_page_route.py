"""`[web] hostname`: the page itself is published through the tunnel, to its tunnel door."""

from __future__ import annotations

from pathlib import Path

from reconciler.engine.config import load_dir
from reconciler.settings import TUNNEL_URL_FILE
from reconciler.tunnel.connector import build
from tests.fix_children import toml_str


def folder_with(tmp_path: Path, web: str) -> Path:
    config = tmp_path / "gateway.d"
    config.mkdir()
    creds = tmp_path / "creds.json"
    creds.write_text("{}")
    (config / "gateway.toml").write_text(
        f'[web]\n{web}\n[tunnel]\nid = "6ff42ae2-765d-4adf-8112-31c55c1551ef"\ncredentials_file = {toml_str(creds)}\n')
    (config / "blog.toml").write_text('command = ["x"]\nport = 8080\n[domain]\nhostname = "blog.example.com"\n')
    return config


def test_the_page_is_routed_to_its_tunnel_door(tmp_path: Path):
    config = folder_with(tmp_path, 'hostname = "Gateway.Example.com"')
    data = tmp_path / "data"
    data.mkdir()
    plan = build(load_dir(config), config, data, {}, environ={"PATH": ""}, screen=False)
    assert [r.hostname for r in plan.rules[:-1]] == ["blog.example.com"] and plan.pending == ["gateway"]
    (data / TUNNEL_URL_FILE).write_text("http://127.0.0.1:8766\n")  # the page's door, once it listens
    plan = build(load_dir(config), config, data, {}, environ={"PATH": ""}, screen=False)
    routed = {r.hostname: r.service for r in plan.rules[:-1]}
    assert routed == {"blog.example.com": "http://127.0.0.1:8080", "gateway.example.com": "http://127.0.0.1:8766"}
    assert "gateway.example.com" in plan.hostnames  # and its DNS record is kept in step like a server's
    assert plan.text is not None and 'hostname: "gateway.example.com"' in plan.text


def test_no_hostname_no_route(tmp_path: Path):
    config = folder_with(tmp_path, 'listen = "127.0.0.1:8765"')
    plan = build(load_dir(config), config, tmp_path, {}, environ={"PATH": ""}, screen=False)
    assert [r.hostname for r in plan.rules[:-1]] == ["blog.example.com"] and not plan.pending
