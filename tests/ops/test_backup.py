"""Backup and restore round trips through real PostgreSQL: the shared server's schema to a
fresh embedded server (and to a fresh schema), compared table by table."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from reconciler.ops.backup import BackupError, backup, existing_rows, read_archive
from reconciler.ops.restore import restore
from reconciler.store import secretbox
from reconciler.store import Store
from reconciler.store.embedded import EmbeddedPostgres
from tests.fix_db import drop_schema

SEED = """
INSERT INTO servers (name, spec) VALUES ('blog', '{"command": ["python"], "port": 8080}'), ('api', '{}');
INSERT INTO state (name, pid, create_time, port, phase, restarts) VALUES ('blog', 123, 1.5, 8080, 'running', 2);
INSERT INTO events (id, seq, at, server, kind, reason, detail)
  SELECT gen_random_uuid(), g, now() - g * interval '1 minute', 'blog', 'transition', 'why, "quoted"' || g,
         jsonb_build_object('n', g, 'text', E'multi\\nline')
  FROM generate_series(1, 500) g;
INSERT INTO intents (name, intent) VALUES ('api', 'stop');
INSERT INTO ports (name, port) VALUES ('blog', 8080);
INSERT INTO config_revisions (path, sha256, ok) VALUES ('blog.toml', 'abc', true), ('api.toml', NULL, false);
INSERT INTO users (name, password_hash) VALUES ('ana', '$argon2id$x');
INSERT INTO sessions (id, user_name, expires_at) VALUES ('s1', 'ana', now() + interval '1 day');
"""


def gateway_cli(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, capture_output=True, text=True, **kw)


def dump(dsn: str, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(dsn) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_type = 'BASE TABLE'"
            " AND table_name <> 'schema_version'", (schema,))]
        return {t: sorted(conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, t))).fetchall(),
                          key=repr) for t in sorted(tables)}


@pytest.fixture
async def seeded(store: Store, pg_dsn: str, schema_name: str) -> str:
    async with store.pool.connection() as conn:
        await conn.execute(SEED)
    return schema_name


def config_folder(root: Path) -> Path:
    folder = root / "gateway.d"
    (folder / ".git").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / "blog.toml").write_text('command = ["python", "-m", "http.server", "{port}"]\nport = 8080\n')
    (folder / "gateway.toml").write_text('[ports]\nrange = "9000-9100"\n')
    return folder


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
async def test_round_trip_into_a_fresh_embedded_postgres(
        seeded: str, pg_dsn: str, tmp_path: Path, private_pg: EmbeddedPostgres, suffix: str) -> None:
    archive = tmp_path / f"backup{suffix}"
    manifest = backup(pg_dsn, seeded, config_folder(tmp_path), archive)
    assert manifest["tables"]["events"] == 500 and "sessions" not in manifest["tables"]  # never in a backup
    assert manifest["config_files"] == ["blog.toml", "gateway.toml"]  # .git left out
    assert set(read_archive(archive)) >= {"manifest.json", "db/events.csv", "config/blog.toml"}

    target = private_pg.dsn
    assert target is not None
    restored_config = tmp_path / "elsewhere"
    done = restore(archive, target, "gateway", restored_config, secretbox.load_or_create(tmp_path / "data"))
    assert done.tables == {k: v for k, v in manifest["tables"].items() if k != "schema_version"}
    assert done.files == ["blog.toml", "gateway.toml"]
    assert (restored_config / "blog.toml").read_text() == (tmp_path / "gateway.d" / "blog.toml").read_text()
    assert dump(target, "gateway") == {**dump(pg_dsn, seeded), "sessions": []}  # nobody signed in
    # the sequence moved past the restored ids: the gateway can keep inserting
    with psycopg.connect(target) as conn:
        conn.execute("INSERT INTO gateway.config_revisions (path, ok) VALUES ('new.toml', true)")


async def test_restore_over_existing_data_replaces_it(seeded: str, pg_dsn: str, tmp_path: Path) -> None:
    archive = tmp_path / "b.zip"
    backup(pg_dsn, seeded, tmp_path / "missing", archive)
    other = seeded + "_x"
    try:
        st = await Store.connect(pg_dsn, other)
        async with st.pool.connection() as conn:
            await conn.execute("INSERT INTO users (name, password_hash) VALUES ('zed', 'h')")
        await st.close()
        assert existing_rows(pg_dsn, other) == 1
        restore(archive, pg_dsn, other, None, secretbox.load_or_create(tmp_path / "data"))
        assert dump(pg_dsn, other) == {**dump(pg_dsn, seeded), "sessions": []}
    finally:
        await drop_schema(pg_dsn, other)


def test_a_file_that_is_not_a_backup_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(BackupError, match="manifest.json is missing"):
        restore(bad, "postgresql:///nowhere", "gateway", None, secretbox.load_or_create(tmp_path / "data"))
    (tmp_path / "y.tar.gz").write_text("not an archive")
    with pytest.raises(BackupError) as refused:
        read_archive(tmp_path / "y.tar.gz")
    # in words, with what to do; not tarfile's "ReadError('not a gzip file') - method bz2 ..."
    assert str(refused.value) == (f"{tmp_path / 'y.tar.gz'}: this is not a gateway backup: it is not a .tar.gz or "
                                  ".zip archive; choose a file made by \"Download a backup now\" (Settings → "
                                  "Backups) or `gateway backup`")


def test_a_backup_cut_short_says_so(tmp_path: Path) -> None:
    whole = tmp_path / "whole.tar.gz"
    with tarfile.open(whole, "w:gz") as t:
        data = os.urandom(300_000)  # does not compress: the cut falls inside the member
        member = tarfile.TarInfo("db/events.csv")
        member.size = len(data)
        t.addfile(member, io.BytesIO(data))
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(BackupError) as refused:
        read_archive(cut)
    assert str(refused.value) == (f"{cut}: this backup is damaged or cut short (it ends before the archive does); "
                                  "download or copy it again, or use an older backup")


def test_cli_backup_then_restore_asks_before_overwriting(seeded: str, pg_dsn: str, tmp_path: Path) -> None:
    folder = config_folder(tmp_path)
    env = {"GATEWAY_DSN": pg_dsn, "GATEWAY_DB_SCHEMA": seeded, "PATH": "/usr/bin:/bin",
           **{k: v for k, v in os.environ.items() if k.upper() == "SYSTEMROOT"}}  # Windows' sockets need it
    base = [sys.executable, "-m", "reconciler"]
    common = ["--config", str(folder), "--data-dir", str(tmp_path / "data")]
    out = gateway_cli([*base, "backup", str(tmp_path / "b.tar.gz"), *common], env=env)
    assert out.returncode == 0, out.stderr
    assert "2 files" in out.stdout
    refused = gateway_cli([*base, "restore", str(tmp_path / "b.tar.gz"), *common], env=env,
                          stdin=subprocess.DEVNULL)
    assert refused.returncode == 1 and "pass --yes" in refused.stderr
    (folder / "blog.toml").write_text("broken = \n")
    ok = gateway_cli([*base, "restore", str(tmp_path / "b.tar.gz"), "--yes", *common], env=env)
    assert ok.returncode == 0, ok.stderr
    assert "port = 8080" in (folder / "blog.toml").read_text()
    manifest = json.loads(read_archive(tmp_path / "b.tar.gz")["manifest.json"])
    assert manifest["gateway_version"] and manifest["created_at"]


async def test_a_backup_made_before_health_minutes_restores_without_its_raw_checks(
        seeded: str, pg_dsn: str, tmp_path: Path) -> None:
    """A backup from before migration 0027 holds health_samples (a row per check): the restore
    leaves it out (its counts are in health_hourly) instead of refusing the whole backup."""
    archive = tmp_path / "old.zip"
    backup(pg_dsn, seeded, tmp_path / "missing", archive)
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("db/health_samples.csv", "at,server,ok,latency_ms,error\n2026-11-24 10:00:00+00,blog,t,3.5,\n")
    other = seeded + "_old"
    try:
        await (await Store.connect(pg_dsn, other)).close()
        done = restore(archive, pg_dsn, other, None, secretbox.load_or_create(tmp_path / "data"))
        assert "health_samples" not in done.tables and done.tables["events"] == 500
    finally:
        await drop_schema(pg_dsn, other)
