"""`gateway user add NAME`: through the running gateway's local API when there is one (which
also covers the embedded PostgreSQL it owns), else straight to the configured database."""

from __future__ import annotations

import asyncio
from pathlib import Path

from reconciler.client import Client, NotRunning
from reconciler.platform import aio
from reconciler.settings import Settings
from reconciler.store import Store
from webview.infra import users
from webview.infra.users import UserError


def add_user(settings: Settings, name: str, password: str) -> str:
    """Create `name` or set its password; return what happened, in words. Raises UserError."""
    name = users.check_name(users.normal_name(name))
    users.check_password(password)
    try:
        client = Client(settings.data_dir)
        data = client._call("POST", "/api/users", json={"name": name, "password": password})
        created = bool(data["created"])
    except NotRunning:
        created = aio.run(_add_direct(settings, name, password))
    return f"user {name} " + ("added" if created else "updated: new password set, sessions ended")


async def _add_direct(settings: Settings, name: str, password: str) -> bool:
    pg = None
    dsn = settings.dsn
    if dsn is None:
        from reconciler.store.embedded import EmbeddedPostgres

        pg = EmbeddedPostgres(Path(settings.data_dir))
        dsn = await asyncio.to_thread(pg.start)
    try:
        store = await Store.connect(dsn, schema=settings.schema)
        try:
            return await users.set_user(store, name, password, sessions=None)  # no gateway runs: no page remembers
        finally:
            await store.close()
    finally:
        if pg is not None:
            await asyncio.to_thread(pg.stop)

__all__ = ["UserError", "add_user"]
