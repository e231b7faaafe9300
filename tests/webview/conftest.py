"""One real gateway per test module (a daemon subprocess, real PostgreSQL, real child
servers), a user made with `gateway user add`, and signed-in httpx clients."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fix_gateway import REPO, Gateway, finish, own_port_range

USER, PASSWORD = "ada", "correct horse battery"
HTTP = 'command = ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]\nport = "auto"\n'
CSRF_RE = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def cli(gw: Gateway, *args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", *args, "--config", str(gw.config_dir),
                           "--data-dir", str(gw.data_dir)], cwd=REPO, input=stdin, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})}, check=False)


def url_of(gw: Gateway) -> str:
    return (gw.data_dir / "gateway.url").read_text().strip()


def signed_in(gw: Gateway, user: str = USER, password: str = PASSWORD) -> httpx.Client:
    """An httpx client holding a session cookie, with `.csrf` set from the overview page."""
    http = httpx.Client(base_url=url_of(gw), trust_env=False, timeout=30, headers={"sec-fetch-site": "same-origin"})
    r = http.post("/login", data={"username": user, "password": password, "next": "/"})
    assert r.status_code == 303, r.text
    page = http.get("/")
    assert page.status_code == 200
    http.csrf = CSRF_RE.search(page.text).group(1)  # type: ignore[attr-defined]
    return http


@contextlib.contextmanager
def signed_up_gateway(base: Path, pg_dsn: str, servers: dict[str, str]) -> Iterator[Gateway]:
    """A running gateway in `base` with a port range of its own, the user USER, and `servers`
    (name -> file text) running."""
    config = base / "gateway.d"
    config.mkdir()
    own_port_range(config)
    gw = Gateway(config, base / "data", pg_dsn, f"t_{uuid.uuid4().hex[:12]}")
    for name, text in servers.items():
        gw.write(name, text)
    gw.start()
    try:
        done = cli(gw, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
        assert done.returncode == 0, done.stderr
        gw.wait_for(lambda s: all(s.get(n, {}).get("phase") == "running" for n in servers), 20)
        yield gw
    finally:
        finish(gw, pg_dsn)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> Iterator[Gateway]:
    with signed_up_gateway(tmp_path_factory.mktemp("web"), pg_dsn, {
            "alpha": HTTP + 'description = "first demo"\ngroup = "web"\ntags = ["demo"]\n',
            "beta": HTTP + 'group = "web"\n'}) as gw:
        yield gw


@pytest.fixture
def http(web: Gateway) -> Iterator[httpx.Client]:
    client = signed_in(web)
    try:
        yield client
    finally:
        client.close()


def artifacts() -> Path:
    path = REPO / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
