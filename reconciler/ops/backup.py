"""`gateway backup FILE` / `gateway restore FILE`: one archive (.zip, else .tar.gz) with

- ``manifest.json``: format, gateway version, time, schema version, rows per table, files;
- ``config/...``: the gateway.d folder (without .git);
- ``db/TABLE.csv``: every table of the gateway's schema, ``COPY ... TO STDOUT (FORMAT csv,
  HEADER)``: plain CSV with column names, readable by any PostgreSQL and by people.

What a backup never holds (issue 25, item 2): the sign-in sessions (a restore never brings an
ended one back), a second-step secret in clear (the code app's secret is sealed with the data
folder's key, reconciler.store.secretbox; a value not sealed yet is left out), and the data
folder's own secrets (that key, the API token, the page's key). The archive is written 0600.

Restore (reconciler/ops/restore.py) checks every member first, then replaces every table's
rows in one transaction and writes the config files back. Blocking code: the CLI calls it
directly, the daemon in a thread.
"""

from __future__ import annotations

import contextlib
import io
import json
import lzma
import os
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from reconciler import __version__
from reconciler.store.db import migrate

FORMAT = 1
SKIP_DIRS = {".git", "__pycache__"}
NOT_BACKED_UP = frozenset({"sessions", "api_tokens"})  # who may come in: never carried to another time or place
# tables an older gateway had, whose rows a restore leaves out: health_samples (a row per check, until
# migration 0027) holds 26 h of detail whose counts are in health_hourly, which is restored
RETIRED = frozenset({"health_samples"})
KEPT_ON_RESTORE = frozenset({"api_tokens"})  # this machine's, like the api-token file: a restore leaves them
SEALED_COLUMNS = {"users": ("totp_secret", "totp_pending")}  # kept only when sealed (reconciler.store.secretbox)


class BackupError(Exception):
    """The archive cannot be written or restored; the message says why."""


@dataclass(frozen=True)
class Restored:
    tables: dict[str, int]
    files: list[str]
    code_app_lost: list[str] = field(default_factory=list)  # users who set up their code app again


# --- reading the database ----------------------------------------------------------------
def _tables(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """The schema's tables, each after the tables it references (so loading in this order
    satisfies foreign keys)."""
    names = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_type = 'BASE TABLE'"
        " ORDER BY table_name", (schema,))]
    refs: dict[str, set[str]] = {n: set() for n in names}
    for child, parent in conn.execute(
            "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c"
            " JOIN pg_namespace n ON n.oid = c.connamespace WHERE c.contype = 'f' AND n.nspname = %s", (schema,)):
        child, parent = child.rsplit(".", 1)[-1].strip('"'), parent.rsplit(".", 1)[-1].strip('"')
        if child in refs and parent != child:
            refs[child].add(parent)
    ordered: list[str] = []
    while refs:
        ready = sorted(n for n, deps in refs.items() if not deps - set(ordered))
        if not ready:  # a cycle: keep the rest alphabetical
            ready = sorted(refs)
        ordered += ready
        for n in ready:
            refs.pop(n)
    return ordered


def _source(conn: psycopg.Connection[Any], schema: str, table: str) -> sql.Composable:
    """What to copy out of `table`: the table itself, or (users) a select that leaves out a
    second-step secret that is not sealed."""
    sealed = SEALED_COLUMNS.get(table)
    if not sealed:
        return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    columns = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
        " ORDER BY ordinal_position", (schema, table))]
    from reconciler.store.secretbox import PREFIX

    shown = [sql.SQL("CASE WHEN starts_with({c}, {p}) THEN {c} END AS {c}").format(
        c=sql.Identifier(c), p=sql.Literal(PREFIX)) if c in sealed else sql.Identifier(c) for c in columns]
    return sql.SQL("(SELECT {} FROM {}.{})").format(sql.SQL(", ").join(shown), sql.Identifier(schema),
                                                     sql.Identifier(table))


def _copy_out(conn: psycopg.Connection[Any], schema: str, table: str) -> tuple[bytes, int]:
    buf = io.BytesIO()
    query = sql.SQL("COPY {} TO STDOUT (FORMAT csv, HEADER true)").format(_source(conn, schema, table))
    with conn.cursor().copy(query) as copy:
        for block in copy:
            buf.write(block)
    rows = conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
        sql.Identifier(schema), sql.Identifier(table))).fetchone()
    return buf.getvalue(), int(rows[0]) if rows else 0


def _config_files(config_dir: Path) -> Iterator[tuple[str, Path]]:
    if not config_dir.is_dir():
        return
    for path in sorted(config_dir.rglob("*")):
        rel = path.relative_to(config_dir)
        if path.is_file() and not SKIP_DIRS & set(rel.parts):
            yield rel.as_posix(), path


