"""The private PostgreSQL: real initdb, pg_ctl, kill -9 and restarts; no process left behind."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from reconciler.store.embedded import SYSTEM_USER, EmbeddedPostgres, EmbeddedPostgresError

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX: unix sockets, root handling, kill -9 of the postmaster")


def gone(pid: int, timeout: float = 10.0) -> bool:
    """The process exited (a zombie nobody reaps counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def query(dsn: str, *texts: str) -> object:
    """Run the statements in one transaction; the first column of the last one's first row."""
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        for text in texts:
            cur = conn.execute(text)
        row = cur.fetchone() if cur.description else None
        conn.commit()
        return row[0] if row else None


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "data")
    yield server
    server.stop()
    assert not server._cluster_processes(), "a postgres process outlived the test"


def test_start_in_fresh_dir_then_stop(pg: EmbeddedPostgres) -> None:
    dsn = pg.start()
    assert pg.dsn == dsn and pg.is_running()
    params = conninfo_to_dict(dsn)
    assert params["dbname"] == "gateway" and params["user"] == "postgres"
    assert query(dsn, "SELECT current_database()") == "gateway"
    assert (pg.pgdata / "PG_VERSION").exists() and pg.log_path.exists()
    pid = pg.pid
    assert pid is not None and psutil.Process(pid).name().startswith("postgres")

    pg.stop()
    assert gone(pid)
    assert not pg.is_running() and pg.pid is None and pg.dsn is None
    pg.stop()  # idempotent


@posix_only
def test_listens_on_a_socket_only(pg: EmbeddedPostgres) -> None:
    dsn = pg.start()
    host = conninfo_to_dict(dsn)["host"]
    assert host == str(pg.data_dir / "run")
    assert query(dsn, "SHOW listen_addresses") == ""
    assert query(dsn, "SELECT inet_server_addr()") is None  # connected over the unix socket
    if os.geteuid() == 0:  # postgres refuses root: the server runs as the system user
        assert psutil.Process(pg.pid).username() == SYSTEM_USER
        assert pg.pgdata.owner() == SYSTEM_USER


@posix_only
def test_restart_after_kill_9_keeps_data(pg: EmbeddedPostgres) -> None:
    dsn = pg.start()
    query(dsn, "CREATE TABLE survivor (x int)", "INSERT INTO survivor VALUES (42)")
    pid = pg.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert gone(pid)
    assert not pg.is_running()  # postmaster.pid is stale now

    dsn2 = pg.start()
    assert dsn2 == dsn and pg.pid not in (None, pid)
    assert query(dsn2, "SELECT x FROM survivor") == 42


@posix_only
def test_start_right_after_kill_9(pg: EmbeddedPostgres) -> None:
    """No wait between the kill and the start: the dying postmaster must not be adopted."""
    pg.start()
    for _ in range(3):
        pid = pg.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert query(pg.start(), "SELECT 1") == 1
        assert pg.pid != pid


def test_second_instance_adopts_the_running_server(pg: EmbeddedPostgres) -> None:
    dsn = pg.start()
    other = EmbeddedPostgres(pg.data_dir)
    assert other.is_running() and other.pid == pg.pid
    assert other.start() == dsn


@posix_only
def test_long_data_dir_uses_a_short_socket_dir(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    pg = EmbeddedPostgres(deep)
    try:
        dsn = pg.start()
        host = str(conninfo_to_dict(dsn)["host"])
        assert len(os.fsencode(host)) < 80 and Path(host).name.startswith("gw-pg-")
        assert not Path(host).stat().st_mode & 0o077
        assert query(dsn, "SELECT 1") == 1
        pg.stop()
        assert pg.start() == dsn  # the same socket dir again: pools keep a valid DSN
    finally:
        pg.stop()


def test_start_failure_names_the_log(pg: EmbeddedPostgres) -> None:
    pg.start()
    pg.stop()
    with (pg.pgdata / "postgresql.conf").open("a") as fh:
        fh.write("\nno_such_setting_here = 1\n")
    with pytest.raises(EmbeddedPostgresError) as err:
        pg.start()
    assert "no_such_setting_here" in str(err.value) and str(pg.log_path) in str(err.value)
    assert not pg.is_running()


def test_refuses_a_non_empty_dir_without_a_cluster(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path)
    pg.pgdata.mkdir()
    (pg.pgdata / "precious.txt").write_text("not a database")
    with pytest.raises(EmbeddedPostgresError, match="not empty"):
        pg.start()
    assert (pg.pgdata / "precious.txt").exists()


def test_windows_command_lines(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "data", windows=True, bin_dir=Path("C:/pg/bin"))
    assert pg.system_user is None
    initdb = pg.initdb_argv()
    assert initdb[0].endswith("initdb.exe")
    expected = {"--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-instructions"}
    assert expected <= set(initdb)
    assert f"--pwfile={tmp_path / 'data' / 'postgres.password'}" in initdb
    start = pg.start_argv(None, 54321)
    assert start[0].endswith("pg_ctl.exe") and start[1:3] == ["start", "-W"]  # no wait: we look for "ready"
    assert start[start.index("-o") + 1].startswith("-c listen_addresses=127.0.0.1 -p 54321")  # then SERVER_SETTINGS
    assert pg.stop_argv()[-3:-1] == ["fast", "-D"]


@posix_only
def test_posix_options_quote_the_socket_dir(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path, windows=False)
    options = pg.start_argv(Path("/tmp/with space"), 5432)[-1]
    assert shlex.split(options)[:6] == [  # then SERVER_SETTINGS (tests/reconciler/test_embedded_settings.py)
        "-c", "listen_addresses=", "-c", "unix_socket_directories=/tmp/with space", "-p", "5432"]


def test_windows_port_is_kept_while_free(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path, windows=True)
    first = pg.tcp_port()
    assert (tmp_path / "postgres.port").read_text().strip() == str(first)
    assert pg.tcp_port() == first  # free: the same port again
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", first))
        holder.listen(1)
        other = pg.tcp_port()
    assert other != first and (tmp_path / "postgres.port").read_text().strip() == str(other)
