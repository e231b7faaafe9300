"""Backups through the page, against real gateways (issue 25, item 2): the code app's secret is
sealed in the database; a restored backup never brings back a session that was ended; the
person who restores stays signed in, everyone else signs in again; a backup restored on another
computer (another data folder: another key) says whose code app stays behind before anything
happens, and only then restores. The data folder and scheduled backups are the owner's only."""

from __future__ import annotations

import re
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pyotp
import pytest
from psycopg import sql

from tests.fix_gateway import Gateway, finish, own_port_range
from tests.ops.test_backup_secrets import with_member
from tests.webview.conftest import CSRF_RE, HTTP, PASSWORD, USER, cli, signed_in, url_of
from tests.webview.published import SAME, enrol


def sign_in_with_code(gw: Gateway, code: str) -> httpx.Client:
    """USER at the laptop's door: the password, then `code` (the code app is on)."""
    http = httpx.Client(base_url=url_of(gw), trust_env=False, timeout=60, headers=SAME)
    r = http.post("/login", data={"username": USER, "password": PASSWORD, "next": "/"})
    assert r.status_code == 303 and r.headers["location"] == "/login/verify", r.text[:300]
    r = http.post("/login/verify", data={"code": code})
    assert r.status_code == 303, r.text[:300]
    http.csrf = CSRF_RE.search(http.get("/").text).group(1)  # type: ignore[attr-defined,union-attr]
    return http


def users_of(gw: Gateway) -> dict[str, str | None]:
    with psycopg.connect(gw.read_dsn()) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(gw.schema)))
        return dict(conn.execute("SELECT name, totp_secret FROM users").fetchall())


def restore(http: httpx.Client, archive: bytes, **fields: str) -> httpx.Response:
    return http.post("/settings/backups/restore", data={"csrf": http.csrf, "confirm": "yes", **fields},  # type: ignore[attr-defined]
                     files={"file": ("from-a.tar.gz", archive, "application/gzip")})


