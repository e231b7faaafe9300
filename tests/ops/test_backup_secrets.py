"""What a backup holds and how a restore treats it (issue 25, items 2 and 7), against real
PostgreSQL and real archives: no session and no clear second-step secret in an archive, the
archive readable by its owner only; a restore checks every member before it replaces
anything, never brings a session back, and says whose code app stays behind (a backup from
another data folder) before anything happens."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from reconciler.ops.backup import BackupError, backup, read_archive
from reconciler.ops.restore import check, restore
from reconciler.store import secretbox
from reconciler.store import Store
from tests.fix_db import drop_schema
from tests.ops.test_backup import config_folder, dump
from tests.wine import wine_gap

CLEAR = "JBSWY3DPEHPK3PXP"  # a code app secret as the first versions stored it


async def users(store: Store, box: secretbox.Box) -> None:
    """ada: her code app secret sealed with `box`; bob: one in clear (from before sealing);
    a live session of ada's."""
    async with store.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO users (name, password_hash, totp_secret, totp_last_step) VALUES (%s, 'h', %s, 7),"
            " ('bob', 'h', %s, 0)", ("ada", box.seal("ADASSECRETADASSE", secretbox.context("ada", "totp_secret")),
                                     CLEAR))
        await conn.execute("INSERT INTO sessions (id, user_name, expires_at) VALUES ('s1', 'ada', now() + '1 day')")


def rows(dsn: str, schema: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        return conn.execute(query).fetchall()  # type: ignore[arg-type]


def users_csv(archive: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(read_archive(archive)["db/users.csv"].decode())))


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
async def test_an_archive_is_private_and_holds_no_session_nor_clear_secret(
        store: Store, pg_dsn: str, schema_name: str, tmp_path: Path, suffix: str) -> None:
    box = secretbox.load_or_create(tmp_path / "data")
    await users(store, box)
    archive = tmp_path / f"b{suffix}"
    manifest = backup(pg_dsn, schema_name, config_folder(tmp_path), archive)
    if os.name == "posix":  # on Windows a file is private by its folder's ACL (the profile), not mode bits
        assert archive.stat().st_mode & 0o777 == 0o600
    members = read_archive(archive)
    assert "db/sessions.csv" not in members and "sessions" not in manifest["tables"]
    assert not [n for n in members if "secret" in n or "token" in n or n.endswith(".key")]
    everything = b"".join(members.values())
    assert CLEAR.encode() not in everything and box.key.hex().encode() not in everything
    got = {u["name"]: u for u in users_csv(archive)}
    assert got["ada"]["totp_secret"].startswith(secretbox.PREFIX) and got["ada"]["totp_last_step"] == "7"
    assert got["bob"]["totp_secret"] == ""  # not sealed yet: left out, never written in clear
    assert rows(pg_dsn, schema_name, "SELECT count(*) FROM users") == [(2,)]  # the database is untouched


async def test_a_restore_never_brings_a_session_back(store: Store, pg_dsn: str, schema_name: str,
                                                     tmp_path: Path) -> None:
    box = secretbox.load_or_create(tmp_path / "data")
    await users(store, box)
    archive = tmp_path / "b.tar.gz"
    backup(pg_dsn, schema_name, tmp_path / "nothing", archive)
    older = with_member(archive, tmp_path / "older.tar.gz", "db/sessions.csv",
                        b"id,user_name,expires_at\ns-old,ada,2999-01-01 00:00:00+00\n")  # as the first versions wrote
    async with store.pool.connection() as conn:
        await conn.execute("DELETE FROM sessions")  # ada signed out
    done = restore(older, pg_dsn, schema_name, None, box)
    assert rows(pg_dsn, schema_name, "SELECT count(*) FROM sessions") == [(0,)]
    assert "sessions" not in done.tables and done.code_app_lost == []
    # ada's sealed secret came back as it was
    (ada,), (bob,) = rows(pg_dsn, schema_name, "SELECT totp_secret FROM users ORDER BY name")
    assert box.open(str(ada), secretbox.context("ada", "totp_secret")) == "ADASSECRETADASSE"
    assert bob is None  # it was in clear here: the backup left it out


async def test_a_clear_secret_in_an_old_archive_is_sealed_on_the_way_in(store: Store, pg_dsn: str,
                                                                        schema_name: str, tmp_path: Path) -> None:
    box = secretbox.load_or_create(tmp_path / "data")
    archive = tmp_path / "b.tar.gz"
    backup(pg_dsn, schema_name, tmp_path / "nothing", archive)
    old = with_member(archive, tmp_path / "old.tar.gz", "db/users.csv",
                      f"name,password_hash,totp_secret,totp_last_step\nbob,h,{CLEAR},0\n".encode())
    restore(old, pg_dsn, schema_name, None, box)
    ((stored,),) = rows(pg_dsn, schema_name, "SELECT totp_secret FROM users WHERE name = 'bob'")
    assert str(stored).startswith(secretbox.PREFIX) and box.open(str(stored), secretbox.context("bob", "totp_secret")) \
        == CLEAR


