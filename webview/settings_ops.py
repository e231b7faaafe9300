"""Settings pages for the operations: backups (download one now, a schedule and how many
to keep, restore from an uploaded file after a confirm) and start at boot (install, remove,
and the status the system itself reports). The work is done by reconciler.ops.backup and
reconciler.ops.autostart (their public functions), in a thread; what only a terminal can
do is said with the one command to copy."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shlex
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from reconciler.core.events import EventKind
from reconciler.ops.gitsync import SyncSettings
from webview.infra import auth, doors
from webview.infra.gateway import Gateway
from webview.infra.page import gateway_of, page_of
from webview.infra.render import redirect, render
from webview.settings_form import Setting, SettingsError, SettingsForm
from webview.settings_pages import current_table, gateway_toml, in_force, save_form

if TYPE_CHECKING:
    from reconciler.ops.autostart_files import Target
    from reconciler.ops.backup import Restored

SCHEDULES = {"": "Off", "1h": "Every hour", "6h": "Every 6 hours", "1d": "Every day", "7d": "Every week"}
SCHEDULE = SettingsForm("sync", SyncSettings, [
    Setting("backup_every", "Make a backup", name="every", choices=SCHEDULES, refused="Choose one of the listed schedules."),
    Setting("backup_keep", "Keep the newest", name="keep", refused="Keep: write how many backups to keep, 1 or more.",
            attrs={"inputmode": "numeric", "size": "4"}),
])


def _dsn(daemon: Gateway) -> str:
    dsn = daemon.settings.dsn or (daemon.pg.dsn if daemon.pg is not None else None)
    if not dsn:
        raise SettingsError("the database is not running, so there is nothing to back up right now")
    return str(dsn)


def terminal(daemon: Gateway, *args: str) -> str:
    """The one command that does it from a terminal on this machine."""
    s = daemon.settings
    return shlex.join(["gateway", *args, "--config", str(s.config_dir), "--data-dir", str(s.data_dir)])


# --- backups -----------------------------------------------------------------------------
@auth.page
async def backups_page(request: Request) -> Response:
    return _backups(request)


def _backups(request: Request, status: int = 200, error: str | None = None,
             waiting: dict[str, str] | None = None, typed: dict[str, str | list[str]] | None = None) -> Response:
    daemon = gateway_of(request)
    sync = current_table(gateway_toml(request), "sync")
    folder = Path(sync["backup_dir"]).expanduser() if sync.get("backup_dir") else daemon.settings.data_dir / "backups"
    found = sorted(folder.glob("gateway-*.tar.gz")) if folder.is_dir() else []
    return render(request, "settings_backups.html", status=status, error=error, fields=SCHEDULE.fields(sync, typed),
                  folder=str(folder), count=len(found),
                  newest=found[-1].name if found else None, section="backups",
                  cli_backup=terminal(daemon, "backup", "FILE.tar.gz"),
                  cli_restore=terminal(daemon, "restore", "FILE.tar.gz"), waiting=waiting)


@auth.page
async def backup_download(request: Request) -> Response:
    from reconciler.ops.backup import backup

    daemon = gateway_of(request)
    try:
        dsn = _dsn(daemon)
    except SettingsError as exc:
        return _backups(request, 503, str(exc))
    tmp = Path(tempfile.mkdtemp(prefix="download-", dir=daemon.settings.data_dir))
    name = f"gateway-{datetime.now():%Y%m%d-%H%M%S}.tar.gz"
    try:
        await asyncio.to_thread(backup, dsn, daemon.settings.schema, daemon.settings.config_dir, tmp / name)
    except Exception as exc:  # noqa: BLE001 - said on the page, nothing half-made is kept
        await asyncio.to_thread(_remove, tmp)
        return _backups(request, 500, f"The backup could not be made: {exc}")
    return FileResponse(tmp / name, filename=name, media_type="application/gzip",
                        background=BackgroundTask(_remove, tmp))


def _remove(folder: Path) -> None:
    for p in folder.glob("*"):
        p.unlink(missing_ok=True)
    folder.rmdir()


@auth.action
async def backup_schedule(request: Request) -> Response:
    sent = await request.form()
    try:
        ok = await save_form(request, SCHEDULE, sent)
    except SettingsError as exc:
        return _backups(request, 422, str(exc), typed=SCHEDULE.typed(sent))
    every = SCHEDULE.typed(sent)["every"]
    when = f"The first one is written {SCHEDULES[str(every)].lower()} from now (within a minute of it)." if every \
        else "Scheduled backups are off."
    return redirect(request, "/settings/backups", f"Backup schedule saved. {in_force(ok)} {when}")


WAITING = "restore-waiting"  # an upload kept while its owner reads what restoring it will do
WAITING_FOR = 900.0  # seconds


@auth.action
async def backup_restore(request: Request) -> Response:
    """Restore an uploaded backup: every member is checked first (nothing is replaced when one
    cannot be restored); a backup whose code app secrets this gateway cannot open (made on
    another computer) is kept aside and the page says whose code app stays behind, before
    anything happens; the owner then restores it with one more click."""
    from reconciler.ops.backup import BackupError
    from reconciler.ops.restore import check, restore
    from reconciler.store.secretbox import SealError

    form = await request.form()
    daemon = gateway_of(request)
    upload = form.get("file")
    waiting = str(form.get("waiting", ""))
    if not waiting and (upload is None or isinstance(upload, str) or not upload.filename):
        return _backups(request, 422, "Choose the backup file to restore first.")
    if form.get("confirm") != "yes":
        return _backups(request, 422, "Nothing was restored: tick the box to confirm that the history and the "
                                      "server files are replaced by the backup's.")
    folder = daemon.settings.data_dir / WAITING
    await asyncio.to_thread(_forget_old, folder)
    path: Path | None = None
    try:
        if waiting:
            path, shown = _waiting(folder, waiting), str(form.get("name", "the backup"))[:200]
        else:
            assert upload is not None and not isinstance(upload, str)
            shown = str(upload.filename)
            path = folder / f"{secrets.token_hex(16)}{'.zip' if shown.lower().endswith('.zip') else '.tar.gz'}"
            await asyncio.to_thread(_keep, path, await upload.read())
        dsn, box = _dsn(daemon), page_of(request).box
        s = daemon.settings
        checked = await asyncio.to_thread(check, path, dsn, s.schema, s.config_dir, box)
        if checked.code_app_lost and form.get("code_apps") != "again":
            return _backups(request, 409, None, waiting={"id": path.name, "name": shown, "words": checked.words()})
        done = await asyncio.to_thread(restore, path, dsn, s.schema, s.config_dir, box, checked)
    except (BackupError, SealError, SettingsError, OSError, ValueError) as exc:
        said = str(exc)
        if path is not None:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            said = said.replace(str(path), shown)  # the file the owner chose, not the copy kept here
        return _backups(request, 422, f"Nothing was restored: {said}")
    await asyncio.to_thread(path.unlink, missing_ok=True)
    return await _restored(request, shown, done)


async def _restored(request: Request, shown: str, done: Restored) -> Response:
    """Said in the events and on the page. Nobody's session came back with the backup: the
    person who restored it is signed in again (when the backup knows them), the others sign in."""
    from urllib.parse import quote

    from reconciler.store import accounts
    from webview import signin
    from webview.infra import cookies

    daemon, user = gateway_of(request), auth.signed_in(request)
    daemon.rt.event(EventKind.CONFIG_WRITTEN, None, f"restored from an uploaded backup ({shown})",
                    actor=f"operator:web:{user.name}")
    page_of(request).sessions.forget_all()
    words = f"Restored from {shown}: {_restored_words(done)} The servers follow their restored files by themselves."
    if done.code_app_lost:
        words += f" {', '.join(done.code_app_lost)}: set up the code app again (Security)."
    store = daemon.store
    if user.via == "session" and store is not None and await accounts.password_hash(store, user.name) is not None:
        response = await signin.open_session(request, user.name, user.second_factor, "/settings/backups", "")
        cookies.put(response, request, cookies.FLASH, quote(words + " Everyone else signs in again.")[:900], 60)
        return response
    response = redirect(request, "/login", words + " Sign in again.")
    cookies.drop(response, request, cookies.SESSION)
    return response


def _keep(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _waiting(folder: Path, name: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{32}\.(zip|tar\.gz)", name) or not (folder / name).is_file():
        raise ValueError("that upload is no longer kept (after 15 minutes it is forgotten): choose the file again")
    return folder / name


def _forget_old(folder: Path) -> None:
    for path in folder.glob("*") if folder.is_dir() else []:
        if time.time() - path.stat().st_mtime > WAITING_FOR:
            path.unlink(missing_ok=True)


def _restored_words(done: Restored) -> str:
    return f"{sum(done.tables.values())} rows of history and the server files are back."


# --- start at boot -----------------------------------------------------------------------
def _target(daemon: Gateway) -> Target:
    from reconciler.ops.autostart_files import Target

    return Target(Path(sys.executable), daemon.settings.config_dir, daemon.settings.data_dir)


@auth.page
async def boot_page(request: Request) -> Response:
    return await _boot(request)


async def boot_state(daemon: Gateway) -> tuple[bool, list[str]]:
    """(whether start at boot is in force, what the system reports), asking the system."""
    from reconciler.ops import autostart

    try:
        lines = await asyncio.to_thread(autostart.status, _target(daemon))
    except Exception as exc:  # noqa: BLE001 - the system could not be asked: say so, truthfully
        lines = [f"autostart in force: unknown ({exc})"]
    first = lines[0] if lines else ""
    return first.startswith("autostart in force:") and not first.endswith(": none") and "unknown" not in first, lines


async def _boot(request: Request, status: int = 200, error: str | None = None) -> Response:
    daemon = gateway_of(request)
    on, lines = await boot_state(daemon)
    first = lines[0] if lines else ""
    at_boot = next((ln.split(":", 1)[1].strip() for ln in lines if ln.strip().startswith("at the next boot:")), "")
    return render(request, "settings_boot.html", status=status, error=error, lines=lines, on=on,
                  unknown="unknown" in first, at_boot=at_boot, section="boot",
                  cli_install=terminal(daemon, "autostart", "install"),
                  cli_remove=terminal(daemon, "autostart", "remove"))


@auth.action
async def boot_post(request: Request) -> Response:
    form = await request.form()
    from reconciler.ops import autostart

    verb = str(form.get("verb", ""))
    if verb not in ("install", "remove"):
        return await _boot(request, 422, "Choose turn on or turn off.")
    at_the_laptop = doors.door_of(request.scope) == doors.LOCAL  # Windows' permission prompt is on that screen
    try:
        if verb == "install":
            done = await asyncio.to_thread(autostart.install, _target(gateway_of(request)), elevate=at_the_laptop)
        else:
            done = await asyncio.to_thread(autostart.remove, _target(gateway_of(request)))
    except (autostart.AutostartError, OSError) as exc:
        return await _boot(request, 409, f"Could not {'turn it on' if verb == 'install' else 'turn it off'} from "
                                         f"the page: {exc}")
    notes = " ".join(done.notes)
    return redirect(request, "/settings/boot", ("Start at boot turned on" if verb == "install" else
                                                "Start at boot turned off") + f" ({done.path})." +
                    (f" {notes}" if notes else ""))


routes = [
    Route("/settings/backups", backups_page),
    Route("/settings/backups/download", backup_download),
    Route("/settings/backups/schedule", backup_schedule, methods=["POST"]),
    Route("/settings/backups/restore", backup_restore, methods=["POST"]),
    Route("/settings/boot", boot_page),
    Route("/settings/boot", boot_post, methods=["POST"]),
]