def test_backups_through_the_page_here_and_on_another_computer(gateway: Gateway, pg_dsn: str,
                                                               tmp_path: Path) -> None:
    gateway.write("one", HTTP)
    gateway.start()
    assert cli(gateway, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    secret, codes = enrol(gateway, USER, PASSWORD)
    stored = users_of(gateway)[USER]
    assert stored is not None and stored.startswith("sealed:v1:") and secret not in stored

    ended, now = sign_in_with_code(gateway, codes.pop()), sign_in_with_code(gateway, codes.pop())
    try:
        r = now.get("/settings/backups/download")
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        archive = r.content
        cookie = {"cookie": f"gw_session={ended.cookies['gw_session']}"}  # kept, as a copied cookie would be
        assert ended.post("/logout", data={"csrf": ended.csrf}).status_code == 303  # type: ignore[attr-defined]
        ended.cookies.clear()
        assert ended.get("/", headers=cookie).status_code == 303

        # one unsafe member: nothing is replaced (it had replaced the database when it said so, item 7)
        assert cli(gateway, "user", "add", "later", "--password-stdin", stdin="a later password\n").returncode == 0
        (tmp_path / "a.tar.gz").write_bytes(archive)
        bad = with_member(tmp_path / "a.tar.gz", tmp_path / "bad.tar.gz", "config/../../escaped.toml", b"x")
        r = restore(now, bad.read_bytes())
        assert r.status_code == 422 and "Nothing was restored: the archive holds an unsafe path" in r.text
        assert "later" in users_of(gateway) and not list(tmp_path.rglob("escaped.toml"))
        assert now.get("/").status_code == 200

        # restored here: the session that was ended stays ended; the one restoring stays signed in
        r = restore(now, archive)
        assert r.status_code == 303 and r.headers["location"] == "/settings/backups", r.text[:500]
        page = now.get("/settings/backups")
        assert page.status_code == 200 and "Everyone else signs in again" in page.text
        assert ended.get("/", headers=cookie).status_code == 303  # the backup held it: it stays ended
        # this computer's key opens the restored secret: the code app works as before
        with httpx.Client(base_url=url_of(gateway), trust_env=False, headers=SAME) as again:
            again.post("/login", data={"username": USER, "password": PASSWORD})
            r = again.post("/login/verify", data={"code": pyotp.TOTP(secret).at(time.time() + 30)})
            assert r.status_code == 303 and r.headers["location"] == "/"
    finally:
        ended.close()
        now.close()

    # another computer: its own data folder, its own key, its own owner
    config = tmp_path / "b" / "gateway.d"
    config.mkdir(parents=True)
    own_port_range(config)
    other = Gateway(config, tmp_path / "b" / "data", pg_dsn, f"t_{uuid.uuid4().hex[:12]}")
    try:
        other.start()
        assert cli(other, "user", "add", "owner", "--password-stdin", stdin="owner's password\n").returncode == 0
        http = signed_in(other, "owner", "owner's password")
        try:
            r = restore(http, archive)
            assert r.status_code == 409 and "Nothing is restored yet" in r.text
            assert f"The code app of {USER} cannot come along" in r.text
            assert set(users_of(other)) == {"owner"}  # said before it happens: nothing happened
            waiting = re.search(r'name="waiting" value="([^"]+)"', r.text).group(1)  # type: ignore[union-attr]
            r = http.post("/settings/backups/restore", data={"csrf": http.csrf, "waiting": waiting,  # type: ignore[attr-defined]
                                                             "name": "from-a.tar.gz", "confirm": "yes",
                                                             "code_apps": "again"})
            assert r.status_code == 303 and r.headers["location"] == "/login"  # "owner" is not in that backup
            assert users_of(other) == {USER: None}  # ada, without the code app this key cannot open
            assert not list((other.data_dir / "restore-waiting").iterdir())
        finally:
            http.close()
        with httpx.Client(base_url=url_of(other), trust_env=False, headers=SAME) as ada:
            r = ada.post("/login", data={"username": USER, "password": PASSWORD, "next": "/security"})
            assert r.status_code == 303 and r.headers["location"] == "/security"
            assert '<span class="state-off">Off</span>' in ada.get("/security").text  # the code app, to set up again
    finally:
        finish(other, pg_dsn)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX mode bits: on Windows the data folder is "
                    "private by the user profile's ACL")
def test_the_data_folder_and_scheduled_backups_are_the_owners_only(tmp_path: Path, pg_dsn: str) -> None:
    """With its own embedded PostgreSQL (as root, run by a system user of its own): the data
    folder lets nobody else through, and the backups it writes are 0600 in a 0700 folder."""
    config = tmp_path / "gateway.d"
    config.mkdir()
    own_port_range(config)
    (config / "gateway.toml").write_text((config / "gateway.toml").read_text() +
                                         '[sync]\nbackup_every = "1s"\nbackup_keep = 2\n')
    gw = Gateway(config, tmp_path / "data", "", f"t_{uuid.uuid4().hex[:12]}")
    try:
        gw.start()
        deadline = time.monotonic() + 60
        while not list((gw.data_dir / "backups").glob("gateway-*.tar.gz")):
            assert time.monotonic() < deadline, "no scheduled backup written"
            time.sleep(0.2)
        written = sorted((gw.data_dir / "backups").glob("gateway-*.tar.gz"))[0]
        assert written.stat().st_mode & 0o777 == 0o600
        assert (gw.data_dir / "backups").stat().st_mode & 0o077 == 0
        assert gw.data_dir.stat().st_mode & 0o007 == 0, oct(gw.data_dir.stat().st_mode)
        for name in ("secrets.key", "api-token", "web-secret"):
            assert (gw.data_dir / name).stat().st_mode & 0o077 == 0, name
        assert gw.status() is not None  # the embedded PostgreSQL works behind the closed folder
    finally:
        finish(gw, pg_dsn)
