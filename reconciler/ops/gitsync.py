"""`[sync]` in gateway.toml: keep the folder up to date from git, and back up on a schedule.

    [sync]
    git_pull = "5m"        # run `git pull --ff-only` in the folder this often (off when absent)
    backup_every = "1d"    # write DATA/backups/gateway-YYYYmmdd-HHMMSS.tar.gz this often (off when absent)
    backup_keep = 7        # keep the newest N scheduled backups
    backup_dir = "D:/backups"   # instead of DATA/backups

A pull that brings commits changes files like any edit: the watcher sees them and the loop
reconciles once per batch (a half-written file gets the last-good treatment). Each applied
commit, and each failed pull, is a row in `sync_commits`; a failure is also an event
(`sync_failed`, which alerts) and never stops the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from reconciler.core.events import EventKind
from reconciler.core.spec import parse_duration
from reconciler.ops import Loaded, live_section, section_errors
from reconciler.platform import current
from reconciler.store.records import record_pull

if TYPE_CHECKING:
    from reconciler.engine.runtime import Runtime
    from reconciler.store import Store

log = logging.getLogger("gateway")
Seconds = Annotated[float, BeforeValidator(parse_duration)]
GIT_TIMEOUT = 120.0
IDLE_CHECK = 30.0  # seconds between looks at [sync] while a schedule is off


class SyncSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    git_pull: Seconds | None = None
    backup_every: Seconds | None = None
    backup_keep: int = Field(7, ge=1)
    backup_dir: str | None = None


class SyncSettingsError(ValueError):
    pass


def parse_settings(table: dict[str, Any]) -> SyncSettings:
    try:
        return SyncSettings.model_validate(table)
    except ValidationError as exc:
        raise SyncSettingsError(section_errors("sync", exc)) from None


def live_settings(loaded: Loaded) -> Callable[[], SyncSettings]:
    """A function returning the current `[sync]`, validated (defaults when broken)."""
    return live_section(loaded, "sync", parse_settings, SyncSettings, "sync is off until fixed")


NO_GIT = ("git is not installed on this computer, so the folder is not pulled (on Windows: install Git for "
          "Windows from git-scm.com, then restart the gateway)")


@dataclass(frozen=True)
class Pull:
    ok: bool
    before: str | None
    after: str | None
    error: str | None = None

    @property
    def changed(self) -> bool:
        return self.ok and self.before != self.after


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=False,
                          timeout=GIT_TIMEOUT, env=env, stdin=subprocess.DEVNULL,
                          **current().quiet_kwargs())


def head(folder: Path) -> str | None:
    done = _git(folder, "rev-parse", "HEAD")
    return done.stdout.strip() if done.returncode == 0 else None


def pull(folder: Path) -> Pull:
    """`git pull --ff-only` in `folder` (blocking). Never raises for git's own failures."""
    try:
        before = head(folder)
        done = _git(folder, "pull", "--ff-only", "--quiet")
        after = head(folder)
    except FileNotFoundError:
        return Pull(False, None, None, NO_GIT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Pull(False, None, None, f"git pull: {exc}")
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        return Pull(False, before, after, f"git pull --ff-only failed: {why[-1] if why else done.returncode}")
    return Pull(True, before, after)


async def pull_forever(rt: Runtime, store: Store, folder: Path, reload: Callable[[], None],
                       settings: Callable[[], SyncSettings]) -> None:
    """The daemon's task: pull `folder` on the `git_pull` schedule; record and report the outcome."""
    while True:
        every = settings().git_pull
        await asyncio.sleep(every if every else IDLE_CHECK)
        if not every:
            continue
        result = await asyncio.to_thread(pull, folder)
        if result.ok and not result.changed:
            continue
        if result.ok:
            rt.event(EventKind.SYNC_PULLED, None, f"git pull applied {result.after} (was {result.before})",
                     detail={"commit": result.after, "previous": result.before})
            reload()
        else:
            rt.event(EventKind.SYNC_FAILED, None, result.error or "git pull failed", detail={"commit": result.after})
        try:
            await record_pull(store.pool, result.after, result.before, result.ok, result.error)
        except Exception as exc:  # noqa: BLE001 - the database may be away: the event is queued anyway
            log.warning("git pull outcome not recorded in PostgreSQL: %s", exc)


# --- scheduled backups -------------------------------------------------------------------
def backup_folder(data_dir: Path, conf: SyncSettings) -> Path:
    return Path(conf.backup_dir).expanduser() if conf.backup_dir else Path(data_dir) / "backups"


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete scheduled backups beyond the newest `keep`; the deleted ones."""
    found = sorted(folder.glob("gateway-*.tar.gz"))
    gone = found[:-keep] if len(found) > keep else []
    for path in gone:
        path.unlink(missing_ok=True)
    return gone


def write_and_prune(dsn: str, schema: str, config_dir: Path, path: Path, keep: int) -> dict[str, Any]:
    """One scheduled backup, then the pruning, in one go (a thread): a stop that comes while the
    archive is written cancels the task, not the thread, and a backup that lands is pruned too."""
    from reconciler.ops.backup import backup  # tarfile, csv, zipfile: only once backups are on

    manifest = backup(dsn, schema, config_dir, path)
    prune(path.parent, keep)
    return manifest


async def backup_forever(rt: Runtime, settings: Callable[[], SyncSettings], dsn: Callable[[], str | None],
                         schema: str, config_dir: Path, data_dir: Path) -> None:
    """The daemon's task: a backup of the database `dsn()` (schema `schema`) and `config_dir` on
    the `backup_every` schedule, into `backup_dir` (else DATA/backups), the newest `backup_keep` kept."""
    while True:
        every = settings().backup_every
        await asyncio.sleep(every if every else IDLE_CHECK)
        conf = settings()
        if not conf.backup_every:
            continue
        folder = backup_folder(data_dir, conf)
        path = folder / f"gateway-{datetime.now():%Y%m%d-%H%M%S}.tar.gz"
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            address = dsn()
            if address is None:
                raise RuntimeError("the database is not running")
            manifest = await asyncio.to_thread(write_and_prune, address, schema, config_dir, path, conf.backup_keep)
        except Exception as exc:  # noqa: BLE001 - reported, retried at the next slot
            rt.event(EventKind.BACKUP_FAILED, None, f"scheduled backup to {path} failed: {exc}")
            continue
        rt.event(EventKind.BACKUP_WRITTEN, None, f"{path} ({sum(manifest['tables'].values())} rows)")
