"""`gateway restore FILE` and the page's restore: an archive of reconciler/ops/backup.py back
into the database and the gateway.d folder.

Nothing is replaced until every member of the archive has been checked (issue 25, item 7):
its names (the manifest, `db/TABLE.csv` of a table this gateway has, with columns it has,
`config/PATH` inside the folder, no member twice), the folder's targets (not a folder, not a
special file, not through a link out of the folder). Then the config files are written beside
their targets, the rows replaced in one transaction (tables others reference first, sequences
moved past the restored ids), and only then the files put in place.

What is never restored: sessions (an older archive may hold them: an ended session would come
back), and a code app secret this data folder's key cannot open (a backup from another
machine: `check` names those users first, so it is said before it happens; they set up their
code app again). A code app secret from an archive made before secrets were sealed is sealed
on the way in."""

from __future__ import annotations

import csv
import io
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import psycopg
from psycopg import sql

from reconciler.ops.backup import (
    KEPT_ON_RESTORE,
    RETIRED,
    NOT_BACKED_UP,
    BackupError,
    Restored,
    _migrate,
    _tables,
    manifest_of,
    read_archive,
)
from reconciler.platform import aio
from reconciler.platform.fsutil import file_kind
from reconciler.store import secretbox
from reconciler.store.secretbox import Box

_TABLE_MEMBER = re.compile(r"^db/([a-z_][a-z0-9_]*)\.csv$")
SECRET_COLUMNS = ("totp_secret", "totp_pending")


@dataclass(frozen=True)
class Checked:
    """An archive whose every member was checked: what a restore of it will do."""

    members: dict[str, bytes]
    manifest: dict[str, Any]
    tables: dict[str, bytes]  # table -> its CSV
    files: dict[str, bytes]  # path in the folder (posix) -> bytes
    code_app_lost: list[str] = field(default_factory=list)  # users whose code app cannot come along

    def words(self) -> str:
        """What the owner must know before: whose code app stays behind, and why."""
        if not self.code_app_lost:
            return ""
        who = ", ".join(self.code_app_lost)
        return (f"The code app of {who} cannot come along: this backup was made on another computer (or with "
                "another data folder), and the key that opens code app secrets stays in the data folder, never "
                f"in a backup. After the restore, {who} signs in on the laptop with the password and sets up the "
                "code app again under Security (from outside, a passkey still works).")


def _safe_relative(name: str, rel: str) -> PurePosixPath:
    path = PurePosixPath(rel)
    if (not rel or "\\" in rel or ":" in rel or path.is_absolute() or ".." in path.parts
            or any(part in ("", ".") for part in rel.split("/"))):
        raise BackupError(f"the archive holds an unsafe path: {name}")
    return path


def _target_ok(config_dir: Path, rel: PurePosixPath, name: str) -> None:
    """The file may be written at config_dir/rel: inside the folder (also through links), and
    not onto a folder or a special file."""
    root = config_dir.resolve()
    target = (config_dir / rel).resolve()
    if target != root and root not in target.parents:
        raise BackupError(f"the archive's {name} would be written outside {config_dir} (a link points there)")
    try:
        kind = file_kind((config_dir / rel).stat().st_mode)
    except FileNotFoundError:
        return
    if kind is not None:
        raise BackupError(f"the archive's {name} would replace {config_dir / rel}, which is {kind}")


def _columns(conn: psycopg.Connection[Any], schema: str, table: str) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        (schema, table))}


def _header(data: bytes) -> list[str]:
    return next(csv.reader([data.split(b"\n", 1)[0].decode("utf-8", "replace")]), [])


def _lost_code_apps(users_csv: bytes | None, box: Box) -> list[str]:
    """Users whose sealed code app secret this key cannot open."""
    if users_csv is None:
        return []
    lost = set()
    for row in csv.DictReader(io.StringIO(users_csv.decode("utf-8", "replace"))):
        name = row.get("name") or ""
        for column in SECRET_COLUMNS:
            value = row.get(column) or ""
            if column == "totp_secret" and secretbox.is_sealed(value) and \
                    not box.opens(value, secretbox.context(name, column)):
                lost.add(name)
    return sorted(lost)