async def test_a_restore_elsewhere_says_whose_code_app_stays_behind_before_it_happens(
        store: Store, pg_dsn: str, schema_name: str, tmp_path: Path) -> None:
    here = secretbox.load_or_create(tmp_path / "here")
    await users(store, here)
    archive = tmp_path / "b.tar.gz"
    backup(pg_dsn, schema_name, tmp_path / "nothing", archive)
    elsewhere = schema_name + "_b"
    env = {**os.environ, "GATEWAY_DSN": pg_dsn, "GATEWAY_DB_SCHEMA": elsewhere}
    argv = [sys.executable, "-m", "reconciler", "restore", str(archive), "--no-config", "--config",
            str(tmp_path / "cfg"), "--data-dir", str(tmp_path / "elsewhere")]
    try:
        asked = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert asked.returncode == 1 and "nothing changed" in asked.stderr, asked.stderr
        said = asked.stderr.index("The code app of ada cannot come along")
        assert said < asked.stderr.index("(not asked: no terminal; pass --yes)")
        assert rows(pg_dsn, elsewhere, "SELECT count(*) FROM users") == [(0,)]  # nothing happened
        done = subprocess.run([*argv, "--yes"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "The code app of ada cannot come along" in done.stderr and "ada: set up the code app again" in done.stdout
        got = dict(rows(pg_dsn, elsewhere, "SELECT name, totp_secret FROM users"))  # type: ignore[arg-type]
        assert got["ada"] is None  # another key sealed it: not carried over
        other = secretbox.load(tmp_path / "elsewhere")
        assert other is not None and other.key != here.key
        assert got["bob"] is None  # in clear in the database: the backup left it out
    finally:
        await drop_schema(pg_dsn, elsewhere)


# --- every member checked before anything is replaced (item 7) ---------------------------------
def with_member(archive: Path, out: Path, name: str, data: bytes, kind: bytes = tarfile.REGTYPE) -> Path:
    """`archive` with one member more (or one replaced), written as `out`."""
    members = read_archive(archive)
    with tarfile.open(out, "w:gz") as t:
        for member, body in {**members, name: data}.items():
            info = tarfile.TarInfo(member)
            info.size, info.type = len(body), tarfile.REGTYPE if member != name else kind
            if info.type == tarfile.SYMTYPE:
                info.linkname, info.size, body = "/etc/passwd", 0, b""
            t.addfile(info, io.BytesIO(body))
    return out


@pytest.mark.parametrize(("name", "data", "said"), [
    ("config/../outside.toml", b"x", "unsafe path: config/../outside.toml"),
    ("config//etc/x.toml", b"x", "unsafe path"),
    ("config/a\\..\\..\\b.toml", b"x", "unsafe path"),
    ("notes.txt", b"hi", "notes.txt, which is not part of a gateway backup"),
    ("db/nope.csv", b"a\n1\n", "this gateway has no table nope"),
    ("db/users.csv", b"name,password_hash,is_admin\nx,h,t\n", "has no column 'is_admin'"),
])
async def test_a_bad_member_replaces_nothing(store: Store, pg_dsn: str, schema_name: str, tmp_path: Path,
                                             name: str, data: bytes, said: str) -> None:
    box = secretbox.load_or_create(tmp_path / "data")
    await users(store, box)
    folder = config_folder(tmp_path)
    archive = tmp_path / "b.tar.gz"
    backup(pg_dsn, schema_name, folder, archive)
    bad = with_member(archive, tmp_path / "bad.tar.gz", name, data)
    async with store.pool.connection() as conn:  # what is here now, and must stay
        await conn.execute("INSERT INTO users (name, password_hash) VALUES ('cy', 'h')")
    (folder / "blog.toml").write_text("# edited after the backup\n")
    before = dump(pg_dsn, schema_name)
    with pytest.raises(BackupError, match=said.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        restore(bad, pg_dsn, schema_name, folder, box)
    assert dump(pg_dsn, schema_name) == before
    assert (folder / "blog.toml").read_text() == "# edited after the backup\n"
    assert not (tmp_path / "outside.toml").exists() and not list(folder.rglob(".*.restore.tmp"))


def backed_up(pg_dsn: str, schema_name: str, tmp_path: Path) -> tuple[secretbox.Box, Path, Path]:
    """This computer's key, the config folder and a backup of both."""
    folder = config_folder(tmp_path)
    archive = tmp_path / "b.tar.gz"
    backup(pg_dsn, schema_name, folder, archive)
    return secretbox.load_or_create(tmp_path / "data"), folder, archive


async def test_links_twins_and_targets_are_checked_too(store: Store, pg_dsn: str, schema_name: str,
                                                       tmp_path: Path) -> None:
    box, folder, archive = backed_up(pg_dsn, schema_name, tmp_path)
    link = with_member(archive, tmp_path / "link.tar.gz", "config/x.toml", b"", tarfile.SYMTYPE)
    with pytest.raises(BackupError, match="config/x.toml, which is not a plain file"):
        check(link, pg_dsn, schema_name, folder, box)
    twice = tmp_path / "twice.zip"
    with zipfile.ZipFile(twice, "w") as z:
        for name, data in read_archive(archive).items():
            z.writestr(name, data)
        with pytest.warns(UserWarning, match="Duplicate name"):
            z.writestr("config/blog.toml", b"# the second one\n")
    with pytest.raises(BackupError, match="holds config/blog.toml twice"):
        check(twice, pg_dsn, schema_name, folder, box)
    (folder / "dir.toml").mkdir()
    onto = with_member(archive, tmp_path / "onto.tar.gz", "config/dir.toml", b"x")
    with pytest.raises(BackupError, match="which is a folder"):
        check(onto, pg_dsn, schema_name, folder, box)


@wine_gap("CreateSymbolicLinkW says it made the link and makes nothing")
async def test_a_link_in_the_folder_that_points_out_of_it_is_refused(store: Store, pg_dsn: str, schema_name: str,
                                                                     tmp_path: Path) -> None:
    box, folder, archive = backed_up(pg_dsn, schema_name, tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (folder / "sub").symlink_to(outside, target_is_directory=True)  # a link in the folder that points out of it
    into = with_member(archive, tmp_path / "into.tar.gz", "config/sub/x.toml", b"x")
    with pytest.raises(BackupError, match="would be written outside"):
        check(into, pg_dsn, schema_name, folder, box)
    assert not list(outside.iterdir())
