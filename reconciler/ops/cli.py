"""The operations' subcommands (backup, restore, autostart, notify), registered on the
main parser by `reconciler.cli` in one line. Parses and calls; the work is in the modules."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.platform import aio
from reconciler.settings import resolve


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    bk = sub.add_parser("backup", parents=[common], help="write the folder and the database to one archive")
    bk.add_argument("file", help="the archive to write: NAME.zip, or NAME.tar.gz")
    rs = sub.add_parser("restore", parents=[common], help="restore an archive written by `gateway backup`")
    rs.add_argument("file")
    rs.add_argument("--yes", action="store_true", help="overwrite existing data without asking")
    rs.add_argument("--no-config", action="store_true", help="restore the database only, not the folder")
    nt = sub.add_parser("notify", help="alerts")
    nt_test = nt.add_subparsers(dest="notify_command", required=True).add_parser(
        "test", parents=[common], help="send a test alert to every [notify] url")
    nt_test.add_argument("--no-record", action="store_true", help="do not record it in PostgreSQL")
    au = sub.add_parser("autostart", help="start the gateway at boot (or when you log on)")
    verbs = au.add_subparsers(dest="autostart_command", required=True)
    for verb in ("install", "remove", "status"):
        p = verbs.add_parser(verb, parents=[common])
        p.add_argument("--print", action="store_true", help="show the file and the commands; write and run nothing")
        if verb != "status":
            p.add_argument("--kind", help="windows: boot-task (default: at boot, no log-on) or logon-task; linux: "
                           "user-unit (default) or system-unit; macos: agent (default) or daemon")


def cmd_backup(args: argparse.Namespace) -> int:
    from reconciler.ops.backup import BackupError, backup, database

    settings = resolve(args.config, args.data_dir)
    try:
        with database(settings) as dsn:
            manifest = backup(dsn, settings.schema, settings.config_dir, args.file)
    except (BackupError, OSError) as exc:
        print(f"gateway backup: {exc}", file=sys.stderr)
        return 1
    rows = sum(manifest["tables"].values())
    print(f"{args.file}: {len(manifest['config_files'])} files, {len(manifest['tables'])} tables, {rows} rows")
    return 0


def _gateway_running(data_dir: Any) -> bool:
    from reconciler.client import Client, NotRunning

    try:
        Client(data_dir, timeout=3).status()
        return True
    except NotRunning:
        return False
    except Exception:  # noqa: BLE001 - something answers: treat it as running
        return True


def cmd_restore(args: argparse.Namespace) -> int:
    from reconciler.ops.backup import BackupError, database, existing_rows
    from reconciler.ops.restore import check, restore
    from reconciler.store import secretbox

    settings = resolve(args.config, args.data_dir)
    if _gateway_running(settings.data_dir):
        print("gateway restore: the gateway is running; stop it first (`gateway run` again afterwards "
              "reconciles from the restored data)", file=sys.stderr)
        return 3
    config_dir = None if args.no_config else settings.config_dir
    try:
        box = secretbox.load_or_create(settings.data_dir)
        with database(settings) as dsn:
            checked = check(args.file, dsn, settings.schema, config_dir, box)  # every member, before anything
            if checked.words():
                print(f"gateway restore: {checked.words()}", file=sys.stderr)  # said before it happens
            present = existing_rows(dsn, settings.schema)
            question = (f"the database holds {present} rows; replace them with the backup of "
                        f"{checked.manifest['created_at']}?" if present else
                        f"restore the backup of {checked.manifest['created_at']}?")
            if (present or checked.code_app_lost) and not args.yes and not _confirm(question):
                print("gateway restore: nothing changed", file=sys.stderr)
                return 1
            done = restore(args.file, dsn, settings.schema, config_dir, box, checked)
    except (BackupError, secretbox.SealError, OSError) as exc:
        print(f"gateway restore: {exc}", file=sys.stderr)
        return 1
    print(f"restored {sum(done.tables.values())} rows in {len(done.tables)} tables and {len(done.files)} files "
          f"from {args.file}" + (f"; {', '.join(done.code_app_lost)}: set up the code app again (Security)"
                                 if done.code_app_lost else ""))
    return 0


def cmd_autostart(args: argparse.Namespace) -> int:
    from reconciler.ops import autostart as a
    from reconciler.ops.autostart_files import Target

    settings = resolve(args.config, args.data_dir)
    target = Target(Path(sys.executable), settings.config_dir, settings.data_dir)
    try:
        if args.autostart_command == "status":
            print("\n".join(a.status(target, ask=not args.print)))
            return 0
        verb = a.install if args.autostart_command == "install" else a.remove
        done = verb(target, kind=args.kind, write=not args.print)
    except (a.AutostartError, OSError) as exc:
        print(f"gateway autostart: {exc}", file=sys.stderr)
        return 1
    if args.print:
        print(f"# would {'write' if args.autostart_command == 'install' else 'remove'} {done.path}"
              " (nothing was written)")
        if done.content:
            text = done.content.decode("utf-16") if done.content[:2] in (b"\xff\xfe", b"\xfe\xff") else \
                done.content.decode()
            print(text.replace("\r\n", "\n").rstrip())
    else:
        print(f"{'wrote' if args.autostart_command == 'install' else 'removed'} {done.path}")
    for argv in done.commands:
        print(("# then run: " if args.print else "ran: ") + " ".join(argv))
    for note in done.notes:
        print(note)
    return 0


def cmd_notify(args: argparse.Namespace) -> int:

    from reconciler.ops import notify as n
    from reconciler.settings import read_gateway_file

    settings = resolve(args.config, args.data_dir)
    try:
        conf = n.parse_settings(dict(read_gateway_file(settings.config_dir).notify))
    except n.NotifySettingsError as exc:
        print(f"gateway notify: gateway.toml: {exc}", file=sys.stderr)
        return 2
    if not conf.urls:
        print("gateway notify: no urls under [notify] in gateway.toml", file=sys.stderr)
        return 2
    alert = n.Alert("test", None, "a test alert from `gateway notify test`: alerts reach you")
    title, body = "omen-gateway: test alert", n.compose([alert])[1]
    ok, error = n.deliver(conf.urls, title, body)
    if not args.no_record:
        from reconciler.ops.backup import database

        async def record(dsn: str) -> None:
            from reconciler.ops.alerting import recorder
            from reconciler.store import Store

            store = await Store.connect(dsn, settings.schema)
            try:
                await recorder(store.pool, lambda: len(conf.urls))(n.Sent(title, body, (alert,), ok, error))
            finally:
                await store.close()

        with database(settings) as dsn:
            aio.run(record(dsn))
    if not ok:
        print(f"gateway notify: not sent: {error}", file=sys.stderr)
        return 1
    print(f"sent to {len(conf.urls)} target{'s' if len(conf.urls) != 1 else ''}")
    return 0


def _confirm(question: str) -> bool:
    if sys.stdin.isatty():
        try:
            return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
        except EOFError:  # Windows calls the NUL device a terminal: nobody is there to answer
            pass
    print(f"gateway restore: {question} (not asked: no terminal; pass --yes)", file=sys.stderr)
    return False


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "backup": cmd_backup, "restore": cmd_restore, "autostart": cmd_autostart, "notify": cmd_notify,
}