def check(archive: Path, dsn: str, schema: str, config_dir: Path | None, box: Box) -> Checked:
    """Every member checked against this gateway (its schema migrated first: an older backup
    fits a newer gateway); raises BackupError naming the first one that cannot be restored.
    Nothing is replaced."""
    members = read_archive(archive)
    manifest = manifest_of(members)
    with ThreadPoolExecutor(1) as pool:  # its own event loop, also when called from one
        current = pool.submit(aio.run, _migrate(dsn, schema)).result()
    if (manifest.get("schema_version") or 0) > current:
        raise BackupError(f"the backup's schema version {manifest['schema_version']} is newer than this "
                          f"gateway's ({current}): restore it with a newer gateway")
    tables: dict[str, bytes] = {}
    files: dict[str, bytes] = {}
    with psycopg.connect(dsn) as conn:
        known = set(_tables(conn, schema))
        for name, data in members.items():
            if name == "manifest.json":
                continue
            table = _TABLE_MEMBER.match(name)
            if table:
                if table.group(1) in RETIRED - known:
                    continue  # an older gateway's detail (reconciler/ops/backup.py RETIRED)
                if table.group(1) not in known:
                    raise BackupError(f"the archive holds {name}, but this gateway has no table {table.group(1)}")
                unknown = [c for c in _header(data) if c not in _columns(conn, schema, table.group(1))]
                if unknown:
                    raise BackupError(f"{name}: this gateway's {table.group(1)} has no column {unknown[0]!r}")
                if table.group(1) not in NOT_BACKED_UP | {"schema_version"}:  # (the target's own is kept)
                    tables[table.group(1)] = data
            elif name.startswith("config/"):
                rel = _safe_relative(name, name[len("config/"):])
                if config_dir is not None:
                    _target_ok(config_dir, rel, name)
                files[rel.as_posix()] = data
            else:
                raise BackupError(f"the archive holds {name}, which is not part of a gateway backup")
    return Checked(members, manifest, tables, files, _lost_code_apps(tables.get("users"), box))


def restore(archive: Path, dsn: str, schema: str, config_dir: Path | None, box: Box,
            checked: Checked | None = None) -> Restored:
    """Replace the schema's rows with the archive's and write its config files into
    `config_dir` (None: leave the folder alone; files not in the archive are kept). `box`:
    this data folder's key (code app secrets it cannot open are not restored)."""
    checked = checked or check(archive, dsn, schema, config_dir, box)
    staged = _stage(config_dir, checked.files) if config_dir is not None else []
    try:
        counts = _replace_rows(dsn, schema, checked, box)
    except BaseException:
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)
        raise
    for target, tmp in staged:
        tmp.replace(target)
    return Restored(counts, sorted(checked.files) if config_dir is not None else [], checked.code_app_lost)


def _stage(config_dir: Path, files: dict[str, bytes]) -> list[tuple[Path, Path]]:
    """Each file written beside its target (a dot file: the watcher ignores it); nothing in place yet."""
    staged: list[tuple[Path, Path]] = []
    try:
        for rel, data in files.items():
            target = config_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.restore.tmp")
            tmp.write_bytes(data)
            staged.append((target, tmp))
    except BaseException:
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)
        raise
    return staged


def _replace_rows(dsn: str, schema: str, checked: Checked, box: Box) -> dict[str, int]:
    counts: dict[str, int] = {}
    with psycopg.connect(dsn) as conn, conn.transaction():
        tables = [t for t in _tables(conn, schema) if t != "schema_version" and t not in KEPT_ON_RESTORE]
        if tables:
            conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(schema, t) for t in tables)))
        for table in tables:
            data = checked.tables.get(table)
            if data is None:
                continue  # a table newer than the backup, or sessions: left empty
            query = sql.SQL("COPY {}.{} ({}) FROM STDIN (FORMAT csv, HEADER true)").format(
                sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, _header(data))))
            with conn.cursor().copy(query) as copy:
                copy.write(data)
            counts[table] = checked.manifest["tables"].get(table, 0)
            _move_sequences(conn, schema, table)
        if "users" in checked.tables:
            _seal_restored_secrets(conn, schema, box)
    return counts


def _seal_restored_secrets(conn: psycopg.Connection[Any], schema: str, box: Box) -> None:
    """Code app secrets as this data folder keeps them: sealed with its key. One sealed with
    another key is dropped (the owner was told); one in clear (an archive from before sealing)
    is sealed."""
    users = sql.Identifier(schema, "users")
    for name, *values in conn.execute(sql.SQL("SELECT name, totp_secret, totp_pending FROM {}"
                                              " WHERE totp_secret IS NOT NULL OR totp_pending IS NOT NULL")
                                      .format(users)).fetchall():
        kept = []
        for column, value in zip(SECRET_COLUMNS, values):
            where = secretbox.context(name, column)
            if value is None or (secretbox.is_sealed(value) and box.opens(value, where)):
                kept.append(value)
            elif secretbox.is_sealed(value):
                kept.append(None)
            else:
                kept.append(box.seal(value, where))
        if kept != values:
            conn.execute(sql.SQL("UPDATE {} SET totp_secret = %s, totp_pending = %s WHERE name = %s").format(users),
                         (*kept, name))


def _move_sequences(conn: psycopg.Connection[Any], schema: str, table: str) -> None:
    for (column,) in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
            " AND column_default LIKE 'nextval(%%'", (schema, table)).fetchall():
        conn.execute(sql.SQL("SELECT setval(pg_get_serial_sequence(%s, %s), coalesce(max({}), 0) + 1, false)"
                             " FROM {}.{}").format(sql.Identifier(column), sql.Identifier(schema),
                                                   sql.Identifier(table)),
                     (f"{sql.Identifier(schema).as_string(conn)}.{sql.Identifier(table).as_string(conn)}", column))
