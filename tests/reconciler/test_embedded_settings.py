"""The embedded PostgreSQL's own settings (SERVER_SETTINGS): in force through a real connection,
for a new data folder and for one made before them, given at start (not only written at initdb),
with durability left as PostgreSQL ships it. Figures: bench/pg_settings.py."""

from __future__ import annotations

import shlex
from pathlib import Path

import psutil
import psycopg

from reconciler.store.embedded import SERVER_SETTINGS, EmbeddedPostgres


def shown(dsn: str, *names: str) -> dict[str, tuple[str, str]]:
    """name -> (SHOW's text, where the value came from) on a real connection."""
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        out = {}
        for name in names:
            text = conn.execute(f"SHOW {name}").fetchone()
            source = conn.execute("SELECT source FROM pg_settings WHERE name = %s", (name,)).fetchone()
            assert text is not None and source is not None, name
            out[name] = (text[0], source[0])
        return out


def titles(pg: EmbeddedPostgres) -> list[str]:
    out = []
    for proc in psutil.Process(pg.pid or 0).children(recursive=True):
        try:
            out.append(" ".join(proc.cmdline()))
        except psutil.Error:
            pass  # ended meanwhile (the startup process, a connection's backend)
    return out


def test_settings_are_in_force_on_a_fresh_server(tmp_path: Path) -> None:
    assert SERVER_SETTINGS["shared_buffers"] == "16MB"  # the figure bench/README.md gives
    pg = EmbeddedPostgres(tmp_path / "data")
    try:
        dsn = pg.start()
        assert shown(dsn, *SERVER_SETTINGS) == {name: (value, "command line") for name, value in SERVER_SETTINGS.items()}
        children = titles(pg)
        assert not [t for t in children if "io worker" in t or "logical replication" in t], children
        assert [t for t in children if "autovacuum launcher" in t], children  # autovacuum stays on
    finally:
        pg.stop()


def test_durability_is_postgresql_s_default(tmp_path: Path) -> None:
    """Events must survive a power cut: nothing in the settings trades that away."""
    for name in ("fsync", "synchronous_commit", "full_page_writes", "autovacuum"):
        assert name not in SERVER_SETTINGS
    pg = EmbeddedPostgres(tmp_path / "data")
    try:
        on = shown(pg.start(), "fsync", "synchronous_commit", "full_page_writes", "autovacuum")
        assert {name: text for name, (text, _) in on.items()} == dict.fromkeys(on, "on")
    finally:
        pg.stop()


def test_a_data_folder_made_before_the_settings_gets_them_at_its_next_start(tmp_path: Path) -> None:
    old = EmbeddedPostgres(tmp_path / "data", settings={})  # as the product started it before
    try:
        dsn = old.start()
        assert shown(dsn, "shared_buffers", "io_method")["shared_buffers"][0] == "128MB"
        with psycopg.connect(dsn) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (7)")
    finally:
        old.stop()
    pg = EmbeddedPostgres(tmp_path / "data")
    try:
        dsn = pg.start()
        assert shown(dsn, "shared_buffers", "io_method", "wal_level") == {
            "shared_buffers": ("16MB", "command line"), "io_method": ("sync", "command line"),
            "wal_level": ("minimal", "command line")}
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(7,)]
    finally:
        pg.stop()


def test_the_settings_are_on_both_command_lines(tmp_path: Path) -> None:
    posix = shlex.split(EmbeddedPostgres(tmp_path, windows=False).start_argv(Path("/tmp/s"), 5432)[-1])
    windows = EmbeddedPostgres(tmp_path, windows=True).start_argv(None, 54321)
    options = windows[windows.index("-o") + 1].split()
    for name, value in SERVER_SETTINGS.items():
        assert posix[posix.index(f"{name}={value}") - 1] == "-c"
        assert options[options.index(f"{name}={value}") - 1] == "-c"