# --- writing an archive ----------------------------------------------------------------
class _Archive:
    """Write members to a .zip or a .tar.gz, chosen by the file name; the file is readable by
    this user only from its first byte (0600)."""

    def __init__(self, path: Path) -> None:
        self.zip = path.name.endswith(".zip")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
        os.chmod(path, 0o600)  # an older file of that name, or the umask
        self._file = os.fdopen(fd, "wb")
        self._z = zipfile.ZipFile(self._file, "w", zipfile.ZIP_DEFLATED) if self.zip else None
        self._t = None if self.zip else tarfile.open(fileobj=self._file, mode="w:gz")  # noqa: SIM115

    def add(self, name: str, data: bytes) -> None:
        if self._z is not None:
            self._z.writestr(name, data)
        else:
            assert self._t is not None
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(datetime.now().timestamp()), 0o600
            self._t.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        try:
            (self._z or self._t).close()  # type: ignore[union-attr]
        finally:
            self._file.close()


def backup(dsn: str, schema: str, config_dir: Path, out: Path) -> dict[str, Any]:
    """Write the archive to `out` (atomically: a temp file renamed); return the manifest."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp{'.zip' if out.name.endswith('.zip') else ''}")
    archive = _Archive(tmp)
    try:
        counts: dict[str, int] = {}
        with psycopg.connect(dsn) as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")  # one snapshot
            tables = [t for t in _tables(conn, schema) if t not in NOT_BACKED_UP]
            if not tables:
                raise BackupError(f"the database has no gateway tables in schema {schema!r}")
            for table in tables:
                data, counts[table] = _copy_out(conn, schema, table)
                archive.add(f"db/{table}.csv", data)
            version = conn.execute(sql.SQL("SELECT max(version) FROM {}.schema_version").format(
                sql.Identifier(schema))).fetchone()
        files = []
        for rel, path in _config_files(config_dir):
            archive.add(f"config/{rel}", path.read_bytes())
            files.append(rel)
        manifest = {
            "format": FORMAT, "gateway_version": __version__,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "schema": schema, "schema_version": version[0] if version else None,
            "tables": counts, "table_order": tables, "config_files": files,
        }
        archive.add("manifest.json", json.dumps(manifest, indent=2).encode())
        archive.close()
        tmp.replace(out)
    except BaseException:
        archive.close()
        tmp.unlink(missing_ok=True)
        raise
    return manifest


# --- reading an archive ----------------------------------------------------------------
def read_archive(path: Path) -> dict[str, bytes]:
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"{path}: no such file")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                found = [(n, z.read(n)) for n in z.namelist() if not n.endswith("/")]
        else:
            with tarfile.open(path, "r:*") as t:
                found = []
                for m in t.getmembers():
                    if m.isfile():
                        found.append((m.name, t.extractfile(m).read()))  # type: ignore[union-attr]
                    elif not m.isdir():  # a link or a device: a backup holds none
                        raise BackupError(f"the archive holds {m.name}, which is not a plain file")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        raise BackupError(f"{path}: {_unreadable(path, exc)}") from None
    members: dict[str, bytes] = {}
    for name, data in found:
        if name in members:
            raise BackupError(f"the archive holds {name} twice")
        members[name] = data
    return members


def _unreadable(path: Path, exc: BaseException) -> str:
    """Why an archive cannot be read, in words, with what to do (the library's text is not shown)."""
    made_by = "choose a file made by \"Download a backup now\" (Settings → Backups) or `gateway backup`"
    if isinstance(exc, tarfile.ReadError) and str(exc).startswith("file could not be opened"):
        return f"this is not a gateway backup: it is not a .tar.gz or .zip archive; {made_by}"
    if isinstance(exc, (EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, tarfile.TarError)) or (
            isinstance(exc, OSError) and exc.errno is None):  # gzip's BadGzipFile, a bad CRC
        return ("this backup is damaged or cut short (it ends before the archive does); download or copy it "
                "again, or use an older backup")
    return f"the file cannot be read ({getattr(exc, 'strerror', None) or exc})"


def manifest_of(members: dict[str, bytes]) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads(members["manifest.json"])
    except (KeyError, ValueError):
        raise BackupError("not a gateway backup: manifest.json is missing or unreadable") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')!r} is not supported (this gateway reads {FORMAT})")
    return manifest


def existing_rows(dsn: str, schema: str) -> int:
    """Rows the target already holds (0: an empty or missing schema); schema_version excluded."""
    with psycopg.connect(dsn) as conn:
        total = 0
        for table in _tables(conn, schema):
            if table != "schema_version":
                row = conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(table))).fetchone()
                total += int(row[0]) if row else 0
        return total


async def _migrate(dsn: str, schema: str) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await migrate(conn, schema)
        cur = await conn.execute(sql.SQL("SELECT max(version) FROM {}.schema_version").format(sql.Identifier(schema)))
        row = await cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0


# --- the database the CLI works on ------------------------------------------------------
@contextlib.contextmanager
def database(settings: Any) -> Iterator[str]:
    """The gateway's DSN: from the settings, else its embedded PostgreSQL (started for the
    command when the gateway is not running, and stopped again afterwards)."""
    if settings.dsn:
        yield settings.dsn
        return
    from reconciler.store.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(settings.data_dir)
    was_running = pg.is_running()
    dsn = pg.start()
    try:
        yield dsn
    finally:
        if not was_running:
            pg.stop()
